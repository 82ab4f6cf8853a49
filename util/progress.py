"""Progress of long steps: a bar on a terminal, periodic plain lines in a log (docs/evaluation.md, 'Progress').

Every long loop of the project reports through this module: frames of a video, videos of a benchmark,
L values of the sweep, scoring, training iterations. ``progress(items, label, total)`` wraps an
iterable; :class:`Progress` is updated by hand (``update(done)``) where there is no iterable to wrap.

Where it goes, chosen when a progress starts:

* ``bar``: a progressbar2 bar with the count and an ETA on stderr (the default when stderr is a
  terminal). Nested progresses (frames inside videos inside L values) share the outermost bar,
  the inner ones shown as text beside it;
* ``log``: a plain line on stderr every ``PCVOS_PROGRESS_EVERY`` seconds (default 30; the first one
  that long after the outermost loop started) showing every
  active level (``progress: davis2017 videos 3/30, ETA 0:04:10 | bike-packing frames 40/69, 5.2/s,
  ETA 0:00:06``), and a closing line when a loop that printed one ends (the default when stderr is
  not a terminal: a log file, CI);
* ``none``: nothing.

``PCVOS_PROGRESS`` (``auto``, ``bar``, ``log``, ``none``) overrides the choice for every driver;
``train.py --progress`` chooses it for training.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

MODES = ("auto", "bar", "log", "none")
#: seconds between two plain lines in a log, unless PCVOS_PROGRESS_EVERY says otherwise
DEFAULT_EVERY = 30.0

_active: list[Progress] = []  # the progresses running now, outermost first
_last_line = [0.0]  # when the last plain line was printed (shared by nested progresses)


def resolve_mode(mode: str | None = None) -> str:
    """``mode``, else ``PCVOS_PROGRESS``, else 'auto'; 'auto' is 'bar' on a terminal (stderr), 'log' otherwise."""
    mode = mode or os.environ.get("PCVOS_PROGRESS") or "auto"
    if mode not in MODES:
        raise ValueError(f"PCVOS_PROGRESS / --progress {mode}: not one of {', '.join(MODES)}; choose one of them")
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return mode


def _every() -> float:
    text = os.environ.get("PCVOS_PROGRESS_EVERY")
    if text is None:
        return DEFAULT_EVERY
    try:
        return max(0.0, float(text))
    except ValueError:
        raise ValueError(f"PCVOS_PROGRESS_EVERY {text}: not a number of seconds; give e.g. 30") from None


def duration(seconds: float) -> str:
    """'H:MM:SS'."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """One long loop: ``update(done)`` after each step, ``finish()`` at the end (or use it as a context).

    Args:
        label: what is counted ('frames', 'davis2017 videos', 'it').
        total: steps in all, when known (a total that turns out too small is raised as the count passes it).
        start: steps done before this process started (a resumed training run); rates and ETAs count from it.
        mode: 'auto', 'bar', 'log' or 'none' (default: ``PCVOS_PROGRESS``, else 'auto').
        lines: in a log, print the periodic lines (False: the caller prints its own, as training does).
    """

    def __init__(self, label: str, total: int | None = None, start: int = 0, mode: str | None = None,
                 lines: bool = True) -> None:
        self.label, self.total, self.start, self.done = label, total, start, start
        self.mode = resolve_mode(mode)
        self.lines = lines
        self.every = _every()
        self.tic = time.perf_counter()
        self.printed = False
        self.finished = False
        self._bar = None
        while _active and _active[-1].finished:
            _active.pop()
        self.outer = _active[0] if _active else None
        if self.outer is None:
            _last_line[0] = self.tic  # the first plain line comes one interval after the start
        _active.append(self)
        if self.mode == "bar" and self.outer is None:
            self._bar = _make_bar(label, total, start)

    # -- what it shows ---------------------------------------------------------------------
    def rate(self) -> float | None:
        """Steps per second since the start (None before the first step)."""
        elapsed = time.perf_counter() - self.tic
        return (self.done - self.start) / elapsed if self.done > self.start and elapsed > 0 else None

    def eta(self) -> float | None:
        rate = self.rate()
        if rate is None or self.total is None:
            return None
        return max(0, self.total - self.done) / rate

    def describe(self, rate: bool = False) -> str:
        """'frames 40/69, 5.2/s, ETA 0:00:06' (the rate only when asked)."""
        text = f"{self.label} {self.done}" + (f"/{self.total}" if self.total is not None else "")
        speed = self.rate()
        if rate and speed is not None:
            text += f", {speed:.1f}/s" if speed >= 1 else f", {1 / speed:.1f} s each"
        eta = self.eta()
        if eta is not None and self.done < self.total:
            text += f", ETA {duration(eta)}"
        return text

    # -- updates ---------------------------------------------------------------------------
    def update(self, done: int | None = None) -> None:
        """``done`` steps are complete (default: one more than before)."""
        self.done = self.done + 1 if done is None else done
        if self.total is not None and self.done > self.total:
            self.total = self.done
        if self.mode == "log" and self.lines:
            if time.perf_counter() - _last_line[0] >= self.every:
                self._line()
        elif self.mode == "bar":
            self._draw()

    def finish(self, complete: bool = True) -> None:
        """The loop ended: a closing line in a log if this progress printed one. ``complete=False``: it was
        left (an error, an interrupt), and nothing more is said (the error says it)."""
        if self.finished:
            return
        self.finished = True
        if self.mode == "log" and self.lines and self.printed and complete:
            self._line(f"done in {duration(time.perf_counter() - self.tic)}")
        if self._bar is not None:
            if self.total is not None:
                self._bar.max_value = max(self.total, self._bar.max_value)
            self._bar.finish(dirty=not complete)
        elif self.mode == "bar" and self.outer is not None:
            self._draw(without=self)
        if self in _active:
            _active.remove(self)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, *exc) -> None:
        self.finish(complete=kind is None)

    # -- internals -------------------------------------------------------------------------
    def _levels(self) -> list[Progress]:
        return [p for p in _active if not p.finished and p.mode == self.mode]

    def _line(self, text: str = "") -> None:
        levels = self._levels()
        if self not in levels:
            levels.append(self)
        parts = [p.describe(rate=p is self) for p in levels]
        if text:
            parts[-1] += f", {text}"
        print("progress: " + " | ".join(parts), file=sys.stderr, flush=True)
        _last_line[0] = time.perf_counter()
        for p in levels:
            p.printed = True

    def _draw(self, without: Progress | None = None) -> None:
        top = self.outer or self
        bar = top._bar
        if bar is None:
            return
        inner = [p.describe() for p in self._levels() if p is not top and p is not without]
        value = top.done
        if top.total is not None and value > bar.max_value:
            bar.max_value = value
        bar.detail.update_mapping(detail=(" | " + " | ".join(inner)) if inner else "")
        now = time.perf_counter()
        force = without is not None or now - getattr(bar, "drawn", 0.0) >= 0.2  # inner levels: 5 redraws/s at most
        if force:
            bar.drawn = now
        bar.update(value, force=force)


def _make_bar(label: str, total: int | None, start: int):
    import progressbar

    detail = progressbar.FormatCustomText("%(detail)s", {"detail": ""})
    if total is None:
        widgets = [f"{label} ", progressbar.Counter(), detail, " ", progressbar.Timer()]
        total = progressbar.UnknownLength
    else:
        widgets = [f"{label} ", progressbar.Counter(), f"/{total}", detail, " ", progressbar.Bar(), " ",
                   progressbar.ETA()]
        total = max(total, start)
    bar = progressbar.ProgressBar(min_value=0, max_value=total, initial_value=start, widgets=widgets, fd=sys.stderr)
    bar.detail = detail
    bar.start()
    return bar


def progress(items: Iterable[T], label: str, total: int | None = None, mode: str | None = None) -> Iterator[T]:
    """Iterate ``items`` reporting each one done (see the module docstring); ``total`` defaults to ``len(items)``.

    Never materialises ``items``: a generator of decoded frames stays lazy. An item counts as done when
    the loop asks for the next one.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    meter = Progress(label, total, mode=mode)
    complete = False
    try:
        for i, item in enumerate(items):
            yield item
            meter.update(i + 1)
        complete = True
    finally:
        meter.finish(complete)
