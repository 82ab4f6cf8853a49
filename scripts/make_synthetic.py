"""Write synthetic VOS data in any layout the drivers read (no downloads needed).

Examples (from the repository root):
    python scripts/make_synthetic.py --layout davis --output data/syn/DAVIS/2017/trainval --videos 4
    python scripts/make_synthetic.py --layout youtube --output data/syn/YouTube --videos 4 --ground-truth
    python scripts/make_synthetic.py --layout mp4 --output data/syn/mp4 --videos 1 --frames 3000 --leave-and-return
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from dataset import synthetic  # noqa: E402
from util.arguments import add_alias, frame_size, new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402

LAYOUTS = ("generic", "davis", "youtube", "youtube-train", "static", "mp4")


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser(__doc__)
    parser.add_argument("--layout", choices=LAYOUTS, required=True, help="what to write: a dataset layout or mp4s")
    add_alias(parser, parser.add_argument("--output", dest="out", type=Path, required=True, metavar="FOLDER",
                                          help="output root (see docs/synthetic_data.md)"), "--out")
    parser.add_argument("--videos", type=int, default=3, help="number of videos (images for 'static')")
    parser.add_argument("--frames", type=int, default=30, help="frames per video")
    add_alias(parser, parser.add_argument("--frame-size", dest="size", type=frame_size, default=(240, 432),
                                          metavar="HxW", help="frame size, height x width in pixels "
                                                              "(default 240x432)"), "--size")
    parser.add_argument("--objects", type=int, default=3, help="max targets per video (each gets 1..K)")
    parser.add_argument("--distractors", type=int, default=1, help="moving shapes that are not targets, per video")
    parser.add_argument("--seed", type=int, default=0, help="seed of every video")
    parser.add_argument(
        "--late-objects", type=int, default=None,
        help="targets appearing mid-video in every video (default: one in every third video; "
        "ignored for davis and mp4)",
    )
    parser.add_argument("--leave-and-return", action="store_true",
                        help="the objects leave the frame and come back")
    parser.add_argument("--texture", choices=(*synthetic.TEXTURES, "mixed"), default="mixed",
                        help="background and object texture")
    parser.add_argument("--split", default=None, help="split name (default: davis val, youtube valid)")
    parser.add_argument("--ground-truth", action="store_true", help="youtube: also write <split>_gt/")
    parser.add_argument("--fps", type=float, default=24.0, help="mp4 frame rate")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    return build_parser().parse_args(argv)


def _specs(
    args: argparse.Namespace, allow_late: bool, prefix: str = "syn", seed_offset: int = 0
) -> list[synthetic.VideoSpec]:
    """Lazy videos for the requested options (make_split varies object counts and seeds)."""
    height, width = args.size
    late = args.late_objects or 0
    config = synthetic.SyntheticConfig(
        num_frames=args.frames, height=height, width=width, num_objects=max(args.objects, late + 1),
        num_distractors=args.distractors, late_objects=late if allow_late else 0,
        leave_and_return=args.leave_and_return, texture=args.texture, seed=args.seed,
    )
    specs = synthetic.make_split(prefix, args.videos, config, seed=args.seed + seed_offset, allow_late=allow_late)
    if args.late_objects == 0:  # explicit 0: no late objects anywhere
        specs = [replace(s, config=replace(s.config, late_objects=0)) for s in specs]
    return specs


def _write_mp4s(args: argparse.Namespace) -> synthetic.WriteStats:
    """OUT/<name>.mp4 plus OUT/<name>_first_mask.png (ids of frame 0)."""
    stats = synthetic.WriteStats()
    for spec in _specs(args, allow_late=False):
        first_mask = []

        def frames(spec: synthetic.VideoSpec = spec, keep: list = first_mask):
            for frame, mask in synthetic.iter_frames(spec.config):
                if not keep:
                    keep.append(mask)
                yield frame

        stats.images += synthetic.write_mp4(args.out / f"{spec.name}.mp4", frames(), fps=args.fps)
        synthetic.write_first_mask(args.out / f"{spec.name}_first_mask.png", first_mask[0])
        stats.masks += 1
        stats.videos += 1
    return stats


def write(args: argparse.Namespace) -> synthetic.WriteStats:
    """Dispatch on --layout."""
    if args.layout == "generic":
        return synthetic.write_generic(args.out, _specs(args, allow_late=True))
    if args.layout == "davis":
        return synthetic.write_davis(args.out, _specs(args, allow_late=False), split=args.split or "val")
    if args.layout == "youtube":
        return synthetic.write_youtube(
            args.out, _specs(args, allow_late=True), split=args.split or "valid", ground_truth=args.ground_truth
        )
    if args.layout == "youtube-train":
        # STCN's relative tree: OUT/YouTube/train_480p and OUT/DAVIS/2017/trainval.
        stats = synthetic.write_youtube_train(args.out / "YouTube", _specs(args, allow_late=True))
        davis = synthetic.write_davis(
            args.out / "DAVIS" / "2017" / "trainval", _specs(args, allow_late=False, prefix="syn_davis", seed_offset=1),
            split="train",
        )
        return synthetic.WriteStats(
            stats.videos + davis.videos, stats.images + davis.images, stats.masks + davis.masks
        )
    if args.layout == "static":
        return synthetic.write_static(args.out, args.videos, seed=args.seed, size=args.size)
    return _write_mp4s(args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.videos < 1 or args.frames < 1:
        raise ValueError(f"--videos {args.videos} --frames {args.frames}: both must be >= 1")
    start = time.perf_counter()
    stats = write(args)
    seconds = time.perf_counter() - start
    print(
        f"make_synthetic: layout={args.layout} videos={stats.videos} images={stats.images} "
        f"masks={stats.masks} out={args.out} ({seconds:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
