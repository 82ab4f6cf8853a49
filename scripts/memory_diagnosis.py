"""What the masks written into memory cost: an ablation run's checkpoint evaluated with its memory varied.

    python scripts/memory_diagnosis.py --ablation ablation_out --runs pcvos_s0 stcn-like_s0
                                       [--variants L1 L1-every5 L1-truth L5 L5-truth L15-icr1]

Each variant segments the ablation's held-out videos (``scripts/ablation.py``: same data, same evaluation size,
PMM, no mirror augmentation) with one change to what enters memory:

    L<n>          clip length n, memory written every n frames with the predicted masks (the ablation's figure)
    L<n>-every<m> clip length n, memory written every m frames instead
    L<n>-truth    clip length n, the ground-truth masks written into memory in place of the predictions
    L<n>-icr<k>   clip length n, the intra-clip refinement (ICR) run over the clip's frames k at a time

If ``L1-truth`` closes the gap between L = 1 and L = 5, the errors of the masks written into memory are what
L = 1 pays for; if ``L1-every5`` closes it, it is how often memory is written. If ``L15-icr1`` (the refinement
over one frame at a time) scores above L = 15, part of what L = 15 loses against L = 5 is the refinement over
long clips (trained on clips of 3 frames). Output under
``<ablation>/memory/``: ``memory.json`` (per run and variant: J&F, J, F and J per frame, the mean over the
videos' objects), ``memory.md`` (the table), ``j_by_frame.png`` (J per frame, mean over the runs) and the
masks. Resumable: a rerun evaluates only the variants not yet in memory.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from inference.engine import PCVOSEngine  # noqa: E402
from util.arguments import new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.paths import write_text_atomic as write_text  # noqa: E402

DEFAULT_VARIANTS = ("L1", "L1-every5", "L1-truth", "L5", "L5-truth")
VARIANT = re.compile(r"^L(\d+)(?:-every(\d+)|-(truth)|-icr(\d+))?$")


@dataclass(frozen=True)
class Variant:
    """One way of running the engine: clip length, memory interval, what is written, the refinement's span."""

    length: int
    every: int | None = None  # memory interval in frames (None: the clip length)
    truth: bool = False  # ground truth written into memory in place of the predictions
    refine_frames: int | None = None  # ICR over this many of the clip's frames at a time (None: the whole clip)


class TruthMemoryEngine(PCVOSEngine):
    """The engine with each memorised frame's ground truth written into memory in place of its prediction.

    Before each video, ``truth`` maps frame index -> its ground truth as engine slots ([H, W] int64 at the
    frame's own size, 0 = background); it is resized to the working size with nearest neighbours and padded like
    the frames. Annotated (permanent) frames are written as always.
    """

    truth: dict[int, torch.Tensor]

    def _memorise(self, store, state, t, image, key, f16, masks, permanent) -> None:
        if not permanent:
            left, right, top, bottom = state.pads
            size = (image.shape[-2] - top - bottom, image.shape[-1] - left - right)
            slots = torch.nn.functional.interpolate(self.truth[t][None, None].float(), size=size, mode="nearest")
            slots = torch.nn.functional.pad(slots[0, 0].long(), (left, right, top, bottom)).to(masks.device)
            masks = torch.stack([(slots == obj).to(masks.dtype) for obj in state.enabled])
        super()._memorise(store, state, t, image, key, f16, masks, permanent)


class ChunkedRefineEngine(PCVOSEngine):
    """The engine with the intra-clip refinement run over ``refine_frames`` of a clip's frames at a time."""

    refine_frames: int

    def _clip_probabilities(self, images, store, state):
        net, k = self.net, self.refine_frames
        whole = net.refine_clip

        def chunked(keys, readout):  # keys [1, hidden, n, h, w] or None; readout [O, Cv, n, h, w]
            parts = [whole(None if keys is None else keys[:, :, i : i + k], readout[:, :, i : i + k])
                     for i in range(0, readout.shape[2], k)]
            return torch.cat(parts, dim=2)

        net.refine_clip = chunked  # the instance attribute shadows the method for this clip only
        try:
            return super()._clip_probabilities(images, store, state)
        finally:
            del net.refine_clip


def parse_variant(text: str) -> Variant:
    """'L1-every5' -> Variant(length=1, every=5)."""
    match = VARIANT.match(text)
    numbers = [int(g) for g in (match.group(1), match.group(2), match.group(4)) if g is not None] if match else []
    if match is None or min(numbers) < 1:
        raise ValueError(f"--variants {text!r}: write L<n>, L<n>-every<m>, L<n>-truth or L<n>-icr<k> with n, m, k "
                         ">= 1, e.g. L1-truth")
    every = None if match.group(2) is None else int(match.group(2))
    refine = None if match.group(4) is None else int(match.group(4))
    return Variant(int(match.group(1)), every, match.group(3) is not None, refine)


def truth_maps(source, gt_dir: Path) -> dict[int, torch.Tensor]:
    """Every frame's ground truth as engine slots: the first frame's ids get slots 1..K in increasing order, as
    the benchmark run gives them (``ObjectManager``); other ids -> 0."""
    from inference.objects import ObjectManager
    from util.davis_metrics import read_mask

    objects = ObjectManager()
    objects.add([int(v) for v in np.unique(read_mask(gt_dir / f"{source.frame_names[0]}.png")) if v > 0])
    return {t: torch.from_numpy(objects.slot_map(read_mask(gt_dir / f"{name}.png")))
            for t, name in enumerate(source.frame_names)}


def evaluate_variant(network, variant: str, val_root: Path, size: int, masks: Path) -> dict:
    """J&F, J, F and J per frame (mean over every object of every video) of one variant."""
    from inference.engine import EngineConfig

    spec = parse_variant(variant)
    config = EngineConfig(clip_length=spec.length, mem_every=spec.every, memory_read="pmm", flip=False)
    if spec.truth:
        engine = TruthMemoryEngine(network, config)
    elif spec.refine_frames is not None:
        engine = ChunkedRefineEngine(network, config)
        engine.refine_frames = spec.refine_frames
    else:
        engine = PCVOSEngine(network, config)

    def before_video(source, gt_dir: Path) -> None:
        if spec.truth:
            engine.truth = truth_maps(source, gt_dir)

    return score_engine(engine, val_root, size, masks, before_video)


def score_engine(engine, val_root: Path, size: int, masks: Path, before_video=None, videos: int | None = None) -> dict:
    """Segment the held-out videos under ``val_root`` (the first ``videos`` of them; all when None) with
    ``engine`` at ``size``, masks to ``masks``; J&F, J, F and J per frame (mean over every object of every video).

    ``before_video(source, gt_dir)`` runs before each video is segmented.
    """
    from dataset.benchmarks import davis_benchmark
    from inference.benchmark_run import evaluate_benchmark, segment_benchmark_video
    from util.davis_metrics import annotations_dir
    from util.writer import MaskWriter

    bench = davis_benchmark(val_root, "2017", "val", masks)
    if videos is not None:
        bench.sources = bench.sources[:videos]
    gt_root = annotations_dir(bench.score.gt_root)
    masks.mkdir(parents=True, exist_ok=True)
    with MaskWriter() as writer:
        for source in bench.sources:
            if before_video is not None:
                before_video(source, gt_root / source.name)
            segment_benchmark_video(engine, source, bench, size, writer, workers=0)
    evaluation = evaluate_benchmark(bench)
    row = evaluation.global_row()
    curves = [seq.j.mean(axis=0) for seq in evaluation.scored]
    frames = min(len(c) for c in curves)
    return {"J&F": row["J&F-Mean"], "J": row["J-Mean"], "F": row["F-Mean"],
            "j_by_frame": [float(v) for v in np.mean([c[:frames] for c in curves], axis=0)]}


def write_report(out: Path, results: dict) -> None:
    """memory.md and j_by_frame.png from every variant measured (in the order first measured)."""
    from util.pictures import Chart, Series, save_png

    variants = list(dict.fromkeys(v for entry in results.values() for v in entry))
    lines = ["# What the masks written into memory cost", "",
             "J&F per run (PMM, no mirror augmentation); the variants are explained in "
             "scripts/memory_diagnosis.py.", "",
             "| run | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for run, entry in results.items():
        lines.append(f"| {run} | " + " | ".join(f"{entry[v]['J&F']:.3f}" if v in entry else "-" for v in variants)
                     + " |")
    means = {v: [e[v]["J&F"] for e in results.values() if v in e] for v in variants}
    lines.append("| mean | " + " | ".join(f"{statistics.fmean(m):.3f}" if m else "-" for m in means.values()) + " |")
    write_text(out / "memory.md", "\n".join(lines) + "\n")
    chart = Chart(title="J per frame, mean over the runs' videos", x_label="frame (1 = first after the mask)",
                  y_label="J", x_step=1, y_range=(0.0, 1.0))
    for variant in variants:
        curves = [e[variant]["j_by_frame"] for e in results.values() if variant in e]
        if curves:
            n = min(len(c) for c in curves)
            mean = np.mean([c[:n] for c in curves], axis=0)
            chart.add(Series(variant, list(range(1, n + 1)), [float(v) for v in mean], markers=False))
    if chart.series:
        save_png(chart.render(), out / "j_by_frame.png")


def ablation_checkpoints(folder: Path, runs: list[str]) -> tuple[Path, int, dict[str, Path]]:
    """(held-out videos, evaluation size, run -> final checkpoint) of an ablation output folder.

    Raises:
        FileNotFoundError: naming the folder or run, when the data or a run's final checkpoint is missing.
    """
    import ablation

    recipe = ablation.build_parser().parse_args(["--output", str(folder)])
    val_root = folder / "data" / "val"
    if not val_root.is_dir():
        raise FileNotFoundError(f"--ablation {folder}: no data/val/ folder; run scripts/ablation.py there first")
    weights = {run: folder / "runs" / run / f"{run}_final.pth" for run in runs}
    for run, path in weights.items():
        if not path.is_file():
            raise FileNotFoundError(f"--runs {run}: {path} does not exist; name a finished run under "
                                    f"{folder / 'runs'}")
    return val_root, ablation.evaluation_size(recipe), weights


def measure_runs(path: Path, weights: dict[str, Path], keys: list[str], load, measure, describe) -> dict:
    """The resumable loop of a diagnosis: ``results[run][key] = measure(network, run, key)`` for every run and
    every key not yet in the JSON file ``path``, ``network = load(checkpoint)`` once per run with work left; the file
    is rewritten after each measurement and ``describe(run, key, entry)`` printed. Returns every result."""
    results = json.loads(path.read_text()) if path.is_file() else {}
    for run, pth in weights.items():
        todo = [key for key in keys if key not in results.get(run, {})]
        if not todo:
            continue
        network = load(pth)
        for key in todo:
            entry = measure(network, run, key)
            results.setdefault(run, {})[key] = entry
            print(describe(run, key, entry), flush=True)
            write_text(path, json.dumps(results, indent=1))
    return results


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--ablation, --runs and --device: which ablation runs a diagnosis reads, and where it runs them."""
    p.add_argument("--ablation", type=Path, default=Path("ablation_out"), metavar="FOLDER",
                   help="the output folder of scripts/ablation.py: its data, runs and evaluation size")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                   help="ablation runs to diagnose, by their folder under <ablation>/runs/, e.g. pcvos_s0")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, ...")


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    p = new_parser(__doc__)
    add_run_arguments(p)
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), metavar="VARIANT",
                   help=f"L<n>, L<n>-every<m>, L<n>-truth or L<n>-icr<k> (default: {' '.join(DEFAULT_VARIANTS)})")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for variant in args.variants:
        try:
            parse_variant(variant)
        except ValueError as error:
            parser.error(str(error))
    val_root, size, weights = ablation_checkpoints(args.ablation, args.runs)
    from inference.engine import prepare_network
    from model.checkpoint import build_model
    from util.runtime import resolve_device

    out = args.ablation / "memory"

    def load(pth: Path):
        network, _ = build_model(pth, resolve_device(args.device))
        return prepare_network(network)  # as scripts/ablation.py evaluates: the same masks, channels-last speed

    results = measure_runs(
        out / "memory.json", weights, args.variants, load,
        lambda network, run, variant: evaluate_variant(network, variant, val_root, size, out / run / variant),
        lambda run, variant, entry: f"[memory] {run} {variant}: J&F {entry['J&F']:.3f}")
    write_report(out, results)
    print(f"memory diagnosis: report in {out / 'memory.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
