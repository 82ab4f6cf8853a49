"""Unit tests of the pure pieces: schedule, aggregation, windows, affinity, padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inference.padding import compute_pad, pad, unpad
from inference.schedule import Clip, ClipScheduler, LabelStep, plan_schedule
from model.aggregate import aggregate
from model.memory import l2_affinity, softmax_readout
from model.refine import (
    effective_window,
    relative_position_index,
    shift_attention_mask,
    window_partition,
    window_reverse,
)
from tests.conftest import PARITY_CASES, load_expected
from tests.reference_core import gather_readout, topk_weights


# -- schedule ------------------------------------------------------------------------------
def clips(steps):
    return [(s.frames, s.memory_frames) for s in steps if isinstance(s, Clip)]


def test_schedule_predict_all_memory_every_full_clip():
    steps = plan_schedule(12, [0], 5)
    assert steps[0] == LabelStep(0)
    assert clips(steps) == [((1, 2, 3, 4, 5), (5,)), ((6, 7, 8, 9, 10), (10,)), ((11,), ())]


def test_schedule_restarts_at_label_frames_and_predicts_them_first():
    steps = plan_schedule(14, [0, 4], 10)
    assert steps == [
        LabelStep(0),
        Clip((1, 2, 3, 4), ()),
        LabelStep(4),
        Clip((5, 6, 7, 8, 9, 10, 11, 12, 13), ()),
    ]


def test_schedule_label_on_a_memory_frame_is_memorised_twice():
    steps = plan_schedule(8, [0, 3], 3)
    assert steps[:3] == [LabelStep(0), Clip((1, 2, 3), (3,)), LabelStep(3)]


def test_schedule_required_frames_count_raw_distance():
    required = range(0, 41, 5)
    steps = plan_schedule(41, [0], 10, required_frames=required)
    # clips of 10 required frames; memory when >= 10 raw frames after the last memory frame
    assert clips(steps) == [((5, 10, 15, 20, 25, 30, 35, 40), (10, 20, 30, 40))]
    steps = plan_schedule(41, [0], 2, required_frames=required)
    assert clips(steps)[0] == ((5, 10), (5, 10))


def test_schedule_skips_frames_before_the_first_label_and_checks_order():
    assert plan_schedule(5, [2], 5) == [LabelStep(2), Clip((3, 4), ())]
    scheduler = ClipScheduler(5)
    scheduler.push(3)
    with pytest.raises(ValueError, match="increasing order"):
        scheduler.push(3)
    with pytest.raises(ValueError, match="clip length"):
        ClipScheduler(0)


@pytest.mark.parametrize("case", PARITY_CASES)
def test_schedule_matches_golden_clips(case):
    golden = load_expected(case)
    import json

    config = json.loads(str(golden["config_json"]))
    steps = plan_schedule(len(golden["pred"]), golden["label_frames"].tolist(), config["clip_length"])
    expected = [tuple(int(v) for v in row if v >= 0) for row in golden["clips"]]
    assert [c[0] for c in clips(steps)] == expected


# -- aggregation ---------------------------------------------------------------------------
def test_aggregate_by_hand():
    prob = torch.tensor([[0.5], [0.0]])  # two objects at one pixel
    out = aggregate(prob, dim=0)[:, 0]
    # p0 = 0.5, logits: bg 0, obj1 0, obj2 ln(1e-7 / (1 - 1e-7))
    e = 1e-7 / (1 - 1e-7)
    expected = torch.tensor([1.0, 1.0, e]) / (2 + e)
    assert torch.allclose(out, expected, atol=1e-7)
    x = torch.rand(3, 4, 5)
    agg = aggregate(x, dim=0)
    assert torch.allclose(agg.sum(0), torch.ones(4, 5), atol=1e-6)
    assert not torch.allclose(aggregate(agg[1:], dim=0), agg, atol=1e-3)  # not idempotent


# -- refinement windows --------------------------------------------------------------------
def test_window_partition_round_trip():
    x = torch.randn(2, 4, 14, 21, 3)
    windows = window_partition(x, (2, 7, 7))
    assert windows.shape == (2 * 2 * 2 * 3, 98, 3)
    assert torch.equal(window_reverse(windows, (2, 7, 7), 2, (4, 14, 21)), x)
    # token order inside a window is d, h, w
    assert torch.equal(windows[0, 1], x[0, 0, 0, 1])
    assert torch.equal(windows[0, 49], x[0, 1, 0, 0])


def test_shift_mask_separates_regions_brought_together_by_the_roll():
    padded, window, shift = (4, 14, 14), (2, 7, 7), (1, 3, 3)
    mask = shift_attention_mask(padded, window, shift, torch.device("cpu"))
    # brute force: label positions by their origin region before the roll
    d, h, w = torch.meshgrid(*[torch.arange(s) for s in padded], indexing="ij")

    def region(coord, length, win, sft):
        return (coord >= length - win).long() + (coord >= length - sft).long()

    lab = region(d, 4, 2, 1) * 9 + region(h, 14, 7, 3) * 3 + region(w, 14, 7, 3)
    lab = window_partition(lab[None, ..., None].float(), window)[..., 0]
    expected = (lab[:, :, None] != lab[:, None, :]).float() * -100
    assert torch.equal(mask, expected)
    assert mask[0].abs().sum() == 0 and mask[-1].abs().sum() > 0


def test_effective_window_and_relative_index():
    assert effective_window((2, 30, 54), (2, 7, 7), (1, 3, 3)) == ((2, 7, 7), (0, 3, 3))
    assert effective_window((1, 5, 9), (2, 7, 7), (1, 3, 3)) == ((1, 5, 7), (0, 0, 3))
    index = relative_position_index((2, 7, 7))
    assert index.shape == (98, 98)
    i, j = 60, 5  # token (d, y, x): 60 -> (1, 1, 4), 5 -> (0, 0, 5)
    assert index[i, j] == (1 - 0 + 1) * 169 + (1 - 0 + 6) * 13 + (4 - 5 + 6)
    assert index.max() == 506 and index.min() == 0


# -- memory readout ------------------------------------------------------------------------
def test_affinity_and_topk_readout_against_brute_force():
    g = torch.Generator().manual_seed(0)
    mk, qk = torch.randn(64, 50, generator=g), torch.randn(64, 30, generator=g)
    mv = torch.randn(2, 8, 50, generator=g)
    aff = l2_affinity(mk, qk)
    brute = torch.tensor([[(2 * mk[:, n] @ qk[:, j] - mk[:, n] @ mk[:, n]).item() for j in range(30)]
                          for n in range(50)]) / 8
    assert torch.allclose(aff, brute, atol=1e-4)
    # softmax over memory equals softmax of -||m - q||^2 / 8 (the dropped term is constant per query)
    dist = -((mk[:, :, None] - qk[:, None, :]) ** 2).sum(0) / 8
    assert torch.allclose(torch.softmax(aff, 0), torch.softmax(dist, 0), atol=1e-5)
    weights, indices = topk_weights(aff, 20)
    dense = torch.zeros_like(aff).scatter_(0, indices, weights)
    assert torch.allclose(gather_readout(mv, weights, indices), mv @ dense, atol=1e-5)
    full = softmax_readout(mk[None], mv[None], qk[None])[0]
    assert torch.allclose(full, mv @ torch.softmax(aff, 0), atol=1e-5)


def test_topk_softmax_does_not_overflow_on_large_keys():
    mk = torch.randn(64, 40) * 30
    weights, _ = topk_weights(l2_affinity(mk, mk[:, :5] * 2), 20)
    assert torch.isfinite(weights).all()
    naive = torch.topk(l2_affinity(mk, mk[:, :5] * 2), 20, dim=0).values.exp()
    assert not torch.isfinite(naive / naive.sum(0)).all()  # what the official code computes


# -- padding -------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(128, 224), (70, 90), (481, 853), (17, 33)])
def test_padding_splits_as_released(h, w):
    left, right, top, bottom = compute_pad(h, w)
    assert (h + top + bottom) % 16 == 0 and (w + left + right) % 16 == 0
    assert top == (top + bottom) // 2 and left == (left + right) // 2
    x = torch.randn(2, h, w)
    assert torch.equal(unpad(pad(x, (left, right, top, bottom)), (left, right, top, bottom)), x)
    assert math.isclose(float(pad(x, (left, right, top, bottom)).abs().sum()), float(x.abs().sum()), rel_tol=1e-6)


def test_padding_example():
    assert compute_pad(481, 853) == (5, 6, 7, 8)
    assert np.array_equal(compute_pad(128, 224), (0, 0, 0, 0))


def test_progress_stays_lazy_and_binary_masks_are_one_object(tmp_path):
    from dataset.frames import VideoSource, label_values
    from util.palette import write_index_png
    from util.progress import progress

    consumed = []

    def frames():
        for i in range(3):
            consumed.append(i)
            yield i

    it = progress(frames(), "frames")
    assert next(it) == 0 and consumed == [0]  # not materialised up front
    grey = np.zeros((8, 8), np.uint8)
    grey[2:5, 2:5] = 255
    write_index_png(tmp_path / "a.png", grey)
    assert label_values(VideoSource("v", [], {0: tmp_path / "a.png"})) == [255]
    grey[0, 0] = 3
    write_index_png(tmp_path / "b.png", grey)
    assert label_values(VideoSource("v", [], {0: tmp_path / "b.png"})) == [3]
