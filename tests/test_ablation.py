"""scripts/ablation.py: each row's train.py command, the report's arithmetic, and a short end-to-end run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import ablation  # noqa: E402


def args_for(tmp_path: Path, *flags: str):
    return ablation.build_parser().parse_args(["--output", str(tmp_path), *flags])


def test_each_row_trains_what_it_names(tmp_path):
    args = args_for(tmp_path, "--iterations", "300")
    commands = {row: ablation.train_command(args, row, 1, tmp_path / "train", "fp32") for row in ablation.ROWS}

    def after(command, flag):
        i = command.index(flag)
        out = []
        for word in command[i + 1:]:
            if word.startswith("--"):
                break
            out.append(word)
        return out

    assert after(commands["pcvos"], "--clip-frames") == ["3", "3"] and "--no-icr" not in commands["pcvos"]
    assert after(commands["no-icr"], "--clip-frames") == ["3", "3"] and "--no-icr" in commands["no-icr"]
    assert after(commands["framewise"], "--clip-frames") == ["1"] * 6 and "--no-icr" not in commands["framewise"]
    assert after(commands["stcn-like"], "--clip-frames") == ["1"] * 6 and "--no-icr" in commands["stcn-like"]
    assert after(commands["frames5"], "--clip-frames") == ["2", "2"]
    assert after(commands["frames9"], "--clip-frames") == ["4", "4"]
    for command in commands.values():  # the quickstart's training crops (enlarged 1.2-2.4 times)
        assert after(command, "--min-scale") == ["0.075"] and after(command, "--max-scale") == ["0.3"]
    assert after(commands["no-clip-loss"], "--dice-weight") == ["0.0"]
    assert after(commands["pcvos-icr-lr10"], "--icr-lr-scale") == ["10.0"]
    assert after(commands["pcvos-icr-lr10"], "--clip-frames") == ["3", "3"]
    assert not any("--icr-lr-scale" in command for row, command in commands.items() if row != "pcvos-icr-lr10")
    for row, command in commands.items():
        assert command[1].endswith("train.py"), row
        assert after(command, "--run-name") == [f"{row}_s1"]
        if row != "pcvos-staged":
            assert after(command, "--iterations") == ["300"] and after(command, "--seed") == ["1"]
            assert after(command, "--bootstrap") == ["100", "300"]


def test_staged_row_trains_without_icr_then_with_icr_from_those_weights(tmp_path, monkeypatch):
    args = args_for(tmp_path, "--iterations", "300")
    first, second = ablation.stages(args, "pcvos-staged", 1)
    assert (first.name, first.iterations, first.icr, first.seed) == ("pcvos-staged_s1_no-icr", 150, False, 1)
    assert (second.name, second.iterations, second.icr, second.seed) == ("pcvos-staged_s1", 150, True, 1001)
    assert [(s.name, s.iterations, s.icr) for s in ablation.stages(args, "pcvos", 1)] == [("pcvos_s1", 300, True)]

    ran = []

    def fake_run(command, check, env):  # stands in for train.py: writes the run's final weights
        name = command[command.index("--run-name") + 1]
        ran.append(command)
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}_final.pth").write_bytes(b"weights")

    monkeypatch.setattr(ablation.subprocess, "run", fake_run)
    weights = ablation.train_run(args, "pcvos-staged", 1, tmp_path / "train", "fp32")
    assert weights == tmp_path / "runs" / "pcvos-staged_s1" / "pcvos-staged_s1_final.pth"
    assert len(ran) == 2
    assert "--no-icr" in ran[0] and "--weights" not in ran[0]
    assert "--no-icr" not in ran[1]
    assert ran[1][ran[1].index("--weights") + 1] == str(
        tmp_path / "runs" / "pcvos-staged_s1_no-icr" / "pcvos-staged_s1_no-icr_final.pth")
    assert ran[1][ran[1].index("--iterations") + 1] == "150" and ran[1][ran[1].index("--seed") + 1] == "1001"
    timing = json.loads((tmp_path / "runs" / "pcvos-staged_s1" / "ablation_timing.json").read_text())
    first_minutes = json.loads(
        (tmp_path / "runs" / "pcvos-staged_s1_no-icr" / "ablation_timing.json").read_text())["minutes"]
    assert timing["minutes"] == pytest.approx(first_minutes + timing["stage_minutes"])  # both stages counted
    ran.clear()
    assert ablation.train_run(args, "pcvos-staged", 1, tmp_path / "train", "fp32") == weights
    assert ran == []  # both stages finished: nothing trains again


def test_reads_pmm_equals_parallel_up_to_five_frames():
    assert ablation.reads_at(1) == ablation.reads_at(5) == ("pmm",)
    assert ablation.reads_at(10) == ("pmm", "parallel")
    results = {"L5_pmm": {"J&F": 0.7}, "L10_pmm": {"J&F": 0.6}}
    assert ablation.figure(results, 5, "parallel") == 0.7  # the same computation at L <= 5
    assert ablation.figure(results, 10, "parallel") is None  # not measured yet: never the PMM figure


def test_summary_and_report(tmp_path):
    args = args_for(tmp_path, "--clip-lengths", "1", "5", "15")
    results = tmp_path / "results"
    results.mkdir()
    for seed, shift, size in ((0, 0.0, 256), (1, 0.1, 256), (2, 0.2, -1)):
        figures = {"L1_pmm": 0.8 + shift, "L5_pmm": 0.7 + shift, "L15_pmm": 0.5 + shift, "L15_parallel": 0.4 + shift}
        saved = {"eval_size": size, **{k: {"J&F": v} for k, v in figures.items()}}
        (results / f"pcvos_s{seed}.json").write_text(json.dumps(saved))
    table = ablation.summarise(args)  # seed 2 was evaluated at the videos' own size, not the recipe's 256: left out
    assert list(table) == ["pcvos"] and table["pcvos"]["seeds"] == [0, 1]
    cell = table["pcvos"]["cells"]["L15_pmm"]
    assert cell["mean"] == pytest.approx(0.55) and (cell["min"], cell["max"], cell["seeds"]) == (0.5, 0.6, 2)
    # parallel matching at L <= 5 is the PMM figure (they are the same computation there)
    assert table["pcvos"]["cells"]["L5_parallel"]["mean"] == pytest.approx(0.75)
    assert table["pcvos"]["cells"]["L15_parallel"]["mean"] == pytest.approx(0.45)
    ablation.write_report(args, table)
    text = (tmp_path / "ablation.md").read_text()
    assert "on crops of 0.075-0.3 of the frame's area, 30 held-out videos evaluated at a short side of 256 pixels" \
           in text
    assert "| PCVOS: per-clip training + ICR | 2 | 0.850 [0.800-0.900] | 0.750 [0.700-0.800] | 0.550 [0.500-0.600] " \
           "| +0.200 | 84.6 / 84.1 / 83.6 / 83.0 |" in text
    assert json.loads((tmp_path / "ablation.json").read_text())["rows"]["pcvos"]["cells"]["L1_pmm"]["seeds"] == 2


@pytest.mark.slow
def test_short_run_trains_each_row_with_train_py_and_resumes(tmp_path, capsys):
    out = tmp_path / "abl"
    flags = ["--short", "--output", str(out), "--rows", "pcvos", "stcn-like", "pcvos-staged", "--seeds", "0",
             "--clip-lengths", "1", "7"]
    assert ablation.main(flags) == 0
    first_stage = out / "runs" / "pcvos-staged_s0_no-icr" / "pcvos-staged_s0_no-icr_final.pth"
    assert torch.load(first_stage, map_location="cpu", weights_only=True)["model_config"]["refine"] is False
    for row, refine in (("pcvos", True), ("stcn-like", False), ("pcvos-staged", True)):
        final = out / "runs" / f"{row}_s0" / f"{row}_s0_final.pth"
        state = torch.load(final, map_location="cpu", weights_only=True)
        assert state["model_config"]["refine"] is refine
        assert any(k.startswith("refine_transformer.") for k in state["network"]) is refine
        results = json.loads((out / "results" / f"{row}_s0.json").read_text())
        assert results.pop("eval_size") == 128  # the short recipe's 64x112 videos, enlarged twice
        assert set(results) == {"L1_pmm", "L7_pmm", "L7_parallel"}
        assert all(0.0 <= v["J&F"] <= 1.0 for v in results.values())
    report = (out / "ablation.md").read_text()
    assert "STCN-like: frame-wise training, no ICR | 1 |" in report
    capsys.readouterr()
    stamp = (out / "results" / "pcvos_s0.json").stat().st_mtime_ns
    assert ablation.main(flags) == 0  # a rerun finds everything done: no training, no evaluation
    printed = capsys.readouterr().out
    assert "[train]" not in printed and "[eval]" not in printed
    assert (out / "results" / "pcvos_s0.json").stat().st_mtime_ns == stamp
