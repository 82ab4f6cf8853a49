"""Quality assessment head (QDMN's QAM layout, adapted to PCVOS): predicts a mask's IoU.

Input: the memory value of a (frame, object) pair, i.e. the value encoder's
output for the frame and that object's (predicted) mask, [B, Cv, h, w] at
1/16 resolution. QDMN scores the res4 feature of its own memory encoder,
which has likewise seen the mask; PCVOS's fused value is the closest
counterpart and is computed anyway for every frame that may enter memory,
so scoring costs only this head.

Layout (QDMN ``Score``): the feature is standardised per sample (mean 0,
std 1 over channels and positions, no parameters; PCVOS values are not
normalised and their scale depends on the weights: ~1e4 in the quickstart
model, which saturated an unnormalised head's sigmoid at 1 for every input),
resized to 24 x 24 (QDMN's inference size; natively 24 x 24 for 384-pixel
training crops), then four 3x3 convolutions with ReLU (the last with stride
2 -> 12 x 12), flatten, FC, ReLU, FC -> one scalar. Unlike QDMN the output
goes through a **sigmoid**:
QDMN's ReLU on the last FC can die (all-negative pre-activation gives a zero
score and zero gradient; their README's own workaround is a sigmoid), and an
IoU lives in [0, 1] anyway.

Widths follow the value width: Cv = 512 (paper model) gives QDMN's 256
channels and 1024 FC units; the small model (Cv = 128) gets 64 and 256.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Spatial size the value feature is resized to before the head (QDMN: 24).
QUALITY_GRID = 24


class QualityHead(nn.Module):
    """Predicted IoU of the mask a memory value was encoded with.

    Args:
        in_channels: value channels Cv.
        mid_channels: convolution width (default Cv / 2: 256 for the paper model).
        fc_channels: hidden FC width (default 2 Cv: 1024 for the paper model).
    """

    def __init__(self, in_channels: int, mid_channels: int | None = None, fc_channels: int | None = None) -> None:
        super().__init__()
        mid = mid_channels or max(8, in_channels // 2)
        fc = fc_channels or 2 * in_channels
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, stride=2),
            nn.ReLU(inplace=True),
        )
        side = (QUALITY_GRID + 1) // 2
        self.fc1 = nn.Linear(mid * side * side, fc)
        self.fc2 = nn.Linear(fc, 1)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """values: [B, Cv, h, w] memory values -> [B] predicted IoU in (0, 1)."""
        x = F.group_norm(values.float(), 1)
        if tuple(x.shape[-2:]) != (QUALITY_GRID, QUALITY_GRID):
            x = F.interpolate(x, size=(QUALITY_GRID, QUALITY_GRID), mode="bilinear", align_corners=False)
        x = self.convs(x).flatten(1)
        x = F.relu(self.fc1(x))
        return torch.sigmoid(self.fc2(x)).squeeze(1)
