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
