"""Skip-connected decoder from the refined readout to full-resolution logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.modules import ResBlock, UpsampleBlock


class Decoder(nn.Module):
    """1/16 -> 1/8 -> 1/4 with skip features, a 3x3 head, then x4 bilinear upsampling.

    Args:
        in_channels: channels of cat([readout, f16_thin]) (1024 in the paper).
        f8_channels, f4_channels: key-encoder skip widths (512, 256 for ResNet-50).
        mid_channels: width after ``compress`` (512).
        out_channels: width of the 1/8 and 1/4 stages (256).
    """

    def __init__(
        self,
        in_channels: int = 1024,
        f8_channels: int = 512,
        f4_channels: int = 256,
        mid_channels: int = 512,
        out_channels: int = 256,
    ) -> None:
        super().__init__()
        self.compress = ResBlock(in_channels, mid_channels)
        self.up_16_8 = UpsampleBlock(f8_channels, mid_channels, out_channels)
        self.up_8_4 = UpsampleBlock(f4_channels, out_channels, out_channels)
        self.pred = nn.Conv2d(out_channels, 1, kernel_size=3, padding=1)

    def forward(self, f16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        """f16: [B, Cin, h, w], f8: [B, C8, 2h, 2w], f4: [B, C4, 4h, 4w] -> logits [B, 1, 16h, 16w]."""
        x = self.compress(f16)
        x = self.up_16_8(f8, x)
        x = self.up_8_4(f4, x)
        x = self.pred(F.relu(x))
        return F.interpolate(x, scale_factor=4.0, mode="bilinear", align_corners=False)
