"""The engine's settings, their defaults, and the one rule that chooses each value (docs/cli.md).

:class:`EngineConfig` holds every inference setting. :func:`resolve_engine_config` builds it for
every driver, the interactive app and ``Predictor.from_checkpoint``, taking each value from, in
order: what the caller gives explicitly (a command-line flag, a keyword), what the checkpoint
records (:class:`model.records.InferenceSettings`: L and mirror augmentation), and the defaults
below. The memory strategies' names and defaults live here too, so that a command line can list
them without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from model.records import InferenceSettings
from util.runtime import COMPILE_MODES

#: directions of travel through a video (segment.py --direction, Predictor.propagate)
DIRECTIONS = ("forward", "backward", "both")

#: L, frames per clip and memory interval, when neither the caller nor the checkpoint chooses one
#: (the paper model's setting)
DEFAULT_CLIP_LENGTH = 5
MEMORY_READ_MODES = ("pmm", "parallel")

# --------------------------------------------------------------------------- memory strategies (docs/memory.md)
STRATEGIES = ("keep-all", "fifo", "afb", "quality")
QUALITY_SOURCES = ("auto", "head", "confidence")
#: Default cap of non-permanent memory frames (fifo, quality) and, in frame
#: equivalents, of the afb budget. STCN/PCVOS need more than Cutie's 5, about 20
#: (Cutie's 5 is tuned for a model trained with that few; docs/memory.md).
DEFAULT_MAX_FRAMES = 20
#: afb: merge a new element x into its nearest bank element m when ||x - m||^2 / sqrt(Ck) <= threshold, i.e.
#: when their affinities to a query at x differ by at most this many logits of the readout's softmax
#: (the readout's own scale; see AfbMemory and docs/memory.md for the measurements behind 0.5).
AFB_MERGE_THRESHOLD = 0.5
#: afb: merge weight per frame (AFB-URR's long-video setting), compounded over the frames between commits.
AFB_UPDATE_RATE = 0.05
#: quality: admit a frame when quality >= threshold x reference quality (QDMN DAVIS: 0.8).
QUALITY_THRESHOLD = 0.8


@dataclass
class EngineConfig:
    """Inference settings (defaults = the released configuration)."""

    clip_length: int = DEFAULT_CLIP_LENGTH  # L: frames per clip and memory interval
    memory_read: str = "pmm"  # 'pmm' progressive matching, or 'parallel'
    pmm_every: int = 5  # PMM: in-clip temporary memory every F frames (F = 5 in the paper)
    top_k: int = 20  # memory elements mixed per query position
    mem_every: int | None = None  # memory interval in raw frames (None = clip_length)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast for the network stages)
    # Batch sizes of the big convolution stages; they bound activation memory. None = per device: on CUDA the
    # whole clip is encoded at once and 8 frame-object pairs decoded per call; on a CPU batches are kept
    # cache-sized (CPU_BATCH_PIXELS per key-encoder call, one frame per decoder call), 3-30 % faster there.
    encode_batch: int | None = None  # frames per key-encoder call
    decode_batch: int | None = None  # frame-object pairs per decoder call (rounded to whole frames)
    affinity_budget: int = 1 << 25  # max elements of one affinity/gather chunk (128 MB in fp32)
    channels_last: bool = True  # NHWC convolutions (same numbers; faster 1x1 convs and BatchNorm on CPU and GPU)
    fused_attention: bool = False  # refinement windows via scaled_dot_product_attention (same numbers; slower on CPU)
    compile: str | None = None  # torch.compile the network stages: default | reduce-overhead | max-autotune (see
    # util.runtime.compile_methods: weights frozen; minutes of compilation per new shape on a CPU)
    # Test-time augmentation: the video and its mirror image are segmented in lock-step, each with its own memory;
    # every frame's probabilities are the mean of the two (the mirror's flipped back), and that one mask is written
    # to both memories. Twice the work; not in the released code (False = its outputs).
    flip: bool = False

    def __post_init__(self) -> None:
        if self.memory_read not in MEMORY_READ_MODES:
            raise ValueError(f"memory_read must be one of {MEMORY_READ_MODES}, got {self.memory_read!r}")
        if self.clip_length < 1 or self.top_k < 1 or self.pmm_every < 1:
            raise ValueError("clip_length, top_k and pmm_every must be >= 1")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be None or one of {COMPILE_MODES}, got {self.compile!r}")


#: the settings a checkpoint can record (model.records.InferenceSettings)
RECORDED_SETTINGS = ("clip_length", "flip")


def resolve_engine_config(
    recorded: InferenceSettings | None = None,
    used: Callable[[str, object], None] | None = None,
    **given: object,
) -> EngineConfig:
    """The engine settings: each from ``given`` (None = not given), else ``recorded``, else EngineConfig's default.

    Args:
        recorded: what the checkpoint records (None: nothing, e.g. an official release or 'recipe').
        used: called as ``used(name, value)`` for each value taken from ``recorded`` (drivers print a line).
        given: EngineConfig fields chosen explicitly; None means "not given".

    Raises:
        model.records.CheckpointError: a recorded value that is needed (not given) but malformed.
        ValueError: values EngineConfig refuses.
    """
    names = {f.name for f in fields(EngineConfig)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"resolve_engine_config: unknown settings {unknown}")
    values = {name: value for name, value in given.items() if value is not None}
    for name in RECORDED_SETTINGS:
        if name in values or recorded is None:
            continue
        value = recorded.get(name)  # raises for a malformed record
        if value is not None:
            values[name] = value
            if used is not None:
                used(name, value)
    return EngineConfig(**values)
