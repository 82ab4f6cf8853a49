"""A training run's settings: :class:`TrainConfig` and the stage presets (see :mod:`model.trainer`).

Only the standard library is imported: ``train.py --help`` lists these defaults without loading
torch (docs/cli.md). :mod:`model.trainer` re-exports both names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

#: STCN's released stages; batch sizes are GLOBAL (STCN: per-GPU batch x 2 GPUs).
STAGE_PRESETS: dict[int, dict] = {
    0: {"iterations": 300_000, "batch_size": 16, "lr": 1e-5, "lr_steps": (150_000,)},
    1: {"iterations": 500_000, "batch_size": 8, "lr": 1e-5, "lr_steps": (400_000,)},
    2: {"iterations": 300_000, "batch_size": 8, "lr": 1e-5, "lr_steps": (250_000,)},
    3: {"iterations": 150_000, "batch_size": 8, "lr": 1e-5, "lr_steps": (125_000,)},
}


@dataclass
class TrainConfig:
    """Everything a run needs; ``None`` fields take the stage preset (see :func:`resolve`)."""

    stage: int = 3
    model_size: str = "paper"  # 'paper' or 'small' (CPU quickstart model, NOT the paper's)
    iterations: int | None = None
    batch_size: int | None = None  # global batch
    lr: float | None = None
    lr_steps: tuple[int, ...] | None = None
    lr_gamma: float = 0.1
    # 'step' (STCN / PCVOS: x lr_gamma at each of lr_steps) or 'cosine' (half a cosine from lr to 0 over the
    # iterations, lr_steps unused; the quickstart's schedule, docs/quickstart.md)
    lr_schedule: str = "step"
    weight_decay: float = 1e-7
    optimizer: str = "adam"  # 'adam' (STCN) or 'adamw'
    crop_size: int = 384
    min_scale: float | None = None  # RandomResizedCrop area lower bound; None: 0.36 (0.25 for BL30K)
    # RandomResizedCrop area upper bound (STCN: 1). Below 1 every crop enlarges the frame at least
    # crop / sqrt(max_scale * frame area) times: the quickstart trains its small model on objects at the scale its
    # evaluation upsamples them to (docs/quickstart.md).
    max_scale: float = 1.0
    num_workers: int = 4
    accum_steps: int = 1
    precision: str = "auto"  # auto: fp32 on the CPU, bf16 (or fp16) on CUDA
    device: str = "auto"
    output: str = "saves"
    run_name: str | None = None
    save_every: int = 10_000
    log_every: int = 100
    image_every: int = 800
    seed: int = 14159265
    resume: str | None = None  # a training checkpoint to continue exactly
    # PCVOS / STCN / stage-0 / our weights to start from; ignored (with a note) beside ``resume``, whose
    # checkpoint holds the weights, so that a resume command can repeat the run's flags unchanged
    weights: str | None = None
    # replace the checkpoints of an earlier run in <output>/<run_name>/ (without it, or ``resume`` of a
    # checkpoint in that folder, a run refuses to start there: no run silently overwrites another)
    overwrite: bool = False
    imagenet: bool = True
    refine: bool = True  # the intra-clip refinement (ICR); False = the "w/o ICR" ablation (docs/ablation.md)
    imagenet_dir: str | None = None
    # 'frozen' (STCN: running statistics fixed, affine trained; the default, for ImageNet-initialised backbones)
    # or 'train' (batch statistics; what the quickstart uses from random initialisation, docs/quickstart.md).
    batchnorm: str = "frozen"
    # NHWC weights and activations: oneDNN's faster layout on CPUs (quickstart: 0.69 vs 0.74 s/it in bf16,
    # 0.84 vs 1.00 in fp32; docs/training.md); the state_dict is the same either way.
    channels_last: bool = False
    static_root: str = "../static"
    youtube_root: str = "../YouTube"
    davis_root: str = "../DAVIS/2017"
    bl30k_root: str = "../BL30K"
    clip_lengths: tuple[int, ...] | None = None  # (3, 3) for video, (2,) for stage 0
    intra_gap: int = 5
    gap_low: int = 5
    gap_high: int = 15
    bootstrap_start: int = 20_000
    bootstrap_end: int = 70_000
    dice_weight: float = 1.0
    # learning rate of the intra-clip refinement (input_proj, refine_transformer) = lr x this; its attention
    # starts near uniform and its residual branches small (trunc_normal std 0.02), docs/ablation.md
    icr_lr_scale: float = 1.0
    quality_head: bool = False  # also train the optional quality head (IoU regression; --memory quality)
    quality_only: bool = False  # train only the quality head, everything else frozen (on top of --weights)
    quality_weight: float = 1.0  # weight of the quality loss (QDMN: 1)
    # stop after this many iterations of this invocation; short of ``iterations`` the run writes only its
    # resumable checkpoint (no *_final.pth: the weights of an unfinished schedule are not a final model)
    stop_after: int | None = None
    progress: str = "auto"  # 'auto' (bar on a TTY), 'bar', 'log', 'none'
    tensorboard: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
