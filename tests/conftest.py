"""Shared test fixtures: the reference data in tests/data, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from model.network import PCVOS, PCVOSConfig

REPO = Path(__file__).resolve().parents[1]
# Reference material the headline tests compare against (official outputs, the official
# state_dict layout, the DAVIS toolkit's numbers); tests/data/README.md says what each file is.
DATA = REPO / "tests" / "data"
PARITY_CASES = ("g1_L5", "g2_L10_late")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch):
    """No progress lines unless a test asks for them (PCVOS_PROGRESS, util/progress.py): a slow machine
    would otherwise add a periodic line to the stderr that tests compare (subprocesses inherit it)."""
    monkeypatch.setenv("PCVOS_PROGRESS", "none")


def parity_case(name: str) -> Path:
    """Folder of one official-output case: JPEGImages/vid, Annotations/vid, expected.npz."""
    return DATA / "parity" / name


def load_expected(name: str) -> dict:
    """The official outputs of one parity case (arrays of ``expected.npz``)."""
    with np.load(parity_case(name) / "expected.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A small random PCVOS saved as a train.py-style checkpoint (rebuilt by model/checkpoint); seeds torch."""
    torch.manual_seed(0)
    config = PCVOSConfig.small()
    path = tmp_path_factory.mktemp("model") / "small.pth"
    torch.save({"network": PCVOS(config).state_dict(), "model_config": config.to_dict()}, path)
    return path


@pytest.fixture(scope="module")
def two_generic_videos(tmp_path_factory) -> Path:
    """A generic layout with two 5-frame 64x112 videos (g_000, g_001), one object annotated at frame 0."""
    from dataset import synthetic as syn

    root = tmp_path_factory.mktemp("generic")
    config = syn.SyntheticConfig(num_frames=5, height=64, width=112, num_objects=1, seed=7)
    syn.write_generic(root, syn.make_split("g", 2, config, seed=3, allow_late=False))
    return root
