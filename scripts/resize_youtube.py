"""Make YouTube-VOS train_480p from train: short side -> 480 (bicubic images, nearest masks).

Usage::

    python scripts/resize_youtube.py --youtube-root ../YouTube    # reads train/, writes train_480p/
    python scripts/resize_youtube.py --youtube-root ../YouTube --workers 8

Videos already complete in the output are skipped, so an interrupted run can
simply be started again. Masks keep their palette (PIL nearest resize of 'P').
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from util.arguments import add_alias, new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402

SHORT_SIDE = 480


def target_size(width: int, height: int, short: int = SHORT_SIDE) -> tuple[int, int]:
    """(width, height) with the short side scaled to ``short`` (aspect kept, rounded)."""
    scale = short / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_file(src: Path, dst: Path, resample: Image.Resampling, short: int = SHORT_SIDE) -> None:
    """Resize one image or mask file; written through a temp name, then renamed."""
    with Image.open(src) as im:
        out = im.resize(target_size(*im.size, short), resample=resample)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    out.save(tmp, format=im.format or dst.suffix[1:].upper())
    tmp.replace(dst)


def resize_video(src_root: Path, dst_root: Path, video: str, short: int = SHORT_SIDE) -> int:
    """Resize all frames (bicubic) and masks (nearest) of one video; returns files written."""
    written = 0
    for sub, pattern, resample in (("JPEGImages", "*.jpg", Image.BICUBIC), ("Annotations", "*.png", Image.NEAREST)):
        for src in sorted((src_root / sub / video).glob(pattern)):
            dst = dst_root / sub / video / src.name
            if dst.is_file():
                continue
            resize_file(src, dst, resample, short)
            written += 1
    return written


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser(__doc__.splitlines()[0])
    add_alias(parser, parser.add_argument("--youtube-root", default="../YouTube", metavar="FOLDER",
                                          help="YouTube-VOS root containing train/"), "--root")
    parser.add_argument("--src", default="train", help="folder under the root to read")
    parser.add_argument("--dst", default="train_480p", help="folder under the root to write")
    add_alias(parser, parser.add_argument("--size", type=int, default=SHORT_SIDE, metavar="PIXELS",
                                          help="short side of the written frames, in pixels"), "--short")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    src, dst = Path(args.youtube_root) / args.src, Path(args.youtube_root) / args.dst
    if not (src / "JPEGImages").is_dir():
        print(f"resize_youtube.py: error: {src / 'JPEGImages'} not found; download YouTube-VOS 2019 train "
              "(see docs/training.md or `python scripts/download.py youtube`)", file=sys.stderr)
        return 2
    videos = sorted(p.name for p in (src / "JPEGImages").iterdir() if p.is_dir())
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            counts = list(pool.map(resize_video, [src] * len(videos), [dst] * len(videos), videos,
                                   [args.size] * len(videos)))
    else:
        counts = [resize_video(src, dst, v, args.size) for v in videos]
    print(f"{len(videos)} videos, {sum(counts)} files written to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
