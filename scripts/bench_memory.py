"""Long-video memory benchmark: peak memory, FPS and J&F per memory strategy and video length.

    python scripts/bench_memory.py --json docs/memory_bench.json --markdown docs/memory_bench.md
    python scripts/bench_memory.py --model quickstart_out/runs/quickstart/quickstart_final.pth ...

One synthetic video (dataset/synthetic.py, ``leave_and_return=True``: the objects
leave the frame and come back) is rendered frame by frame, never held whole.
Every (strategy, length) pair runs in a fresh subprocess so that its peak RSS
(``resource.getrusage``) is its own; the shorter lengths are prefixes of the
same video (same resolution, objects and motion). Only the first frame is
annotated. Reported per run:

* peak RSS of the process (MiB) and, on CUDA, ``torch.cuda.max_memory_allocated``;
* RSS and memory size sampled along the video (to see growth, not just the peak);
* engine FPS: frames / time spent inside ``engine.segment`` (rendering and
  scoring excluded), over the whole video and over its last 100 frames, on the
  process's CPU-time clock (robust to other jobs on a shared machine; equal to
  wall time on an idle one with one thread) and on the wall clock;
* J&F (DAVIS definitions, util/davis_metrics) on every ``--eval-every``-th
  frame, like the sparsely annotated Long-time Video set.

Without ``--model`` the network is the small model with deterministic
recipe weights: memory and speed are representative, J&F is not (an untrained
network). A checkpoint of train.py (e.g. the quickstart's) is used as is; a
quality head in it, or ``--quality-weights``, drives the ``quality`` strategy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from util.arguments import add_alias, frame_size, new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402

#: 'quality' uses the training-free confidence proxy, 'quality-head' the quality head (--quality-weights).
STRATEGY_ORDER = ("keep-all", "fifo", "afb", "quality", "quality-head")
#: FPS is also reported over the last TAIL_FRAMES frames: the same window at every length, taken after
#: the bounded memories have filled (20 memory frames at L = 5 fill by frame 100).
TAIL_FRAMES = 100


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser(__doc__)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGY_ORDER, default=None,
                        help="memory strategies to compare (default: all, quality-head only with --quality-weights)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[200, 2000], metavar="FRAMES",
                        help="video lengths to compare, in frames")
    parser.add_argument("--frame-size", type=frame_size, default=(128, 224), metavar="HxW",
                        help="size of the generated video's frames, height x width in pixels (default: 128x224)")
    parser.add_argument("--height", type=int, default=None, help=argparse.SUPPRESS)  # old names: one side each
    parser.add_argument("--width", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--objects", type=int, default=2, help="objects in the video")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated video")
    parser.add_argument("--clip-length", "-L", type=int, default=5, metavar="L",
                        help="frames per clip = memory interval")
    parser.add_argument("--max-memory-frames", type=int, default=None, help="default: the engine flag's default")
    parser.add_argument("--eval-every", type=int, default=10, help="score every N-th frame (default 10)")
    add_alias(parser, parser.add_argument(
        "--model", default=None, metavar="PTH",
        help="weights to run: a train.py / PCVOS .pth (default: the small model with recipe weights)"), "--checkpoint")
    parser.add_argument("--quality-weights", default=None, metavar="PTH",
                        help="quality-head weights for the quality strategy (default: none)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads per run (default 1: on a shared, busy machine two threads ran "
                             "15x slower than one, spinning in OpenMP barriers)")
    add_alias(parser, parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                                          help="write every run here as JSON (default: not written)"), "--out")
    parser.add_argument("--markdown", type=Path, default=None, metavar="FILE",
                        help="write the table here (default: printed only)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    height, width = args.frame_size
    args.frame_size = (args.height or height, args.width or width)
    return args


# --------------------------------------------------------------------------- one run (subprocess)


def _rss_mib() -> float:
    """Current resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def _network(checkpoint: str | None, quality_weights: str | None, device):
    from inference.cli import load_network
    from model.network import PCVOS, PCVOSConfig
    from util.recipe_weights import apply_recipe

    if checkpoint is not None:
        return load_network(checkpoint, device, quality_weights)
    net = apply_recipe(PCVOS(PCVOSConfig.small())).to(device).eval()
    if quality_weights is not None:
        from model.checkpoint import load_quality_head

        net.enable_quality_head()
        load_quality_head(net, quality_weights)
    return net


def run_one(spec: dict) -> dict:
    """Segment the first ``spec['length']`` frames with one strategy; returns the measurements."""
    import numpy as np
    import torch

    from dataset.frames import prepare_image
    from dataset.synthetic import SyntheticConfig, iter_frames
    from inference.engine import EngineConfig, FrameInput, PCVOSEngine, prepare_network
    from inference.memory_strategies import DEFAULT_MAX_FRAMES, MemoryOptions
    from util.davis_metrics import boundary_radius, object_frame_scores
    from util.runtime import resolve_device, synchronize

    torch.set_num_threads(spec["threads"])
    device = resolve_device(spec["device"])
    net = _network(spec["checkpoint"], spec["quality_weights"], device)
    strategy, source = spec["strategy"], "confidence"
    if strategy == "quality-head":
        strategy, source = "quality", "head"
    options = MemoryOptions(strategy, max_frames=spec["max_memory_frames"] or DEFAULT_MAX_FRAMES,
                            quality_source=source)
    stores = []
    factory = options.factory()

    def make_store():
        stores.append(factory())
        return stores[-1]

    engine = PCVOSEngine(prepare_network(net), EngineConfig(clip_length=spec["clip_length"]), memory_factory=make_store)
    length = spec["length"]
    config = SyntheticConfig(
        num_frames=spec["video_frames"], height=spec["height"], width=spec["width"], num_objects=spec["objects"],
        leave_and_return=True, seed=spec["seed"],
    )
    gt_masks: dict[int, np.ndarray] = {}
    timer = EngineTimer()

    def inputs():
        frames = iter_frames(config)
        for t in range(length):
            with timer.excluded():  # rendering is not the engine's time
                rgb, mask = next(frames)
                if t % spec["eval_every"] == 0 and t > 0:
                    gt_masks[t] = mask
                label = torch.from_numpy(mask.astype(np.int64)) if t == 0 else None
                item = FrameInput(t, prepare_image(rgb, -1), label)
            yield item

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    radius = boundary_radius(spec["height"], spec["width"])
    scores: dict[int, list[tuple[float, float]]] = {k: [] for k in range(1, spec["objects"] + 1)}
    samples, clock = [], []  # clock: engine (wall, CPU) seconds elapsed at each result
    warm = iter_frames(config)  # one untimed clip first: lazy initialisation is not a per-frame cost
    warm_frames = [next(warm) for _ in range(spec["clip_length"] + 1)]
    warm_inputs = (FrameInput(t, prepare_image(rgb, -1), torch.from_numpy(m.astype(np.int64)) if t == 0 else None)
                   for t, (rgb, m) in enumerate(warm_frames))
    for _ in engine.segment(warm_inputs):
        pass
    del warm, warm_frames
    timer.start()
    for result in engine.segment(inputs(), num_objects=spec["objects"]):
        clock.append(timer.elapsed())
        with timer.excluded():
            if result.index in gt_masks:
                pred = result.prob.argmax(0).cpu().numpy()
                gt = gt_masks.pop(result.index)
                for obj in scores:
                    scores[obj].append(object_frame_scores(np.ascontiguousarray(gt == obj),
                                                           np.ascontiguousarray(pred == obj), radius))
            if (result.index + 1) % 100 == 0 or result.index + 1 == length:
                samples.append({"frame": result.index + 1, "rss_mib": round(_rss_mib(), 1),
                                "memory_elements": stores[-1].num_elements()})
    synchronize(device)
    wall, cpu = timer.elapsed()
    per_object = [(np.mean([j for j, _ in s]), np.mean([f for _, f in s])) for s in scores.values() if s]
    j_mean = float(np.mean([j for j, _ in per_object])) if per_object else None
    f_mean = float(np.mean([f for _, f in per_object])) if per_object else None
    return {
        "strategy": spec["strategy"], "frames": length, "peak_rss_mib": resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "fps": len(clock) / max(wall, 1e-9), "fps_last_100": tail_fps([c[0] for c in clock]),
        "fps_cpu": len(clock) / max(cpu, 1e-9), "fps_cpu_last_100": tail_fps([c[1] for c in clock]),
        "J&F": None if j_mean is None else (j_mean + f_mean) / 2, "J": j_mean, "F": f_mean,
        "scored_frames": len(next(iter(scores.values()))), "memory": stores[-1].describe(),
        "samples": samples, "engine_seconds": wall, "engine_cpu_seconds": cpu,
        "excluded_seconds": timer.outside[0],
    }


class EngineTimer:
    """Engine time on two clocks, wall and this process's CPU time, minus the spans marked ``excluded``.

    CPU time is what makes runs comparable on a shared machine: with one thread it equals the wall
    time of an idle machine, and other people's jobs do not inflate it (they do inflate wall time).
    """

    def __init__(self) -> None:
        self.origin = (0.0, 0.0)
        self.outside = [0.0, 0.0]

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def start(self) -> None:
        self.origin = self._now()
        self.outside = [0.0, 0.0]

    def elapsed(self) -> tuple[float, float]:
        now = self._now()
        return tuple(n - o - x for n, o, x in zip(now, self.origin, self.outside))

    @contextlib.contextmanager
    def excluded(self):
        before = self._now()
        try:
            yield
        finally:
            after = self._now()
            for i in range(2):
                self.outside[i] += after[i] - before[i]


def tail_fps(clock: list[float], frames: int = TAIL_FRAMES) -> float:
    """Frames per second over the last ``frames`` results (about: aligned to clips).

    Results come in bursts of one clip: the window's start moves back to the end of a burst so that
    the interval holds exactly the frames counted.
    """
    first = max(0, len(clock) - frames - 1)
    while first > 0 and clock[first + 1] - clock[first] < 1e-3:
        first -= 1
    return (len(clock) - 1 - first) / max(clock[-1] - clock[first], 1e-9)


# --------------------------------------------------------------------------- driver


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    rows = report["runs"]
    lines = [
        "| strategy | frames | peak RSS (MiB) | RSS at frame 100 (MiB) | peak CUDA (MiB) | memory elements at end "
        "| memory MiB at end | FPS (CPU time) | same, last 100 frames | FPS (wall) | J&F | J | F |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        first = r["samples"][0]["rss_mib"] if r["samples"] else None
        lines.append(
            f"| {r['strategy']} | {r['frames']} | {_num(r['peak_rss_mib'], 0)} | {_num(first, 0)} | "
            f"{_num(r['peak_cuda_mib'], 0)} | {r['memory']['elements']} | {r['memory']['bytes'] / 2**20:.1f} | "
            f"{r['fps_cpu']:.2f} | {r['fps_cpu_last_100']:.2f} | {r['fps']:.2f} | {_num(r['J&F'], 3)} | "
            f"{_num(r['J'], 3)} | "
            f"{_num(r['F'], 3)} |"
        )
    return "\n".join(lines) + "\n"


def growth_lines(report: dict) -> str:
    """Peak RSS at the longest length vs the shortest, per strategy."""
    lengths = sorted({r["frames"] for r in report["runs"]})
    if len(lengths) < 2:
        return ""
    out = [f"\nPeak RSS {lengths[-1]} vs {lengths[0]} frames (same video prefix):\n"]
    for strategy in STRATEGY_ORDER:
        runs = {r["frames"]: r for r in report["runs"] if r["strategy"] == strategy}
        if lengths[0] in runs and lengths[-1] in runs:
            short, long_ = runs[lengths[0]], runs[lengths[-1]]
            rss = long_["peak_rss_mib"] / short["peak_rss_mib"] - 1
            fps = long_["fps_cpu"] / short["fps_cpu"] - 1
            tail = long_["fps_cpu_last_100"] / short["fps_cpu_last_100"] - 1
            out.append(f"* {strategy}: peak RSS {rss:+.1%}; FPS (CPU time) {fps:+.1%} over the whole video, "
                       f"{tail:+.1%} over the last {TAIL_FRAMES} frames")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print("RESULT " + json.dumps(run_one(json.loads(args.worker))), flush=True)
        return 0
    for flag, path in (("--model", args.model), ("--quality-weights", args.quality_weights)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path}: file not found; pass an existing checkpoint file")
    if args.strategies is None:
        args.strategies = [s for s in STRATEGY_ORDER if s != "quality-head" or args.quality_weights]
    runs = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    for strategy in args.strategies:
        for length in sorted(args.lengths):
            spec = {
                "strategy": strategy, "length": length, "video_frames": max(args.lengths),
                "height": args.frame_size[0], "width": args.frame_size[1], "objects": args.objects,
                "seed": args.seed, "clip_length": args.clip_length,
                "max_memory_frames": args.max_memory_frames, "eval_every": args.eval_every,
                "checkpoint": args.model, "quality_weights": args.quality_weights, "device": args.device,
                "threads": args.threads,
            }
            proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                                  capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                raise SystemExit(f"error: run {strategy} x {length} failed:\n{proc.stderr[-3000:]}")
            run = json.loads(line[len("RESULT "):])
            runs.append(run)
            print(f"{strategy:>8} {length:>5} frames: peak RSS {run['peak_rss_mib']:.0f} MiB, "
                  f"{run['fps_cpu']:.2f} FPS CPU time (last {TAIL_FRAMES}: {run['fps_cpu_last_100']:.2f}; wall "
                  f"{run['fps']:.2f}), J&F {_num(run['J&F'], 3)}, memory {run['memory']['elements']} elements",
                  flush=True)
    import torch

    report = {
        "date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{platform.system()} {platform.release()}, torch {torch.__version__}",
        "device": args.device, "threads": args.threads, "resolution": list(args.frame_size),
        "objects": args.objects, "clip_length": args.clip_length, "eval_every": args.eval_every,
        "model": args.model or "small model, recipe weights (untrained)",
        "quality_weights": args.quality_weights, "seconds": time.perf_counter() - began, "runs": runs,
    }
    table = markdown(report) + growth_lines(report)
    print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(table)
    print(f"{len(runs)} runs in {report['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
