"""Training pictures for a person: loss and IoU curves as a PNG, and readable TensorBoard image tiles.

``TrainingCurves`` keeps the means the trainer logs to TensorBoard (one point per log line)
and redraws ``<run>/curves.png`` (losses on the left, IoU on the right) with the points in
``<run>/curves.json``; a resumed run continues the curves of the run it resumes.
``frame_tiles`` turns a training sample into an image / ground truth / prediction grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from util.imagenet import denormalise
from util.paths import write_text_atomic
from util.pictures import Chart, Series, label_grid, overlay, save_png, side_by_side

CURVES_PNG = "curves.png"
CURVES_JSON = "curves.json"
#: curves with more points than this are drawn as lines without point markers
MARKER_LIMIT = 60


class TrainingCurves:
    """Logged means per iteration, drawn to ``<run_dir>/curves.png``.

    Args:
        run_dir: the run's folder.
        start_iteration: where this invocation starts; points of an earlier invocation up to it are
            kept (a resume), later ones dropped. 0 starts afresh.
    """

    def __init__(self, run_dir: str | Path, start_iteration: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.points: list[dict] = []
        saved = self.run_dir / CURVES_JSON
        if start_iteration > 0 and saved.is_file():
            try:
                earlier = json.loads(saved.read_text(encoding="utf-8")).get("points", [])
            except (OSError, ValueError, AttributeError):
                earlier = []  # an unreadable record only costs the earlier part of the curves
            self.points = [p for p in earlier if isinstance(p, dict) and p.get("iteration", 1e18) <= start_iteration]

    def add(self, iteration: int, mean: dict[str, float]) -> None:
        """Record the means logged at ``iteration`` (the loss terms and the IoU)."""
        values = {k: float(v) for k, v in mean.items() if k.startswith("loss/") or k == "iou"}
        self.points.append({"iteration": int(iteration), **values})

    def chart_panels(self) -> tuple[Chart, Chart]:
        """(losses, IoU) charts of the points so far."""
        steps = [p["iteration"] for p in self.points]
        markers = len(self.points) <= MARKER_LIMIT
        width = 3 if markers else 2
        losses = Chart(title="training losses (logged means)", x_label="iteration", y_label="loss",
                       width=760, height=480, x_step=1)
        keys = sorted({k for p in self.points for k in p if k.startswith("loss/")},
                      key=lambda k: (k != "loss/total", k))
        for key in keys:
            mine = [(p["iteration"], p[key]) for p in self.points if key in p]
            losses.add(Series(key.split("/", 1)[1], [s for s, _ in mine], [v for _, v in mine], markers=markers,
                              width=width))
        iou = Chart(title="IoU of the predicted masks (logged means)", x_label="iteration", y_label="IoU",
                    width=760, height=480, y_range=(0.0, 1.0), x_step=1)
        iou.add(Series("iou", steps, [p.get("iou", float("nan")) for p in self.points], markers=markers, width=width))
        return losses, iou

    def write(self) -> Path:
        """Rewrite ``curves.json`` and ``curves.png`` (each atomically); returns the PNG's path."""
        write_text_atomic(self.run_dir / CURVES_JSON, json.dumps({"points": self.points}) + "\n")
        losses, iou = self.chart_panels()
        path = self.run_dir / CURVES_PNG
        save_png(side_by_side([losses.render(), iou.render()]), path)
        return path


def object_ids(channels: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """[K, H, W] per-object masks or probabilities -> uint8 [H, W] ids (0 where no object reaches ``threshold``)."""
    best, index = channels.float().max(dim=0)
    return torch.where(best >= threshold, index + 1, 0).to(torch.uint8).cpu().numpy()


def frame_tiles(rgb: torch.Tensor, masks: torch.Tensor, prob: torch.Tensor) -> np.ndarray:
    """A labelled grid, one row per predicted frame: the frame, its ground truth, the prediction.

    Args:
        rgb: [T, 3, H, W] normalised frames of one training sample.
        masks: [T, K, H, W] ground-truth masks per object.
        prob: [K, T - 1, H, W] predicted probabilities of frames 1..T-1.

    Returns:
        uint8 [H', W', 3] (tiles enlarged to at least 192 pixels, labels in 18-pixel text).
    """
    frames = (denormalise(rgb.float()) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    rows = []
    for t in range(1, rgb.shape[0]):
        image = np.ascontiguousarray(frames[t])
        truth = overlay(image, object_ids(masks[t]))
        predicted = overlay(image, object_ids(prob[:, t - 1]))
        rows.append([image, truth, predicted])
    return label_grid(rows, ["image", "ground truth", "prediction"], [f"frame {t}" for t in range(1, rgb.shape[0])])
