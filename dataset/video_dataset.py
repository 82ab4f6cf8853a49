"""Video training data for per-clip training: DAVIS 2017, YouTube-VOS 2019 (480p), BL30K.

Layouts (the folders STCN users already have):

* YouTube-VOS: ``<youtube>/train_480p/{JPEGImages,Annotations}/<video>/*.jpg|png``
  (annotated every 5th frame; made by ``scripts/resize_youtube.py``);
* DAVIS 2017: ``<davis>/trainval/{JPEGImages,Annotations}/480p/<video>/``, the
  videos of ``ImageSets/2017/train.txt`` (all folders when the list is absent);
* BL30K: ``<bl30k>/{JPEGImages,Annotations}/<video>/``.

Mixture for stages 2/3: 5 x DAVIS + 1 x YouTube (concatenation, sampled
uniformly). Sample ``k`` is a pure function of ``(seed, k)``, and its
inter-clip gap follows the curriculum at iteration ``k // global_batch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dataset.augment import VideoAugment, to_image, to_mask
from dataset.sampling import sample_clip_frames, sample_rng, scaled_gap, torch_seed
from util.imagenet import normalise

MAX_OBJECTS = 2  # target + one distractor object, as STCN
RETRIES = 5  # re-draws when the reference frame has no usable object


class DatasetNotFoundError(FileNotFoundError):
    """A training data folder is missing; the message says which and where to get it."""


def _missing(what: str, path: Path, flag: str, fetch: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{what} not found: {path.resolve()} does not exist. Pass {flag} <folder>, see docs/training.md "
        f"(datasets) for the expected layout, or fetch it with `python scripts/download.py {fetch}`."
    )


@dataclass
class VideoSource:
    """One dataset's videos.

    Attributes:
        name: 'davis', 'youtube' or 'bl30k'.
        videos: (image folder, mask folder, frame stems) per video.
        stride: original frames per listed frame (5 for YouTube-VOS train).
        repeat: copies in the mixture.
    """

    name: str
    videos: list[tuple[Path, Path, list[str]]]
    stride: int = 1
    repeat: int = 1


def _list_videos(images: Path, masks: Path, names: Sequence[str] | None) -> list[tuple[Path, Path, list[str]]]:
    """Videos with >= 3 frames that have both a jpg and a png (STCN drops shorter ones)."""
    names = sorted(p.name for p in images.iterdir() if p.is_dir()) if names is None else names
    videos = []
    for name in names:
        stems = sorted(p.stem for p in (images / name).glob("*.jpg") if (masks / name / f"{p.stem}.png").is_file())
        if len(stems) >= 3:
            videos.append((images / name, masks / name, stems))
    return videos


def youtube_source(root: str | Path, subset: Sequence[str] | None = None) -> VideoSource:
    """YouTube-VOS 2019 train at 480p under ``root/train_480p``."""
    root = Path(root)
    base = root / "train_480p"
    if not base.is_dir():
        hint = " (found train/: resize it with scripts/resize_youtube.py)" if (root / "train").is_dir() else ""
        raise _missing("YouTube-VOS train_480p" + hint, base, "--youtube-root", "youtube")
    return VideoSource("youtube", _list_videos(base / "JPEGImages", base / "Annotations", subset), stride=5)


def davis_source(root: str | Path, repeat: int = 5) -> VideoSource:
    """DAVIS 2017 trainval 480p train videos under ``root/trainval``."""
    base = Path(root) / "trainval"
    images = base / "JPEGImages" / "480p"
    if not images.is_dir():
        raise _missing("DAVIS 2017 trainval", images, "--davis-root", "davis")
    listing = base / "ImageSets" / "2017" / "train.txt"
    names = listing.read_text().split() if listing.is_file() else None
    return VideoSource("davis", _list_videos(images, base / "Annotations" / "480p", names), repeat=repeat)


def bl30k_source(root: str | Path) -> VideoSource:
    """BL30K under ``root/{JPEGImages,Annotations}``."""
    root = Path(root)
    if not (root / "JPEGImages").is_dir():
        raise _missing("BL30K", root / "JPEGImages", "--bl30k-root", "bl30k")
    return VideoSource("bl30k", _list_videos(root / "JPEGImages", root / "Annotations", None))


def _read_labels(path: Path) -> np.ndarray:
    """A label PNG (palette or grey) -> [H, W] uint8 object ids."""
    with Image.open(path) as im:
        return np.asarray(im if im.mode in ("P", "L") else im.convert("L")).astype(np.uint8)


def usable_labels(masks: Sequence[torch.Tensor], strict: bool) -> list[int]:
    """Object ids of the reference (first) mask that can be tracked.

    Args:
        masks: T label maps [1, H, W] after augmentation.
        strict: BL30K's rule (STCN): > 100 px in the reference and either > 900 px
            there or < 400 px in every other frame.
    """
    first = masks[0]
    labels = [int(v) for v in torch.unique(first).tolist() if v != 0]
    if not strict:
        return labels
    kept = []
    for label in labels:
        area = int((first == label).sum())
        if area <= 100:
            continue
        if area > 900 or all(int((m == label).sum()) < 400 for m in masks[1:]):
            kept.append(label)
    return kept


class VideoDataset(Dataset):
    """Per-clip training samples (reference frame + clips) from a mixture of video sources.

    Each item is a dict:
        rgb [T, 3, c, c] float, masks [T, 2, c, c] float (target, second object),
        cls_gt [T, c, c] int64 in {0, 1, 2}, selector [2] float, index int.
    A sample without a usable object after 5 draws has all-zero targets
    (selector [1, 0]): the loss stays finite and the step still trains.

    Args:
        sources: the mixture.
        crop: output side c.
        clip_lengths: (3, 3) in the paper.
        inter_gap: iteration -> inter-clip gap in original frames (curriculum); None = 5.
        intra_gap: max step inside a clip in original frames (5).
        global_batch: samples per iteration (to map sample index -> iteration).
        min_scale: RandomResizedCrop lower scale (0.36; 0.25 for BL30K).
        strict_labels: BL30K's object filter.
        seed: base seed.
        max_scale: RandomResizedCrop upper scale (1).
    """

    def __init__(
        self,
        sources: Sequence[VideoSource],
        crop: int = 384,
        clip_lengths: Sequence[int] = (3, 3),
        inter_gap: Callable[[int], int] | None = None,
        intra_gap: int = 5,
        global_batch: int = 8,
        min_scale: float = 0.36,
        strict_labels: bool = False,
        seed: int = 0,
        max_scale: float = 1.0,
    ) -> None:
        self.entries = [(s, v) for s in sources for v in s.videos for _ in range(s.repeat)]
        if not self.entries:
            found = ", ".join(s.name for s in sources)
            raise DatasetNotFoundError(f"no videos with >= 3 annotated frames in {found}; see docs/training.md")
        self.augment = VideoAugment(crop, min_scale, max_scale)
        self.clip_lengths = tuple(clip_lengths)
        self.inter_gap = inter_gap
        self.intra_gap = intra_gap
        self.global_batch = global_batch
        self.strict_labels = strict_labels
        self.seed = seed

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        rng = sample_rng(self.seed, index)
        source, (image_dir, mask_dir, stems) = self.entries[int(rng.integers(len(self.entries)))]
        gap = 5 if self.inter_gap is None else self.inter_gap(index // self.global_batch)
        inter = scaled_gap(gap, source.stride)
        intra = scaled_gap(self.intra_gap, source.stride)
        images, masks, labels = [], [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed(rng))
            for _ in range(RETRIES):
                order = sample_clip_frames(len(stems), rng, self.clip_lengths, inter, intra)
                images, masks = self._load(image_dir, mask_dir, [stems[i] for i in order])
                labels = usable_labels(masks, self.strict_labels)
                if labels:
                    break
        return self._pack(index, rng, images, masks, labels)

    def _load(self, image_dir: Path, mask_dir: Path, stems: list[str]) -> tuple[list, list]:
        """Read and augment the chosen frames -> T uint8 images [3, c, c], T label maps [1, c, c]."""
        images, masks = [], []
        for stem in stems:
            with Image.open(image_dir / f"{stem}.jpg") as im:
                images.append(to_image(np.asarray(im.convert("RGB"))))
            masks.append(to_mask(_read_labels(mask_dir / f"{stem}.png")))
        return self.augment(images, masks)

    @staticmethod
    def _pack(index: int, rng: np.random.Generator, images: list, masks: list, labels: list[int]) -> dict:
        stack = torch.stack([m.as_subclass(torch.Tensor)[0] for m in masks])  # [T, c, c]
        targets = torch.zeros(MAX_OBJECTS, *stack.shape, dtype=torch.float32)
        selector = torch.tensor([1.0, 0.0])
        if labels:
            chosen = [labels[int(rng.integers(len(labels)))]]
            rest = [lab for lab in labels if lab != chosen[0]]
            if rest:
                chosen.append(rest[int(rng.integers(len(rest)))])
                selector[1] = 1.0
            for slot, label in enumerate(chosen):
                targets[slot] = (stack == label).float()
        cls_gt = (targets[0] + 2 * targets[1]).long()
        return {
            "rgb": torch.stack([normalise(im.as_subclass(torch.Tensor)) for im in images]),
            "masks": targets.transpose(0, 1).contiguous(),  # [T, 2, c, c]
            "cls_gt": cls_gt,
            "selector": selector,
            "index": index,
        }
