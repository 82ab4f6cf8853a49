"""Overlay videos of a benchmark's results: one mp4 per video, drawn from the masks on disk.

``--overlay`` on a benchmark driver (and on the sweep) writes ``overlays/<video>.mp4`` beside
the video mask folders (for YouTube-VOS, whose masks live in ``<output>/Annotations/``,
beside ``Annotations/``): every frame that has a mask, with the objects drawn by
``util.pictures.overlay``. The videos are drawn after the benchmark's videos are segmented,
from the committed masks, so they never count in the reported speed, and each mp4 appears
only when complete (``util.video_io.OverlayWriter``: temporary name, then rename).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dataset.frames import VideoSource, read_rgb
from util.paths import check_inside
from util.pictures import overlay
from util.progress import progress
from util.video_io import OverlayWriter

#: name of the folder that holds the overlay videos
OVERLAY_FOLDER = "overlays"
#: frame rate of an overlay video whose every frame has a mask (DAVIS's 24 fps); a video with masks on
#: every n-th frame only (YouTube-VOS) plays at 1/n of it, so that it still runs at about real time
OVERLAY_FPS = 24.0


def overlay_root(mask_root: Path) -> Path:
    """The folder of a benchmark's overlay videos (see the module docstring)."""
    mask_root = Path(mask_root)
    base = mask_root.parent if mask_root.name == "Annotations" else mask_root
    return base / OVERLAY_FOLDER


def overlay_path(mask_root: Path, source: VideoSource) -> Path:
    """``<overlay root>/<video>.mp4``."""
    return overlay_root(mask_root) / f"{source.name}.mp4"


def check_overlay_names(mask_root: Path, sources: Iterable[VideoSource]) -> None:
    """Before any work: the overlay folder must not be one of the video mask folders."""
    root = overlay_root(mask_root)
    for source in sources:
        if Path(mask_root) / source.name == root:
            raise ValueError(
                f"--overlay: video {source.name!r} would share its folder {root} with the overlay videos; "
                "rename the video, or run without --overlay"
            )


def read_result_mask(path: Path) -> np.ndarray:
    """uint8 [H, W] object ids of a written result PNG (palette indices; a 0/255 greyscale mask is object 1)."""
    with Image.open(path) as image:
        if image.mode == "P":
            return np.array(image)
        grey = np.array(image.convert("L"))
    return (grey > 0).astype(np.uint8) if set(np.unique(grey)) <= {0, 255} else grey


def result_palette(path: Path) -> np.ndarray | None:
    """[N, 3] palette of a written palette PNG, or None (DAVIS colours)."""
    with Image.open(path) as image:
        raw = image.getpalette() if image.mode == "P" else None
    return None if raw is None else np.asarray(raw, dtype=np.uint8).reshape(-1, 3)


def write_video_overlay(mask_root: Path, source: VideoSource) -> Path | None:
    """Draw ``<overlay root>/<video>.mp4`` from the video's committed masks; None when it has none."""
    folder = Path(mask_root) / source.name
    pairs = [(frame, folder / f"{frame.stem}.png") for frame in source.frames]
    pairs = [(frame, mask) for frame, mask in pairs if mask.is_file()]
    if not pairs:
        return None
    target = check_inside(Path(mask_root).parent, overlay_path(mask_root, source), "overlay video")
    palette = result_palette(pairs[0][1])
    fps = max(1.0, OVERLAY_FPS * len(pairs) / len(source.frames))
    first = read_rgb(pairs[0][0])
    size = first.shape[:2]
    with OverlayWriter(target, fps, size) as video:
        for i, (frame, mask) in enumerate(pairs):
            rgb = first if i == 0 else read_rgb(frame)
            if rgb.shape[:2] != size:
                rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            video.write(overlay(rgb, read_result_mask(mask), palette))
    return target


def write_overlays(mask_root: Path, sources: list[VideoSource], redraw: set[str],
                   log: Callable[[str], None] = print) -> int:
    """Overlay videos for ``sources``: redrawn for the videos named in ``redraw`` (segmented by this run),
    drawn for the others only where missing. Returns how many were written."""
    written = 0
    for source in progress(sources, "overlays"):
        if source.name not in redraw and overlay_path(mask_root, source).is_file():
            continue
        if write_video_overlay(mask_root, source) is not None:
            written += 1
    if written:
        log(f"overlays: {written} videos in {overlay_root(mask_root)}")
    return written
