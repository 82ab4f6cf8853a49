"""Which frames are segmented together and which become memory: a pure schedule.

The rules are those of the released per-clip core (its ``do_pass`` and mid-video objects):

* a *pass* starts at every frame that carries an annotation and runs to the
  next annotated frame inclusive (so that frame is predicted, then corrected
  by its annotation) or to the end of the video;
* inside a pass the frames to segment (all of them in predict-all mode, or
  only the required ones) are cut into consecutive clips of ``L`` frames,
  restarting at every annotated frame; the last clip may be shorter;
* a frame of a clip becomes permanent memory when it is at least
  ``mem_every`` (= L) raw frames after the last memory frame of the pass; the
  annotated frame that starts a pass is memory. In predict-all mode this is
  the last frame of every full clip.

:class:`ClipScheduler` applies these rules to a stream of frames (what the
engine uses); :func:`plan_schedule` runs it over a whole video (what tests and
planning tools use), so both share one implementation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clip:
    """Frames segmented together, and those of them that then enter memory."""

    frames: tuple[int, ...]
    memory_frames: tuple[int, ...]


@dataclass(frozen=True)
class LabelStep:
    """An annotated frame: its objects are written in and it is memorised."""

    frame: int


Step = Clip | LabelStep


class ClipScheduler:
    """Streaming form of the schedule: feed frames in order, collect steps.

    Args:
        clip_length: L, frames per clip (>= 1).
        mem_every: raw-frame distance between memory frames (default L).
    """

    def __init__(self, clip_length: int, mem_every: int | None = None) -> None:
        if clip_length < 1:
            raise ValueError(f"clip length must be >= 1, got {clip_length}")
        self.clip_length = clip_length
        self.mem_every = clip_length if mem_every is None else mem_every
        self._buffer: list[int] = []
        self._last_memory: int | None = None  # None until the first annotated frame
        self._last_frame = -1

    @property
    def started(self) -> bool:
        """True once an annotated frame has been seen."""
        return self._last_memory is not None

    @property
    def pending(self) -> tuple[int, ...]:
        """Frames buffered for the next clip."""
        return tuple(self._buffer)

    def push(self, frame: int, labelled: bool = False, required: bool = True) -> list[Step]:
        """Feed the next frame; returns the steps that became ready, in order.

        A labelled frame is always segmented (if a pass is running) before its
        annotation is applied; a frame before the first annotation is skipped.
        """
        if frame <= self._last_frame:
            raise ValueError(f"frames must arrive in increasing order: {frame} after {self._last_frame}")
        self._last_frame = frame
        steps: list[Step] = []
        if self.started and (required or labelled):
            self._buffer.append(frame)
            if labelled or len(self._buffer) == self.clip_length:
                steps.append(self._flush())
        if labelled:
            self._last_memory = frame
            steps.append(LabelStep(frame))
        return steps

    def finish(self) -> list[Step]:
        """End of the video: the pending frames form the last (short) clip."""
        return [self._flush()] if self._buffer else []

    def _flush(self) -> Clip:
        memory = []
        for t in self._buffer:
            if t - self._last_memory >= self.mem_every:
                memory.append(t)
                self._last_memory = t
        clip = Clip(tuple(self._buffer), tuple(memory))
        self._buffer = []
        return clip


def plan_schedule(
    num_frames: int,
    label_frames: Iterable[int],
    clip_length: int,
    required_frames: Iterable[int] | None = None,
    mem_every: int | None = None,
) -> list[Step]:
    """The whole schedule of a video.

    Args:
        num_frames: T.
        label_frames: frames that carry an annotation (any order, duplicates ignored).
        clip_length: L.
        required_frames: frames to segment (None = all: predict-all mode).
            Annotated frames are always processed.
        mem_every: memory interval in raw frames (default L).

    Returns:
        the ordered list of :class:`LabelStep` and :class:`Clip` steps.
    """
    labels = set(label_frames)
    required = None if required_frames is None else set(required_frames)
    scheduler = ClipScheduler(clip_length, mem_every)
    steps: list[Step] = []
    for t in range(num_frames):
        steps += scheduler.push(t, labelled=t in labels, required=required is None or t in required)
    return steps + scheduler.finish()
