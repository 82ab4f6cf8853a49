"""Time util.davis_metrics on a synthetic DAVIS-sized set (480x854, palette PNGs).

    python scripts/bench_score_davis.py [--sequences 8] [--frames 50] [--objects 3] [--workers 1 2]

Writes the set to a temporary folder, scores it with each worker count and prints milliseconds
per object-frame (wall time of ``evaluate``, PNG decoding included). The masks are ellipses of
DAVIS-like sizes (about 2% to 25% of the frame) moving over the clip; predictions are the GT with
each object slightly shifted and resized, so J and F are typical (about 0.85).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from util import davis_metrics as dm  # noqa: E402  (needs the sys.path line above)
from util.arguments import add_alias, new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.palette import write_index_png  # noqa: E402

HEIGHT, WIDTH = 480, 854


def draw_frame(rng_params: np.ndarray, t: int, jitter: float) -> np.ndarray:
    """Index map uint8 [480, 854] with one ellipse per object; later objects drawn on top.

    Args:
        rng_params: float [K, 6] per object: centre y, x, semi-axes a, b, velocity vy, vx.
        t: frame index.
        jitter: extra shift / scale applied for a prediction (0 for the GT).
    """
    frame = np.zeros((HEIGHT, WIDTH), np.uint8)
    for k, (cy, cx, a, b, vy, vx) in enumerate(rng_params, start=1):
        centre = (int(cx + vx * t + jitter * 2), int(cy + vy * t - jitter * 1.5))
        axes = (int(a * (1 + 0.03 * jitter)), int(b * (1 - 0.02 * jitter)))
        cv2.ellipse(frame, centre, axes, 15.0 * k, 0, 360, int(k), thickness=-1)
    return frame


def make_set(root: Path, n_sequences: int, n_frames: int, n_objects: int) -> list[str]:
    rng = np.random.default_rng(0)
    names = []
    for s in range(n_sequences):
        name = f"seq{s:02d}"
        params = np.column_stack(
            [
                rng.uniform(120, 360, n_objects),
                rng.uniform(200, 650, n_objects),
                rng.uniform(40, 220, n_objects),
                rng.uniform(30, 140, n_objects),
                rng.uniform(-1.5, 1.5, n_objects),
                rng.uniform(-3, 3, n_objects),
            ]
        )
        for t in range(n_frames):
            write_index_png(root / "gt" / "Annotations" / "480p" / name / f"{t:05d}.png", draw_frame(params, t, 0))
            write_index_png(root / "pred" / name / f"{t:05d}.png", draw_frame(params, t, 1.0 + (t % 3)))
        names.append(name)
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser(__doc__.split("\n", 1)[0])
    add_alias(parser, parser.add_argument("--videos", type=int, default=8, help="generated sequences"), "--sequences")
    parser.add_argument("--frames", type=int, default=50, help="frames per sequence")
    parser.add_argument("--objects", type=int, default=3, help="objects per sequence")
    add_alias(parser, parser.add_argument(
        "--worker-counts", type=int, nargs="+", default=[1, os.cpu_count() or 1], metavar="N",
        help="numbers of scoring processes to compare (default: 1 and every core)"), "--workers")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = make_set(root, args.videos, args.frames, args.objects)
        for workers in args.worker_counts:
            best = min(
                dm.evaluate(root / "gt", root / "pred", names, workers=workers).seconds for _ in range(args.repeats)
            )
            ev = dm.evaluate(root / "gt", root / "pred", names, workers=workers)
            n = ev.n_object_frames()
            row = ev.global_row()
            print(
                f"workers={workers}: {n} object-frames at {HEIGHT}x{WIDTH} in {best:.2f} s -> "
                f"{1000 * best / n:.2f} ms per object-frame (J {row['J-Mean']:.3f}, F {row['F-Mean']:.3f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
