"""Train PCVOS: a thin CLI over :mod:`model.trainer` (see docs/training.md).

Examples::

    python train.py --stage 0 --static-root ../static                       # static pre-training
    python train.py --stage 3 --weights saves/s0_paper/s0_paper_final.pth   # main training (s03)
    torchrun --nproc_per_node=2 train.py --stage 3 --weights ...            # 2 processes, same global batch
    python train.py --stage 3 --weights saves/s0_paper/s0_paper_final.pth \
        --resume saves/s3_paper/s3_paper_checkpoint.pth                     # continue (same flags + --resume)

Programmatic use (e.g. a quickstart)::

    import train
    final = train.run(train.TrainConfig(stage=3, model_size="small", ...), callback=lambda it, m: ...)
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# Only light modules here: --help and a wrong path answer before torch loads (docs/cli.md, "Fast answers");
# model.trainer is imported when a run starts.
from model.train_config import STAGE_PRESETS, TrainConfig
from util.arguments import add_alias, new_parser, require_path
from util.errors import error_text, run_cli

if TYPE_CHECKING:
    from model.trainer import TrainResult

__all__ = ["TrainConfig", "TrainResult", "build_parser", "config_from_args", "main", "run", "run_full"]


def build_parser() -> argparse.ArgumentParser:
    presets = "; ".join(
        f"stage {s}: {p['iterations']} iterations, global batch {p['batch_size']}, lr {p['lr']}, "
        f"x0.1 at iteration {', '.join(map(str, p['lr_steps']))}"
        for s, p in STAGE_PRESETS.items()
    )
    # util.arguments' help ends each flag's text with its default; a flag whose default is computed (None)
    # says it in its own words (tests/test_training.py checks that every flag does)
    parser = new_parser("Train PCVOS (per-clip training, docs/training.md). Stage presets -- " + presets + ".")
    d = TrainConfig()
    its = {s: p["iterations"] for s, p in STAGE_PRESETS.items()}
    steps = {s: p["lr_steps"][0] for s, p in STAGE_PRESETS.items()}
    parser.add_argument("--stage", type=int, choices=(0, 1, 2, 3), required=True,
                        help="training stage: 0 static-image pre-training, 1 BL30K, 2 or 3 DAVIS 2017 + "
                             "YouTube-VOS 2019 (required, no default)")
    parser.add_argument("--model-size", choices=("paper", "small"), default=d.model_size,
                        help="'small' = CPU quickstart model (ResNet-18 keys, narrow), NOT the paper's model")
    parser.add_argument("--iterations", type=int, metavar="N",
                        help="total iterations (optimiser steps over one global batch) of the stage (default: the "
                             f"stage preset, {its[0]} / {its[1]} / {its[2]} / {its[3]} for stage 0 / 1 / 2 / 3)")
    parser.add_argument("--batch-size", type=int, metavar="SAMPLES",
                        help="GLOBAL batch size in samples, over all processes (default: the stage preset, 16 "
                             "for stage 0, else 8)")
    parser.add_argument("--accum-steps", type=int, default=d.accum_steps, metavar="N",
                        help="gradient accumulation steps per iteration; micro-batch = batch / (processes x N) "
                             "samples")
    parser.add_argument("--lr", type=float, help="learning rate (default: the stage preset, 1e-05)")
    parser.add_argument("--lr-steps", type=int, nargs="+", metavar="ITERATION",
                        help="iterations at which the LR is multiplied by --lr-gamma, with --lr-schedule step "
                             f"(default: the stage preset, {steps[0]} / {steps[1]} / {steps[2]} / {steps[3]} for "
                             "stage 0 / 1 / 2 / 3)")
    parser.add_argument("--lr-gamma", type=float, default=d.lr_gamma,
                        help="factor applied to the LR at each --lr-steps iteration")
    parser.add_argument("--lr-schedule", choices=("step", "cosine"), default=d.lr_schedule,
                        help="step: x --lr-gamma at each --lr-steps iteration (paper); cosine: half a cosine "
                             "from --lr to 0 over --iterations")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help="weight decay of the optimiser")
    parser.add_argument("--optimizer", choices=("adam", "adamw"), default=d.optimizer,
                        help="adam (STCN's) or adamw (decoupled weight decay)")
    parser.add_argument("--crop-size", type=int, default=d.crop_size, metavar="PIXELS",
                        help="side of the square training crops in pixels (a multiple of 16)")
    parser.add_argument("--min-scale", type=float, metavar="FRACTION",
                        help="smallest crop area of RandomResizedCrop, as a fraction of the frame's area "
                             "(default: 0.36; 0.25 for BL30K)")
    parser.add_argument("--max-scale", type=float, default=d.max_scale, metavar="FRACTION",
                        help="largest crop area of RandomResizedCrop, as a fraction of the frame's area (default 1); "
                             "below 1 every crop enlarges the frame")
    add_alias(parser, parser.add_argument(
        "--workers", dest="num_workers", type=int, default=d.num_workers, metavar="N",
        help="data-loader worker processes per training process (0: load in the training process)"), "--num-workers")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=d.precision,
                        help="arithmetic precision; auto = fp32 on the CPU, bf16 on CUDA (fp16 with a GradScaler "
                             "where bf16 is unsupported)")
    parser.add_argument("--device", default=d.device,
                        help="auto (the GPU if there is one, else the CPU), cpu, cuda, cuda:1, ...")
    parser.add_argument("--output", default=d.output, metavar="FOLDER",
                        help="folder of the runs: a run writes <output>/<run-name>/")
    parser.add_argument("--run-name", metavar="NAME",
                        help="name of the run's folder and files (default: s<stage>_<model-size>, e.g. s3_paper)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run's checkpoints in <output>/<run-name>/ (without it, or "
                             "--resume of a checkpoint in that folder, a run refuses to start there)")
    parser.add_argument("--save-every", type=int, default=d.save_every, metavar="ITERATIONS",
                        help="write the resumable checkpoint every N iterations (0: only at the end)")
    parser.add_argument("--log-every", type=int, default=d.log_every, metavar="ITERATIONS",
                        help="log line and TensorBoard scalars every N iterations")
    parser.add_argument("--image-every", type=int, default=d.image_every, metavar="ITERATIONS",
                        help="TensorBoard image grid every N iterations (0: never)")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="seed of the initial weights and of every sample (a sample is a function of the "
                             "seed and its index)")
    # --weights may stand beside --resume: the documented resume command repeats the run's flags unchanged
    # (the trainer then notes that the checkpoint's weights are used).
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue a run exactly from its <run>_checkpoint.pth; repeat the run's flags "
                             "(--weights is then ignored) (default: start a new run)")
    parser.add_argument("--weights", metavar="PTH",
                        help="start from these network weights: PCVOS, STCN, stage-0 or train.py .pth (default: "
                             "ImageNet backbones, see --no-imagenet)")
    parser.add_argument("--imagenet-dir", metavar="FOLDER",
                        help="folder with torchvision's resnet50/resnet18 ImageNet .pth files (default: the torch "
                             "hub cache, where `python scripts/download.py imagenet` puts them)")
    parser.add_argument("--no-imagenet", action="store_true", help="random backbone initialisation")
    parser.add_argument("--no-icr", action="store_true",
                        help="train without the intra-clip refinement (the paper's 'w/o ICR' ablation row)")
    parser.add_argument("--batchnorm", choices=("frozen", "train"), default=d.batchnorm,
                        help="BatchNorm statistics: frozen (STCN, running stats fixed) or train (batch statistics)")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC layout for the network (faster bf16 convolutions on CPUs with oneDNN)")
    parser.add_argument("--static-root", default=d.static_root, metavar="FOLDER",
                        help="static-image datasets (stage 0)")
    parser.add_argument("--youtube-root", default=d.youtube_root, metavar="FOLDER",
                        help="YouTube-VOS 2019 with train_480p/ (stages 2, 3)")
    parser.add_argument("--davis-root", default=d.davis_root, metavar="FOLDER",
                        help="DAVIS 2017 with trainval/ (stages 2, 3)")
    parser.add_argument("--bl30k-root", default=d.bl30k_root, metavar="FOLDER", help="BL30K (stage 1)")
    add_alias(parser, parser.add_argument(
        "--clip-frames", dest="clip_lengths", type=int, nargs="+", metavar="FRAMES",
        help="frames of each clip of a training sample, one number per clip (default: 3 3; stage 0: 2)"),
        "--clip-lengths")
    parser.add_argument("--intra-gap", type=int, default=d.intra_gap, metavar="FRAMES",
                        help="largest step between consecutive frames of a clip, in frames")
    parser.add_argument("--gap-low", type=int, default=d.gap_low, metavar="FRAMES",
                        help="largest inter-clip step at the start and end of the curriculum, in frames")
    parser.add_argument("--gap-high", type=int, default=d.gap_high, metavar="FRAMES",
                        help="largest inter-clip step at the curriculum's peak, in frames")
    parser.add_argument("--bootstrap", type=int, nargs=2, default=(d.bootstrap_start, d.bootstrap_end),
                        metavar=("START", "END"),
                        help="hard-pixel mining: plain cross-entropy before iteration START, the hardest 15%% of "
                             "pixels from iteration END on")
    parser.add_argument("--dice-weight", type=float, default=d.dice_weight,
                        help="weight of the clip (Dice) loss; 0 = no clip supervision")
    parser.add_argument("--icr-lr-scale", type=float, default=d.icr_lr_scale, metavar="FACTOR",
                        help="learning rate of the intra-clip refinement (input_proj, refine_transformer) = --lr "
                             "times this")
    parser.add_argument("--quality-head", action="store_true",
                        help="also train the quality head (IoU regression) that --memory quality can use")
    parser.add_argument("--quality-only", action="store_true",
                        help="train only the quality head, the rest frozen (e.g. with --weights of a trained model)")
    parser.add_argument("--quality-weight", type=float, default=d.quality_weight, help="weight of the quality loss")
    parser.add_argument("--stop-after", type=int, metavar="ITERATIONS",
                        help="stop after N iterations of this invocation; short of --iterations it writes only "
                             "the resumable checkpoint and prints the command that continues (default: run to "
                             "--iterations)")
    parser.add_argument("--progress", choices=("auto", "bar", "log", "none"), default=d.progress,
                        help="auto: a bar with ETA on a terminal, plain log lines otherwise")
    parser.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard log (nor curves.png)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        stage=args.stage, model_size=args.model_size, iterations=args.iterations, batch_size=args.batch_size,
        lr=args.lr, lr_steps=tuple(args.lr_steps) if args.lr_steps else None, lr_gamma=args.lr_gamma,
        lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay, optimizer=args.optimizer, crop_size=args.crop_size, min_scale=args.min_scale,
        max_scale=args.max_scale,
        num_workers=args.num_workers, accum_steps=args.accum_steps, precision=args.precision, device=args.device,
        output=args.output, run_name=args.run_name, save_every=args.save_every, log_every=args.log_every,
        image_every=args.image_every, seed=args.seed, resume=args.resume, weights=args.weights,
        overwrite=args.overwrite,
        imagenet=not args.no_imagenet, refine=not args.no_icr, imagenet_dir=args.imagenet_dir, batchnorm=args.batchnorm,
        channels_last=args.channels_last, static_root=args.static_root,
        youtube_root=args.youtube_root, davis_root=args.davis_root, bl30k_root=args.bl30k_root,
        clip_lengths=tuple(args.clip_lengths) if args.clip_lengths else None, intra_gap=args.intra_gap,
        gap_low=args.gap_low, gap_high=args.gap_high, bootstrap_start=args.bootstrap[0],
        bootstrap_end=args.bootstrap[1], dice_weight=args.dice_weight, icr_lr_scale=args.icr_lr_scale,
        stop_after=args.stop_after,
        progress=args.progress, tensorboard=not args.no_tensorboard,
        quality_head=args.quality_head or args.quality_only, quality_only=args.quality_only,
        quality_weight=args.quality_weight,
    )


def __getattr__(name: str) -> object:
    if name == "TrainResult":  # exported, imported on first use (torch)
        from model.trainer import TrainResult

        return TrainResult
    raise AttributeError(f"module 'train' has no attribute {name!r}")


#: the data root each stage reads, and what `scripts/download.py` fetches for it
STAGE_ROOTS = {0: (("static_root", "static"),), 1: (("bl30k_root", "bl30k"),),
               2: (("davis_root", "davis"), ("youtube_root", "youtube")),
               3: (("davis_root", "davis"), ("youtube_root", "youtube"))}


def check_paths(args: argparse.Namespace) -> None:
    """The cheap checks, before torch loads: the weights files and the stage's data roots exist."""
    for flag in ("resume", "weights"):
        if getattr(args, flag) is not None:
            require_path(getattr(args, flag), f"--{flag}", folder=False, hint="give a .pth checkpoint file")
            if Path(getattr(args, flag)).is_dir():
                raise IsADirectoryError(f"{getattr(args, flag)}: is a folder, not a checkpoint file; give --{flag} "
                                        "a .pth checkpoint file")
    if args.imagenet_dir is not None and not args.no_imagenet:
        require_path(args.imagenet_dir, "--imagenet-dir", folder=True,
                     hint="give the folder of torchvision's ImageNet .pth files, or pass --no-imagenet")
    if args.quality_only:
        return  # the quality head trains on the same data: checked with its layout by the trainer
    for dest, fetch in STAGE_ROOTS[args.stage]:
        flag = "--" + dest.replace("_", "-")
        root = Path(getattr(args, dest))
        require_path(root, flag, folder=True, hint=f"it would be {root.resolve()}; see docs/training.md "
                     f"(datasets) for the layout, or fetch it with `python scripts/download.py {fetch}`")


def run_full(config: TrainConfig, callback: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train and return the full result (final weights, training checkpoint, per-iteration losses)."""
    from dataset.training import training_loader
    from model.trainer import train

    return train(config, training_loader, callback)


def run(config: TrainConfig, callback: Callable[[int, dict], None] | None = None) -> Path | None:
    """Train and return the path of the final network-only checkpoint (``*_final.pth``), or None when
    ``stop_after`` stopped the run before its last iteration (see :func:`run_full` for its checkpoint).

    ``callback(iteration, metrics)`` is called after every iteration on rank 0
    with ``loss/total``, ``loss/image``, ``loss/clip``, ``iou`` and ``lr``.
    """
    return run_full(config, callback).final


#: Flags left out of the command that continues a stopped run: the checkpoint replaces them.
_NOT_IN_RESUME = ("resume", "weights", "overwrite", "stop_after")


def resume_command(parser: argparse.ArgumentParser, args: argparse.Namespace, checkpoint: Path) -> str:
    """The command line that continues the run of ``args`` from ``checkpoint``: the same flags (those that
    differ from their defaults), less --stop-after / --weights / --overwrite, plus ``--resume checkpoint``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    words = ["python", "train.py"] if world == 1 else ["torchrun", "--standalone", f"--nproc_per_node={world}",
                                                       "train.py"]
    for action in parser._actions:
        if (not action.option_strings or action.dest in _NOT_IN_RESUME or action.dest == "help"
                or action.help == argparse.SUPPRESS):  # a hidden old name: its flag is written once, new name
            continue
        value = getattr(args, action.dest)
        if value is None or value == action.default:
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return shlex.join([*words, "--resume", str(checkpoint)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_paths(args)
    except OSError as error:
        print(f"train.py: error: {error_text(error)}", file=sys.stderr)
        return 2
    from model.trainer import NonFiniteLossError

    try:
        result = run_full(config_from_args(args))
    except (OSError, ValueError, NonFiniteLossError) as error:  # bad data / paths / flags: 2; diverged: 3
        print(f"train.py: error: {error_text(error)}", file=sys.stderr)
        return 2 if not isinstance(error, NonFiniteLossError) else 3
    if not result.complete and int(os.environ.get("RANK", "0")) == 0:
        print(f"stopped early after {result.iteration} of {result.iterations} iterations (--stop-after); the run "
              f"is not finished and has no final weights. To continue it:\n  "
              f"{resume_command(parser, args, result.checkpoint)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
