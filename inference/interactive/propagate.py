"""A session's propagation engine, kept in step with the session's annotations."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import numpy as np
import torch

from dataset.benchmarks import segment_stream
from inference.cli import engine_config, memory_options
from inference.engine import PCVOSEngine
from inference.interactive.session import Job, Session
from model.network import PCVOS
from util.runtime import PRECISIONS

PRECISION_CHOICES = tuple(sorted(PRECISIONS))


class Propagator:
    """Runs the engine for one session with the session's settings.

    Args:
        session: the session whose frames and annotations are propagated.
        network: the shared network (loaded once by the server).
        args: the command line's engine flags (those the page does not set).
    """

    def __init__(self, session: Session, network: PCVOS, args: argparse.Namespace) -> None:
        self.session = session
        self.network = network
        self.args = args

    def _engine(self) -> PCVOSEngine:
        s = self.session.settings
        args = argparse.Namespace(**{**vars(self.args), "clip_length": s.clip_length, "precision": s.precision,
                                     "memory": s.memory})
        factory = memory_options(args, self.network).factory()
        return PCVOSEngine(self.network, engine_config(args), memory_factory=factory)

    def results(self, direction: str, start: int) -> tuple[Iterator[tuple[int, np.ndarray]], int]:
        """(masks (frame index, uint8 [H, W]) in the order they are produced, how many will come)."""
        annotated = self.session.annotated_frames()
        count = self.session.frames.count
        before = [a for a in annotated if a <= start]
        anchor = before[-1] if before else annotated[0]
        labels = {a: self.session.annotation(a) for a in annotated}
        engine = self._engine()
        size = self.session.settings.size

        def forward(first: int) -> Iterator[tuple[int, np.ndarray]]:
            yield from _stream(engine, lambda i: self.session.frames.rgb(i), range(first, count),
                               {a - first: m for a, m in labels.items() if a >= first}, size, lambda k: first + k)

        def backward(last: int) -> Iterator[tuple[int, np.ndarray]]:
            yield from _stream(engine, lambda i: self.session.frames.rgb(i), range(last, -1, -1),
                               {last - a: m for a, m in labels.items() if a <= last}, size, lambda k: last - k)

        if direction == "forward":
            return forward(anchor), count - anchor
        if direction == "backward":
            after = [a for a in annotated if a >= start]
            last = after[0] if after else annotated[-1]
            return backward(last), last + 1
        first = annotated[0]

        def both() -> Iterator[tuple[int, np.ndarray]]:
            yield from forward(first)
            for index, mask in backward(first):
                if index != first:
                    yield index, mask

        return both(), count

    def finished(self, job: Job) -> None:
        """Called when a propagation ends (done, cancelled or failed)."""

    def remove_object(self, obj: int) -> None:
        """An object was removed from the session."""

    def invalidate(self) -> None:
        """The settings changed: nothing computed so far may be reused."""


def _stream(engine: PCVOSEngine, read: Callable[[int], np.ndarray], order, labels: dict[int, np.ndarray],
            size: int, index_of: Callable[[int], int]) -> Iterator[tuple[int, np.ndarray]]:
    """segment_stream over frames read in ``order``, as a generator of (frame index, mask)."""
    import queue
    import threading

    out: queue.Queue = queue.Queue(maxsize=4)
    done = object()

    def sink(k: int, rgb: np.ndarray, mask: np.ndarray | None) -> None:
        if mask is not None:
            out.put((index_of(k), mask))

    def work() -> None:
        try:
            with torch.inference_mode():
                segment_stream(engine, (read(i) for i in order), labels, size, sink)
            out.put(done)
        except BaseException as error:  # noqa: BLE001
            out.put(error)

    threading.Thread(target=work, daemon=True).start()
    while True:
        item = out.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


PropagatorFactory = Callable[[Session], Propagator]
