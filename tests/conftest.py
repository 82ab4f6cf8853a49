"""Shared test fixtures: where the reference material is, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """../shared beside the checkout, or $PCVOS_SHARED."""
    env = os.environ.get("PCVOS_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "pcvos").is_dir():
        pytest.skip(f"reference material not found at {path} (set PCVOS_SHARED)")
    return path


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


def load_golden(shared: Path, name: str) -> dict:
    with np.load(shared / "pcvos" / "golden" / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}
