"""The paper's ablation tables (Tables 1 and 2) on the quickstart's synthetic proxy (docs/ablation.md).

    python scripts/ablation.py [--output ablation_out] [--rows pcvos no-icr framewise stcn-like]
                               [--seeds 0 1] [--iterations 2250] [--val-videos 30] [--clip-lengths 1 5 10 15]

Every run trains the small model with ``python train.py`` (the real training path, one run at a time, each in
its own process) on the quickstart's data recipe, then evaluates it on held-out videos at every clip length,
with progressive memory matching (PMM) and with parallel matching, without mirror augmentation. The rows:

    pcvos       per-clip training (1 + 3 + 3 frames), ICR             (paper: the full model)
    no-icr      per-clip training, no ICR                             (Table 1: + PMM + per-clip training)
    framewise   frame-wise training (1 + 6 x 1 frames), ICR           (Table 2: "Trad." 7 frames)
    stcn-like   frame-wise training, no ICR                           (Table 1: STCN-like / + PMM)
    frames5, frames9, no-clip-loss                                    (Table 2: 5 / 9 frames, no clip supervision)
    pcvos-staged  the pcvos row in two train.py runs: the first half of the iterations without ICR, the second
                  half with ICR from those weights (two stages, as the paper pre-trains before its main training)
    pcvos-icr-lr10  the pcvos row with the refinement at 10 times the learning rate (train.py --icr-lr-scale 10)

The script is resumable: a rerun skips the finished trainings and evaluations, continues a training from its
checkpoint, and rewrites the report (ablation.md, ablation.json) from everything measured so far.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from util.arguments import new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.paths import write_text_atomic as write_text  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One ablation row: how it trains, and the paper's J&F at L = 5 / 10 / 15 / 25 (YouTube-VOS 2019 val)."""

    label: str
    clip_frames: tuple[int, ...]
    icr: bool = True
    dice_weight: float = 1.0
    paper: tuple[float, ...] | None = None
    icr_from: float = 0.0  # with ICR: the share of the iterations trained without it first (a separate run)
    icr_lr_scale: float = 1.0  # the refinement's learning rate = the rest's x this (train.py --icr-lr-scale)


ROWS: dict[str, Row] = {
    "pcvos": Row("PCVOS: per-clip training + ICR", (3, 3), paper=(84.6, 84.1, 83.6, 83.0)),  # Tables 1, 2
    "no-icr": Row("per-clip training, no ICR", (3, 3), icr=False, paper=(83.6, 83.0, 82.5, 81.8)),  # Table 1
    "framewise": Row("frame-wise training + ICR", (1,) * 6, paper=(83.5, 83.1, 83.1, 82.2)),  # Table 2
    "stcn-like": Row("STCN-like: frame-wise training, no ICR", (1,) * 6, icr=False,
                     paper=(82.7, 82.3, 81.7, 81.1)),  # Table 1, "+ PMM"
    "frames5": Row("per-clip, 1 + 2 + 2 frames", (2, 2), paper=(83.9, 83.8, 83.4, 82.7)),  # Table 2
    "frames9": Row("per-clip, 1 + 4 + 4 frames", (4, 4), paper=(83.8, 83.3, 83.3, 82.7)),  # Table 2
    "no-clip-loss": Row("per-clip, no clip supervision", (3, 3), dice_weight=0.0,
                        paper=(83.7, 83.3, 82.5, 82.0)),  # Table 2
    "pcvos-staged": Row("PCVOS, ICR added after half of the iterations", (3, 3), icr_from=0.5,
                        paper=(84.6, 84.1, 83.6, 83.0)),
    "pcvos-icr-lr10": Row("PCVOS, ICR at 10x the learning rate", (3, 3), icr_lr_scale=10.0,
                          paper=(84.6, 84.1, 83.6, 83.0)),
}
#: The paper's STCN-like row without PMM (Table 1, first row), shown beside stcn-like's parallel matching.
PAPER_STCN_NO_PMM = (82.7, 81.9, 79.6, 78.1)
DEFAULT_ROWS = ("pcvos", "no-icr", "framewise", "stcn-like")
LATER_STAGE_SEED = 1000  # a staged run's second train.py run samples with --seed seed + 1000
PMM_EVERY = 5  # PMM appends in-clip memory every 5 frames: at L <= 5 it equals parallel matching (spec 1.6)


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    p = new_parser(__doc__)
    p.add_argument("--output", type=Path, default=Path("ablation_out"), metavar="FOLDER",
                   help="data, runs, masks and the report go here; a rerun continues what is there")
    p.add_argument("--rows", nargs="+", choices=tuple(ROWS), default=list(DEFAULT_ROWS), metavar="ROW",
                   help=f"rows to train and evaluate, from {', '.join(ROWS)} (default: {' '.join(DEFAULT_ROWS)})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], metavar="SEED",
                   help="training seeds per row (the data are the same for every run)")
    p.add_argument("--iterations", type=int, default=2250,
                   help="training iterations per run (the quickstart's; the same for every row)")
    p.add_argument("--train-videos", type=int, default=120, help="synthetic training videos (the quickstart's)")
    p.add_argument("--val-videos", type=int, default=30, help="held-out videos every run is evaluated on")
    p.add_argument("--clip-lengths", type=int, nargs="+", default=[1, 5, 10, 15], metavar="L",
                   help="clip lengths to evaluate at")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="training precision; auto: bf16 on CUDA and CPUs with native bf16, else fp32")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, ...")
    p.add_argument("--report-only", action="store_true", help="train and evaluate nothing: rewrite the report")
    p.add_argument("--short", action="store_true", help="a few iterations on tiny data (what the tests run)")
    return p


def run_name(row: str, seed: int) -> str:
    return f"{row}_s{seed}"


def recipe(args: argparse.Namespace) -> argparse.Namespace:
    """The quickstart's settings (scripts/quickstart.py) with ``--val-videos`` held-out videos: its data, its
    training crops and the size its evaluation works at."""
    import quickstart

    flags = ["--output", str(args.output), "--train-videos", str(args.train_videos),
             "--val-videos", str(args.val_videos)]
    qargs = quickstart.parse_args(flags)
    if args.short:
        qargs.short, qargs.frames, qargs.size = True, 12, (64, 112)
    return qargs


def evaluation_size(args: argparse.Namespace) -> int:
    """The short side the held-out videos are evaluated at, the quickstart's (-1: their own size)."""
    import quickstart

    return quickstart.eval_size(recipe(args))


def make_data(args: argparse.Namespace) -> tuple[Path, Path]:
    """The quickstart's data recipe, with ``--val-videos`` held-out videos."""
    import quickstart

    qargs = recipe(args)
    train_root, val_root, _ = quickstart.make_data(qargs, *qargs.size)  # the selection videos are not used
    return train_root, val_root


@dataclass(frozen=True)
class Stage:
    """One train.py run of an ablation run."""

    name: str  # its --run-name (runs/<name>/)
    iterations: int
    icr: bool
    seed: int  # its --seed: a later stage's differs, so that it does not see the earlier stage's samples again


def stages(args: argparse.Namespace, row: str, seed: int) -> list[Stage]:
    """The train.py runs of one ablation run, in order: one, or for a row with ``icr_from`` a run without ICR
    followed by a run with ICR that starts from its weights (the ablation run's name is the last one's)."""
    spec, name, n = ROWS[row], run_name(row, seed), args.iterations
    if not (spec.icr and spec.icr_from > 0):
        return [Stage(name, n, spec.icr, seed)]
    first = min(n - 1, max(1, round(n * spec.icr_from)))
    return [Stage(f"{name}_no-icr", first, False, seed), Stage(name, n - first, True, seed + LATER_STAGE_SEED)]


def train_command(args: argparse.Namespace, row: str, seed: int, train_root: Path, precision: str,
                  stage: Stage | None = None) -> list[str]:
    """``python train.py ...`` for one run (or one ``stage`` of it): the quickstart's recipe, the row's sample
    shape and network."""
    spec = ROWS[row]
    stage = stage or stages(args, row, seed)[-1]
    n = stage.iterations
    crop, batch = (64, 2) if args.short else (112, 4)
    qargs = recipe(args)
    command = [
        sys.executable, str(ROOT / "train.py"), "--stage", "3", "--model-size", "small", "--iterations", str(n),
        "--batch-size", str(batch), "--lr", "2e-4", "--lr-schedule", "cosine", "--precision", precision,
        "--batchnorm", "train", "--channels-last", "--crop-size", str(crop), "--workers", "0", "--no-imagenet",
        "--youtube-root", str(train_root / "YouTube"), "--davis-root", str(train_root / "DAVIS"),
        "--output", str(args.output / "runs"), "--run-name", stage.name, "--seed", str(stage.seed),
        "--save-every", str(max(1, min(100, n))), "--log-every", str(max(1, n // 20)),
        "--image-every", str(max(1, n // 4)), "--bootstrap", str(n // 3), str(n), "--progress", "log",
        "--device", args.device, "--dice-weight", str(spec.dice_weight),
        "--clip-frames", *map(str, spec.clip_frames),
        "--min-scale", str(qargs.min_scale), "--max-scale", str(qargs.max_scale),
    ]
    if not stage.icr:
        command.append("--no-icr")
    elif spec.icr_lr_scale != 1.0:
        command += ["--icr-lr-scale", str(spec.icr_lr_scale)]
    return command


def train_run(args: argparse.Namespace, row: str, seed: int, train_root: Path, precision: str) -> Path:
    """Train one run (or continue it from its checkpoint); returns its final weights. The training minutes of
    all its stages are summed in runs/<run>/ablation_timing.json."""
    weights, minutes = None, 0.0
    for stage in stages(args, row, seed):
        folder = args.output / "runs" / stage.name
        final = folder / f"{stage.name}_final.pth"
        timing = folder / "ablation_timing.json"
        if not final.is_file():
            checkpoint = folder / f"{stage.name}_checkpoint.pth"
            command = train_command(args, row, seed, train_root, precision, stage)
            if checkpoint.is_file():
                command += ["--resume", str(checkpoint)]
            else:
                command += ["--overwrite"] + (["--weights", str(weights)] if weights is not None else [])
            print(f"[train] {stage.name}: {' '.join(command[1:])}", flush=True)
            start = time.perf_counter()
            subprocess.run(command, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            spent = stage_minutes(timing) + (time.perf_counter() - start) / 60
            write_text(timing, json.dumps({"minutes": minutes + spent, "stage_minutes": spent,
                                           "precision": precision}))
        minutes += stage_minutes(timing)
        weights = final
    return weights


def stage_minutes(timing: Path) -> float:
    """Training minutes one train.py run has spent so far (0 before it starts)."""
    if not timing.is_file():
        return 0.0
    data = json.loads(timing.read_text())
    return data.get("stage_minutes", data["minutes"])


def evaluate_run(args: argparse.Namespace, row: str, seed: int, weights: Path, val_root: Path) -> dict:
    """J&F of one run at every clip length and matching; each figure is cached in results/<run>.json."""
    size = evaluation_size(args)
    path = args.output / "results" / f"{run_name(row, seed)}.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if results.get("eval_size") != size:  # figures measured at another size are measured again, not mixed in
        results = {"eval_size": size}
    todo = [(length, read) for length in args.clip_lengths for read in reads_at(length)
            if f"L{length}_{read}" not in results]
    if not todo:
        return results
    from dataset.benchmarks import davis_benchmark
    from inference.benchmark_run import run_benchmark
    from inference.engine import EngineConfig, PCVOSEngine, prepare_network
    from model.checkpoint import build_model
    from util.runtime import resolve_device

    network, _ = build_model(weights, resolve_device(args.device))
    prepare_network(network)
    for length, read in todo:
        key = f"L{length}_{read}"
        bench = davis_benchmark(val_root, "2017", "val", args.output / "eval" / run_name(row, seed) / key)
        engine = PCVOSEngine(network, EngineConfig(clip_length=length, memory_read=read, flip=False))
        result = run_benchmark(engine, bench, size=size, workers=0, log=lambda s: None, overwrite=True)
        results[key] = {"J&F": result.scores["J&F-Mean"], "J": result.scores["J-Mean"],
                        "F": result.scores["F-Mean"], "fps": result.engine_fps}
        print(f"[eval] {run_name(row, seed)} L = {length} {read}: J&F {results[key]['J&F']:.3f}", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(results, indent=1))
    return results


def reads_at(length: int) -> tuple[str, ...]:
    """PMM and parallel matching differ only past PMM_EVERY frames per clip; below, one evaluation serves both."""
    return ("pmm", "parallel") if length > PMM_EVERY else ("pmm",)


def figure(results: dict, length: int, read: str) -> float | None:
    """A run's J&F at ``length`` with ``read`` (at L <= PMM_EVERY the one evaluation); None if not measured."""
    entry = results.get(f"L{length}_{read if read in reads_at(length) else 'pmm'}")
    return None if entry is None else entry["J&F"]


def summarise(args: argparse.Namespace) -> dict:
    """Mean, spread and per-seed J&F of every row measured so far, per clip length and matching."""
    size = evaluation_size(args)
    table = {}
    for row in ROWS:
        runs = {}
        for path in sorted((args.output / "results").glob(f"{row}_s*.json")):
            seed, results = path.stem[len(row) + 2:], json.loads(path.read_text())
            if seed.isdigit() and results.get("eval_size") == size:  # not figures measured at another size
                runs[int(seed)] = results
        if not runs:
            continue
        cells = {}
        for read in ("pmm", "parallel"):
            for length in args.clip_lengths:
                values = [v for v in (figure(r, length, read) for r in runs.values()) if v is not None]
                if values:
                    cells[f"L{length}_{read}"] = {
                        "mean": statistics.fmean(values), "min": min(values), "max": max(values),
                        "seeds": len(values), "values": values}
        minutes = []
        for seed in runs:
            timing = args.output / "runs" / run_name(row, seed) / "ablation_timing.json"
            if timing.is_file():
                minutes.append(json.loads(timing.read_text())["minutes"])
        table[row] = {"label": ROWS[row].label, "seeds": sorted(runs), "cells": cells,
                      "training_minutes": minutes}
    return table


def write_report(args: argparse.Namespace, table: dict) -> None:
    lengths, qargs, size = args.clip_lengths, recipe(args), evaluation_size(args)
    lines = [
        "# Ablation on the synthetic proxy",
        "",
        f"Small model, {args.iterations} iterations per run on crops of {qargs.min_scale:g}-{qargs.max_scale:g} of "
        f"the frame's area, {args.val_videos} held-out videos evaluated at "
        + ("their own size" if size < 0 else f"a short side of {size} pixels")
        + ", no mirror augmentation. J&F: mean over seeds, [min-max] in brackets.",
        "",
    ]
    for read, title in (("pmm", "with progressive memory matching (PMM)"), ("parallel", "with parallel matching")):
        lines += [f"## {title}", "", "| row | seeds | " + " | ".join(f"L = {n}" for n in lengths)
                  + " | drop L = 5 -> 15 | paper L = 5 / 10 / 15 / 25 |",
                  "|---|---|" + "---|" * len(lengths) + "---|---|"]
        for row, entry in table.items():
            cells = [entry["cells"].get(f"L{n}_{read}") for n in lengths]
            text = [f"{c['mean']:.3f} [{c['min']:.3f}-{c['max']:.3f}]" if c and c["seeds"] > 1
                    else f"{c['mean']:.3f}" if c else "-" for c in cells]
            a, b = entry["cells"].get(f"L5_{read}"), entry["cells"].get(f"L15_{read}")
            drop = f"{a['mean'] - b['mean']:+.3f}" if a and b else "-"
            paper = ROWS[row].paper if not (read == "parallel" and row == "stcn-like") else PAPER_STCN_NO_PMM
            lines.append(f"| {entry['label']} | {len(entry['seeds'])} | " + " | ".join(text) + f" | {drop} | "
                         + " / ".join(f"{x:.1f}" for x in paper) + " |")
        lines.append("")
    write_text(args.output / "ablation.md", "\n".join(lines))
    write_text(args.output / "ablation.json", json.dumps(
        {"iterations": args.iterations, "val_videos": args.val_videos, "clip_lengths": lengths, "rows": table},
        indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error(f"--iterations {args.iterations}: must be >= 1")
    if args.short:
        args.iterations, args.train_videos, args.val_videos = 3, 2, 2
    sys.path.insert(0, str(ROOT / "scripts"))
    args.output.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        import quickstart

        from util.runtime import resolve_device

        precision = quickstart.training_precision(args.precision, resolve_device(args.device))
        print(f"[data] {args.output / 'data'}", flush=True)
        train_root, val_root = make_data(args)
        for seed in args.seeds:  # every row gets its first seed before any row its second
            for row in args.rows:
                weights = train_run(args, row, seed, train_root, precision)
                evaluate_run(args, row, seed, weights, val_root)
                write_report(args, summarise(args))
    write_report(args, summarise(args))
    print(f"ablation: report in {args.output / 'ablation.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
