"""Skip-connected decoder from the refined readout to full-resolution logits."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from model.modules import ResBlock, UpsampleBlock


class DecoderContext(NamedTuple):
    """The decoder's object-independent terms for N frames, computed once and shared by every object.

    ``compress``'s first conv and skip conv see ``cat([readout, f16_thin])``;
    their ``f16_thin`` halves (bias included) depend only on the frame, as do
    both skip convolutions. The released code recomputes them for every object.
    """

    compress_conv1: torch.Tensor  # [N, Cmid, h, w] compress.conv1 over relu(f16_thin), with its bias
    compress_skip: torch.Tensor  # [N, Cmid, h, w] compress.downsample over f16_thin, with its bias
    skip8: torch.Tensor  # [N, Cmid, 2h, 2w] up_16_8.skip_conv(f8)
    skip4: torch.Tensor  # [N, Cout, 4h, 4w] up_8_4.skip_conv(f4)


def _add_per_frame(rows: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """rows [O * N, C, H, W] (object-major) + shared [N, C, H, W] broadcast over the O objects."""
    frames = shared.shape[0]
    return (rows.view(-1, frames, *rows.shape[1:]) + shared).flatten(0, 1)


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

    def context(self, f16_thin: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> DecoderContext:
        """Object-independent terms of N frames: f16_thin [N, Ct, h, w], f8 [N, C8, 2h, 2w], f4 [N, C4, 4h, 4w]."""
        compress = self.compress
        if compress.downsample is None:
            raise ValueError("the shared-context decoder path needs compress to change width (in != mid channels)")
        split = compress.conv1.in_channels - f16_thin.shape[1]  # readout channels come first in the concat
        conv1 = F.conv2d(F.relu(f16_thin), compress.conv1.weight[:, split:], compress.conv1.bias,
                         padding=compress.conv1.padding)
        skip = F.conv2d(f16_thin, compress.downsample.weight[:, split:], compress.downsample.bias,
                        padding=compress.downsample.padding)
        return DecoderContext(conv1, skip, self.up_16_8.skip_conv(f8), self.up_8_4.skip_conv(f4))

    def forward_objects(self, readout: torch.Tensor, context: DecoderContext) -> torch.Tensor:
        """Logits of O objects over the N frames of ``context``, reusing its object-independent terms.

        Equal to :meth:`forward` of ``cat([readout, f16_thin])`` row by row up to float
        reassociation (the first convs are split along their input channels).

        Args:
            readout: [O * N, Cr, h, w] rows object-major (row o * N + i is object o, frame i).
            context: :meth:`context` of the N frames.

        Returns:
            [O * N, 1, 16h, 16w] logits.
        """
        compress = self.compress
        split = readout.shape[1]
        r = F.conv2d(F.relu(readout), compress.conv1.weight[:, :split], None, padding=compress.conv1.padding)
        r = compress.conv2(F.relu(_add_per_frame(r, context.compress_conv1)))
        x = F.conv2d(readout, compress.downsample.weight[:, :split], None, padding=compress.downsample.padding)
        x = _add_per_frame(x, context.compress_skip) + r
        up = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.up_16_8.out_conv(_add_per_frame(up, context.skip8))
        up = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.up_8_4.out_conv(_add_per_frame(up, context.skip4))
        x = self.pred(F.relu(x))
        return F.interpolate(x, scale_factor=4.0, mode="bilinear", align_corners=False)
