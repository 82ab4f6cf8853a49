"""Loading network weights: official PCVOS, STCN, stage-0 and our training checkpoints.

Every load uses ``weights_only=True`` and ``map_location``; a file that is
not a checkpoint, or whose tensors do not fit, gets an error that names the
file and the offending keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from model.network import PCVOS, PCVOSConfig
from model.records import CheckpointError, InferenceSettings, not_a_checkpoint_file

__all__ = ["CheckpointError", "InferenceSettings", "LoadReport", "build_model", "load_file", "load_quality_head",
           "load_weights", "not_a_checkpoint_file", "read_state_dict", "recommend_settings"]

#: Keys that only PCVOS has (an STCN checkpoint lacks them).
REFINE_PREFIXES = ("input_proj.", "refine_transformer.")
#: Keys of the optional quality head (loaded separately from the official weights).
QUALITY_PREFIX = "quality_head."
VALUE_CONV1 = "value_encoder.conv1.weight"


@dataclass
class LoadReport:
    """What a load did: which kind of file it was and what was initialised instead."""

    path: str
    kind: str  # 'pcvos', 'stcn', 'stage0', 'training'
    missing: list[str] = field(default_factory=list)  # initialised, not loaded
    widened: bool = False  # 4-channel value encoder widened to 5
    #: the inference settings the file records (see recommend_settings; empty for official releases)
    inference: InferenceSettings = field(default_factory=InferenceSettings)

    def summary(self) -> str:
        text = f"{self.path}: loaded as {self.kind}"
        if self.widened:
            text += "; value-encoder input widened from 4 to 5 channels"
        if self.missing:
            text += f"; {len(self.missing)} keys initialised fresh ({_prefixes(self.missing)})"
        return text


def _prefixes(keys: list[str]) -> str:
    return ", ".join(sorted({k.split(".")[0] for k in keys}))


def atomic_save(obj: dict, path: Path) -> Path:
    """torch.save to a temp file in the same folder, then rename (never a half-written checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


#: The first bytes of a file written by torch.save (a zip archive since PyTorch 1.6).
_ZIP_MAGIC = b"PK\x03\x04"


def load_file(path: str | Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, with an error that names the file and the fix.

    A file that starts like a torch.save archive but does not load is damaged (an interrupted download or
    copy, a full disk): it is reported as such, not as a foreign file, so the user knows to fetch it again.

    Raises:
        CheckpointError: missing, damaged, not a PyTorch file, or holding objects other than tensors.
    """
    path = Path(path)
    if path.is_dir():
        raise not_a_checkpoint_file(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for bad files
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:160]
        with open(path, "rb") as handle:
            head = handle.read(len(_ZIP_MAGIC))
        size = path.stat().st_size
        if head == _ZIP_MAGIC:
            raise CheckpointError(
                f"{path}: damaged checkpoint, truncated or corrupt ({size} bytes; {reason}); download it again or, "
                "for --resume, pick an earlier checkpoint"
            ) from error
        if "Weights only load failed" in str(error):
            raise CheckpointError(
                f"{path}: refused, it holds Python objects other than tensors (loading them could run code); "
                "pass the .pth file of a PCVOS, STCN or train.py checkpoint"
            ) from error
        raise CheckpointError(
            f"{path}: not a loadable PyTorch checkpoint ({size} bytes; {reason}); pass the .pth file of a PCVOS, "
            "STCN or train.py checkpoint, or download it again if it was one"
        ) from error


def recommend_settings(path: str | Path, clip_length: int, why: str, flip: bool = False) -> InferenceSettings:
    """Record in our checkpoint the clip length it should run at unless -L says otherwise, and whether
    to use mirror test-time augmentation unless --flip / --no-flip says otherwise.

    The quickstart records the L that won on its selection videos, without flip (scripts/quickstart.py), so
    that ``eval_davis.py --model <it>`` without flags reproduces its report's headline.
    """
    path = Path(path)
    settings = InferenceSettings(clip_length=clip_length, flip=bool(flip), why=why, source=str(path))
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(data, dict) and isinstance(data.get("network"), dict)):
        raise CheckpointError(f"{path}: only train.py checkpoints ({{'network': ...}}) can record settings")
    data["inference"] = settings.to_record()
    atomic_save(data, path)
    return settings


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a weights file and return (state_dict, metadata).

    Accepts a plain state_dict (official PCVOS/STCN releases), our training
    checkpoints (``{'network': ..., 'config': ...}``) and DDP-prefixed keys.
    """
    path = Path(path)
    data = load_file(path)
    meta: dict = {}
    if isinstance(data, dict) and "network" in data and isinstance(data["network"], dict):
        meta = {k: v for k, v in data.items() if k != "network"}
        data = data["network"]
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: does not hold a state_dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return data, meta


def check_finite(state: dict[str, torch.Tensor], path: str | Path, shown: int = 5) -> None:
    """Refuse weights holding NaN or infinite values.

    Such a file (a diverged training run, a corrupted copy) loads without complaint and then
    segments every frame as background, with exit code 0; refusing it names the cause instead.

    Raises:
        CheckpointError: naming the first ``shown`` offending tensors, their count and the file.
    """
    bad = [
        name
        for name, tensor in state.items()
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        listed = ", ".join(bad[:shown]) + (f", ... ({len(bad) - shown} more)" if len(bad) > shown else "")
        raise CheckpointError(
            f"{path}: {len(bad)} of {len(state)} tensors hold NaN or infinite values ({listed}); the weights are "
            "corrupt or come from a diverged training run: use another checkpoint (an earlier one of the run)"
        )


def config_from_checkpoint(path: str | Path) -> PCVOSConfig:
    """The architecture a checkpoint was trained with (default config for official files)."""
    _, meta = read_state_dict(path)
    config = meta.get("model_config")
    if config is None or (isinstance(config, (str, dict)) and not config):  # none recorded: the paper's model
        return PCVOSConfig()
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"{path}: its model_config is not valid JSON ({error}: {config[:80]!r}); the file is damaged or was "
                "not written by train.py"
            ) from error
    try:
        return PCVOSConfig.from_dict(config)
    except ValueError as error:
        raise CheckpointError(
            f"{path}: malformed model_config: {error}; the file is damaged or was not written by train.py"
        ) from error


def load_weights(model: PCVOS, path: str | Path, strict_refine: bool = False) -> LoadReport:
    """Load weights into ``model`` and say what was done.

    * official PCVOS or our checkpoints: every key must match (strict);
    * STCN (no ``input_proj``/``refine_transformer``): those parts keep their
      fresh initialisation and are reported (refused with ``strict_refine``);
    * stage-0 (4-channel value encoder): widened to 5 channels, the extra
      channel initialised orthogonally as in training;
    * the optional quality head is never required.

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped keys, or tensors with NaN / inf.
    """
    state, meta = read_state_dict(path)
    check_finite(state, path)
    target = model.state_dict()
    report = LoadReport(str(path), "pcvos", inference=InferenceSettings.from_record(meta.get("inference"), str(path)))
    state = dict(state)

    if VALUE_CONV1 in state and VALUE_CONV1 in target:
        have, want = state[VALUE_CONV1].shape[1], target[VALUE_CONV1].shape[1]
        if have == 4 and want == 5:
            extra = torch.empty(state[VALUE_CONV1].shape[0], 1, *state[VALUE_CONV1].shape[2:])
            nn.init.orthogonal_(extra)
            state[VALUE_CONV1] = torch.cat([state[VALUE_CONV1], extra], dim=1)
            report.widened = True
            report.kind = "stage0"

    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
        for k in target
        if k in state and state[k].shape != target[k].shape
    ]
    optional = [k for k in missing if k.startswith(QUALITY_PREFIX)]
    refine_missing = [k for k in missing if k.startswith(REFINE_PREFIXES)]
    if refine_missing and len(refine_missing) == len([k for k in target if k.startswith(REFINE_PREFIXES)]):
        if strict_refine:
            raise CheckpointError(f"{path}: has no intra-clip refinement weights (an STCN checkpoint?)")
        report.kind = "stcn" if not report.widened else report.kind
    else:
        refine_missing = []
    hard_missing = [k for k in missing if k not in optional and k not in refine_missing]
    unexpected = [k for k in unexpected if not k.startswith(QUALITY_PREFIX)]
    if hard_missing or unexpected or wrong:
        lines = [f"{path}: does not fit the {model.config.name} PCVOS network."]
        for title, keys in (("missing", hard_missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                shown = "\n    ".join(keys[:20]) + (f"\n    ... and {len(keys) - 20} more" if len(keys) > 20 else "")
                lines.append(f"  {title} ({len(keys)}):\n    {shown}")
        lines.append("  Is this a PCVOS/STCN checkpoint for this model size (see --model-size)?")
        raise CheckpointError("\n".join(lines))

    model.load_state_dict({**target, **state}, strict=True)
    report.missing = refine_missing + optional
    return report


def load_quality_head(model: PCVOS, path: str | Path) -> None:
    """Load only the quality head's weights (kept in a file of their own)."""
    if model.quality_head is None:
        raise CheckpointError("the network has no quality head; build it with quality_head=True")
    state, _ = read_state_dict(path)
    head = {k[len(QUALITY_PREFIX):]: v for k, v in state.items() if k.startswith(QUALITY_PREFIX)} or state
    check_finite(head, path)
    try:
        model.quality_head.load_state_dict(head, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: not a quality-head checkpoint ({error})") from error


def build_model(
    path: str | Path | None, device: torch.device | str = "cpu", config: PCVOSConfig | None = None
) -> tuple[PCVOS, LoadReport | None]:
    """Build the network a checkpoint needs (or ``config``'s, e.g. the checkpoint's with a refinement added: the
    parts the file lacks keep their fresh initialisation, as :func:`load_weights` allows), load it, move it to
    ``device`` in eval mode."""
    if config is None:
        config = config_from_checkpoint(path) if path is not None else PCVOSConfig()
    model = PCVOS(config)
    report = load_weights(model, path) if path is not None else None
    return model.to(device).eval(), report
