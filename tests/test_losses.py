"""Losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from model.losses import BootstrapSchedule, bootstrapped_ce, clip_dice_loss, image_loss, mask_iou, soft_dice


def _two_class_logits(z: list[float]) -> torch.Tensor:
    """[2, 1, len(z)] logits (0, z) per pixel: CE against class 1 is log(1 + e^-z)."""
    z = torch.tensor(z)
    return torch.stack([torch.zeros_like(z), z]).view(2, 1, -1)


def test_plain_ce_matches_hand_values():
    z = [0.0, math.log(3.0), -math.log(3.0), 2.0]
    expected = [math.log(2.0), math.log(4 / 3), math.log(4.0), math.log(1 + math.exp(-2.0))]
    target = torch.ones(1, 4, dtype=torch.long)
    got = bootstrapped_ce(_two_class_logits(z), target, 1.0)
    assert got.item() == pytest.approx(sum(expected) / 4, rel=1e-6)


def test_bootstrapped_ce_keeps_hardest_fraction():
    z = [0.0, math.log(3.0), -math.log(3.0), 2.0]
    target = torch.ones(1, 4, dtype=torch.long)
    # p = 0.5 of 4 pixels -> the two largest CE values: log 4 and log 2.
    assert bootstrapped_ce(_two_class_logits(z), target, 0.5).item() == pytest.approx(
        (math.log(4.0) + math.log(2.0)) / 2, rel=1e-6
    )
    # int truncation: 0.3 * 4 = 1.2 -> 1 pixel
    assert bootstrapped_ce(_two_class_logits(z), target, 0.3).item() == pytest.approx(math.log(4.0), rel=1e-6)


def test_bootstrap_schedule_matches_stcn():
    s = BootstrapSchedule()
    assert s.fraction(0) == 1.0 and s.fraction(19_999) == 1.0
    assert s.fraction(20_000) == pytest.approx(1.0)
    assert s.fraction(45_000) == pytest.approx(0.15 + 0.85 * 0.5)
    assert s.fraction(70_000) == pytest.approx(0.15) and s.fraction(500_000) == 0.15


def test_soft_dice_hand_value():
    pred = torch.tensor([1.0, 0.5, 0.0, 0.0])
    target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # smooth 1: (2 * 1.5 + 1) / (1.5 + 2 + 1)
    assert soft_dice(pred, target).item() == pytest.approx(4 / 4.5)
    assert soft_dice(pred, target, smooth=0.0).item() == pytest.approx(3 / 3.5)


def test_clip_dice_is_over_the_whole_clip_and_respects_selector():
    torch.manual_seed(0)
    prob = torch.rand(1, 2, 3, 4, 4)
    masks = (torch.rand(1, 2, 3, 4, 4) > 0.5).float()
    selector = torch.tensor([[1.0, 0.0]])
    pooled = 1 - soft_dice(prob[0, 0].flatten(), masks[0, 0].flatten())
    assert clip_dice_loss(prob, masks, selector).item() == pytest.approx(pooled.item(), rel=1e-6)
    per_frame = sum(1 - soft_dice(prob[0, 0, t].flatten(), masks[0, 0, t].flatten()) for t in range(3))
    assert clip_dice_loss(prob, masks, selector).item() != pytest.approx(per_frame.item() / 3, rel=1e-3)
    both = clip_dice_loss(prob, masks, torch.ones(1, 2)).item()
    second = 1 - soft_dice(prob[0, 1].flatten(), masks[0, 1].flatten()).item()
    assert both == pytest.approx(pooled.item() + second, rel=1e-6)  # sum over objects


def test_dice_with_empty_target_is_finite():
    empty = torch.zeros(2, 1, 3, 8, 8)
    assert clip_dice_loss(empty, empty, torch.ones(2, 1)).item() == pytest.approx(0.0)
    loss = clip_dice_loss(torch.full_like(empty, 0.5), empty, torch.ones(2, 1))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(1 - 1 / (96 + 1))


def test_image_loss_uses_two_classes_without_second_object():
    logits = torch.zeros(1, 3, 1, 1, 2)
    logits[0, 2] = 10.0  # a huge third-class logit must be ignored when selector[1] = 0
    target = torch.zeros(1, 1, 1, 2, dtype=torch.long)
    single = image_loss(logits, target, torch.tensor([[1.0, 0.0]]), 1.0)
    assert single.item() == pytest.approx(math.log(2.0))
    double = image_loss(logits, target, torch.tensor([[1.0, 1.0]]), 1.0)
    assert double.item() == pytest.approx(math.log(2 + math.exp(10.0)), rel=1e-6)


def test_image_loss_sums_frames_and_averages_batch():
    logits = torch.zeros(2, 2, 3, 1, 1)
    target = torch.zeros(2, 3, 1, 1, dtype=torch.long)
    assert image_loss(logits, target, torch.ones(2, 1), 1.0).item() == pytest.approx(3 * math.log(2.0))


def test_mask_iou():
    prob = torch.tensor([0.9, 0.8, 0.2, 0.6])
    gt = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert mask_iou(prob, gt).item() == pytest.approx(2 / 3)
    assert mask_iou(torch.zeros(4), torch.zeros(4)).item() == 1.0
