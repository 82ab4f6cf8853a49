"""Speed benchmark: our engine against a re-enactment of the official core, on a generated video.

    python scripts/benchmark.py --cpu-preset --baseline --end-to-end          # the CPU table of docs/benchmarks.md
    python scripts/benchmark.py --device cuda --frames 100 --baseline         # 480p on a GPU

Protocol (every figure of docs/benchmarks.md comes from it):

* a video of ``--frames`` T frames at ``--frame-size`` HxW with ``--objects`` K moving
  objects is generated (deterministic, seed 0); all objects are annotated at
  frame 0 and every frame is segmented (T frames counted, as the released
  ``--time`` flag counts);
* for each clip length L, each precision, and (``--baseline``) the
  official-like core (``scripts/official_like.py``: OUR re-enactment of how
  the released code is organised, not the released code): ``--warmup``
  untimed runs on a short video, then ``--repeats`` timed runs of the whole
  video; the variants are interleaved within every repeat so that load from
  other processes hits all of them alike; the median is reported;
* engine FPS = T / wall time from the first frame in to the last mask out
  (masks arg-maxed at the working size, no disk input/output), with device
  synchronisation;
* peak memory: the process's resident set (sampled every 5 ms during the
  timed runs; also the rise over the RSS before the run) and, on CUDA,
  ``torch.cuda.max_memory_allocated``;
* agreement: the fraction of pixels whose mask equals ours in fp32 (for the
  baseline and the reduced precisions) and the largest probability difference;
* ``--end-to-end``: ``--videos`` such videos written as JPEG frames +
  annotation PNG in the generic layout; ours runs them through
  ``run_benchmark`` (frames decoded ahead by workers, masks written by a
  thread while the engine computes); the official-like pipeline decodes each
  video whole (DataLoader over videos, 2 workers, as released), segments it,
  then writes every mask. FPS = frames / wall time of the whole dataset.

Results go to ``<out>.json`` (merged by run key) and into a marked block of
``<out>.md`` (replaced on re-runs, the rest of the page is left alone).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from dataset.benchmarks import generic_benchmark  # noqa: E402
from dataset.frames import list_frames, prepare_image, read_rgb  # noqa: E402
from inference.benchmark_run import run_benchmark  # noqa: E402
from inference.cli import load_network  # noqa: E402
from inference.engine import EngineConfig, FrameInput, PCVOSEngine, prepare_network  # noqa: E402
from model.network import PCVOS, PCVOSConfig  # noqa: E402
from scripts import official_like as official_like_module  # noqa: E402
from scripts.official_like import OfficialLikeCore, masks_from_probabilities  # noqa: E402
from util.arguments import add_alias, frame_size, new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.palette import read_index_png, write_index_png  # noqa: E402
from util.recipe_weights import apply_recipe  # noqa: E402
from util.runtime import resolve_device, synchronize  # noqa: E402

CPU_PRESET = {"size": "240x432", "frames": 26, "repeats": 3, "warmup": 1}
BASELINE = "official-like"
OURS = "ours"


# =============================================================================================
# The generated video
# =============================================================================================


def make_video(frames: int, height: int, width: int, objects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured scene with ``objects`` textured ellipses drifting across it.

    Returns:
        (uint8 RGB frames [T, H, W, 3], uint8 index mask of frame 0 [H, W] with ids 1..K).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    coarse = rng.uniform(0, 255, (3, 6, 10)).astype(np.float32)
    background = np.stack([np.array(Image.fromarray(c).resize((width, height), Image.BICUBIC)) for c in coarse], -1)
    background += rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    shapes = []
    for k in range(objects):
        colour = rng.uniform(30, 225, 3).astype(np.float32)
        centre = rng.uniform([0.25 * height, 0.2 * width], [0.75 * height, 0.8 * width])
        radius = rng.uniform(0.08, 0.18, 2) * min(height, width) * np.array([1.0, 1.6])
        velocity = rng.uniform(-1, 1, 2) * min(height, width) * 0.01
        stripes = 20 * np.sin(xx / (4 + 3 * k) + yy / (7 + k))
        shapes.append((colour, centre, radius, velocity, stripes))
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    label = np.zeros((height, width), dtype=np.uint8)
    for t in range(frames):
        frame = background + rng.normal(0, 3, (height, width, 3)).astype(np.float32)
        for k, (colour, centre, radius, velocity, stripes) in enumerate(shapes):
            cy, cx = centre + velocity * t
            inside = ((yy - cy) / radius[0]) ** 2 + ((xx - cx) / radius[1]) ** 2 <= 1.0
            frame[inside] = colour + stripes[inside, None]
            if t == 0:
                label[inside] = k + 1
        video[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return video, label


def write_generic_dataset(root: Path, videos: int, frames: int, height: int, width: int, objects: int) -> Path:
    """``videos`` generated videos as JPEGImages/<v>/<t>.jpg + Annotations/<v>/00000.png."""
    for v in range(videos):
        name = f"bench{v:02d}"
        video, label = make_video(frames, height, width, objects, seed=v)
        folder = root / "JPEGImages" / name
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(video):
            Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=90)
        write_index_png(root / "Annotations" / name / "00000.png", label)
    return root


# =============================================================================================
# Measuring
# =============================================================================================


class PeakRSS:
    """Peak resident set size of this process while the context is open (sampled on a thread)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; peak RSS from getrusage elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Timing:
    """Timed runs of one variant."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # user + system time of this process's threads
    peak_rss: int = 0
    rss_rise: int = 0
    cuda_peak: int | None = None

    def record(self, seconds: float, cpu_seconds: float, meter: PeakRSS, device: torch.device) -> None:
        self.seconds.append(seconds)
        self.cpu_seconds.append(cpu_seconds)
        self.peak_rss = max(self.peak_rss, meter.peak)
        self.rss_rise = max(self.rss_rise, meter.peak - meter.start)
        if device.type == "cuda":
            self.cuda_peak = max(self.cuda_peak or 0, torch.cuda.max_memory_allocated(device))


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float, PeakRSS]:
    """Run ``fn`` once: (wall seconds, CPU seconds of this process, the RSS meter), synchronised.

    CPU time (all threads of this process, not DataLoader worker processes) barely
    moves when other processes load the machine, so its ratios are the steadier ones.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    with PeakRSS() as meter:
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return seconds, cpu_seconds, meter


def run_engine(engine: PCVOSEngine, images: torch.Tensor, label: torch.Tensor, objects: int, keep: bool = False):
    """Ours: stream the frames through the engine.

    Returns:
        (uint8 masks [T, H, W] at the working size, per-frame probabilities on the CPU if ``keep`` else None).
    """
    frames = (FrameInput(t, images[t], label if t == 0 else None) for t in range(images.shape[0]))
    masks, probs = [], []
    for result in engine.segment(frames, num_objects=objects):
        masks.append(result.prob.argmax(0).to(torch.uint8).cpu())
        if keep:
            probs.append(result.prob.float().cpu())
    return torch.stack(masks).numpy(), probs if keep else None


def run_baseline(core: OfficialLikeCore, images: torch.Tensor, label: torch.Tensor, objects: int, keep: bool = False):
    """Official-like: whole video in, whole probability buffer [K + 1, T, H, W] out, then all masks."""
    prob = core.segment(images, label, objects)
    masks = masks_from_probabilities(prob, tuple(images.shape[-2:]))
    return masks, [prob[:, t].cpu() for t in range(prob.shape[1])] if keep else None


def agreement(masks: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of pixels (all frames but the annotated one) with the same object id."""
    return float((masks[1:] == reference[1:]).mean())


def max_prob_diff(probs: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Largest absolute difference between two lists of per-frame probabilities [C, H, W]."""
    return max(float((a - b).abs().max()) for a, b in zip(probs, reference))


# =============================================================================================
# The benchmark
# =============================================================================================


def build_network(model: str, device: torch.device) -> PCVOS:
    """'recipe' = the paper network with recipe weights; 'small-recipe' = the small model (tests); else a file."""
    if model == "small-recipe":
        return apply_recipe(PCVOS(PCVOSConfig.small())).to(device).eval()
    return load_network(model, device)


def engine_config(args: argparse.Namespace, clip_length: int, precision: str) -> EngineConfig:
    return EngineConfig(
        clip_length=clip_length,
        memory_read=args.memory_read,
        precision=precision,
        **_optional_engine_flags(args),
    )


def _optional_engine_flags(args: argparse.Namespace) -> dict:
    """Engine options this checkout's EngineConfig knows (older checkouts lack some)."""
    known = EngineConfig.__dataclass_fields__
    flags = {"channels_last": not args.no_channels_last, "compile": args.compile,
             "fused_attention": args.fused_attention}
    return {k: v for k, v in flags.items() if k in known}


def engine_benchmark(args: argparse.Namespace, device: torch.device, log: Callable[[str], None]) -> list[dict]:
    """Every (L, variant): warm-up runs (the first one's outputs are the agreement check), then
    interleaved timed runs. One row per (L, variant)."""
    height, width = args.size
    video, label_np = make_video(args.frames, height, width, args.objects)
    images = torch.stack([prepare_image(f, -1) for f in video])
    label = torch.from_numpy(label_np.astype(np.int64))

    ours_net = build_network(args.model, device)
    base_net = build_network(args.model, device) if args.baseline else None
    device_images, device_label = images.to(device), label.to(device)  # the released code moves the whole video
    rows = []
    for clip_length in args.clip_lengths:
        variants: dict[str, Callable[[bool], tuple]] = {}
        for precision in args.precision:
            config = engine_config(args, clip_length, precision)
            engine = PCVOSEngine(prepare_network(ours_net, config), config)
            variants[f"{OURS} {precision}"] = lambda keep, e=engine: run_engine(e, images, label, args.objects, keep)
        if base_net is not None:
            core = OfficialLikeCore(base_net, clip_length)
            variants[f"{BASELINE} fp32"] = lambda keep, c=core: run_baseline(
                c, device_images, device_label, args.objects, keep
            )
        checks = warm_up_and_check(variants, args.warmup)
        timings = {name: Timing() for name in variants}
        for repeat in range(args.repeats):
            for name, fn in variants.items():
                seconds, cpu_seconds, meter = timed(lambda fn=fn: fn(False), device)
                timings[name].record(seconds, cpu_seconds, meter, device)
                log(f"L={clip_length} {name}: run {repeat + 1}/{args.repeats} {args.frames / seconds:.3f} FPS")
        rows += summarise(timings, clip_length, args.frames, checks)
        if args.profile:
            stages = {OURS: (ours_net, None), BASELINE: (base_net, official_like_module)}
            for name, fn in variants.items():
                net, module = stages[name.split(" ")[0]]
                with StageTimer(net, module, device) as timer:
                    total, _, _ = timed(lambda fn=fn: fn(False), device)
                row = next(r for r in rows if r["clip_length"] == clip_length and f"{r['variant']} {r['precision']}"
                           == name)
                row["profile_seconds"] = {**timer.seconds, "total": round(total, 3)}
                log(f"L={clip_length} {name}: stages {timer.seconds}")
    return rows


#: Stages timed by --profile: network methods (ours and official-like) and the official-like dense readout.
PROFILED_STAGES = ("encode_key", "encode_value", "refine_keys", "refine_clip", "decode", "decode_context",
                   "decode_objects")


class StageTimer:
    """Wall time per network stage during one run (device synchronised around every call)."""

    def __init__(self, net: PCVOS, module, device: torch.device) -> None:
        self.targets = [(net, n) for n in PROFILED_STAGES] + ([(module, "dense_topk_readout")] if module else [])
        self.device = device
        self.seconds: dict[str, float] = {}
        self._saved: list[tuple[object, str, object, bool]] = []

    def _wrap(self, name: str, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            synchronize(self.device)
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)
            return out

        return call

    def __enter__(self) -> StageTimer:
        for obj, name in self.targets:
            own = name in vars(obj)
            fn = getattr(obj, name)
            self._saved.append((obj, name, vars(obj).get(name), own))
            setattr(obj, name, self._wrap(name, fn))
        return self

    def __exit__(self, *exc) -> None:
        for obj, name, previous, own in reversed(self._saved):
            if own:
                setattr(obj, name, previous)
            else:
                delattr(obj, name)


def summarise(timings: dict[str, Timing], clip_length: int, frames: int, checks: dict | None = None) -> list[dict]:
    """One row per variant: medians, FPS, memory, and ratios to the official-like variant (wall and CPU time)."""
    base = timings.get(f"{BASELINE} fp32")
    rows = []
    for name, timing in timings.items():
        median, cpu_median = statistics.median(timing.seconds), statistics.median(timing.cpu_seconds)
        row = {
            "clip_length": clip_length,
            "variant": name.split(" ")[0],
            "precision": name.split(" ")[1],
            "fps": frames / median,
            "seconds": timing.seconds,
            "median_seconds": median,
            "cpu_seconds": timing.cpu_seconds,
            "median_cpu_seconds": cpu_median,
            "peak_rss_mb": timing.peak_rss / 2**20,
            "rss_rise_mb": timing.rss_rise / 2**20,
            "cuda_max_allocated_mb": None if timing.cuda_peak is None else timing.cuda_peak / 2**20,
            **(checks or {}).get(name, {}),
        }
        if base is not None:
            row["speedup_vs_official_like"] = statistics.median(base.seconds) / median
            row["cpu_time_speedup_vs_official_like"] = statistics.median(base.cpu_seconds) / cpu_median
        rows.append(row)
    return rows


def warm_up_and_check(variants: dict[str, Callable[[bool], tuple]], warmup: int) -> dict[str, dict]:
    """Untimed runs of every variant; the first one's outputs are compared with ours in fp32 and dropped."""
    if warmup < 1:
        return {}
    outputs = {name: fn(True) for name, fn in variants.items()}
    for _ in range(warmup - 1):
        for fn in variants.values():
            fn(False)
    reference = outputs.get(f"{OURS} fp32")
    checks = {}
    for name, (masks, probs) in outputs.items():
        if reference is not None and name != f"{OURS} fp32":
            checks[name] = {
                "mask_agreement_vs_ours_fp32": agreement(masks, reference[0]),
                "max_prob_diff_vs_ours_fp32": max_prob_diff(probs, reference[1]),
            }
    return checks


# -- end to end ----------------------------------------------------------------------------------


class _WholeVideos(Dataset):
    """One item = one whole decoded video (the released data path)."""

    def __init__(self, root: Path) -> None:
        self.videos = sorted(p for p in (root / "JPEGImages").iterdir() if p.is_dir())
        self.root = root

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        folder = self.videos[index]
        frames = list_frames(folder)
        images = torch.stack([prepare_image(read_rgb(p), -1) for p in frames])
        label = read_index_png(self.root / "Annotations" / folder.name / f"{frames[0].stem}.png")
        return {"name": folder.name, "stems": [p.stem for p in frames], "images": images,
                "label": torch.from_numpy(label.astype(np.int64))}


def official_like_dataset_run(core: OfficialLikeCore, root: Path, out: Path, objects: int, workers: int = 2) -> int:
    """Decode each video whole (2 workers, as released), segment it, then write all its masks. Returns frames."""
    loader = DataLoader(_WholeVideos(root), batch_size=None, num_workers=workers)
    count = 0
    for item in loader:
        images = item["images"].to(next(core.net.parameters()).device)
        masks = masks_from_probabilities(core.segment(images, item["label"].to(images.device), objects),
                                         tuple(images.shape[-2:]))
        for stem, mask in zip(item["stems"], masks):
            write_index_png(out / item["name"] / f"{stem}.png", mask)
        count += len(masks)
    return count


def end_to_end_benchmark(args: argparse.Namespace, device: torch.device, log: Callable[[str], None]) -> list[dict]:
    """Whole generated dataset: decode + segment + write, ours vs official-like, interleaved repeats."""
    height, width = args.size
    rows = []
    with tempfile.TemporaryDirectory(prefix="pcvos-bench-") as tmp:
        root = write_generic_dataset(Path(tmp) / "data", args.videos, args.frames, height, width, args.objects)
        total = args.videos * args.frames
        ours_net = build_network(args.model, device)
        base_net = build_network(args.model, device)
        for clip_length in args.clip_lengths:
            variants: dict[str, Callable[[Path], object]] = {}
            for precision in args.precision:
                config = engine_config(args, clip_length, precision)
                engine = PCVOSEngine(prepare_network(ours_net, config), config)
                variants[f"{OURS} {precision}"] = lambda out, e=engine: run_benchmark(
                    e, generic_benchmark(root, out), size=-1, workers=args.workers, finalize=False, log=lambda _: None
                )
            core = OfficialLikeCore(base_net, clip_length)
            variants[f"{BASELINE} fp32"] = lambda out, c=core: official_like_dataset_run(
                c, root, out, args.objects, args.workers
            )
            timings = {name: Timing() for name in variants}
            for repeat in range(args.repeats):
                for i, (name, fn) in enumerate(variants.items()):
                    out = Path(tmp) / f"out-{clip_length}-{i}-{repeat}"
                    seconds, cpu_seconds, meter = timed(lambda fn=fn, out=out: fn(out), device)
                    timings[name].record(seconds, cpu_seconds, meter, device)
                    log(f"end to end L={clip_length} {name}: run {repeat + 1}/{args.repeats} "
                        f"{total / seconds:.3f} FPS")
            rows += summarise(timings, clip_length, total)
    return rows


# =============================================================================================
# Reporting
# =============================================================================================


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages (other processes competing for the CPU), where the OS has them."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def run_key(args: argparse.Namespace, device: torch.device) -> str:
    key = f"{device.type}-{args.size[0]}x{args.size[1]}-K{args.objects}-T{args.frames}"
    key += "-e2e" if args.no_engine else ""
    return f"{key}-{args.tag}" if args.tag else key


def markdown_block(key: str, result: dict) -> str:
    """The results of one run as Markdown tables."""
    lines = [
        f"### {key}",
        "",
        f"{result['date']}, {result['machine']}, torch {result['torch']}; {result['size']}, "
        f"{result['objects']} objects, {result['frames']} frames, {result['repeats']} interleaved repeats "
        f"(median), model `{result['model']}`, memory read {result['memory_read']}; load average "
        f"{result.get('load_average_before')} before, {result.get('load_average_after')} after; engine "
        f"options {result.get('engine_flags')}.",
    ]
    if result["engine"]:
        lines += [
            "",
            "| L | variant | precision | engine FPS | vs official-like | CPU s / frame | vs official-like (CPU time) "
            "| peak RSS (MB) | CUDA max alloc (MB) | mask agreement vs ours fp32 | max prob diff vs ours fp32 |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    frames = result["frames"]
    for r in result["engine"]:
        cuda = "-" if r["cuda_max_allocated_mb"] is None else f"{r['cuda_max_allocated_mb']:.0f}"
        agree = f"{100 * r['mask_agreement_vs_ours_fp32']:.3f} %" if "mask_agreement_vs_ours_fp32" in r else "-"
        diff = f"{r['max_prob_diff_vs_ours_fp32']:.1e}" if "max_prob_diff_vs_ours_fp32" in r else "-"
        lines.append(f"| {r['clip_length']} | {r['variant']} | {r['precision']} | {r['fps']:.3f} "
                     f"| {_ratio(r, 'speedup_vs_official_like')} | {r['median_cpu_seconds'] / frames:.2f} "
                     f"| {_ratio(r, 'cpu_time_speedup_vs_official_like')} | {r['peak_rss_mb']:.0f} | {cuda} "
                     f"| {agree} | {diff} |")
    profiled = [r for r in result["engine"] if r.get("profile_seconds")]
    if profiled:
        lines += ["", "Per-stage wall time of one run (--profile; device synchronised around every stage):", ""]
        for r in profiled:
            stages = dict(r["profile_seconds"])
            total = stages.pop("total")
            stages["rest"] = total - sum(stages.values())
            parts = ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f} %)"
                              for k, v in sorted(stages.items(), key=lambda kv: -kv[1]))
            lines.append(f"* L={r['clip_length']} {r['variant']} {r['precision']}: {parts}")
    if result.get("end_to_end"):
        lines += [
            "",
            f"End to end ({result['videos']} videos x {result['frames']} frames: decode JPEG, segment, write PNG):",
            "",
            "| L | variant | precision | FPS | vs official-like | peak RSS (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["end_to_end"]:
            lines.append(f"| {r['clip_length']} | {r['variant']} | {r['precision']} | {r['fps']:.3f} "
                         f"| {_ratio(r, 'speedup_vs_official_like')} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def _ratio(row: dict, key: str) -> str:
    return f"{row[key]:.2f}x" if key in row else "-"


def write_reports(prefix: Path, key: str, result: dict) -> tuple[Path, Path]:
    """Merge ``result`` into ``<prefix>.json`` and replace its block in ``<prefix>.md``."""
    json_path, md_path = prefix.with_suffix(".json"), prefix.with_suffix(".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(json_path.read_text()) if json_path.is_file() else {"runs": {}}
    data["runs"][key] = result
    json_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    begin, end = f"<!-- results {key} begin -->", f"<!-- results {key} end -->"
    block = f"{begin}\n{markdown_block(key, result)}\n{end}"
    text = md_path.read_text() if md_path.is_file() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    md_path.write_text(text)
    return json_path, md_path


# =============================================================================================
# Command line
# =============================================================================================


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    p = new_parser(__doc__)
    add_alias(p, p.add_argument("--frame-size", dest="size", type=frame_size, default=None, metavar="HxW",
                                help="size of the generated video's frames, height x width in pixels "
                                     "(default 480x854; 240x432 with --cpu-preset)"), "--size")
    p.add_argument("--cpu-preset", action="store_true",
                   help=f"the CPU protocol: {CPU_PRESET} (explicit flags still win)")
    add_alias(p, p.add_argument("--objects", type=int, default=2, help="objects in the video (default 2)"), "-K")
    add_alias(p, p.add_argument("--frames", type=int, default=None,
                                help="frames per video (default 50; 26 with the preset)"), "-T")
    p.add_argument("--clip-lengths", type=int, nargs="+", default=[5, 25], metavar="L",
                   help="values of L to compare (default 5 25)")
    add_alias(p, p.add_argument(
        "--precisions", dest="precision", nargs="+", choices=["fp32", "bf16", "fp16"], default=None,
        help="precisions of our engine to compare (default fp32 bf16, plus fp16 on CUDA); the baseline is fp32"),
        "--precision")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per variant (default 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs on a short video first (default 1)")
    p.add_argument("--baseline", action="store_true", help="also time the official-like re-enactment (fp32)")
    p.add_argument("--end-to-end", action="store_true",
                   help="also time a whole generated dataset (JPEG decode, segment, PNG write), ours vs official-like")
    p.add_argument("--videos", type=int, default=3, help="videos of the end-to-end dataset (default 3)")
    p.add_argument("--workers", type=int, default=2,
                   help="decoding workers of both end-to-end pipelines (default 2, as the released script)")
    add_alias(p, p.add_argument(
        "--model", default="recipe", metavar="PTH",
        help="weights to run: a .pth file, 'recipe' (paper network, recipe weights; default) or 'small-recipe'"),
        "--checkpoint")
    p.add_argument("--memory-read", choices=["pmm", "parallel"], default="pmm",
                   help="pmm: progressive memory matching; parallel: one affinity per clip")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW convolutions in our engine")
    p.add_argument("--compile", default=None, choices=["default", "reduce-overhead", "max-autotune"],
                   help="torch.compile the network stages (reduce-overhead = CUDA graphs) (default: off)")
    p.add_argument("--fused-attention", action="store_true",
                   help="refinement windows through scaled_dot_product_attention (slower on CPU; try on GPU)")
    p.add_argument("--no-engine", action="store_true", help="skip the engine table (with --end-to-end)")
    p.add_argument("--profile", action="store_true", help="one more run per variant with per-stage timers")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_alias(p, p.add_argument("--report", dest="out", type=Path, default=Path("docs/benchmarks"), metavar="STEM",
                                help="writes STEM.json and a block of STEM.md (default docs/benchmarks)"), "--out")
    p.add_argument("--tag", default="", help="suffix of the run key (keeps several runs of one setting apart; "
                                             "default: none)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    preset = CPU_PRESET if args.cpu_preset else {"size": "480x854", "frames": 50, "repeats": 3, "warmup": 1}
    args.size = args.size or frame_size(preset["size"])
    for name in ("frames", "repeats", "warmup"):
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    if args.frames < 2 or args.repeats < 1 or args.warmup < 0 or args.objects < 1:
        p.error("need --frames >= 2, --repeats >= 1, --warmup >= 0, --objects >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.precision is None:
        args.precision = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    if device.type == "cpu" and "fp16" in args.precision:
        raise ValueError(f"--precision fp16: needs a CUDA device (--device {args.device} is the CPU); use bf16")
    if "fp32" not in args.precision:
        args.precision = ["fp32", *args.precision]  # the reference for mask agreement
    log = (lambda _: None) if args.quiet else (lambda text: print(text, flush=True))
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(device),
        "device": str(device),
        "torch": torch.__version__,
        "size": f"{args.size[0]}x{args.size[1]}",
        "objects": args.objects,
        "frames": args.frames,
        "videos": args.videos,
        "clip_lengths": args.clip_lengths,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "model": args.model,
        "memory_read": args.memory_read,
        "engine_flags": _optional_engine_flags(args),
        "baseline": f"{BASELINE}: scripts/official_like.py, our re-enactment of the released core's structure",
        "load_average_before": _load_average(),
    }
    result["engine"] = [] if args.no_engine else engine_benchmark(args, device, log)
    if args.end_to_end:
        result["end_to_end"] = end_to_end_benchmark(args, device, log)
    result["load_average_after"] = _load_average()
    key = run_key(args, device)
    json_path, md_path = write_reports(args.out, key, result)
    print(markdown_block(key, result))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
