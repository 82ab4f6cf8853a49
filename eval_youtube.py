"""Segment YouTube-VOS 2018 / 2019 (valid or test) and pack the submission zip.

    python eval_youtube.py --youtube-root ../YouTube --split valid --output results/yv19 -L 5

Reads every 30-fps frame from all_frames/<split>_all_frames/JPEGImages (the released
--predict_all protocol) and the first-appearance masks from <split>/Annotations; objects
may first appear mid-video. Writes <output>/Annotations/<vid>/<frame>.png (palette PNGs,
original object ids, original annotation size) for the frames meta.json lists, then the
submission zip (<output>.zip or --zip; its top level is Annotations/) once every video is
done. Frames are resized to 480p (bicubic, no antialias, like the released code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Only light modules here: --help and a wrong path answer before torch loads (docs/cli.md, "Fast answers").
from dataset.names import YOUTUBE_SPLITS  # noqa: E402
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
    add_alias(parser, parser.add_argument(
        "--youtube-root", required=True, type=Path, metavar="FOLDER",
        help="YouTube-VOS root with <split>/meta.json, <split>/Annotations and all_frames/"), "--yv-path")
    parser.add_argument("--split", choices=YOUTUBE_SPLITS, default="valid", help="dataset split (default valid)")
    add_alias(parser, parser.add_argument("--output", required=True, type=Path, metavar="FOLDER",
                                          help="results root: <output>/Annotations/<vid>/"), "--out")
    packing = parser.add_mutually_exclusive_group()
    packing.add_argument("--zip", type=Path, default=None, help="submission zip (default <output>.zip)")
    packing.add_argument("--no-zip", action="store_true", help="do not write the submission zip")
    frames = parser.add_mutually_exclusive_group()  # with --required-only, every segmented frame is a listed one
    frames.add_argument("--required-only", action="store_true",
                        help="segment only the frames meta.json lists (default: every frame, as released)")
    frames.add_argument("--output-all", action="store_true", help="write every segmented frame, not only meta.json's")
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
    require_path(args.youtube_root, "--youtube-root", folder=True, hint="give the YouTube-VOS root with "
                 "<split>/meta.json")
    check_engine_flags(args)
    from dataset.benchmarks import youtube_benchmark
    from inference.benchmark_run import run_benchmark
    from inference.preflight import preflight_benchmark
    from inference.report import benchmark_summary, start_run

    bench = youtube_benchmark(args.youtube_root, args.split, args.output, args.required_only, args.output_all, args.zip,
                              args.mask_values)
    if args.no_zip:
        bench.zip_path = None
    preflight_benchmark(bench, zip_flag="--zip" if args.zip else "--zip (default <output>.zip)")
    engine = build_engine(args, device=shard_device(args.device))
    monitor = start_run("eval_youtube.py", args, engine)
    result = run_benchmark(engine, bench, args.size, args.workers, shard, **rerun_options(args, engine.config))
    print(benchmark_summary(result, monitor))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
