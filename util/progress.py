"""Progress bars that degrade to nothing when output is not a terminal (CI, logs)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import progressbar

T = TypeVar("T")


def progress(items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar and ETA on a TTY; plainly otherwise."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    total = len(items) if total is None else total
    if not sys.stderr.isatty():
        yield from items
        return
    widgets = [f"{label} ", progressbar.Counter(), f"/{total} ", progressbar.Bar(), " ", progressbar.ETA()]
    bar = progressbar.ProgressBar(max_value=total, widgets=widgets, fd=sys.stderr)
    for i, item in enumerate(items):
        yield item
        bar.update(i + 1)
    bar.finish()
