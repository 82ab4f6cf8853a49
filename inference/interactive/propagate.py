"""A session's :class:`~inference.predictor.Predictor`, kept in step with the session's annotations.

The predictor keeps every mask it computed and recomputes only the frames a correction makes out of
date (docs/api.md). This module hands it the session's frames (through the session's frame cache)
and, before each propagation, the annotations that changed since the last one.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from inference.cli import memory_options
from inference.interactive.session import Job, Session
from inference.predictor import FrameSource, Predictor
from inference.settings import EngineConfig
from model.network import PCVOS
from util.runtime import PRECISIONS

PRECISION_CHOICES = tuple(sorted(PRECISIONS))


class SessionFrames(FrameSource):
    """The session's frame cache as the predictor's frame source (frames read from the cache, not held)."""

    def __init__(self, session: Session) -> None:
        self.frames = session.frames
        self.frames.decode_all()  # the predictor needs the exact length

    def __len__(self) -> int:
        return self.frames.count

    def read(self, index: int) -> np.ndarray:
        return self.frames.rgb(index)

    def name(self, index: int) -> str:
        return f"{self.frames.source} frame {index}"


class Propagator:
    """Runs the predictor for one session with the session's settings.

    Args:
        session: the session whose frames and annotations are propagated.
        network: the shared network (loaded once by the server).
        config: the command line's engine settings (L and precision are the page's).
        args: the command line's memory flags (the strategy is the page's).

    Attributes:
        frames_computed: frames the engine computed in the last propagation (the rest were up to date).
    """

    def __init__(self, session: Session, network: PCVOS, config: EngineConfig, args: argparse.Namespace) -> None:
        self.session = session
        self.network = network
        self.config = config
        self.args = args
        self.frames_computed = 0
        self._predictor: Predictor | None = None
        self._given: dict[int, np.ndarray] = {}  # annotations as the predictor has them
        self._lock = threading.Lock()

    # -- predictor lifetime --------------------------------------------------------------------
    def _new_predictor(self) -> Predictor:
        s = self.session.settings
        memory = argparse.Namespace(**{**vars(self.args), "memory": s.memory})
        predictor = Predictor(self.network, replace(self.config, clip_length=s.clip_length, precision=s.precision),
                              size=s.size, memory=memory_options(memory, self.network).factory())
        predictor.open(SessionFrames(self.session))
        return predictor

    def _sync(self) -> Predictor:
        """The predictor, given every annotation that changed since the last propagation.

        The predictor merges a frame's new mask into what it had there (objects not in the new mask keep
        their old annotation), so an annotation that lost an object or was deleted needs a fresh predictor:
        everything is recomputed then.
        """
        current = {t: self.session.annotation(t) for t in self.session.annotated_frames()}
        stale = any(
            t not in current or set(np.unique(mask)) - set(np.unique(current[t])) for t, mask in self._given.items()
        )
        if self._predictor is None or stale:
            if self._predictor is not None:
                self._predictor.close()
            self._predictor = self._new_predictor()
            self._given = {}
        for t, mask in current.items():
            if t not in self._given or not np.array_equal(self._given[t], mask):
                self._predictor.add_mask(t, mask)
                self._given[t] = mask
        return self._predictor

    def invalidate(self) -> None:
        """The settings changed: nothing computed so far may be reused."""
        with self._lock:
            if self._predictor is not None:
                self._predictor.close()
            self._predictor = None
            self._given = {}

    def remove_object(self, obj: int) -> None:
        """An object was removed from the session: the predictor forgets it (frames it touched are recomputed)."""
        with self._lock:
            if self._predictor is not None and obj in self._predictor.objects.ids:
                self._predictor.remove_object(obj)
            for t, mask in list(self._given.items()):
                mask = np.where(mask == obj, 0, mask).astype(np.uint8)
                if mask.any():
                    self._given[t] = mask
                else:
                    del self._given[t]

    def finished(self, job: Job) -> None:
        """Called when a propagation ends. After a failure the predictor's state is not trusted: rebuilt."""
        if job.state == "failed":
            self.invalidate()

    # -- propagation ---------------------------------------------------------------------------
    def results(self, direction: str, start: int | None = None) -> tuple[Iterator[tuple[int, np.ndarray]], int]:
        """(the masks (frame index, uint8 [H, W]) in the order the predictor yields them, how many will come).

        ``start`` (the page's "from this frame"): only the masks of frames ``start`` and after (forward) or
        ``start`` and before (backward) are yielded; the other frames keep what they show. The predictor
        still computes what the kept frames need (the frames from the annotations to ``start``), once.
        ``both`` covers every frame whatever ``start`` is.

        The predictor is brought up to date inside the iterator, on the job's thread (decoding a container
        to the end the first time).
        """
        annotated = self.session.annotated_frames()
        if not annotated:
            raise ValueError("propagate: no annotated frame; draw or import a mask first")
        count = self.session.frames.count
        if start is not None and not 0 <= start < count:
            raise ValueError(f"propagate: start frame {start} is outside the video (0..{count - 1})")
        first, last = annotated[0], annotated[-1]
        if start is not None and direction == "forward":
            first = max(first, start)
        if start is not None and direction == "backward":
            last = min(last, start)
        total = {"forward": count - first, "backward": last + 1, "both": count}[direction]

        def wanted(index: int) -> bool:
            return direction == "both" or (index >= first if direction == "forward" else index <= last)

        def run() -> Iterator[tuple[int, np.ndarray]]:
            with self._lock:
                predictor = self._sync()
                pushed = predictor.frames_pushed
                try:
                    for index, mask in predictor.propagate(direction):
                        self.frames_computed = predictor.frames_pushed - pushed
                        if wanted(index):
                            yield index, mask
                finally:
                    self.frames_computed = predictor.frames_pushed - pushed

        return run(), total


PropagatorFactory = Callable[[Session], Propagator]
