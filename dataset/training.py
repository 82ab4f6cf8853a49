"""The training set of a stage and the order its samples are drawn in (see docs/training.md).

``train.py`` hands :func:`training_loader` to the trainer (``model.trainer``),
which calls it once it is ready to train; the trainer itself knows no data
layout. Exact resumption rests on two facts: every sample is a pure function of
(seed, global sample index), and iteration ``i`` trains on samples
``[i G, (i + 1) G)`` (:func:`dataset.sampling.global_sample_indices`), so the
loader of iterations ``[start, stop)`` needs no saved state.

``config`` is the trainer's resolved ``TrainConfig`` (its stage, folders, crop,
clip lengths, gaps, batch, workers and seed are read here).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

from torch.utils.data import DataLoader, Dataset, Sampler

from dataset.sampling import CURRICULA, GapCurriculum, global_sample_indices
from dataset.static_dataset import StaticDataset
from dataset.video_dataset import VideoDataset, bl30k_source, davis_source, youtube_source


class IterationBatchSampler(Sampler[list[int]]):
    """Micro-batches of global sample indices for iterations [start, stop) of one rank.

    Replaces DistributedSampler: the rank split and the order are computed, not
    shuffled, so the position is just the iteration number.
    """

    def __init__(self, start: int, stop: int, global_batch: int, rank: int, world: int, accum: int) -> None:
        self.start, self.stop = start, stop
        self.global_batch, self.rank, self.world, self.accum = global_batch, rank, world, accum

    def __iter__(self) -> Iterator[list[int]]:
        for it in range(self.start, self.stop):
            yield from global_sample_indices(it, self.global_batch, self.rank, self.world, self.accum)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.accum


def build_dataset(config) -> Dataset:
    """The stage's dataset; raises DatasetNotFoundError naming a missing folder."""
    if config.stage == 0:
        return StaticDataset(config.static_root, config.crop_size, 1 + sum(config.clip_lengths), config.seed)
    base = CURRICULA[config.stage]
    curriculum = dataclasses.replace(base, low=config.gap_low, high=config.gap_high)
    gap = functools.partial(_gap_at, curriculum=curriculum, total=config.iterations)
    if config.stage == 1:
        sources, min_scale, strict = [bl30k_source(config.bl30k_root)], 0.25, True
    else:
        sources, min_scale, strict = [davis_source(config.davis_root), youtube_source(config.youtube_root)], 0.36, False
    if config.min_scale is not None:
        min_scale = config.min_scale
    return VideoDataset(
        sources, config.crop_size, config.clip_lengths, gap, config.intra_gap,
        config.batch_size, min_scale, strict, config.seed, config.max_scale,
    )


def _gap_at(iteration: int, curriculum: GapCurriculum, total: int) -> int:
    return curriculum(iteration, total)


def training_loader(config, start: int, stop: int, rank: int, world: int, pin_memory: bool) -> DataLoader:
    """Micro-batches of the stage's dataset for iterations [start, stop) of process ``rank`` of ``world``."""
    dataset = build_dataset(config)
    sampler = IterationBatchSampler(start, stop, config.batch_size, rank, world, config.accum_steps)
    workers = config.num_workers
    return DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
        persistent_workers=False, prefetch_factor=2 if workers else None,
    )
