"""Pictures a person looks at: mask overlays, line charts and labelled image grids.

One overlay renderer serves every driver (``segment.py``, the benchmark drivers, the sweep,
the interactive app and training's TensorBoard tiles): each object is filled with its colour
at a moderate weight and outlined in that colour, with a one-pixel halo in black or white
(whichever contrasts with the colour) just outside the outline, so that objects read on dark,
bright and textured frames alike.

Charts (the sweep's speed-accuracy curve, training's loss and IoU curves) are drawn with
Pillow alone: axes with rounded ticks, one line per series, optional labels at the points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from util.palette import davis_palette

#: weight of the object colour inside an object (the frame keeps the rest)
OVERLAY_ALPHA = 0.4
#: width of the outline drawn in the object colour along the inside of its boundary (pixels)
OUTLINE_WIDTH = 2
#: width of the black or white halo just outside the outline (pixels)
HALO_WIDTH = 1

DARK = (0, 0, 0)
LIGHT = (255, 255, 255)
BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)
#: line colours of chart series, in order (distinct on white, readable by most colour-blind viewers)
SERIES_COLOURS = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233))


# --------------------------------------------------------------------------- overlays


def _full_palette(palette: np.ndarray | None) -> np.ndarray:
    """[256, 3] uint8: ``palette`` extended with the DAVIS colours for ids it does not cover."""
    base = davis_palette()
    if palette is None:
        return base
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
    return np.concatenate([colours, base[len(colours):]]) if len(colours) < 256 else colours


def halo_colour(colour: Sequence[int]) -> tuple[int, int, int]:
    """Black for a light colour, white for a dark one (by luma, ITU-R BT.601)."""
    r, g, b = (float(c) for c in colour[:3])
    return DARK if 0.299 * r + 0.587 * g + 0.114 * b >= 128 else LIGHT


def overlay(rgb: np.ndarray, mask: np.ndarray, palette: np.ndarray | None = None,
            alpha: float = OVERLAY_ALPHA, outline: int = OUTLINE_WIDTH, halo: int = HALO_WIDTH) -> np.ndarray:
    """Draw the objects of ``mask`` onto a frame: fill, outline and halo.

    Args:
        rgb: uint8 [H, W, 3] frame.
        mask: uint8 [H, W] object ids (0 = background). Resized (nearest) to the frame if its size differs.
        palette: [N, 3] uint8 colours indexed by id (DAVIS palette by default, and for ids beyond N).
        alpha: weight of the object colour inside the object.
        outline: pixels along the inside of each object's boundary drawn in its colour (0: none).
        halo: pixels just outside each object drawn black or white, the one that contrasts with its
            colour (0: none). A halo never covers another object's outline.

    Returns:
        uint8 [H, W, 3]; pixels outside every object and its halo are the frame's, unchanged.
        A boundary with the frame's edge is not outlined (the object continues beyond it).
    """
    rgb = np.asarray(rgb, dtype=np.uint8)
    mask = np.asarray(mask, dtype=np.uint8)
    if mask.shape != rgb.shape[:2]:
        mask = cv2.resize(mask, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    colours = _full_palette(palette)
    out = rgb.copy()
    inside = mask > 0
    if inside.any():
        blend = (1 - alpha) * rgb[inside].astype(np.float32) + alpha * colours[mask[inside]].astype(np.float32)
        out[inside] = blend.round().clip(0, 255).astype(np.uint8)
    if outline <= 0 and halo <= 0:
        return out
    kernel = np.ones((3, 3), np.uint8)
    rings, halos = [], []
    for obj in np.unique(mask[inside]) if inside.any() else ():
        region = (mask == obj).astype(np.uint8)
        colour = tuple(int(c) for c in colours[obj])
        if outline > 0:
            rings.append((region & (1 - cv2.erode(region, kernel, iterations=outline)), colour))
        if halo > 0:
            halos.append((cv2.dilate(region, kernel, iterations=halo) & (1 - region), halo_colour(colour)))
    for pixels, colour in halos:  # first, so that an outline always wins over a neighbour's halo
        out[pixels.astype(bool)] = colour
    for pixels, colour in rings:
        out[pixels.astype(bool)] = colour
    return out


# --------------------------------------------------------------------------- text


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in scalable font at ``size`` pixels (its fixed bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, face) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    return right - left, bottom - top


# --------------------------------------------------------------------------- labelled grids


def label_grid(rows: Sequence[Sequence[np.ndarray]], column_labels: Sequence[str] = (),
               row_labels: Sequence[str] = (), min_tile: int = 192, gap: int = 4,
               text_size: int = 18) -> np.ndarray:
    """Tiles in rows and columns, with a header line of column labels and a label before each row.

    Args:
        rows: uint8 [h, w, 3] tiles, the same size in every row and column.
        column_labels, row_labels: text above each column / left of each row (either may be empty).
        min_tile: tiles whose short side is smaller are enlarged (nearest, whole factors) to at least this.
        gap: white pixels between tiles.
        text_size: label height in pixels.

    Returns:
        uint8 [H, W, 3] RGB image on white.
    """
    if not rows or not rows[0]:
        raise ValueError("label_grid: no tiles")
    h, w = rows[0][0].shape[:2]
    factor = max(1, math.ceil(min_tile / max(1, min(h, w))))
    th, tw = h * factor, w * factor
    face = font(text_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max((_text_size(probe, t, face)[0] for t in row_labels), default=0)
    left = label_w + 2 * gap if row_labels else 0
    top = text_size + 3 * gap if column_labels else 0
    columns = max(len(r) for r in rows)
    canvas = Image.new("RGB", (left + columns * (tw + gap) + gap, top + len(rows) * (th + gap) + gap), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(column_labels):
        x = left + gap + c * (tw + gap) + (tw - _text_size(draw, text, face)[0]) // 2
        draw.text((x, gap), text, fill=INK, font=face)
    for r, row in enumerate(rows):
        y = top + gap + r * (th + gap)
        if r < len(row_labels):
            draw.text((gap, y + (th - text_size) // 2), row_labels[r], fill=INK, font=face)
        for c, tile in enumerate(row):
            tile = np.asarray(tile, dtype=np.uint8)
            if tile.shape[:2] != (h, w):
                raise ValueError(f"label_grid: tile of size {tile.shape[:2]} in a grid of {(h, w)} tiles")
            big = np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)
            canvas.paste(Image.fromarray(big), (left + gap + c * (tw + gap), y))
    return np.asarray(canvas)


# --------------------------------------------------------------------------- charts


def nice_ticks(low: float, high: float, count: int = 5, min_step: float = 0.0) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 x 10^k, at least ``min_step``) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"nice_ticks: range {low}..{high} is not finite")
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = max((high - low) / max(1, count), min_step)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start, end = math.floor(low / step), math.ceil(high / step)
    if end <= start:
        end = start + 1
    return [round(i * step, 12) for i in range(start, end + 1)]


def _tick_text(value: float, step: float) -> str:
    if abs(value) >= 1e5 or step >= 1:
        return f"{value:,.0f}" if abs(value) < 1e7 else f"{value:.2g}"
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{value:.{decimals}f}"


@dataclass
class Series:
    """One line of a chart: points (x[i], y[i]) joined in order, optionally a text at each point."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    point_labels: Sequence[str] | None = None
    markers: bool = True
    width: int = 3  # line width in pixels


@dataclass
class Chart:
    """A line chart drawn with Pillow. ``render`` fixes the axes; ``pixel`` maps data to image coordinates.

    Axis ranges default to the data's, widened to round ticks; ``x_range`` / ``y_range`` fix them.
    """

    title: str = ""
    x_label: str = ""
    y_label: str = ""
    width: int = 900
    height: int = 560
    series: list[Series] = field(default_factory=list)
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    x_step: float = 0.0  # smallest x tick step (1 for iterations or L: no fractional ticks)
    text_size: int = 17
    _box: tuple[int, int, int, int] | None = field(default=None, init=False, repr=False)
    _limits: tuple[float, float, float, float] | None = field(default=None, init=False, repr=False)

    def add(self, series: Series) -> Chart:
        if len(series.x) != len(series.y):
            raise ValueError(f"chart series {series.label!r}: {len(series.x)} x values but {len(series.y)} y values")
        self.series.append(series)
        return self

    @staticmethod
    def _axis(values: list[float], fixed: tuple[float, float] | None,
              min_step: float = 0.0) -> tuple[float, float, list[float]]:
        """(low, high, ticks inside them): ``fixed``, or the data's range with a 6 % margin."""
        if fixed is not None:
            low, high = fixed
        else:
            finite = [v for v in values if math.isfinite(v)]
            low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
            pad = (high - low) * 0.06 or max(abs(low) * 0.06, 0.5)
            low, high = low - pad, high + pad
        if high <= low:
            high = low + 1.0
        ticks = [t for t in nice_ticks(low, high, min_step=min_step) if low - 1e-9 <= t <= high + 1e-9]
        return low, high, ticks or [low, high]

    def pixel(self, x: float, y: float) -> tuple[int, int]:
        """Image (column, row) of the data point (x, y) in the last rendered image."""
        if self._box is None or self._limits is None:
            raise RuntimeError("Chart.pixel: render the chart first")
        left, top, right, bottom = self._box
        x0, x1, y0, y1 = self._limits
        col = left + (x - x0) / (x1 - x0) * (right - left)
        row = bottom - (y - y0) / (y1 - y0) * (bottom - top)
        return int(round(col)), int(round(row))

    def render(self) -> Image.Image:
        """The chart as an RGB image of ``width`` x ``height``."""
        face, small = font(self.text_size), font(max(10, self.text_size - 3))
        image = Image.new("RGB", (self.width, self.height), BACKGROUND)
        draw = ImageDraw.Draw(image)
        xs = [float(v) for s in self.series for v in s.x]
        ys = [float(v) for s in self.series for v in s.y]
        x_lo, x_hi, x_ticks = self._axis(xs, self.x_range, self.x_step)
        y_lo, y_hi, y_ticks = self._axis(ys, self.y_range)
        y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
        x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
        y_texts = [_tick_text(t, y_step) for t in y_ticks]
        tick_w = max(_text_size(draw, t, small)[0] for t in y_texts)
        line = self.text_size + 6
        left = 12 + line + tick_w + 10
        top = 14 + (line if self.title else 0)
        right = self.width - 24
        legend = [s for s in self.series if s.label]
        bottom = self.height - (12 + 2 * line + (line if legend else 0))
        self._box, self._limits = (left, top, right, bottom), (x_lo, x_hi, y_lo, y_hi)
        # grid, ticks and their values
        for t, text in zip(y_ticks, y_texts):
            _, row = self.pixel(x_lo, t)
            draw.line([(left, row), (right, row)], fill=GRID)
            tw, th = _text_size(draw, text, small)
            draw.text((left - 8 - tw, row - th // 2 - 2), text, fill=INK, font=small)
        for t in x_ticks:
            col, _ = self.pixel(t, y_lo)
            draw.line([(col, top), (col, bottom)], fill=GRID)
            text = _tick_text(t, x_step)
            tw, _ = _text_size(draw, text, small)
            draw.text((col - tw // 2, bottom + 6), text, fill=INK, font=small)
        draw.rectangle([left, top, right, bottom], outline=INK)
        # titles
        if self.title:
            tw, _ = _text_size(draw, self.title, face)
            draw.text(((self.width - tw) // 2, 8), self.title, fill=INK, font=face)
        if self.x_label:
            tw, _ = _text_size(draw, self.x_label, face)
            draw.text(((left + right - tw) // 2, bottom + 6 + line), self.x_label, fill=INK, font=face)
        if self.y_label:
            tw, th = _text_size(draw, self.y_label, face)
            label = Image.new("RGB", (tw + 4, th + 8), BACKGROUND)
            ImageDraw.Draw(label).text((2, 0), self.y_label, fill=INK, font=face)
            rotated = label.rotate(90, expand=True)
            image.paste(rotated, (10, (top + bottom - rotated.height) // 2))
        # the data, clipped to the plot box
        plot = Image.new("RGB", image.size, BACKGROUND)
        plot.paste(image)
        pen = ImageDraw.Draw(plot)
        for i, s in enumerate(self.series):
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            points = [self.pixel(float(x), float(y)) for x, y in zip(s.x, s.y)
                      if math.isfinite(float(x)) and math.isfinite(float(y))]
            if len(points) > 1:
                pen.line(points, fill=colour, width=s.width, joint="curve")
            if s.markers:
                for col, row in points:
                    pen.ellipse([col - 5, row - 5, col + 5, row + 5], fill=colour, outline=INK)
            for (col, row), text in zip(points, s.point_labels or ()):
                pen.text((col + 8, row - self.text_size - 2), text, fill=colour, font=small)
        image.paste(plot.crop((left + 1, top + 1, right, bottom)), (left + 1, top + 1))
        draw.rectangle([left, top, right, bottom], outline=INK)
        # legend, below the x label
        x = left
        y = self.height - line - 6
        for s in legend:
            colour = SERIES_COLOURS[self.series.index(s) % len(SERIES_COLOURS)]
            draw.line([(x, y + line // 2), (x + 28, y + line // 2)], fill=colour, width=4)
            draw.text((x + 34, y), s.label, fill=INK, font=small)
            x += 34 + _text_size(draw, s.label, small)[0] + 24
        return image


def side_by_side(images: Sequence[Image.Image]) -> Image.Image:
    """Images next to each other, top-aligned, on white."""
    width = sum(i.width for i in images)
    height = max(i.height for i in images)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width
    return canvas


def save_png(image: Image.Image | np.ndarray, path: str | Path) -> None:
    """Write a PNG atomically (temporary name, then rename), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)
