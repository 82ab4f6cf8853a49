"""scripts/memory_diagnosis.py: the variants it parses, the ground truth it writes into memory, its report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset import synthetic as syn
from inference.engine import PCVOSEngine
from model.checkpoint import build_model
from model.network import PCVOS
from util.davis_metrics import read_mask

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import memory_diagnosis as md  # noqa: E402


def test_variants_parse_and_bad_ones_say_what_to_write():
    assert md.parse_variant("L1") == md.Variant(1)
    assert md.parse_variant("L1-every5") == md.Variant(1, every=5)
    assert md.parse_variant("L10-truth") == md.Variant(10, truth=True)
    assert md.parse_variant("L15-icr5") == md.Variant(15, refine_frames=5)
    for bad in ("L0", "L1-every0", "L1-truth5", "5", "L1-oracle", "L5-icr0", "L5-truth-icr5"):
        with pytest.raises(ValueError, match="L<n>-truth"):
            md.parse_variant(bad)


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    """One 6-frame 64x112 video with two objects and a look-alike, DAVIS layout."""
    root = tmp_path_factory.mktemp("davis") / "trainval"
    config = syn.SyntheticConfig(num_frames=6, height=64, width=112, num_objects=2, num_distractors=1)
    syn.write_davis(root, syn.make_split("dv", 1, config, seed=2, allow_late=False))  # seed 2: both objects
    return root


def test_truth_variant_writes_the_ground_truth_into_memory(davis, small_model, tmp_path, monkeypatch):
    written: dict[int, torch.Tensor] = {}
    original = PCVOSEngine._memorise

    def record(self, store, state, t, image, key, f16, masks, permanent):
        written[t] = masks.detach().clone()
        return original(self, store, state, t, image, key, f16, masks, permanent)

    monkeypatch.setattr(PCVOSEngine, "_memorise", record)
    network, _ = build_model(small_model, torch.device("cpu"))
    gt = davis / "Annotations" / "480p" / "dv_000"
    frames = sorted(gt.glob("*.png"))
    entry = md.evaluate_variant(network, "L1-truth", davis, 128, tmp_path / "L1-truth")  # frames enlarged twice
    assert sorted(written) == list(range(len(frames)))  # L = 1: every frame is memorised
    assert 0.0 <= entry["J&F"] <= 1.0 and len(entry["j_by_frame"]) == len(frames) - 2  # toolkit: not first/last
    for t in range(1, len(frames)):  # frame 0 is the annotation; the others are the ground truth, not predictions
        ids = torch.from_numpy(read_mask(frames[t]).astype(np.int64))
        expected = torch.stack([(ids == k).float() for k in (1, 2)])
        expected = expected.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # nearest, twice the size
        assert torch.equal(written[t], expected), t


def test_icr_variant_refines_the_clip_a_few_frames_at_a_time(davis, small_model, tmp_path, monkeypatch):
    spans: list[int] = []
    original = PCVOS.refine_clip

    def record(self, keys, readout):
        spans.append(readout.shape[2])
        return original(self, keys, readout)

    monkeypatch.setattr(PCVOS, "refine_clip", record)
    network, _ = build_model(small_model, torch.device("cpu"))
    md.evaluate_variant(network, "L5-icr2", davis, -1, tmp_path / "chunked")
    assert spans == [2, 2, 1]  # frame 0 is the annotation; frames 1-5 are one clip, refined 2 + 2 + 1
    assert "refine_clip" not in vars(network)  # the network is left as it was
    spans.clear()
    md.evaluate_variant(network, "L5", davis, -1, tmp_path / "chunked")  # a rerun replaces the masks there
    assert spans == [5]


def test_report_table_and_chart(tmp_path):
    results = {"pcvos_s0": {"L1": {"J&F": 0.5, "j_by_frame": [0.9, 0.5]},
                            "L1-truth": {"J&F": 0.8, "j_by_frame": [0.9, 0.8]}},
               "pcvos_s1": {"L1": {"J&F": 0.6, "j_by_frame": [0.9, 0.6]}}}
    md.write_report(tmp_path, results)
    text = (tmp_path / "memory.md").read_text()
    assert "| pcvos_s0 | 0.500 | 0.800 |" in text and "| pcvos_s1 | 0.600 | - |" in text
    assert "| mean | 0.550 | 0.800 |" in text
    assert (tmp_path / "j_by_frame.png").stat().st_size > 1000


def test_missing_ablation_output_or_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no data/val/ folder; run scripts/ablation.py there first"):
        md.main(["--ablation", str(tmp_path), "--runs", "pcvos_s0"])
    (tmp_path / "data" / "val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"--runs pcvos_s9: .*pcvos_s9_final.pth does not exist"):
        md.main(["--ablation", str(tmp_path), "--runs", "pcvos_s9"])
    with pytest.raises(SystemExit):
        md.main(["--ablation", str(tmp_path), "--runs", "pcvos_s0", "--variants", "L1-oracle"])


def test_measure_runs_measures_only_what_is_missing_and_saves_each_result(tmp_path, capsys):
    loaded, measured = [], []
    weights = {"a_s0": tmp_path / "a.pth", "b_s0": tmp_path / "b.pth"}

    def load(pth):
        loaded.append(pth.name)
        return pth.stem

    saved: list[int] = []  # results in the file when each measurement starts

    def measure(network, run, key):
        path = tmp_path / "r.json"
        saved.append(sum(len(v) for v in json.loads(path.read_text()).values()) if path.is_file() else 0)
        measured.append((network, run, key))
        return {"J&F": float(len(measured))}

    results = md.measure_runs(tmp_path / "r.json", weights, ["L1", "L5"], load, measure,
                              lambda run, key, entry: f"{run} {key} {entry['J&F']}")
    assert measured == [("a", "a_s0", "L1"), ("a", "a_s0", "L5"), ("b", "b_s0", "L1"), ("b", "b_s0", "L5")]
    assert loaded == ["a.pth", "b.pth"] and "b_s0 L5 4.0" in capsys.readouterr().out
    assert results["b_s0"] == {"L1": {"J&F": 3.0}, "L5": {"J&F": 4.0}}
    assert saved == [0, 1, 2, 3]  # the file is rewritten after each measurement: an interruption loses one
    loaded.clear(), measured.clear()
    again = md.measure_runs(tmp_path / "r.json", weights, ["L5", "L15"], load, measure, lambda *_: "")
    assert measured == [("a", "a_s0", "L15"), ("b", "b_s0", "L15")] and loaded == ["a.pth", "b.pth"]
    assert again["a_s0"] == {"L1": {"J&F": 1.0}, "L5": {"J&F": 2.0}, "L15": {"J&F": 1.0}}
    loaded.clear()
    md.measure_runs(tmp_path / "r.json", weights, ["L1"], load, measure, lambda *_: "")
    assert loaded == []  # nothing left to measure: no checkpoint is even loaded
