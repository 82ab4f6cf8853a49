"""Writing mask PNGs in the background, and output folders that are complete or absent.

``MaskWriter`` overlaps disk output with compute; ``AtomicFolder`` fills a hidden
temporary sibling (``.NAME.partial``) and renames it into place at the end, so an
interrupted run never leaves a folder that looks finished. A committed folder may
carry a *stamp* (``.pcvos-run.json``: the settings that produced it), which lets a
rerun skip it only when the settings match.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from util.palette import davis_palette
from util.paths import check_inside, inside

#: file name of the settings record inside a committed output folder
STAMP = ".pcvos-run.json"
#: suffix of the temporary sibling an AtomicFolder fills
PARTIAL = ".partial"


def _save_png(path: Path, image: Image.Image) -> None:
    # Temp file + rename: a PNG is never half-written under its final name. No mkdir here, so a
    # write still queued after its folder was removed cannot bring the folder back.
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)


def write_mask_png(path: str | os.PathLike, mask: np.ndarray, palette: np.ndarray | None = None,
                   binary: bool = False) -> None:
    """Write uint8 [H, W] object ids into an existing folder, atomically.

    Palette PNG whose indices are the ids (DAVIS palette unless ``palette`` [N, 3] is given),
    or with ``binary`` a greyscale 0/255 PNG (any non-zero id = the object; DAVIS 2016).
    """
    if binary:
        image = Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8), mode="L")
    else:
        image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))
        colours = davis_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
        image.putpalette(colours.reshape(-1).tolist())
    _save_png(Path(path), image)


class MaskWriter:
    """Writes mask PNGs on a worker thread (palette PNGs, or with ``binary`` greyscale 0/255).

    ``submit`` returns at once. A failed write is never silent: it is raised by the
    next ``submit``, by ``flush`` (which waits until everything submitted is on
    disk) and, if still unreported, by ``close``. After a failure nothing more is
    written. ``drain`` waits without raising, for clean-up paths.
    """

    def __init__(self, binary: bool = False, max_pending: int = 64) -> None:
        self.binary = binary
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._reported = False
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="mask-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if isinstance(job, threading.Event):
                job.set()
                continue
            if self._error is None:
                path, mask, palette = job
                try:
                    write_mask_png(path, mask, palette, self.binary)
                except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            self._reported = True
            raise self._error

    def submit(self, path: Path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
        """Queue uint8 [H, W] ids for ``path`` (``palette`` [N, 3] is ignored when ``binary``)."""
        self._raise()
        self._queue.put((Path(path), mask, palette))

    def drain(self) -> None:
        """Wait until every submitted mask is written (or dropped after a failure); never raises it."""
        if self._closed:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait()

    def flush(self) -> None:
        """Wait until all submitted masks are on disk; raise the worker's error if a write failed."""
        self.drain()
        self._raise()

    def close(self) -> None:
        """Stop the worker; raise a failed write that no ``submit`` / ``flush`` reported yet."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        if not self._reported:
            self._raise()

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        self._reported = True  # an exception is already on its way; do not replace it
        self.close()


def partial_name(final: Path) -> Path:
    """The temporary sibling an AtomicFolder fills for ``final``: ``.NAME.partial``."""
    return final.with_name(f".{final.name}{PARTIAL}")


def foreign_entry(folder: Path) -> Path | None:
    """An entry of ``folder`` that a mask writer does not produce, or None.

    Ours: regular files named ``*.png`` and hidden regular files (the stamp, PNG temporaries).
    A folder holding only those may be replaced by a new result; anything else (frames,
    sub-folders, links) means the path was not an output folder.
    """
    for entry in folder.iterdir():
        ours = not entry.is_symlink() and entry.is_file() and (entry.suffix == ".png" or entry.name.startswith("."))
        if not ours:
            return entry
    return None


def replace_problem(final: Path, need_stamp: bool = False) -> str | None:
    """Why an AtomicFolder may not replace ``final`` (None when it may: absent, empty, or a folder of masks).

    With ``need_stamp`` a folder of masks must also carry a stamp (it was committed by this program).
    """
    if final.is_symlink():
        return "it is a symbolic link"
    if not final.exists():
        return None
    if not final.is_dir():
        return "it is a file, not a folder"
    entry = foreign_entry(final)
    if entry is not None:
        return f"it holds {entry.name!r}, which this program does not write"
    if need_stamp and read_stamp(final) is None and any(final.iterdir()):
        return f"it holds files but no {STAMP} (it was not written by this program)"
    return None


class AtomicFolder:
    """A folder that appears complete or not at all: fill ``tmp``, then ``commit``.

    ``final`` must lie strictly below ``root`` (the output root) once resolved; this
    is checked before anything is created, replaced or deleted, so a name from the
    data can never make it touch a folder elsewhere. A leftover ``tmp`` of a killed
    run is removed first.

    On ``commit`` an existing ``final`` is replaced when it holds only masks
    (see ``foreign_entry``); otherwise it is refused with a ValueError. With ``merge``
    (a folder the user named, which may hold their own files) it is replaced only when
    it is empty or an earlier result carrying a stamp, and otherwise the new files are
    moved into it one by one (the old behaviour of writing into the folder; not atomic
    as a whole, and files of other names are kept).
    """

    def __init__(self, final: str | os.PathLike, root: str | os.PathLike, merge: bool = False,
                 protect: tuple[str | os.PathLike, ...] = ()) -> None:
        """``protect``: input files; a ``final`` that holds one of them is never replaced (merged with ``merge``)."""
        self.root = Path(root)
        self.final = Path(final)
        self.merge = merge
        self.protect = tuple(Path(p) for p in protect)
        self.tmp = partial_name(self.final)
        check_inside(self.root, self.final, "output folder")
        check_inside(self.root, self.tmp, "temporary folder")
        remove_partial(self.tmp)
        self.tmp.mkdir(parents=True)

    def commit(self) -> None:
        """Move the filled ``tmp`` into place."""
        # Checked again: a link planted since __init__ must not redirect the deletion below.
        check_inside(self.root, self.final, "output folder")
        problem = replace_problem(self.final, need_stamp=self.merge)
        if problem is None and any(inside(self.final, p) for p in self.protect):
            problem = "it holds an input file"
        if problem is None:
            if self.final.exists():
                shutil.rmtree(self.final)
            self.tmp.replace(self.final)
            return
        if not (self.merge and self.final.is_dir() and not self.final.is_symlink()):
            raise ValueError(
                f"{self.final}: cannot replace this folder with the new masks ({problem}); choose an output "
                "folder that is new, empty or holds only earlier results"
            )
        for entry in sorted(self.tmp.iterdir()):
            if entry.name == STAMP:  # a stamp says the whole folder is ours: not true of this one
                entry.unlink()
            else:
                entry.replace(self.final / entry.name)
        self.tmp.rmdir()

    def abort(self) -> None:
        """Remove ``tmp`` (the final folder, if any, is left as it was)."""
        remove_partial(self.tmp)


def remove_partial(tmp: Path) -> None:
    """Remove a temporary ``.NAME.partial`` folder (or a link by that name); nothing else."""
    if not (tmp.name.startswith(".") and tmp.name.endswith(PARTIAL)):
        raise ValueError(f"{tmp}: not a temporary folder name (.NAME{PARTIAL}); refusing to delete it")
    if tmp.is_symlink() or tmp.is_file():
        tmp.unlink()
    elif tmp.exists():
        shutil.rmtree(tmp)


def write_stamp(folder: Path, settings: dict) -> None:
    """Record ``settings`` (JSON-serialisable) in ``folder`` (usually an AtomicFolder's ``tmp``)."""
    (folder / STAMP).write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def read_stamp(folder: Path) -> dict | None:
    """The settings recorded in ``folder``, or None (no record, or not readable as a JSON object)."""
    try:
        data = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
