"""Synthetic scenes: configuration, scene model, textures, motion and rendering (see docs/synthetic_data.md).

The generator draws textured objects (smooth noise, stripes or checker
patterns in two random colours) over a textured background seen through a
slowly panning camera. Targets follow smooth random trajectories, change
scale and rotate, occlude each other in a fixed depth order, and share the
scene with unlabelled look-alike distractors (same texture family, colours
and shape, new random texture instance). ``build_scene(config)`` holds O(T)
floats and no frames; ``render_frame(scene, t)`` draws one frame and its mask.

Mask ids are 1..K in the order objects first appear; 0 is background and
distractors. Objects that first appear mid-video do so at a multiple of 5
(the YouTube-VOS annotation stride) and are at least 60 % visible there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

TEXTURES = ("noise", "stripes", "checker")
YOUTUBE_STRIDE = 5  # YouTube-VOS keeps every 5th frame of the 30 fps original
_MIN_VISIBLE = 0.6  # fraction of an object that must be unoccluded where it first appears


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of one synthetic video.

    Attributes:
        num_frames: T.
        height, width: frame size H, W in pixels.
        num_objects: labelled targets K (ids 1..K).
        num_distractors: unlabelled look-alikes, each copying one target's style.
        object_scale: (min, max) object diameter as a fraction of min(H, W).
        late_objects: how many of the K targets first appear mid-video (at a
            multiple of 5); must be < num_objects so frame 0 has an object.
        leave_and_return: targets wander up to two radii beyond the frame
            border, so they leave the view and come back (long videos).
        texture: 'noise', 'stripes', 'checker' or 'mixed' (random per object).
        motion_speed: mean object speed as a fraction of min(H, W) per frame.
        scale_change: amplitude of the log-scale oscillation (0 = fixed size).
        rotation_speed: max mean rotation in degrees per frame.
        camera_pan: background pan amplitude as a fraction of min(H, W).
        noise_std: std of the additive sensor noise in grey levels (0 = none).
        lookalike_shift: how far a distractor's colours sit from its target's
            (length of one random RGB offset added to both colours; 0 = the
            same colours within 5 levels, which no appearance matcher can tell apart).
        seed: everything is derived from it.
    """

    num_frames: int = 30
    height: int = 240
    width: int = 432
    num_objects: int = 2
    num_distractors: int = 2
    object_scale: tuple[float, float] = (0.12, 0.3)
    late_objects: int = 0
    leave_and_return: bool = False
    texture: str = "mixed"
    motion_speed: float = 0.02
    scale_change: float = 0.25
    rotation_speed: float = 2.0
    camera_pan: float = 0.08
    noise_std: float = 3.0
    lookalike_shift: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.height < 16 or self.width < 16:
            raise ValueError("need num_frames >= 1 and height, width >= 16")
        if self.num_objects < 1 or self.num_distractors < 0:
            raise ValueError("need num_objects >= 1 and num_distractors >= 0")
        if not 0 <= self.late_objects < self.num_objects:
            raise ValueError("late_objects must be in [0, num_objects): frame 0 needs an object")
        if self.late_objects and self.num_frames <= YOUTUBE_STRIDE:
            raise ValueError(f"late objects need more than {YOUTUBE_STRIDE} frames")
        low, high = self.object_scale
        if not 0 < low <= high <= 0.45:
            raise ValueError("object_scale must satisfy 0 < min <= max <= 0.45")
        if self.lookalike_shift < 0:
            raise ValueError(f"lookalike_shift must be >= 0, got {self.lookalike_shift}")
        if self.texture not in (*TEXTURES, "mixed"):
            raise ValueError(f"texture must be one of {TEXTURES + ('mixed',)}")


# --------------------------------------------------------------------------- scene model


@dataclass
class Sprite:
    """An object's appearance: uint8 [h, w, 4] RGBA, alpha 0 or 255.

    The shape keeps a 2-pixel transparent margin so bilinear warping never
    mixes texture colours with the black outside the sprite rectangle.
    """

    rgba: np.ndarray


@dataclass
class Track:
    """Per-frame pose of an object (all arrays length T).

    Attributes:
        centre: float64 [T, 2] (x, y) of the sprite centre in frame pixels.
        scale: float64 [T] frame pixels per sprite pixel.
        angle: float64 [T] rotation in degrees (counter-clockwise on screen).
        start: first frame at which the object is drawn.
    """

    centre: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    start: int = 0


@dataclass
class SceneObject:
    """A sprite on a track; label 0 marks an unlabelled distractor."""

    label: int
    sprite: Sprite
    track: Track
    depth: float = 0.0  # larger is nearer the camera (drawn later)


@dataclass
class Scene:
    """Everything needed to render any frame independently.

    Attributes:
        height, width, num_frames: output geometry.
        background: uint8 [Hb, Wb, 3] canvas larger than the frame.
        pan: float64 [T, 2] (x, y) of the frame's top-left corner in canvas pixels.
        objects: drawn in ascending depth.
        noise: optional (positive, negative) uint8 [N, H, W, 3] noise banks,
            frame t uses entry t mod N (cheap saturating adds instead of
            drawing fresh normals per frame).
    """

    height: int
    width: int
    num_frames: int
    background: np.ndarray
    pan: np.ndarray
    objects: list[SceneObject]
    noise: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def first_frame(self) -> dict[int, int]:
        """Label -> first frame index where the object is drawn."""
        return dict(sorted((obj.label, obj.track.start) for obj in self.objects if obj.label > 0))


# --------------------------------------------------------------------------- rendering


def _affine(sprite_shape: tuple[int, int], track: Track, t: int) -> np.ndarray:
    """2x3 matrix mapping sprite pixel (x, y) to frame pixel (x, y) at frame t."""
    h, w = sprite_shape
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    theta = math.radians(float(track.angle[t]))
    s = float(track.scale[t])
    # Screen y points down, so a counter-clockwise turn on screen negates sin.
    rot = s * np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    matrix = np.empty((2, 3))
    matrix[:, :2] = rot
    matrix[:, 2] = track.centre[t] - rot @ centre
    return matrix


def _paste(frame: np.ndarray, mask: np.ndarray, obj: SceneObject, t: int) -> None:
    """Draw obj at frame t over frame [H,W,3] and write its label into mask [H,W].

    Only the bounding box of the warped sprite is warped (fast for small
    objects). Pixels with warped alpha >= 128 belong to the object; writing
    the label there (0 for distractors) is what removes occluded pixels from
    the masks of objects behind.
    """
    height, width = mask.shape
    sh, sw = obj.sprite.rgba.shape[:2]
    matrix = _affine((sh, sw), obj.track, t)
    corners = np.array([[0, 0, 1], [sw - 1, 0, 1], [0, sh - 1, 1], [sw - 1, sh - 1, 1]], dtype=np.float64)
    pts = corners @ matrix.T
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return  # entirely outside the view
    matrix[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(
        obj.sprite.rgba, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    inside = warped[..., 3] >= 128
    np.copyto(frame[y0:y1, x0:x1], warped[..., :3], where=inside[..., None])
    mask[y0:y1, x0:x1][inside] = obj.label


def render_frame(scene: Scene, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Render frame t of the scene.

    Returns:
        frame: uint8 [H, W, 3] RGB.
        mask: uint8 [H, W], 0 background/distractor, 1..K target ids.
    """
    if not 0 <= t < scene.num_frames:
        raise IndexError(f"frame {t} outside [0, {scene.num_frames})")
    shift = np.array([[1.0, 0.0, -scene.pan[t, 0]], [0.0, 1.0, -scene.pan[t, 1]]])
    frame = cv2.warpAffine(
        scene.background, shift, (scene.width, scene.height), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    mask = np.zeros((scene.height, scene.width), dtype=np.uint8)
    for obj in scene.objects:
        if t >= obj.track.start:
            _paste(frame, mask, obj, t)
    if scene.noise is not None:
        positive, negative = scene.noise
        index = t % len(positive)
        frame = cv2.subtract(cv2.add(frame, positive[index]), negative[index])
    return frame, mask


# --------------------------------------------------------------------------- textures and shapes


@dataclass(frozen=True)
class _Style:
    """Appearance parameters shared by a target and its look-alike distractors."""

    texture: str
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    feature: float  # texture period / cell as a fraction of the sprite size
    angle: float  # texture orientation in radians
    harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) for k = 2, 3, 4
    aspect: float  # shape elongation (<= 1)
    diameter: float  # pixels, before the scale oscillation


def _random_colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two clearly different RGB colours (L1 distance > 150)."""
    first = rng.integers(25, 231, 3)
    second = rng.integers(25, 231, 3)
    for _ in range(20):
        if np.abs(first - second).sum() > 150:
            break
        second = rng.integers(25, 231, 3)
    return tuple(int(v) for v in first), tuple(int(v) for v in second)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Band-limited noise: float32 [H, W] in [0, 1] with features about `cell` pixels wide."""
    grid_h = max(2, int(math.ceil(height / max(cell, 1.0)))) + 1
    grid_w = max(2, int(math.ceil(width / max(cell, 1.0)))) + 1
    coarse = rng.random((grid_h, grid_w), dtype=np.float32)
    field_ = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    low, high = float(field_.min()), float(field_.max())
    return (field_ - low) / max(high - low, 1e-6)


def _texture(rng: np.random.Generator, height: int, width: int, style: _Style) -> np.ndarray:
    """A two-colour texture of the style's family: uint8 [H, W, 3] RGB."""
    size = float(max(height, width))
    period = max(style.feature * size, 3.0)
    detail = _smooth_noise(rng, height, width, period / 3.0)
    if style.texture == "noise":
        value = 0.75 * _smooth_noise(rng, height, width, period) + 0.25 * detail
    else:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        u = xs * math.cos(style.angle) + ys * math.sin(style.angle)
        if style.texture == "stripes":
            phase = rng.uniform(0, 2 * math.pi)
            base = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * math.pi * u / period + phase))
        else:  # checker
            v = -xs * math.sin(style.angle) + ys * math.cos(style.angle)
            offset = rng.uniform(0, period, 2)
            parity = (np.floor((u + offset[0]) / period) + np.floor((v + offset[1]) / period)) % 2
            base = cv2.GaussianBlur(parity.astype(np.float32), (3, 3), 0)
        value = 0.8 * base + 0.2 * detail
    first, second = (np.array(c, dtype=np.float32) for c in style.colours)
    image = first + (second - first) * value[..., None]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _sprite(rng: np.random.Generator, style: _Style, max_scale: float) -> Sprite:
    """Rasterise a textured blob big enough for its largest on-screen size.

    The sprite is drawn at the object's maximum size so warping mostly
    shrinks it (no blocky magnification).
    """
    radius = 0.5 * style.diameter * max_scale
    side = int(math.ceil(2 * radius)) + 5
    angles = np.linspace(0, 2 * math.pi, 96, endpoint=False)
    r = np.ones_like(angles)
    for k, (amplitude, phase) in enumerate(style.harmonics, start=2):
        r += amplitude * np.cos(k * angles + phase)
    xs = r * np.cos(angles) * style.aspect
    ys = r * np.sin(angles)
    extent = max(np.abs(xs).max(), np.abs(ys).max())
    centre = (side - 1) / 2.0
    points = np.stack([centre + xs / extent * radius, centre + ys / extent * radius], axis=1)
    alpha = np.zeros((side, side), dtype=np.uint8)
    # 4 fractional bits keep the outline smooth at small sizes.
    cv2.fillPoly(alpha, [np.round(points * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    rgb = _texture(rng, side, side, style)
    return Sprite(np.dstack([rgb, alpha]))


def _random_style(rng: np.random.Generator, config: SyntheticConfig) -> _Style:
    """Appearance of one target."""
    texture = config.texture if config.texture != "mixed" else TEXTURES[int(rng.integers(len(TEXTURES)))]
    low, high = config.object_scale
    harmonics = tuple(
        (float(rng.uniform(0.0, 0.3 / k)), float(rng.uniform(0, 2 * math.pi))) for k in (2, 3, 4)
    )
    return _Style(
        texture=texture,
        colours=_random_colours(rng),
        feature=float(rng.uniform(0.2, 0.4)),
        angle=float(rng.uniform(0, math.pi)),
        harmonics=harmonics,
        aspect=float(rng.uniform(0.6, 1.0)),
        diameter=float(rng.uniform(low, high) * min(config.height, config.width)),
    )


def _lookalike(rng: np.random.Generator, style: _Style, shift: float) -> _Style:
    """A distractor style: same family and shape, size within 15 %, colours moved by one RGB offset.

    The offset (a random direction of length ``shift``, shared by both colours,
    plus +-5 levels of jitter) keeps the distractor in its target's colour
    family while leaving it distinguishable by appearance.
    """
    direction = rng.normal(size=3)
    offset = shift * direction / max(float(np.linalg.norm(direction)), 1e-6)
    colours = tuple(
        tuple(int(np.clip(round(c + o + rng.integers(-5, 6)), 0, 255)) for c, o in zip(colour, offset))
        for colour in style.colours
    )
    harmonics = tuple(
        (a * float(rng.uniform(0.8, 1.2)), p + float(rng.normal(0, 0.3))) for a, p in style.harmonics
    )
    return replace(
        style,
        colours=colours,
        harmonics=harmonics,
        angle=style.angle + float(rng.normal(0, 0.2)),
        diameter=style.diameter * float(rng.uniform(0.85, 1.15)),
    )


# --------------------------------------------------------------------------- motion


def _reflect(path: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold an unbounded 1-D path into [low, high] by mirror bounces."""
    length = max(high - low, 1e-6)
    u = np.mod(path - low, 2 * length)
    return low + np.where(u <= length, u, 2 * length - u)


def _track(
    rng: np.random.Generator,
    config: SyntheticConfig,
    start: int,
    position: np.ndarray,
    radius: float,
    amplitude: float,
) -> Track:
    """Smooth random trajectory passing through `position` at frame `start`.

    Heading = initial heading + two slow sinusoids, speed modulated by 30 %,
    so paths curve but keep going; the path is then folded into the allowed
    box (the frame, or beyond it with leave_and_return).
    """
    frames = np.arange(config.num_frames, dtype=np.float64)
    side = float(min(config.height, config.width))
    frame_centre = np.array([config.width / 2.0, config.height / 2.0])
    aim = frame_centre + rng.uniform(-0.25, 0.25, 2) * (config.width, config.height)
    # Head roughly towards the middle so the first frames move freely instead of bouncing.
    heading0 = math.atan2(aim[1] - position[1], aim[0] - position[0]) + rng.uniform(-0.8, 0.8)
    heading = np.full_like(frames, heading0)
    for _ in range(2):
        period, phase = rng.uniform(40, 160), rng.uniform(0, 2 * math.pi)
        heading += rng.uniform(0.3, 0.9) * np.sin(2 * math.pi * frames / period + phase)
    speed = config.motion_speed * side * rng.uniform(0.8, 1.2)
    speed = speed * (1 + 0.3 * np.sin(2 * math.pi * frames / rng.uniform(30, 90) + rng.uniform(0, 6.3)))
    steps = np.stack([speed * np.cos(heading), speed * np.sin(heading)], axis=1)
    path = np.cumsum(steps, axis=0)
    path = path - path[start] + position
    margin = -2.0 * radius if config.leave_and_return else 0.5 * radius
    centre = np.stack(
        [
            _reflect(path[:, 0], margin, config.width - margin),
            _reflect(path[:, 1], margin, config.height - margin),
        ],
        axis=1,
    )
    log_scale = amplitude * np.sin(2 * math.pi * frames / rng.uniform(30, 90) + rng.uniform(0, 6.3))
    spin = rng.uniform(-1, 1) * config.rotation_speed
    angle = rng.uniform(0, 360) + spin * frames + 12 * np.sin(2 * math.pi * frames / rng.uniform(30, 90))
    return Track(centre=centre, scale=np.exp(log_scale - amplitude), angle=angle, start=start)


def _place(
    rng: np.random.Generator, config: SyntheticConfig, radius: float, taken: list[tuple[np.ndarray, float]]
) -> np.ndarray:
    """A position fully inside the frame, away from `taken` (position, radius) pairs if possible."""
    best, best_gap = None, -np.inf
    for _ in range(60):
        candidate = rng.uniform((radius, radius), (config.width - radius, config.height - radius))
        gap = min((np.linalg.norm(candidate - p) - 0.8 * (radius + r) for p, r in taken), default=1.0)
        if gap > best_gap:
            best, best_gap = candidate, gap
        if gap > 0:
            break
    return best


# --------------------------------------------------------------------------- scene construction


def _background(
    rng: np.random.Generator, config: SyntheticConfig, styles: Sequence[_Style]
) -> tuple[np.ndarray, np.ndarray]:
    """Textured canvas and slow sinusoidal pan: (uint8 [Hb, Wb, 3], float64 [T, 2]).

    Half of the time one background colour is borrowed from a target (camouflage), so
    colour alone cannot separate targets from the background either.
    """
    side = min(config.height, config.width)
    amplitude = config.camera_pan * side
    pad = int(math.ceil(2 * amplitude)) + 2
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    feature, angle = float(rng.uniform(0.06, 0.15)), float(rng.uniform(0, math.pi))
    colours = _random_colours(rng)
    if styles and rng.random() < 0.5:
        colours = (styles[int(rng.integers(len(styles)))].colours[int(rng.integers(2))], colours[1])
    style = _Style(texture, colours, feature, angle, (), 1.0, 0.0)
    canvas = _texture(rng, config.height + pad, config.width + pad, style)
    # A second, coarse layer breaks the periodicity of stripes/checkers.
    shade = _smooth_noise(rng, config.height + pad, config.width + pad, side / 2.0)
    canvas = np.clip(canvas * (0.7 + 0.5 * shade[..., None]), 0, 255).astype(np.uint8)
    frames = np.arange(config.num_frames, dtype=np.float64)
    pan = np.stack(
        [
            amplitude * (1 + np.sin(2 * math.pi * frames / rng.uniform(120, 300) + rng.uniform(0, 6.3))),
            amplitude * (1 + np.sin(2 * math.pi * frames / rng.uniform(120, 300) + rng.uniform(0, 6.3))),
        ],
        axis=1,
    )
    return canvas, pan


def _noise_bank(rng: np.random.Generator, config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """Five frames of Gaussian sensor noise split into saturating-add parts."""
    if config.noise_std <= 0:
        return None
    noise = rng.normal(0, config.noise_std, (5, config.height, config.width, 3)).astype(np.float32)
    positive = np.clip(noise, 0, 255).round().astype(np.uint8)
    negative = np.clip(-noise, 0, 255).round().astype(np.uint8)
    return positive, negative


def _late_start(rng: np.random.Generator, num_frames: int) -> int:
    """A multiple of 5 in [5, ~60 % of the video] (and < T)."""
    last = max(1, min(int(0.6 * num_frames), num_frames - 1) // YOUTUBE_STRIDE)
    return YOUTUBE_STRIDE * int(rng.integers(1, last + 1))


def _visible_fraction(scene: Scene, obj: SceneObject, t: int) -> float:
    """Visible pixels of obj at frame t over its pixels when drawn alone."""
    alone = np.zeros((scene.height, scene.width), dtype=np.uint8)
    probe = SceneObject(1, obj.sprite, obj.track, obj.depth)
    _paste(np.zeros((scene.height, scene.width, 3), np.uint8), alone, probe, t)
    area = int(np.count_nonzero(alone))
    if area == 0:
        return 0.0
    _, mask = render_frame(replace(scene, noise=None), t)
    return float(np.count_nonzero(mask == obj.label)) / area


def _ensure_visible(scene: Scene) -> None:
    """Bring targets forward until each is >= 60 % visible at its first frame."""
    targets = sorted((o for o in scene.objects if o.label > 0), key=lambda o: (o.track.start, o.label))
    for _ in range(3):
        changed = False
        for obj in targets:
            if _visible_fraction(scene, obj, obj.track.start) < _MIN_VISIBLE:
                obj.depth = max(o.depth for o in scene.objects) + 1.0
                scene.objects.sort(key=lambda o: o.depth)
                changed = True
        if not changed:
            return


def build_scene(config: SyntheticConfig) -> Scene:
    """Build the deterministic scene for a config (no frames rendered except checks).

    Targets get ids 1..K: the (K - late_objects) frame-0 objects first, then
    the late ones in order of appearance. Each distractor copies the style of
    target (j mod K).
    """
    rng = np.random.default_rng(config.seed)
    starts = [0] * (config.num_objects - config.late_objects)
    starts += sorted(_late_start(rng, config.num_frames) for _ in range(config.late_objects))
    styles = [_random_style(rng, config) for _ in starts]
    background, pan = _background(rng, config, styles)
    entries = [(label, style, start) for label, (style, start) in enumerate(zip(styles, starts), start=1)]
    entries += [
        (0, _lookalike(rng, styles[j % len(styles)], config.lookalike_shift), 0) for j in range(config.num_distractors)
    ]

    objects: list[SceneObject] = []
    taken: list[tuple[np.ndarray, float]] = []
    for label, style, start in entries:
        amplitude = config.scale_change * float(rng.uniform(0.5, 1.0))
        # On-screen size oscillates in diameter * exp(+-amplitude); the sprite is drawn at the
        # largest size and the track's scale (<= 1) shrinks it.
        max_scale = math.exp(amplitude)
        sprite = _sprite(rng, style, max_scale)
        radius = 0.5 * style.diameter * max_scale
        position = _place(rng, config, radius, taken if start == 0 else [])
        if start == 0:
            taken.append((position, radius))
        track = _track(rng, config, start, position, radius, amplitude)
        objects.append(SceneObject(label, sprite, track, depth=float(rng.random())))
    objects.sort(key=lambda o: o.depth)
    noise = _noise_bank(rng, config)
    scene = Scene(config.height, config.width, config.num_frames, background, pan, objects, noise)
    _ensure_visible(scene)
    return scene
