"""Train PCVOS: a thin CLI over :mod:`model.trainer` (see docs/training.md).

Examples::

    python train.py --stage 0 --static-root ../static                       # static pre-training
    python train.py --stage 3 --weights saves/s0_paper/s0_paper_final.pth   # main training (s03)
    torchrun --nproc_per_node=2 train.py --stage 3 --weights ...            # 2 processes, same global batch
    python train.py --stage 3 --resume saves/s3_paper/s3_paper_checkpoint.pth

Programmatic use (e.g. a quickstart)::

    import train
    final = train.run(train.TrainConfig(stage=3, model_size="small", ...), callback=lambda it, m: ...)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from model.trainer import STAGE_PRESETS, NonFiniteLossError, TrainConfig, TrainResult, train
from util.errors import error_text, run_cli

__all__ = ["TrainConfig", "TrainResult", "build_parser", "config_from_args", "main", "run", "run_full"]


def build_parser() -> argparse.ArgumentParser:
    presets = "; ".join(
        f"stage {s}: {p['iterations']} its, batch {p['batch_size']}, lr {p['lr']}, drop at {p['lr_steps']}"
        for s, p in STAGE_PRESETS.items()
    )
    parser = argparse.ArgumentParser(
        description="Train PCVOS (per-clip training). Stage presets -- " + presets,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = TrainConfig()
    parser.add_argument("--stage", type=int, choices=(0, 1, 2, 3), required=True,
                        help="0 static pre-training, 1 BL30K, 2/3 DAVIS 2017 + YouTube-VOS 2019")
    parser.add_argument("--model-size", choices=("paper", "small"), default=d.model_size,
                        help="'small' = CPU quickstart model (ResNet-18 keys, narrow), NOT the paper's model")
    parser.add_argument("--iterations", type=int, help="total iterations of the stage (default: preset)")
    parser.add_argument("--batch-size", type=int, help="GLOBAL batch size over all processes (default: preset)")
    parser.add_argument("--accum-steps", type=int, default=d.accum_steps,
                        help="gradient accumulation steps; micro-batch = batch / (world_size x accum)")
    parser.add_argument("--lr", type=float, help="learning rate (default: preset, 1e-5)")
    parser.add_argument("--lr-steps", type=int, nargs="+", help="iterations where the LR is multiplied by 0.1")
    parser.add_argument("--lr-gamma", type=float, default=d.lr_gamma)
    parser.add_argument("--lr-schedule", choices=("step", "cosine"), default=d.lr_schedule,
                        help="step: x lr-gamma at each --lr-steps (paper); cosine: half a cosine from --lr to 0")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--optimizer", choices=("adam", "adamw"), default=d.optimizer)
    parser.add_argument("--crop-size", type=int, default=d.crop_size)
    parser.add_argument("--min-scale", type=float, help="RandomResizedCrop area lower bound (default 0.36; BL30K 0.25)")
    parser.add_argument("--num-workers", type=int, default=d.num_workers, help="data-loader workers per process")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=d.precision)
    parser.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--output", default=d.output, help="runs are written to <output>/<run-name>/")
    parser.add_argument("--run-name", help="default s<stage>_<model-size>")
    parser.add_argument("--save-every", type=int, default=d.save_every)
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--image-every", type=int, default=d.image_every, help="TensorBoard image grid period")
    parser.add_argument("--seed", type=int, default=d.seed)
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", help="a *_checkpoint.pth of this run to continue exactly")
    start.add_argument("--weights", help="start from PCVOS / STCN / stage-0 / train.py weights")
    parser.add_argument("--imagenet-dir", help="folder with torchvision resnet50/resnet18 ImageNet .pth files")
    parser.add_argument("--no-imagenet", action="store_true", help="random backbone initialisation")
    parser.add_argument("--batchnorm", choices=("frozen", "train"), default=d.batchnorm,
                        help="BatchNorm statistics: frozen (STCN, running stats fixed) or train (batch statistics)")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC layout for the network (faster bf16 convolutions on CPUs with oneDNN)")
    parser.add_argument("--static-root", default=d.static_root)
    parser.add_argument("--youtube-root", default=d.youtube_root)
    parser.add_argument("--davis-root", default=d.davis_root)
    parser.add_argument("--bl30k-root", default=d.bl30k_root)
    parser.add_argument("--clip-lengths", type=int, nargs="+", help="frames per clip (default 3 3; stage 0: 2)")
    parser.add_argument("--intra-gap", type=int, default=d.intra_gap)
    parser.add_argument("--gap-low", type=int, default=d.gap_low, help="inter-clip gap at start and end")
    parser.add_argument("--gap-high", type=int, default=d.gap_high, help="inter-clip gap at the curriculum peak")
    parser.add_argument("--bootstrap", type=int, nargs=2, default=(d.bootstrap_start, d.bootstrap_end),
                        metavar=("START", "END"), help="hard-pixel mining from START, top 15%% by END")
    parser.add_argument("--dice-weight", type=float, default=d.dice_weight, help="0 = no clip supervision")
    parser.add_argument("--quality-head", action="store_true",
                        help="also train the quality head (IoU regression) that --memory quality can use")
    parser.add_argument("--quality-only", action="store_true",
                        help="train only the quality head, the rest frozen (e.g. with --weights of a trained model)")
    parser.add_argument("--quality-weight", type=float, default=d.quality_weight, help="weight of the quality loss")
    parser.add_argument("--stop-after", type=int, help="stop after this many iterations of this run (checkpointed)")
    parser.add_argument("--progress", choices=("auto", "bar", "log", "none"), default=d.progress)
    parser.add_argument("--no-tensorboard", action="store_true")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        stage=args.stage, model_size=args.model_size, iterations=args.iterations, batch_size=args.batch_size,
        lr=args.lr, lr_steps=tuple(args.lr_steps) if args.lr_steps else None, lr_gamma=args.lr_gamma,
        lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay, optimizer=args.optimizer, crop_size=args.crop_size, min_scale=args.min_scale,
        num_workers=args.num_workers, accum_steps=args.accum_steps, precision=args.precision, device=args.device,
        output=args.output, run_name=args.run_name, save_every=args.save_every, log_every=args.log_every,
        image_every=args.image_every, seed=args.seed, resume=args.resume, weights=args.weights,
        imagenet=not args.no_imagenet, imagenet_dir=args.imagenet_dir, batchnorm=args.batchnorm,
        channels_last=args.channels_last, static_root=args.static_root,
        youtube_root=args.youtube_root, davis_root=args.davis_root, bl30k_root=args.bl30k_root,
        clip_lengths=tuple(args.clip_lengths) if args.clip_lengths else None, intra_gap=args.intra_gap,
        gap_low=args.gap_low, gap_high=args.gap_high, bootstrap_start=args.bootstrap[0],
        bootstrap_end=args.bootstrap[1], dice_weight=args.dice_weight, stop_after=args.stop_after,
        progress=args.progress, tensorboard=not args.no_tensorboard,
        quality_head=args.quality_head or args.quality_only, quality_only=args.quality_only,
        quality_weight=args.quality_weight,
    )


def run_full(config: TrainConfig, callback: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train and return the full result (final weights, training checkpoint, per-iteration losses)."""
    return train(config, callback)


def run(config: TrainConfig, callback: Callable[[int, dict], None] | None = None) -> Path:
    """Train and return the path of the final network-only checkpoint (``*_final.pth``).

    ``callback(iteration, metrics)`` is called after every iteration on rank 0
    with ``loss/total``, ``loss/image``, ``loss/clip``, ``iou`` and ``lr``.
    """
    return train(config, callback).final


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(config_from_args(args))
    except (OSError, ValueError, NonFiniteLossError) as error:  # bad data / paths / flags: 2; diverged: 3
        print(f"train.py: error: {error_text(error)}", file=sys.stderr)
        return 2 if not isinstance(error, NonFiniteLossError) else 3
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
