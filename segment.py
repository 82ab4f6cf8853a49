"""Segment one video (an mp4 or other container, or a folder of frames) from one or more masks.

    python segment.py --video clip.mp4 --mask first.png --output masks/ --overlay overlay.mp4
    python segment.py --video frames/ --mask first.png --mask 40:newcomer.png --output masks/

--mask is a PNG for frame 0, or FRAME:PATH for an object that first appears at frame FRAME
(0-based). Masks may be palette PNGs (indices = object ids), greyscale 0/255 or 0/1 (one
object) or other greyscale values (ids), or RGB(A) PNGs (each colour is an object, numbered in
order of first appearance); masks that look anti-aliased are refused (see --mask-values).
Writes <output>/<frame>.png palette masks for the frames --direction covers (frame names: the
frame files' stems, or 00000, 00001, ... for a video file) and, with --overlay, an mp4 of the
frames with the objects filled and outlined (util/pictures.py). Containers are decoded frame by frame; no whole video is
ever held in memory. Both outputs are written under hidden temporary names
(.OUTPUT.partial/, .NAME.partial.mp4) and appear only when complete; an interrupted run
leaves no half-written result, and the next run removes its temporaries.

--direction: forward segments from the first masked frame to the end; backward runs the same engine
over the frames in reverse order, from the last masked frame down to frame 0; both (the default)
segments forward from the first mask and backward from it over the frames before it, so a first mask
in the middle of a video gives every frame a mask. A backward run over a video file keeps the frames
it needs decoded in a temporary folder (raw RGB, in the system's temporary directory).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

# Only light modules here: --help and a wrong path answer before torch and OpenCV load (docs/cli.md, "Fast answers").
from inference.cli import add_engine_args, add_mask_args, build_engine, check_memory_flags  # noqa: E402
from inference.settings import DIRECTIONS  # noqa: E402
from util.arguments import add_alias, new_parser, require_path  # noqa: E402
from util.errors import run_cli  # noqa: E402

if TYPE_CHECKING:
    from dataset.benchmarks import FrameStream
    from inference.engine import PCVOSEngine
    from inference.runner import VideoStats


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
    parser.add_argument("--direction", choices=DIRECTIONS, default="both",
                        help="forward: from the first mask to the end; backward: from the last mask down to frame 0 "
                             "(the frames in reverse order); both: forward, plus backward from the first mask over "
                             "the frames before it (default both)")
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
    from dataset.benchmarks import open_frames, parse_mask_arg, read_user_masks
    from inference.preflight import check_output_file, check_output_folder
    from inference.report import start_run, summary_line
    from inference.runner import segment_stream
    from util.pictures import overlay
    from util.progress import Progress
    from util.video_io import OverlayWriter
    from util.writer import MaskWriter, write_stamp

    stream = open_frames(args.video, args.fps or 25.0)
    labels, palette = read_user_masks(args.mask, stream, args.mask_values)
    if args.output is not None:
        check_output_folder(args.output)
    if args.overlay is not None:
        check_output_file(args.overlay, "--overlay")
    engine = build_engine(args)
    monitor = start_run("segment.py", args, engine, extra=[f"direction {args.direction}"])
    inputs = (args.video, *(parse_mask_arg(text)[1] for text in args.mask))
    folder = mask_folder(args.output, inputs) if args.output is not None else None
    first, last = min(labels), max(labels)
    # backward: frames last..0 with every mask; both: frames first..0 with the first mask (objects of later
    # masks first appear there, so they are absent before the first mask), written for the frames before it.
    backward = {"forward": None, "both": (first, {first: labels[first]}) if first > 0 else None,
                "backward": (last, labels)}[args.direction]
    video = None
    written = 0
    stats: list[VideoStats] = []
    try:
        video = OverlayWriter(args.overlay, args.fps or stream.fps, stream.size) if args.overlay else None
        with MaskWriter() as writer, tempfile.TemporaryDirectory(prefix="pcvos-segment.") as scratch:
            behind: dict[int, Path] = {}  # frame -> its backward mask (.npy), kept for the overlay

            def sink(index: int, rgb: np.ndarray, mask: np.ndarray | None) -> None:
                nonlocal written
                meter.update(index + 1)
                if mask is None and index in behind:
                    mask = np.load(behind[index])
                elif mask is not None and folder is not None:
                    writer.submit(folder.tmp / f"{stream.names(index)}.png", mask, palette)
                    written += 1
                if video is not None:
                    video.write(rgb if mask is None else overlay(rgb, mask, palette))

            if backward is not None:
                start, masks = backward
                keep = start if args.direction == "both" else start + 1  # frames the backward run writes

                def backward_sink(index: int, rgb: np.ndarray, mask: np.ndarray | None) -> None:
                    nonlocal written
                    if index >= keep or mask is None:
                        return
                    if folder is not None:
                        writer.submit(folder.tmp / f"{stream.names(index)}.png", mask, palette)
                        written += 1
                    if video is not None:
                        behind[index] = Path(scratch) / f"mask{index:06d}.npy"
                        np.save(behind[index], mask)

                stats.append(segment_backward(engine, stream, masks, start, args.size, backward_sink,
                                              Path(scratch)))
            # frames handed on, in order (a container's declared count can be off: Progress tolerates it)
            with Progress("overlay frames" if args.direction == "backward" else "frames", stream.count) as meter:
                if args.direction == "backward":
                    if video is not None:  # the overlay shows every frame, in order
                        for index, rgb in enumerate(stream.frames()):
                            sink(index, rgb, None)
                else:
                    stats.append(segment_stream(engine, stream.frames(), labels, args.size, sink))
            writer.flush()  # a failed PNG write fails the video
        # Masks and overlay appear only now, each complete: until here they lived under temporary names.
        if folder is not None:
            write_stamp(folder.tmp, {"video": str(args.video), "masks": written, "direction": args.direction})
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
    # both: the two runs start at the first mask's frame; the video's frames are counted once (the time is both runs')
    shared = 1 if args.direction == "both" and backward is not None else 0
    print(summary_line(stream.name, "1 video", sum(s.frames for s in stats) - shared, sum(s.seconds for s in stats),
                       sum(s.engine_seconds for s in stats), monitor))
    return 0


def segment_backward(
    engine: PCVOSEngine,
    stream: FrameStream,
    labels: dict[int, np.ndarray],
    start: int,
    size: int,
    sink: Callable[[int, np.ndarray, np.ndarray | None], None],
    scratch: Path,
) -> VideoStats:
    """Frames ``start``, ``start - 1``, ..., 0 through ``segment_stream`` (the same engine, time reversed).

    ``labels``: frame index -> mask, every index <= ``start`` (``start`` itself masked). ``sink`` gets the
    original frame indices. A frame folder is read backwards file by file; a video file is decoded once,
    up to frame ``start``, into ``scratch`` and read back from there.
    """
    from inference.runner import segment_stream
    from util.progress import Progress

    reversed_labels = {start - index: mask for index, mask in labels.items()}
    frames = reversed_frames(stream, start, scratch)
    with Progress("backward frames", start + 1) as meter:

        def reversed_sink(position: int, rgb: np.ndarray, mask: np.ndarray | None) -> None:
            meter.update(position + 1)
            sink(start - position, rgb, mask)

        return segment_stream(engine, frames, reversed_labels, size, reversed_sink)


def reversed_frames(stream: FrameStream, start: int, scratch: Path) -> Iterator[np.ndarray]:
    """uint8 [H, W, 3] RGB frames ``start`` down to 0."""
    from dataset.frames import list_frames, read_rgb
    from util.progress import progress

    if stream.path.is_dir():
        files = list_frames(stream.path)
        return (read_rgb(files[index]) for index in range(start, -1, -1))
    count = 0
    for index, rgb in progress(zip(range(start + 1), stream.frames()), "decoding frames", start + 1):
        np.save(scratch / f"frame{index:06d}.npy", rgb)
        count = index + 1
    if count <= start:
        raise ValueError(
            f"mask for frame {start} is beyond the end of the video ({count} frames decoded); "
            "use a frame index inside the video"
        )
    return (np.load(scratch / f"frame{index:06d}.npy") for index in range(start, -1, -1))


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
