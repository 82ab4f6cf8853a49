"""Training end to end on the CPU: stages 0/1/3, overfitting, exact resume, checkpoints, torchrun."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
from model.checkpoint import build_model
from model.curves import TrainingCurves
from model.trainer import (
    CHECKPOINT_FORMAT,
    NonFiniteLossError,
    TrainConfig,
    freeze_batchnorm,
    micro_batch_size,
    resolve,
)
from tests.test_datasets import write_static_root, write_video_roots
from util.pictures import BACKGROUND

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("train_data")
    davis, youtube, bl30k = write_video_roots(root)
    static = write_static_root(root / "static")
    return {
        "davis_root": str(davis), "youtube_root": str(youtube), "bl30k_root": str(bl30k), "static_root": str(static),
    }


def _config(data: dict, tmp_path: Path, **overrides) -> TrainConfig:
    base = dict(
        model_size="small", iterations=2, batch_size=2, crop_size=64, num_workers=0, imagenet=False,
        output=str(tmp_path / "out"), log_every=1, image_every=1, save_every=1, progress="log", **data,
    )
    base.update(overrides)
    return TrainConfig(**base)


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_stage0_runs_logs_and_checkpoints(data, tmp_path):
    result = train.run_full(_config(data, tmp_path, stage=0))
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    run_dir = tmp_path / "out" / "s0_small"
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    state = _state(result.checkpoint)
    assert state["format"] == CHECKPOINT_FORMAT and state["iteration"] == 2 and state["stage"] == 0
    assert state["model_config"]["value_in_channels"] == 4 and state["model_config"]["name"] == "small"
    for key in ("network", "optimizer", "scheduler", "scaler", "rng", "sampler", "config"):
        assert key in state
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert state["sampler"]["next_iteration"] == 2 and state["config"]["batch_size"] == 2
    assert state["scheduler"]["last_epoch"] == 2 and len(state["optimizer"]["state"]) > 0
    model, report = build_model(result.final)
    assert report.kind == "pcvos" and model.config.value_in_channels == 4
    assert not list(run_dir.glob(".*tmp*"))  # atomic saves leave no temp files
    # curves.png beside the TensorBoard log: the logged means, a marker at each logged iteration
    curves = TrainingCurves(run_dir, start_iteration=2)
    assert [p["iteration"] for p in curves.points] == [1, 2]
    assert curves.points[1]["loss/total"] == pytest.approx(result.losses[1])
    picture = np.array(Image.open(run_dir / "curves.png").convert("RGB"))
    losses, iou = curves.chart_panels()
    losses.render(), iou.render()
    assert picture.shape == (480, 1520, 3)
    for p in curves.points:
        col, row = losses.pixel(p["iteration"], p["loss/total"])
        assert tuple(picture[row, col]) != BACKGROUND
        col, row = iou.pixel(p["iteration"], p["iou"])
        assert tuple(picture[row, losses.width + col]) != BACKGROUND
    # TensorBoard's picture: a labelled image / ground truth / prediction grid with tiles of >= 192 pixels
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0})
    events.Reload()
    shots = events.Images("train/frames_gt_pred")
    assert [shot.step for shot in shots] == [1, 2] and shots[0].height >= 2 * 192 and shots[0].width >= 3 * 192


@pytest.mark.slow
def test_stage1_bl30k_runs(data, tmp_path):
    result = train.run_full(_config(data, tmp_path, stage=1, iterations=1, batch_size=1, tensorboard=False))
    assert len(result.losses) == 1 and torch.isfinite(torch.tensor(result.losses[0]))


@pytest.mark.slow
def test_stage3_cli_from_stage0_weights(data, tmp_path, capsys):
    s0 = train.run(_config(data, tmp_path, stage=0, iterations=1, batch_size=1, tensorboard=False))
    args = [
        "--stage", "3", "--model-size", "small", "--iterations", "2", "--batch-size", "2", "--crop-size", "64",
        "--num-workers", "1", "--weights", str(s0), "--output", str(tmp_path / "s3"), "--no-tensorboard",
        "--davis-root", data["davis_root"], "--youtube-root", data["youtube_root"], "--progress", "log",
        "--log-every", "1",
    ]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "widened from 4 to 5" in out and "it 2/2" in out
    assert re.search(r"^it 2/2 .*loss/total=\S+ .*\d\.\d\ds/it ETA 0:00:00$", out, re.M), out  # losses, pace, ETA
    state = _state(tmp_path / "s3" / "s3_small" / "s3_small_checkpoint.pth")
    assert state["network"]["value_encoder.conv1.weight"].shape[1] == 5


def test_missing_dataset_is_a_clear_cli_error(tmp_path, capsys):
    code = train.main(["--stage", "3", "--model-size", "small", "--no-imagenet", "--davis-root", str(tmp_path / "x"),
                       "--output", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert str((tmp_path / "x").resolve()) in err and "docs/training.md" in err and "download.py" in err


@pytest.mark.parametrize("schedule", ["step", pytest.param("cosine", marks=pytest.mark.slow)])
def test_resume_is_bit_exact(data, tmp_path, schedule):
    kw = dict(stage=3, iterations=4, tensorboard=False, save_every=0, lr_schedule=schedule)
    full = train.run_full(_config(data, tmp_path / "a", **kw))
    part = _config(data, tmp_path / "b", **kw)
    first = train.run_full(dataclasses.replace(part, stop_after=2))
    assert _state(first.checkpoint)["iteration"] == 2
    second = train.run_full(dataclasses.replace(part, resume=str(first.checkpoint)))
    a, b = _state(full.checkpoint), _state(second.checkpoint)
    assert a["iteration"] == b["iteration"] == 4
    assert a["network"].keys() == b["network"].keys()
    for key in a["network"]:
        assert torch.equal(a["network"][key], b["network"][key]), key
    for slot, values in a["optimizer"]["state"].items():
        for name, value in values.items():
            assert torch.equal(value, b["optimizer"]["state"][slot][name]), (slot, name)
    assert full.losses[2:] == second.losses
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    if schedule == "cosine":  # lr after 4 of 4 iterations: the end of the half cosine
        assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
        other = dataclasses.replace(part, lr_schedule="step", resume=str(first.checkpoint))
        with pytest.raises(ValueError, match="lr-schedule"):
            train.run_full(other)
    other = dataclasses.replace(part, icr_lr_scale=10.0, resume=str(first.checkpoint))
    with pytest.raises(ValueError, match="saved with --icr-lr-scale 1, this run has 10"):
        train.run_full(other)
    # settings the optimiser / scheduler state carries: another value would be silently kept at the saved one
    lr = _state(first.checkpoint)["config"]["lr"]
    changed = {"lr": (lr * 2, f"--lr {lr:g}, this run has {lr * 2:g}"),
               "weight_decay": (1e-3, "--weight-decay 1e-07, this run has 0.001"),
               "optimizer": ("adamw", "--optimizer adam, this run has adamw")}
    for field, (value, message) in changed.items():
        with pytest.raises(ValueError, match=f"saved with {message}; .* Resume with the run's flags"):
            train.run_full(dataclasses.replace(part, resume=str(first.checkpoint), **{field: value}))
    # both scales != 1: the optimiser groups match, the saved scale alone tells them apart
    scaled = _state(first.checkpoint)
    scaled["config"]["icr_lr_scale"] = 10.0
    scaled_path = first.checkpoint.with_name("scaled.pth")  # in the run's folder, as --resume requires
    torch.save(scaled, scaled_path)
    other = dataclasses.replace(part, icr_lr_scale=20.0, resume=str(scaled_path))
    with pytest.raises(ValueError, match="saved with --icr-lr-scale 10, this run has 20"):
        train.run_full(other)


def test_resume_follows_the_runs_lr_steps(data, tmp_path, capsys):
    """A run re-planned on resume (other --lr-steps, as scripts/quickstart.py does with --lr-schedule step) gets
    this run's step rule from the resumed iteration, with a note: the drop at step 1, already applied, is undone
    when the new step lies beyond the run (the scheduler alone would keep the saved milestones and rate)."""
    config = _config(data, tmp_path, stage=3, iterations=4, tensorboard=False, save_every=0, lr_schedule="step",
                     lr_steps=(1,))
    first = train.run_full(dataclasses.replace(config, stop_after=2))
    base = _state(first.checkpoint)["config"]["lr"]
    assert _state(first.checkpoint)["optimizer"]["param_groups"][0]["lr"] == pytest.approx(base * 0.1)
    capsys.readouterr()
    rates = []
    second = train.run_full(dataclasses.replace(config, lr_steps=(5,), resume=str(first.checkpoint)),
                            lambda iteration, metrics: rates.append(metrics["lr"]))
    assert rates == [pytest.approx(base)] * 2
    assert _state(second.checkpoint)["scheduler"]["milestones"] == {5: 1}
    out = capsys.readouterr().out
    assert "was saved with --lr-steps 1 --lr-gamma 0.1; from iteration 2 the learning rate follows this run's " \
           f"--lr-steps 5 --lr-gamma 0.1 (now {base:g})" in out, out


@pytest.mark.slow
def test_logged_means_after_a_resume_cover_the_iterations_since_the_last_line(data, tmp_path, monkeypatch):
    """Resumed at an iteration that is not a multiple of log_every, each logged mean still averages exactly the
    iterations since the previous line (it once divided by a count taken from the start, not the last line)."""
    from model.trainer import Trainer

    logged = []
    monkeypatch.setattr(Trainer, "_log_scalars", lambda self, writer, step, mean: logged.append((step, mean)))
    config = _config(data, tmp_path, stage=3, iterations=5, tensorboard=False, save_every=0, log_every=2)
    first = train.run_full(dataclasses.replace(config, stop_after=1))
    logged.clear()
    second = train.run_full(dataclasses.replace(config, resume=str(first.checkpoint)))
    l1, l2, l3, l4 = second.losses
    assert [step for step, _ in logged] == [2, 4, 5]
    assert [mean["loss/total"] for _, mean in logged] == pytest.approx([l1, (l2 + l3) / 2, l4])


def test_cosine_schedule_values():
    from model.trainer import CosineFactor, build_scheduler

    config = resolve(TrainConfig(stage=3, iterations=8, lr=2e-4, lr_schedule="cosine"))
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = build_scheduler(optimizer, config)
    lrs = []
    for _ in range(8):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(2e-4) and lrs[4] == pytest.approx(1e-4)  # half-way: half the lr
    assert lrs[2] == pytest.approx(1e-4 * (1 + 2 ** -0.5))
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert CosineFactor(8)(8) == pytest.approx(0.0) and CosineFactor(8)(100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lr-schedule"):
        resolve(TrainConfig(stage=3, lr_schedule="linear"))


def test_crop_scales_are_fractions_of_the_frame():
    assert resolve(TrainConfig(stage=3, min_scale=0.075, max_scale=0.3)).max_scale == 0.3
    for low, high in ((0.5, 0.3), (None, 0.2), (0.0, 0.3), (0.2, 1.5)):  # None: the preset's 0.36
        with pytest.raises(ValueError, match=f"--min-scale {low} / --max-scale {high}"):
            resolve(TrainConfig(stage=3, min_scale=low, max_scale=high))


@pytest.mark.slow
def test_channels_last_trains_the_same_network(data, tmp_path):
    kw = dict(stage=3, iterations=2, tensorboard=False, save_every=0, clip_lengths=(2, 2))
    plain = train.run_full(_config(data, tmp_path / "a", **kw))
    nhwc = train.run_full(_config(data, tmp_path / "b", channels_last=True, **kw))
    assert nhwc.losses == pytest.approx(plain.losses, rel=1e-4, abs=1e-5)
    a, b = _state(plain.final)["network"], _state(nhwc.final)["network"]
    assert a.keys() == b.keys()
    assert b["key_encoder.conv1.weight"].is_contiguous(memory_format=torch.channels_last)
    # Adam normalises each step: where a gradient is ~0, an ulp of difference can flip the sign of a
    # step of size ~lr, so two runs may differ by up to 2 lr per step there; almost all weights agree.
    lr = resolve(_config(data, tmp_path, **kw)).lr
    diffs = torch.cat([(a[k].float() - b[k].float()).abs().flatten() for k in a if a[k].is_floating_point()])
    assert diffs.max().item() <= 2 * lr * kw["iterations"]
    assert diffs.median().item() < 1e-7
    model, _ = build_model(nhwc.final)  # a plain, contiguous network loads it
    assert model.config.name == "small"


@pytest.mark.slow
def test_overfit_single_batch_and_frozen_batchnorm():
    from model.losses import BootstrapSchedule
    from model.network import PCVOS, PCVOSConfig
    from model.train_forward import PerClipUnroll, compute_losses

    torch.manual_seed(0)
    net = PCVOS(PCVOSConfig.small())
    unroll = PerClipUnroll(net, (3, 3))
    freeze_batchnorm(unroll)
    bn = net.key_encoder.bn1
    assert not bn.training and net.decoder.training
    mean_before, weight_before = bn.running_mean.clone(), bn.weight.detach().clone()
    size = 32
    masks = torch.zeros(2, 7, 2, size, size)
    for t in range(7):
        masks[:, t, 0, 4 + t : 16 + t, 6:18] = 1
        masks[0, t, 1, 20:28, 18 + t // 2 : 28 + t // 2] = 1
    rgb = torch.randn(2, 7, 3, size, size) * 0.3 + masks[:, :, :1] * 1.5 - masks[:, :, 1:] * 1.5
    selector = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    cls_gt = (masks[:, :, 0] + 2 * masks[:, :, 1]).long()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        logits, prob = unroll(rgb, masks, selector)
        loss = compute_losses(logits, prob, masks, cls_gt, selector, (3, 3), 0, BootstrapSchedule()).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert torch.equal(bn.running_mean, mean_before)  # running stats frozen
    assert not torch.equal(bn.weight.detach(), weight_before)  # affine still trained


def test_nonfinite_loss_stops_with_checkpoint(data, tmp_path, monkeypatch):
    import model.trainer as trainer_module

    real = trainer_module.compute_losses

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        return dataclasses.replace(terms, total=terms.total * float("nan"))

    monkeypatch.setattr(trainer_module, "compute_losses", poisoned)
    with pytest.raises(NonFiniteLossError, match="nonfinite.pth"):
        train.run_full(_config(data, tmp_path, stage=0, iterations=1, batch_size=1, tensorboard=False))
    assert (tmp_path / "out" / "s0_small" / "s0_small_nonfinite.pth").is_file()


def test_global_batch_must_divide():
    assert micro_batch_size(8, 2, 2) == 2
    with pytest.raises(ValueError, match="not divisible"):
        micro_batch_size(6, 2, 2)


@pytest.mark.slow
def test_paper_model_one_iteration(data, tmp_path):
    result = train.run_full(
        _config(data, tmp_path, stage=3, model_size="paper", iterations=1, batch_size=1, crop_size=48,
                tensorboard=False)
    )
    assert torch.isfinite(torch.tensor(result.losses[0]))
    assert _state(result.final)["model_config"]["value_dim"] == 512


@pytest.mark.slow
def test_batchnorm_train_mode_learns_statistics(data, tmp_path):
    from model.trainer import resolve

    assert resolve(TrainConfig(imagenet=False)).batchnorm == "frozen"  # STCN's choice stays the default
    with pytest.raises(ValueError, match="--batchnorm 'x'"):
        resolve(TrainConfig(batchnorm="x"))
    key = "key_encoder.bn1.running_mean"
    for mode, learned in (("train", True), ("frozen", False)):
        result = train.run_full(_config(data, tmp_path / mode, stage=3, iterations=1, tensorboard=False,
                                        save_every=0, batchnorm=mode))
        running = _state(result.checkpoint)["network"][key]
        assert bool(running.abs().max() > 0) is learned, mode  # frozen statistics stay at their initial zeros


@pytest.mark.slow
def test_torchrun_two_processes_same_global_batch(data, tmp_path):
    common = [
        "--stage", "0", "--model-size", "small", "--iterations", "2", "--batch-size", "4", "--crop-size", "48",
        "--num-workers", "0", "--no-imagenet", "--static-root", data["static_root"], "--no-tensorboard",
        "--progress", "log", "--log-every", "1", "--batchnorm", "frozen",
    ]
    # Frozen BatchNorm statistics: with batch statistics, DDP keeps rank 0's running stats while
    # accumulation updates them once per micro-batch, so only the gradients would be comparable.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), *common, "--output", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "global batch 4 = 2 process(es) x 1 accumulation step(s) x micro-batch 2" in proc.stdout
    single = train.run_full(
        _config({"static_root": data["static_root"]}, tmp_path / "one", stage=0, batch_size=4, crop_size=48,
                tensorboard=False, accum_steps=2, batchnorm="frozen")
    )
    ddp = _state(tmp_path / "ddp" / "s0_small" / "s0_small_checkpoint.pth")
    one = _state(single.checkpoint)
    assert ddp["iteration"] == one["iteration"] == 2
    # Same samples per global batch; only the reduction order differs. As in the channels-last test,
    # Adam turns an ulp of gradient difference where the gradient is ~0 into up to 2 lr per step.
    assert ddp["network"].keys() == one["network"].keys()
    lr = resolve(TrainConfig(stage=0)).lr
    diffs = torch.cat([(ddp["network"][k].float() - v.float()).abs().flatten()
                       for k, v in one["network"].items() if v.is_floating_point()])
    assert diffs.max().item() <= 2 * lr * 2  # measured 1.4e-5 (4 of 2.5M weights above 1e-5)
    assert diffs.median().item() < 1e-8


# --------------------------------------------------------------------------- the CLI a person types


def _small_weights(tmp_path: Path) -> Path:
    """Network weights of the small stage-3 model in train.py's *_final.pth format (no training needed)."""
    from model.network import PCVOS
    from model.trainer import model_config

    config = model_config(resolve(TrainConfig(stage=3, model_size="small")))
    path = tmp_path / "w.pth"
    torch.save({"network": PCVOS(config).state_dict(), "model_config": config.to_dict()}, path)
    return path


def _cli(data: dict, out: Path, *extra: str) -> list[str]:
    return [
        "--stage", "3", "--model-size", "small", "--iterations", "2", "--batch-size", "1", "--crop-size", "48",
        "--clip-frames", "2", "2", "--workers", "0", "--no-imagenet", "--output", str(out), "--no-tensorboard",
        "--davis-root", data["davis_root"], "--youtube-root", data["youtube_root"], "--progress", "none", *extra,
    ]


@pytest.mark.slow
def test_stop_after_writes_a_checkpoint_and_the_documented_resume_command_continues(data, tmp_path, capsys):
    """--stop-after 1 of 2: a resumable checkpoint, no *_final.pth, and the printed command -- the run's flags,
    --weights included, plus --resume, as docs/training.md writes it -- finishes the run."""
    import shlex

    from model.trainer import export_final

    weights = _small_weights(tmp_path)
    run_dir = tmp_path / "runs" / "s3_small"
    assert train.main(_cli(data, tmp_path / "runs", "--weights", str(weights), "--stop-after", "1")) == 0
    out = capsys.readouterr().out
    checkpoint = run_dir / "s3_small_checkpoint.pth"
    assert _state(checkpoint)["iteration"] == 1
    assert not (run_dir / "s3_small_final.pth").exists()  # a stopped run is not final
    assert "stopped early after 1 of 2 iterations" in out and "done:" not in out
    command = next(line.strip() for line in out.splitlines() if line.strip().startswith("python train.py"))
    argv = shlex.split(command)[2:]
    assert argv[-2:] == ["--resume", str(checkpoint)] and "--stop-after" not in argv
    # the docs' form: <same flags> --resume <checkpoint>, --weights still among the flags
    assert train.main([*argv[:-2], "--weights", str(weights), "--resume", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert f"--weights {weights} ignored" in out and f"the run started from {weights}" in out
    assert "stopped early" not in out
    final = _state(run_dir / "s3_small_final.pth")
    assert final["iteration"] == 2 and _state(checkpoint)["iteration"] == 2
    # export_final (the quickstart's shortened runs) writes the same final weights from the checkpoint
    (run_dir / "s3_small_final.pth").unlink()
    exported = _state(export_final(checkpoint))
    assert exported["iteration"] == 2 and exported["model_config"] == final["model_config"]
    assert all(torch.equal(final["network"][k], exported["network"][k]) for k in final["network"])


@pytest.mark.slow
def test_stop_after_in_the_library_returns_no_final(data, tmp_path):
    result = train.run_full(_config(data, tmp_path, stage=0, iterations=3, batch_size=1, stop_after=1,
                                    tensorboard=False))
    assert result.final is None and not result.complete and (result.iteration, result.iterations) == (1, 3)
    assert not list((tmp_path / "out" / "s0_small").glob("*_final.pth"))
    with pytest.raises(ValueError, match="--stop-after 0"):
        resolve(TrainConfig(stop_after=0))


def test_an_existing_run_is_never_overwritten_silently(data, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "s3_small"
    run_dir.mkdir(parents=True)
    earlier = {name: f"earlier {name}".encode() for name in ("s3_small_checkpoint.pth", "s3_small_final.pth")}
    for name, payload in earlier.items():
        (run_dir / name).write_bytes(payload)
    (run_dir / "tb").mkdir()
    assert train.main(_cli(data, tmp_path / "runs")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run_dir) in err
    assert f"--resume {run_dir / 's3_small_checkpoint.pth'}" in err and "--overwrite" in err
    # a checkpoint of another folder does not make this one's resumable either
    elsewhere = tmp_path / "other" / "x_checkpoint.pth"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    with pytest.raises(ValueError, match="another run"):
        train.run_full(_config(data, tmp_path, stage=3, output=str(tmp_path / "runs"), resume=str(elsewhere)))
    assert {p.name: p.read_bytes() for p in run_dir.glob("*.pth")} == earlier  # untouched
    # --overwrite replaces the earlier run: its final weights do not survive a new run that stops early
    assert train.main(_cli(data, tmp_path / "runs", "--overwrite", "--stop-after", "1")) == 0
    assert "removed the earlier run's s3_small_checkpoint.pth, s3_small_final.pth, tb" in capsys.readouterr().out
    assert sorted(p.name for p in run_dir.iterdir()) == ["s3_small_checkpoint.pth"]
    assert _state(run_dir / "s3_small_checkpoint.pth")["iteration"] == 1


def _truncated_checkpoint(path: Path) -> Path:
    torch.save({"format": CHECKPOINT_FORMAT, "network": {"w": torch.zeros(4096)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted copy or download
    return path


def test_a_truncated_checkpoint_is_a_one_line_error_naming_the_file(data, tmp_path, capsys):
    bad = _truncated_checkpoint(tmp_path / "s3_small_checkpoint.pth")
    for flag in ("--resume", "--weights"):
        assert train.main(_cli(data, tmp_path / flag.strip("-"), flag, str(bad))) == 2, flag
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"{bad}: damaged checkpoint, truncated or corrupt" in err and "download it again" in err
        assert "earlier checkpoint" in err
    from model.checkpoint import CheckpointError, load_file

    (tmp_path / "notes.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pth: not a loadable PyTorch checkpoint"):  # not a torch file
        load_file(tmp_path / "notes.pth")


def test_every_flag_says_its_default_and_unit():
    parser = train.build_parser()
    text = " ".join(parser.format_help().split())
    assert "(default: None)" not in text
    helps = {}
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.dest == "help" or action.help == argparse.SUPPRESS:  # hidden old names (docs/cli.md)
            continue
        helps[action.option_strings[-1]] = formatter._get_help_string(action)
        assert "default" in helps[action.option_strings[-1]], action.option_strings
    units = {"--iterations": "iterations", "--batch-size": "samples", "--crop-size": "pixels",
             "--clip-frames": "frames", "--intra-gap": "frames", "--gap-low": "frames", "--save-every": "iterations",
             "--stop-after": "iterations", "--lr-steps": "iteration", "--min-scale": "fraction",
             "--max-scale": "fraction"}
    for flag, unit in units.items():
        assert unit in helps[flag].lower(), (flag, helps[flag])
    assert "(default: 20000 70000)" in helps["--bootstrap"] and "(default: off)" in helps["--overwrite"]
    args = parser.parse_args(["--stage", "3", "--weights", "a.pth", "--resume", "b.pth"])  # both accepted
    assert (args.weights, args.resume) == ("a.pth", "b.pth")


def test_icr_lr_scale_gives_the_refinement_its_own_learning_rate():
    from model.checkpoint import REFINE_PREFIXES
    from model.network import PCVOS, PCVOSConfig
    from model.trainer import build_scheduler, parameter_groups

    net = PCVOS(PCVOSConfig.small())
    names = {id(p): name for name, p in net.named_parameters()}
    config = resolve(TrainConfig(stage=3, iterations=8, lr=2e-4, lr_schedule="cosine", icr_lr_scale=10.0))
    optimizer = torch.optim.Adam(parameter_groups(net, config), lr=config.lr)
    rest, refine = optimizer.param_groups
    assert (rest["lr"], refine["lr"]) == (pytest.approx(2e-4), pytest.approx(2e-3))
    assert all(names[id(p)].startswith(REFINE_PREFIXES) for p in refine["params"])
    assert not any(names[id(p)].startswith(REFINE_PREFIXES) for p in rest["params"])
    assert len(rest["params"]) + len(refine["params"]) == len(list(net.parameters()))
    scheduler = build_scheduler(optimizer, config)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr() == [pytest.approx(1e-4), pytest.approx(1e-3)]  # the schedule scales both
    # the default is one group: the optimiser state of earlier runs and checkpoints stays as it was
    assert len(parameter_groups(net, resolve(TrainConfig(stage=3)))) == 1
    with pytest.raises(ValueError, match="--icr-lr-scale 0.0: .* give a number > 0"):
        resolve(TrainConfig(stage=3, icr_lr_scale=0.0))
    with pytest.raises(ValueError, match="--icr-lr-scale 10.0: this run trains no refinement \\(--no-icr\\)"):
        resolve(TrainConfig(stage=3, icr_lr_scale=10.0, refine=False))
