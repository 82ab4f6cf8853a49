"""Reading video frames and first-appearance masks for inference.

A *video source* is a list of frame files (or an opened video container) plus
the annotation files of the frames where objects first appear. Frames are
decoded ahead by a DataLoader with workers, one frame at a time, so nothing
holds a whole video in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from util.palette import read_index_png

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def working_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Resolution the network works at: short side -> ``size`` (``-1`` keeps the original).

    The long side is ``int(size * long / short)``, as torchvision's Resize(int) computes it.
    """
    if size is None or size < 0:
        return height, width
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def normalise(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] RGB -> float [3, H, W] ImageNet-normalised."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def prepare_image(rgb: np.ndarray, size: int) -> torch.Tensor:
    """Network input of one frame: normalise, then bicubic resize without antialiasing.

    The released code resized the normalised tensor with torchvision 0.9,
    which did not antialias; we reproduce that.

    Returns:
        [3, h, w] float.
    """
    x = normalise(rgb)
    h, w = working_size(x.shape[1], x.shape[2], size)
    if (h, w) != tuple(x.shape[1:]):
        x = F.interpolate(x[None], size=(h, w), mode="bicubic", align_corners=False, antialias=False)[0]
    return x


def prepare_label(label: np.ndarray, size: int) -> torch.Tensor:
    """Index map [H, W] -> int64 [h, w] resized with nearest neighbour (as one-hot nearest would)."""
    x = torch.from_numpy(label.astype(np.int64))
    h, w = working_size(x.shape[0], x.shape[1], size)
    if (h, w) != tuple(x.shape):
        x = F.interpolate(x[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
    return x


def read_rgb(path: str | Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB of an image file, with an error that names the file."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read image ({error})") from error


@dataclass
class VideoSource:
    """One video to segment.

    frames: frame files in temporal order (their stems name the outputs).
    labels: frame index -> annotation PNG (first-appearance masks).
    required: frame indices whose masks are wanted (None = all).
    """

    name: str
    frames: list[Path]
    labels: dict[int, Path]
    required: set[int] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frames]


def list_frames(folder: Path) -> list[Path]:
    """Image files of a frame folder, sorted by name."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: frame folder not found")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames:
        raise ValueError(f"{folder}: no frames ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return frames


def video_from_folders(name: str, frame_dir: Path, annotation_dir: Path) -> VideoSource:
    """A video whose annotation PNGs share their stems with frames (generic / YouTube layout)."""
    frames = list_frames(frame_dir)
    index = {p.stem: i for i, p in enumerate(frames)}
    labels = {}
    for png in sorted(annotation_dir.glob("*.png")) if annotation_dir.is_dir() else []:
        if png.stem not in index:
            raise ValueError(
                f"{png}: annotation has no matching frame in {frame_dir} (expected a frame named {png.stem}.*)"
            )
        labels[index[png.stem]] = png
    if not labels:
        raise ValueError(f"{annotation_dir}: no annotation PNG for video {name!r}; give at least the first mask")
    return VideoSource(name, frames, labels)


def label_values(source: VideoSource) -> list[int]:
    """Sorted union of the object ids in a video's annotations.

    255 is void, except in binary masks (only 0 and 255 anywhere), where it is the one object.
    """
    values: set[int] = set()
    for path in source.labels.values():
        values.update(int(v) for v in np.unique(read_index_png(path)) if v > 0)
    return [255] if values == {255} else sorted(v for v in values if v < 255)


class _FrameDataset(Dataset):
    def __init__(self, source: VideoSource, size: int, id_map: dict[int, int]) -> None:
        self.source = source
        self.size = size
        self.lut = np.zeros(256, dtype=np.int64)
        for value, internal in id_map.items():
            self.lut[value] = internal

    def __len__(self) -> int:
        return len(self.source.frames)

    def __getitem__(self, index: int) -> dict:
        rgb = read_rgb(self.source.frames[index])
        item = {"index": index, "image": prepare_image(rgb, self.size), "size": torch.tensor(rgb.shape[:2])}
        label_path = self.source.labels.get(index)
        if label_path is not None:
            label = read_index_png(label_path)
            if label.shape != rgb.shape[:2]:
                raise ValueError(
                    f"{label_path}: mask is {label.shape[1]}x{label.shape[0]} but frame "
                    f"{self.source.frames[index]} is {rgb.shape[1]}x{rgb.shape[0]}; masks must match their frames"
                )
            item["label"] = prepare_label(self.lut[label], self.size)
        return item


def frame_loader(source: VideoSource, size: int, id_map: dict[int, int], workers: int = 2) -> DataLoader:
    """Frames decoded ahead, in order, one per batch (dicts with index, image, size, optional label)."""
    return DataLoader(
        _FrameDataset(source, size, id_map),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
    )
