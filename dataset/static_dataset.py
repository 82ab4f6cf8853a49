"""Stage-0 data: several "frames" synthesised from one still image (STCN's layout and augmentations).

Layout under the static root (STCN's ``../static``): ``fss/<class>/<n>.jpg|png``
and flat folders of ``<name>.jpg`` + ``<name>.png`` (``DUTS-TR``, ``DUTS-TE``,
``ecssd``, ``BIG_small``, ``HRSOD_small``). Mixture: fss + DUTS-TR + DUTS-TE +
ecssd + 5 x BIG_small + 5 x HRSOD_small; folders that are absent are skipped.

Sample ``k`` is a pure function of ``(seed, k)``; see :mod:`dataset.sampling`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dataset.augment import StaticAugment, to_image, to_mask
from dataset.sampling import sample_rng, torch_seed
from dataset.tps import random_control_points, warp_image_and_mask
from dataset.video_dataset import DatasetNotFoundError
from util.imagenet import normalise

#: (folder, repeat) of the flat-layout static datasets, STCN's mixture.
FLAT_FOLDERS = (("DUTS-TR", 1), ("DUTS-TE", 1), ("ecssd", 1), ("BIG_small", 5), ("HRSOD_small", 5))
TPS_PROBABILITY = 0.33


def _flat_pairs(folder: Path) -> list[tuple[Path, Path]]:
    return [(jpg, jpg.with_suffix(".png")) for jpg in sorted(folder.glob("*.jpg")) if jpg.with_suffix(".png").is_file()]


def find_static_images(root: str | Path) -> list[tuple[Path, Path]]:
    """All (image, mask) pairs of the static mixture, repeats included.

    Raises:
        DatasetNotFoundError: when the root or every known sub-folder is missing.
    """
    root = Path(root)
    pairs: list[tuple[Path, Path]] = []
    if (root / "fss").is_dir():
        for folder in sorted(p for p in (root / "fss").iterdir() if p.is_dir()):
            pairs.extend(_flat_pairs(folder))
    for name, repeat in FLAT_FOLDERS:
        if (root / name).is_dir():
            pairs.extend(_flat_pairs(root / name) * repeat)
    if not pairs:
        raise DatasetNotFoundError(
            f"no static images under {root.resolve()} (looked for fss/<class>/, "
            f"{', '.join(n for n, _ in FLAT_FOLDERS)} with <name>.jpg + <name>.png). Pass --static-root, "
            "see docs/training.md (datasets) or fetch them with `python scripts/download.py static`."
        )
    return pairs


class StaticDataset(Dataset):
    """Stage-0 samples: ``num_frames`` augmented views of one image with its single object.

    Each item is a dict:
        rgb [T, 3, c, c] float (ImageNet-normalised), masks [T, 1, c, c] float in {0, 1},
        cls_gt [T, c, c] int64, selector [1] float, index int.

    Args:
        root: static-data root.
        crop: output side c.
        num_frames: frames per sample (3 in the paper).
        seed: base seed; item k uses ``sample_rng(seed, k)``.
    """

    def __init__(self, root: str | Path, crop: int = 384, num_frames: int = 3, seed: int = 0) -> None:
        self.pairs = find_static_images(root)
        self.augment = StaticAugment(crop)
        self.num_frames = num_frames
        self.seed = seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        rng = sample_rng(self.seed, index)
        image_path, mask_path = self.pairs[int(rng.integers(len(self.pairs)))]
        with Image.open(image_path) as im:
            image = np.asarray(im.convert("RGB"))
        with Image.open(mask_path) as im:
            mask = np.asarray(im.convert("L"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed(rng))
            base_image, base_mask = self.augment.sequence(to_image(image), to_mask(mask))
            frames, masks = [], []
            for _ in range(self.num_frames):
                img, msk = self.augment.frame(base_image, base_mask)
                img, msk = self._maybe_tps(rng, img, msk)
                frames.append(normalise(img))
                masks.append((msk.as_subclass(torch.Tensor).float() > 127.5).float())
        masks_t = torch.stack(masks)  # [T, 1, c, c]
        return {
            "rgb": torch.stack(frames),
            "masks": masks_t,
            "cls_gt": masks_t[:, 0].long(),
            "selector": torch.ones(1),
            "index": index,
        }

    @staticmethod
    def _maybe_tps(
        rng: np.random.Generator, image: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """With p = 0.33, a random TPS warp of image [3, c, c] uint8 and mask [1, c, c] uint8."""
        if rng.random() >= TPS_PROBABILITY:
            return image, mask
        height, width = mask.shape[-2:]
        src, dst = random_control_points(rng, height, width)
        warped, warped_mask = warp_image_and_mask(
            image.as_subclass(torch.Tensor).permute(1, 2, 0).numpy().copy(),
            mask.as_subclass(torch.Tensor)[0].numpy().copy(),
            src,
            dst,
        )
        return torch.from_numpy(warped).permute(2, 0, 1), torch.from_numpy(warped_mask)[None]
