"""Soft aggregation of per-object probabilities (STM style)."""

from __future__ import annotations

import torch

EPS = 1e-7


def aggregate_logits(prob: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Logits of [background, objects] from independent object probabilities.

    ``p0 = prod_k (1 - p_k)``; all K+1 values are clamped to [1e-7, 1 - 1e-7]
    and turned into logits ``ln(p / (1 - p))``.

    Args:
        prob: [..., K, ...] object probabilities along ``dim``.

    Returns:
        [..., K + 1, ...] logits, background first.
    """
    background = torch.prod(1 - prob, dim=dim, keepdim=True)
    p = torch.cat([background, prob], dim=dim).clamp(EPS, 1 - EPS)
    return torch.log(p / (1 - p))


def aggregate(prob: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Softmax of :func:`aggregate_logits`: [..., K, ...] -> [..., K + 1, ...].

    Not idempotent: aggregating an aggregated map changes it.
    """
    return torch.softmax(aggregate_logits(prob, dim), dim=dim)


def others_from_masks(masks: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """For each object, the sum of the other objects' masks (the value encoder's third input).

    masks: objects along ``dim`` (the engine: [O, 1, H, W]; training: [B, K, 1, H, W] with ``dim=1``)
    -> the same shape, zeros for a single object. Summed explicitly rather than as total - own, to keep
    the released numbers.
    """
    count = masks.shape[dim]
    if count == 1:
        return torch.zeros_like(masks)
    masks = masks.movedim(dim, 0)
    others = torch.stack([masks[[j for j in range(count) if j != i]].sum(0) for i in range(count)])
    return others.movedim(0, dim)
