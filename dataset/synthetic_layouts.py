"""Writers of synthetic videos in the layouts the drivers read (DAVIS, YouTube-VOS, generic, static, mp4).

Each writer stages a video's folders in hidden temporary folders and renames
them into place when the video is complete (see docs/synthetic_data.md).
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dataset.synthetic_scene import YOUTUBE_STRIDE, SyntheticConfig, build_scene, render_frame
from dataset.synthetic_splits import Video, stream_video
from util.palette import write_index_png

# --------------------------------------------------------------------------- writing helpers


@dataclass
class WriteStats:
    """What a writer produced."""

    videos: int = 0
    images: int = 0
    masks: int = 0


class _Staging:
    """Write folders under hidden temp names; rename them into place on commit.

    Readers never see a half-written video folder; a crash leaves only
    dot-folders behind, which the next run replaces.
    """

    def __init__(self) -> None:
        self._pairs: list[tuple[Path, Path]] = []

    def folder(self, final: Path) -> Path:
        temp = final.parent / f".{final.name}.tmp{os.getpid()}"
        if temp.exists():
            shutil.rmtree(temp)
        temp.mkdir(parents=True)
        self._pairs.append((temp, final))
        return temp

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for temp, final in self._pairs:
            if exc_type is None:
                if final.exists():
                    shutil.rmtree(final)
                temp.rename(final)
            else:
                shutil.rmtree(temp, ignore_errors=True)


def _name(t: int) -> str:
    return f"{t:05d}"


def _write_jpg(path: Path, frame: np.ndarray) -> None:
    """RGB uint8 [H,W,3] -> JPEG (quality 90)."""
    if not cv2.imwrite(str(path), np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise OSError(f"cannot write {path}")


def _write_text(path: Path, text: str) -> None:
    """Atomic text write (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    temp.replace(path)


def _write_binary_png(path: Path, mask: np.ndarray) -> None:
    """Greyscale PNG, 255 where mask [H,W] > 0 (DAVIS-2016 / saliency convention)."""
    Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(path)


def _new_objects_mask(mask: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Copy of mask [H,W] keeping only `labels` (others -> 0)."""
    return np.where(np.isin(mask, labels), mask, 0).astype(np.uint8)


def _appearances(first_frame: dict[int, int]) -> dict[int, list[int]]:
    """Frame index -> ids that first appear there."""
    by_frame: dict[int, list[int]] = {}
    for label, frame in sorted(first_frame.items()):
        by_frame.setdefault(frame, []).append(label)
    return by_frame


def noncontiguous_ids(name: str, labels: Sequence[int]) -> dict[int, int]:
    """Deterministic map 1..K -> increasing ids with gaps (e.g. 1, 3, 4) per video name.

    The smallest id stays 1; with K >= 2 at least one gap is guaranteed so
    readers that assume contiguous ids fail the tests.
    """
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    gaps = rng.integers(1, 3, len(labels))
    gaps[0] = 1
    if len(labels) >= 2 and (gaps[1:] == 1).all():
        gaps[1] = 2
    ids = np.cumsum(gaps)
    return {int(label): int(new) for label, new in zip(sorted(labels), ids)}


def _remap(mask: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Apply an id map to mask [H,W] via a lookup table."""
    table = np.zeros(256, dtype=np.uint8)
    for old, new in mapping.items():
        table[old] = new
    return table[mask]


# --------------------------------------------------------------------------- writers


def write_generic(root: str | Path, videos: Iterable[Video]) -> WriteStats:
    """Generic folder layout (STCN eval_generic / YouTube semantics).

    root/JPEGImages/<video>/<t:05d>.jpg for every frame; root/Annotations/<video>/<t:05d>.png
    only at frames where some object first appears, holding only those objects (ids 1..K).
    """
    root, stats = Path(root), WriteStats()
    for video in videos:
        first_frame, _, frames = stream_video(video)
        appear = _appearances(first_frame)
        with _Staging() as staging:
            images = staging.folder(root / "JPEGImages" / video.name)
            annotations = staging.folder(root / "Annotations" / video.name)
            for t, (frame, mask) in enumerate(frames):
                _write_jpg(images / f"{_name(t)}.jpg", frame)
                stats.images += 1
                if t in appear:
                    write_index_png(annotations / f"{_name(t)}.png", _new_objects_mask(mask, appear[t]))
                    stats.masks += 1
        stats.videos += 1
    return stats


def write_davis(
    root: str | Path, videos: Iterable[Video], split: str = "val", allow_late: bool = False
) -> WriteStats:
    """DAVIS-2017 layout: root is the 'trainval' folder.

    Writes root/JPEGImages/480p/<seq>/%05d.jpg and root/Annotations/480p/<seq>/%05d.png for
    every frame (palette PNG, ids 1..K), root/ImageSets/2017/<split>.txt and
    root/ImageSets/2016/<split>.txt. The 2016 list names ALL sequences: DAVIS-2016 numbers
    in the STCN line are computed on this root with the objects merged (any id > 0 is
    foreground), see docs/synthetic_data.md. The folder is called 480p whatever the size.

    DAVIS needs every object in frame 0, so videos with late objects are refused unless
    allow_late (training data, where frames are sampled freely).
    """
    root = Path(root)
    stats, names = _write_davis_videos(root, videos, write_index_png, allow_late)
    listing = "".join(f"{n}\n" for n in names)
    _write_text(root / "ImageSets" / "2017" / f"{split}.txt", listing)
    _write_text(root / "ImageSets" / "2016" / f"{split}.txt", listing)
    return stats


def write_davis2016(root: str | Path, videos: Iterable[Video], split: str = "val") -> WriteStats:
    """DAVIS-2016 layout (root is the '2016' folder), single merged object.

    root/JPEGImages/480p/<seq>/%05d.jpg, root/Annotations/480p/<seq>/%05d.png as greyscale
    0/255 (all ids merged), root/ImageSets/2016/<split>.txt.
    """
    root = Path(root)
    stats, names = _write_davis_videos(root, videos, _write_binary_png, allow_late=True)
    _write_text(root / "ImageSets" / "2016" / f"{split}.txt", "".join(f"{n}\n" for n in names))
    return stats


def _write_davis_videos(
    root: Path, videos: Iterable[Video], write_mask: Callable[[Path, np.ndarray], None], allow_late: bool
) -> tuple[WriteStats, list[str]]:
    """root/JPEGImages/480p/<seq>/ and root/Annotations/480p/<seq>/ (masks by ``write_mask``) of every video,
    each staged and renamed into place when complete; returns the stats and the sequence names."""
    stats, names = WriteStats(), []
    for video in videos:
        first_frame, _, frames = stream_video(video)
        if not allow_late and any(first_frame.values()):
            raise ValueError(f"{video.name}: DAVIS needs every object in frame 0 (has late objects)")
        with _Staging() as staging:
            images = staging.folder(root / "JPEGImages" / "480p" / video.name)
            annotations = staging.folder(root / "Annotations" / "480p" / video.name)
            for t, (frame, mask) in enumerate(frames):
                _write_jpg(images / f"{_name(t)}.jpg", frame)
                write_mask(annotations / f"{_name(t)}.png", mask)
                stats.images += 1
                stats.masks += 1
        names.append(video.name)
        stats.videos += 1
    return stats, names


def write_youtube(
    root: str | Path,
    videos: Iterable[Video],
    split: str = "valid",
    ground_truth: bool = False,
    remap_ids: bool = True,
) -> WriteStats:
    """YouTube-VOS validation layout.

    * root/all_frames/<split>_all_frames/JPEGImages/<vid>/<t:05d>.jpg -- every frame.
    * root/<split>/JPEGImages/<vid>/<t:05d>.jpg -- every 5th frame (original indices).
    * root/<split>/Annotations/<vid>/<t:05d>.png -- only at first-appearance frames
      (multiples of 5), holding only the objects that appear there.
    * root/<split>/meta.json -- {"videos": {vid: {"objects": {"<id>": {"category":
      "synthetic", "frames": [every-5th names from first appearance to the end]}}}}}.
    * with ground_truth: root/<split>_gt/Annotations/<vid>/<t:05d>.png, every 5th frame,
      all objects, for scoring.

    With remap_ids, ids are made non-contiguous per video (see noncontiguous_ids).
    """
    root, stats = Path(root), WriteStats()
    meta: dict[str, dict] = {"videos": {}}
    for video in videos:
        first_frame, num_frames, frames = stream_video(video)
        late = [f for f in first_frame.values() if f % YOUTUBE_STRIDE]
        if late:
            raise ValueError(f"{video.name}: first appearances {late} are not multiples of {YOUTUBE_STRIDE}")
        labels = list(first_frame)
        mapping = noncontiguous_ids(video.name, labels) if remap_ids else {k: k for k in labels}
        appear = _appearances(first_frame)
        with _Staging() as staging:
            all_root = root / "all_frames" / f"{split}_all_frames"
            all_frames = staging.folder(all_root / "JPEGImages" / video.name)
            sparse = staging.folder(root / split / "JPEGImages" / video.name)
            annotations = staging.folder(root / split / "Annotations" / video.name)
            gt = staging.folder(root / f"{split}_gt" / "Annotations" / video.name) if ground_truth else None
            for t, (frame, mask) in enumerate(frames):
                path = all_frames / f"{_name(t)}.jpg"
                _write_jpg(path, frame)
                stats.images += 1
                if t % YOUTUBE_STRIDE:
                    continue
                shutil.copyfile(path, sparse / path.name)  # identical bytes, as in the release
                if t in appear:
                    new = _remap(_new_objects_mask(mask, appear[t]), mapping)
                    write_index_png(annotations / f"{_name(t)}.png", new)
                    stats.masks += 1
                if gt is not None:
                    write_index_png(gt / f"{_name(t)}.png", _remap(mask, mapping))
        meta["videos"][video.name] = {
            "objects": {
                str(mapping[label]): {
                    "category": "synthetic",
                    "frames": [_name(t) for t in range(start, num_frames, YOUTUBE_STRIDE)],
                }
                for label, start in sorted(first_frame.items())
            }
        }
        stats.videos += 1
    _write_text(root / split / "meta.json", json.dumps(meta, indent=1, sort_keys=True))
    return stats


def write_youtube_train(
    root: str | Path, videos: Sequence[Video], davis_root: str | Path | None = None
) -> WriteStats:
    """Training layout STCN reads: root/train_480p/{JPEGImages,Annotations}/<vid>/.

    Every 5th frame (original indices) gets a JPEG and a full mask (all objects, ids 1..K).
    With davis_root, the same videos are also written there with write_davis(split='train',
    allow_late=True) -- the DAVIS-2017 'trainval' folder.
    """
    root, stats = Path(root), WriteStats()
    for video in videos:
        _, _, frames = stream_video(video)
        with _Staging() as staging:
            images = staging.folder(root / "train_480p" / "JPEGImages" / video.name)
            annotations = staging.folder(root / "train_480p" / "Annotations" / video.name)
            for t, (frame, mask) in enumerate(frames):
                if t % YOUTUBE_STRIDE:
                    continue
                _write_jpg(images / f"{_name(t)}.jpg", frame)
                write_index_png(annotations / f"{_name(t)}.png", mask)
                stats.images += 1
                stats.masks += 1
        stats.videos += 1
    if davis_root is not None:
        extra = write_davis(davis_root, videos, split="train", allow_late=True)
        stats.images += extra.images
        stats.masks += extra.masks
    return stats


def write_static(
    root: str | Path, n_images: int, seed: int = 0, size: tuple[int, int] = (240, 320)
) -> WriteStats:
    """Static-image pre-training layout: root/DUTS-TR/<name>.jpg + <name>.png.

    One salient textured object on a textured background per image; the PNG is
    greyscale 0/255. Names are syn_static_<i:05d>.
    """
    root, stats = Path(root), WriteStats()
    with _Staging() as staging:
        folder = staging.folder(root / "DUTS-TR")
        for index in range(n_images):
            rng = np.random.default_rng([seed, index])
            config = SyntheticConfig(
                num_frames=1, height=size[0], width=size[1], num_objects=1, num_distractors=0,
                object_scale=(0.3, 0.45), seed=int(rng.integers(2**31 - 1)),
            )
            frame, mask = render_frame(build_scene(config), 0)
            name = f"syn_static_{index:05d}"
            _write_jpg(folder / f"{name}.jpg", frame)
            _write_binary_png(folder / f"{name}.png", mask)
            stats.images += 1
            stats.masks += 1
    stats.videos = 0
    return stats


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float = 24.0) -> int:
    """Stream RGB uint8 [H,W,3] frames into an mp4 ('mp4v'); returns the frame count.

    Written to a temp name ending in .mp4 (the container is chosen by extension) and
    renamed on success.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.tmp.mp4")
    writer, count = None, 0
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise OSError(f"cv2 cannot open an mp4v writer for {temp}")
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count == 0:
        raise ValueError("write_mp4 got no frames")
    temp.replace(path)
    return count


def write_first_mask(path: str | Path, mask: np.ndarray) -> None:
    """The first-frame mask uint8 [H,W] (ids) that accompanies an mp4, as a palette PNG."""
    write_index_png(path, mask)
