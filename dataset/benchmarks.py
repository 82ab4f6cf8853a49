"""Benchmark layouts (DAVIS 2016/2017, YouTube-VOS 2018/2019, generic folders, single videos) and their readers.

Readers turn a dataset root into a :class:`Benchmark`: a list of
:class:`~dataset.frames.VideoSource` plus how its masks are written and scored.
Running, scoring and zipping a benchmark is ``inference.benchmark_run``; this
module only describes the data (see docs/evaluation.md).

Per-video output options travel in ``VideoSource.meta``:

* ``'write'``: set of frame indices to write (absent = every segmented frame);
* ``'output_size'``: (H, W) of the written masks (absent = each frame's size).

``open_frames`` and ``read_user_masks`` read the one video and the ``--mask`` files of ``segment.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataset.frames import VideoSource, image_size, list_frames, read_rgb, video_from_folders
from dataset.masks import MaskReader
from dataset.names import DAVIS_SPLITS, DAVIS_YEARS, YOUTUBE_SPLITS  # noqa: F401  (re-exported)
from util.palette import write_index_png
from util.paths import safe_name
from util.video_io import VideoReader, is_video_file

# =============================================================================================
# What a benchmark is
# =============================================================================================


@dataclass
class ScoreSpec:
    """How to score a DAVIS-style result folder (util/davis_metrics)."""

    gt_root: Path  # folder with Annotations/[480p/]<seq>/
    set_name: str  # names the CSVs: global_results-<set>.csv
    single_object: bool  # DAVIS 2016 convention


@dataclass
class Benchmark:
    """One benchmark run: videos, where and how masks go, and what happens when all are done."""

    name: str  # e.g. 'davis2017-val'
    sources: list[VideoSource]
    mask_root: Path  # masks go to <mask_root>/<video>/<frame>.png
    binary: bool = False  # DAVIS 2016: greyscale 0/255 PNGs instead of palette PNGs
    score: ScoreSpec | None = None  # ground truth to score against, if any
    zip_path: Path | None = None  # YouTube-VOS submission zip (top level Annotations/)
    notes: list[str] = field(default_factory=list)  # printed before the run (fallbacks taken)


# =============================================================================================
# DAVIS
# =============================================================================================


def _first_dir(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def davis_split_root(root: Path, year: str, split: str) -> Path:
    """The folder holding JPEGImages/ for this year and split.

    Accepts the split folder itself, or the parent of ``trainval/`` and
    ``test-dev/`` (the layout STCN's ``--davis_path ../DAVIS/2017`` expects).
    """
    root = Path(root)
    sub = "test-dev" if split == "test-dev" else "trainval"
    for candidate in (root, root / sub, root / year, root / year / sub):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise ValueError(
        f"--davis-root {root}: no JPEGImages/ folder here or in {sub}/; pass the DAVIS {year} folder that "
        "contains JPEGImages/480p/<sequence>/ and Annotations/480p/<sequence>/"
    )


def _read_name_list(path: Path) -> list[str]:
    """Sequence names of an ImageSets file: plain names, or DAVIS-2016 'JPEG-path PNG-path' lines.

    Every name is checked with ``safe_name``: it becomes an output folder.
    """
    names: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        token = line.strip().split()[0] if line.strip() else ""
        if not token:
            continue
        name = Path(token).parts[-2] if "/" in token and len(Path(token).parts) >= 2 else token
        safe_name(name, path, "sequence name")
        if name not in names:
            names.append(name)
    return names


def davis_sequences(split_root: Path, year: str, split: str) -> list[str]:
    """Sequence list from ImageSets (DAVIS 2016 also: the 480p path lists or the 2017 trainval copy)."""
    candidates = [split_root / "ImageSets" / year / f"{split}.txt"]
    if year == "2016":
        candidates += [
            split_root / "ImageSets" / "480p" / f"{split}.txt",
            split_root.parent / "2017" / "trainval" / "ImageSets" / "2016" / f"{split}.txt",
        ]
    candidates.append(split_root / "ImageSets" / f"{split}.txt")
    for candidate in candidates:
        if candidate.is_file():
            names = _read_name_list(candidate)
            if not names:
                raise ValueError(f"{candidate}: sequence list is empty")
            return names
    tried = ", ".join(str(c) for c in candidates)
    raise ValueError(f"DAVIS {year} {split}: no sequence list found (tried {tried})")


def merge_objects(src: Path, dst: Path, mask_values: str = "auto") -> None:
    """DAVIS 2016: write src's objects merged into one (id 1) as a palette PNG at dst.

    Works for 0/255 greyscale 2016 masks and for multi-object 2017 masks alike (read by the
    rules of dataset/masks.py: 255 next to other ids is void, not object).
    """
    mask = MaskReader(mask_values).read(src, allow_empty=True)
    write_index_png(dst, (mask > 0).astype(np.uint8))


def davis_benchmark(
    root: Path, year: str, split: str, output: Path, label_cache: Path | None = None, mask_values: str = "auto"
) -> Benchmark:
    """DAVIS 2017 (val, test-dev) or 2016 (val) as a Benchmark.

    Objects are those of the first frame's annotation; every frame is written
    at its own (480p) size. 2016: the first-frame objects are merged into one
    (staged as a PNG under ``label_cache``, required then) and masks are written
    as greyscale 0/255. The run is scored against the ground truth when some sequence
    has an annotation for every frame (val), never for test-dev; a sequence whose GT
    misses frames is then reported with them and left out of the scores (util/davis_metrics).
    """
    if year not in DAVIS_YEARS:
        raise ValueError(f"--year {year}: choose one of {', '.join(DAVIS_YEARS)}")
    split_root = davis_split_root(root, year, split)
    images = _first_dir(split_root / "JPEGImages" / "480p", split_root / "JPEGImages")
    annotations = _first_dir(split_root / "Annotations" / "480p", split_root / "Annotations")
    if annotations is None:
        raise ValueError(f"{split_root}: no Annotations/480p/ (or Annotations/) folder")
    single = year == "2016"
    if single and label_cache is None:
        raise ValueError("DAVIS 2016 needs a label_cache folder for the merged first-frame masks")
    sources, complete = [], 0
    for name in davis_sequences(split_root, year, split):
        frames = list_frames(images / name)
        first = annotations / name / f"{frames[0].stem}.png"
        if not first.is_file():
            raise ValueError(f"{first}: first-frame annotation of sequence {name!r} not found")
        meta = {}
        if single:
            staged = Path(label_cache) / name / first.name
            merge_objects(first, staged, mask_values)
            first, meta["annotation_files"] = staged, {0: first}  # errors name the user's file, not the staged one
        sources.append(VideoSource(name, frames, {0: first}, meta=meta, mask_values=mask_values))
        complete += len(list((annotations / name).glob("*.png"))) == len(frames) >= 3
    score = ScoreSpec(split_root, split, single) if split != "test-dev" and complete else None
    bench = Benchmark(f"davis{year}-{split}", sources, Path(output), binary=single, score=score)
    if split != "test-dev" and not complete:
        bench.notes.append(
            f"{annotations}: no sequence has an annotation for every frame, so nothing is scored "
            "(the first-frame masks are all that is used)"
        )
    return bench


# =============================================================================================
# YouTube-VOS
# =============================================================================================


def read_youtube_meta(path: Path) -> dict[str, dict[int | str, list[str]]]:
    """meta.json -> {video: {object id: [frame names]}} (ids as strings are kept as in the file)."""
    if not path.is_file():
        raise ValueError(
            f"{path}: meta.json not found; pass --youtube-root the YouTube-VOS root (with <split>/meta.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = {
            video: {obj: list(info["frames"]) for obj, info in entry["objects"].items()}
            for video, entry in data["videos"].items()
        }
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{path}: not a YouTube-VOS meta.json ({error!r}); expected "
            '{"videos": {vid: {"objects": {id: {"frames": [...]}}}}}'
        ) from error
    # Video names become output folders and zip entries, frame names output files: check them here.
    for video, objects in meta.items():
        safe_name(video, path, "video name")
        for frames in objects.values():
            for frame in frames:
                safe_name(frame, path, f"frame name of video {video!r}")
    return meta


def youtube_frame_root(root: Path, split: str) -> tuple[Path, str | None]:
    """Where inference frames come from: all_frames (30 fps) if present, else the 6-fps split folder."""
    all_frames = root / "all_frames" / f"{split}_all_frames" / "JPEGImages"
    if all_frames.is_dir():
        return all_frames, None
    sparse = root / split / "JPEGImages"
    if sparse.is_dir():
        return sparse, (
            f"{all_frames} not found: segmenting the 6-fps frames of {sparse} instead; results differ from the "
            "released all-frames protocol (download all_frames for the official numbers)"
        )
    raise ValueError(f"--youtube-root {root}: neither {all_frames} nor {sparse} exists")


def youtube_benchmark(
    root: Path,
    split: str,
    output: Path,
    required_only: bool = False,
    output_all: bool = False,
    zip_path: Path | None = None,
    mask_values: str = "auto",
) -> Benchmark:
    """YouTube-VOS 2018/2019 valid/test as a Benchmark.

    Frames from all_frames; first-appearance masks from ``<split>/Annotations``;
    meta.json decides which frames are written (the union of the objects' frame
    lists) unless ``output_all``; with ``required_only`` only those frames are
    segmented (VideoSource.required), otherwise every frame is (the released
    ``--predict_all``). Masks go to ``<output>/Annotations/<vid>/`` at the size
    of the video's first annotation PNG; the zip defaults to ``<output>.zip``.
    """
    if split not in YOUTUBE_SPLITS:
        raise ValueError(f"--split {split}: choose one of {', '.join(YOUTUBE_SPLITS)}")
    root, output = Path(root), Path(output)
    meta = read_youtube_meta(root / split / "meta.json")
    frame_root, note = youtube_frame_root(root, split)
    annotations = root / split / "Annotations"
    sources = []
    for video in sorted(meta):
        source = video_from_folders(video, frame_root / video, annotations / video, mask_values)
        index = {stem: i for i, stem in enumerate(source.frame_names)}
        wanted = sorted({name for names in meta[video].values() for name in names})
        missing = [name for name in wanted if name not in index]
        if missing:
            raise ValueError(
                f"{root / split / 'meta.json'}: video {video!r} lists frames {missing[:5]} that are not in "
                f"{frame_root / video}"
            )
        write = {index[name] for name in wanted} | set(source.labels)
        if required_only:
            source.required = set(write)
        if not output_all:
            source.meta["write"] = write
        source.meta["output_size"] = image_size(source.labels[min(source.labels)], "mask PNG")
        sources.append(source)
    zip_path = Path(zip_path) if zip_path is not None else output.with_name(output.name + ".zip")
    bench = Benchmark(f"youtube-{split}", sources, output / "Annotations", zip_path=zip_path)
    if note:
        bench.notes.append(note)
    return bench


# =============================================================================================
# Generic folders
# =============================================================================================


def generic_benchmark(
    root: Path, output: Path, only: list[str] | None = None, mask_values: str = "auto"
) -> Benchmark:
    """``<root>/JPEGImages/<video>/`` + ``<root>/Annotations/<video>/`` (first-appearance masks, any frames)."""
    root = Path(root)
    images, annotations = root / "JPEGImages", root / "Annotations"
    for folder, what in ((images, "<frame>.jpg"), (annotations, "<frame>.png")):
        if not folder.is_dir():
            raise ValueError(f"{root}: no {folder.name}/ folder (expected {folder.name}/<video>/{what})")
    names = sorted(safe_name(p.name, images, "video folder name")
                   for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise ValueError(f"videos not found under {images}: {', '.join(missing)}")
        names = [n for n in names if n in only]
    sources = [video_from_folders(n, images / n, annotations / n, mask_values) for n in names]
    return Benchmark("generic", sources, Path(output))


# =============================================================================================
# User inputs: one video (folder of frames or container) and its masks
# =============================================================================================


@dataclass
class FrameStream:
    """A video read in order: name, frame count (declared, for containers), size, fps, frame names."""

    name: str
    path: Path
    count: int
    size: tuple[int, int]  # (H, W)
    fps: float
    names: Callable[[int], str]  # frame index -> output file stem
    frames: Callable[[], Iterator[np.ndarray]]  # fresh iterator of uint8 [H, W, 3] RGB
    exact_count: bool = True


def open_frames(path: Path, fps: float = 25.0) -> FrameStream:
    """A folder of frames or a video container, with errors that name the file."""
    path = Path(path)
    if path.is_dir():
        files = list_frames(path)
        height, width = read_rgb(files[0]).shape[:2]
        return FrameStream(
            path.name, path, len(files), (height, width), fps,
            names=lambda i: files[i].stem,
            frames=lambda: (read_rgb(f) for f in files),
        )
    if not path.exists():
        raise ValueError(f"{path}: no such video file or frame folder")
    if not is_video_file(path):
        raise ValueError(f"{path}: neither a frame folder nor a video file (.mp4, .avi, .mov, .mkv, ...)")
    reader = VideoReader(path)
    return FrameStream(
        path.stem, path, reader.frame_count, (reader.height, reader.width), reader.fps,
        names=lambda i: f"{i:05d}", frames=reader.__iter__, exact_count=False,
    )


def parse_mask_arg(text: str) -> tuple[int, Path]:
    """``'PATH'`` (frame 0) or ``'FRAME:PATH'`` -> (frame index, path)."""
    head, sep, tail = text.partition(":")
    if sep and head.strip().isdigit():
        return int(head), Path(tail)
    return 0, Path(text)


def read_user_masks(
    args: list[str], stream: FrameStream, mask_values: str = "auto"
) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """``--mask`` arguments -> ({frame index: uint8 [H, W] ids}, output palette or None).

    The masks are read by the rules of dataset/masks.py (``mask_values``: 'auto' or 'ids').
    """
    reader = MaskReader(mask_values)
    labels: dict[int, np.ndarray] = {}
    for text in args:
        frame, path = parse_mask_arg(text)
        if stream.count and frame >= stream.count:
            raise ValueError(
                f"--mask {text}: frame {frame} is beyond the video {stream.path}, which has {stream.count} "
                f"frames (0..{stream.count - 1}); use a frame index inside the video"
            )
        if frame in labels:
            raise ValueError(f"--mask {text}: frame {frame} already has a mask; give one mask per frame")
        labels[frame] = reader.read(path, stream.size)
    return labels, reader.palette
