"""Reproduce the released PCVOS evaluation: one model, several clip lengths L, several benchmarks.

    python inference_pretrained_pcvos.py --model saves/s03_pcvos_ytvos.pth \
        --benchmarks youtube2019 youtube2018 --youtube-root ../YouTube --youtube2018-root ../YouTube2018 \
        --clip-lengths 5 10 15 25 --output results/sweep

The network is loaded once; for each L an engine is built on the same network and every
benchmark is written to <output>/L<L>/<benchmark>/ in its own format (see eval_davis.py and
eval_youtube.py). A table of J&F (where ground truth exists: DAVIS val), FPS (engine and end
to end) and peak memory (peak RSS of this process, and peak CUDA memory on a GPU, both reset
before each run) per L and benchmark is printed and written to <output>/sweep.md and
<output>/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import resource
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
    check_engine_flags,
    engine_settings,
    load_network_and_settings,
    memory_options,
)
from util.arguments import add_alias, new_parser, require_path  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.runtime import resolve_device  # noqa: E402

if TYPE_CHECKING:
    import torch

    from dataset.benchmarks import Benchmark

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


class PeakMemory:
    """Peak resident memory of this process and peak CUDA memory, resettable between runs.

    RSS: ``resource.getrusage`` (ru_maxrss); on Linux the high-water mark is reset by writing
    5 to /proc/self/clear_refs. Where that is not possible the figure is the process's peak
    so far (``rss_since_reset`` says which). Frame-decoding workers are separate processes
    and are not included.
    """

    def __init__(self, device: torch.device) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.rss_since_reset = False

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.rss_since_reset = True
        except OSError:
            self.rss_since_reset = False
        if self.device.type == "cuda":
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict[str, float | bool | None]:
        """Peak RSS and CUDA memory in MiB since the last reset."""
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        cuda = self.torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        return {"peak_rss_mib": rss_kib / 1024, "peak_cuda_mib": cuda, "rss_since_reset": self.rss_since_reset}


def markdown_table(rows: list[dict]) -> str:
    """The sweep table in Markdown."""
    def num(value, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| L | benchmark | videos | frames | J&F | J | F | FPS engine | FPS end to end "
        "| peak RSS (MiB) | peak CUDA (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['L']} | {r['benchmark']} | {r['videos']} | {r['frames']} | {num(r['J&F'])} | {num(r['J'])} | "
            f"{num(r['F'])} | {num(r['fps_engine'], 2)} | {num(r['fps_end_to_end'], 2)} | "
            f"{num(r['peak_rss_mib'], 0)} | {num(r['peak_cuda_mib'], 0)} |"
        )
    return "\n".join(lines) + "\n"


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
    from dataset.benchmarks import run_benchmark, summary_line
    from inference.engine import PCVOSEngine, prepare_network
    from inference.preflight import check_annotations, check_output_file, check_output_folder

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
                if bench.zip_path is not None:
                    check_output_file(bench.zip_path, "--output (submission zip)")
                runs[length, name] = bench, size
        for name in args.benchmarks:  # the same videos at every L: their annotations are read once
            check_annotations(runs[args.clip_lengths[0], name][0].sources)
        # Loaded once: every L shares these weights.
        network, recorded = load_network_and_settings(args.model, device, args.quality_weights)
        base = engine_settings(args, recorded, clip_length=args.clip_lengths[0])  # the L values are given
        memory_factory = memory_options(args, network, strict=True).factory()
        prepare_network(network, base)  # once for every L
        memory = PeakMemory(device)
        args.output.mkdir(parents=True, exist_ok=True)
        for length in args.clip_lengths:
            engine = PCVOSEngine(network, replace(base, clip_length=length), memory_factory=memory_factory)
            for name in args.benchmarks:
                out = args.output / f"L{length}" / name
                bench, size = runs[length, name]
                memory.reset()
                result = run_benchmark(engine, bench, size, args.workers)
                print(f"L={length} {summary_line(result)}")
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
    report = {"model": args.model, "device": str(device), "precision": args.precision, "memory": args.memory,
              "rows": rows}
    write_atomic(args.output / "sweep.json", json.dumps(report, indent=1) + "\n")
    total = sum(r["frames"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    engine_seconds = sum(r["engine_seconds"] for r in rows)
    print(f"sweep: {len(rows)} runs, {total} frames in {seconds:.1f} s; {total / max(seconds, 1e-9):.2f} FPS end "
          f"to end, {total / max(engine_seconds, 1e-9):.2f} FPS engine; table in {args.output / 'sweep.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
