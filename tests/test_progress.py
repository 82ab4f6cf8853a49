"""Progress of long steps (util/progress.py): plain lines with counts in a log, a bar on a terminal, and the
hooks in segment.py, the benchmark drivers, the sweep and the scoring."""

from __future__ import annotations

import re

import numpy as np
import pytest

import eval_generic
import inference_pretrained_pcvos
import segment
from dataset import synthetic as syn
from util import davis_metrics as dm
from util import progress as progress_module
from util.progress import Progress, duration, progress, resolve_mode

H, W = 64, 112
FAST = ["--device", "cpu", "--workers", "0"]


@pytest.fixture
def log_lines(monkeypatch):
    """Plain lines, one per step."""
    monkeypatch.setenv("PCVOS_PROGRESS", "log")
    monkeypatch.setenv("PCVOS_PROGRESS_EVERY", "0")
    monkeypatch.setattr(progress_module, "_active", [])


def _progress_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("progress: ")]


# --------------------------------------------------------------------------- the module


def test_log_lines_show_every_level_with_counts_rate_eta_and_a_closing_line(log_lines, capsys):
    for video in progress(["a", "b"], "bench videos"):
        for _ in progress(iter(range(3)), f"{video} frames", total=3):
            pass
    captured = capsys.readouterr()
    lines = _progress_lines(captured.err)
    assert captured.out == ""  # stdout stays for results
    assert lines[0].startswith("progress: bench videos 0/2 | a frames 1/3, ") and "/s" in lines[0]
    assert "ETA 0:00:0" in lines[0]
    assert [re.search(r"a frames (\d)/3", line).group(1) for line in lines[:3]] == ["1", "2", "3"]
    assert lines[3].startswith("progress: bench videos 0/2 | a frames 3/3") and "done in 0:00:00" in lines[3]
    assert lines[4].startswith("progress: bench videos 1/2, ")
    assert lines[5].startswith("progress: bench videos 1/2, ETA") and "| b frames 1/3" in lines[5]
    assert lines[-1].startswith("progress: bench videos 2/2") and lines[-1].endswith("done in 0:00:00")
    assert len(lines) == 11


def test_log_lines_are_periodic_and_an_interrupted_loop_says_nothing_more(monkeypatch, capsys):
    monkeypatch.setenv("PCVOS_PROGRESS", "log")
    monkeypatch.setenv("PCVOS_PROGRESS_EVERY", "30")
    monkeypatch.setattr(progress_module, "_active", [])
    clock = [1000.0]

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return clock[0]

    monkeypatch.setattr(progress_module, "time", FakeTime)
    for _ in progress(range(10), "frames"):
        clock[0] += 10.0  # 10 s a step: a line every third step
    lines = _progress_lines(capsys.readouterr().err)
    assert [line.split(",")[0] for line in lines] == [f"progress: frames {n}/10" for n in (3, 6, 9, 10)]
    assert lines[0] == "progress: frames 3/10, 10.0 s each, ETA 0:01:10"
    assert lines[-1] == "progress: frames 10/10, 10.0 s each, done in 0:01:40"
    with pytest.raises(KeyboardInterrupt):
        for i in progress(range(10), "frames"):
            clock[0] += 10.0
            if i == 4:
                raise KeyboardInterrupt
    lines = _progress_lines(capsys.readouterr().err)
    assert lines == ["progress: frames 3/10, 10.0 s each, ETA 0:01:10"]  # no 'done' line


def test_bar_on_a_terminal_and_nothing_with_none(monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "_active", [])
    monkeypatch.setenv("PCVOS_PROGRESS", "bar")
    for _ in progress(range(2), "videos"):
        for _ in progress(range(4), "v frames"):
            pass
    err = capsys.readouterr().err
    assert "videos 2/2" in err and "videos 0/2 | v frames 1/4" in err and "progress:" not in err
    monkeypatch.setenv("PCVOS_PROGRESS", "none")
    assert list(progress(range(3), "frames")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("PCVOS_PROGRESS", "auto")
    assert resolve_mode() == "log"  # pytest's stderr is not a terminal
    monkeypatch.setenv("PCVOS_PROGRESS", "loud")
    with pytest.raises(ValueError, match="PCVOS_PROGRESS / --progress loud: not one of auto, bar, log, none"):
        resolve_mode()


def test_a_total_too_small_is_raised_and_an_unknown_total_counts(log_lines, capsys):
    with Progress("frames", total=2) as meter:
        for i in range(4):
            meter.update(i + 1)
    assert meter.total == 4
    assert list(progress((i for i in range(3)), "frames")) == [0, 1, 2]  # no len: no total
    lines = _progress_lines(capsys.readouterr().err)
    assert "frames 4/4" in lines[3] and lines[-2].startswith("progress: frames 3,") and "ETA" not in lines[-2]
    assert duration(3725.4) == "1:02:05"


# --------------------------------------------------------------------------- the hooks


def test_segment_py_reports_every_frame_of_both_directions(
    small_model, two_generic_videos, log_lines, tmp_path, capsys
):
    masks = syn.generate_video(syn.SyntheticConfig(num_frames=5, height=H, width=W, num_objects=1, seed=7)).masks
    video = next((two_generic_videos / "JPEGImages").iterdir())
    syn.write_first_mask(tmp_path / "m.png", masks[2])
    assert segment.main(["--video", str(video), "--mask", f"2:{tmp_path / 'm.png'}", "--output", str(tmp_path / "o"),
                         "--model", str(small_model), "--size", "-1", *FAST]) == 0
    lines = _progress_lines(capsys.readouterr().err)
    backward = [line for line in lines if "backward frames" in line]
    forward = [line for line in lines if line.startswith("progress: frames")]
    assert [re.search(r"backward frames (\d)/3", line).group(1) for line in backward] == ["1", "2", "3", "3"]
    assert [re.search(r"frames (\d)/5", line).group(1) for line in forward] == ["1", "2", "3", "4", "5", "5"]
    assert "done in" in forward[-1]


def test_benchmark_drivers_report_videos_and_frames(small_model, two_generic_videos, log_lines, tmp_path, capsys):
    assert eval_generic.main(["--generic-root", str(two_generic_videos), "--output", str(tmp_path / "out"),
                              "--model", str(small_model),
                              "--size", "-1", *FAST]) == 0
    lines = _progress_lines(capsys.readouterr().err)
    assert lines[0].startswith("progress: generic videos 0/2 | g_000 frames 1/5")
    assert any(line.startswith("progress: generic videos 1/2") and "g_001 frames 5/5" in line for line in lines)
    assert lines[-1].startswith("progress: generic videos 2/2") and "done in" in lines[-1]


def test_the_sweep_reports_each_l(small_model, two_generic_videos, log_lines, tmp_path, capsys):
    assert inference_pretrained_pcvos.main([
        "--model", str(small_model), "--clip-lengths", "2", "3", "--benchmarks", "generic",
        "--generic-root", str(two_generic_videos),
        "--size", "-1", "--output", str(tmp_path / "sweep"), *FAST]) == 0
    lines = _progress_lines(capsys.readouterr().err)
    assert any(line.startswith("progress: sweep L values 0/2 | generic videos 1/2") for line in lines)
    assert any(line.startswith("progress: sweep L values 1/2, ") for line in lines)
    assert lines[-1].startswith("progress: sweep L values 2/2") and "done in" in lines[-1]


def test_scoring_reports_its_chunks(log_lines, tmp_path, capsys):
    config = syn.SyntheticConfig(num_frames=20, height=H, width=W, num_objects=1, seed=2)
    syn.write_davis(tmp_path / "trainval", syn.make_split("s", 2, config, seed=4, allow_late=False))
    gt = tmp_path / "trainval"
    evaluation = dm.evaluate(gt, gt / "Annotations" / "480p", workers=1)
    assert np.isclose(evaluation.global_row()["J-Mean"], 1.0)
    lines = _progress_lines(capsys.readouterr().err)
    assert [line.split(",")[0] for line in lines[:4]] == [f"progress: scoring chunks {i}/4" for i in range(1, 5)]
    assert "done in" in lines[-1]
