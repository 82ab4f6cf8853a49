"""Make YouTube-VOS train_480p from train: short side -> 480 (bicubic images, nearest masks).

Usage::

    python scripts/resize_youtube.py --root ../YouTube            # reads train/, writes train_480p/
    python scripts/resize_youtube.py --root ../YouTube --workers 8

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../YouTube", help="YouTube-VOS root containing train/")
    parser.add_argument("--src", default="train")
    parser.add_argument("--dst", default="train_480p")
    parser.add_argument("--short", type=int, default=SHORT_SIDE)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    src, dst = Path(args.root) / args.src, Path(args.root) / args.dst
    if not (src / "JPEGImages").is_dir():
        print(f"resize_youtube.py: error: {src / 'JPEGImages'} not found; download YouTube-VOS 2019 train "
              "(see docs/training.md or `python scripts/download.py youtube`)", file=sys.stderr)
        return 2
    videos = sorted(p.name for p in (src / "JPEGImages").iterdir() if p.is_dir())
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            counts = list(pool.map(resize_video, [src] * len(videos), [dst] * len(videos), videos,
                                   [args.short] * len(videos)))
    else:
        counts = [resize_video(src, dst, v, args.short) for v in videos]
    print(f"{len(videos)} videos, {sum(counts)} files written to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
