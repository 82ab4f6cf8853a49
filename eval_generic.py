"""Segment every video of a generic folder: JPEGImages/<video>/ + Annotations/<video>/.

    python eval_generic.py --model saves/s03_pcvos_ytvos.pth --data ROOT --output OUT

Annotations are palette PNGs at the frames where objects first appear (any
frames, YouTube-VOS style). Writes <OUT>/<video>/<frame>.png with the original
object ids, from the first annotated frame on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataset.frames import video_from_folders  # noqa: E402
from inference.cli import add_engine_args, build_engine  # noqa: E402
from inference.runner import segment_source  # noqa: E402
from util.progress import progress  # noqa: E402
from util.writer import MaskWriter  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="root with JPEGImages/ and Annotations/")
    parser.add_argument("--output", required=True, type=Path, help="results root")
    parser.add_argument("--videos", nargs="*", help="only these videos (default: all)")
    add_engine_args(parser)
    return parser.parse_args(argv)


def list_videos(root: Path, only: list[str] | None) -> list[str]:
    images = root / "JPEGImages"
    if not images.is_dir():
        raise SystemExit(f"error: --data {root}: no JPEGImages/ folder (expected JPEGImages/<video>/<frame>.jpg)")
    if not (root / "Annotations").is_dir():
        raise SystemExit(f"error: --data {root}: no Annotations/ folder (expected Annotations/<video>/<frame>.png)")
    names = sorted(p.name for p in images.iterdir() if p.is_dir())
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise SystemExit(f"error: videos not found under {images}: {', '.join(missing)}")
        names = [n for n in names if n in only]
    return names


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = list_videos(args.data, args.videos)
    engine = build_engine(args)
    frames = 0
    engine_seconds = 0.0
    start = time.perf_counter()
    with MaskWriter() as writer:
        for name in progress(names, "videos"):
            try:
                source = video_from_folders(name, args.data / "JPEGImages" / name, args.data / "Annotations" / name)
            except (ValueError, FileNotFoundError) as error:
                raise SystemExit(f"error: {error}") from error
            stats = segment_source(engine, source, args.size, args.output, writer, args.workers)
            frames += stats.frames
            engine_seconds += stats.engine_seconds
    seconds = time.perf_counter() - start
    print(
        f"segmented {len(names)} videos, {frames} frames in {seconds:.1f} s "
        f"({frames / max(seconds, 1e-9):.2f} FPS end to end, {frames / max(engine_seconds, 1e-9):.2f} FPS engine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
