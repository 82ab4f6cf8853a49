"""The built-in default runs end to end (a few iterations) and leaves its report and checkpoint."""

from __future__ import annotations

import json

import pytest

from scripts import quickstart


@pytest.mark.slow
def test_quickstart_short(tmp_path):
    out = tmp_path / "qs"
    assert quickstart.main(["--short", "--out", str(out), "--workers", "0", "--device", "cpu"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["clip_lengths"]) == {"1", "5"}
    for row in report["clip_lengths"].values():
        assert 0.0 <= row["J&F"] <= 1.0 and row["fps"] > 0
    assert 0.0 <= report["baseline"]["J&F"] <= 1.0
    assert (out / "report.md").read_text().startswith("# PCVOS quickstart report")
    for name in ("report.html", "loss.png", "overlay.png"):
        assert (out / name).stat().st_size > 0
    from model.checkpoint import build_model

    model, _ = build_model(report["checkpoint"])
    assert model.config.name == "small"
