"""Segment DAVIS 2017 (val, test-dev) or DAVIS 2016 (val) and score it when ground truth exists.

    python eval_davis.py --year 2017 --split val --davis-root ../DAVIS/2017 --output results/d17
    python eval_davis.py --year 2016 --split val --davis-root ../DAVIS/2016 --output results/d16

2017: palette PNGs with the first frame's object ids, every frame, <output>/<seq>/<frame>.png.
2016: one object (the first-frame objects merged), greyscale 0/255 PNGs. With ground truth
(val), J&F is computed right after inference (util/davis_metrics, the official toolkit's
definitions) and global_results-<split>.csv / per-sequence_results-<split>.csv are written
into <output>. Frames are used at their 480p size (--size -1, as STCN did).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Only light modules here: --help and a wrong path answer before torch loads (docs/cli.md, "Fast answers").
from dataset.names import DAVIS_SPLITS, DAVIS_YEARS  # noqa: E402
from inference.cli import (  # noqa: E402
    add_engine_args,
    add_mask_args,
    add_output_args,
    build_engine,
    check_engine_flags,
    rerun_options,
)
from util.arguments import add_alias, new_parser, require_path  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.sharding import add_shard_arg, resolve_shard, shard_device  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser(__doc__)
    parser.add_argument("--year", choices=DAVIS_YEARS, default="2017", help="DAVIS edition (default 2017)")
    parser.add_argument("--split", choices=DAVIS_SPLITS, default="val", help="ImageSets subset (default val)")
    add_alias(parser, parser.add_argument(
        "--davis-root", required=True, type=Path, metavar="FOLDER",
        help="DAVIS folder with JPEGImages/480p/ (or its parent with trainval/ and test-dev/)"), "--davis-path")
    add_alias(parser, parser.add_argument("--output", required=True, type=Path, metavar="FOLDER",
                                          help="results folder: <output>/<seq>/<frame>.png"), "--out")
    parser.add_argument("--no-score", action="store_true", help="do not compute J&F even when ground truth exists")
    add_output_args(parser)
    add_shard_arg(parser)
    add_engine_args(parser, default_size=-1)
    add_mask_args(parser)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shard = resolve_shard(args.shard)
    require_path(args.davis_root, "--davis-root", folder=True, hint="give the DAVIS folder with JPEGImages/480p/ "
                 "(or its parent with trainval/)")
    check_engine_flags(args)
    from dataset.benchmarks import davis_benchmark
    from inference.benchmark_run import run_benchmark
    from inference.preflight import preflight_benchmark
    from inference.report import benchmark_summary, start_run

    with tempfile.TemporaryDirectory(prefix="davis2016-labels.") as labels:
        bench = davis_benchmark(args.davis_root, args.year, args.split, args.output, Path(labels), args.mask_values)
        if args.no_score:
            bench.score = None
        preflight_benchmark(bench)
        engine = build_engine(args, device=shard_device(args.device))
        monitor = start_run("eval_davis.py", args, engine)
        result = run_benchmark(engine, bench, args.size, args.workers, shard, **rerun_options(args, engine.config))
    print(benchmark_summary(result, monitor))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
