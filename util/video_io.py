"""Video containers: streaming frame reading (cv2.VideoCapture) and overlay mp4 writing.

The frames an ``OverlayWriter`` encodes are drawn by ``util.pictures.overlay``.

Nothing here holds more than one frame: ``VideoReader`` decodes on demand and
``OverlayWriter`` encodes each frame as it is given.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")

T = TypeVar("T")


def is_video_file(path: str | Path) -> bool:
    """Whether ``path`` names a video container (by its extension)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoReader:
    """Frames of a video container as uint8 [H, W, 3] RGB arrays, decoded one at a time.

    Opening checks that the file exists and that its first frame decodes, so a
    broken file fails with a message naming it before any work is done.

    Attributes:
        path: the container.
        height, width: frame size.
        fps: frames per second the container declares (25 if it declares none).
        frame_count: the frame count the container declares; an estimate for
            some formats (the number actually decoded is what counts).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: video file not found")
        capture = cv2.VideoCapture(str(self.path))
        try:
            ok, frame = capture.read() if capture.isOpened() else (False, None)
            if not ok or frame is None:
                raise ValueError(
                    f"{self.path}: cannot decode this video with OpenCV; convert it to H.264 mp4 "
                    "(e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or pass a folder of frames"
                )
            self.height, self.width = frame.shape[:2]
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and fps > 0 else 25.0
            self.frame_count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        finally:
            capture.release()

    def __iter__(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


def prefetch(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """Produce ``items`` on a background thread, at most ``depth`` ahead (decoding overlaps compute).

    Exceptions of the producer are re-raised in the consumer.
    """
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((done, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer thread
            buffer.put((done, error))

    thread = threading.Thread(target=produce, name="frame-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class OverlayWriter:
    """Writes RGB frames to an mp4 ('mp4v'), atomically: a temp file renamed on ``close``.

    Use as a context manager; on an exception the temp file is removed and the
    destination is left untouched.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        """size: (H, W) of the frames."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.tmp.unlink(missing_ok=True)  # the leftover of a killed run (our temporary name only)
        height, width = size
        self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self._writer.isOpened():
            raise ValueError(f"{self.path}: OpenCV cannot write an mp4v video here; use a .mp4 path you can write")
        self.size = size
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one uint8 [H, W, 3] RGB frame."""
        if rgb.shape[:2] != self.size:
            raise ValueError(f"{self.path}: frame of size {rgb.shape[:2]} in a video of size {self.size}")
        self._writer.write(np.ascontiguousarray(rgb[..., ::-1]))
        self.frames += 1

    def close(self, commit: bool = True) -> None:
        """Finish the file and rename it into place (``commit``), or remove it."""
        self._writer.release()
        if commit:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)
