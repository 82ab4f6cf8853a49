"""The one run loop: a video's frames through the engine, shared by every driver (see docs/evaluation.md).

:class:`VideoRun` is what every path that segments a whole video does the same
way: number the objects (:class:`~inference.objects.ObjectManager`), run the
engine, give each result one channel per object, turn probabilities into masks of
the video's own ids, and time the engine apart from waiting for frames and
handing masks on. Its users:

* :func:`segment_source`: a :class:`~dataset.frames.VideoSource` (frame files read
  at random by loader workers) into a mask folder, complete or absent; every
  benchmark driver (``inference.benchmark_run``);
* :func:`segment_stream`: frames from an iterator (video containers, cameras) handed
  to a sink in frame order; ``segment.py``;
* the predictor (``inference/predictor.py``): a held video's frames pushed one at a
  time through a run that shares the predictor's object manager and continues an
  engine snapshot after a correction, and a live stream's frames as a camera
  delivers them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dataset.frames import VideoSource, frame_loader, label_palette, label_values, prepare_image, prepare_label
from dataset.masks import VOID
from inference.engine import EngineSession, FrameInput, FrameResult, PCVOSEngine
from inference.objects import MAX_OBJECT_ID, ObjectManager, pad_channels, probabilities_to_mask
from util.paths import safe_name
from util.progress import progress
from util.runtime import synchronize
from util.video_io import prefetch
from util.writer import AtomicFolder, MaskWriter, write_stamp


@dataclass
class VideoStats:
    """What one video cost.

    ``engine_seconds`` is the wall time minus the time spent waiting for decoded
    frames and handing masks on (to the writer thread, or a stream's sink): it
    covers the network, the memory, and turning probabilities into masks at the
    output size (as the released ``--time`` flag did), not disk input/output.
    """

    name: str = ""
    frames: int = 0  # frames segmented (annotated frames included)
    seconds: float = 0.0  # wall time of the whole video
    engine_seconds: float = 0.0
    frames_read: int = 0  # frames decoded (a stream: those before the first mask included)

    @property
    def fps(self) -> float:
        return self.frames / max(self.engine_seconds, 1e-9)


class VideoRun:
    """One video through the engine: the id table, the channel padding, the engine timer and the stats.

    Args:
        engine: the inference engine.
        values: the video's object ids (sorted or not); they take slots 1..K in increasing order.
        name: the video's name (in the stats).
        max_id: the highest id accepted (``ObjectManager``).
        objects: an object manager to share (the predictor's, whose objects come and go); ``values`` are
            added to it. Default: a new one.
        session: the engine session to continue (a snapshot the predictor resumes from); default: a new
            session, started at the first :meth:`push` with one channel per slot.

    Frames go in one at a time (:meth:`push`, then :meth:`flush`) or as an iterable (:meth:`results`, the
    same loop). The timer starts now; :meth:`finish` stops it.
    """

    def __init__(
        self,
        engine: PCVOSEngine,
        values: Sequence[int] = (),
        name: str = "",
        max_id: int = MAX_OBJECT_ID,
        objects: ObjectManager | None = None,
        session: EngineSession | None = None,
    ) -> None:
        self.engine = engine
        self.objects = ObjectManager(max_id) if objects is None else objects
        self.objects.add(values)
        self.session = session
        self.stats = VideoStats(name)
        self._table: tuple[tuple, torch.Tensor] | None = None
        self._outside = 0.0  # seconds not charged to the engine
        self._start = time.perf_counter()

    @property
    def table(self) -> torch.Tensor:
        """int64 [num_slots + 1] slot -> id of the objects now (rebuilt when they change)."""
        key = (tuple(sorted(self.objects.slots.items())), self.objects.num_slots)
        if self._table is None or self._table[0] != key:
            self._table = key, self.objects.id_table(self.engine.device)
        return self._table[1]

    @contextlib.contextmanager
    def outside(self) -> Iterator[None]:
        """Time spent in this block is not charged to the engine (waiting for frames, handing masks on)."""
        tick = time.perf_counter()
        try:
            yield
        finally:
            self._outside += time.perf_counter() - tick

    def slot_map(self, mask: np.ndarray) -> np.ndarray:
        """uint8 [H, W] ids of this video -> int64 [H, W] engine slots."""
        return self.objects.slot_map(mask)

    def push(self, frame: FrameInput) -> list[tuple[int, torch.Tensor]]:
        """Feed the next frame; returns (frame index, [K + 1, h, w] probabilities, one channel per object) of
        the frames that became final (at L > 1: when their clip is complete)."""
        if self.session is None:
            self.session = self.engine.start(num_objects=self.objects.num_slots)
        return self._padded(self.session.push(frame))

    def flush(self) -> list[tuple[int, torch.Tensor]]:
        """End of the video: the results of the frames still pending."""
        if self.session is None:
            return []
        return self._padded(self.session.flush())

    def _padded(self, results: list[FrameResult]) -> list[tuple[int, torch.Tensor]]:
        self.stats.frames += len(results)
        channels = self.table.shape[0]
        return [(result.index, pad_channels(result.prob, channels)) for result in results]

    def results(self, inputs: Iterable[FrameInput]) -> Iterator[tuple[int, torch.Tensor]]:
        """Segment ``inputs`` (:meth:`push` each, then :meth:`flush`): (frame index, probabilities) per frame.

        Waiting for the next input is not charged to the engine; the caller wraps its own handling of a
        result that is not the engine's work (writing, a sink) in :meth:`outside`.
        """
        frames = iter(inputs)
        while True:
            with self.outside():
                item = next(frames, None)
            if item is None:
                break
            yield from self.push(item)
        yield from self.flush()

    def mask(self, prob: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Probabilities from :meth:`push` / :meth:`results` -> uint8 [H, W] ids of this video at ``size``."""
        return probabilities_to_mask(pad_channels(prob, self.table.shape[0]), size, self.table)

    def finish(self) -> VideoStats:
        """Wait for the device, stop the timer and return the stats."""
        synchronize(self.engine.device)
        self.stats.seconds = time.perf_counter() - self._start
        self.stats.engine_seconds = self.stats.seconds - self._outside
        return self.stats


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
    palette = label_palette(source)
    names = source.frame_names
    folder = None
    if output is not None:
        safe_name(source.name, f"video {source.name!r}", "video name")
        for name in names:
            safe_name(f"{name}.png", f"video {source.name!r}", "mask file name")
        folder = AtomicFolder(output / source.name, output)
    run = VideoRun(engine, values, source.name, max_id=VOID)  # a 0/255 video's one object is written as 255
    sizes: dict[int, tuple[int, int]] = {}

    def inputs() -> Iterator[FrameInput]:
        for item in frame_loader(source, size, run.objects.slots, workers):
            index = int(item["index"])
            sizes[index] = tuple(int(v) for v in item["size"])
            run.stats.frames_read += 1
            required = source.required is None or index in source.required
            yield FrameInput(index, item["image"], item.get("label"), required, source=str(source.frames[index]))

    first = min(source.labels, default=0)  # the frames the engine yields: from the first annotation on, required
    total = sum(source.required is None or i in source.required or i in source.labels for i in range(first, len(names)))
    try:
        for index, prob in progress(run.results(inputs()), f"{source.name} frames", total):
            if on_prob is not None:
                on_prob(index, prob)
            if folder is not None and (write_frames is None or write_frames(index)):
                mask = run.mask(prob, output_size or sizes.get(index) or tuple(prob.shape[-2:]))
                with run.outside():
                    writer.submit(folder.tmp / f"{names[index]}.png", mask, palette)
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
    return run.finish()


def segment_stream(
    engine: PCVOSEngine,
    frames: Iterable[np.ndarray],
    labels: dict[int, np.ndarray],
    size: int,
    sink: Callable[[int, np.ndarray, np.ndarray | None], None],
    prefetch_depth: int = 8,
) -> VideoStats:
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
    run = VideoRun(engine, values)
    first = min(labels)
    held: dict[int, np.ndarray] = {}
    ready: dict[int, np.ndarray] = {}  # masks waiting for an earlier frame's mask (keeps sink in order)
    next_out = first

    def decoded() -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
        for index, rgb in enumerate(frames):
            yield index, rgb, prepare_image(rgb, size)

    def inputs() -> Iterator[FrameInput]:
        for index, rgb, image in prefetch(decoded(), prefetch_depth):
            run.stats.frames_read = index + 1
            if index < first:
                sink(index, rgb, None)
                continue
            held[index] = rgb
            label = labels.get(index)
            yield FrameInput(index, image, None if label is None else prepare_label(run.slot_map(label), size), True)

    for index, prob in run.results(inputs()):
        ready[index] = run.mask(prob, held[index].shape[:2])
        with run.outside():
            while next_out in ready:
                sink(next_out, held.pop(next_out), ready.pop(next_out))
                next_out += 1
    with run.outside():
        for index in sorted(held):  # frames never segmented (none when every frame is required)
            sink(index, held.pop(index), ready.pop(index, None))
    beyond = sorted(f for f in labels if f >= run.stats.frames_read)
    if beyond:
        raise ValueError(
            f"mask for frame {beyond[0]} is beyond the end of the video ({run.stats.frames_read} frames decoded); "
            "use a frame index inside the video"
        )
    return run.finish()
