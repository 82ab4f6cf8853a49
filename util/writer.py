"""Background writing of mask PNGs, so that disk output overlaps with compute."""

from __future__ import annotations

import contextlib
import queue
import shutil
import threading
from pathlib import Path

import numpy as np

from util.palette import write_index_png


class MaskWriter:
    """Writes palette PNGs on a worker thread.

    ``submit`` returns at once; ``close`` waits for everything and re-raises
    the first error of the worker, so a failed write is never silent.
    """

    def __init__(self, max_pending: int = 64) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="mask-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            path, mask, palette = job
            if path == "__flush__":
                palette.set()  # the Event travels in the palette slot
                continue
            if self._error is None:
                try:
                    write_index_png(path, mask, palette)
                except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = error

    def submit(self, path: Path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((path, mask, palette))

    def flush(self) -> None:
        """Wait until all submitted masks are on disk."""
        done = threading.Event()
        self._queue.put(("__flush__", None, done))
        done.wait()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # never replace the exception already on its way out
            self.close()


class AtomicFolder:
    """A folder that appears complete or not at all: fill ``tmp``, then ``commit``."""

    def __init__(self, final: Path) -> None:
        self.final = Path(final)
        self.tmp = self.final.with_name(f".{self.final.name}.partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)

    def commit(self) -> None:
        if self.final.exists():
            shutil.rmtree(self.final)
        self.tmp.replace(self.final)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
