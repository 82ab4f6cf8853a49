"""The built-in default runs end to end (a few iterations) and leaves its report and checkpoint."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch

from scripts import quickstart


@pytest.mark.slow
def test_quickstart_short(tmp_path, capsys):
    out = tmp_path / "qs"
    assert quickstart.main(["--short", "--out", str(out), "--workers", "0", "--device", "cpu"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["clip_lengths"]) == set(report["selection"]) == {"1", "5"}
    for row in [*report["clip_lengths"].values(), *report["selection"].values(), report["flip_result"]]:
        assert 0.0 <= row["J&F"] <= 1.0 and row["fps"] > 0
    assert 0.0 <= report["baseline"]["J&F"] <= 1.0
    assert report["frame_size"] == [64, 112] and report["training_clips"] == "2+2"
    # The recorded L is the selection videos' best (the longer L on a tie), not the validation videos' best; the
    # headline is the validation videos' J&F at it, without mirror augmentation.
    recorded = report["recommended_clip_length"]
    assert recorded == quickstart.recommended_clip_length(
        {int(k): v for k, v in report["selection"].items()}, 1)[0]
    assert report["headline"] == {"clip_length": recorded, **report["clip_lengths"][str(recorded)]}
    assert report["overlay_clip_length"] == recorded
    assert [d.name for d in (out / "eval" / "val-flip").iterdir()] == [f"L{recorded}"]  # at the recorded L only
    assert sorted(d.name for d in (out / "eval").iterdir()) == ["baseline", "select", "val", "val-flip"]  # no probe
    motion = report["val_motion"]
    assert 0.0 <= motion["min"] <= motion["median"] <= motion["max"]
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# PCVOS quickstart report")
    assert f"**J&F {report['headline']['J&F']:.3f} at L = {recorded}**" in markdown
    assert "with mirror augmentation (`--flip`)" in markdown and "without mirror augmentation" in markdown
    for name in ("report.html", "loss.png", "overlay.png"):
        assert (out / name).stat().st_size > 0
    from model.checkpoint import build_model

    model, loaded = build_model(report["checkpoint"])
    assert model.config.name == "small"
    # The checkpoint records the chosen L and no mirror augmentation, and the report's command for other videos,
    # which has no -L, runs at them: same masks and J&F as the report's headline. (After 4 iterations those masks
    # are empty beyond frame 0: this checks the command line and its plumbing.)
    assert loaded.inference.clip_length == recorded
    assert "selection videos" in loaded.inference.why
    assert loaded.inference.flip is False and report["flip"] is True  # the flip figure was measured, not recorded
    import eval_davis

    line = next(li for li in markdown.splitlines() if li.startswith("python eval_davis.py"))
    argv = [str(out / "data" / "val") if a == "DAVIS_ROOT" else str(tmp_path / "rerun") if a == "out/" else a
            for a in shlex.split(line)[2:]]
    assert "-L" not in argv and f"records L = {recorded}" in markdown
    capsys.readouterr()
    assert eval_davis.main([*argv, "--device", "cpu", "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert f"-L {recorded}: the clip length" in err and "--flip: " not in err
    rerun = (tmp_path / "rerun" / "global_results-val.csv").read_text().splitlines()
    row = dict(zip(rerun[0].split(","), rerun[1].split(",")))
    assert float(row["J&F-Mean"]) == pytest.approx(report["headline"]["J&F"], abs=1e-3)
    ours_root = out / "eval" / "val" / f"L{recorded}"
    ours = sorted(ours_root.glob("*/*.png"))
    assert ours and [p.relative_to(ours_root) for p in ours] == [
        p.relative_to(tmp_path / "rerun") for p in sorted((tmp_path / "rerun").glob("*/*.png"))]
    assert all(p.read_bytes() == (tmp_path / "rerun" / p.relative_to(ours_root)).read_bytes() for p in ours)


@pytest.mark.slow
def test_default_validation_set_is_a_fair_test(tmp_path):
    """The default held-out videos: every target moves by >= its own size; copying the first mask scores <= 0.45."""
    from dataset.benchmarks import davis_benchmark

    args = quickstart.parse_args(["--out", str(tmp_path), "--train-videos", "1"])
    _, val_root, select_root = quickstart.make_data(args, 128, 224)
    for root, count in ((val_root, args.val_videos), (select_root, args.select_videos)):
        assert len(list((root / "JPEGImages" / "480p").iterdir())) == count
        assert min(quickstart.validation_motion(root)) >= 1.0
        bench = davis_benchmark(root, "2017", "val", tmp_path / "baseline" / root.parent.name)
        assert quickstart.copy_first_mask(bench, tmp_path / "baseline" / root.parent.name)["J&F-Mean"] <= 0.45
    # The selection videos are other videos than the validation videos (another seed of the same recipe).
    first = "val_000/00000.jpg"
    assert (val_root / "JPEGImages" / "480p" / first).read_bytes() != (
        select_root / "JPEGImages" / "480p" / first).read_bytes()


def test_data_is_reused_only_with_the_same_settings(tmp_path):
    def make(*flags):
        args = quickstart.parse_args(["--out", str(tmp_path), "--train-videos", "1", "--val-videos", "1",
                                      "--select-videos", "1", "--frames", "6", "--motion-speed", "0.2", *flags])
        return quickstart.make_data(args, 32, 48)

    _, val_root, _ = make()
    frame = next((val_root / "JPEGImages" / "480p").iterdir()) / "00000.jpg"
    before = frame.read_bytes()
    (tmp_path / "data" / "marker").write_text("kept")
    make()  # same settings: nothing is regenerated
    assert (tmp_path / "data" / "marker").exists()
    make("--lookalike-shift", "30", "--seed", "3")  # other settings: generated again from scratch
    assert not (tmp_path / "data" / "marker").exists()
    assert frame.read_bytes() != before
    (tmp_path / "data" / "recipe.json").unlink()  # an interrupted or older folder has no stamp
    (tmp_path / "data" / "marker").write_text("stale")
    make()
    assert not (tmp_path / "data" / "marker").exists() and frame.read_bytes() == before


def test_too_little_motion_is_a_clear_error(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--train-videos", "1", "--val-videos", "1", "--frames", "6",
            "--size", "32x48", "--motion-speed", "0.001"]
    assert quickstart.main(argv) == 2
    err = capsys.readouterr().err
    assert "quickstart: error:" in err and "move by >= 1.0" in err and "motion_speed" in err


def test_training_precision_auto_follows_the_cpu_flags(monkeypatch):
    from util.runtime import cpu_has_fast_bf16

    plain = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
    assert not cpu_has_fast_bf16(plain)
    assert cpu_has_fast_bf16(plain.replace("avx512bw", "avx512bw avx512_bf16"))
    assert cpu_has_fast_bf16(plain.replace("avx512bw", "amx_bf16"))
    assert not cpu_has_fast_bf16("")

    monkeypatch.setattr(quickstart, "cpu_has_fast_bf16", lambda: False)
    assert quickstart.training_precision("auto", torch.device("cpu")) == "fp32"
    assert quickstart.training_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(quickstart, "cpu_has_fast_bf16", lambda: True)
    assert quickstart.training_precision("auto", torch.device("cpu")) == "bf16"
    assert quickstart.training_precision("fp32", torch.device("cpu")) == "fp32"


def test_iterations_are_cut_only_when_they_do_not_fit_the_budget():
    args = quickstart.parse_args([])
    assert args.time_budget == 25.0 and args.iterations == 2250
    with pytest.raises(SystemExit):
        quickstart.parse_args(["--iterations", "0"])
    # The evaluation segments 6 validation and 12 selection videos of 40 frames at each of 3 clip lengths, plus the
    # 6 validation videos with mirror augmentation (each frame twice) at the recorded one; every frame is budgeted at
    # 1.1 x the seconds per frame measured at its clip length (scoring), the mirrored ones at the slowest, plus 60 s.
    assert args.flip is True and (args.val_videos, args.select_videos) == (6, 12)
    assert quickstart.evaluation_frames(args) == {1: 720, 5: 720, 10: 720, "flip": 480}
    speeds = {1: 0.1, 5: 0.06, 10: 0.05}
    assert quickstart.evaluation_seconds(args, speeds) == pytest.approx(60 + 1.1 * (72 + 43.2 + 36 + 48))
    args.flip = False
    assert quickstart.evaluation_frames(args) == {1: 720, 5: 720, 10: 720}
    assert quickstart.evaluation_seconds(args, dict.fromkeys((1, 5, 10), 0.05)) == pytest.approx(178.8)
    assert quickstart.evaluation_seconds(args, speeds) == pytest.approx(60 + 1.1 * (72 + 43.2 + 36))
    args.val_videos = 12
    assert sum(quickstart.evaluation_frames(args).values()) == 2880
    # The probe video's speed is scaled to the videos' mean object count, the key encoder costing 2.5 objects.
    assert quickstart.object_cost_factor([1, 2, 2, 1]) == pytest.approx(4.0 / 3.5)
    assert quickstart.object_cost_factor([2, 1]) == pytest.approx(4.0 / 4.5)
    assert quickstart.object_cost_factor([1, 1]) == 1.0
    # Re-planned after 200 iterations, halfway and three quarters through the plan.
    assert quickstart.replan_points(2250) == [200, 1125, 1687]
    assert quickstart.replan_points(1800) == [180, 900, 1350]
    assert quickstart.replan_points(4) == [2, 3] and quickstart.replan_points(1) == []
    # 200 done, 1100 s left: at 0.52 s/iteration 200 + 2115 >= 2250, all of them; at 0.65 only 200 + 1692.
    assert quickstart.plan_iterations(2250, 200, 0.52, 1100.0) == 2250
    assert quickstart.plan_iterations(2250, 200, 0.65, 1100.0) == 1892
    assert quickstart.plan_iterations(2250, 200, 0.65, -5.0) == 200  # over budget already: stop, keep what is done
    # The recorded clip length: the selection videos' best J&F; on a tie (to 3 decimals) the longer L.
    length, why = quickstart.recommended_clip_length({1: {"J&F": 0.78}, 5: {"J&F": 0.82}, 10: {"J&F": 0.69}}, 12)
    assert length == 5
    assert why == "the best J&F on 12 held-out selection videos: 0.820 at L = 5 against 0.780 at L = 1, 0.690 at L = 10"
    assert quickstart.recommended_clip_length({5: {"J&F": 0.7501}, 10: {"J&F": 0.7504}, 1: {"J&F": 0.7}}, 12)[0] == 10
    assert quickstart.recommended_clip_length({5: {"J&F": 0.752}, 10: {"J&F": 0.7504}}, 12)[0] == 5
    with pytest.raises(SystemExit):
        quickstart.parse_args(["--select-videos", "0"])


def test_training_crops_and_evaluation_size_follow_the_flags(tmp_path):
    """By default training crops enlarge the frames 1.2-2.4 times and the evaluation doubles the videos' size."""
    args = quickstart.parse_args([])
    config = quickstart.training_config(args, tmp_path)
    assert (config.min_scale, config.max_scale) == (0.075, 0.3) and config.crop_size == 112
    assert quickstart.eval_size(args) == 256  # 2 x the 128-pixel height
    assert quickstart.eval_size(quickstart.parse_args(["--eval-scale", "1"])) == -1  # the videos' own size
    assert quickstart.eval_size(quickstart.parse_args(["--eval-scale", "1.5", "--size", "96x160"])) == 144
    for bad in (["--eval-scale", "0"], ["--min-scale", "0.4", "--max-scale", "0.3"], ["--max-scale", "1.5"]):
        with pytest.raises(SystemExit):
            quickstart.parse_args(bad)


def simulated_training(monkeypatch) -> list[tuple[int, int, int, int]]:
    """Replace training with a simulated clock (0.6 s/iteration, 0.7 from iteration 200 on); returns the list
    that collects each segment's (start, stop, planned iterations, bootstrap end)."""
    from types import SimpleNamespace

    from model.trainer import TrainResult

    clock, segments = [0.0], []

    def fake_run_full(config, callback):
        start = int(config.resume.removeprefix("ck")) if config.resume else 0
        stop = min(config.iterations, start + config.stop_after)
        segments.append((start, stop, config.iterations, config.bootstrap_end))
        for i in range(start, stop):
            clock[0] += 0.6 if i < 200 else 0.7
            callback(i, {})
        return TrainResult(Path(f"final{stop}"), Path(f"ck{stop}"), [1.0] * (stop - start))

    monkeypatch.setattr(quickstart.train, "run_full", fake_run_full)
    monkeypatch.setattr(quickstart, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    return segments


def test_a_budgeted_run_re_plans_at_fixed_points_and_resumes_each_segment(tmp_path, monkeypatch):
    """Segments end at 200 and 1125 (points of the requested 2250; its third, 1687, lies beyond the shrunk plan),
    and halfway through the rest after a plan shrinks; each resumes the last checkpoint with the config of the
    current plan."""
    segments = simulated_training(monkeypatch)
    args = quickstart.parse_args([])
    config = quickstart.training_config(args, tmp_path)
    assert config.overwrite  # a rerun into the same --out replaces its earlier run (train.py refuses otherwise)
    final, losses, _, done = quickstart.train_model(args, config, deadline=1300.0, evaluation=200.0)
    # At 200 (t = 120 s): 200 + (1300 - 120 - 200 s evaluation) / 0.6 = 1833. At 1125 (t = 767.5 s, now
    # 0.7 s/iteration): 1125 + int((1300 - 767.5 - 200) / 0.7 = 474.99) = 1599, a shrunk plan: once more halfway,
    # at 1362 (t = 933.4 s): 1362 + int(166.6 / 0.7) = 1599, unchanged.
    assert segments == [(0, 200, 2250, 2250), (200, 1125, 1833, 1833), (1125, 1362, 1599, 1599),
                        (1362, 1599, 1599, 1599)]
    assert done == 1599 and len(losses) == 1599 and final == Path("final1599")


def test_a_plan_that_shrinks_below_the_next_point_is_re_planned_halfway(tmp_path, monkeypatch):
    """Cut to 1000 iterations after 200 (before the requested plan's halfway point, 1125), the run re-plans
    halfway through the rest, at 600, where a slower speed cuts it again (to 885: 285 iterations left, fewer than
    the 400 worth another point)."""
    segments = simulated_training(monkeypatch)
    args = quickstart.parse_args([])
    _, _, _, done = quickstart.train_model(args, quickstart.training_config(args, tmp_path), deadline=700.0,
                                           evaluation=100.0)
    # At 200 (t = 120 s): 200 + (700 - 120 - 100) / 0.6 = 1000. At 600 (t = 400 s): 600 + 200 / 0.7 = 885.
    assert quickstart.REPLAN_MIN_REST == 400
    assert [segment[:3] for segment in segments] == [(0, 200, 2250), (200, 600, 1000), (600, 885, 885)]
    assert done == 885


@pytest.mark.slow
def test_quickstart_short_fits_the_budget(tmp_path, capsys):
    out = tmp_path / "qs"
    argv = ["--short", "--time-budget", "0.2", "--out", str(out), "--workers", "0", "--device", "cpu"]
    assert quickstart.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    # 12 s minus the 60 s margin: after its first segment (2 iterations) the run stops.
    assert report["iterations_requested"] == 4 and report["iterations"] == 2
    assert report["time_budget_minutes"] == 0.2
    assert "too slow for all 4 iterations in the 0.2-minute budget" in (out / "report.md").read_text()
    assert "2 of the 4 iterations fit the 0.2-minute budget" in capsys.readouterr().out
    assert report["checkpoint"] == str(out / "runs" / "quickstart" / "quickstart_final.pth")
    weights = torch.load(report["checkpoint"], map_location="cpu", weights_only=True)
    assert weights["iteration"] == 2


@pytest.mark.slow
def test_a_budget_that_fits_does_not_change_the_trained_weights(tmp_path, capsys):
    """A budget that fits: the run is trained in segments (re-planned after 2 and 3 iterations), all iterations are
    trained, and the weights equal one uninterrupted run's."""
    weights = {}
    for budget in ("0", "100"):
        out = tmp_path / f"budget{budget}"
        argv = ["--short", "--time-budget", budget, "--out", str(out), "--workers", "0", "--device", "cpu",
                "--clip-lengths", "1"]
        assert quickstart.main(argv) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["iterations"] == report["iterations_requested"] == 4
        resumed = "quickstart_checkpoint.pth at iteration 2" in capsys.readouterr().out
        assert resumed == (budget == "100")  # the budgeted run really was segmented (re-planned at 2 and 3)
        weights[budget] = torch.load(report["checkpoint"], map_location="cpu", weights_only=True)["network"]
    assert weights["0"].keys() == weights["100"].keys()
    assert all(torch.equal(weights["0"][k], weights["100"][k]) for k in weights["0"])
