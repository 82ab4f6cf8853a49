"""Frame sampling for per-clip training, as pure functions of (iteration, rng).

A video training sample is ``1 + sum(clip_lengths)`` frame indices: the
reference frame (ground truth given to the network) followed by the clips in
processing order. Gaps are counted in *listed* frames; a dataset annotated
every 5th frame (YouTube-VOS train) divides the gaps by 5 first
(:func:`scaled_gap`), as STCN does with its ``max_skip``.

Definitions (our reading of PCVOS §4.1):

* intra-clip gap: the largest step between consecutive frames of one clip;
* inter-clip gap: the largest step from the reference frame to clip A's first
  frame and from clip A's last frame to clip B's first frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GapCurriculum:
    """Inter-clip gap over training: ``low`` -> ``high`` -> back to ``low``.

    The paper says only "gradually increased from 5 to 15 and annealed back to
    5". Our timing (fractions of the stage's iterations) follows STCN's
    max-skip curriculum boundaries: ``low`` until ``rise_start``, a linear
    (rounded) rise to ``high`` at ``rise_end``, ``high`` until ``anneal_start``,
    a linear fall to ``low`` at ``anneal_end``, then ``low``.
    """

    low: int = 5
    high: int = 15
    rise_start: float = 0.1
    rise_end: float = 0.4
    anneal_start: float = 0.8
    anneal_end: float = 0.9

    def __call__(self, iteration: int, total: int) -> int:
        """Inter-clip gap at ``iteration`` of a ``total``-iteration stage."""
        f = iteration / max(1, total)
        span = self.high - self.low
        if f < self.rise_start:
            return self.low
        if f < self.rise_end:
            return int(round(self.low + span * (f - self.rise_start) / (self.rise_end - self.rise_start)))
        if f < self.anneal_start:
            return self.high
        if f < self.anneal_end:
            return int(round(self.high - span * (f - self.anneal_start) / (self.anneal_end - self.anneal_start)))
        return self.low


#: Curricula per stage: stage 1 (BL30K) anneals earlier, as STCN's BL30K schedule (80 % vs 90 %).
CURRICULA = {
    1: GapCurriculum(anneal_start=0.7, anneal_end=0.8),
    2: GapCurriculum(),
    3: GapCurriculum(),
}


def scaled_gap(gap: int, stride: int) -> int:
    """A gap in original frames -> a gap in listed frames of a dataset annotated every ``stride`` frames (>= 1)."""
    return max(1, gap // stride)


def draw_gaps(
    rng: np.random.Generator, clip_lengths: Sequence[int], inter_gap: int, intra_gap: int, available: int
) -> list[int]:
    """Steps between consecutive sampled frames, each >= 1 and within its bound, total <= ``available``.

    The bounds are inter_gap for a step into a new clip and intra_gap inside a
    clip. If the video is too short the largest steps shrink one at a time;
    only a video with fewer frames than the sample needs gets 0-steps (a
    repeated frame).

    Returns:
        ``sum(clip_lengths)`` non-negative ints.
    """
    bounds = []
    for length in clip_lengths:
        bounds.append(max(1, inter_gap))
        bounds.extend([max(1, intra_gap)] * (length - 1))
    gaps = [int(rng.integers(1, b + 1)) for b in bounds]
    budget = max(0, available)
    while sum(gaps) > budget:
        gaps[int(np.argmax(gaps))] -= 1
    return gaps


def sample_clip_frames(
    num_frames: int,
    rng: np.random.Generator,
    clip_lengths: Sequence[int] = (3, 3),
    inter_gap: int = 5,
    intra_gap: int = 5,
    reverse_p: float = 0.5,
) -> list[int]:
    """Indices of one per-clip training sample: [reference, clip A..., clip B...].

    The indices are increasing in time, or (with probability ``reverse_p``)
    decreasing, so the video is also learnt backwards as in STCN. Either way
    step i of the returned order obeys the bound of gap i (inter- or intra-clip).

    Args:
        num_frames: listed frames of the video (>= 1).
        rng: the sample's generator (deterministic per sample).

    Returns:
        ``1 + sum(clip_lengths)`` ints in [0, num_frames).
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    gaps = draw_gaps(rng, clip_lengths, inter_gap, intra_gap, num_frames - 1)
    start = int(rng.integers(0, num_frames - sum(gaps)))
    offsets = np.cumsum([0, *gaps]).astype(np.int64)
    if rng.random() < reverse_p:  # walk backwards from the end; the gap bounds keep their roles
        return (start + offsets[-1] - offsets).tolist()
    return (start + offsets).tolist()


# --------------------------------------------------------------------------- per-sample seeding


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of global sample ``index``: a pure function of (seed, index).

    Training draws sample ``iteration * global_batch + j`` for slot j of an
    iteration's global batch, so the data of every iteration is fixed by the
    seed alone -- independent of worker count, world size and resumption.
    """
    return np.random.default_rng([int(seed), int(index)])


def torch_seed(rng: np.random.Generator) -> int:
    """A torch seed drawn from ``rng`` (for torchvision transforms inside ``torch.random.fork_rng``)."""
    return int(rng.integers(0, 2**62))


def global_sample_indices(iteration: int, global_batch: int, rank: int, world: int, accum: int) -> list[list[int]]:
    """Global sample indices of one iteration for one rank, grouped by micro-step.

    The global batch of ``iteration`` is ``[iteration * G, (iteration + 1) * G)``;
    micro-step a of rank r takes the slice starting at ``a * world * m + r * m``
    with micro-batch ``m = G / (world * accum)``. Any (world, accum) split of
    the same G therefore trains on the same samples.
    """
    micro = global_batch // (world * accum)
    base = iteration * global_batch
    return [
        [base + a * world * micro + rank * micro + j for j in range(micro)] for a in range(accum)
    ]
