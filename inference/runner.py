"""Glue between a video source, the engine and the mask writer (shared by every driver)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dataset.frames import VideoSource, frame_loader, label_palette, label_values, prepare_image, prepare_label
from dataset.masks import VOID
from inference.engine import FrameInput, PCVOSEngine
from util.paths import safe_name
from util.runtime import synchronize
from util.video_io import prefetch
from util.writer import AtomicFolder, MaskWriter, write_stamp


@dataclass
class VideoStats:
    """What one video cost.

    ``engine_seconds`` is the wall time minus the time spent waiting for decoded
    frames and handing masks to the writer thread: it covers the network, the
    memory, and turning probabilities into masks at the output size (as the
    released ``--time`` flag did), not disk input/output.
    """

    name: str
    frames: int  # frames segmented (annotated frames included)
    seconds: float  # wall time of the whole video
    engine_seconds: float

    @property
    def fps(self) -> float:
        return self.frames / max(self.engine_seconds, 1e-9)


def probabilities_to_mask(prob: torch.Tensor, out_size: tuple[int, int], lut: torch.Tensor) -> np.ndarray:
    """[K + 1, h, w] probabilities -> uint8 [H, W] original object ids.

    Bilinear resize (align_corners=False) to the output size, argmax over the
    channels (background included), then internal ids -> original values.
    """
    if tuple(prob.shape[-2:]) != tuple(out_size):
        prob = F.interpolate(prob[None], size=out_size, mode="bilinear", align_corners=False)[0]
    return lut[prob.argmax(0)].to(torch.uint8).cpu().numpy()


def segment_source(
    engine: PCVOSEngine,
    source: VideoSource,
    size: int,
    output: Path | None,
    writer: MaskWriter | None,
    workers: int = 2,
    write_frames: Callable[[int], bool] | None = None,
    on_prob: Callable[[int, torch.Tensor], None] | None = None,
    output_size: tuple[int, int] | None = None,
    stamp: dict | None = None,
) -> VideoStats:
    """Segment one video and write ``<output>/<video>/<frame>.png`` (complete or absent).

    Args:
        engine: the inference engine.
        source: frames and annotations.
        size: working short side (-1 keeps the original resolution).
        output: results root, or None to write nothing.
        writer: background PNG writer (required with ``output``).
        workers: frame-decoding workers.
        write_frames: which frame indices to write (default: every segmented frame).
        on_prob: called with (frame index, [K + 1, h, w] probabilities) for every segmented frame.
        output_size: (H, W) of the written masks (default: each frame's own size).
        stamp: settings recorded in the video's folder (``util.writer.STAMP``) when it is committed.

    The masks are written into a hidden temporary sibling of ``<output>/<video>`` that
    replaces it only once every mask is on disk; on any error (a failed PNG write
    included) or interrupt the temporary folder is removed and nothing is committed.
    """
    values = label_values(source)
    if not values:
        raise ValueError(f"video {source.name!r}: its annotation PNGs contain no object (all pixels are 0)")
    id_map = {value: i + 1 for i, value in enumerate(values)}
    lut = torch.tensor([0, *values], dtype=torch.int64, device=engine.device)
    palette = label_palette(source)
    names = source.frame_names
    folder = None
    if output is not None:
        safe_name(source.name, f"video {source.name!r}", "video name")
        for name in names:
            safe_name(f"{name}.png", f"video {source.name!r}", "mask file name")
        folder = AtomicFolder(output / source.name, output)
    waited = 0.0
    start = time.perf_counter()

    def inputs() -> Iterator[FrameInput]:
        nonlocal waited
        loader = iter(frame_loader(source, size, id_map, workers))
        while True:
            tick = time.perf_counter()
            item = next(loader, None)
            waited += time.perf_counter() - tick
            if item is None:
                return
            index = int(item["index"])
            sizes[index] = tuple(int(v) for v in item["size"])
            required = source.required is None or index in source.required
            yield FrameInput(index, item["image"], item.get("label"), required, source=str(source.frames[index]))

    sizes: dict[int, tuple[int, int]] = {}
    count = 0
    try:
        for result in engine.segment(inputs(), num_objects=len(values)):
            count += 1
            prob = result.prob
            if prob.shape[0] < len(values) + 1:
                prob = torch.cat([prob, prob.new_zeros(len(values) + 1 - prob.shape[0], *prob.shape[1:])])
            if on_prob is not None:
                on_prob(result.index, prob)
            if folder is not None and (write_frames is None or write_frames(result.index)):
                target = output_size or sizes.get(result.index) or tuple(prob.shape[-2:])
                mask = probabilities_to_mask(prob, target, lut)
                tick = time.perf_counter()
                writer.submit(folder.tmp / f"{names[result.index]}.png", mask, palette)
                waited += time.perf_counter() - tick
        synchronize(engine.device)
        if folder is not None:
            writer.flush()  # raises a failed write: the folder is then not committed
            if stamp is not None:
                write_stamp(folder.tmp, stamp)
            folder.commit()
    except BaseException:
        if folder is not None:
            try:
                writer.drain()  # writes still queued must not land after the folder is gone
            finally:
                folder.abort()
        raise
    seconds = time.perf_counter() - start
    return VideoStats(source.name, count, seconds, seconds - waited)


@dataclass
class StreamStats:
    """Frames read, frames segmented, wall and engine seconds of one ``segment_stream`` run."""

    frames_read: int = 0
    frames: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0


def segment_stream(
    engine: PCVOSEngine,
    frames: Iterable[np.ndarray],
    labels: dict[int, np.ndarray],
    size: int,
    sink: Callable[[int, np.ndarray, np.ndarray | None], None],
    prefetch_depth: int = 8,
) -> StreamStats:
    """Segment a video given as an iterator of frames (containers, webcams, generators).

    Args:
        frames: uint8 [H, W, 3] RGB frames in order; decoded on a prefetch thread.
        labels: frame index -> uint8 [H, W] object ids (first-appearance masks, any ids 1..254).
        size: working short side (-1 = original).
        sink: called once per frame, in frame order, with (index, RGB frame, uint8 [H, W] ids
            at the frame's size), the mask None for frames before the first label. Only the
            frames of the clip being segmented are held.
        prefetch_depth: frames decoded ahead.

    The engine timer excludes waiting for decoded frames and the time spent in ``sink``.
    """
    if not labels:
        raise ValueError("segment_stream needs at least one labelled frame")
    values = sorted({int(v) for mask in labels.values() for v in np.unique(mask) if 0 < v < VOID})
    table = np.zeros(256, dtype=np.int64)
    table[values] = np.arange(1, len(values) + 1)
    lut = torch.tensor([0, *values], dtype=torch.int64, device=engine.device)
    first = min(labels)
    held: dict[int, np.ndarray] = {}
    stats = StreamStats()
    outside = 0.0  # seconds not charged to the engine
    ready: dict[int, np.ndarray] = {}  # masks waiting for an earlier frame's mask (keeps sink in order)
    next_out = first

    def decoded() -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
        for index, rgb in enumerate(frames):
            yield index, rgb, prepare_image(rgb, size)

    def inputs() -> Iterator[FrameInput]:
        nonlocal outside
        source = prefetch(decoded(), prefetch_depth)
        while True:
            tick = time.perf_counter()
            item = next(source, None)
            if item is not None and item[0] < first:
                sink(item[0], item[1], None)
            outside += time.perf_counter() - tick
            if item is None:
                return
            index, rgb, image = item
            stats.frames_read = index + 1
            if index < first:
                continue
            held[index] = rgb
            label = labels.get(index)
            label_t = None if label is None else prepare_label(table[label], size)
            yield FrameInput(index, image, label_t, True)

    start = time.perf_counter()
    for result in engine.segment(inputs(), num_objects=len(values)):
        prob = result.prob
        if prob.shape[0] < len(values) + 1:
            prob = torch.cat([prob, prob.new_zeros(len(values) + 1 - prob.shape[0], *prob.shape[1:])])
        ready[result.index] = probabilities_to_mask(prob, held[result.index].shape[:2], lut)
        stats.frames += 1
        tick = time.perf_counter()
        while next_out in ready:
            sink(next_out, held.pop(next_out), ready.pop(next_out))
            next_out += 1
        outside += time.perf_counter() - tick
    for index in sorted(held):  # frames never segmented (none when every frame is required)
        sink(index, held.pop(index), ready.pop(index, None))
    beyond = sorted(f for f in labels if f >= stats.frames_read)
    if beyond:
        raise ValueError(
            f"mask for frame {beyond[0]} is beyond the end of the video ({stats.frames_read} frames decoded); "
            "use a frame index inside the video"
        )
    stats.seconds = time.perf_counter() - start
    stats.engine_seconds = stats.seconds - outside
    return stats
