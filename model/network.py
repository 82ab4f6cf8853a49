"""The PCVOS network as named stages (no monolithic ``forward``).

Stages, all batched over frames (and objects where it applies):

* :meth:`PCVOS.encode_key`   frames -> memory/query keys and decoder skips
* :meth:`PCVOS.encode_value` frame + object mask -> memory value
* :meth:`PCVOS.refine_keys`  f16 -> the 256-d key stream of the refinement
* :meth:`PCVOS.refine_clip`  memory readout of a clip -> refined readout
* :meth:`PCVOS.decode`       refined readout + skips -> mask logits

Memory reading lives in :mod:`model.memory` (shared by training and the
inference engine). The state_dict has exactly the official key names and
shapes (``tests/data/state_dict_pcvos.tsv``) for the default config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import NamedTuple

import torch
from torch import nn

from model.decoder import Decoder, DecoderContext
from model.encoders import KEY_BACKBONE_CHANNELS, KeyEncoder, ValueEncoder
from model.modules import KeyProjection
from model.quality import QualityHead
from model.refine import ClipRefiner


@dataclass
class PCVOSConfig:
    """Architecture knobs. The defaults are the paper's released model.

    ``small()`` gives the CPU quickstart model: NOT the paper's model, a
    ResNet-18 key encoder, a half-width ResNet-18 value encoder and narrower
    value/decoder widths so it trains in minutes on a laptop CPU.
    """

    key_backbone: str = "resnet50"  # resnet50 (paper) or resnet18 (quickstart)
    key_dim: int = 64  # memory key channels
    value_dim: int = 512  # memory value channels
    hidden_dim: int = 256  # refinement key-stream channels
    decoder_dim: int = 256  # width of the 1/8 and 1/4 decoder stages
    refine: bool = True  # intra-clip refinement (ICR); False = the "no ICR" ablation
    refine_depths: tuple[int, ...] = (2,)
    refine_windows: tuple[tuple[int, int, int], ...] = ((2, 7, 7),)
    value_in_channels: int = 5  # 5 = image, mask, others; 4 = stage-0 single-object model
    value_width: int = 64  # first-stage channels of the value encoder's ResNet-18 (64 = paper)
    quality_head: bool = False  # optional QDMN-style mask-quality head (model/quality.py); not in official weights
    name: str = field(default="paper")

    @classmethod
    def small(cls) -> PCVOSConfig:
        return cls(
            key_backbone="resnet18", value_dim=128, hidden_dim=64, decoder_dim=64, value_width=32, name="small"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PCVOSConfig:
        """The config ``to_dict`` wrote (absent keys take their defaults).

        Raises:
            ValueError: naming the key and value, for a non-mapping, unknown keys or values of the
                wrong type or range (a damaged or foreign checkpoint must not become a TypeError).
        """
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping of architecture settings, got {type(data).__name__} {data!r:.80}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}; known keys: {sorted(known)}")
        data = dict(data)
        if "key_backbone" in data and data["key_backbone"] not in KEY_BACKBONE_CHANNELS:
            raise ValueError(f"key_backbone {data['key_backbone']!r}: expected one of {sorted(KEY_BACKBONE_CHANNELS)}")
        for key in ("key_dim", "value_dim", "hidden_dim", "decoder_dim", "value_width"):
            if key in data:
                _check_int(key, data[key], 1, MAX_CHANNELS)
        if "value_in_channels" in data and data["value_in_channels"] not in (4, 5):
            raise ValueError(f"value_in_channels {data['value_in_channels']!r}: expected 4 or 5")
        for key in ("refine", "quality_head"):
            if key in data and not isinstance(data[key], bool):
                raise ValueError(f"{key} {data[key]!r}: expected true or false")
        if "name" in data and not isinstance(data["name"], str):
            raise ValueError(f"name {data['name']!r}: expected a string")
        depths = data.get("refine_depths", (2,))
        windows = data.get("refine_windows", ((2, 7, 7),))
        if not isinstance(depths, (list, tuple)) or not depths:
            raise ValueError(f"refine_depths {depths!r}: expected a non-empty list of block counts")
        for depth in depths:
            _check_int("refine_depths", depth, 1, 64)
        if not isinstance(windows, (list, tuple)) or len(windows) != len(depths):
            raise ValueError(f"refine_windows {windows!r}: expected one [T, H, W] window per refine_depths entry")
        for window in windows:
            if not isinstance(window, (list, tuple)) or len(window) != 3:
                raise ValueError(f"refine_windows {windows!r}: each window must be [T, H, W]")
            for size in window:
                _check_int("refine_windows", size, 1, 64)
        data["refine_depths"] = tuple(depths)
        data["refine_windows"] = tuple(tuple(w) for w in windows)
        return cls(**data)


#: upper bound for a recorded channel width: far above any model here, low enough that a damaged
#: checkpoint cannot make the network allocate absurd amounts of memory
MAX_CHANNELS = 8192


def _check_int(key: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} {value!r}: expected an integer in [{low}, {high}]")


class KeyFeatures(NamedTuple):
    """Key-encoder outputs of N frames (h, w = H/16, W/16)."""

    key: torch.Tensor  # [N, Ck, h, w] memory/query key
    f16_thin: torch.Tensor  # [N, Cv, h, w] compressed f16 for the decoder
    f16: torch.Tensor  # [N, C16, h, w]
    f8: torch.Tensor  # [N, C8, 2h, 2w]
    f4: torch.Tensor  # [N, C4, 4h, 4w]


class PCVOS(nn.Module):
    """Per-clip video object segmentation network."""

    def __init__(self, config: PCVOSConfig | None = None) -> None:
        super().__init__()
        self.config = config = PCVOSConfig() if config is None else config
        c4, c8, c16 = KEY_BACKBONE_CHANNELS[config.key_backbone]
        # Attribute order = state_dict order of the official checkpoint.
        self.key_encoder = KeyEncoder(config.key_backbone)
        self.value_encoder = ValueEncoder(c16, config.value_dim, config.value_in_channels, config.value_width)
        self.key_proj = KeyProjection(c16, config.key_dim)
        self.key_comp = nn.Conv2d(c16, config.value_dim, kernel_size=3, padding=1)
        if config.refine:
            self.input_proj = KeyProjection(c16, config.hidden_dim)
            self.refine_transformer = ClipRefiner(
                config.hidden_dim, config.value_dim, config.refine_depths, config.refine_windows
            )
        else:
            self.input_proj = None
            self.refine_transformer = None
        self.decoder = Decoder(2 * config.value_dim, c8, c4, config.value_dim, config.decoder_dim)
        # Last, so its keys (prefix ``quality_head.``) follow the official ones and are absent when off.
        self.quality_head = QualityHead(config.value_dim) if config.quality_head else None

    def encode_key(self, frames: torch.Tensor) -> KeyFeatures:
        """frames: [N, 3, H, W] normalised, H and W multiples of 16."""
        f16, f8, f4 = self.key_encoder(frames)
        return KeyFeatures(self.key_proj(f16), self.key_comp(f16), f16, f8, f4)

    def encode_value(
        self, frames: torch.Tensor, f16: torch.Tensor, masks: torch.Tensor, others: torch.Tensor | None
    ) -> torch.Tensor:
        """One memory value per (frame, object) row.

        Args:
            frames: [B, 3, H, W]; f16: [B, C16, h, w] (or [1, ...]: one frame for all rows, computed
                once where it enters the fusion block); masks, others: [B, 1, H, W].

        Returns:
            [B, Cv, h, w]
        """
        return self.value_encoder(frames, f16, masks, others)

    def refine_keys(self, f16: torch.Tensor) -> torch.Tensor | None:
        """f16: [N, C16, h, w] -> [N, hidden, h, w] key stream of the refinement (None without ICR)."""
        return None if self.input_proj is None else self.input_proj(f16)

    def refine_clip(self, keys: torch.Tensor | None, readout: torch.Tensor) -> torch.Tensor:
        """keys: [Bk, hidden, T, h, w]; readout: [Bk * O, Cv, T, h, w] -> refined, same shape as readout."""
        if self.refine_transformer is None:
            return readout
        return self.refine_transformer(keys, readout)

    def decode(
        self, readout: torch.Tensor, f16_thin: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor
    ) -> torch.Tensor:
        """readout, f16_thin: [B, Cv, h, w]; f8, f4: skips of the same frames -> logits [B, 1, H, W]."""
        return self.decoder(torch.cat([readout, f16_thin], dim=1), f8, f4)

    def decode_context(self, f16_thin: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> DecoderContext:
        """Object-independent decoder terms of N frames (f16_thin [N, Cv, h, w], f8, f4 skips), for
        :meth:`decode_objects`."""
        return self.decoder.context(f16_thin, f8, f4)

    def decode_objects(self, readout: torch.Tensor, context: DecoderContext) -> torch.Tensor:
        """:meth:`decode` of O objects over the N frames of ``context`` without repeating per-frame work.

        readout: [O * N, Cv, h, w], rows object-major -> logits [O * N, 1, H, W].
        """
        return self.decoder.forward_objects(readout, context)

    def enable_quality_head(self) -> QualityHead:
        """Add a freshly initialised quality head (e.g. before loading its weights from their own file)."""
        if self.quality_head is None:
            device = next(self.parameters()).device
            self.quality_head = QualityHead(self.config.value_dim).to(device)
            self.config = replace(self.config, quality_head=True)
        return self.quality_head

    def assess_quality(self, values: torch.Tensor) -> torch.Tensor:
        """values: [B, Cv, h, w] memory values (frame + one object's mask) -> [B] predicted mask IoU."""
        if self.quality_head is None:
            raise RuntimeError("this network has no quality head (PCVOSConfig.quality_head=False)")
        return self.quality_head(values)
