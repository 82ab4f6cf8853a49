"""Device and precision selection: the only place that names a device type.

torch is imported by the functions that use it: the names below (PRECISIONS, COMPILE_MODES) are
read by command-line parsers, which must answer ``--help`` without loading torch (docs/cli.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: precision name -> the torch dtype autocast runs in (None: no autocast)
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' picks CUDA when available, else the CPU; anything else is passed to torch."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for ``precision`` in {'fp32', 'bf16', 'fp16'} (fp32 = no autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {sorted(PRECISIONS)}")
    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    import torch

    dtype = getattr(torch, PRECISIONS[precision])
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("--precision fp16 needs a CUDA device; use bf16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX): there bf16 autocast is ~1.6x faster than
    fp32 for training and ~2x for inference; elsewhere it is emulated and slower. ``cpuinfo``: /proc/cpuinfo text
    (read when None; False where it does not exist)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (for honest timings)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def compile_methods(module: torch.nn.Module, names: Iterable[str], mode: str) -> None:
    """Replace methods of ``module`` (in place, on the instance) by ``torch.compile``d versions.

    Inductor *freezing* is on: the weights become constants of the compiled
    graphs (BatchNorm folded into convolutions, ReLU fused into them), so the
    module must not be trained afterwards. 'reduce-overhead' and
    'max-autotune' also capture CUDA graphs; their outputs are cloned, because
    a graph's next replay overwrites them and the engine keeps some (memory
    keys and values). Compiling the same module twice with one mode is a no-op.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose from {COMPILE_MODES}")
    if getattr(module, "_compiled_mode", None) == mode:
        return
    import torch
    import torch._inductor

    options = {**torch._inductor.list_mode_options(mode), "freezing": True}
    cuda_graphs = bool(options.get("triton.cudagraphs"))
    for name in names:
        original = getattr(type(module), name).__get__(module)  # the plain method, even after an earlier compile
        compiled = torch.compile(original, options=options)
        setattr(module, name, _cloning(compiled) if cuda_graphs else compiled)
    module._compiled_mode = mode


def _cloning(fn):
    import torch

    def call(*args, **kwargs):
        out = fn(*args, **kwargs)
        return torch.utils._pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, out)

    return call
