"""Training engine: stage presets, data, optimiser, AMP, DDP, accumulation, checkpoints, logging.

Launcher agnostic: ``python train.py`` on one device or the CPU, ``torchrun
--nproc_per_node=N train.py`` for several processes; the GLOBAL batch size is
fixed and split as ``global = world_size x accum_steps x micro_batch``.

Exact resumption: every sample is a pure function of (seed, global sample
index) and iteration ``i`` trains on samples ``[i G, (i + 1) G)``
(``dataset/training.py``), so the data pipeline has no hidden state to save;
the checkpoint holds network, optimiser, scheduler, GradScaler, RNG states and
the iteration, which is also the sampler position.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from model.checkpoint import QUALITY_PREFIX, REFINE_PREFIXES, atomic_save, load_file, load_weights
from model.curves import CURVES_JSON, CURVES_PNG, TrainingCurves, frame_tiles
from model.encoders import load_imagenet_weights
from model.losses import BootstrapSchedule
from model.network import PCVOS, PCVOSConfig
from model.train_config import STAGE_PRESETS, TrainConfig
from model.train_forward import PerClipUnroll, compute_losses
from util.progress import Progress, duration
from util.runtime import autocast, resolve_device

CHECKPOINT_FORMAT = "pcvos-train-v1"

class NonFiniteLossError(RuntimeError):
    """Raised when a loss is NaN/inf; a ``*_nonfinite.pth`` checkpoint was written first."""


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill preset fields of the stage and check the values; returns a new config."""
    if config.stage not in STAGE_PRESETS:
        raise ValueError(f"--stage {config.stage}: choose 0 (static), 1 (BL30K), 2 or 3 (DAVIS + YouTube-VOS)")
    if config.model_size not in ("paper", "small"):
        raise ValueError(f"--model-size {config.model_size!r}: choose 'paper' or 'small'")
    preset = STAGE_PRESETS[config.stage]
    updates = {k: v for k, v in preset.items() if getattr(config, k) is None}
    if config.batchnorm not in ("frozen", "train"):
        raise ValueError(f"--batchnorm {config.batchnorm!r}: choose frozen or train")
    if config.clip_lengths is None:
        updates["clip_lengths"] = (2,) if config.stage == 0 else (3, 3)
    if config.run_name is None:
        updates["run_name"] = f"s{config.stage}_{config.model_size}"
    out = dataclasses.replace(config, **updates)
    out = dataclasses.replace(out, lr_steps=tuple(int(s) for s in out.lr_steps), clip_lengths=tuple(out.clip_lengths))
    if out.crop_size % 16:
        raise ValueError(f"--crop-size {out.crop_size}: must be a multiple of 16")
    low = (0.25 if out.stage == 1 else 0.36) if out.min_scale is None else out.min_scale  # dataset.training's
    if not 0 < low <= out.max_scale <= 1:
        raise ValueError(f"--min-scale {out.min_scale} / --max-scale {out.max_scale}: crop areas are fractions of "
                         "the frame's area with 0 < min-scale <= max-scale <= 1")
    if out.lr_schedule not in ("step", "cosine"):
        raise ValueError(f"--lr-schedule {out.lr_schedule!r}: choose step or cosine")
    if out.optimizer not in ("adam", "adamw"):
        raise ValueError(f"--optimizer {out.optimizer!r}: choose adam or adamw")
    if out.quality_only and not out.quality_head:
        raise ValueError("--quality-only trains the quality head alone: it needs --quality-head")
    if out.stop_after is not None and out.stop_after < 1:
        raise ValueError(f"--stop-after {out.stop_after}: must be >= 1 iteration")
    if not out.icr_lr_scale > 0:
        raise ValueError(f"--icr-lr-scale {out.icr_lr_scale}: the refinement's learning rate is --lr times this; "
                         "give a number > 0 (1 = the same as the rest)")
    if out.icr_lr_scale != 1.0 and (not out.refine or out.quality_only):
        raise ValueError(f"--icr-lr-scale {out.icr_lr_scale}: this run trains no refinement "
                         f"({'--no-icr' if not out.refine else '--quality-only'}); leave --icr-lr-scale out")
    return out


#: The files a run writes into its folder (``{run}`` is the run name); a folder holding any of them (or
#: any other .pth) belongs to an earlier run.
RUN_FILES = ("{run}_checkpoint.pth", "{run}_final.pth", "{run}_nonfinite.pth", "{run}_quality_head.pth")
#: the pictures of a run beside its TensorBoard log (model/curves.py); replaced with the run by --overwrite
LOG_FILES = (CURVES_PNG, CURVES_JSON)


def check_run_dir(config: TrainConfig) -> None:
    """Refuse to start a run in a folder that holds an earlier run's checkpoints.

    Allowed there: ``resume`` of a checkpoint inside that folder (continuing that run), or ``overwrite``.

    Raises:
        ValueError: naming the folder, what it holds and the flags that decide.
    """
    run_dir = Path(config.output) / config.run_name
    existing = sorted(run_dir.glob("*.pth")) if run_dir.is_dir() else []
    if not existing or config.overwrite:
        return
    if config.resume and Path(config.resume).resolve().parent == run_dir.resolve():
        return
    names = ", ".join(p.name for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
    checkpoint = run_dir / f"{config.run_name}_checkpoint.pth"
    if config.resume:
        raise ValueError(
            f"{run_dir}: holds the checkpoints of another run ({names}), and --resume {config.resume} is not "
            "in it; pass --overwrite to replace them, or choose another --run-name or --output"
        )
    hint = f"--resume {checkpoint} to continue it, " if checkpoint.is_file() else ""
    raise ValueError(
        f"{run_dir}: holds the checkpoints of an earlier run ({names}); pass {hint}--overwrite to replace it, "
        "or choose another --run-name or --output"
    )


def model_config(config: TrainConfig) -> PCVOSConfig:
    """The architecture of a stage: the stage-0 model has a 4-channel (single-object) value encoder."""
    base = PCVOSConfig.small() if config.model_size == "small" else PCVOSConfig()
    return dataclasses.replace(base, value_in_channels=4 if config.stage == 0 else 5, quality_head=config.quality_head,
                               refine=config.refine)


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Read torchrun's env (RANK, LOCAL_RANK, WORLD_SIZE); start gloo (CPU) or nccl (CUDA) when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)
    device = resolve_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device(device.type, info.local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def micro_batch_size(global_batch: int, world: int, accum: int) -> int:
    """Per-process batch of one micro-step; the global batch must split evenly."""
    if accum < 1 or global_batch % (world * accum):
        raise ValueError(
            f"--batch-size {global_batch} (global) is not divisible by world_size {world} x "
            f"--accum-steps {accum}; choose a multiple of {world * max(1, accum)}"
        )
    return global_batch // (world * accum)


# --------------------------------------------------------------------------- data


#: What the trainer is handed to read its data: ``(resolved config, start, stop, rank, world, pin_memory)`` ->
#: micro-batches (dicts of tensors) for iterations [start, stop) of this process; ``train.py`` hands it
#: ``dataset.training.training_loader``.
DataFactory = Callable[[TrainConfig, int, int, int, int, bool], Iterable[dict]]


# --------------------------------------------------------------------------- checkpoints


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) RNG states as weights_only-loadable values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict:
    state = scheduler.state_dict()
    if "milestones" in state:  # MultiStepLR: a Counter; plain ints for weights_only loading
        state["milestones"] = {int(k): int(v) for k, v in state["milestones"].items()}
    return state


class CosineFactor:
    """LR factor of iteration i: half a cosine from 1 at i = 0 to 0 at i = total (a picklable LambdaLR rule)."""

    def __init__(self, total: int) -> None:
        self.total = max(1, int(total))

    def __call__(self, iteration: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(iteration, self.total) / self.total))


def parameter_groups(net: PCVOS, config: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups: one at ``lr``, or with ``icr_lr_scale`` != 1 the refinement's parameters
    (``input_proj``, ``refine_transformer``) in a second group at ``lr x icr_lr_scale``. Frozen parameters are left
    out."""
    trained = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    if config.icr_lr_scale == 1.0:
        return [{"params": [p for _, p in trained]}]
    refine = [p for name, p in trained if name.startswith(REFINE_PREFIXES)]
    rest = [p for name, p in trained if not name.startswith(REFINE_PREFIXES)]
    return [{"params": rest}] + ([{"params": refine, "lr": config.lr * config.icr_lr_scale}] if refine else [])


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of ``config`` (stepped once per iteration)."""
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, CosineFactor(config.iterations))
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.lr_steps), config.lr_gamma)


# --------------------------------------------------------------------------- the run


@dataclass
class TrainResult:
    # network-only weights usable by model.checkpoint.build_model; None when the run stopped early
    # (``stop_after``) before its last iteration: only ``checkpoint`` is written then
    final: Path | None
    checkpoint: Path  # full training checkpoint (resume)
    losses: list[float] = field(default_factory=list)  # total loss per iteration of this run (rank 0)
    seconds_per_iteration: float = 0.0
    iteration: int = 0  # iterations completed (the checkpoint's position)
    iterations: int = 0  # iterations of the whole run

    @property
    def complete(self) -> bool:
        """True when the run reached its last iteration (and wrote ``final``)."""
        return self.iteration >= self.iterations


def freeze_batchnorm(module: nn.Module) -> None:
    """Train mode with every BatchNorm in eval mode (running stats frozen; affine still trained), as STCN."""
    module.train()
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _flag_value(value: object) -> str:
    """A setting as its command-line flag writes it (2e-4 -> 0.0002, (125000,) -> 125000)."""
    if isinstance(value, (list, tuple)):
        return " ".join(_flag_value(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


class Trainer:
    """One training run. Use :func:`train` unless you need the pieces."""

    def __init__(self, config: TrainConfig, data: DataFactory, log: Callable[[str], None] = print) -> None:
        self.config = config = resolve(config)
        self.data = data
        self.dist, self.device = init_distributed(config.device)
        self.precision = _resolve_precision(config.precision, self.device)
        self.log = log if self.dist.main else (lambda _msg: None)
        self.micro = micro_batch_size(config.batch_size, self.dist.world, config.accum_steps)
        self.run_dir = Path(config.output) / config.run_name
        check_run_dir(config)  # before any work: a refused run costs nothing
        self.start_iteration = 0
        torch.manual_seed(config.seed)  # same initial weights on every rank
        self.net = PCVOS(model_config(config))
        self._initial_weights()
        self.net.to(self.device)
        if config.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if config.quality_only:  # only the quality head learns
            for name, param in self.net.named_parameters():
                param.requires_grad_(name.startswith(QUALITY_PREFIX))
        self.unroll = PerClipUnroll(self.net, config.clip_lengths, quality=config.quality_head)
        if self.dist.world > 1:
            self.model: nn.Module = nn.parallel.DistributedDataParallel(
                self.unroll, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        else:
            self.model = self.unroll
        opt_cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        self.optimizer = opt_cls(parameter_groups(self.net, config), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.bootstrap = BootstrapSchedule(config.bootstrap_start, config.bootstrap_end)
        if config.resume:
            self._resume(config.resume)
        self.log(
            f"stage {config.stage}, {self.net.config.name} model, {self.device} {self.precision}: global batch "
            f"{config.batch_size} = {self.dist.world} process(es) x {config.accum_steps} accumulation step(s) x "
            f"micro-batch {self.micro}"
        )

    # -- set-up ---------------------------------------------------------------------------
    def _initial_weights(self) -> None:
        cfg = self.config
        if cfg.resume:
            return
        if cfg.weights:
            report = load_weights(self.net, cfg.weights)
            self.log(report.summary())
            return
        if not cfg.imagenet:
            self.log("backbones: random initialisation (--no-imagenet)")
            return
        try:
            load_imagenet_weights(self.net.key_encoder, self.net.config.key_backbone, cfg.imagenet_dir)
            full_width = self.net.config.value_width == 64
            if full_width:
                load_imagenet_weights(self.net.value_encoder, "resnet18", cfg.imagenet_dir)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{error}\n(ImageNet initialisation is the STCN/PCVOS recipe.)") from error
        self.log("backbones: ImageNet initialisation" if full_width else
                 f"key encoder: ImageNet initialisation; value encoder (width {self.net.config.value_width}, no "
                 "ImageNet weights of that shape): random initialisation")

    def _resume(self, path: str) -> None:
        state = load_file(path)  # a damaged file: CheckpointError naming it, not torch's traceback
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a train.py training checkpoint (use --weights for plain weights)")
        if state["model_config"] != self.net.config.to_dict() or state["stage"] != self.config.stage:
            raise ValueError(f"{path}: stage/model differ from this run (stage {state['stage']}); use --weights")
        self._check_resumed_settings(path, state.get("config") or {})
        self.net.load_state_dict(state["network"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        sched = dict(state["scheduler"])
        if ("milestones" in sched) != isinstance(self.scheduler, torch.optim.lr_scheduler.MultiStepLR):
            raise ValueError(f"{path}: saved with another --lr-schedule than this run's {self.config.lr_schedule!r}")
        # Both rules follow this run's flags (a re-planned run's --iterations / --lr-steps, docs/training.md): the
        # cosine rule is rebuilt from --iterations, the step rule's milestones and factor are this run's.
        if "milestones" in sched:
            sched["milestones"] = Counter(self.config.lr_steps)
            sched["gamma"] = self.config.lr_gamma
        else:
            sched["lr_lambdas"] = [None] * len(self.scheduler.lr_lambdas)
        self.scheduler.load_state_dict(sched)
        if "milestones" in sched:
            self._follow_step_rule(path, state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.start_iteration = int(state["iteration"])
        self.log(f"resumed {path} at iteration {self.start_iteration}")
        if self.config.weights:
            started = (state.get("config") or {}).get("weights")
            origin = "" if started is None else (
                f"; the run started from {started}" + ("" if Path(started) == Path(self.config.weights) else
                                                       ", not from this file"))
            self.log(f"note: --weights {self.config.weights} ignored: the --resume checkpoint holds the weights"
                     f"{origin}")

    def _follow_step_rule(self, path: str, saved: dict) -> None:
        """After a resume under other --lr-steps / --lr-gamma than the checkpoint's: set each group's learning rate
        to what this run's rule gives at the resumed iteration (the scheduler multiplies the current rate by the
        factor at each milestone, so a milestone moved across the resumed iteration would otherwise be missed or
        applied twice), and say so."""
        steps, gamma = sorted(int(k) for k in saved["milestones"]), float(saved["gamma"])
        if steps == sorted(self.config.lr_steps) and gamma == self.config.lr_gamma:
            return
        done = int(saved["last_epoch"])
        passed = sum(1 for step in self.config.lr_steps if step <= done)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * self.config.lr_gamma ** passed
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        self.log(f"note: {path} was saved with --lr-steps {_flag_value(steps)} --lr-gamma {_flag_value(gamma)}; "
                 f"from iteration {done} the learning rate follows this run's --lr-steps "
                 f"{_flag_value(self.config.lr_steps)} --lr-gamma {_flag_value(self.config.lr_gamma)} (now "
                 f"{_flag_value(self.scheduler._last_lr[0])})")

    def _check_resumed_settings(self, path: str, saved: dict) -> None:
        """Refuse a resume whose optimiser settings differ from the checkpoint's. The optimiser and scheduler
        states carry them (each group's learning rate and base learning rate, the weight decay), so another value
        on the command line would be silently ignored, or, for --icr-lr-scale between 1 and another value, fail on
        torch's parameter-group mismatch. A setting an older checkpoint did not save is not checked
        (--icr-lr-scale: 1, the only value before it was saved)."""
        fields = ["lr", "optimizer", "weight_decay", "icr_lr_scale"]
        saved = {"icr_lr_scale": 1.0, **saved}
        for name in (f for f in fields if f in saved):
            before, now = _flag_value(saved[name]), _flag_value(getattr(self.config, name))
            if before != now:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{path}: saved with {flag} {before}, this run has {now}; the checkpoint's optimiser "
                                 f"state would keep {before}. Resume with the run's flags ({flag} {before}), or start "
                                 f"a new run from its weights: --weights {path} with another --run-name, without "
                                 "--resume")

    def _loader(self, start: int, stop: int) -> Iterable[dict]:
        return self.data(self.config, start, stop, self.dist.rank, self.dist.world, self.device.type == "cuda")

    def training_state(self, iteration: int) -> dict:
        """Everything needed to continue exactly after ``iteration`` completed iterations."""
        return {
            "format": CHECKPOINT_FORMAT,
            "network": self.net.state_dict(),
            "model_config": self.net.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": _scheduler_state(self.scheduler),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "iteration": iteration,
            "sampler": {"next_iteration": iteration, "global_batch": self.config.batch_size, "seed": self.config.seed},
            "stage": self.config.stage,
            "config": self.config.to_dict(),
        }

    def save(self, iteration: int, suffix: str = "checkpoint") -> Path:
        path = self.run_dir / f"{self.config.run_name}_{suffix}.pth"
        return atomic_save(self.training_state(iteration), path) if self.dist.main else path

    def save_final(self, iteration: int) -> Path:
        path = self.run_dir / f"{self.config.run_name}_final.pth"
        if self.dist.main:
            atomic_save(
                {"network": self.net.state_dict(), "model_config": self.net.config.to_dict(),
                 "stage": self.config.stage, "iteration": iteration},
                path,
            )
            if self.net.quality_head is not None:  # the head alone, for --quality-weights
                head = {QUALITY_PREFIX + k: v for k, v in self.net.quality_head.state_dict().items()}
                atomic_save(head, path.with_name(f"{self.config.run_name}_quality_head.pth"))
        return path

    def _remove_earlier_run(self) -> None:
        """--overwrite: delete the files an earlier run of this name wrote (its checkpoints, its TensorBoard
        log), so that nothing of it is mistaken for this run's (e.g. its *_final.pth after a stopped run)."""
        if not self.dist.main:
            return
        names = [f.format(run=self.config.run_name) for f in RUN_FILES] + list(LOG_FILES)
        removed = [p for p in (self.run_dir / name for name in names) if p.is_file()]
        for path in removed:
            path.unlink()
        if (self.run_dir / "tb").is_dir():
            shutil.rmtree(self.run_dir / "tb")
            removed.append(self.run_dir / "tb")
        if removed:
            self.log(f"--overwrite: removed the earlier run's {', '.join(p.name for p in removed)} from {self.run_dir}")

    # -- the loop --------------------------------------------------------------------------
    def train(self, callback: Callable[[int, dict], None] | None = None) -> TrainResult:
        cfg = self.config
        stop = cfg.iterations
        if cfg.stop_after is not None:
            stop = min(stop, self.start_iteration + cfg.stop_after)
        batches = iter(self._loader(self.start_iteration, stop))  # a missing dataset stops the run here
        if cfg.overwrite and not cfg.resume:
            self._remove_earlier_run()  # only now: a run that fails to start keeps the earlier one
        writer = self._writer()
        curves = TrainingCurves(self.run_dir, self.start_iteration) if writer is not None else None
        # a bar on a terminal; in a log the loss lines below carry the count and the ETA
        progress = Progress("it", cfg.iterations, self.start_iteration, cfg.progress if self.dist.main else "none",
                            lines=False)
        if cfg.batchnorm == "frozen":
            freeze_batchnorm(self.unroll)
        else:
            self.unroll.train()
        losses: list[float] = []
        tic = time.perf_counter()
        sums, count = Counter(), 0  # metric sums and iterations since the last log line
        for iteration in range(self.start_iteration, stop):
            metrics = self._step(iteration, batches)
            losses.append(metrics["loss/total"])
            sums.update(metrics)
            count += 1
            done = iteration + 1
            if callback is not None and self.dist.main:
                callback(iteration, metrics)
            if done % cfg.log_every == 0 or done == stop:
                mean = {k: v / count for k, v in sums.items()}
                sums, count = Counter(), 0
                self._log_scalars(writer, done, mean)
                if curves is not None:
                    curves.add(done, mean)
                    curves.write()
                progress.update(done)
                if progress.mode == "log":
                    self.log(f"it {done}/{cfg.iterations} {' '.join(f'{k}={v:.4g}' for k, v in sorted(mean.items()))} "
                             f"{1 / (progress.rate() or float('inf')):.2f}s/it ETA {duration(progress.eta() or 0)}")
            if writer is not None and cfg.image_every and done % cfg.image_every == 0:
                self._log_images(writer, done)
            progress.update(done)
            if cfg.save_every and done % cfg.save_every == 0 and done < stop:
                self.save(done)
        done = max(stop, self.start_iteration)
        elapsed = time.perf_counter() - tic
        progress.finish()
        checkpoint = self.save(done)
        complete = done >= cfg.iterations
        final = self.save_final(done) if complete else None
        if writer is not None:
            writer.close()
        if self.dist.world > 1:
            dist.barrier()
        per_it = elapsed / max(1, done - self.start_iteration)
        if complete:
            self.log(f"done: {done} iterations, {per_it:.3f} s/iteration; weights {final}")
        else:
            self.log(f"stopped early (--stop-after {cfg.stop_after}) after {done} of {cfg.iterations} iterations, "
                     f"{per_it:.3f} s/iteration; resumable checkpoint {checkpoint} (no final weights yet)")
        return TrainResult(final, checkpoint, losses, per_it, done, cfg.iterations)

    def _step(self, iteration: int, batches: Iterator[dict]) -> dict:
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        totals = Counter()
        for a in range(cfg.accum_steps):
            batch = next(batches)
            sync = self.dist.world > 1 and a < cfg.accum_steps - 1
            ctx = self.model.no_sync() if sync else contextlib.nullcontext()
            with ctx:
                terms, last = self._forward(batch, iteration)
                self._check_finite(terms.total, iteration)
                self.scaler.scale(terms.total / cfg.accum_steps).backward()
            totals.update({
                "loss/total": terms.total.item() / cfg.accum_steps,
                "loss/image": terms.image.item() / cfg.accum_steps,
                "loss/clip": terms.clip.item() / cfg.accum_steps,
                "iou": terms.iou.item() / cfg.accum_steps,
            })
            if terms.quality is not None:
                totals["loss/quality"] += terms.quality.item() / cfg.accum_steps
        self._last = last
        self.scaler.step(self.optimizer)
        self.scaler.update()
        totals["lr"] = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        return dict(totals)

    def _forward(self, batch: dict, iteration: int):
        rgb = batch["rgb"].to(self.device, non_blocking=True)
        masks = batch["masks"].to(self.device, non_blocking=True)
        cls_gt = batch["cls_gt"].to(self.device, non_blocking=True)
        selector = batch["selector"].to(self.device, non_blocking=True)
        with autocast(self.device, self.precision):
            logits, prob, *quality = self.model(rgb, masks, selector)  # + QualityPrediction with the head
        terms = compute_losses(
            logits.float(), prob.float(), masks, cls_gt, selector, self.config.clip_lengths,
            iteration, self.bootstrap, self.config.dice_weight,
            quality[0] if quality else None, self.config.quality_weight,
        )
        return terms, (rgb[0].detach(), masks[0].detach(), prob[0].detach())

    def _check_finite(self, loss: torch.Tensor, iteration: int) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).item() else 1.0])
        if self.dist.world > 1:
            bad = bad.to(self.device)
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item() > 0:
            path = self.save(iteration, "nonfinite")
            raise NonFiniteLossError(
                f"non-finite loss at iteration {iteration} (stage {self.config.stage}); weights before this step "
                f"saved to {path}. Lower --lr, use --precision fp32, or check the data of this iteration."
            )

    # -- logging ---------------------------------------------------------------------------
    def _writer(self):
        if not (self.config.tensorboard and self.dist.main):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir / "tb"), purge_step=self.start_iteration or None)

    def _log_scalars(self, writer, step: int, mean: dict) -> None:
        if writer is None:
            return
        for key, value in mean.items():
            writer.add_scalar(key if "/" in key else f"train/{key}", value, step)

    def _log_images(self, writer, step: int) -> None:
        """A labelled grid, a row per predicted frame: image | ground truth | prediction, every object drawn
        with the overlay renderer (first sample of the micro-batch; model/curves.py)."""
        rgb, masks, prob = self._last  # [T,3,H,W], [T,K,H,W], [K,T-1,H,W]
        writer.add_image("train/frames_gt_pred", frame_tiles(rgb, masks, prob), step, dataformats="HWC")


def export_final(checkpoint: str | Path) -> Path:
    """Write ``<run>_final.pth`` (network weights + ``model_config``) from a training checkpoint, beside it.

    For a caller that shortens a run after it stopped (the quickstart's time budget): the checkpoint of the
    last iteration trained becomes the run's final weights, without building the network or the data.
    """
    checkpoint = Path(checkpoint)
    state = load_file(checkpoint)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{checkpoint}: not a train.py training checkpoint; pass a <run>_checkpoint.pth")
    run_name = state["config"]["run_name"]
    final = checkpoint.with_name(f"{run_name}_final.pth")
    network = state["network"]
    atomic_save({"network": network, "model_config": state["model_config"], "stage": state["stage"],
                 "iteration": state["iteration"]}, final)
    head = {k: v for k, v in network.items() if k.startswith(QUALITY_PREFIX)}
    if head:  # the head alone, for --quality-weights, as Trainer.save_final
        atomic_save(head, final.with_name(f"{run_name}_quality_head.pth"))
    return final


def train(
    config: TrainConfig, data: DataFactory, callback: Callable[[int, dict], None] | None = None
) -> TrainResult:
    """Run (or resume) one training stage on ``data`` (see :data:`DataFactory`); returns the final weights'
    path and per-iteration losses."""
    trainer = Trainer(config, data)
    try:
        return trainer.train(callback)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
