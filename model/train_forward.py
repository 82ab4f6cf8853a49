"""The per-clip training unroll of PCVOS's named stages (paper §3.6; docs/training.md).

A sample is ``1 + sum(clip_lengths)`` frames: frame 0 carries the ground
truth; the clips follow in processing order. Per sample and clip:

1. memory = [frame 0 encoded with its ground-truth masks];
2. the whole clip is read from memory (full softmax, no top-k, no progressive
   memory matching), refined jointly by the intra-clip refinement and decoded;
3. before the next clip, the clip's LAST frame is encoded with its soft
   predicted masks (gradients flow through them, as STCN) and appended to the
   memory; earlier clip frames are not memorised.

Several objects share the affinity; each gets its own value (mask + the sum of
the other objects' masks), and the second object's probability is multiplied
by its selector (0 when the sample has a single object), as STCN.

With ``quality=True`` the optional quality head (:mod:`model.quality`) also
scores the values of frame 0 (ground truth) and of every clip's last frame
(predicted masks; the final clip's last frame is encoded for this only), for
an IoU regression (:func:`model.losses.quality_loss`). The head reads
*detached* values, so its loss trains the head alone and cannot reshape the
segmentation features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from model.aggregate import aggregate_logits, others_from_masks
from model.losses import BootstrapSchedule, binary_iou, clip_dice_loss, image_loss, mask_iou, quality_loss
from model.memory import softmax_readout
from model.network import PCVOS


def clip_slices(clip_lengths: Sequence[int]) -> list[slice]:
    """Positions of each clip among the predicted frames (frames 1..T-1)."""
    out, start = [], 0
    for length in clip_lengths:
        out.append(slice(start, start + length))
        start += length
    return out


class QualityPrediction(NamedTuple):
    """Quality-head outputs of one batch: score [B, K, F] for the sample frames ``frames`` (F of them)."""

    score: torch.Tensor
    frames: tuple[int, ...]


class PerClipUnroll(nn.Module):
    """Training forward of PCVOS over one batch of per-clip samples (DDP wraps this module).

    Args:
        net: the network (the trainer sets its BatchNorms: frozen in eval mode, or batch statistics).
        clip_lengths: frames per clip, e.g. (3, 3) for video, (2,) for stage 0.
        quality: also return a :class:`QualityPrediction` (needs ``net.quality_head``).
    """

    def __init__(self, net: PCVOS, clip_lengths: Sequence[int], quality: bool = False) -> None:
        super().__init__()
        if quality and net.quality_head is None:
            raise ValueError("quality=True needs a network built with PCVOSConfig(quality_head=True)")
        self.net = net
        self.clip_lengths = tuple(clip_lengths)
        self.quality = quality

    def forward(
        self, rgb: torch.Tensor, masks: torch.Tensor, selector: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment every clip frame.

        Args:
            rgb: [B, T, 3, H, W] normalised frames, T = 1 + sum(clip_lengths).
            masks: [B, T, K, H, W] ground truth (only frame 0 is used here).
            selector: [B, K] 1 for used object slots.

        Returns:
            (logits [B, K + 1, T - 1, H, W] aggregation logits (background first),
             prob [B, K, T - 1, H, W] object probabilities = softmax(logits)[:, 1:]),
            plus a :class:`QualityPrediction` when built with ``quality=True``.
        """
        batch, frames = rgb.shape[:2]
        if frames != 1 + sum(self.clip_lengths):
            raise ValueError(f"expected {1 + sum(self.clip_lengths)} frames per sample, got {frames}")
        net = self.net
        feats = net.encode_key(rgb.flatten(0, 1))
        per_frame = {name: x.unflatten(0, (batch, frames)) for name, x in feats._asdict().items()}
        refine_keys = net.refine_keys(feats.f16)
        refine_keys = None if refine_keys is None else refine_keys.unflatten(0, (batch, frames))

        mem_keys = [per_frame["key"][:, 0].flatten(2)]  # [B, Ck, hw] each
        first = self._encode(rgb[:, 0], per_frame["f16"][:, 0], masks[:, 0])  # [B, K, Cv, h, w]
        mem_values = [first.flatten(3)]  # [B, K, Cv, hw] each
        selector = selector.to(rgb.dtype)
        scores, scored = [self._score(first)], [0]
        all_logits, all_prob = [], []
        start = 1
        for c, length in enumerate(self.clip_lengths):
            idx = list(range(start, start + length))
            logits, prob = self._segment_clip(per_frame, refine_keys, mem_keys, mem_values, idx, selector)
            all_logits.append(logits)
            all_prob.append(prob)
            last = idx[-1]
            if c + 1 < len(self.clip_lengths) or self.quality:
                final = c + 1 == len(self.clip_lengths)  # the final clip's last frame is only scored: no graph
                with torch.no_grad() if final else contextlib.nullcontext():
                    value = self._encode(rgb[:, last], per_frame["f16"][:, last], prob[:, :, -1])
                if not final:
                    mem_keys.append(per_frame["key"][:, last].flatten(2))
                    mem_values.append(value.flatten(3))
                scores.append(self._score(value))
                scored.append(last)
            start += length
        if self.quality:
            quality = QualityPrediction(torch.stack(scores, dim=2), tuple(scored))
            return torch.cat(all_logits, dim=2), torch.cat(all_prob, dim=2), quality
        return torch.cat(all_logits, dim=2), torch.cat(all_prob, dim=2)

    def _score(self, values: torch.Tensor) -> torch.Tensor | None:
        """Quality head on detached memory values [B, K, Cv, h, w] -> [B, K] predicted IoU; None when off."""
        if not self.quality:
            return None
        batch, objects = values.shape[:2]
        return self.net.assess_quality(values.detach().flatten(0, 1)).view(batch, objects)

    def _encode(self, image: torch.Tensor, f16: torch.Tensor, obj_masks: torch.Tensor) -> torch.Tensor:
        """Memory values of one frame for every object.

        image: [B, 3, H, W]; f16: [B, C16, h, w]; obj_masks: [B, K, H, W] -> [B, K, Cv, h, w].
        """
        batch, objects = obj_masks.shape[:2]
        masks = obj_masks.unsqueeze(2)  # [B, K, 1, H, W]
        others = others_from_masks(masks, dim=1)  # zeros for a single object
        values = self.net.encode_value(
            image.repeat_interleave(objects, 0),
            f16.repeat_interleave(objects, 0),
            masks.flatten(0, 1),
            others.flatten(0, 1),
        )
        return values.unflatten(0, (batch, objects))

    def _segment_clip(
        self,
        per_frame: dict[str, torch.Tensor],
        refine_keys: torch.Tensor | None,
        mem_keys: list[torch.Tensor],
        mem_values: list[torch.Tensor],
        idx: list[int],
        selector: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Read, refine and decode frames ``idx`` of every sample -> logits [B, K+1, n, H, W], prob [B, K, n, H, W]."""
        key = per_frame["key"][:, idx]  # [B, n, Ck, h, w]
        batch, n, ck, h, w = key.shape
        objects = mem_values[0].shape[1]
        query = key.transpose(1, 2).reshape(batch, ck, n * h * w)
        readout = softmax_readout(torch.cat(mem_keys, -1), torch.cat(mem_values, -1), query)  # [B, K, Cv, n*hw]
        readout = readout.to(per_frame["f16_thin"].dtype).reshape(batch * objects, -1, n, h, w)
        keys = None if refine_keys is None else refine_keys[:, idx].transpose(1, 2)  # [B, hid, n, h, w]
        refined = self.net.refine_clip(keys, readout)  # rows (sample, object)
        rows = refined.transpose(1, 2).reshape(batch * objects * n, -1, h, w)  # rows (sample, object, frame)

        def skip(name: str) -> torch.Tensor:
            x = per_frame[name][:, idx].unsqueeze(1)  # [B, 1, n, C, ., .]
            return x.expand(batch, objects, *x.shape[2:]).reshape(batch * objects * n, *x.shape[3:])

        logits = self.net.decode(rows, skip("f16_thin"), skip("f8"), skip("f4"))  # [B*K*n, 1, H, W]
        prob = torch.sigmoid(logits.float()).view(batch, objects, n, *logits.shape[-2:])
        prob = prob * selector.float()[:, :, None, None, None]
        agg = aggregate_logits(prob, dim=1)  # [B, K+1, n, H, W]
        return agg, torch.softmax(agg, dim=1)[:, 1:]


@dataclass
class LossTerms:
    """Scalar losses and logging values of one micro-batch."""

    total: torch.Tensor
    image: torch.Tensor
    clip: torch.Tensor
    iou: torch.Tensor
    quality: torch.Tensor | None = None  # quality-head MSE (None without the head)


def compute_losses(
    logits: torch.Tensor,
    prob: torch.Tensor,
    masks: torch.Tensor,
    cls_gt: torch.Tensor,
    selector: torch.Tensor,
    clip_lengths: Sequence[int],
    iteration: int,
    schedule: BootstrapSchedule,
    dice_weight: float = 1.0,
    quality: QualityPrediction | None = None,
    quality_weight: float = 1.0,
) -> LossTerms:
    """L_total = L_image (bootstrapped CE, every predicted frame) + dice_weight * sum over clips of L_clip
    (+ quality_weight * L_quality with the quality head).

    Args:
        logits: [B, K+1, T-1, H, W]; prob: [B, K, T-1, H, W] from :class:`PerClipUnroll`.
        masks: [B, T, K, H, W] ground truth; cls_gt: [B, T, H, W]; selector: [B, K].
        iteration: iteration within the stage (for the bootstrap schedule).
        quality: the unroll's quality-head scores; target = IoU of the binarised mask each scored value
            was encoded with (ground truth for frame 0, the prediction otherwise) against the ground truth.
    """
    target = masks[:, 1:].transpose(1, 2).float()  # [B, K, T-1, H, W]
    l_image = image_loss(logits, cls_gt[:, 1:], selector, schedule.fraction(iteration))
    l_clip = sum(clip_dice_loss(prob[:, :, s], target[:, :, s], selector) for s in clip_slices(clip_lengths))
    total = l_image + dice_weight * l_clip
    l_quality = None
    if quality is not None:
        with torch.no_grad():
            encoded = [masks[:, 0] if f == 0 else prob[:, :, f - 1] for f in quality.frames]  # [B, K, H, W] each
            iou = torch.stack([binary_iou(m, masks[:, f]) for m, f in zip(encoded, quality.frames)], dim=2)
        l_quality = quality_loss(quality.score, iou, selector)
        total = total + quality_weight * l_quality
        l_quality = l_quality.detach()
    return LossTerms(
        total, l_image.detach(), l_clip.detach(), mask_iou(prob[:, 0].detach(), target[:, 0]), l_quality
    )
