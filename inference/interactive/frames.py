"""Random access to the frames of a video without holding the video in memory.

A frame folder is read in place. A container (mp4, ...) is decoded in order, once, the
first time a frame is needed: every decoded frame goes to a lossless PNG in the session's
cache folder, so later reads (scrubbing back, backward propagation) are file reads and
give exactly the pixels a streaming decode gives (``segment.py``'s input).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np

from dataset.frames import list_frames, read_rgb
from util.video_io import VideoReader, is_video_file

#: PNG compression of cached frames: level 1 is ~3x faster to write than the default and ~20 % larger.
CACHE_PNG_LEVEL = 1


class FrameCache:
    """Frames of a folder or a container, by index.

    Args:
        source: a frame folder or a video file.
        cache_dir: where a container's decoded frames are kept (unused for a folder).

    Attributes:
        count: frames in the video (a container's declared count until the decoder has reached its end;
            ``exact`` says which).
        size: (H, W); fps: frames per second (25 for a folder); name: the video's name.
    """

    def __init__(self, source: Path, cache_dir: Path) -> None:
        self.source = Path(source)
        self.cache_dir = Path(cache_dir)
        self._lock = threading.Lock()
        self._capture: cv2.VideoCapture | None = None
        self._decoded = 0  # container frames decoded (and cached) so far, in order
        if self.source.is_dir():
            self.files: list[Path] | None = list_frames(self.source)
            self.count = len(self.files)
            self.exact = True
            self.size = read_rgb(self.files[0]).shape[:2]
            self.fps = 25.0
            self.name = self.source.name
            return
        if not self.source.exists():
            raise ValueError(f"{self.source}: no such video file or frame folder; give an mp4 or a folder of frames")
        if not is_video_file(self.source):
            raise ValueError(
                f"{self.source}: neither a frame folder nor a video file (.mp4, .avi, .mov, .mkv, ...); "
                "give an mp4 or a folder of frames"
            )
        self.files = None
        reader = VideoReader(self.source)
        self.size = (reader.height, reader.width)
        self.fps = reader.fps
        self.name = self.source.stem
        self.count = max(1, reader.frame_count)
        self.exact = False
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        info = self._info_path()
        if info.is_file():  # a previous run decoded to the end: its count is exact
            self.count = int(json.loads(info.read_text())["count"])
            self.exact = True
        self._decoded = self._cached_prefix()

    # -- names ---------------------------------------------------------------------------
    def names(self, index: int) -> str:
        """File stem of frame ``index`` in exported masks: the frame file's stem, or 00000, 00001, ...
        for a container (as ``segment.py`` names them)."""
        return self.files[index].stem if self.files is not None else f"{index:05d}"

    # -- frames --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        return self.rgb(index)

    def rgb(self, index: int) -> np.ndarray:
        """uint8 [H, W, 3] RGB of frame ``index``; IndexError past the end."""
        if index < 0 or (self.exact and index >= self.count):
            raise IndexError(f"frame {index} is outside the video (0..{self.count - 1})")
        if self.files is not None:
            return read_rgb(self.files[index])
        path = self._frame_path(index)
        if index >= self._decoded:
            self._decode_to(index)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"{path}: cached frame cannot be read; delete {self.cache_dir} to decode the video again")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def decode_all(self) -> int:
        """Decode a container to its end (caching every frame), so that ``count`` is exact; returns it."""
        while not self.exact:
            try:
                self.rgb(self._decoded)
            except IndexError:
                break
        return self.count

    def jpeg(self, index: int, quality: int = 90) -> bytes:
        """Frame ``index`` as JPEG bytes, for display in the page."""
        bgr = cv2.cvtColor(self.rgb(index), cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise OSError(f"frame {index}: JPEG encoding failed")
        return data.tobytes()

    def close(self) -> None:
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None

    # -- container decoding ---------------------------------------------------------------
    def _frame_path(self, index: int) -> Path:
        return self.cache_dir / f"{index:05d}.png"

    def _info_path(self) -> Path:
        return self.cache_dir / "complete.json"

    def _cached_prefix(self) -> int:
        """Frames 0..n-1 already in the cache (a previous server run decoded them)."""
        n = 0
        while self._frame_path(n).is_file():
            n += 1
        return n

    def _decode_to(self, index: int) -> None:
        """Decode in order up to frame ``index``, caching every frame on the way; one frame in memory."""
        with self._lock:
            if index < self._decoded:
                return
            if self._capture is None:
                self._capture = cv2.VideoCapture(str(self.source))
                # Seeking by frame number is not exact for every codec: skip frames by decoding them instead.
                for _ in range(self._decoded):
                    if not self._capture.grab():
                        break
            while self._decoded <= index:
                if not self._read_one():
                    raise IndexError(f"frame {index} is outside the video (0..{self.count - 1})")
            if self._decoded >= self.count and not self.exact and self._read_one():
                self.count = self._decoded + 1  # the declared count was short: at least one more may follow

    def _read_one(self) -> bool:
        """Decode and cache the next frame; False (and the count made exact) at the end of the video."""
        ok, bgr = self._capture.read()
        if not ok:
            self._reached_end()
            return False
        target = self._frame_path(self._decoded)
        tmp = target.with_name(f".{target.name}.tmp.png")
        if not cv2.imwrite(str(tmp), bgr, [cv2.IMWRITE_PNG_COMPRESSION, CACHE_PNG_LEVEL]):
            raise OSError(f"{tmp}: cannot write a cached frame; check free space in {self.cache_dir}")
        tmp.replace(target)
        self._decoded += 1
        self.count = max(self.count, self._decoded)
        return True

    def _reached_end(self) -> None:
        self.count = self._decoded
        self.exact = True
        self._info_path().write_text(json.dumps({"count": self.count}))
        if self._capture is not None:
            self._capture.release()
            self._capture = None
