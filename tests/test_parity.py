"""The network and engine reproduce the official PCVOS outputs (tests/data/parity, see its README).

Everything runs through the path a user runs: the cases' PNG frames and
first-appearance annotations, recipe weights saved as a checkpoint,
eval_generic.py with --size -1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import eval_generic
from dataset.frames import video_from_folders
from inference.engine import EngineConfig, PCVOSEngine, prepare_network
from inference.runner import segment_source
from model.checkpoint import build_model
from model.network import PCVOS
from tests.conftest import PARITY_CASES, load_expected, parity_case
from util.palette import read_index_png
from util.recipe_weights import recipe_state_dict

INTERMEDIATES = ["key_encoder", "key_proj", "key_comp", "value_encoder", "input_proj", "refine_transformer"]


def thin(key: str, array: np.ndarray) -> np.ndarray:
    """The part of an intermediate tensor the fixture keeps: every 8th channel; the decoder's
    one-channel logits at every 4th pixel (rows and columns)."""
    return array[:, :, ::4, ::4] if key.startswith("inter__decoder") else array[:, ::8]


def expected_prob(expected: dict) -> np.ndarray:
    """Official probabilities [K+1, T, H, W] (float64) from the fixture's uint16 object channels.

    The fixture stores round(p * 65535) for the objects (error <= 7.7e-6); the background is
    1 - sum(objects), as the aggregation makes it (<= 1.6e-5 from the official float32 values).
    """
    objects = expected["prob_objects_u16"] / 65535.0
    return np.concatenate([1.0 - objects.sum(0, keepdims=True), objects])


@pytest.fixture(scope="module")
def recipe_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "recipe.pth"
    torch.save(recipe_state_dict(PCVOS()), path)
    return path


@pytest.mark.parametrize("case", PARITY_CASES)
def test_probabilities_and_intermediates(case, recipe_checkpoint):
    golden = load_expected(case)
    config = json.loads(str(golden["config_json"]))
    root = parity_case(case)
    network, report = build_model(recipe_checkpoint)
    assert report.kind == "pcvos" and not report.missing

    calls: dict[str, list] = {}
    hooks = [
        getattr(network, name).register_forward_hook(
            lambda m, args, out, name=name: calls.setdefault(name, []).append((args, out))
        )
        for name in INTERMEDIATES
    ]
    # The engine decodes through decode_objects (per-frame terms shared by the objects), not decoder.forward.
    decode_objects = network.decode_objects

    def recorded_decode(readout, context):
        logits = decode_objects(readout, context)
        calls.setdefault("decoder", []).append(((readout,), logits))
        return logits

    network.decode_objects = recorded_decode
    # decode_batch 64: the first clip is one decoder call, rows object-major, so object 1's logits come first.
    config_ = EngineConfig(clip_length=config["clip_length"], memory_read="pmm", decode_batch=64)
    engine = PCVOSEngine(prepare_network(network, config_), config_)
    source = video_from_folders("vid", root / "JPEGImages" / "vid", root / "Annotations" / "vid")
    reference = expected_prob(golden)
    prob = np.zeros(reference.shape, np.float32)
    seen = []

    def keep(index, p):
        seen.append(index)
        prob[:, index] = p.cpu().numpy()

    segment_source(engine, source, size=-1, output=None, writer=None, workers=0, on_prob=keep)
    for hook in hooks:
        hook.remove()

    assert seen == list(range(len(golden["pred"])))
    # 1e-4 covers float32 reassociation; the fixture's rounding adds at most 1.6e-5 of it.
    err = np.abs(prob - reference).max()
    assert err <= 1e-4, f"max |prob - golden| = {err}"

    def check(key, ours):
        ref = golden[key]
        ours = thin(key, ours.detach().numpy()[: ref.shape[0]])
        assert ours.shape == ref.shape, key
        # float32 reassociation grows with depth and magnitude (channels-last convolutions sum in another
        # order): 1e-4 absolute plus 5e-6 of the kept values' range (the value encoder reaches ~50).
        tolerance = 1e-4 + 5e-6 * np.abs(ref).max()
        assert np.abs(ours - ref).max() <= tolerance, (key, np.abs(ours - ref).max(), tolerance)

    check("inter__key_encoder__call0__out0", calls["key_encoder"][0][1][0])
    check("inter__key_proj__call0__out0", calls["key_proj"][0][1])
    check("inter__key_comp__call0__out0", calls["key_comp"][0][1])
    check("inter__value_encoder__call0__out0", calls["value_encoder"][0][1])
    check("inter__key_proj__call1__out0", calls["key_proj"][1][1])
    check("inter__input_proj__call0__out0", calls["input_proj"][0][1])
    check("inter__refine_transformer__call0__in1", calls["refine_transformer"][0][0][1][:1])
    check("inter__refine_transformer__call0__out0", calls["refine_transformer"][0][1][:1])
    check("inter__decoder__call0__out0", calls["decoder"][0][1])


@pytest.mark.slow  # the driver path over both cases; the probabilities test above covers the numbers
@pytest.mark.parametrize("case", PARITY_CASES)
def test_eval_generic_masks(case, tmp_path, recipe_checkpoint, capsys):
    golden = load_expected(case)
    config = json.loads(str(golden["config_json"]))
    root = parity_case(case)
    out = tmp_path / "out"
    code = eval_generic.main([
        "--data", str(root), "--output", str(out), "--model", str(recipe_checkpoint),
        "--size", "-1", "--clip-length", str(config["clip_length"]), "--workers", "0", "--device", "cpu",
    ])
    assert code == 0
    assert "generic: 1 videos, " in capsys.readouterr().out
    files = sorted((out / "vid").glob("*.png"))
    assert [f.stem for f in files] == [f"{t:05d}" for t in range(len(golden["pred"]))]
    pred = np.stack([read_index_png(f) for f in files])
    mask = golden["confident"]  # official top-2 margin >= 1e-3, from the float32 probabilities
    assert mask.mean() > 0.9
    mismatched = int(((pred != golden["pred"]) & mask).sum())
    assert mismatched == 0, f"{mismatched} confident pixels differ from the official masks"


@pytest.mark.slow  # checks the check: a third full run of the network
def test_wrong_schedule_would_be_caught(recipe_checkpoint):
    """The parity check is sharp: running g2 with L = 5 instead of 10 changes confident pixels."""
    golden = load_expected("g2_L10_late")
    root = parity_case("g2_L10_late")
    network, _ = build_model(recipe_checkpoint)
    engine = PCVOSEngine(prepare_network(network), EngineConfig(clip_length=5))
    source = video_from_folders("vid", root / "JPEGImages" / "vid", root / "Annotations" / "vid")
    prob = np.zeros(expected_prob(golden).shape, np.float32)
    segment_source(engine, source, -1, None, None, workers=0, on_prob=lambda i, p: prob.__setitem__(
        (slice(None), i), p.cpu().numpy()))
    mask = golden["confident"]
    assert ((prob.argmax(0) != golden["pred"]) & mask).sum() > 0
