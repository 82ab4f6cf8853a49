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

from dataset.masks import MaskReader
from util.imagenet import normalise

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


def prepare_image(rgb: np.ndarray, size: int) -> torch.Tensor:
    """Network input of one frame: normalise, then bicubic resize without antialiasing.

    The released code resized the normalised tensor with torchvision 0.9,
    which did not antialias; we reproduce that.

    Returns:
        [3, h, w] float.
    """
    x = normalise(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1))
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


def image_size(path: str | Path, what: str = "image") -> tuple[int, int]:
    """(H, W) of an image file from its header (no decoding), with an error that names the file."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read {what} ({error}); replace or re-encode this file") from error


@dataclass
class VideoSource:
    """One video to segment.

    frames: frame files in temporal order (their stems name the outputs).
    labels: frame index -> annotation PNG (first-appearance masks).
    required: frame indices whose masks are wanted (None = all).
    mask_values: how the annotations are read ('auto' or 'ids', see dataset/masks.py, ``--mask-values``).
    """

    name: str
    frames: list[Path]
    labels: dict[int, Path]
    required: set[int] | None = None
    meta: dict = field(default_factory=dict)
    mask_values: str = "auto"
    _scan: LabelScan | None = field(default=None, repr=False, compare=False)

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


def video_from_folders(name: str, frame_dir: Path, annotation_dir: Path, mask_values: str = "auto") -> VideoSource:
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
    return VideoSource(name, frames, labels, mask_values=mask_values)


@dataclass
class LabelScan:
    """A video's annotations read once (dataset/masks.py rules): the values to write and how ids map to them.

    values: sorted values the objects are written with (the annotations' own ids).
    reader: the reader that read them (it holds the RGB colour table, so workers number colours alike).
    written: object id -> written value; the identity except for a video whose masks are all 0/255,
        whose one object (id 1) is written back as 255, as the benchmarks' binary masks hold it.
    """

    values: list[int]
    reader: MaskReader
    written: dict[int, int]

    @property
    def palette(self) -> np.ndarray | None:
        """The output palette: the first palette annotation's, with RGB annotations' colours (None: DAVIS's)."""
        return self.reader.palette


def scan_labels(source: VideoSource) -> LabelScan:
    """Read every annotation of ``source`` once, in frame order (cached on the source)."""
    if source._scan is None:
        reader = MaskReader(source.mask_values)
        ids: set[int] = set()
        all_255 = True
        for index in sorted(source.labels):
            mask = reader.read_file(source.labels[index])
            ids.update(int(v) for v in np.unique(mask.ids) if v)
            all_255 = all_255 and mask.binary_value == 255
        written = {1: 255} if all_255 and ids == {1} else {i: i for i in ids}
        source._scan = LabelScan(sorted(written.values()), reader, written)
    return source._scan


def label_values(source: VideoSource) -> list[int]:
    """Sorted values of the objects in a video's annotations (what the masks are written with).

    The annotations are read by the rules of dataset/masks.py; 255 is void where other ids exist, and a
    video whose masks are all 0/255 has one object, written as 255.
    """
    return scan_labels(source).values


def label_palette(source: VideoSource) -> np.ndarray | None:
    """The palette to write a video's masks with (None: the DAVIS palette)."""
    return scan_labels(source).palette


class _FrameDataset(Dataset):
    def __init__(self, source: VideoSource, size: int, id_map: dict[int, int]) -> None:
        self.source = source
        self.size = size
        scan = scan_labels(source)
        self.reader = scan.reader
        # object id -> internal channel, through the value each object is written with
        self.lut = np.zeros(256, dtype=np.int64)
        for obj, value in scan.written.items():
            self.lut[obj] = id_map.get(value, 0)

    def __len__(self) -> int:
        return len(self.source.frames)

    def __getitem__(self, index: int) -> dict:
        rgb = read_rgb(self.source.frames[index])
        item = {"index": index, "image": prepare_image(rgb, self.size), "size": torch.tensor(rgb.shape[:2])}
        label_path = self.source.labels.get(index)
        if label_path is not None:
            label = self.reader.read_file(label_path, check=False).ids  # checked by scan_labels already
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
