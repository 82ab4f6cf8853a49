"""Benchmark layouts (DAVIS 2016/2017, YouTube-VOS 2018/2019, generic folders, single videos) and their outputs.

Readers turn a dataset root into a :class:`Benchmark`: a list of
:class:`~dataset.frames.VideoSource` plus how its masks are written and scored.
``run_benchmark`` segments them with the one engine (through
``inference.runner.segment_source``), then scores (DAVIS with ground truth) or
zips (YouTube-VOS) once every video of the benchmark is on disk, so sharded
runs finish the job in whichever shard completes last.

Per-video output options travel in ``VideoSource.meta``:

* ``'write'``: set of frame indices to write (absent = every segmented frame);
* ``'output_size'``: (H, W) of the written masks (absent = each frame's size).

``segment_stream`` is the frame-iterator counterpart of ``segment_source`` for
inputs that cannot be read at random (mp4 and other containers).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dataset.frames import VideoSource, list_frames, prepare_image, prepare_label, read_rgb, video_from_folders
from dataset.masks import MaskReader
from dataset.names import DAVIS_SPLITS, DAVIS_YEARS, YOUTUBE_SPLITS  # noqa: F401  (re-exported)
from inference.engine import FrameInput, PCVOSEngine
from inference.runner import VideoStats, probabilities_to_mask, segment_source
from util import davis_metrics as dm
from util.palette import write_index_png
from util.paths import check_inside, safe_name
from util.progress import progress
from util.sharding import Shard
from util.video_io import VideoReader, is_video_file, prefetch
from util.writer import MaskWriter, read_stamp, replace_problem

VOID = 255  # DAVIS void label: never an object id


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


@dataclass
class BenchmarkResult:
    """What ``run_benchmark`` did for this process's shard."""

    name: str
    shard: Shard
    videos: int = 0  # videos segmented by this run
    skipped: int = 0  # videos whose complete folder from an earlier run with the same settings was kept
    frames: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0
    per_video: list[VideoStats] = field(default_factory=list)
    complete: bool = False  # every video of the benchmark (all shards) is on disk
    scores: dict[str, float] | None = None  # global DAVIS row, when scored
    warnings: list[str] = field(default_factory=list)
    zip_path: Path | None = None

    @property
    def fps(self) -> float:
        """End-to-end frames per second (reading, engine, writing)."""
        return self.frames / max(self.seconds, 1e-9)

    @property
    def engine_fps(self) -> float:
        """Frames per second of the engine timer (see ``VideoStats``)."""
        return self.frames / max(self.engine_seconds, 1e-9)


def summary_line(result: BenchmarkResult) -> str:
    """The one line every driver ends with."""
    shard = "" if result.shard.is_whole else f" (shard {result.shard})"
    skipped = f"; {result.skipped} complete videos skipped" if result.skipped else ""
    return (
        f"{result.name}{shard}: {result.videos} videos, {result.frames} frames in {result.seconds:.1f} s; "
        f"{result.fps:.2f} FPS end to end, {result.engine_fps:.2f} FPS engine{skipped}"
    )


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


def png_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read mask PNG ({error}); replace this file") from error


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
        source.meta["output_size"] = png_size(source.labels[min(source.labels)])
        sources.append(source)
    zip_path = Path(zip_path) if zip_path is not None else output.with_name(output.name + ".zip")
    bench = Benchmark(f"youtube-{split}", sources, output / "Annotations", zip_path=zip_path)
    if note:
        bench.notes.append(note)
    return bench


def write_submission_zip(mask_root: Path, videos: Iterable[str], zip_path: Path) -> Path:
    """Zip ``<mask_root>/<vid>/*.png`` as ``Annotations/<vid>/<frame>.png``, atomically (temp + rename).

    PNGs are stored, not deflated: they are compressed already. Every video and file
    name is checked (``safe_name``) before the zip is started, so no entry can point
    outside ``Annotations/`` when unpacked.
    """
    zip_path = Path(zip_path)
    mask_root = Path(mask_root)
    contents: dict[str, list[Path]] = {}
    for video in sorted(videos):
        safe_name(video, mask_root, "video name")
        folder = check_inside(mask_root, mask_root / video, "video folder")
        contents[video] = [png for png in sorted(folder.glob("*.png")) if safe_name(png.name, folder, "mask file")]
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_zip_temporaries(zip_path)
    tmp = zip_path.with_name(f".{zip_path.name}.{os.getpid()}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("Annotations/", b"")
            for video, pngs in contents.items():
                archive.writestr(f"Annotations/{video}/", b"")
                for png in pngs:
                    archive.write(png, f"Annotations/{video}/{png.name}")
        tmp.replace(zip_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return zip_path


def remove_stale_zip_temporaries(zip_path: Path) -> None:
    """Remove ``.<zip>.<pid>.partial`` files left by killed processes (only ours: that name, a dead pid)."""
    prefix = f".{zip_path.name}."
    for leftover in zip_path.parent.glob(f"{glob_escape(prefix)}*.partial"):
        pid = leftover.name[len(prefix):-len(".partial")]
        if not pid.isdigit() or not leftover.is_file() or leftover.is_symlink():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)  # its writer is gone: a concurrent shard's file is never touched
        except (PermissionError, OverflowError):
            continue


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
# Running a benchmark
# =============================================================================================


# A video folder is *complete* when it was committed atomically (AtomicFolder: the folder exists
# under its final name only once every mask was on disk), holds every mask the video should have,
# and its stamp (util.writer.STAMP) records the settings of the current run. Only then may a rerun
# skip it; a folder written with other settings is refused unless the run overwrites.


def expected_masks(source: VideoSource) -> set[str]:
    """File names of the masks ``segment_source`` writes for ``source`` with its benchmark options.

    Every frame from the first annotated one on that is segmented (required, or annotated)
    and, when ``source.meta['write']`` is set, listed there.
    """
    names = source.frame_names
    write = source.meta.get("write")
    return {
        f"{names[i]}.png"
        for i in range(min(source.labels), len(names))
        if (source.required is None or i in source.required or i in source.labels)
        and (write is None or i in write)
    }


def video_stamp(source: VideoSource, settings: dict) -> dict:
    """What a committed folder of ``source`` records: the run's settings and what the video's result depends on.

    Besides ``settings`` (model, engine, size): whether only the listed frames were segmented
    (it changes the masks) and a digest of each first-appearance annotation.
    """
    annotations = {}
    for index in sorted(source.labels):
        path = source.labels[index]
        annotations[source.frame_names[index]] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return {"settings": settings, "required_only": source.required is not None, "annotations": annotations}


def video_complete(mask_root: Path, source: VideoSource, stamp: dict | None = None) -> bool:
    """Whether ``<mask_root>/<video>`` is complete (and, with ``stamp``, was made with exactly that stamp)."""
    folder = Path(mask_root) / source.name
    if folder.is_symlink() or not folder.is_dir():
        return False
    if stamp is not None and read_stamp(folder) != stamp:
        return False
    present = {p.name for p in folder.glob("*.png")}
    return expected_masks(source) <= present


def stamp_difference(found: dict | None, wanted: dict) -> str:
    """One phrase saying how a folder's stamp differs from the current run's."""
    if found is None:
        return "it has no settings record (written by an earlier version or another program)"
    old, new = found.get("settings") or {}, wanted["settings"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key} was {old.get(key)!r}, now {new.get(key)!r}"
    if found.get("required_only") != wanted["required_only"]:
        return "it was segmented with{} --required-only".format("" if found.get("required_only") else "out")
    if found.get("annotations") != wanted["annotations"]:
        return "its first-appearance annotations have changed"
    return "its settings record differs"


def check_rerun(bench: Benchmark, stamps: dict[str, dict]) -> None:
    """Refuse to mix results: any committed folder of ``bench`` made with other settings is a ValueError."""
    stale = []
    for source in bench.sources:
        folder = bench.mask_root / source.name
        if folder.is_dir() and not folder.is_symlink():
            found = read_stamp(folder)
            if found != stamps[source.name]:
                stale.append((source.name, stamp_difference(found, stamps[source.name])))
    if stale:
        video, why = stale[0]
        raise ValueError(
            f"{bench.mask_root}: {len(stale)} video folder(s) here were made with other settings (e.g. {video!r}: "
            f"{why}); pass --overwrite to recompute them, or choose another --output"
        )


def check_replaceable(bench: Benchmark, sources: Iterable[VideoSource]) -> None:
    """Before any work: every folder that will be (re)written lies inside the mask root and holds only masks."""
    for source in sources:
        folder = check_inside(bench.mask_root, bench.mask_root / source.name, "video folder")
        if folder.is_symlink() or folder.exists():
            problem = replace_problem(folder)
            inputs = {Path(p).parent.resolve() for p in [source.frames[0], *source.labels.values()]}
            if problem is None and folder.resolve() in inputs:
                problem = "it is the video's frame or annotation folder"
            if problem is not None:
                raise ValueError(
                    f"{folder}: cannot replace this folder with the masks of video {source.name!r} ({problem}); "
                    "choose an output folder that is new, empty or holds only earlier results"
                )


def benchmark_complete(bench: Benchmark, stamps: dict[str, dict] | None = None) -> bool:
    """Whether every video of the benchmark has a complete output folder (see ``video_complete``)."""
    return all(
        video_complete(bench.mask_root, s, None if stamps is None else stamps[s.name]) for s in bench.sources
    )


def score_benchmark(bench: Benchmark) -> tuple[dict[str, float], list[str]]:
    """J&F of a complete DAVIS result folder; writes the toolkit's two CSVs next to the masks.

    Returns:
        (global row, warning lines: one per excluded sequence, e.g. incomplete GT with its missing frames).
    """
    evaluation = evaluate_benchmark(bench)
    return evaluation.global_row(), dm.warning_lines(evaluation)


def evaluate_benchmark(bench: Benchmark) -> dm.Evaluation:
    """Score a complete DAVIS result folder (``score_benchmark``) and return the whole evaluation."""
    spec = bench.score
    evaluation = dm.evaluate(
        spec.gt_root,
        bench.mask_root,
        [s.name for s in bench.sources],
        set_name=spec.set_name,
        single_object=spec.single_object,
    )
    row = evaluation.global_row()
    # Written under temp names and renamed, so concurrent shards never leave a torn file.
    with tempfile.TemporaryDirectory(dir=bench.mask_root, prefix=".scores.") as tmp:
        names = (f"global_results-{spec.set_name}.csv", f"per-sequence_results-{spec.set_name}.csv")
        dm.write_global_csv(Path(tmp) / names[0], row)
        dm.write_per_sequence_csv(Path(tmp) / names[1], evaluation.object_stats())
        for name in names:
            (Path(tmp) / name).replace(bench.mask_root / name)
    return evaluation


def format_scores(row: dict[str, float]) -> str:
    """'J&F-Mean 0.861 J-Mean ... ' in the toolkit's column order."""
    return " ".join(f"{key} {row[key]:.3f}" for key in dm.GLOBAL_COLUMNS)


def segment_benchmark_video(
    engine: PCVOSEngine, source: VideoSource, bench: Benchmark, size: int, writer, workers: int,
    stamp: dict | None = None,
) -> VideoStats:
    """One video of a benchmark, with the benchmark's per-video output options."""
    write = source.meta.get("write")
    return segment_source(
        engine,
        source,
        size,
        bench.mask_root,
        writer,
        workers,
        write_frames=None if write is None else write.__contains__,
        output_size=source.meta.get("output_size"),
        stamp=stamp,
    )


def run_benchmark(
    engine: PCVOSEngine,
    bench: Benchmark,
    size: int,
    workers: int = 2,
    shard: Shard | None = None,
    finalize: bool = True,
    log: Callable[[str], None] = print,
    settings: dict | None = None,
    overwrite: bool = False,
) -> BenchmarkResult:
    """Segment this shard's videos, then (``finalize``) score or zip if the benchmark is complete.

    With ``settings`` (what the results depend on: model, engine options, size; see
    ``inference.cli.run_settings``) every committed video folder records them, and a
    rerun into the same output skips the videos whose folders are complete with the
    same settings (``result.skipped``); a folder made with other settings is refused
    (ValueError) unless ``overwrite``, which recomputes every video of the shard.
    Without ``settings`` every video is computed and nothing is recorded.
    """
    shard = shard or Shard()
    result = BenchmarkResult(bench.name, shard)
    for note in bench.notes:
        log(f"note: {note}")
    sources = shard.select(bench.sources)
    stamps = None if settings is None else {s.name: video_stamp(s, settings) for s in bench.sources}
    todo = sources
    if stamps is not None and not overwrite:
        check_rerun(bench, stamps)
        todo = [s for s in sources if not video_complete(bench.mask_root, s, stamps[s.name])]
        result.skipped = len(sources) - len(todo)
        if result.skipped:
            log(f"{bench.name}: {result.skipped} of {len(sources)} videos already complete in {bench.mask_root} "
                "with the same settings, skipped (--overwrite recomputes them)")
    check_replaceable(bench, todo)
    bench.mask_root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with MaskWriter(binary=bench.binary) as writer:
        for source in progress(todo, f"{bench.name} videos"):
            stamp = None if stamps is None else stamps[source.name]
            stats = segment_benchmark_video(engine, source, bench, size, writer, workers, stamp)
            result.per_video.append(stats)
            result.videos += 1
            result.frames += stats.frames
            result.engine_seconds += stats.engine_seconds
    result.seconds = time.perf_counter() - start
    result.complete = benchmark_complete(bench, stamps)
    if finalize and result.complete:
        finalize_benchmark(bench, result, log)
    elif finalize and not result.complete:
        log(f"{bench.name}: shard {shard} done; the other shards' videos are not all written yet, so scoring / "
            "zipping is left to the shard that finishes last")
    return result


def finalize_benchmark(bench: Benchmark, result: BenchmarkResult, log: Callable[[str], None] = print) -> None:
    """Score (DAVIS with ground truth) and / or zip (YouTube-VOS) a complete benchmark."""
    if bench.score is not None:
        evaluation = evaluate_benchmark(bench)
        result.scores, result.warnings = evaluation.global_row(), dm.warning_lines(evaluation)
        coverage = evaluation.coverage()  # 'over N of M sequences' whenever some were left out
        log(f"{bench.name}: {format_scores(result.scores)}{f' {coverage}' if coverage else ''} "
            f"(CSVs in {bench.mask_root})")
        for line in result.warnings:
            log(line)
    if bench.zip_path is not None:
        result.zip_path = write_submission_zip(bench.mask_root, [s.name for s in bench.sources], bench.zip_path)
        log(f"{bench.name}: submission zip {result.zip_path}")


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


@dataclass
class StreamStats:
    """Frames read, frames segmented, wall and engine seconds of one ``segment_stream`` run."""

    frames_read: int = 0
    frames: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0


def segment_stream(
    engine: PCVOSEngine,
    frames: Iterable[np.ndarray],
    labels: dict[int, np.ndarray],
    size: int,
    sink: Callable[[int, np.ndarray, np.ndarray | None], None],
    prefetch_depth: int = 8,
) -> StreamStats:
    """Segment a video given as an iterator of frames (containers, webcams, generators).

    Args:
        frames: uint8 [H, W, 3] RGB frames in order; decoded on a prefetch thread.
        labels: frame index -> uint8 [H, W] object ids (first-appearance masks, any ids 1..254).
        size: working short side (-1 = original).
        sink: called once per frame, in frame order, with (index, RGB frame, uint8 [H, W] ids
            at the frame's size), the mask None for frames before the first label. Only the
            frames of the clip being segmented are held.
        prefetch_depth: frames decoded ahead.

    The engine timer excludes waiting for decoded frames and the time spent in ``sink``.
    """
    if not labels:
        raise ValueError("segment_stream needs at least one labelled frame")
    values = sorted({int(v) for mask in labels.values() for v in np.unique(mask) if 0 < v < VOID})
    table = np.zeros(256, dtype=np.int64)
    table[values] = np.arange(1, len(values) + 1)
    lut = torch.tensor([0, *values], dtype=torch.int64, device=engine.device)
    first = min(labels)
    held: dict[int, np.ndarray] = {}
    stats = StreamStats()
    outside = 0.0  # seconds not charged to the engine
    ready: dict[int, np.ndarray] = {}  # masks waiting for an earlier frame's mask (keeps sink in order)
    next_out = first

    def decoded() -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
        for index, rgb in enumerate(frames):
            yield index, rgb, prepare_image(rgb, size)

    def inputs() -> Iterator[FrameInput]:
        nonlocal outside
        source = prefetch(decoded(), prefetch_depth)
        while True:
            tick = time.perf_counter()
            item = next(source, None)
            if item is not None and item[0] < first:
                sink(item[0], item[1], None)
            outside += time.perf_counter() - tick
            if item is None:
                return
            index, rgb, image = item
            stats.frames_read = index + 1
            if index < first:
                continue
            held[index] = rgb
            label = labels.get(index)
            label_t = None if label is None else prepare_label(table[label], size)
            yield FrameInput(index, image, label_t, True)

    start = time.perf_counter()
    for result in engine.segment(inputs(), num_objects=len(values)):
        prob = result.prob
        if prob.shape[0] < len(values) + 1:
            prob = torch.cat([prob, prob.new_zeros(len(values) + 1 - prob.shape[0], *prob.shape[1:])])
        ready[result.index] = probabilities_to_mask(prob, held[result.index].shape[:2], lut)
        stats.frames += 1
        tick = time.perf_counter()
        while next_out in ready:
            sink(next_out, held.pop(next_out), ready.pop(next_out))
            next_out += 1
        outside += time.perf_counter() - tick
    for index in sorted(held):  # frames never segmented (none when every frame is required)
        sink(index, held.pop(index), ready.pop(index, None))
    beyond = sorted(f for f in labels if f >= stats.frames_read)
    if beyond:
        raise ValueError(
            f"mask for frame {beyond[0]} is beyond the end of the video ({stats.frames_read} frames decoded); "
            "use a frame index inside the video"
        )
    stats.seconds = time.perf_counter() - start
    stats.engine_seconds = stats.seconds - outside
    return stats
