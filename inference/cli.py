"""Command-line options shared by every inference driver, and building the engine from them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from inference.engine import MEMORY_READ_MODES, EngineConfig, PCVOSEngine
from model.checkpoint import CheckpointError, build_model
from model.network import PCVOS
from util.recipe_weights import apply_recipe
from util.runtime import PRECISIONS, resolve_device

DEFAULT_MODEL = "saves/s03_pcvos_ytvos.pth"


def add_engine_args(parser: argparse.ArgumentParser, default_size: int = 480) -> None:
    """Model, engine, device and precision flags."""
    g = parser.add_argument_group("model and engine")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help="checkpoint (.pth) of PCVOS/STCN/train.py; 'recipe' = deterministic untrained test weights")
    g.add_argument("--clip-length", "-L", type=int, default=5, help="frames per clip = memory interval (default 5)")
    g.add_argument("--memory-read", choices=MEMORY_READ_MODES, default="pmm",
                   help="pmm: progressive memory matching (default); parallel: one affinity per clip")
    g.add_argument("--top-k", type=int, default=20, help="memory elements mixed per query position (default 20)")
    g.add_argument("--size", type=int, default=default_size,
                   help=f"short side to work at; -1 keeps the original resolution (default {default_size})")
    g.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    g.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32",
                   help="fp32 (default, reproduces the official numbers) or bf16/fp16 autocast")
    g.add_argument("--workers", type=int, default=2, help="frame-decoding workers (default 2)")


def load_network(model: str, device: torch.device) -> PCVOS:
    """The network for ``--model`` (a path, or 'recipe'), in eval mode on ``device``."""
    if model == "recipe":
        return apply_recipe(PCVOS()).to(device).eval()
    path = Path(model)
    if not path.is_file():
        raise SystemExit(
            f"error: --model {model}: file not found. Get the released checkpoint (`python scripts/download.py "
            f"pcvos` prints where) into {path.parent}/, train one with train.py, "
            "or pass --model recipe for untrained test weights."
        )
    try:
        network, report = build_model(path, device)
    except CheckpointError as error:
        raise SystemExit(f"error: {error}") from error
    if report is not None and (report.missing or report.widened):
        print(report.summary(), file=sys.stderr)
    return network


def engine_config(args: argparse.Namespace, clip_length: int | None = None) -> EngineConfig:
    return EngineConfig(
        clip_length=clip_length or args.clip_length,
        memory_read=args.memory_read,
        top_k=args.top_k,
        precision=args.precision,
    )


def build_engine(args: argparse.Namespace) -> PCVOSEngine:
    """Load the model and build the engine the flags describe."""
    device = resolve_device(args.device)
    network = load_network(args.model, device)
    return PCVOSEngine(network, engine_config(args))
