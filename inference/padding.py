"""Padding to multiples of 16 with the split used by the released code."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Pad = tuple[int, int, int, int]  # (left, right, top, bottom)


def compute_pad(height: int, width: int, divisor: int = 16) -> Pad:
    """Extra rows/columns split floor(d/2) before and the rest after."""
    dh = -height % divisor
    dw = -width % divisor
    return (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)


def pad(x: torch.Tensor, pads: Pad) -> torch.Tensor:
    """Zero-pad the last two dims of x: [..., H, W] -> [..., H + top + bottom, W + left + right]."""
    if not any(pads):
        return x
    return F.pad(x, pads)


def unpad(x: torch.Tensor, pads: Pad) -> torch.Tensor:
    """Inverse of :func:`pad`."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
