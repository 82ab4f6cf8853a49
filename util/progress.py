"""Progress bars that degrade to nothing when output is not a terminal (CI, logs)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import progressbar

T = TypeVar("T")


def progress(items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (and ETA when the total is known) on a TTY; plainly otherwise.

    Never materialises ``items``: a generator of decoded frames stays lazy. A
    total that turns out too small (containers often misreport their frame
    count) is tolerated.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not sys.stderr.isatty():
        yield from items
        return
    if total is None:
        widgets = [f"{label} ", progressbar.Counter(), " ", progressbar.AnimatedMarker(), " ", progressbar.Timer()]
        bar = progressbar.ProgressBar(max_value=progressbar.UnknownLength, widgets=widgets, fd=sys.stderr)
    else:
        widgets = [f"{label} ", progressbar.Counter(), f"/{total} ", progressbar.Bar(), " ", progressbar.ETA()]
        bar = progressbar.ProgressBar(max_value=total, widgets=widgets, fd=sys.stderr)
    for i, item in enumerate(items):
        yield item
        if total is not None and i + 1 > bar.max_value:
            bar.max_value = i + 1
        bar.update(i + 1)
    bar.finish()
