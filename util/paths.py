"""Names from input data that become output paths: one check, used by every reader and writer.

Video names (YouTube-VOS meta.json keys, DAVIS ImageSets lines, folder names) and
frame names end up as folder and file names under an output root and as entries
of the submission zip. A name such as ``../../escape`` would otherwise point
outside that root, and the code that replaces a finished folder deletes its
target first. ``safe_name`` refuses such names where they are read;
``inside`` is the last check before anything is replaced or deleted.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath


def _problem(value: object) -> str | None:
    """Why ``value`` cannot be one path part, or None if it can."""
    if not isinstance(value, str):
        return f"it is a {type(value).__name__}, not a string"
    if value == "":
        return "it is empty"
    if value in (".", ".."):
        return "it names the current or parent folder"
    if "\x00" in value:
        return "it contains a NUL character"
    if "/" in value or "\\" in value:
        return "it contains a path separator"
    if PurePosixPath(value).anchor or PureWindowsPath(value).anchor:
        return "it is an absolute path or a drive"
    return None


def safe_name(value: object, source: str | os.PathLike, what: str = "name") -> str:
    """``value`` if it can be one file or folder name under an output root, else a ValueError.

    Args:
        value: a name read from input data.
        source: the file (or flag) it was read from; named in the error.
        what: what the name is ('video name', 'frame name', ...), for the error.

    Refused: empty, ``.``, ``..``, ``/`` or ``\\`` anywhere, NUL, absolute paths and drives.
    """
    problem = _problem(value)
    if problem is not None:
        raise ValueError(
            f"{source}: {what} {value!r} cannot be used as a file or folder name ({problem}); names from the "
            "data become output paths, so rename it in the data to a plain name without '/', '\\', NUL, "
            "'.' or '..'"
        )
    return value


def inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` lies strictly below ``root`` once both are resolved (symbolic links followed)."""
    root_resolved = Path(root).resolve()
    resolved = Path(path).resolve()
    return resolved != root_resolved and resolved.is_relative_to(root_resolved)


def check_inside(root: str | os.PathLike, path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` if it lies strictly below ``root``, else a ValueError naming both."""
    if not inside(root, path):
        raise ValueError(
            f"{path}: this {what} lies outside the output root {root} (resolved: {Path(path).resolve()}); "
            "refusing to write, replace or delete it. Check the names in the data and any symbolic links "
            "under the output folder"
        )
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``path`` holds ``text`` complete or is as it was: written beside it, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
