"""Segment one video (an mp4 or other container, or a folder of frames) from one or more masks.

    python segment.py --video clip.mp4 --mask first.png --output masks/ --overlay overlay.mp4
    python segment.py --video frames/ --mask first.png --mask 40:newcomer.png --output masks/

--mask is a PNG for frame 0, or FRAME:PATH for an object that first appears at frame FRAME
(0-based). Masks may be palette PNGs (indices = object ids), greyscale 0/255 or 0/1 (one
object) or other greyscale values (ids), or RGB(A) PNGs (each colour is an object, numbered in
order of first appearance); masks that look anti-aliased are refused (see --mask-values).
Writes <output>/<frame>.png palette masks from the first masked frame on (frame names: the
frame files' stems, or 00000, 00001, ... for a video file) and, with --overlay, an mp4 of the
frames with the objects blended in. Containers are decoded frame by frame; no whole video is
ever held in memory. Both outputs are written under hidden temporary names
(.OUTPUT.partial/, .NAME.partial.mp4) and appear only when complete; an interrupted run
leaves no half-written result, and the next run removes its temporaries.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Only light modules here: --help and a wrong path answer before torch and OpenCV load (docs/cli.md, "Fast answers").
from inference.cli import add_engine_args, add_mask_args, build_engine, check_memory_flags  # noqa: E402
from util.arguments import add_alias, new_parser, require_path  # noqa: E402
from util.errors import run_cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser(__doc__)
    parser.add_argument("--video", required=True, type=Path, help="video file (.mp4, .avi, ...) or folder of frames")
    parser.add_argument("--mask", required=True, action="append", metavar="[FRAME:]PATH",
                        help="mask PNG for frame 0, or FRAME:PATH for objects appearing at FRAME; repeatable")
    add_alias(parser, parser.add_argument("--output", type=Path, metavar="FOLDER",
                                          help="folder for the mask PNGs (default: none written)"), "--out")
    parser.add_argument("--overlay", type=Path, metavar="MP4", help="write an overlay video here (default: none)")
    parser.add_argument("--fps", type=float, default=None,
                        help="overlay frame rate (default: the video's, or 25 for a frame folder)")
    add_engine_args(parser)
    add_mask_args(parser)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output is None and args.overlay is None:
        parser.error("nothing to write: give --output DIR and/or --overlay OUT.mp4")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_path(args.video, "--video", folder=False, hint="give a video file or a folder of frames")
    check_memory_flags(args)
    import numpy as np

    from dataset.benchmarks import open_frames, parse_mask_arg, read_user_masks, segment_stream
    from inference.preflight import check_output_file, check_output_folder
    from util.progress import progress
    from util.video_io import OverlayWriter, overlay
    from util.writer import MaskWriter, write_stamp

    stream = open_frames(args.video, args.fps or 25.0)
    labels, palette = read_user_masks(args.mask, stream, args.mask_values)
    if args.output is not None:
        check_output_folder(args.output)
    if args.overlay is not None:
        check_output_file(args.overlay, "--overlay")
    engine = build_engine(args)
    inputs = (args.video, *(parse_mask_arg(text)[1] for text in args.mask))
    folder = mask_folder(args.output, inputs) if args.output is not None else None
    video = None
    written = 0
    try:
        video = OverlayWriter(args.overlay, args.fps or stream.fps, stream.size) if args.overlay else None
        with MaskWriter() as writer:

            def sink(index: int, rgb: np.ndarray, mask: np.ndarray | None) -> None:
                nonlocal written
                if mask is not None and folder is not None:
                    writer.submit(folder.tmp / f"{stream.names(index)}.png", mask, palette)
                    written += 1
                if video is not None:
                    video.write(rgb if mask is None else overlay(rgb, mask, palette))

            frames = stream.frames()
            if stream.exact_count:  # a container's declared count can be off, and progress() must not list()
                frames = progress(frames, "frames", total=stream.count)
            stats = segment_stream(engine, frames, labels, args.size, sink)
            writer.flush()  # a failed PNG write fails the video
        # Masks and overlay appear only now, each complete: until here they lived under temporary names.
        if folder is not None:
            write_stamp(folder.tmp, {"video": str(args.video), "masks": written})
            folder.commit()
        if video is not None:
            video.close()
    except BaseException as error:
        if video is not None:
            video.close(commit=False)
        if folder is not None:
            folder.abort()
        if isinstance(error, ValueError):
            raise ValueError(f"{args.video}: {error}") from error
        raise
    if video is not None:
        print(f"overlay: {args.overlay} ({video.frames} frames)")
    if args.output is not None:
        print(f"masks: {written} PNGs in {args.output}")
    print(
        f"{stream.name}: 1 video, {stats.frames} frames in {stats.seconds:.1f} s; "
        f"{stats.frames / max(stats.seconds, 1e-9):.2f} FPS end to end, "
        f"{stats.frames / max(stats.engine_seconds, 1e-9):.2f} FPS engine"
    )
    return 0


def mask_folder(output: Path, inputs: tuple[Path, ...]):
    """The AtomicFolder that becomes ``--output`` (a leftover temporary of a killed run is removed).

    ``inputs``: the video and mask files; an ``--output`` holding one of them is never replaced
    (the masks are moved into it). Refused: an ``--output`` that is a file, the root folder, or
    the input frame folder itself (masks named like the frames would replace them, or be read as
    frames next time).
    """
    final = output.resolve()
    if final.exists() and not final.is_dir():
        raise ValueError(f"--output {output}: this is a file, not a folder; give a folder for the mask PNGs")
    if final == inputs[0].resolve() or final == final.parent:
        raise ValueError(f"--output {output}: this is the input frame folder or the root; choose another folder")
    from util.writer import AtomicFolder

    return AtomicFolder(final, final.parent, merge=True, protect=inputs)


if __name__ == "__main__":
    sys.exit(run_cli(main))
