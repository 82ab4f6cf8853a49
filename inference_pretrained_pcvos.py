"""Reproduce the released PCVOS evaluation: one model, several clip lengths L, several benchmarks.

    python inference_pretrained_pcvos.py --model saves/s03_pcvos_ytvos.pth \
        --benchmarks youtube2019 youtube2018 --youtube-root ../YouTube --youtube2018-root ../YouTube2018 \
        --clip-lengths 5 10 15 25 --output results/sweep

The network is loaded once; for each L an engine is built on the same network and every
benchmark is written to <output>/L<L>/<benchmark>/ in its own format (see eval_davis.py and
eval_youtube.py). A table of J&F (where ground truth exists: DAVIS val), FPS (engine and end
to end), peak memory (peak RSS of this process, and peak CUDA memory on a GPU, both reset
before each run) and the memory a video keeps at its end (the largest)
per L and benchmark is printed and written to <output>/sweep.md and
<output>/sweep.json, and the speed-accuracy curve (J&F against engine FPS, one labelled point
per L and one line per scored benchmark; engine FPS against L when no benchmark has ground
truth) is drawn to <output>/sweep.png. --overlay also draws overlay videos of every run
(<output>/L<L>/<benchmark>/overlays/).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Only light modules here: --help and a wrong path answer before torch loads (docs/cli.md, "Fast answers").
from inference.cli import (  # noqa: E402
    add_engine_args,
    add_mask_args,
    add_overlay_arg,
    check_engine_flags,
    engine_settings,
    load_network_and_settings,
    memory_options,
)
from util.arguments import add_alias, new_parser, require_path  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.progress import progress  # noqa: E402
from util.runtime import resolve_device  # noqa: E402

if TYPE_CHECKING:
    from dataset.benchmarks import Benchmark
    from util.pictures import Chart

BENCHMARKS = ("davis2017", "davis2016", "youtube2019", "youtube2018", "generic")
RELEASED_CLIP_LENGTHS = (5, 10, 15, 25)
#: the flags only some benchmarks read (refused when none of them is chosen)
READERS = {"davis_root": ("davis2017",), "davis2016_root": ("davis2016",), "youtube_root": ("youtube2019",),
           "youtube2018_root": ("youtube2018",), "generic_root": ("generic",),
           "davis_split": ("davis2017", "davis2016"), "davis_size": ("davis2017", "davis2016"),
           "youtube_split": ("youtube2019", "youtube2018"), "required_only": ("youtube2019", "youtube2018"),
           "no_zip": ("youtube2019", "youtube2018")}
#: the dataset root each benchmark needs (davis2016: --davis2016-root, else --davis-root)
NEEDS = {"davis2017": "davis_root", "youtube2019": "youtube_root", "youtube2018": "youtube2018_root",
         "generic": "generic_root"}


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser(__doc__)
    # -L is accepted as another name of --clip-lengths: a sweep has no single L
    add_alias(parser, parser.add_argument(
        "--clip-lengths", type=int, nargs="+", default=list(RELEASED_CLIP_LENGTHS), metavar="L",
        help="values of L to sweep (default 5 10 15 25, as released)"), "-L", "--clip-length")
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=["youtube2019", "youtube2018"],
                        help="benchmarks to run for every L (default: youtube2019 youtube2018, as released)")
    add_alias(parser, parser.add_argument("--output", required=True, type=Path, metavar="FOLDER",
                                          help="results root: <output>/L<L>/<benchmark>/"), "--out")
    roots = parser.add_argument_group("dataset roots")
    for flag, old, text in (
        ("--davis-root", "--davis-path", "DAVIS 2017 folder (trainval/ or its parent)"),
        ("--davis2016-root", "--davis2016-path", "DAVIS 2016 folder (default: --davis-root, ImageSets/2016)"),
        ("--youtube-root", "--yv-path", "YouTube-VOS 2019 root"),
        ("--youtube2018-root", "--yv2018-path", "YouTube-VOS 2018 root"),
        ("--generic-root", "--generic-path", "dataset root with JPEGImages/ and Annotations/"),
    ):
        add_alias(roots, roots.add_argument(flag, type=Path, metavar="FOLDER", help=text), old)
    roots.add_argument("--davis-split", default=None, help="DAVIS split (default val)")
    roots.add_argument("--davis-size", type=int, default=None, metavar="PIXELS",
                       help="short side of the DAVIS frames to work at; -1 keeps them as they are (default -1)")
    add_alias(roots, roots.add_argument("--youtube-split", default=None, choices=("valid", "test"),
                                        help="YouTube-VOS split (default valid)"), "--yv-split")
    roots.add_argument("--required-only", action="store_true", help="YouTube-VOS: segment only meta.json frames")
    roots.add_argument("--no-zip", action="store_true", help="YouTube-VOS: skip the submission zips")
    add_overlay_arg(parser)
    add_engine_args(parser, clip_length=False)
    add_mask_args(parser)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in args.benchmarks:
        if name == "davis2016" and args.davis2016_root is None and args.davis_root is None:
            parser.error("--benchmarks davis2016 needs --davis2016-root (or --davis-root)")
        if name in NEEDS and getattr(args, NEEDS[name]) is None:
            parser.error(f"--benchmarks {name} needs --{NEEDS[name].replace('_', '-')}")
    chosen = set(args.benchmarks)
    for dest, readers in READERS.items():
        if dest == "davis_root" and args.davis2016_root is None:
            readers = (*readers, "davis2016")
        if getattr(args, dest) not in (None, False) and not chosen & set(readers):
            parser.error(f"--{dest.replace('_', '-')}: only --benchmarks {' / '.join(readers)} read it, and none "
                         "of them is chosen; drop it or add the benchmark (a flag is never accepted and ignored)")
    if any(length < 1 for length in args.clip_lengths):
        parser.error("--clip-lengths must be positive integers")
    return args


def build_benchmark(name: str, args: argparse.Namespace, output: Path, scratch: Path) -> tuple[Benchmark, int]:
    """(benchmark, working size) for one benchmark name."""
    from dataset.benchmarks import davis_benchmark, generic_benchmark, youtube_benchmark

    if name == "davis2017":
        bench = davis_benchmark(args.davis_root, "2017", args.davis_split or "val", output, None, args.mask_values)
        return bench, -1 if args.davis_size is None else args.davis_size
    if name == "davis2016":
        root = args.davis2016_root or args.davis_root
        bench = davis_benchmark(root, "2016", args.davis_split or "val", output, scratch / "davis2016",
                                args.mask_values)
        return bench, -1 if args.davis_size is None else args.davis_size
    if name in ("youtube2019", "youtube2018"):
        root = args.youtube_root if name == "youtube2019" else args.youtube2018_root
        split = args.youtube_split or "valid"
        bench = youtube_benchmark(root, split, output, args.required_only, mask_values=args.mask_values)
        if args.no_zip:
            bench.zip_path = None
        bench.name = f"{name}-{split}"
        return bench, args.size
    return generic_benchmark(args.generic_root, output, mask_values=args.mask_values), args.size


def markdown_table(rows: list[dict]) -> str:
    """The sweep table in Markdown."""
    def num(value, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| L | benchmark | videos | frames | J&F | J | F | FPS engine | FPS end to end "
        "| peak RSS (MiB) | peak CUDA (MiB) | memory kept (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['L']} | {r['benchmark']} | {r['videos']} | {r['frames']} | {num(r['J&F'])} | {num(r['J'])} | "
            f"{num(r['F'])} | {num(r['fps_engine'], 2)} | {num(r['fps_end_to_end'], 2)} | "
            f"{num(r['peak_rss_mib'], 0)} | {num(r['peak_cuda_mib'], 0)} | {num(r['kept_mib'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def sweep_chart(rows: list[dict], title: str = "") -> Chart:
    """The sweep's picture, as the paper's Figure 1: J&F (%) against engine FPS, one point per L
    (labelled), one line per benchmark with scores; engine FPS against L when no row has a J&F."""
    from util.pictures import Chart, Series

    scored = [r for r in rows if r["J&F"] is not None]
    names = list(dict.fromkeys(r["benchmark"] for r in (scored or rows)))
    if scored:
        chart = Chart(title=title or "J&F against speed, one point per L", x_label="frames per second (engine)",
                      y_label="J&F (%)")
        for name in names:
            mine = sorted((r for r in scored if r["benchmark"] == name), key=lambda r: r["L"])
            chart.add(Series(name, [r["fps_engine"] for r in mine], [100 * r["J&F"] for r in mine],
                             [f"L={r['L']}" for r in mine]))
        return chart
    chart = Chart(title=title or "speed per L (no benchmark with ground truth: no J&F)", x_label="L (frames per clip)",
                  y_label="frames per second (engine)", x_step=1)
    for name in names:
        mine = sorted((r for r in rows if r["benchmark"] == name), key=lambda r: r["L"])
        chart.add(Series(name, [r["L"] for r in mine], [r["fps_engine"] for r in mine],
                         [f"L={r['L']}" for r in mine]))
    return chart


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in args.benchmarks:  # the roots the benchmarks need exist (their layouts are checked below)
        flag = {"davis2016": "davis2016_root" if args.davis2016_root else "davis_root"}.get(name, NEEDS.get(name))
        require_path(getattr(args, flag), "--" + flag.replace("_", "-"), folder=True,
                     hint=f"give the root of the {name} benchmark")
    check_engine_flags(args)
    from inference.benchmark_run import run_benchmark
    from inference.engine import PCVOSEngine, prepare_network
    from inference.overlays import check_overlay_names
    from inference.preflight import check_annotations, check_output_file, check_output_folder
    from inference.report import RunMonitor, benchmark_summary, header_line
    from util.pictures import save_png

    device = resolve_device(args.device)
    check_output_folder(args.output)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="pcvos-sweep.") as scratch:
        # Every benchmark of every L is read and checked before the network is loaded and the first video
        # segmented: a bad input fails in seconds, not after the other runs.
        runs: dict[tuple[int, str], tuple[Benchmark, int]] = {}
        for length in args.clip_lengths:
            for name in args.benchmarks:
                try:
                    bench, size = build_benchmark(name, args, args.output / f"L{length}" / name,
                                                  Path(scratch) / f"L{length}")
                except FileNotFoundError as error:
                    raise FileNotFoundError(f"{name}: {error}") from error
                except ValueError as error:
                    raise ValueError(f"{name}: {error}") from error
                check_output_folder(bench.mask_root)
                if args.overlay:
                    check_overlay_names(bench.mask_root, bench.sources)
                if bench.zip_path is not None:
                    check_output_file(bench.zip_path, "--output (submission zip)")
                runs[length, name] = bench, size
        for name in args.benchmarks:  # the same videos at every L: their annotations are read once
            check_annotations(runs[args.clip_lengths[0], name][0].sources)
        # Loaded once: every L shares these weights.
        network, recorded = load_network_and_settings(args.model, device, args.quality_weights)
        base = engine_settings(args, recorded, clip_length=args.clip_lengths[0])  # the L values are given
        memory = RunMonitor(device)
        memory_factory = memory.wrap(memory_options(args, network, strict=True).factory())
        prepare_network(network, base)  # once for every L
        davis_size = -1 if args.davis_size is None else args.davis_size
        size = None if not {"davis2017", "davis2016"} & set(args.benchmarks) else (
            f"{args.size} (short side; DAVIS: {'original' if davis_size < 0 else davis_size})")
        print(header_line("inference_pretrained_pcvos.py", args, device, args.clip_lengths, size, config=base),
              flush=True)
        args.output.mkdir(parents=True, exist_ok=True)
        for length in progress(args.clip_lengths, "sweep L values"):
            engine = PCVOSEngine(network, replace(base, clip_length=length), memory_factory=memory_factory)
            for name in args.benchmarks:
                out = args.output / f"L{length}" / name
                bench, size = runs[length, name]
                memory.reset()
                result = run_benchmark(engine, bench, size, args.workers, overlays=args.overlay)
                print(f"L={length} {benchmark_summary(result, memory)}")
                scores = result.scores or {}
                rows.append({
                    "L": length, "benchmark": name, "videos": result.videos, "frames": result.frames,
                    "seconds": result.seconds, "engine_seconds": result.engine_seconds,
                    "fps_engine": result.engine_fps, "fps_end_to_end": result.fps,
                    "J&F": scores.get("J&F-Mean"), "J": scores.get("J-Mean"), "F": scores.get("F-Mean"),
                    **memory.read(), "output": str(out),
                })
    table = markdown_table(rows)
    print(table, end="")
    write_atomic(args.output / "sweep.md", table)
    report = {"model": args.model, "device": str(device), "precision": base.precision, "memory": args.memory,
              "rows": rows}
    write_atomic(args.output / "sweep.json", json.dumps(report, indent=1) + "\n")
    if rows:
        title = f"{Path(args.model).name}, {device}, {base.precision}: " + (
            "J&F against speed, one point per L" if any(r["J&F"] is not None for r in rows) else "speed per L")
        save_png(sweep_chart(rows, title).render(), args.output / "sweep.png")
    total = sum(r["frames"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    engine_seconds = sum(r["engine_seconds"] for r in rows)
    print(f"sweep: {len(rows)} runs, {total} frames in {seconds:.1f} s; {total / max(seconds, 1e-9):.2f} FPS end "
          f"to end, {total / max(engine_seconds, 1e-9):.2f} FPS engine; largest run: peak memory "
          f"{max(r['peak_rss_mib'] for r in rows):.0f} MiB RSS"
          + ("" if rows[0]["peak_cuda_mib"] is None else f", {max(r['peak_cuda_mib'] for r in rows):.0f} MiB CUDA")
          + f", memory kept at the end of a video {max(r['kept_mib'] for r in rows):.1f} MiB; "
          f"table in {args.output / 'sweep.md'}, curve in {args.output / 'sweep.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
