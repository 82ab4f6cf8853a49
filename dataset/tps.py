"""Thin-plate-spline warps in numpy + OpenCV (the `thinplate` package is not on PyPI).

Coordinates are normalised (x, y) in [0, 1]. The warp is defined backwards,
as needed by ``cv2.remap``: a TPS ``f`` is fitted so that ``f(dst_i) =
src_i - dst_i`` and output pixel ``p`` samples the input at ``p + f(p)``; a
control point at ``src_i`` in the input therefore lands at ``dst_i``.

The solve is the *reduced* TPS system: the radial weights must sum to zero
(and be orthogonal to x and y), so the last weight is eliminated and the
system has n + 2 unknowns per coordinate instead of n + 3.
"""

from __future__ import annotations

import cv2
import numpy as np


def _kernel(r2: np.ndarray) -> np.ndarray:
    """TPS radial basis U = r^2 log r^2 (0 at r = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = r2 * np.log(r2)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _pairwise_r2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 2], [M, 2] -> [N, M] squared distances."""
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def solve_tps(ctrl: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Reduced TPS fit through ``values`` at ``ctrl``.

    Args:
        ctrl: [n, 2] control points (x, y), n >= 3 and not collinear.
        values: [n, D] values at the control points.

    Returns:
        theta [n + 2, D]: radial weights w_0..w_{n-2} (w_{n-1} = -sum) followed by the
        affine part (a_1, a_x, a_y).
    """
    ctrl = np.asarray(ctrl, np.float64)
    n = ctrl.shape[0]
    k = _kernel(_pairwise_r2(ctrl, ctrl))
    p = np.concatenate([np.ones((n, 1)), ctrl], axis=1)  # [n, 3]
    # With w_{n-1} = -sum(w_0..w_{n-2}): K w = (K[:, :-1] - K[:, -1:]) w'.
    k_red = k[:, :-1] - k[:, -1:]
    top = np.concatenate([k_red, p], axis=1)  # [n, n + 2]
    # Remaining side conditions: sum_i w_i x_i = sum_i w_i y_i = 0, reduced the same way.
    side = (p[:-1, 1:] - p[-1:, 1:]).T  # [2, n - 1]
    bottom = np.concatenate([side, np.zeros((2, 3))], axis=1)  # [2, n + 2]
    system = np.concatenate([top, bottom], axis=0)  # [n + 2, n + 2]
    rhs = np.concatenate([np.asarray(values, np.float64), np.zeros((2, values.shape[1]))], axis=0)
    return np.linalg.solve(system, rhs)


def evaluate_tps(theta: np.ndarray, ctrl: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Evaluate a reduced TPS (see :func:`solve_tps`) at points [M, 2] -> [M, D]."""
    ctrl = np.asarray(ctrl, np.float64)
    w_red, affine = theta[:-3], theta[-3:]
    w = np.concatenate([w_red, -w_red.sum(0, keepdims=True)], axis=0)  # [n, D]
    u = _kernel(_pairwise_r2(points, ctrl))  # [M, n]
    return u @ w + affine[0] + points @ affine[1:]


def tps_maps(src: np.ndarray, dst: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (float32 [H, W] x and y in pixels) moving normalised ``src`` points to ``dst``."""
    theta = solve_tps(dst, np.asarray(src, np.float64) - np.asarray(dst, np.float64))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    grid = np.stack([xs.ravel() / max(1, width - 1), ys.ravel() / max(1, height - 1)], axis=1)
    offset = evaluate_tps(theta, dst, grid)
    map_x = (xs.ravel() + offset[:, 0] * (width - 1)).reshape(height, width)
    map_y = (ys.ravel() + offset[:, 1] * (height - 1)).reshape(height, width)
    return map_x.astype(np.float32), map_y.astype(np.float32)


def random_control_points(
    rng: np.random.Generator, height: int, width: int, count: int = 12, sigma: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """STCN-style random control points: distinct rows and distinct columns, jittered by N(0, sigma^2).

    Returns:
        (src, dst), each [count, 2] normalised (x, y).
    """
    count = min(count, height, width)
    cols = rng.choice(width, size=count, replace=False) / max(1, width - 1)
    rows = rng.choice(height, size=count, replace=False) / max(1, height - 1)
    src = np.stack([cols, rows], axis=1)
    dst = src + rng.normal(0.0, sigma, size=src.shape)
    return src, dst


def warp_image_and_mask(
    image: np.ndarray, mask: np.ndarray, src: np.ndarray, dst: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """TPS-warp an image (linear) and its mask (nearest) so that ``src`` moves to ``dst``.

    image: [H, W, C] or [H, W]; mask: [H, W] -> same shapes and dtypes. Outside: 0 (constant border).
    """
    height, width = mask.shape[:2]
    map_x, map_y = tps_maps(src, dst, height, width)
    warped = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    warped_mask = cv2.remap(mask, map_x, map_y, interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return warped, warped_mask
