"""Running a benchmark: segment its videos, skip complete ones, then score (DAVIS) or zip (YouTube-VOS).

``run_benchmark`` segments the videos of a :class:`~dataset.benchmarks.Benchmark`
(read by ``dataset.benchmarks``) with the one run loop (``inference.runner``),
then scores (DAVIS with ground truth) or zips (YouTube-VOS) once every video of
the benchmark is on disk, so sharded runs finish the job in whichever shard
completes last (see docs/evaluation.md).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path

from dataset.benchmarks import Benchmark
from dataset.frames import VideoSource
from inference.engine import PCVOSEngine
from inference.overlays import check_overlay_names, write_overlays
from inference.runner import VideoStats, segment_source
from util import davis_metrics as dm
from util.paths import check_inside, safe_name
from util.progress import progress
from util.sharding import Shard
from util.writer import MaskWriter, read_stamp, replace_problem


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



# =============================================================================================
# The YouTube-VOS submission zip
# =============================================================================================


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
    overlays: bool = False,
) -> BenchmarkResult:
    """Segment this shard's videos, then (``finalize``) score or zip if the benchmark is complete.

    With ``settings`` (what the results depend on: model, engine options, size; see
    ``inference.cli.run_settings``) every committed video folder records them, and a
    rerun into the same output skips the videos whose folders are complete with the
    same settings (``result.skipped``); a folder made with other settings is refused
    (ValueError) unless ``overwrite``, which recomputes every video of the shard.
    Without ``settings`` every video is computed and nothing is recorded.

    ``overlays``: also draw ``overlays/<video>.mp4`` for this shard's videos (``inference.overlays``),
    after the timed segmentation, from the committed masks.
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
    if overlays:
        check_overlay_names(bench.mask_root, bench.sources)
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
    if overlays:
        write_overlays(bench.mask_root, sources, {s.name for s in todo}, log)
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
