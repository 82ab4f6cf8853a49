"""Synthetic videos and splits: materialised or lazy videos, their motion, and varied splits of them.

A :class:`SyntheticVideo` holds its arrays; a :class:`VideoSpec` is rendered
frame by frame whenever it is read (a 3,000-frame video never sits in memory).
``make_split`` draws several varied specs (see docs/synthetic_data.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from dataset.synthetic_scene import YOUTUBE_STRIDE, SyntheticConfig, build_scene, render_frame

# --------------------------------------------------------------------------- videos


@dataclass
class SyntheticVideo:
    """A materialised video.

    Attributes:
        name: folder name used by the writers.
        frames: uint8 [T, H, W, 3] RGB.
        masks: uint8 [T, H, W] ids (0 background, 1..K).
        first_frame: id -> index of the frame where it first appears.
    """

    name: str
    frames: np.ndarray
    masks: np.ndarray
    first_frame: dict[int, int]
    config: SyntheticConfig | None = None


@dataclass(frozen=True)
class VideoSpec:
    """A lazily rendered video: writers stream it frame by frame."""

    name: str
    config: SyntheticConfig = field(default_factory=SyntheticConfig)


def iter_frames(config: SyntheticConfig) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (frame uint8 [H,W,3] RGB, mask uint8 [H,W]) for t = 0..T-1, one at a time."""
    scene = build_scene(config)
    for t in range(config.num_frames):
        yield render_frame(scene, t)


def generate_video(config: SyntheticConfig, name: str = "syn") -> SyntheticVideo:
    """Render the whole video into arrays (use iter_frames / VideoSpec for long ones)."""
    scene = build_scene(config)
    frames = np.empty((config.num_frames, config.height, config.width, 3), dtype=np.uint8)
    masks = np.empty((config.num_frames, config.height, config.width), dtype=np.uint8)
    for t in range(config.num_frames):
        frames[t], masks[t] = render_frame(scene, t)
    return SyntheticVideo(name, frames, masks, scene.first_frame, config)


Video = SyntheticVideo | VideoSpec


def stream_video(video: Video) -> tuple[dict[int, int], int, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """(first_frame, T, iterator of (frame, mask)) for either kind of video."""
    if isinstance(video, SyntheticVideo):
        return dict(video.first_frame), len(video.frames), zip(video.frames, video.masks)
    scene = build_scene(video.config)
    frames = (render_frame(scene, t) for t in range(scene.num_frames))
    return scene.first_frame, scene.num_frames, frames


def relative_motion(masks: Iterable[np.ndarray]) -> dict[int, float]:
    """How far each target travels, in units of its own size, from a video's label maps.

    For every id: the largest distance of its mask centroid from the centroid
    where it first appears, divided by its equivalent diameter there
    (2 sqrt(area / pi)). >= 1 means the object moved by at least its own size.
    """
    first: dict[int, tuple[np.ndarray, float]] = {}
    reach: dict[int, float] = {}
    for mask in masks:
        for label in np.unique(mask)[1:].tolist():
            ys, xs = np.nonzero(mask == label)
            centre = np.array([xs.mean(), ys.mean()])
            if label not in first:
                first[label] = (centre, 2.0 * math.sqrt(len(xs) / math.pi))
                reach[label] = 0.0
            reach[label] = max(reach[label], float(np.linalg.norm(centre - first[label][0])))
    return {label: reach[label] / first[label][1] for label in sorted(first)}


def scene_motion(config: SyntheticConfig) -> dict[int, float]:
    """:func:`relative_motion` of the targets of the video a config renders."""
    scene = build_scene(config)
    return relative_motion(render_frame(scene, t)[1] for t in range(scene.num_frames))


def make_split(
    name: str,
    n_videos: int,
    config: SyntheticConfig | None = None,
    seed: int = 0,
    allow_late: bool = True,
    min_motion: float = 0.0,
) -> list[VideoSpec]:
    """Several varied lazy videos named f'{name}_{i:03d}'.

    Each video gets its own seed, 1..config.num_objects targets and a random
    texture family mix. With allow_late, config.late_objects > 0 gives every
    video that many late objects (adding targets if needed); otherwise every
    third video (if T > 5) gets one late object. With min_motion > 0, only
    videos whose every target moves by at least min_motion times its own size
    (:func:`scene_motion`) are kept, drawing further candidates until there
    are n_videos (renamed in order).
    """
    base = config or SyntheticConfig(num_objects=3)
    specs: list[VideoSpec] = []
    index = -1
    while len(specs) < n_videos:
        index += 1
        if min_motion > 0 and index >= 20 * max(1, n_videos):
            raise ValueError(f"make_split: fewer than {n_videos} of {index} videos move by >= {min_motion} "
                             "object sizes; raise motion_speed or lower min_motion")
        rng = np.random.default_rng([seed, index])
        objects = int(rng.integers(1, base.num_objects + 1))
        late = 0
        if allow_late and base.num_frames > YOUTUBE_STRIDE:
            late = base.late_objects if base.late_objects > 0 else int(index % 3 == 2)
            objects = max(objects, late + 1)
        video_config = replace(
            base, num_objects=objects, late_objects=late, seed=int(rng.integers(2**31 - 1))
        )
        if min_motion > 0 and min(scene_motion(video_config).values()) < min_motion:
            continue
        specs.append(VideoSpec(f"{name}_{len(specs):03d}", video_config))
    return specs
