"""Inference: the per-clip engine, its schedule and memory, and the predictor a program uses (docs/api.md).

The names below are imported on first use (``from inference import Predictor`` works as usual), so
that ``import inference.cli`` -- a command line's parser -- does not load torch (docs/cli.md).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EngineConfig": "inference.settings",
    "EngineSession": "inference.engine",
    "FrameInput": "inference.engine",
    "FrameResult": "inference.engine",
    "ObjectManager": "inference.objects",
    "PCVOSEngine": "inference.engine",
    "Predictor": "inference.predictor",
    "prepare_network": "inference.engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
