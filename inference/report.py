"""What a driver ran and what it cost: its first line and its summary line (docs/evaluation.md, 'What ran').

* :func:`header_line`: model, device, precision, L, memory strategy and budget, flip and size, printed
  by every inference driver before its first video;
* :class:`RunMonitor`: peak memory (resident memory of the process, CUDA memory on a GPU) and the
  memory store a video keeps at its end, watched on the engine's memory factory;
* :func:`summary_line`: videos, frames, time, FPS, peak memory and memory kept, the driver's last line.
"""

from __future__ import annotations

import argparse
import resource
from collections.abc import Callable, Sequence

import torch

from inference.memory_store import MemoryStore
from inference.settings import EngineConfig

MIB = 2**20


def _memory_text(args: argparse.Namespace) -> str:
    strategy = getattr(args, "memory", "keep-all")
    frames = getattr(args, "max_memory_frames", None)
    if strategy == "keep-all":
        return "keep-all (no budget: one frame per clip, kept)"
    if strategy == "fifo":
        return f"fifo (budget: the annotated frames + the {frames} most recent)"
    if strategy == "quality":
        return (f"quality (budget: the annotated frames + {frames}, admitted at quality >= "
                f"{args.quality_threshold} x the annotated frame's, source {args.quality_source})")
    budget = getattr(args, "memory_budget", None)
    elements = f"{budget} elements" if budget is not None else f"{frames + 1} frames' worth of elements"
    return f"afb (budget: {elements})"


def _bytes_text(size: float) -> str:
    """'3.5 MiB', or '38.5 KiB' under one MiB."""
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size / 1024:.1f} KiB"


def _device_text(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def header_line(
    driver: str, args: argparse.Namespace, device: torch.device, clip_lengths: int | Sequence[int],
    size: str | None = None, extra: Sequence[str] = (), config: EngineConfig | None = None,
) -> str:
    """'DRIVER: model M | device D | precision P | L n | memory S (budget) | flip on/off | size N[ | EXTRA]'.

    ``args``: the driver's namespace; ``config``: the ``EngineConfig`` the engine runs with, whose precision,
    compile mode and flip are shown (they may come from the checkpoint, not the flags; without it they are
    read from ``args``); ``clip_lengths``: one L, or the sweep's list; ``size``: the size text when it is not
    ``args.size``; ``extra``: the driver's own settings that change what runs.
    """
    source = args if config is None else config
    lengths = [clip_lengths] if isinstance(clip_lengths, int) else list(clip_lengths)
    if size is None:
        size = "original resolution" if args.size < 0 else f"{args.size} (short side)"
    model = "recipe (untrained test weights)" if args.model == "recipe" else args.model
    if getattr(args, "quality_weights", None):
        model += f" + quality head {args.quality_weights}"
    parts = [
        f"model {model}",
        f"device {_device_text(device)}",
        f"precision {source.precision}" + (f", compile {source.compile}" if getattr(source, "compile", None) else ""),
        f"L {' '.join(str(n) for n in lengths)}",
        f"memory {_memory_text(args)}",
        f"flip {'on' if getattr(source, 'flip', False) else 'off'}",
        f"size {size}",
        *extra,
    ]
    return f"{driver}: " + " | ".join(parts)


def start_run(driver: str, args: argparse.Namespace, engine, extra: Sequence[str] = ()) -> RunMonitor:
    """Print the driver's first line (:func:`header_line`) and watch ``engine`` (returns the monitor)."""
    monitor = RunMonitor(engine.device)
    monitor.watch(engine)
    print(header_line(driver, args, engine.device, engine.config.clip_length, extra=extra, config=engine.config),
          flush=True)
    return monitor


class RunMonitor:
    """Peak memory since :meth:`reset`, and the largest memory store a video kept at its end.

    :meth:`watch` wraps an engine's memory factory: every store a session creates is seen; when the next
    session starts, the stores of the previous one (the video's memory and, with flip, its mirror's) are
    measured and let go. RSS: ``ru_maxrss``, reset on Linux through /proc/self/clear_refs (where that
    fails the figure is the process's peak so far: ``rss_since_reset`` says which); frame-decoding worker
    processes are not included.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_since_reset = False
        self._current: list[MemoryStore] = []
        self.kept: dict[str, int] | None = None
        self.reset()

    def watch(self, engine):
        """Watch ``engine``'s memory stores (returns the engine)."""
        engine.memory_factory = self.wrap(engine.memory_factory)
        return engine

    def wrap(self, factory: Callable[[], MemoryStore]) -> Callable[[], MemoryStore]:
        def create() -> MemoryStore:
            if self._current and all(store.entries for store in self._current):
                self._measure()  # a new video: the last one's memory is final
            store = factory()
            self._current.append(store)
            return store

        create.watched = factory  # type: ignore[attr-defined]
        return create

    def reset(self) -> None:
        """Start measuring: peaks and the memory kept from now on."""
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.rss_since_reset = True
        except OSError:
            self.rss_since_reset = False
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._current = []
        self.kept = None

    def _measure(self) -> None:
        stores, self._current = self._current, []
        if not stores:
            return
        size = {
            "frames": sum(len(s.entries) for s in stores),
            "elements": sum(s.num_elements() for s in stores),
            "bytes": sum(s.nbytes() for s in stores),
        }
        if self.kept is None or size["bytes"] > self.kept["bytes"]:
            self.kept = size

    def read(self) -> dict:
        """Peak RSS and CUDA memory in MiB, and the memory kept at the end of a video (the largest)."""
        self._measure()
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        cuda = torch.cuda.max_memory_allocated(self.device) / MIB if self.device.type == "cuda" else None
        kept = self.kept or {"frames": 0, "elements": 0, "bytes": 0}
        return {"peak_rss_mib": rss_kib / 1024, "peak_cuda_mib": cuda, "rss_since_reset": self.rss_since_reset,
                "kept_frames": kept["frames"], "kept_elements": kept["elements"], "kept_mib": kept["bytes"] / MIB}

    def describe(self) -> str:
        """'peak memory 812 MiB RSS, 1020 MiB CUDA; memory kept at the end: 14 frames, 8960 elements, 3.5 MiB'."""
        figures = self.read()
        peak = f"peak memory {figures['peak_rss_mib']:.0f} MiB RSS"
        if figures["peak_cuda_mib"] is not None:
            peak += f", {figures['peak_cuda_mib']:.0f} MiB CUDA"
        frames = figures["kept_frames"]
        return (f"{peak}; memory kept at the end of a video: {frames} frame{'s' if frames != 1 else ''}, "
                f"{figures['kept_elements']} elements, {_bytes_text(figures['kept_mib'] * MIB)}")


def summary_line(
    name: str, videos: str, frames: int, seconds: float, engine_seconds: float, monitor: RunMonitor | None,
    note: str = "",
) -> str:
    """'NAME: VIDEOS, F frames in S s; X FPS end to end, Y FPS engine[NOTE]; peak memory ...; memory kept ...'.

    ``videos``: what was segmented ('1 video', '30 videos').
    """
    line = (
        f"{name}: {videos}, {frames} frames in {seconds:.1f} s; "
        f"{frames / max(seconds, 1e-9):.2f} FPS end to end, {frames / max(engine_seconds, 1e-9):.2f} FPS engine"
        f"{note}"
    )
    return line if monitor is None else f"{line}; {monitor.describe()}"


def benchmark_summary(result, monitor: RunMonitor | None) -> str:
    """:func:`summary_line` of a benchmark run (``BenchmarkResult``: shard and skipped videos noted)."""
    shard = "" if result.shard.is_whole else f" (shard {result.shard})"
    skipped = f"; {result.skipped} complete videos skipped" if result.skipped else ""
    return summary_line(f"{result.name}{shard}", f"{result.videos} videos", result.frames, result.seconds,
                        result.engine_seconds, monitor, skipped)
