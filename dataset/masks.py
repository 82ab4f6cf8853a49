"""The one reader of object masks: ``segment.py --mask`` files and the annotation folders of every benchmark.

A mask file becomes an object-id map (uint8 [H, W], 0 = background, 1..254 = objects) by one set of
rules, whatever driver reads it:

* palette PNG ('P'): the palette indices are the ids; the palette is kept to colour the output;
* greyscale ('L', '1', 16-bit 'I;16' / 'I'): values {0, 1}, {0, 255} (or {0, 65535} at 16 bits) are
  one object (id 1); other values are the ids;
* in palette and greyscale masks 255 is the DAVIS void label: background wherever other ids exist;
  values above 254 that are not void do not fit an 8-bit id and are refused;
* RGB / RGBA: each colour other than black (or fully transparent) is an object, numbered in order
  of first appearance (raster order, then file order) after the ids already in use; the same colour
  in a later file of the same reader is the same object.

A mask that looks anti-aliased or blurred (``check_antialiasing``) is refused unless the reader was
made with ``values='ids'`` (``--mask-values ids``), which takes every value or colour as an object.
Why: a smoothed edge turns one object into dozens of "objects", one per blend value, which the
network then tracks one by one -- slowly and uselessly -- and the run ends with exit code 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from util.palette import davis_palette

#: ``--mask-values`` choices. auto: the rules above, anti-aliased masks refused. ids: every value is an object id.
MASK_VALUES = ("auto", "ids")
VOID = 255  # DAVIS void label: never an object id
MAX_ID = 254
#: A value covering less than this fraction of the image counts as tiny (evidence only, see check_antialiasing).
TINY_FRACTION = 0.001
#: A value is a blend when at least this fraction of its pixels lie between two other values.
BLEND_PIXEL_FRACTION = 0.5
#: Masks with fewer pixels (32 x 32) are too small to tell a blend from an object: never refused as anti-aliased.
MIN_PIXELS = 1024
#: With this many tiny or blend values, making up most of the values, a mask is noise rather than objects.
MANY_VALUES = 16

_GREY_MODES = ("L", "1", "I", "I;16", "I;16B", "I;16L", "LA")
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr")


class MaskError(ValueError):
    """A mask file that cannot be read as object ids, with the file, the evidence and the fix."""


@dataclass
class AliasEvidence:
    """What ``check_antialiasing`` measured on one mask."""

    values: int  # distinct non-background values
    blends: int  # of them, values whose pixels mostly lie between two other values
    tiny_blends: int  # of the blends, those covering < TINY_FRACTION of the image
    tiny: int  # of all values, those covering < TINY_FRACTION of the image
    suspicious: int  # values that are tiny or blends
    pixels: int  # image size H * W
    unit: str = "values"  # 'values' or 'colours'

    @property
    def antialiased(self) -> bool:
        """Whether the mask looks smoothed; conservative, so that no hand-drawn or generated mask trips it.

        * three or more blend values that are at least half of all values (a blur or a bilinear resize
          of one object already makes many);
        * or two or more blend values beside at most one other value (a 2x bilinear upscale of a 0/255
          mask makes exactly 64 and 191 along straight edges);
        * or MANY_VALUES or more values that are tiny or blends, two thirds of all values or more
          (speckle, JPEG artefacts: dozens of values scattered along the edges).

        A genuine object counts as a blend only when it is a sliver no more than a pixel or two thick
        squeezed between two other objects; a mask would need several such slivers, and few real
        objects beside them, or sixteen or more objects nearly all tiny, to be refused. Masks under
        MIN_PIXELS pixels are never refused.
        """
        real = self.values - self.blends
        return self.pixels >= MIN_PIXELS and (
            (self.blends >= 3 and 2 * self.blends >= self.values)
            or (self.blends >= 2 and real <= 1)
            or (self.suspicious >= MANY_VALUES and 3 * self.suspicious >= 2 * self.values)
        )

    def describe(self) -> str:
        """The evidence, e.g. '57 distinct values, 49 of them along the boundaries between other regions ...'."""
        percent = f"{TINY_FRACTION * 100:g} %"
        if self.blends >= 2:
            return (
                f"{self.values} distinct {self.unit}, {self.blends} of them lying along the boundaries between other "
                f"regions ({self.tiny_blends} of those covering < {percent} of the image each)"
            )
        return f"{self.values} distinct {self.unit}, {self.tiny} of them covering < {percent} of the image each"


def _between(codes: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Which pixels hold a value lying between the other values around them.

    A pixel is *between* when, channel by channel, its feature lies within the range spanned by the
    features of its 8-neighbours that hold a different value -- what a blend of two regions looks
    like. Borders repeat the edge pixel, so the image border is never a boundary.

    Args:
        codes: int [H, W] value codes (indices into ``features``).
        features: float [N, C] the value of each code in the space where blending happened
            (grey level, palette index, or RGB colour).

    Returns:
        bool [H, W].
    """
    height, width = codes.shape
    padded = np.pad(codes, 1, mode="edge")
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    boundary = np.zeros(codes.shape, dtype=bool)
    for dy, dx in shifts:
        boundary |= padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] != codes
    ys, xs = np.nonzero(boundary)  # only boundary pixels can be between; usually a few % of the image
    result = np.zeros(codes.shape, dtype=bool)
    if len(ys) == 0:
        return result
    centre = codes[ys, xs]
    neighbours = np.stack([padded[ys + 1 + dy, xs + 1 + dx] for dy, dx in shifts])  # [8, P]
    other = neighbours != centre[None]
    feats = features[neighbours]  # [8, P, C]
    low = np.where(other[..., None], feats, np.inf).min(axis=0)
    high = np.where(other[..., None], feats, -np.inf).max(axis=0)
    own = features[centre]
    result[ys, xs] = np.all((low <= own) & (own <= high), axis=1)
    return result


def check_antialiasing(values: np.ndarray, feature_sets: list[np.ndarray], unit: str = "values") -> AliasEvidence:
    """Measure how much a mask looks like a smoothed one.

    Args:
        values: int [H, W] raw pixel values (grey level, palette index or packed colour), 0 = background.
        feature_sets: for the sorted distinct values of ``values``, one or more float [N, C] tables of
            what each value is in a space where blending may have happened (grey: the level; palette:
            the index and the palette colour; RGB: the colour). A pixel between its neighbours in any
            of them counts.
        unit: 'values' or 'colours', for the message.
    """
    unique, inverse = np.unique(values, return_inverse=True)
    codes = inverse.reshape(values.shape)
    between = np.zeros(values.shape, dtype=bool)
    for features in feature_sets:
        between |= _between(codes, np.asarray(features, dtype=np.float64))
    area = np.bincount(codes.ravel(), minlength=len(unique))
    blend_pixels = np.bincount(codes[between], minlength=len(unique))
    nonzero = unique != 0
    tiny = nonzero & (area < TINY_FRACTION * values.size)
    blends = nonzero & (blend_pixels >= BLEND_PIXEL_FRACTION * area)
    return AliasEvidence(
        values=int(nonzero.sum()),
        blends=int(blends.sum()),
        tiny_blends=int((blends & tiny).sum()),
        tiny=int(tiny.sum()),
        suspicious=int((blends | tiny).sum()),
        pixels=int(values.size),
        unit=unit,
    )


def _refuse_antialiased(path: Path, evidence: AliasEvidence) -> None:
    if evidence.antialiased:
        raise MaskError(
            f"{path}: mask looks anti-aliased or blurred ({evidence.describe()}); save it without smoothing "
            "(nearest-neighbour resizing, anti-aliasing off) so that every pixel holds one object's exact value, "
            "or pass --mask-values ids if every value really is an object"
        )


@dataclass
class MaskFile:
    """One mask file read by ``MaskReader.read_file``.

    ids: uint8 [H, W] object ids (0 = background).
    binary_value: for a one-object 0/v mask (v = 1 or 255; 65535 at 16 bits counts as 255), v; else None.
        The annotation-folder drivers write such an object back with the value 255 when every mask of the
        video is 0/255, as the benchmarks' binary masks are (dataset/frames.py, ``label_values``).
    """

    ids: np.ndarray
    binary_value: int | None = None


@dataclass
class MaskReader:
    """Reads the masks of one video into object-id maps, consistently across its files.

    ``values``: 'auto' (the module's rules, anti-aliased masks refused) or 'ids' (no anti-aliasing
    check: every value or colour is an object). The reader remembers the colours of RGB masks (so the
    same colour is the same object in every file) and the first palette PNG's palette.
    """

    values: str = "auto"
    colours: dict[int, int] = field(default_factory=dict)  # packed 0xRRGGBB -> object id
    used: set[int] = field(default_factory=set)  # ids seen so far
    _palette: np.ndarray | None = None  # from the first palette PNG

    def __post_init__(self) -> None:
        if self.values not in MASK_VALUES:
            raise ValueError(f"--mask-values {self.values}: choose one of {', '.join(MASK_VALUES)}")

    @property
    def palette(self) -> np.ndarray | None:
        """Output palette: the first palette PNG's (or DAVIS's), with RGB masks' colours at their ids."""
        if not self.colours:
            return self._palette
        palette = (davis_palette() if self._palette is None else self._palette).copy()
        if len(palette) < 256:
            palette = np.concatenate([palette, davis_palette()[len(palette):]])
        for packed, obj in self.colours.items():
            palette[obj] = (packed >> 16, (packed >> 8) & 255, packed & 255)
        return palette

    def read(self, path: str | Path, size: tuple[int, int] | None = None, allow_empty: bool = False) -> np.ndarray:
        """uint8 [H, W] ids of ``path``, checked against the video size (H, W) and for emptiness."""
        path = Path(path)
        ids = self.read_file(path).ids
        if size is not None and ids.shape != tuple(size):
            raise MaskError(
                f"{path}: mask is {ids.shape[1]}x{ids.shape[0]} (WxH) but the video is {size[1]}x{size[0]}; "
                "resize the mask to the video size with nearest-neighbour interpolation"
            )
        if not allow_empty and not ids.any():
            raise MaskError(
                f"{path}: mask is empty (every pixel is background); draw at least one object "
                "(non-zero id or non-black colour)"
            )
        return ids

    def read_file(self, path: str | Path, check: bool = True) -> MaskFile:
        """Read one mask file by the module's rules (``check``: look for anti-aliasing in 'auto' mode)."""
        path = Path(path)
        if not path.is_file():
            raise MaskError(f"{path}: mask file not found" + ("; it is a folder" if path.is_dir() else ""))
        try:
            with Image.open(path) as image:
                image.load()
                mask = self._decode(image, path, check and self.values == "auto")
        except (OSError, SyntaxError) as error:
            raise MaskError(f"{path}: cannot read mask image ({error})") from error
        self.used.update(int(v) for v in np.unique(mask.ids) if v)
        return mask

    def _decode(self, image: Image.Image, path: Path, check: bool) -> MaskFile:
        if image.mode in ("P", "PA"):
            values = np.array(image.getchannel("P") if image.mode == "PA" else image).astype(np.int64)
            if image.mode == "PA":
                values[np.array(image.getchannel("A")) == 0] = 0
            raw = image.getpalette()
            palette = None if raw is None else np.asarray(raw, dtype=np.uint8).reshape(-1, 3)
            if self._palette is None and palette is not None:
                self._palette = palette
            return self._index_mask(values, path, check, 8, palette)
        if image.mode in _GREY_MODES:
            if image.mode == "LA":
                values = np.array(image.getchannel("L")).astype(np.int64)
                values[np.array(image.getchannel("A")) == 0] = 0
                bits = 8
            else:
                values = np.array(image.convert("L") if image.mode == "1" else image).astype(np.int64)
                bits = 8 if image.mode in ("L", "1") else 16
            if values.min(initial=0) < 0:
                raise MaskError(f"{path}: greyscale mask has negative values ({values.min()}); ids must be 0..254")
            return self._index_mask(values, path, check, bits, None)
        if image.mode in _COLOUR_MODES:
            return self._colour_mask(image, path, check)
        raise MaskError(
            f"{path}: unsupported mask image mode {image.mode!r}; save it as a palette, greyscale (8 or 16 bit) "
            "or RGB PNG"
        )

    def _index_mask(
        self, values: np.ndarray, path: Path, check: bool, bits: int, palette: np.ndarray | None
    ) -> MaskFile:
        """Palette indices or grey levels -> ids by the binary / void / id rules."""
        present = set(np.unique(values).tolist()) - {0}
        top = 65535 if bits == 16 else VOID
        for single in (1, VOID, top):
            if present == {single}:
                return MaskFile((values > 0).astype(np.uint8), min(single, VOID))
        if check and len(present) >= 2:
            features = [np.unique(values)[:, None]]
            if palette is not None:
                full = np.concatenate([palette, davis_palette()[len(palette):]]) if len(palette) < 256 else palette
                features.append(full[np.unique(values)].astype(np.float64))
            _refuse_antialiased(path, check_antialiasing(values, features))
        present.discard(VOID)
        too_big = sorted(v for v in present if v > MAX_ID)
        if too_big:
            kind = "16-bit greyscale" if bits == 16 else "mask"
            raise MaskError(
                f"{path}: {kind} values up to {too_big[-1]} ({len(too_big)} values above {MAX_ID}) do not fit 8-bit "
                f"object ids (1..{MAX_ID}, 255 = void); save the mask as an 8-bit palette or greyscale PNG whose "
                "values are the object ids"
            )
        return MaskFile(np.where(values == VOID, 0, values).astype(np.uint8))

    def _colour_mask(self, image: Image.Image, path: Path, check: bool) -> MaskFile:
        """RGB(A) colours -> ids, numbered in order of first appearance after the ids in use."""
        rgba = np.array(image.convert("RGBA"))
        rgb = rgba[..., :3].astype(np.int64)
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        packed[rgba[..., 3] == 0] = 0  # transparent = background
        unique, first, inverse = np.unique(packed.ravel(), return_index=True, return_inverse=True)
        if check and np.count_nonzero(unique) >= 2:
            colours = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], axis=1)
            _refuse_antialiased(path, check_antialiasing(packed, [colours], unit="colours"))
        new = [int(v) for v in unique[np.argsort(first)] if v and int(v) not in self.colours]
        next_id = max([0, *self.used, *self.colours.values()]) + 1
        if new and next_id + len(new) - 1 > MAX_ID:
            raise MaskError(
                f"{path}: {len(new)} new colours would need object ids up to {next_id + len(new) - 1}, more than "
                f"{MAX_ID} objects; is the mask anti-aliased? save it without smoothing"
            )
        for offset, value in enumerate(new):
            self.colours[value] = next_id + offset
        lut = np.array([self.colours.get(int(v), 0) for v in unique], dtype=np.uint8)
        return MaskFile(lut[inverse.reshape(-1)].reshape(packed.shape))


def read_mask(path: str | Path, values: str = "auto") -> np.ndarray:
    """uint8 [H, W] object ids of one mask file by the module's rules (a fresh reader; empty masks allowed)."""
    return MaskReader(values).read(path, allow_empty=True)
