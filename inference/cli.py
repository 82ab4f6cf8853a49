"""Command-line options shared by every inference driver, and building the engine from them (docs/cli.md).

Building a parser and checking paths import nothing heavy: torch, the network and the engine are
imported by the functions that load them, after the arguments are parsed (docs/cli.md, "Fast answers").
The engine settings are chosen by :func:`engine_settings`: a flag given, else what the checkpoint
records, else the default (:func:`inference.settings.resolve_engine_config`).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from dataset.masks import MASK_VALUES
from inference.settings import (
    AFB_MERGE_THRESHOLD,
    AFB_UPDATE_RATE,
    DEFAULT_CLIP_LENGTH,
    DEFAULT_MAX_FRAMES,
    MEMORY_READ_MODES,
    QUALITY_SOURCES,
    QUALITY_THRESHOLD,
    STRATEGIES,
    EngineConfig,
    resolve_engine_config,
)
from model.records import CheckpointError, InferenceSettings, not_a_checkpoint_file
from util.runtime import COMPILE_MODES, PRECISIONS

if TYPE_CHECKING:
    import torch

    from inference.engine import PCVOSEngine
    from inference.memory_strategies import MemoryOptions
    from model.network import PCVOS

DEFAULT_MODEL = "saves/s03_pcvos_ytvos.pth"
_DEFAULTS = EngineConfig()


def add_engine_args(parser: argparse.ArgumentParser, default_size: int = 480, clip_length: bool = True) -> None:
    """Model, engine, device and precision flags (docs/cli.md).

    ``clip_length``: add ``--clip-length/-L`` (the L sweep has ``--clip-lengths`` instead).
    """
    g = parser.add_argument_group("model and engine")
    g.add_argument("--model", default=DEFAULT_MODEL, metavar="PTH",
                   help="weights to run: a .pth checkpoint of PCVOS, STCN or train.py; 'recipe' = deterministic "
                        "untrained test weights")
    if clip_length:
        g.add_argument("--clip-length", "-L", type=int, default=None, metavar="L",
                       help=f"frames per clip = memory interval (default: the L the checkpoint records, as the "
                            f"quickstart's does; else {DEFAULT_CLIP_LENGTH})")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="mirror test-time augmentation: the video and its mirror image are segmented together and "
                        "their masks averaged (twice the work; default: what the checkpoint records, as the "
                        "quickstart's does; else off)")
    g.add_argument("--memory-read", choices=MEMORY_READ_MODES, default=_DEFAULTS.memory_read,
                   help="pmm: progressive memory matching (default); parallel: one affinity per clip")
    g.add_argument("--top-k", type=int, default=_DEFAULTS.top_k, help="memory elements mixed per query position")
    g.add_argument("--size", type=int, default=default_size, metavar="PIXELS",
                   help=f"short side of the frames to work at, in pixels; -1 keeps the original resolution "
                        f"(default {default_size})")
    g.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ... (default auto)")
    g.add_argument("--precision", choices=sorted(PRECISIONS), default=_DEFAULTS.precision,
                   help="fp32 (default, reproduces the official numbers) or bf16/fp16 autocast")
    g.add_argument("--workers", type=int, default=2, metavar="N",
                   help="frame-decoding worker processes (default 2)")
    g.add_argument("--compile", choices=COMPILE_MODES, default=None,
                   help="torch.compile the network (reduce-overhead adds CUDA graphs); pays off on long runs "
                        "(minutes of compilation on a CPU), see docs/benchmarks.md (default: off)")
    add_memory_args(parser)


MASK_VALUES_HELP = (
    "how mask files are read. auto (default): palette PNG indices are object ids; greyscale 0/255 or 0/1 is one "
    "object, other grey levels are ids; 255 is DAVIS void next to other ids; each RGB colour is an object; 16-bit "
    "greyscale by the same rules when its values fit 0..255; masks that look anti-aliased or blurred (blend values "
    "along object boundaries, many tiny ids) are refused. ids: every value or colour is an object, no "
    "anti-aliasing check (for masks that really hold many small objects). See docs/evaluation.md, 'Masks'"
)


def add_mask_args(parser: argparse.ArgumentParser) -> None:
    """``--mask-values``: how every driver reads masks (dataset/masks.py), passed on as ``args.mask_values``."""
    parser.add_argument("--mask-values", choices=MASK_VALUES, default="auto", help=MASK_VALUES_HELP)


#: the memory flags and the strategies that read them (MemoryOptions field, strategies); the knobs default to
#: None = not given, so that a knob given for a strategy that does not read it is refused, never ignored
MEMORY_KNOBS = {
    "max_memory_frames": ("max_frames", ("fifo", "afb", "quality")),
    "memory_budget": ("budget", ("afb",)),
    "afb_merge_threshold": ("merge_threshold", ("afb",)),
    "afb_update_rate": ("update_rate", ("afb",)),
    "quality_threshold": ("quality_threshold", ("quality",)),
    "quality_source": ("quality_source", ("quality",)),
    "quality_weights": (None, ("quality",)),
}


def add_memory_args(parser: argparse.ArgumentParser) -> None:
    """``--memory`` and the bounded-memory knobs (docs/memory.md)."""
    g = parser.add_argument_group("memory (long videos)")
    g.add_argument("--memory", choices=STRATEGIES, default="keep-all",
                   help="keep-all: every memory frame stays (official, grows with the video; default); fifo: "
                        "annotated frames + the most recent N; afb: adaptive feature bank (merge similar elements, "
                        "evict the least used under --memory-budget); quality: QDMN-style quality-gated memory")
    g.add_argument("--max-memory-frames", type=int, default=None,
                   help=f"fifo/quality: memory frames kept besides the annotated ones; afb: default budget in "
                        f"frames (default {DEFAULT_MAX_FRAMES})")
    g.add_argument("--memory-budget", type=int, default=None,
                   help="afb: memory elements (1/16-resolution pixels) kept in total; default "
                        "(max-memory-frames + 1) frames' worth")
    g.add_argument("--afb-merge-threshold", type=float, default=None,
                   help=f"afb: merge an element x into its nearest one m when ||x - m||^2 / sqrt(key dim) <= t, "
                        f"i.e. their readout logits differ by <= t (default {AFB_MERGE_THRESHOLD})")
    g.add_argument("--afb-update-rate", type=float, default=None,
                   help=f"afb: merge weight of the new elements per frame, compounded over the frames between "
                        f"memory updates (default {AFB_UPDATE_RATE})")
    g.add_argument("--quality-threshold", type=float, default=None,
                   help=f"quality: admit a frame if its quality >= this x the annotated frame's "
                        f"(default {QUALITY_THRESHOLD})")
    g.add_argument("--quality-source", choices=QUALITY_SOURCES, default=None,
                   help="quality: 'head' (trained quality head), 'confidence' (training-free proxy from the "
                        "probabilities), 'auto' = head if the network has one (default)")
    g.add_argument("--quality-weights", default=None, metavar="PTH",
                   help="quality head weights (train.py --quality-head writes *_quality_head.pth), loaded on top "
                        "of --model (default: none, or the head --model holds)")


def check_model_path(model: str, flag: str = "--model") -> None:
    """Refuse a weights path that is missing or a folder, before anything heavy is loaded ('recipe' passes)."""
    if model == "recipe":
        return
    path = Path(model)
    if path.is_dir():
        raise not_a_checkpoint_file(path, flag)
    if not path.is_file():
        raise CheckpointError(
            f"{flag} {model}: file not found. Get the released checkpoint (`python scripts/download.py "
            f"pcvos` prints where) into {path.parent}/, train one with train.py, "
            "or pass --model recipe for untrained test weights."
        )


def check_memory_flags(args: argparse.Namespace) -> None:
    """Refuse a memory knob that ``--memory`` does not read: a flag is never accepted and ignored."""
    for name, (_, readers) in MEMORY_KNOBS.items():
        value = getattr(args, name, None)
        if value is not None and args.memory not in readers:
            raise ValueError(
                f"--{name.replace('_', '-')} {value}: --memory {args.memory} does not read it (only "
                f"{' / '.join(readers)}); drop it or pass --memory {readers[0]}"
            )


def check_engine_flags(args: argparse.Namespace, one_strategy: bool = True) -> None:
    """The cheap checks of the engine flags, before anything heavy loads: ``--model`` and ``--quality-weights``
    exist and, with ``one_strategy`` (every driver but the interactive app, whose page switches strategies),
    no memory knob is given that ``--memory`` does not read."""
    if one_strategy:
        check_memory_flags(args)
    check_model_path(args.model)
    if getattr(args, "quality_weights", None) is not None:
        weights = Path(args.quality_weights)
        if not weights.is_file():
            raise CheckpointError(f"--quality-weights {weights}: file not found; pass the *_quality_head.pth "
                                  "file train.py --quality-head wrote")


def load_network(model: str, device: torch.device, quality_weights: str | None = None) -> PCVOS:
    """The network for ``--model`` (a path, or 'recipe'), in eval mode on ``device``.

    ``quality_weights``: a quality-head file loaded on top (the head is added if the model has none).
    """
    return load_network_and_settings(model, device, quality_weights)[0]


def load_network_and_settings(
    model: str, device: torch.device, quality_weights: str | None
) -> tuple[PCVOS, InferenceSettings]:
    """(network, the inference settings its checkpoint records)."""
    from model.checkpoint import load_quality_head

    network, recorded = _load_base_network(model, device)
    if quality_weights is not None:
        network.enable_quality_head()
        try:
            load_quality_head(network, quality_weights)
        except CheckpointError as error:
            raise CheckpointError(f"--quality-weights: {error}") from error
        network.eval()
    return network, recorded


def _load_base_network(model: str, device: torch.device) -> tuple[PCVOS, InferenceSettings]:
    from model.checkpoint import build_model

    check_model_path(model)
    if model == "recipe":
        from model.network import PCVOS
        from util.recipe_weights import apply_recipe

        return apply_recipe(PCVOS()).to(device).eval(), InferenceSettings(source="recipe")
    network, report = build_model(Path(model), device)
    if report.missing or report.widened:
        print(report.summary(), file=sys.stderr)
    return network, report.inference


def engine_settings(args: argparse.Namespace, recorded: InferenceSettings | None,
                    clip_length: int | None = None) -> EngineConfig:
    """The engine settings of a command line: each flag given, else what ``recorded`` holds, else the default.

    ``clip_length``: the L to use instead of ``-L`` (the sweep's values). A value taken from the
    checkpoint is announced on stderr with the flag that overrides it. ``args`` is not modified.
    """
    length = clip_length if clip_length is not None else getattr(args, "clip_length", None)
    if length is not None and length < 1:
        raise ValueError(f"-L/--clip-length {length}: must be >= 1")

    def announce(name: str, value: object) -> None:
        why = f" ({recorded.why})" if recorded is not None and recorded.why else ""
        if name == "clip_length":
            print(f"-L {value}: the clip length {args.model} records{why}; pass -L to override", file=sys.stderr)
        elif name == "flip" and value:
            print(f"--flip: {args.model} records mirror test-time augmentation; pass --no-flip to turn it off",
                  file=sys.stderr)

    return resolve_engine_config(
        recorded, announce, clip_length=length, memory_read=args.memory_read, top_k=args.top_k,
        precision=args.precision, compile=getattr(args, "compile", None), flip=getattr(args, "flip", None),
    )


def memory_options(args: argparse.Namespace, network: PCVOS | None = None, strict: bool = False) -> MemoryOptions:
    """The memory strategy the flags select (checked against ``network`` when given).

    ``strict``: refuse a knob that ``--memory`` does not read (a driver's one strategy; the interactive
    app keeps them, its page can switch strategies).
    """
    from inference.memory_strategies import MemoryOptions

    if strict:
        check_memory_flags(args)
    given = {name: getattr(args, name, None) for name in MEMORY_KNOBS}
    given = {name: value for name, value in given.items() if value is not None}
    options = MemoryOptions(strategy=args.memory, **{MEMORY_KNOBS[name][0]: value for name, value in given.items()
                                                     if MEMORY_KNOBS[name][0] is not None})
    if (network is not None and options.strategy == "quality" and options.quality_source == "head"
            and network.quality_head is None):
        raise ValueError(
            "--quality-source head: the model has no quality head. Pass --quality-weights FILE "
            "(train.py --quality-head writes one) or use --quality-source confidence."
        )
    return options


def build_engine(args: argparse.Namespace, device: str | None = None) -> PCVOSEngine:
    """Load the model and build the engine the flags describe (``device``: instead of ``--device``)."""
    from inference.engine import PCVOSEngine, prepare_network
    from util.runtime import resolve_device

    network, recorded = load_network_and_settings(args.model, resolve_device(device or args.device),
                                                  args.quality_weights)
    config = engine_settings(args, recorded)
    return PCVOSEngine(prepare_network(network, config), config,
                       memory_factory=memory_options(args, network, strict=True).factory())


# --------------------------------------------------------------------------- reruns of the benchmark drivers


def add_overlay_arg(parser: argparse.ArgumentParser) -> None:
    """``--overlay``: a benchmark driver also draws overlay videos of its results (inference/overlays.py)."""
    parser.add_argument(
        "--overlay", action="store_true",
        help="also write an overlay video per video (objects filled and outlined on the frames) to "
             "<output>/overlays/<video>.mp4 (YouTube-VOS: beside Annotations/); default: masks only",
    )


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """``--overwrite`` and ``--overlay``: flags about a benchmark driver's outputs."""
    add_overlay_arg(parser)
    parser.add_argument(
        "--overwrite", action="store_true",
        help="recompute every video even if --output already holds its complete masks (default: skip videos "
             "finished by an earlier run with the same settings; results made with other settings are refused)",
    )


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()[:20]


def file_identity(path: str | None) -> str | None:
    """A content digest of a weights file ('recipe' and None stay as they are)."""
    if path is None or path == "recipe":
        return path
    file = Path(path)
    stat = file.stat()
    return _file_digest(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


def run_settings(args: argparse.Namespace, config: EngineConfig) -> dict:
    """What a benchmark driver's masks depend on (JSON-serialisable): the flags and the engine's ``config``.

    The weights (by content, so a moved checkpoint still matches), the engine options that
    change the masks and the working size. Device, workers and compilation are left out:
    they change the speed, not the result.
    """
    settings = {
        "model": file_identity(args.model),
        "quality_weights": file_identity(getattr(args, "quality_weights", None)),
        "clip_length": config.clip_length,
        "memory_read": config.memory_read,
        "top_k": config.top_k,
        "precision": config.precision,
        "flip": config.flip,
        "size": args.size,
        "memory": args.memory,
    }
    if args.memory != "keep-all":
        memory = memory_options(args)
        settings.update(
            max_memory_frames=memory.max_frames, memory_budget=memory.budget,
            afb_merge_threshold=memory.merge_threshold, afb_update_rate=memory.update_rate,
            quality_threshold=memory.quality_threshold, quality_source=memory.quality_source,
        )
    return settings


def rerun_options(args: argparse.Namespace, config: EngineConfig) -> dict:
    """``run_benchmark`` keywords for a driver: ``settings`` recorded with the masks, ``overwrite`` and ``overlays``.

    ``config``: the settings the engine runs with (``engine.config``).
    """
    return {"settings": run_settings(args, config), "overwrite": bool(getattr(args, "overwrite", False)),
            "overlays": bool(getattr(args, "overlay", False))}
