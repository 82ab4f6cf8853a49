"""ImageNet statistics and the network's input normalisation (one definition for inference and training)."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(image: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] RGB -> float32 ImageNet-normalised [..., 3, H, W]."""
    x = image.float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """Normalised [..., 3, H, W] -> float RGB in [0, 1] (for pictures of what the network saw)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)
