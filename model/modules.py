"""Convolutional building blocks shared by the encoders and the decoder.

Attribute names are part of the checkpoint format (they are the state_dict
prefixes of the official PCVOS/STCN weights), so they must not be renamed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """Pre-activation residual block: ``skip(x) + conv2(relu(conv1(relu(x))))``.

    When the width changes the skip path is a 3x3 convolution named
    ``downsample`` (a name kept from the original code; it does not change the
    resolution). It is created first so that it leads the state_dict.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if in_channels != out_channels:
            self.downsample = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        else:
            self.downsample = None
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, Cin, H, W] -> [B, Cout, H, W]."""
        r = self.conv1(F.relu(x))
        r = self.conv2(F.relu(r))
        if self.downsample is not None:
            x = self.downsample(x)
        return x + r


class ChannelGate(nn.Module):
    """CBAM channel attention: shared MLP over global average and max pools."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        # Index 0 is a parameter-free flatten so the linear layers are mlp.1 / mlp.3.
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] -> x scaled per channel."""
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        peak = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + peak)[:, :, None, None]


class _SpatialConv(nn.Module):
    """Holds the 7x7 convolution under the name ``conv`` (checkpoint layout)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SpatialGate(nn.Module):
    """CBAM spatial attention from [max over C, mean over C] (in that order)."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = _SpatialConv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] -> x scaled per pixel."""
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Convolutional block attention (channel gate, then spatial gate)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)  # noqa: N815 - checkpoint name
        self.SpatialGate = SpatialGate()  # noqa: N815 - checkpoint name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """Fuses the value-encoder output with the key encoder's f16 feature."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block1 = ResBlock(in_channels, out_channels)
        self.attention = CBAM(out_channels)
        self.block2 = ResBlock(out_channels, out_channels)

    def forward(self, value_feature: torch.Tensor, key_f16: torch.Tensor) -> torch.Tensor:
        """value_feature: [B, Cv, h, w], key_f16: [B or 1, Ck, h, w] -> [B, out, h, w].

        The concatenation order (value first) matters for checkpoint compatibility.
        A single key_f16 row (one frame, B objects) is shared by all rows: block1's
        convolutions are split along their input channels and its key half runs
        once (same numbers up to float reassociation).
        """
        if key_f16.shape[0] == value_feature.shape[0]:
            x = self.block1(torch.cat([value_feature, key_f16], dim=1))
        else:
            x = self._block1_shared_key(value_feature, key_f16)
        return self.block2(x + self.attention(x))

    def _block1_shared_key(self, value_feature: torch.Tensor, key_f16: torch.Tensor) -> torch.Tensor:
        block, split = self.block1, value_feature.shape[1]

        def conv(conv: nn.Conv2d, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
            own = F.conv2d(x, conv.weight[:, :split], None, conv.stride, conv.padding)
            return own + F.conv2d(shared, conv.weight[:, split:], conv.bias, conv.stride, conv.padding)

        r = conv(block.conv1, F.relu(value_feature), F.relu(key_f16))
        r = block.conv2(F.relu(r))
        return conv(block.downsample, value_feature, key_f16) + r


class KeyProjection(nn.Module):
    """A 3x3 projection stored as ``key_proj`` (hence ``key_proj.key_proj.weight``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.key_proj = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        # Orthogonal rows keep the L2 geometry of the features at initialisation.
        nn.init.orthogonal_(self.key_proj.weight.data)
        nn.init.zeros_(self.key_proj.bias.data)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.key_proj(x)


class UpsampleBlock(nn.Module):
    """Decoder stage: skip conv + x2 bilinear upsample of the coarser map, then a ResBlock."""

    def __init__(self, skip_channels: int, up_channels: int, out_channels: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_channels, up_channels, kernel_size=3, padding=1)
        self.out_conv = ResBlock(up_channels, out_channels)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """skip: [B, Cs, 2h, 2w], coarse: [B, Cu, h, w] -> [B, Cout, 2h, 2w]."""
        x = self.skip_conv(skip)
        x = x + F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.out_conv(x)
