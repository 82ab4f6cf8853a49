"""Checks made before any video is segmented, so that a bad input fails in seconds, not after hours.

Every benchmark driver (eval_generic, eval_davis, eval_youtube, inference_pretrained_pcvos)
calls :func:`preflight_benchmark` after reading the benchmark's layout and before loading the
network and segmenting: output folders can be created, the submission zip can be written,
and every annotation PNG is readable, non-empty and the size of its frame. Each failure is a
``ValueError`` whose message names the flag or file, the offending value and what to do
(util/errors.py turns it into one line and exit code 2).

What cannot be known without decoding every frame (a frame that is corrupt half-way through
a video) still fails mid-run, with the same kind of one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dataset.benchmarks import Benchmark
from dataset.frames import VideoSource, image_size
from dataset.masks import MaskReader
from util import davis_metrics as dm


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (the cwd's root at worst)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(path: Path, flag: str = "--output") -> None:
    """``path`` is a folder, or can be created as one, and is writable; nothing is created."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(
                f"{flag} {path}: is a file, not a folder; pass a folder path (it is created if missing) or move "
                "the file away"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path}: folder is not writable by this user; choose another output folder")
        return
    base = _nearest_existing(path)
    if not base.is_dir():
        raise ValueError(
            f"{flag} {path}: cannot create this folder because {base} is a file, not a folder; choose an "
            "output path whose parents are folders"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(
            f"{flag} {path}: cannot create this folder, {base} is not writable by this user; choose another "
            "output folder"
        )


def check_output_file(path: Path, flag: str) -> None:
    """``path`` can be written as a file: not a folder, its parent a folder (or creatable) and writable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"{flag} {path}: this is a folder; pass a file name, e.g. {path / 'submission.zip'}"
        )
    if path.exists() and not path.is_file():
        raise ValueError(f"{flag} {path}: exists and is not a regular file; pass another file name")
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise ValueError(f"{flag} {path}: cannot create it because {base} is a file, not a folder; pass a path "
                         "inside a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: folder {base} is not writable by this user; pass another path")


def check_annotations(sources: Iterable[VideoSource]) -> None:
    """Every annotation PNG of every video: readable as an index map, not empty, the size of its frame.

    Reads each annotation once (they are small) and only the header of the frames they annotate.
    """
    for source in sources:
        if not source.labels:
            raise ValueError(f"video {source.name!r}: no annotation PNG; give at least the first mask")
        shown = source.meta.get("annotation_files", {})  # the user's files where staged copies are read
        reader = MaskReader(source.mask_values)  # one reader per video: RGB colours number alike
        for index, label_path in sorted(source.labels.items()):
            mask = reader.read_file(label_path).ids  # MaskError (a ValueError) naming the file
            label_path = shown.get(index, label_path)
            frame = source.frames[index]
            height, width = image_size(frame)
            if mask.shape != (height, width):
                raise ValueError(
                    f"{label_path}: annotation is {mask.shape[1]}x{mask.shape[0]} (WxH) but its frame {frame} is "
                    f"{width}x{height}; resize the annotation to the frame with nearest-neighbour interpolation"
                )
            if not mask.any():
                raise ValueError(
                    f"{label_path}: annotation is empty (every pixel is 0) in video {source.name!r}; draw the "
                    "objects that first appear in this frame, or delete the file"
                )


def preflight_benchmark(bench: Benchmark, output_flag: str = "--output", zip_flag: str = "--zip") -> None:
    """All checks that can be made before inference, for one benchmark (raises ValueError)."""
    check_output_folder(bench.mask_root, output_flag)
    if bench.zip_path is not None:
        check_output_file(bench.zip_path, zip_flag)
    if bench.score is not None:
        check_scoring_gt(bench)
    check_annotations(bench.sources)


def check_scoring_gt(bench: Benchmark) -> None:
    """The GT PNGs the DAVIS toolkit will score against: each one's mode, from its header.

    The toolkit reads palette, greyscale and 1-bit PNGs only; an RGB or 16-bit GT file would
    stop the scoring after every video had been segmented, so it is refused now.
    """
    ann_dir = dm.annotations_dir(bench.score.gt_root)
    for source in bench.sources:
        folder = ann_dir / source.name
        for name in dm.list_gt_frames(folder) if folder.is_dir() else []:
            dm.check_mask_mode(folder / name)
