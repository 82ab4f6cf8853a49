"""Palette PNG helpers shared by every reader and writer of masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def davis_palette() -> np.ndarray:
    """The standard DAVIS / PASCAL VOC colour map.

    Returns:
        uint8 array [256, 3]; index 0 is black, 1 red, 2 green, ...
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (r, g, b)
    return palette


def read_index_png(path: str | Path) -> np.ndarray:
    """Read a mask PNG as an index map.

    Palette ('P') and greyscale ('L') images give their stored values, as the
    DAVIS toolkit reads them. Other modes are refused with a message that
    names the file.

    Returns:
        uint8 array [H, W].
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("P", "L", "1"):
                raise ValueError(
                    f"{path}: mask PNG has mode {image.mode!r}; expected a palette ('P') or "
                    "greyscale ('L') PNG whose pixel values are object ids"
                )
            return np.array(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read mask PNG ({error})") from error


def write_index_png(path: str | Path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write an index map as a palette PNG, atomically (temp file + rename).

    Args:
        path: destination file.
        mask: uint8 [H, W] object ids.
        palette: [256, 3] or [N, 3] uint8 colours; DAVIS palette by default.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))  # mode 'L'
    colours = davis_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    image.putpalette(colours.reshape(-1).tolist())  # 'L' -> 'P', values kept
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)
