"""Segment every video of a generic folder: JPEGImages/<video>/ + Annotations/<video>/.

    python eval_generic.py --model saves/s03_pcvos_ytvos.pth --generic-root ROOT --output OUT

Annotations are palette PNGs at the frames where objects first appear (any
frames, YouTube-VOS style). Writes <OUT>/<video>/<frame>.png with the original
object ids, from the first annotated frame on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Only light modules here: --help and a wrong path answer before torch loads (docs/cli.md, "Fast answers").
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
    add_alias(parser, parser.add_argument("--generic-root", required=True, type=Path, metavar="FOLDER",
                                          help="dataset root with JPEGImages/ and Annotations/"), "--data")
    add_alias(parser, parser.add_argument("--output", required=True, type=Path, metavar="FOLDER",
                                          help="results root: <output>/<video>/<frame>.png"), "--out")
    add_alias(parser, parser.add_argument("--only", nargs="*", metavar="VIDEO",
                                          help="segment only these videos (default: all)"), "--videos")
    add_output_args(parser)
    add_shard_arg(parser)
    add_engine_args(parser)
    add_mask_args(parser)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shard = resolve_shard(args.shard)
    require_path(args.generic_root, "--generic-root", folder=True, hint="give the folder with JPEGImages/ and "
                 "Annotations/")
    check_engine_flags(args)
    from dataset.benchmarks import generic_benchmark
    from inference.benchmark_run import run_benchmark
    from inference.preflight import preflight_benchmark
    from inference.report import benchmark_summary, start_run

    bench = generic_benchmark(args.generic_root, args.output, args.only, args.mask_values)
    preflight_benchmark(bench)  # outputs and annotations: a bad input fails before any video is segmented
    engine = build_engine(args, device=shard_device(args.device))
    monitor = start_run("eval_generic.py", args, engine)
    result = run_benchmark(engine, bench, args.size, args.workers, shard, **rerun_options(args, engine.config))
    print(benchmark_summary(result, monitor))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
