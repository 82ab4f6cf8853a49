"""Key (image) and value (image + mask) encoders built from torchvision ResNets.

Neither constructor downloads anything: ImageNet weights are loaded on
request by :func:`load_imagenet_weights`, from local files only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

from model.modules import FeatureFusionBlock

#: Channels of (f4, f8, f16) for each supported key backbone.
KEY_BACKBONE_CHANNELS = {"resnet50": (256, 512, 1024), "resnet18": (64, 128, 256)}

#: File names torchvision uses for the ImageNet weights (IMAGENET1K_V1).
IMAGENET_FILES = {"resnet50": "resnet50-0676ba61.pth", "resnet18": "resnet18-f37072fd.pth"}


class KeyEncoder(nn.Module):
    """ResNet stem + layer1..layer3 (stride 16). ``res2`` is torchvision's ``layer1``."""

    def __init__(self, backbone: str = "resnet50") -> None:
        super().__init__()
        if backbone not in KEY_BACKBONE_CHANNELS:
            raise ValueError(f"unknown key backbone {backbone!r}; choose from {sorted(KEY_BACKBONE_CHANNELS)}")
        net = resnet50(weights=None) if backbone == "resnet50" else resnet18(weights=None)
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.res2 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.channels = KEY_BACKBONE_CHANNELS[backbone]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image: [B, 3, H, W] -> (f16 [B, C16, H/16, W/16], f8 [B, C8, H/8, W/8], f4 [B, C4, H/4, W/4])."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4


def _with_bias(conv: nn.Conv2d, in_channels: int | None = None) -> nn.Conv2d:
    """A copy of ``conv``'s geometry with a bias (the value encoder's convs all have one)."""
    return nn.Conv2d(
        conv.in_channels if in_channels is None else in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=True,
    )


def _add_conv_biases(module: nn.Module) -> None:
    """Replace every bias-free Conv2d below ``module`` in place (state_dict order is kept)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, _with_bias(child))
        else:
            _add_conv_biases(child)


def _resnet18_trunk(width: int) -> nn.Module:
    """Stem and layer1..layer3 of a ResNet-18 whose first stage has ``width`` channels (64 = torchvision's),
    with torchvision's module names: the state_dict keys do not depend on the width."""

    def stage(inplanes: int, planes: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or inplanes != planes:
            down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        return nn.Sequential(BasicBlock(inplanes, planes, stride, down), BasicBlock(planes, planes))

    net = nn.Module()
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    net.layer1 = stage(width, width, 1)
    net.layer2 = stage(width, 2 * width, 2)
    net.layer3 = stage(2 * width, 4 * width, 2)
    return net


class ValueEncoder(nn.Module):
    """ResNet-18 over [image, mask, others] (every conv biased) + fusion with the key f16.

    Args:
        key_channels: channels of the key encoder's f16 (1024 for ResNet-50).
        value_dim: output channels (512 in the paper).
        in_channels: 5 for multi-object models, 4 for a stage-0 (single object) model.
        width: channels of the ResNet-18's first stage (64 = the paper's; layer3 gives 4 x width). The
            quickstart's small model uses 32: a quarter of the FLOPs, no ImageNet weights.
    """

    def __init__(self, key_channels: int = 1024, value_dim: int = 512, in_channels: int = 5, width: int = 64) -> None:
        super().__init__()
        net = _resnet18_trunk(width)
        _add_conv_biases(net)
        self.conv1 = _with_bias(net.conv1, in_channels)
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.fuser = FeatureFusionBlock(4 * width + key_channels, value_dim)
        self.in_channels = in_channels

    def forward(
        self, image: torch.Tensor, key_f16: torch.Tensor, mask: torch.Tensor, others: torch.Tensor | None
    ) -> torch.Tensor:
        """Encode one object per batch row.

        Args:
            image: [B, 3, H, W] normalised frames.
            key_f16: [B, C16, H/16, W/16] key feature of the same frames, or [1, ...] when every row
                is the same frame (its share of the fusion block is then computed once).
            mask: [B, 1, H, W] this object's probability.
            others: [B, 1, H, W] sum of the other objects' probabilities, or None for a
                single-object (4-channel) encoder.

        Returns:
            [B, value_dim, H/16, W/16]
        """
        parts = [image, mask] if others is None or self.in_channels == 4 else [image, mask, others]
        x = self.maxpool(self.relu(self.bn1(self.conv1(torch.cat(parts, dim=1)))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fuser(x, key_f16)


def load_imagenet_weights(module: nn.Module, backbone: str, weights_dir: str | Path | None) -> list[str]:
    """Copy torchvision ImageNet weights into an encoder, from local files only.

    Looks for torchvision's file name (e.g. ``resnet50-0676ba61.pth``) in
    ``weights_dir`` and then in torch's hub cache. Extra input channels of
    ``conv1`` (mask channels of the value encoder) are initialised orthogonally,
    as in the original training code. Conv biases that ImageNet weights lack
    start at zero.

    Returns:
        the state_dict keys that were loaded.

    Raises:
        FileNotFoundError: with the places searched and how to fetch the file.
    """
    name = IMAGENET_FILES[backbone]
    candidates = []
    if weights_dir is not None:
        candidates.append(Path(weights_dir) / name)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / name)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        searched = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"ImageNet weights for {backbone} not found (looked for {searched}). Download them with "
            f"`python scripts/download.py imagenet --out {candidates[0].parent}` on a machine with "
            "internet, or pass --no-imagenet to train from random initialisation."
        )
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = module.state_dict()
    loaded = []
    for key, value in source.items():
        key = "res2" + key[len("layer1"):] if key.startswith("layer1") and hasattr(module, "res2") else key
        if key not in target:
            continue
        if key == "conv1.weight" and value.shape[1] != target[key].shape[1]:
            extra = target[key].shape[1] - value.shape[1]
            pad = torch.empty(value.shape[0], extra, *value.shape[2:])
            nn.init.orthogonal_(pad)
            value = torch.cat([value, pad], dim=1)
        if value.shape == target[key].shape:
            target[key] = value
            loaded.append(key)
    module.load_state_dict(target)
    # ImageNet convs have no bias; ours (value encoder) start those biases at zero.
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d) and child.bias is not None and not name.startswith("fuser"):
            nn.init.zeros_(child.bias)
    return loaded
