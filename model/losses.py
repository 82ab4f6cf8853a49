"""Training losses: bootstrapped cross-entropy (STCN) and clip-level dice (PCVOS, Eq. 5).

``L_total = L_clip + L_image`` with weights 1:1 as in the paper. Both are
written for the per-clip unroll in :mod:`model.train_forward`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Dice smoothing (added to numerator and denominator). The paper does not give
#: one; 1.0 (V-Net style, in pixel units) keeps the loss finite and ~0 for an
#: object that is absent from the whole clip and predicted absent.
DICE_SMOOTH = 1.0


@dataclass(frozen=True)
class BootstrapSchedule:
    """Hard-pixel mining schedule of STCN's bootstrapped CE (iterations within a stage).

    Plain mean CE before ``start``; from ``start`` on, the mean of the top-p
    fraction of per-pixel CE values with p going linearly from 1.0 at ``start``
    to ``top_p`` at ``end`` (then constant).
    """

    start: int = 20_000
    end: int = 70_000
    top_p: float = 0.15

    def fraction(self, iteration: int) -> float:
        """p at ``iteration`` (1.0 = plain CE)."""
        if iteration < self.start:
            return 1.0
        if iteration > self.end:
            return self.top_p
        return self.top_p + (1.0 - self.top_p) * (self.end - iteration) / (self.end - self.start)


def bootstrapped_ce(logits: torch.Tensor, target: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean CE of the hardest ``fraction`` of pixels of ONE sample.

    Args:
        logits: [C, H, W] class logits (background first).
        target: [H, W] int64 class ids in [0, C).
        fraction: p in (0, 1]; 1.0 gives the plain mean.

    Returns:
        scalar; the kept pixel count is ``int(p * H * W)`` (truncation, as STCN), at least 1.
    """
    raw = F.cross_entropy(logits.unsqueeze(0).float(), target.unsqueeze(0), reduction="none").flatten()
    if fraction >= 1.0:
        return raw.mean()
    keep = max(1, int(fraction * raw.numel()))
    return torch.topk(raw, keep, sorted=False).values.mean()


def image_loss(logits: torch.Tensor, cls_gt: torch.Tensor, selector: torch.Tensor, fraction: float) -> torch.Tensor:
    """Bootstrapped CE summed over frames, averaged over the batch (STCN's L_image).

    A sample whose second object is unused (selector 0) is scored on the
    first two classes only, as STCN does.

    Args:
        logits: [B, K + 1, T, H, W] aggregation logits (background first).
        cls_gt: [B, T, H, W] int64 in [0, K].
        selector: [B, K] 1 for used object slots.
        fraction: bootstrap p (see :class:`BootstrapSchedule`).

    Returns:
        scalar.
    """
    batch, _, frames = logits.shape[:3]
    total = logits.new_zeros((), dtype=torch.float32)
    for t in range(frames):
        per_sample = []
        for b in range(batch):
            classes = max(2, 1 + int(selector[b].sum().item()))
            per_sample.append(bootstrapped_ce(logits[b, :classes, t], cls_gt[b, t], fraction))
        total = total + torch.stack(per_sample).mean()
    return total


def soft_dice(pred: torch.Tensor, target: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Dice over all pixels of the last dimensions: ``(2 sum(p m) + s) / (sum p + sum m + s)``.

    Args:
        pred, target: [..., N] probabilities / binary masks (flattened clip pixels).

    Returns:
        [...] dice coefficients.
    """
    pred = pred.float()
    target = target.float()
    inter = (pred * target).sum(-1)
    return (2 * inter + smooth) / (pred.sum(-1) + target.sum(-1) + smooth)


def clip_dice_loss(
    prob: torch.Tensor, masks: torch.Tensor, selector: torch.Tensor, smooth: float = DICE_SMOOTH
) -> torch.Tensor:
    """PCVOS L_clip = sum_k [1 - Dice(m~^k, m^k)] over one clip's pixels, averaged over the batch.

    The dice of each object is computed over ALL pixels of all frames of the
    clip jointly (the paper's m~ in R^{K H' W'} notation), not per frame.

    Args:
        prob: [B, K, T, H, W] predicted object probabilities of the clip.
        masks: [B, K, T, H, W] ground-truth binary masks.
        selector: [B, K] 1 for used object slots (unused slots add nothing).

    Returns:
        scalar.
    """
    dice = soft_dice(prob.flatten(2), masks.flatten(2), smooth)  # [B, K]
    return ((1 - dice) * selector.float()).sum(1).mean()


def mask_iou(prob: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IoU of thresholded predictions, pooled over everything given (for logging).

    prob, masks: same shape -> scalar (1.0 when both are empty).
    """
    pred = prob > threshold
    gt = masks > 0.5
    union = (pred | gt).sum()
    return torch.where(union > 0, (pred & gt).sum() / union.clamp(min=1), torch.ones((), device=prob.device))


def binary_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of binarised masks per leading index (1.0 when both are empty, as DAVIS J).

    Args:
        pred, target: [..., H, W] probabilities or masks, binarised at 0.5.

    Returns:
        [...] IoU.
    """
    p = pred.flatten(-2) > 0.5
    g = target.flatten(-2) > 0.5
    inter = (p & g).sum(-1).float()
    union = (p | g).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def quality_loss(score: torch.Tensor, iou: torch.Tensor, selector: torch.Tensor) -> torch.Tensor:
    """Quality-head regression (QDMN): MSE between predicted and actual IoU over the used object slots.

    Args:
        score: [B, K, F] predicted IoU; iou: [B, K, F] target (detached by the caller); selector: [B, K].

    Returns:
        scalar.
    """
    weight = selector.float()[:, :, None].expand_as(score)
    return ((score.float() - iou.float()).pow(2) * weight).sum() / weight.sum().clamp(min=1)
