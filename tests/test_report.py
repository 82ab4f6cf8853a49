"""What ran (inference/report.py): every driver's first line names its settings; its summary line gives
frames, FPS, peak memory and the memory a video keeps at its end."""

from __future__ import annotations

import argparse
import json
import re

import pytest
import torch

import eval_davis
import eval_generic
import eval_youtube
import inference_pretrained_pcvos
import segment
from dataset import synthetic as syn
from inference.report import header_line

H, W = 64, 112
FAST = ["--device", "cpu", "--workers", "0"]
CELLS = (H // 16) * (W // 16)  # memory elements of one frame at the original size (no padding: 64 x 112)


def _cpu() -> str:
    return f"cpu ({torch.get_num_threads()} threads)"


def _kept(line: str) -> tuple[int, int]:
    match = re.search(r"memory kept at the end of a video: (\d+) frames?, (\d+) elements, [\d.]+ [KM]iB$", line)
    assert match, line
    return int(match.group(1)), int(match.group(2))


def test_header_line_names_every_setting():
    args = argparse.Namespace(model="recipe", precision="bf16", compile=None, memory="afb", max_memory_frames=20,
                              memory_budget=None, flip=True, size=480, quality_weights=None)
    assert header_line("x.py", args, torch.device("cpu"), 5) == (
        f"x.py: model recipe (untrained test weights) | device {_cpu()} | precision bf16 | L 5 | "
        "memory afb (budget: 21 frames' worth of elements) | flip on | size 480 (short side)"
    )
    args.memory, args.memory_budget = "afb", 4000
    assert "| memory afb (budget: 4000 elements) |" in header_line("x.py", args, torch.device("cpu"), 5)
    args.memory, args.quality_threshold, args.quality_source = "quality", 0.8, "confidence"
    args.size, args.flip = -1, False
    line = header_line("sweep.py", args, torch.device("cpu"), [5, 10, 15, 25], extra=["direction both"])
    assert line.endswith("| L 5 10 15 25 | memory quality (budget: the annotated frames + 20, admitted at quality >= "
                         "0.8 x the annotated frame's, source confidence) | flip off | size original resolution "
                         "| direction both")


def test_segment_py_first_line_and_summary(small_model, two_generic_videos, tmp_path, capsys):
    video = two_generic_videos / "JPEGImages" / "g_000"
    mask = next((two_generic_videos / "Annotations" / "g_000").glob("*.png"))
    assert segment.main(["--video", str(video), "--mask", f"2:{mask}", "--output", str(tmp_path / "o"),
                         "--model", str(small_model), "--size", "-1", "-L", "1", "--memory", "fifo",
                         "--max-memory-frames", "1", *FAST]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"segment.py: model {small_model} | device {_cpu()} | precision fp32 | L 1 | "
        "memory fifo (budget: the annotated "
        "frames + the 1 most recent) | flip off | size original resolution | direction both"
    )
    summary = lines[-1]
    assert summary.startswith("g_000: 1 video, 5 frames in ")  # frames 2..4 forward, 2..0 backward: 2 counted once
    assert re.search(r"; [\d.]+ FPS end to end, [\d.]+ FPS engine; peak memory \d+ MiB RSS; ", summary), summary
    # fifo 1 at L = 1: the annotated frame and the most recent one, each H/16 x W/16 elements
    assert _kept(summary) == (2, 2 * CELLS)


def test_benchmark_drivers_first_line_and_summary(small_model, two_generic_videos, tmp_path, capsys):
    assert eval_generic.main(["--generic-root", str(two_generic_videos), "--output", str(tmp_path / "g"),
                              "--model", str(small_model),
                              "--size", "-1", "-L", "2", "--flip", *FAST]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"eval_generic.py: model {small_model} | device {_cpu()} | precision fp32 | L 2 | memory keep-all (no budget: "
        "one frame per clip, kept) | flip on | size original resolution"
    )
    assert lines[-1].startswith("generic: 2 videos, 10 frames in ") and "FPS engine; peak memory" in lines[-1]
    # keep-all at L = 2 over 5 frames: frames 0, 2 (and 4, memorised at the end of its clip), twice with flip
    frames, elements = _kept(lines[-1])
    assert frames in (4, 6) and elements == frames * CELLS


@pytest.mark.parametrize("driver", ["davis", "youtube"])
def test_davis_and_youtube_drivers_first_line(small_model, tmp_path, capsys, driver):
    config = syn.SyntheticConfig(num_frames=4, height=H, width=W, num_objects=1, seed=1)
    videos = syn.make_split("d", 1, config, seed=1, allow_late=False)
    if driver == "davis":
        syn.write_davis(tmp_path / "trainval", videos)
        argv = ["--davis-path", str(tmp_path / "trainval"), "--output", str(tmp_path / "out")]
        main, name, size = eval_davis.main, "eval_davis.py", "original resolution"
    else:
        syn.write_youtube(tmp_path / "yv", videos, ground_truth=False)
        argv = ["--yv-path", str(tmp_path / "yv"), "--output", str(tmp_path / "out"), "--size", "64"]
        main, name, size = eval_youtube.main, "eval_youtube.py", "64 (short side)"
    assert main([*argv, "--model", str(small_model), "-L", "3", "--memory", "afb", "--memory-budget", "500",
                 *FAST]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"{name}: model {small_model} | device {_cpu()} | precision fp32 | L 3 | "
                        "memory afb (budget: 500 "
                        f"elements) | flip off | size {size}")
    summary = next(line for line in lines if re.match(r"\S+: 1 videos, 4 frames in ", line))
    assert _kept(summary)[1] > 0


def test_sweep_first_line_summary_and_rows(small_model, two_generic_videos, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert inference_pretrained_pcvos.main([
        "--model", str(small_model), "--clip-lengths", "1", "4", "--benchmarks", "generic",
        "--generic-root", str(two_generic_videos),
        "--size", "-1", "--output", str(out), "--memory", "fifo", "--max-memory-frames", "1", *FAST]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"inference_pretrained_pcvos.py: model {small_model} | device {_cpu()} | precision fp32 | L 1 4 | memory fifo "
        "(budget: the annotated frames + the 1 most recent) | flip off | size original resolution"
    )
    per_run = [line for line in lines if line.startswith("L=")]
    assert [_kept(line) for line in per_run] == [(2, 2 * CELLS), (2, 2 * CELLS)]  # L 4: frames 0 and 4
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [(r["L"], r["kept_frames"], r["kept_elements"]) for r in rows] == [(1, 2, 2 * CELLS), (4, 2, 2 * CELLS)]
    assert lines[-1].startswith("sweep: 2 runs, 20 frames in ") and "largest run: peak memory" in lines[-1]
