"""STCN's training augmentations, with torchvision.transforms.v2.

Images travel as ``tv_tensors.Image`` (uint8 [3, H, W]) and label maps as
``tv_tensors.Mask`` (uint8 [1, H, W]); v2 resamples masks with nearest
neighbour and fills them with 0 on its own. "Per sequence" transforms are
applied in ONE call to all frames and masks, which gives every input the same
random parameters; "per frame" transforms are called once per frame.

All randomness comes from torch's global generator; the datasets wrap each
sample in ``torch.random.fork_rng`` seeded from the sample's seed, so a sample
is a pure function of its index.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

#: ImageNet mean in grey levels, the fill of affine borders (STCN's (124, 116, 104)).
FILL_RGB = (124, 116, 104)
BICUBIC = InterpolationMode.BICUBIC
#: torchvision's tensor affine supports only nearest/bilinear; STCN's PIL pipeline used bicubic
#: for the affine. A documented deviation (docs/training.md), kept for speed and tensor-only code.
AFFINE = InterpolationMode.BILINEAR


def _fill(mask_fill: int = 0) -> dict:
    return {tv_tensors.Image: FILL_RGB, tv_tensors.Mask: mask_fill}


def to_image(array: np.ndarray) -> tv_tensors.Image:
    """[H, W, 3] uint8 -> tv_tensors.Image [3, H, W] uint8."""
    return tv_tensors.Image(torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1))


def to_mask(array: np.ndarray) -> tv_tensors.Mask:
    """[H, W] uint8 label map -> tv_tensors.Mask [1, H, W] uint8."""
    return tv_tensors.Mask(torch.from_numpy(np.array(array, copy=True))[None])


class VideoAugment:
    """Video augmentation (DAVIS / YouTube-VOS / BL30K), crop x crop output.

    Args:
        crop: output side (384 in STCN/PCVOS).
        min_scale: RandomResizedCrop scale lower bound (0.36; BL30K 0.25).
        max_scale: its upper bound (1).
    """

    def __init__(self, crop: int = 384, min_scale: float = 0.36, max_scale: float = 1.0) -> None:
        self.sequence_joint = v2.Compose(
            [
                v2.RandomHorizontalFlip(),
                v2.RandomResizedCrop(crop, scale=(min_scale, max_scale), interpolation=BICUBIC, antialias=True),
            ]
        )
        self.sequence_image = v2.Compose(
            [v2.ColorJitter(brightness=0.1, contrast=0.03, saturation=0.03, hue=0), v2.RandomGrayscale(0.05)]
        )
        self.frame_joint = v2.RandomAffine(degrees=15, shear=10, interpolation=AFFINE, fill=_fill())
        self.frame_image = v2.ColorJitter(brightness=0.01, contrast=0.01, saturation=0.01, hue=0)

    def __call__(
        self, images: list[tv_tensors.Image], masks: list[tv_tensors.Mask]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """T images [3, H, W] uint8 + T label maps [1, H, W] -> T images [3, c, c] uint8, T masks [1, c, c]."""
        count = len(images)
        joint = self.sequence_joint(*images, *masks)
        images, masks = list(joint[:count]), list(joint[count:])
        images = list(self.sequence_image(*images)) if count > 1 else [self.sequence_image(images[0])]
        out_images, out_masks = [], []
        for image, mask in zip(images, masks):
            image, mask = self.frame_joint(image, mask)
            out_images.append(self.frame_image(image))
            out_masks.append(mask)
        return out_images, out_masks


class StaticAugment:
    """Static-image augmentation producing several "frames" from one image (stage 0).

    The per-frame affine is bilinear for the image AND the mask (STCN: bicubic for both); the mask
    is carried as a fourth image channel for that step so both share the exact
    resampling, then binarised at 0.5 later.
    """

    def __init__(self, crop: int = 384) -> None:
        self.sequence_joint = v2.Compose(
            [v2.RandomAffine(degrees=0, scale=(0.8, 1.5), fill=_fill()), v2.RandomHorizontalFlip()]
        )
        self.sequence_image = v2.Compose(
            [v2.ColorJitter(brightness=0.1, contrast=0.05, saturation=0.05, hue=0.05), v2.RandomGrayscale(0.05)]
        )
        self.frame_affine = v2.RandomAffine(
            degrees=20, scale=(0.9, 1.1), shear=10, interpolation=AFFINE, fill=list(FILL_RGB) + [0]
        )
        self.frame_resize_crop = v2.Compose(
            [
                v2.Resize(crop, interpolation=BICUBIC, antialias=True),
                v2.RandomCrop(crop, pad_if_needed=True, fill=_fill()),
            ]
        )
        self.frame_image = v2.ColorJitter(brightness=0.1, contrast=0.05, saturation=0.05, hue=0)

    def sequence(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared part: image [3, H, W], mask [1, H, W] -> same."""
        image, mask = self.sequence_joint(image, mask)
        return self.sequence_image(image), mask

    def frame(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: image [3, H, W] uint8, mask [1, H, W] uint8 (0/255) -> [3, c, c], [1, c, c]."""
        stacked = tv_tensors.Image(torch.cat([image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)], dim=0))
        stacked = self.frame_affine(stacked)
        plain = stacked.as_subclass(torch.Tensor)
        image, mask = tv_tensors.Image(plain[:3]), tv_tensors.Mask(plain[3:])
        image, mask = self.frame_resize_crop(image, mask)
        return self.frame_image(image), mask
