"""One interactive session: a video, its objects, the user's annotations and the propagated masks, all in
one folder, so that a session outlives the server that edits it.

Layout of ``<workdir>/<session id>/``::

    session.json        video source, objects, settings
    source/             an uploaded video (absent when the session was opened from a path)
    cache/              a container's decoded frames (lossless PNGs, filled as frames are needed)
    annotations/        the user's masks, one palette PNG per annotated frame (<frame name>.png)
    masks/              propagated masks, committed: the files ``segment.py`` writes (<frame name>.png)
    staging/            masks of the propagation in progress; moved into masks/ only when it succeeds
    exports/            the last export: masks/, overlay.mp4 and <video>.zip

A propagation writes into ``staging/``. On success it writes ``staging/COMMIT`` (the list of files),
then moves the files into ``masks/`` and removes ``staging/``; a session opened with a ``COMMIT``
there finishes the move, one without it drops the staged files. So a failed, cancelled or
interrupted propagation leaves the earlier masks as they were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dataset.masks import MaskReader
from inference.interactive.frames import FrameCache
from util.palette import davis_palette, read_index_png, write_index_png
from util.pictures import OVERLAY_ALPHA, overlay
from util.video_io import OverlayWriter

MAX_OBJECT = 254  # 255 is void in the PNG convention
DIRECTIONS = ("forward", "backward", "both")
SESSION_FILE = "session.json"


@dataclass
class Settings:
    """What a user may change in the page (the rest comes from the command line)."""

    clip_length: int = 5
    precision: str = "fp32"
    memory: str = "keep-all"
    size: int = 480

    def check(self, precisions: tuple[str, ...], memories: tuple[str, ...]) -> None:
        if not isinstance(self.clip_length, int) or self.clip_length < 1:
            raise ValueError(f"settings: L must be a positive integer ({self.clip_length!r}); use 1, 5, 10, ...")
        if self.precision not in precisions:
            raise ValueError(f"settings: precision {self.precision!r} is unknown; choose one of {precisions}")
        if self.memory not in memories:
            raise ValueError(f"settings: memory strategy {self.memory!r} is unknown; choose one of {memories}")
        if not isinstance(self.size, int) or (self.size < 16 and self.size != -1):
            raise ValueError(f"settings: size {self.size!r} is not a short side in pixels; use e.g. 480, or -1")


@dataclass
class Job:
    """A propagation in progress (or the last one): what the page's progress bar shows."""

    id: int
    direction: str
    state: str = "running"  # running | done | cancelled | failed
    total: int = 0  # frames the propagation will produce (an estimate for a container of inexact length)
    done: int = 0  # frames produced so far
    last: int | None = None  # index of the latest frame produced
    error: str | None = None
    started: float = field(default_factory=time.perf_counter)
    first_mask_s: float | None = None  # seconds from the start to the first mask
    seconds: float | None = None  # duration of a finished job
    frames: list[int] = field(default_factory=list)  # indices produced, in order
    changed: int = 0  # frames whose mask differs from the committed one (only those are staged)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def public(self) -> dict:
        keys = ("id", "direction", "state", "total", "done", "last", "error", "first_mask_s", "seconds", "changed")
        out = {k: getattr(self, k) for k in keys}
        out["fps"] = self.done / self.seconds if self.seconds else None
        return out


class Cancelled(Exception):
    """The user cancelled the propagation."""


def new_session_id(name: str) -> str:
    """A folder name: the video's name (safe characters only) and a short random suffix."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "video"
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def check_session_id(session_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", session_id):
        raise ValueError(f"session {session_id!r}: not a session name; use one the session list shows")


class Session:
    """A session folder and the operations the page performs on it. Thread-safe: one lock guards the files."""

    def __init__(self, folder: Path) -> None:
        self.dir = Path(folder)
        self.id = self.dir.name
        meta_path = self.dir / SESSION_FILE
        if not meta_path.is_file():
            raise ValueError(f"{self.dir}: no {SESSION_FILE} here; not a session folder")
        meta = json.loads(meta_path.read_text())
        self.meta = meta
        source = Path(meta["source"])
        if not source.is_absolute():
            source = self.dir / source
        self.frames = FrameCache(source, self.dir / "cache")
        self.objects: list[int] = [int(o) for o in meta.get("objects", [])]
        self.settings = Settings(**meta.get("settings", {}))
        self.lock = threading.RLock()
        self.job: Job | None = None
        for sub in ("annotations", "masks"):
            (self.dir / sub).mkdir(exist_ok=True)
        self._index = None if self.frames.files is None else {p.stem: i for i, p in enumerate(self.frames.files)}
        self._recover_staging()

    # -- creation ------------------------------------------------------------------------------
    @classmethod
    def create(cls, workdir: Path, source: Path, settings: Settings, session_id: str | None = None,
               uploaded: bool = False) -> Session:
        """A new session on ``source`` (a video file or frame folder) in ``workdir``.

        ``uploaded``: ``source`` is a file to move into the session's ``source/`` folder.
        """
        source = Path(source)
        probe = FrameCache(source, workdir / ".probe")  # checks the video before a folder is made
        probe.close()
        shutil.rmtree(workdir / ".probe", ignore_errors=True)
        session_id = session_id or new_session_id(probe.name)
        check_session_id(session_id)
        folder = Path(workdir) / session_id
        folder.mkdir(parents=True)
        if uploaded:
            (folder / "source").mkdir()
            target = folder / "source" / source.name
            shutil.move(str(source), target)
            recorded = target.relative_to(folder).as_posix()
        else:
            recorded = str(source.resolve())
        meta = {"version": 1, "source": recorded, "objects": [], "settings": asdict(settings),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write_json(folder / SESSION_FILE, meta)
        return cls(folder)

    def _save_meta(self) -> None:
        self.meta["objects"] = self.objects
        self.meta["settings"] = asdict(self.settings)
        _write_json(self.dir / SESSION_FILE, self.meta)

    # -- description ------------------------------------------------------------------------------
    def info(self) -> dict:
        """What the page needs to show the session."""
        height, width = self.frames.size
        palette = davis_palette()
        return {
            "id": self.id,
            "name": self.frames.name,
            "source": str(self.frames.source),
            "count": self.frames.count,
            "exact_count": self.frames.exact,
            "height": height,
            "width": width,
            "fps": self.frames.fps,
            "objects": [{"id": o, "colour": palette[o].tolist()} for o in self.objects],
            "palette": palette.tolist(),
            "settings": asdict(self.settings),
            "annotated": self.annotated_frames(),
            "propagated": len(self.mask_frames()),
            "job": self.job.public() if self.job else None,
        }

    def name_of(self, index: int) -> str:
        return self.frames.names(index)

    def index_of(self, name: str) -> int:
        return self._index[name] if self._index is not None else int(name)

    def check_index(self, index: int) -> None:
        if index < 0 or index >= self.frames.count:
            raise ValueError(f"frame {index}: outside the video (0..{self.frames.count - 1}); pick a frame inside it")

    # -- annotations ------------------------------------------------------------------------------
    def _annotation_path(self, index: int) -> Path:
        return self.dir / "annotations" / f"{self.name_of(index)}.png"

    def annotated_frames(self) -> list[int]:
        return sorted(self.index_of(p.stem) for p in (self.dir / "annotations").glob("*.png"))

    def annotation(self, index: int) -> np.ndarray | None:
        """uint8 [H, W] object ids the user gave for frame ``index``, or None."""
        path = self._annotation_path(index)
        return read_index_png(path) if path.is_file() else None

    def set_annotation(self, index: int, mask: np.ndarray) -> None:
        """Store the user's mask of frame ``index`` (an empty mask removes the annotation).

        Objects in it that the session does not list yet are added.
        """
        self.check_index(index)
        mask = np.asarray(mask, dtype=np.uint8)
        if mask.shape != tuple(self.frames.size):
            raise ValueError(
                f"frame {index}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but the video is "
                f"{self.frames.size[1]}x{self.frames.size[0]}; send a mask of the video's size"
            )
        ids = [int(v) for v in np.unique(mask) if v]
        if ids and max(ids) > MAX_OBJECT:
            raise ValueError(f"frame {index}: object id {max(ids)} in the mask; ids must be 1..{MAX_OBJECT}")
        with self.lock:
            if not ids:
                self._annotation_path(index).unlink(missing_ok=True)
                return
            write_index_png(self._annotation_path(index), mask, davis_palette())
            new = [o for o in ids if o not in self.objects]
            if new:
                self.objects = sorted(self.objects + new)
                self._save_meta()

    def delete_annotation(self, index: int) -> None:
        self.check_index(index)
        with self.lock:
            self._annotation_path(index).unlink(missing_ok=True)

    def import_mask(self, index: int, data: bytes, filename: str = "mask.png") -> np.ndarray:
        """A mask image (palette, greyscale or RGB PNG, read as ``segment.py --mask`` reads it) becomes the
        annotation of frame ``index``; returns its ids."""
        tmp = self.dir / f".import-{uuid.uuid4().hex[:8]}.png"
        tmp.write_bytes(data)
        try:
            reader = MaskReader()
            reader.used.update(self.objects)
            try:
                ids = reader.read(tmp, self.frames.size)
            except ValueError as error:
                raise ValueError(str(error).replace(str(tmp), filename)) from error
        finally:
            tmp.unlink(missing_ok=True)
        self.set_annotation(index, ids)
        return ids

    # -- objects ------------------------------------------------------------------------------
    def add_object(self) -> int:
        """A new object id: the smallest unused one (its colour is the palette's entry)."""
        with self.lock:
            free = next((o for o in range(1, MAX_OBJECT + 1) if o not in self.objects), None)
            if free is None:
                raise ValueError(f"objects: all {MAX_OBJECT} ids are in use; remove an object first")
            self.objects = sorted([*self.objects, free])
            self._save_meta()
            return free

    def remove_object(self, obj: int) -> None:
        """Drop object ``obj`` from the list, the annotations and the propagated masks."""
        with self.lock:
            self._refuse_while_running("remove an object")
            if obj not in self.objects:
                raise ValueError(f"object {obj}: no such object in this session (objects: {self.objects})")
            self.objects = [o for o in self.objects if o != obj]
            self._save_meta()
            for folder in ("annotations", "masks"):
                for path in sorted((self.dir / folder).glob("*.png")):
                    mask = read_index_png(path)
                    if (mask == obj).any():
                        mask[mask == obj] = 0
                        if folder == "annotations" and not mask.any():
                            path.unlink()
                        else:
                            write_index_png(path, mask, davis_palette())

    # -- settings -----------------------------------------------------------------------------------
    def set_settings(self, settings: Settings) -> None:
        with self.lock:
            self._refuse_while_running("change the settings")
            self.settings = settings
            self._save_meta()

    # -- masks ------------------------------------------------------------------------------------
    def _mask_path(self, index: int, folder: str = "masks") -> Path:
        return self.dir / folder / f"{self.name_of(index)}.png"

    def mask_frames(self) -> list[int]:
        return sorted(self.index_of(p.stem) for p in (self.dir / "masks").glob("*.png"))

    def mask(self, index: int) -> np.ndarray | None:
        """Committed propagated mask of frame ``index``, or None."""
        path = self._mask_path(index)
        return read_index_png(path) if path.is_file() else None

    def shown_mask(self, index: int) -> tuple[np.ndarray | None, str]:
        """The mask the page shows at ``index`` and where it comes from: the user's annotation, a mask of the
        running propagation, the committed mask, or none."""
        annotation = self.annotation(index)
        if annotation is not None:
            return annotation, "annotation"
        job = self.job
        if job is not None and job.state == "running":
            staged = self._mask_path(index, "staging")
            if staged.is_file():
                try:
                    return read_index_png(staged), "propagating"
                except ValueError:
                    pass  # being renamed into place: fall through to the committed mask
        mask = self.mask(index)
        return (mask, "propagated") if mask is not None else (None, "none")

    # -- propagation ----------------------------------------------------------------------------------
    def _refuse_while_running(self, what: str) -> None:
        if self.job is not None and self.job.state == "running":
            raise ValueError(f"cannot {what} while a propagation runs; wait for it or cancel it")

    def start_job(self, direction: str) -> Job:
        with self.lock:
            if direction not in DIRECTIONS:
                raise ValueError(f"direction {direction!r}: choose one of {DIRECTIONS}")
            self._refuse_while_running("start a propagation")
            if not self.annotated_frames():
                raise ValueError("propagate: no annotated frame; draw or import a mask first")
            self.job = Job(id=(self.job.id + 1 if self.job else 1), direction=direction)
            return self.job

    def run_job(self, job: Job, results: Iterator[tuple[int, np.ndarray]], total: int,
                on_end: Callable[[Job], None] | None = None) -> None:
        """Write ``results`` ((frame index, uint8 [H, W] mask) as the predictor yields them) into staging/ and
        commit them into masks/ when they are all there; on a cancel or an error nothing is committed.

        Masks equal to the committed ones are not staged (the predictor also yields the frames that were
        up to date), so a commit rewrites only the frames that changed."""
        staging = self.dir / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        job.total = total
        palette = davis_palette()
        try:
            for index, mask in results:
                if job.cancel.is_set():
                    raise Cancelled
                committed = self.mask(index)
                changed = committed is None or not np.array_equal(committed, mask)
                if changed:
                    write_index_png(self._mask_path(index, "staging"), mask, palette)
                with self.lock:
                    if job.first_mask_s is None:
                        job.first_mask_s = time.perf_counter() - job.started
                    job.done += 1
                    job.changed += changed
                    job.last = index
                    job.frames.append(index)
                    job.total = max(job.total, job.done)
            if job.cancel.is_set():
                raise Cancelled
            with self.lock:
                self._commit_staging()
                job.state = "done"
        except Cancelled:
            job.state = "cancelled"
        except Exception as error:  # noqa: BLE001 - reported to the page; the earlier masks stay
            job.state = "failed"
            job.error = f"{type(error).__name__}: {error}"
        finally:
            job.seconds = time.perf_counter() - job.started
            if job.state != "done":
                shutil.rmtree(staging, ignore_errors=True)
            if on_end is not None:
                on_end(job)

    def _commit_staging(self) -> None:
        staging = self.dir / "staging"
        names = sorted(p.name for p in staging.glob("*.png"))
        _write_json(staging / "COMMIT", names)
        self._finish_commit()

    def _finish_commit(self) -> None:
        staging = self.dir / "staging"
        names = json.loads((staging / "COMMIT").read_text())
        for name in names:
            if (staging / name).is_file():
                os.replace(staging / name, self.dir / "masks" / name)
        shutil.rmtree(staging)

    def _recover_staging(self) -> None:
        staging = self.dir / "staging"
        if (staging / "COMMIT").is_file():
            self._finish_commit()
        elif staging.exists():
            shutil.rmtree(staging)

    # -- export -----------------------------------------------------------------------------------------
    def export_masks(self) -> dict[int, Path]:
        """Frame index -> the mask file to export: the propagated mask, or the annotation of a frame that
        has not been propagated."""
        files = {self.index_of(p.stem): p for p in (self.dir / "annotations").glob("*.png")}
        files.update({self.index_of(p.stem): p for p in (self.dir / "masks").glob("*.png")})
        return dict(sorted(files.items()))

    def export(self, alpha: float = OVERLAY_ALPHA, overlay_video: bool = True) -> dict[str, Path]:
        """Write ``exports/``: masks/ (palette PNGs named as ``segment.py`` names them), overlay.mp4 (every
        frame, objects filled with weight ``alpha`` and outlined: ``util.pictures.overlay``) and <video>.zip of
        both; replaced as a whole."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"export: opacity {alpha} is outside 0..1")
        with self.lock:
            self._refuse_while_running("export")
            files = self.export_masks()
            if not files:
                raise ValueError("export: no masks yet; annotate a frame and propagate first")
            final = self.dir / "exports"
            tmp = self.dir / ".exports.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "masks").mkdir(parents=True)
            for path in files.values():
                shutil.copyfile(path, tmp / "masks" / path.name)
            out = {"masks": final / "masks"}
            if overlay_video:
                palette = davis_palette()
                with OverlayWriter(tmp / "overlay.mp4", self.frames.fps, tuple(self.frames.size)) as video:
                    index = 0
                    while index < self.frames.count:
                        try:
                            rgb = self.frames.rgb(index)
                        except IndexError:  # a container shorter than it declared
                            break
                        mask = read_index_png(files[index]) if index in files else None
                        video.write(rgb if mask is None else overlay(rgb, mask, palette, alpha))
                        index += 1
                out["overlay"] = final / "overlay.mp4"
            zip_name = f"{self.frames.name}.zip"
            with zipfile.ZipFile(tmp / zip_name, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted((tmp / "masks").glob("*.png")):
                    archive.write(path, f"masks/{path.name}")
                if overlay_video:
                    archive.write(tmp / "overlay.mp4", "overlay.mp4")
            out["zip"] = final / zip_name
            shutil.rmtree(final, ignore_errors=True)
            tmp.replace(final)
            return out


def mask_from_bytes(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Raw uint8 bytes (row-major, one id per pixel, as the page sends them) -> [H, W]."""
    height, width = size
    if len(data) != height * width:
        raise ValueError(f"mask: {len(data)} bytes for a {width}x{height} frame; send width x height bytes")
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width).copy()


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
