"""DAVIS J / F / J&F scoring that reproduces the official davis2017-evaluation toolkit.

Definitions follow davis2017-evaluation's semi-supervised task; see ``docs/metrics.md``.

* J: region similarity (IoU) per frame and object, 1 when both masks are empty.
* F: boundary F-measure per frame and object on 1-px ``seg2bmap`` boundaries, matched within a disk
  of radius ``ceil(0.008 * sqrt(H^2 + W^2))`` px.
* Per object over the evaluated frames (all GT frames except the first and the last): Mean,
  Recall (fraction of frames with a value > 0.5) and Decay (mean of the first quarter minus mean
  of the last quarter, 4 bins with inclusive right edges).
* Global numbers are means over all objects of all scored sequences.

Three deliberate deviations from the toolkit, all only where the toolkit gives no usable number:

1. A predicted id larger than the number of objects (K) in an evaluated frame makes the toolkit
   ``sys.exit()`` the whole run. Here only that sequence is excluded (reported as a problem, like
   the ``aborted`` list of the golden JSON) and every other sequence is scored.
2. The toolkit casts the Decay bin edges to uint8, which gives NaN or wrong numbers for 256 or
   more evaluated frames. Here the edges are plain integers, so Decay is correct for any length.
3. Where the GT root also holds the frames (``JPEGImages/[480p/]<seq>/``, the DAVIS layout), a
   sequence whose GT folder misses frames is excluded and reported with the missing frame names;
   the toolkit would silently score it over the frames that happen to be there. GT annotated at a
   regular stride (every 5th frame) is complete when no frame at that stride is missing.

Whenever sequences are excluded, the headlines say "over N of M sequences" (``Evaluation.coverage``).
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from util.progress import progress

BOUND_TH = 0.008
"""Relative boundary tolerance of the DAVIS toolkits (fraction of the image diagonal)."""

N_DECAY_BINS = 4
RECALL_THRESHOLD = 0.5
SINGLE_OBJECT_THRESHOLD = 128
"""Single-object predictions are foreground where > 128 (0/255 convention of the 2016 fork)."""

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""Image files counted as frames in ``JPEGImages/[480p/]<seq>/``."""
MISSING_SHOWN = 10
"""Missing GT frame names listed per sequence (the count is always given)."""

CHUNK_FRAMES = 16
"""Evaluated frames per work item: small enough to balance a pool, large enough to amortise it."""

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
PER_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


# --------------------------------------------------------------------------------------------
# Per-frame measures
# --------------------------------------------------------------------------------------------


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Boundary tolerance in pixels for an H x W frame.

    ``bound_th < 1`` is relative to the diagonal, as in the toolkits: ``ceil(bound_th * diag)``
    (480x854 -> 8, 37x53 -> 1); ``bound_th >= 1`` is already in pixels.
    """
    if bound_th >= 1:
        return int(bound_th)
    # H^2 + W^2 is exact in float64 and sqrt is correctly rounded, so this equals the toolkit's
    # ``np.ceil(bound_th * np.linalg.norm(shape))`` bit for bit.
    return int(math.ceil(bound_th * math.sqrt(float(height * height + width * width))))


@lru_cache(maxsize=64)
def disk(radius: int) -> np.ndarray:
    """Disk footprint ``{(dy, dx): dy^2 + dx^2 <= r^2}`` as uint8 [2r+1, 2r+1] (skimage ``disk``)."""
    offsets = np.arange(-radius, radius + 1)
    inside = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * radius
    kernel = inside.astype(np.uint8)
    kernel.setflags(write=False)
    return kernel


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """1-px boundary map of a binary mask, exactly as the DAVIS ``seg2bmap``.

    A pixel is on the boundary if it differs from its east, south or south-east neighbour.
    Outside the image is not background: in the last row only the east neighbour is compared, in
    the last column only the south neighbour, and the bottom-right pixel is never a boundary.

    Args:
        mask: [H, W] array, non-zero = foreground.

    Returns:
        bool [H, W], C-contiguous.
    """
    seg = np.asarray(mask).astype(bool, copy=False)
    bmap = np.zeros(seg.shape, dtype=bool)
    if seg.shape[0] == 0 or seg.shape[1] == 0:
        return bmap
    core = seg[:-1, :-1]
    bmap[:-1, :-1] = (core != seg[:-1, 1:]) | (core != seg[1:, :-1]) | (core != seg[1:, 1:])
    bmap[-1, :-1] = seg[-1, :-1] != seg[-1, 1:]
    bmap[:-1, -1] = seg[:-1, -1] != seg[1:, -1]
    bmap[-1, -1] = False
    return bmap


def _f_from_boundaries(gt_bmap: np.ndarray, pred_bmap: np.ndarray, radius: int) -> float:
    """Boundary F-measure of two bool [h, w] boundary maps (C-contiguous) with a disk tolerance."""
    n_gt = int(np.count_nonzero(gt_bmap))
    n_pred = int(np.count_nonzero(pred_bmap))
    # Empty-boundary conventions of the toolkit (on boundary counts, not mask areas):
    # none on either side -> F = 1; none on exactly one side -> precision or recall is 0 -> F = 0.
    if n_gt == 0 and n_pred == 0:
        return 1.0
    if n_gt == 0 or n_pred == 0:
        return 0.0
    kernel = disk(radius)
    gt_dil = cv2.dilate(gt_bmap.view(np.uint8), kernel).view(bool)
    pred_dil = cv2.dilate(pred_bmap.view(np.uint8), kernel).view(bool)
    precision = int(np.count_nonzero(pred_bmap & gt_dil)) / float(n_pred)
    recall = int(np.count_nonzero(gt_bmap & pred_dil)) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def object_frame_scores(gt: np.ndarray, pred: np.ndarray, radius: int) -> tuple[float, float]:
    """(J, F) of one object in one frame, computed on the bounding box of ``gt | pred``.

    Equal to J = |G & P| / |G | P| (1 if both are empty) and F on the full frame (the toolkit's
    definitions; ``tests/test_davis_metrics.py`` checks both) but faster for small objects: every
    boundary pixel touches a foreground pixel, so it lies in the bounding box grown by one pixel
    up/left; growing it by one pixel down/right as well keeps the ``seg2bmap`` comparisons of the
    box's last row/column identical to the full frame (that row/column is either background or
    the real image edge). Dilation is local, so matching inside the box needs nothing outside it.

    Args:
        gt, pred: bool [H, W], C-contiguous.
        radius: boundary tolerance in pixels for the full frame size.
    """
    union = gt | pred
    x, y, w, h = cv2.boundingRect(union.view(np.uint8))
    if w == 0 or h == 0:
        return 1.0, 1.0  # absent from both: J = 1 by convention, and no boundaries -> F = 1
    height, width = union.shape
    y0, y1 = max(y - 1, 0), min(y + h + 1, height)
    x0, x1 = max(x - 1, 0), min(x + w + 1, width)
    gt_box, pred_box = gt[y0:y1, x0:x1], pred[y0:y1, x0:x1]
    j = int(np.count_nonzero(gt_box & pred_box)) / int(np.count_nonzero(union[y0:y1, x0:x1]))
    f = _f_from_boundaries(seg2bmap(gt_box), seg2bmap(pred_box), radius)
    return j, f


# --------------------------------------------------------------------------------------------
# Per-object statistics
# --------------------------------------------------------------------------------------------


def decay_edges(n_frames: int, n_bins: int = N_DECAY_BINS) -> np.ndarray:
    """Decay bin edges ``round(linspace(1, n, bins + 1) + 1e-10) - 1`` as int64 [bins + 1].

    Bin i is ``values[e[i] : e[i+1] + 1]`` (inclusive right edge, neighbouring bins share a frame).
    The toolkit stores these edges as uint8, which wraps for n >= 256; int64 does not.
    """
    return (np.round(np.linspace(1, n_frames, n_bins + 1) + 1e-10) - 1).astype(np.int64)


def db_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame J or F values, float [n], n >= 1.

    Mean = nanmean; Recall = fraction of frames with value > 0.5 (NaN counts as a miss, as in the
    toolkit); Decay = nanmean(first bin) - nanmean(last bin) over 4 bins.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(np.nanmean(values))
    recall = float(np.mean(values > RECALL_THRESHOLD))
    edges = decay_edges(len(values))
    first = values[edges[0] : edges[1] + 1]
    last = values[edges[-2] : edges[-1] + 1]
    decay = float(np.nanmean(first) - np.nanmean(last))
    return mean, recall, decay


# --------------------------------------------------------------------------------------------
# Dataset layout
# --------------------------------------------------------------------------------------------


class ScoringError(ValueError):
    """A problem that stops the whole evaluation (GT side: root, sequence list, GT folder).

    A ``ValueError``: it is the user's data, reported in one line by the drivers (util/errors.py).
    """


#: PNG modes the toolkit's ``np.array(PIL.Image.open(path))`` turns into object ids
MASK_MODES = ("P", "L", "1")


def _mode_error(path: Path, mode: str) -> ValueError:
    bits = " (16-bit greyscale)" if mode.startswith("I") else ""
    return ValueError(
        f"{path}: PNG mode {mode!r}{bits} is not supported by the DAVIS toolkit; save masks as palette ('P') "
        "or 8-bit greyscale ('L') PNGs whose pixel values are object ids"
    )


def check_mask_mode(path: Path) -> None:
    """Raise ``ValueError`` naming ``path`` unless its header says a mode :func:`read_mask` reads."""
    try:
        with Image.open(path) as image:
            mode = image.mode
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read PNG ({error}); replace this file") from error
    if mode not in MASK_MODES:
        raise _mode_error(path, mode)


def read_mask(path: Path) -> np.ndarray:
    """Read a mask PNG like the toolkit's ``np.array(PIL.Image.open(path))``.

    Palette ('P') PNGs give palette indices, greyscale ('L') the grey values, 1-bit ('1') 0/1.

    Returns:
        uint8 [H, W].

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable file or an unsupported mode (RGB etc.), naming the file.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in MASK_MODES:
                raise _mode_error(path, image.mode)
            array = np.array(image)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read PNG ({error})") from error
    return array.astype(np.uint8, copy=False)  # mode '1' gives bool -> 0/1, as the toolkit sees it


def annotations_dir(gt_root: Path) -> Path:
    """The folder holding ``<seq>/`` GT folders: ``<root>/Annotations/480p`` or ``<root>/Annotations``."""
    gt_root = Path(gt_root)
    if not gt_root.is_dir():
        raise ScoringError(
            f"GT root {gt_root} does not exist or is not a folder; pass --gt the dataset root that "
            "contains Annotations/ (e.g. .../DAVIS for Annotations/480p/<seq>/)"
        )
    for candidate in (gt_root / "Annotations" / "480p", gt_root / "Annotations"):
        if candidate.is_dir():
            return candidate
    raise ScoringError(
        f"no Annotations/480p/ or Annotations/ folder under GT root {gt_root}; pass --gt the "
        "dataset root (the folder that contains Annotations/), not the Annotations folder itself"
    )


def read_sequence_list(path: Path) -> list[str]:
    """Sequence names from an ImageSets-style file, one per line (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ScoringError(f"sequence list {path} not found; pass an existing file to --sequences")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [name for name in names if name]


def default_sequences(gt_root: Path, set_name: str = "val", single_object: bool = False) -> list[str]:
    """Default sequence list of a GT root.

    ``ImageSets/2017/<set>.txt`` (``ImageSets/2016/<set>.txt`` first in single-object mode), else
    ``ImageSets/<set>.txt``, else every folder under the annotations folder, sorted.
    """
    gt_root = Path(gt_root)
    years = ("2016", "2017") if single_object else ("2017",)
    candidates = [gt_root / "ImageSets" / year / f"{set_name}.txt" for year in years]
    candidates.append(gt_root / "ImageSets" / f"{set_name}.txt")
    for candidate in candidates:
        if candidate.is_file():
            return read_sequence_list(candidate)
    return sorted(p.name for p in annotations_dir(gt_root).iterdir() if p.is_dir())


def frames_dir(gt_root: Path, ann_dir: Path) -> Path | None:
    """The folder holding ``<seq>/`` frame folders beside the annotations, if the GT root has one.

    ``JPEGImages/480p`` goes with ``Annotations/480p``; ``JPEGImages`` with either.
    """
    gt_root = Path(gt_root)
    candidates = [gt_root / "JPEGImages"]
    if ann_dir.name == "480p":
        candidates.insert(0, gt_root / "JPEGImages" / "480p")
    return next((c for c in candidates if c.is_dir() and any(p.is_dir() for p in c.iterdir())), None)


def missing_gt_frames(gt_frames: Sequence[str], frame_dir: Path) -> list[str]:
    """Frames of ``frame_dir`` that the GT should annotate but does not (names as ``<stem>.png``).

    The GT is expected at every frame at its own stride (the most common step between annotated
    frames: 1 for DAVIS, 5 for GT annotated every 5th frame), from the start of the video to its end.

    Args:
        gt_frames: sorted ``*.png`` names of the GT folder.
        frame_dir: the sequence's frame folder.
    """
    stems = sorted(p.stem for p in frame_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    position = {stem: i for i, stem in enumerate(stems)}
    annotated = sorted(position[Path(name).stem] for name in gt_frames if Path(name).stem in position)
    if not annotated:
        return []
    steps = np.diff(annotated)
    stride = int(np.bincount(steps).argmax()) if len(steps) else 1
    stride = max(stride, 1)
    have = set(annotated)
    start = annotated[0] % stride
    return [f"{stems[i]}.png" for i in range(start, len(stems), stride) if i not in have]


def list_gt_frames(seq_dir: Path) -> list[str]:
    """Sorted ``*.png`` file names of a GT sequence folder (hidden files skipped, as ``glob``)."""
    return sorted(p.name for p in seq_dir.iterdir() if p.name.endswith(".png") and not p.name.startswith("."))


# --------------------------------------------------------------------------------------------
# Sequence evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkTask:
    """One work item: some evaluated frames of one sequence."""

    sequence: str
    gt_dir: str
    pred_dir: str
    frames: tuple[str, ...]
    n_objects: int
    shape: tuple[int, int]
    single_object: bool = False
    fg_threshold: int = SINGLE_OBJECT_THRESHOLD


@dataclass
class ChunkResult:
    """Scores of a ``ChunkTask``: J and F float64 [K, m]; ``fatal`` set if no numbers could be made."""

    j: np.ndarray
    f: np.ndarray
    fatal: str | None = None
    extra_id: str | None = None
    pred_max: int = 0


def _gt_objects(gt: np.ndarray, single_object: bool) -> np.ndarray:
    """GT index map [H, W] after the toolkit's conventions: 255 -> 0, merged to 0/1 if single."""
    gt = np.where(gt == 255, 0, gt).astype(np.uint8)
    return (gt > 0).astype(np.uint8) if single_object else gt


def score_chunk(task: ChunkTask) -> ChunkResult:
    """Score the frames of one work item (runs in a pool worker)."""
    n_obj, n = task.n_objects, len(task.frames)
    j = np.zeros((n_obj, n), dtype=np.float64)
    f = np.zeros((n_obj, n), dtype=np.float64)
    result = ChunkResult(j, f)
    radius = boundary_radius(*task.shape)
    for col, name in enumerate(task.frames):
        gt_path, pred_path = Path(task.gt_dir) / name, Path(task.pred_dir) / name
        try:
            gt = read_mask(gt_path)
        except (FileNotFoundError, ValueError) as error:
            result.fatal = f"GT frame {gt_path} cannot be read ({error})"
            return result
        if gt.shape != task.shape:
            result.fatal = f"GT frame {gt_path} is {gt.shape[0]}x{gt.shape[1]}, frame 0 is {task.shape}"
            return result
        try:
            pred = read_mask(pred_path)
        except FileNotFoundError:
            result.fatal = (
                f"missing prediction {pred_path}: every evaluated frame (all GT frames but the first "
                "and the last) needs a PNG with the GT frame's name"
            )
            return result
        except ValueError as error:
            result.fatal = str(error)
            return result
        if pred.shape != gt.shape:
            result.fatal = (
                f"prediction {pred_path} is {pred.shape[0]}x{pred.shape[1]} but the GT {gt_path} is "
                f"{gt.shape[0]}x{gt.shape[1]}; save predictions at the GT resolution"
            )
            return result
        gt = _gt_objects(gt, task.single_object)
        frame_max = int(pred.max())
        result.pred_max = max(result.pred_max, frame_max)
        if task.single_object:
            pred = (pred > task.fg_threshold).astype(np.uint8)
        elif frame_max > n_obj and result.extra_id is None:
            result.extra_id = (
                f"prediction {pred_path} contains id {frame_max} but the sequence has {n_obj} "
                "object(s) (max id of the first GT frame); the official toolkit aborts the whole run"
            )
        for k in range(1, n_obj + 1):
            j[k - 1, col], f[k - 1, col] = object_frame_scores(gt == k, pred == k, radius)
    return result


@dataclass(frozen=True)
class ObjectStats:
    """Mean / Recall / Decay of J and F for one object."""

    name: str
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float

    def as_dict(self) -> dict[str, float]:
        """Keys as in the toolkit's tables: J-Mean, J-Recall, J-Decay, F-Mean, ..."""
        return {
            "J-Mean": self.j_mean,
            "J-Recall": self.j_recall,
            "J-Decay": self.j_decay,
            "F-Mean": self.f_mean,
            "F-Recall": self.f_recall,
            "F-Decay": self.f_decay,
        }


@dataclass
class SequenceResult:
    """Per-frame scores of one sequence: J and F float64 [K, n_evaluated_frames].

    ``problem`` is set for a sequence that is excluded from the global numbers (extra predicted id,
    missing or mis-sized prediction, too few GT frames). For an extra id, ``j``/``f`` still hold
    the scores with the extra ids ignored (treated as background), for information only.
    """

    name: str
    n_objects: int
    frames: list[str]
    j: np.ndarray
    f: np.ndarray
    problem: str | None = None
    notes: list[str] = field(default_factory=list)
    pred_max: int = 0  # largest raw prediction value over the evaluated frames
    missing_gt: list[str] = field(default_factory=list)  # GT frames missing (excluded as incomplete)

    @property
    def scored(self) -> bool:
        return self.problem is None

    @property
    def has_numbers(self) -> bool:
        return self.j.shape == (self.n_objects, len(self.frames)) and len(self.frames) > 0

    def object_stats(self) -> list[ObjectStats]:
        """One ``ObjectStats`` per object ``<seq>_<k>``, k = 1..K (empty without numbers)."""
        if not self.has_numbers:
            return []
        stats = []
        for k in range(self.n_objects):
            jm, jr, jd = db_statistics(self.j[k])
            fm, fr, fd = db_statistics(self.f[k])
            stats.append(ObjectStats(f"{self.name}_{k + 1}", jm, jr, jd, fm, fr, fd))
        return stats


@dataclass(frozen=True)
class SequencePlan:
    """What to evaluate in one sequence, decided from its GT folder before any scoring."""

    name: str
    gt_dir: Path
    pred_dir: Path
    frames: list[str]
    n_objects: int
    shape: tuple[int, int]
    problem: str | None = None
    missing_gt: list[str] = field(default_factory=list)  # frames the GT folder lacks (see missing_gt_frames)

    def chunks(self, single_object: bool, fg_threshold: int, size: int = CHUNK_FRAMES) -> list[ChunkTask]:
        return [
            ChunkTask(
                self.name,
                str(self.gt_dir),
                str(self.pred_dir),
                tuple(self.frames[start : start + size]),
                self.n_objects,
                self.shape,
                single_object,
                fg_threshold,
            )
            for start in range(0, len(self.frames), size)
        ]


def plan_sequence(
    ann_dir: Path, pred_root: Path, name: str, single_object: bool = False, frame_root: Path | None = None
) -> SequencePlan:
    """Read a sequence's GT frame list and first frame: evaluated frames, K and frame size.

    With ``frame_root`` (``JPEGImages/[480p/]``), a GT folder that misses frames of
    ``<frame_root>/<name>/`` makes the sequence excluded (``problem``), the frames listed.

    Raises:
        ScoringError: the GT sequence folder is missing or empty.
    """
    gt_dir, pred_dir = ann_dir / name, Path(pred_root) / name
    if not gt_dir.is_dir():
        raise ScoringError(
            f"GT folder {gt_dir} for sequence {name!r} not found; check the sequence list "
            "(--sequences / ImageSets) against the folders under the annotations folder"
        )
    frames = list_gt_frames(gt_dir)
    if not frames:
        raise ScoringError(f"GT folder {gt_dir} contains no .png annotations")
    try:
        first = read_mask(gt_dir / frames[0])
    except ValueError as error:
        raise ScoringError(str(error)) from error
    first = _gt_objects(first, single_object)
    # Single-object (DAVIS-2016 fork): one merged object, whether or not frame 0 shows it.
    n_objects = 1 if single_object else int(first.max())
    shape = (int(first.shape[0]), int(first.shape[1]))
    problem = None
    frame_dir = None if frame_root is None else Path(frame_root) / name
    missing = missing_gt_frames(frames, frame_dir) if frame_dir is not None and frame_dir.is_dir() else []
    if missing:
        shown = ", ".join(missing[:MISSING_SHOWN]) + (
            f", ... ({len(missing) - MISSING_SHOWN} more)" if len(missing) > MISSING_SHOWN else ""
        )
        problem = (
            f"incomplete ground truth: GT folder {gt_dir} misses {len(missing)} of the frames in {frame_dir} "
            f"({shown}); the sequence is not scored: restore the missing annotations"
        )
    elif len(frames) < 3:
        problem = (
            f"GT folder {gt_dir} has {len(frames)} frame(s); the first and the last are never "
            "evaluated, so at least 3 are needed (the official toolkit crashes here)"
        )
    elif not pred_dir.is_dir():
        problem = f"prediction folder {pred_dir} not found; expected <pred>/{name}/<frame>.png"
    return SequencePlan(name, gt_dir, pred_dir, frames[1:-1], n_objects, shape, problem, missing)


def _merge_chunks(plan: SequencePlan, results: Sequence[ChunkResult]) -> SequenceResult:
    """Concatenate chunk scores of one sequence and turn chunk errors into a sequence problem."""
    seq = SequenceResult(
        plan.name,
        plan.n_objects,
        list(plan.frames),
        np.concatenate([r.j for r in results], axis=1),
        np.concatenate([r.f for r in results], axis=1),
    )
    fatal = next((r.fatal for r in results if r.fatal), None)
    extra = next((r.extra_id for r in results if r.extra_id), None)
    if fatal is not None:
        seq.problem = fatal
        seq.j = seq.f = np.zeros((plan.n_objects, 0))
    elif extra is not None:
        seq.problem = extra
    return seq


def _run_tasks(tasks: list[ChunkTask], workers: int) -> list[ChunkResult]:
    """Score work items, in order, inline (1 worker) or in a process pool."""
    if workers <= 1 or len(tasks) <= 1:
        return [score_chunk(task) for task in progress(tasks, "scoring chunks")]
    # Largest items first so the pool does not wait on one big item at the end.
    order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i].frames) * math.prod(tasks[i].shape))
    results: list[ChunkResult | None] = [None] * len(tasks)
    # 'spawn', not fork: callers (the eval drivers) have torch's thread pools and a writer thread
    # running, and a forked child can inherit one of their locks held and hang forever.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), initializer=_init_worker, mp_context=context
    ) as pool:
        futures = {i: pool.submit(score_chunk, tasks[i]) for i in order}
        for i, future in progress(futures.items(), "scoring chunks"):
            results[i] = future.result()
    return results  # type: ignore[return-value]


def _init_worker() -> None:
    """Pool workers run one item each per core; OpenCV threads would only oversubscribe."""
    cv2.setNumThreads(1)


@dataclass
class Evaluation:
    """Result of ``evaluate``: sequences in list order, plus timing and mode."""

    sequences: list[SequenceResult]
    single_object: bool = False
    seconds: float = 0.0

    @property
    def scored(self) -> list[SequenceResult]:
        return [s for s in self.sequences if s.scored]

    @property
    def excluded(self) -> list[SequenceResult]:
        return [s for s in self.sequences if not s.scored]

    def object_stats(self) -> list[ObjectStats]:
        """Statistics of every object of every scored sequence, in sequence then object order."""
        return [stats for seq in self.scored for stats in seq.object_stats()]

    def n_object_frames(self) -> int:
        return sum(s.j.size for s in self.scored)

    def coverage(self) -> str:
        """'over N of M sequences' when some were excluded, else '' (for headlines)."""
        if not self.excluded:
            return ""
        return f"over {len(self.scored)} of {len(self.sequences)} sequences"

    def global_row(self) -> dict[str, float]:
        """Global numbers as the toolkit: means over objects; J&F-Mean = (J-Mean + F-Mean) / 2."""
        return global_row(self.object_stats())


def global_row(stats: Sequence[ObjectStats]) -> dict[str, float]:
    """Toolkit global row from per-object statistics (NaN everywhere when there are no objects)."""
    if not stats:
        return dict.fromkeys(GLOBAL_COLUMNS, float("nan"))
    columns = {
        key: float(np.mean([getattr(s, attr) for s in stats]))
        for key, attr in zip(GLOBAL_COLUMNS[1:], ("j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay"))
    }
    return {"J&F-Mean": (columns["J-Mean"] + columns["F-Mean"]) / 2.0, **columns}


def evaluate(
    gt_root: str | Path,
    pred_root: str | Path,
    sequences: Iterable[str] | None = None,
    *,
    set_name: str = "val",
    single_object: bool = False,
    workers: int | None = None,
) -> Evaluation:
    """Score a prediction folder against a DAVIS-layout GT root.

    Args:
        gt_root: folder containing ``Annotations/480p/<seq>/`` or ``Annotations/<seq>/``.
        pred_root: folder containing ``<seq>/<frame>.png``.
        sequences: names to score, in output order; default from ``default_sequences``.
        set_name: ImageSets subset used for the default sequence list.
        single_object: DAVIS-2016 convention (see ``docs/metrics.md``).
        workers: processes; default ``os.cpu_count()``; 1 runs inline.

    A sequence whose GT folder misses frames of ``<gt_root>/JPEGImages/[480p/]<seq>/`` (when the
    GT root has those) is excluded and reported (``plan_sequence``), like one with an extra id.

    Raises:
        ScoringError: GT root, sequence list or a GT sequence folder is missing or unusable.
    """
    start = time.perf_counter()
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    ann_dir = annotations_dir(gt_root)
    names = list(sequences) if sequences is not None else default_sequences(gt_root, set_name, single_object)
    if not pred_root.is_dir():
        raise ScoringError(f"prediction folder {pred_root} not found; pass --pred the folder with <seq>/")
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    frame_root = frames_dir(gt_root, ann_dir)
    plans = [plan_sequence(ann_dir, pred_root, name, single_object, frame_root) for name in names]
    results = _score_plans(plans, single_object, SINGLE_OBJECT_THRESHOLD, workers)
    if single_object:
        results = _rescore_index_style(plans, results, workers)
    return Evaluation(results, single_object, time.perf_counter() - start)


def _score_plans(
    plans: Sequence[SequencePlan], single_object: bool, fg_threshold: int, workers: int
) -> list[SequenceResult]:
    """Run all chunks of all runnable plans in one pool and regroup them per sequence."""
    tasks: list[ChunkTask] = []
    spans: list[tuple[int, int]] = []
    for plan in plans:
        chunks = [] if plan.problem else plan.chunks(single_object, fg_threshold)
        spans.append((len(tasks), len(tasks) + len(chunks)))
        tasks.extend(chunks)
    chunk_results = _run_tasks(tasks, workers)
    sequence_results = []
    for plan, (lo, hi) in zip(plans, spans):
        if plan.problem:
            empty = np.zeros((plan.n_objects, 0))
            sequence_results.append(
                SequenceResult(plan.name, plan.n_objects, [], empty, empty, plan.problem, missing_gt=plan.missing_gt)
            )
        else:
            merged = _merge_chunks(plan, chunk_results[lo:hi])
            merged.pred_max = max(r.pred_max for r in chunk_results[lo:hi])
            sequence_results.append(merged)
    return sequence_results


def _rescore_index_style(
    plans: Sequence[SequencePlan], results: list[SequenceResult], workers: int
) -> list[SequenceResult]:
    """Single-object mode: re-score sequences whose predictions are index maps (max id <= 128).

    The 2016 fork thresholds predictions at > 128, which turns an index-map prediction (object = 1)
    into an empty mask. For a sequence whose evaluated predictions never exceed 128 but are not
    all zero, non-zero is foreground instead; 0/255 predictions are scored exactly like the fork.
    """
    redo = [i for i, seq in enumerate(results) if seq.scored and 0 < seq.pred_max <= SINGLE_OBJECT_THRESHOLD]
    if not redo:
        return results
    rescored = _score_plans([plans[i] for i in redo], True, 0, workers)
    for i, seq in zip(redo, rescored):
        seq.notes.append(
            "single-object: predictions have no value > 128 (index-map style), so every non-zero "
            "pixel is foreground; the 2016 fork (> 128) would have scored them as empty"
        )
        results[i] = seq
    return results


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _fmt3(value: float) -> str:
    """pandas ``float_format='%.3f'``: NaN becomes an empty field."""
    return "" if math.isnan(value) else f"{value:.3f}"


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    # pandas writes through the csv module with QUOTE_MINIMAL and '\n' line endings on POSIX.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(rows)


def write_global_csv(path: str | Path, row: dict[str, float]) -> None:
    """``global_results-<set>.csv`` byte-identical to the toolkit's ``to_csv(float_format='%.3f')``."""
    _write_csv(Path(path), GLOBAL_COLUMNS, [[_fmt3(row[c]) for c in GLOBAL_COLUMNS]])


def write_per_sequence_csv(path: str | Path, stats: Sequence[ObjectStats]) -> None:
    """``per-sequence_results-<set>.csv``: one row per object ``<seq>_<k>``, J-Mean and F-Mean."""
    rows = [[s.name, _fmt3(s.j_mean), _fmt3(s.f_mean)] for s in stats]
    _write_csv(Path(path), PER_SEQUENCE_COLUMNS, rows)


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def report_dict(evaluation: Evaluation, set_name: str = "val") -> dict:
    """JSON-ready full-precision report: global, per object, excluded sequences and notes."""
    excluded = {}
    for seq in evaluation.excluded:
        entry: dict = {"problem": seq.problem}
        if seq.missing_gt:
            entry["missing_gt_frames"] = list(seq.missing_gt)
        if seq.has_numbers:  # extra id: scores with the extra ids ignored, for information only
            entry["per_object_extra_ids_ignored"] = {
                s.name: {k: _json_number(v) for k, v in s.as_dict().items()} for s in seq.object_stats()
            }
        excluded[seq.name] = entry
    return {
        "set": set_name,
        "mode": "single-object (DAVIS 2016)" if evaluation.single_object else "multi-object (DAVIS 2017)",
        "global": {k: _json_number(v) for k, v in evaluation.global_row().items()},
        "per_object": {s.name: {k: _json_number(v) for k, v in s.as_dict().items()} for s in evaluation.object_stats()},
        "per_sequence": {
            s.name: {"n_objects": s.n_objects, "n_evaluated_frames": len(s.frames)} for s in evaluation.scored
        },
        "warnings": warning_lines(evaluation),
        "excluded": excluded,
        "notes": {s.name: s.notes for s in evaluation.sequences if s.notes},
        "deviations_from_official": [
            "a sequence with a predicted id > K is excluded and reported instead of aborting the run",
            "Decay bin edges are not cast to uint8, so Decay is correct for >= 256 evaluated frames",
            "a sequence whose GT misses frames of JPEGImages/ is excluded and reported instead of scored on the rest",
        ],
    }


def warning_lines(evaluation: Evaluation) -> list[str]:
    """Human-readable lines for excluded sequences and notes (empty when all is well)."""
    lines = [f"EXCLUDED {s.name}: {s.problem}" for s in evaluation.excluded]
    lines += [f"NOTE {s.name}: {note}" for s in evaluation.sequences for note in s.notes]
    return lines
