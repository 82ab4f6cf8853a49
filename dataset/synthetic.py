"""Deterministic synthetic videos for end-to-end tests of every VOS driver (see docs/synthetic_data.md).

One name for the three modules that make them, so ``from dataset import synthetic as syn`` reaches
everything:

* ``dataset.synthetic_scene`` -- ``SyntheticConfig`` (knobs of one video), the scene model
  (``Sprite``, ``Track``, ``SceneObject``, ``Scene``), ``build_scene(config) -> Scene`` (sprites,
  background and per-frame trajectories: O(T) floats, no frames) and
  ``render_frame(scene, t) -> (frame uint8 [H,W,3] RGB, mask uint8 [H,W])``;
* ``dataset.synthetic_splits`` -- ``iter_frames(config)`` (a generator of ``(frame, mask)``),
  ``generate_video(config, name) -> SyntheticVideo`` (materialised arrays), ``VideoSpec(name, config)``
  (a lazy video that every writer accepts and streams to disk), ``make_split(name, n_videos, config,
  seed)`` (several varied ``VideoSpec``) and the motion measures ``relative_motion`` / ``scene_motion``;
* ``dataset.synthetic_layouts`` -- the writers ``write_generic``, ``write_davis``, ``write_davis2016``,
  ``write_youtube``, ``write_youtube_train``, ``write_static``, ``write_mp4``, ``write_first_mask``.
  Each stages a video's folders in hidden temp folders and renames them into place when the video is
  complete.

Everything is deterministic from ``SyntheticConfig.seed`` (numpy Generator). Mask ids are 1..K in the
order objects first appear; 0 is background and distractors. Objects that first appear mid-video do so
at a multiple of 5 (the YouTube-VOS annotation stride) and are at least 60 % visible there.
"""

from dataset.synthetic_layouts import (
    WriteStats,
    noncontiguous_ids,
    write_davis,
    write_davis2016,
    write_first_mask,
    write_generic,
    write_mp4,
    write_static,
    write_youtube,
    write_youtube_train,
)
from dataset.synthetic_scene import (
    TEXTURES,
    YOUTUBE_STRIDE,
    Scene,
    SceneObject,
    Sprite,
    SyntheticConfig,
    Track,
    build_scene,
    render_frame,
)
from dataset.synthetic_splits import (
    SyntheticVideo,
    Video,
    VideoSpec,
    generate_video,
    iter_frames,
    make_split,
    relative_motion,
    scene_motion,
    stream_video,
)

__all__ = [
    "TEXTURES",
    "YOUTUBE_STRIDE",
    "Scene",
    "SceneObject",
    "Sprite",
    "SyntheticConfig",
    "SyntheticVideo",
    "Track",
    "Video",
    "VideoSpec",
    "WriteStats",
    "build_scene",
    "generate_video",
    "iter_frames",
    "make_split",
    "noncontiguous_ids",
    "relative_motion",
    "render_frame",
    "scene_motion",
    "stream_video",
    "write_davis",
    "write_davis2016",
    "write_first_mask",
    "write_generic",
    "write_mp4",
    "write_static",
    "write_youtube",
    "write_youtube_train",
]
