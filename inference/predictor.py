"""The predictor: the one object a program needs to segment videos (see docs/api.md).

It takes RGB ``uint8`` frames (numpy arrays, a frame folder, a video file, or
frames pushed one at a time from a camera loop) and masks of any object ids in
1..254, and returns ``uint8`` id masks at the input resolution. Resizing to the
working resolution, ImageNet normalisation, and the mapping from the user's
object ids to the engine's tensor slots happen inside.

Two ways to use it:

* **a held video** -- ``open(video)``, ``add_mask(t, mask)`` at any frames,
  ``propagate('forward' | 'backward' | 'both')``. Every computed mask is kept
  (in memory for arrays, on disk for folders and video files), so that after
  a correction only the frames it changes are recomputed (see
  :meth:`Predictor.propagate`);
* **live** -- ``step(frame, mask=None)`` per camera frame, ``flush()`` at the end.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from dataset.frames import list_frames, prepare_image, prepare_label, read_rgb
from inference.engine import EngineConfig, EngineSession, FrameInput, PCVOSEngine, prepare_network
from inference.memory_store import MemoryStore
from inference.objects import MAX_OBJECT_ID, ObjectManager
from inference.runner import VideoRun
from inference.settings import DIRECTIONS, resolve_engine_config
from model.network import PCVOS
from util.video_io import VideoReader, is_video_file

# =============================================================================================
# Frames read at random, masks kept per frame
# =============================================================================================


class FrameSource:
    """Frames of a held video, read at random: ``len``, ``read(i)`` -> uint8 [H, W, 3] RGB, ``name(i)``."""

    in_memory = False  # whether computed masks are kept in memory (else on disk)

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def name(self, index: int) -> str:
        return f"frame {index}"

    def close(self) -> None:
        """Release what the source holds (a decoded-frame cache)."""


class ArrayFrames(FrameSource):
    """A list of uint8 [H, W, 3] RGB arrays (or one [T, H, W, 3] array)."""

    in_memory = True

    def __init__(self, frames: Sequence[np.ndarray] | np.ndarray) -> None:
        self.frames = frames
        for i, frame in enumerate(frames):
            _check_rgb(frame, f"frame {i}")

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, index: int) -> np.ndarray:
        return np.asarray(self.frames[index])


class FolderFrames(FrameSource):
    """A folder of image files, in name order (decoded when read)."""

    def __init__(self, folder: str | Path) -> None:
        self.files = list_frames(Path(folder))

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        return read_rgb(self.files[index])

    def name(self, index: int) -> str:
        return str(self.files[index])


class VideoFileFrames(FrameSource):
    """A video container, decoded once, frame by frame, into a disk cache of raw frames (``.npy``).

    Args:
        path: the video file.
        cache_dir: where the decoded frames go (default: a temporary folder removed by :meth:`close`).
    """

    def __init__(self, path: str | Path, cache_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        reader = VideoReader(self.path)  # checks that the file exists and decodes
        self._own = cache_dir is None
        self.cache = Path(tempfile.mkdtemp(prefix="pcvos-frames-")) if cache_dir is None else Path(cache_dir)
        self.cache.mkdir(parents=True, exist_ok=True)
        count = 0
        for count, rgb in enumerate(reader, start=1):
            np.save(self.cache / f"{count - 1:06d}.npy", rgb)
        if count == 0:
            raise ValueError(f"{self.path}: no frame could be decoded")
        self.count = count

    def __len__(self) -> int:
        return self.count

    def read(self, index: int) -> np.ndarray:
        return np.load(self.cache / f"{index:06d}.npy")

    def name(self, index: int) -> str:
        return f"{self.path.name} frame {index}"

    def close(self) -> None:
        if self._own:
            shutil.rmtree(self.cache, ignore_errors=True)


def open_video(video: str | Path | Sequence[np.ndarray] | np.ndarray | FrameSource,
               cache_dir: str | Path | None = None) -> FrameSource:
    """A :class:`FrameSource` for a list/array of frames, a frame folder or a video file."""
    if isinstance(video, FrameSource):
        return video
    if isinstance(video, (str, Path)):
        path = Path(video)
        if path.is_dir():
            return FolderFrames(path)
        if is_video_file(path):
            return VideoFileFrames(path, cache_dir)
        raise ValueError(f"{path}: neither a frame folder nor a video file (.mp4, .avi, ...); pass one of those")
    return ArrayFrames(video)


class _MaskStore:
    """uint8 masks per frame index, in memory or as ``.npy`` files in a folder."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._masks: dict[int, np.ndarray] = {}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def write(self, index: int, mask: np.ndarray) -> None:
        if self.folder is None:
            self._masks[index] = mask
        else:
            np.save(self.folder / f"{index:06d}.npy", mask)

    def read(self, index: int) -> np.ndarray:
        return self._masks[index] if self.folder is None else np.load(self.folder / f"{index:06d}.npy")


class _Track:
    """One direction of travel through a held video: the engine runs over *positions* 0..T-1, which are
    the frames in order (forward) or in reverse order (backward).

    valid: positions whose stored mask is up to date.
    snapshots: position p -> the engine session just before p was pushed (taken between clips).
    """

    def __init__(self, reverse: bool, length: int, masks: _MaskStore) -> None:
        self.reverse = reverse
        self.length = length
        self.masks = masks
        self.valid: set[int] = set()
        self.snapshots: dict[int, EngineSession] = {}

    def frame(self, position: int) -> int:
        return self.length - 1 - position if self.reverse else position

    position = frame  # the mapping is its own inverse

    @property
    def empty(self) -> bool:
        return not self.valid and not self.snapshots

    def invalidate(self, start: int, stop: int) -> None:
        """Positions start..stop (inclusive) must be recomputed.

        The range is widened back to the snapshot a run will resume from (the
        start of the clip that held ``start``, or the first position when there
        is none), so the positions of a rerun are exactly the invalid ones, and
        the snapshots inside it, built from the old masks, are dropped.
        """
        resume = max((s for s in self.snapshots if s <= start), default=0)
        self.valid -= set(range(resume, stop + 1))
        for s in [s for s in self.snapshots if resume < s <= stop]:
            del self.snapshots[s]


# =============================================================================================
# The predictor
# =============================================================================================


class Predictor:
    """Video object segmentation for programs: held videos with corrections, both directions, and live frames.

    Args:
        network: a :class:`PCVOS` in eval mode (its device is the predictor's).
        config: engine settings (:class:`EngineConfig`; default: the released ones).
        size: working short side in pixels (default 480); -1 keeps the original resolution. Masks always come
            back at the input resolution.
        memory: builds the memory store of a video (default keep-all; see ``MemoryOptions.factory``).
        prepare: apply :func:`prepare_network` to ``network`` (set False if you prepared it yourself).

    Attributes:
        objects: the :class:`ObjectManager` (user ids -> tensor slots).
        frames_pushed: frames handed to the engine so far (what recomputation costs).
    """

    def __init__(
        self,
        network: PCVOS,
        config: EngineConfig | None = None,
        size: int = 480,
        memory: Callable[[], MemoryStore] = MemoryStore,
        prepare: bool = True,
    ) -> None:
        self.config = config or EngineConfig()
        if prepare:
            prepare_network(network, self.config)
        self.network = network
        self.engine = PCVOSEngine(network, self.config, memory_factory=memory)
        self.device = self.engine.device
        self.size = size
        self.objects = ObjectManager()
        self.frames_pushed = 0
        self._source: FrameSource | None = None
        self._frame_size: tuple[int, int] | None = None
        self._annotations: dict[int, np.ndarray] = {}
        self._tracks: dict[str, _Track] = {}
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._live: VideoRun | None = None
        self._live_next = 0
        self._live_size: tuple[int, int] | None = None

    @classmethod
    def from_checkpoint(
        cls,
        model: str | Path,
        device: str | torch.device = "auto",
        config: EngineConfig | None = None,
        size: int = 480,
        memory: Callable[[], MemoryStore] = MemoryStore,
    ) -> Predictor:
        """A predictor for a checkpoint file (PCVOS, STCN or train.py), or ``'recipe'`` (untrained test weights).

        Without ``config``, the settings are chosen as for the drivers: L and mirror augmentation are what the
        checkpoint records, everything else the defaults (:func:`inference.settings.resolve_engine_config`).
        """
        from model.checkpoint import build_model
        from util.recipe_weights import apply_recipe
        from util.runtime import resolve_device

        device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        recorded = None
        if str(model) == "recipe":
            network = apply_recipe(PCVOS()).to(device).eval()
        else:
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: checkpoint not found; give a .pth file or 'recipe'")
            network, report = build_model(path, device)
            recorded = report.inference
        if config is None:
            config = resolve_engine_config(recorded)
        return cls(network, config, size=size, memory=memory)

    # -- a held video -----------------------------------------------------------------------
    def open(self, video: str | Path | Sequence[np.ndarray] | np.ndarray | FrameSource,
             cache_dir: str | Path | None = None) -> int:
        """Hold a video (frame list/array, folder, or video file) for :meth:`add_mask` and :meth:`propagate`.

        A video file is decoded once into ``cache_dir`` (default: a temporary folder). Forgets the previous
        video, its masks and objects. Returns the number of frames.
        """
        self.close()
        source = open_video(video, cache_dir)
        if len(source) == 0:
            raise ValueError(f"{video}: the video has no frames")
        self._source = source
        self._frame_size = tuple(source.read(0).shape[:2])
        return len(source)

    @property
    def num_frames(self) -> int:
        return 0 if self._source is None else len(self._source)

    def add_mask(self, frame_index: int, mask: np.ndarray) -> None:
        """Annotate frame ``frame_index`` of the held video: new objects, or a correction of existing ones.

        ``mask``: uint8 [H, W] object ids at the frame's resolution (0 = no object given there). The objects
        in it replace what earlier masks of this frame said about them; other objects' masks at this frame
        stay. Frames the annotation changes are recomputed by the next :meth:`propagate`.
        """
        source = self._need_video()
        if not 0 <= frame_index < len(source):
            raise ValueError(f"frame index {frame_index}: outside the video (0..{len(source) - 1})")
        mask = self._check_mask(mask, f"mask for frame {frame_index}")
        old = self._annotations.get(frame_index)
        merged = np.zeros_like(mask) if old is None else old.copy()
        given = [int(v) for v in np.unique(mask) if v > 0]
        merged[np.isin(merged, given)] = 0
        merged[mask > 0] = mask[mask > 0]
        before = set() if old is None else {int(v) for v in np.unique(old) if v > 0}
        changed = {obj for obj in before | set(given) if old is None or not np.array_equal(old == obj, merged == obj)}
        if not changed:
            return
        self.objects.add(given)
        if merged.any():
            self._annotations[frame_index] = merged
        else:
            self._annotations.pop(frame_index, None)
        for track in self._tracks.values():
            start = track.position(frame_index)
            track.invalidate(start, self._next_annotation(track, start, changed))

    def remove_object(self, obj: int) -> None:
        """Forget object ``obj``: its annotations go, and every frame computed with it is recomputed by the
        next :meth:`propagate` (from its first annotation in each direction on). In live mode it stops being
        tracked at once."""
        if obj not in self.objects.ids:
            raise ValueError(f"object id {obj}: no such object (known: {self.objects.ids})")
        slot = self.objects.slot(obj)
        frames = sorted(t for t, m in self._annotations.items() if (m == obj).any())
        for track in self._tracks.values():
            if frames:
                first = min(track.position(t) for t in frames)
                track.invalidate(first, track.length - 1)
        for t in frames:
            self._annotations[t][self._annotations[t] == obj] = 0
            if not self._annotations[t].any():
                del self._annotations[t]
        self.objects.remove(obj)
        if self._live is not None and self._live.session is not None:
            self._live.session.drop_objects([slot])

    def reset(self) -> None:
        """Forget every mask, object and computed result, and the live stream; a held video stays held."""
        self._annotations.clear()
        self._tracks.clear()
        self.objects.clear()
        self._live = None
        self._live_next = 0
        self._live_size = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def close(self) -> None:
        """:meth:`reset`, and release the held video (and its frame cache)."""
        self.reset()
        if self._source is not None:
            self._source.close()
        self._source = None
        self._frame_size = None

    def propagate(self, direction: str = "forward") -> Iterator[tuple[int, np.ndarray]]:
        """Segment the held video from its masks; yields ``(frame_index, uint8 [H, W] ids)`` in travel order.

        * ``forward``: frames from the first annotated one to the end;
        * ``backward``: the same engine on the frames in reverse order, from the last annotated frame to
          frame 0;
        * ``both``: forward, then the frames before the first annotated one from the backward run.

        Every frame's mask is kept. Frames still up to date are read back, not recomputed; the others are
        recomputed, and yielded as their clip finishes. What a correction makes out of date, in a
        direction of travel: :meth:`add_mask` at frame t, for the objects whose mask at t changed,
        recomputes from the first frame of the clip that held t in the last run (at most L - 1 frames
        before t; those frames now form a shorter clip ending at t) to the next frame, in the direction of
        travel, annotated for any of those objects, inclusive (or to the end). When the correction adds no
        new object, that run equals, byte for byte, a fresh run with all the annotations (a fresh run
        would give a new object its channel from the first frame on, which moves probabilities by float
        rounding). Frames after that next annotation keep their masks (the annotation there re-anchors
        the objects; the memory they were computed with lacks the correction). :meth:`remove_object`
        recomputes from the object's first annotation on.

        The first propagation of a video gives the masks ``eval_generic.py`` / ``segment.py`` write for
        the same frames, masks and settings, byte for byte.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r}: choose one of {DIRECTIONS}")
        self._need_video()
        if not self._annotations:
            raise ValueError("no mask given: call add_mask(frame_index, mask) before propagate")
        return self._propagate(direction)

    def _propagate(self, direction: str) -> Iterator[tuple[int, np.ndarray]]:
        if all(track.empty for track in self._tracks.values()) and self._live is None:
            self.objects.compact()  # nothing computed holds slots: number them as the benchmark drivers do
        if direction in ("forward", "both"):
            yield from self._run(self._track("forward"))
        if direction in ("backward", "both"):
            first = min(self._annotations)
            for index, mask in self._run(self._track("backward")):
                if direction == "backward" or index < first:
                    yield index, mask

    def result(self, frame_index: int, direction: str = "forward") -> np.ndarray | None:
        """The stored mask of a frame from the last propagation in ``direction`` (None if not computed)."""
        track = self._tracks.get(direction)
        if track is None or track.position(frame_index) not in track.valid:
            return None
        return track.masks.read(frame_index)

    # -- live ----------------------------------------------------------------------------------
    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> list[tuple[int, np.ndarray]]:
        """Push the next frame of a live stream (a camera loop); returns the masks that became final.

        Frames are numbered 0, 1, ... in the order pushed. ``mask`` (uint8 [H, W] ids) annotates this frame:
        new objects or corrections. Latency: at L > 1 a frame's mask arrives when its clip is complete,
        i.e. with the push of the clip's last frame (up to L - 1 frames later) or of an annotated frame, or
        from :meth:`flush`; at L = 1 every push returns its own frame's mask. Frames before the first mask
        return nothing. Live masks are not kept.
        """
        _check_rgb(frame, f"live frame {self._live_next}")
        if self._live is None:
            self._live = VideoRun(self.engine, objects=self.objects, session=self.engine.start())
            self._live_size = tuple(frame.shape[:2])
        if tuple(frame.shape[:2]) != self._live_size:
            raise ValueError(
                f"live frame {self._live_next}: {frame.shape[1]}x{frame.shape[0]} but the stream started at "
                f"{self._live_size[1]}x{self._live_size[0]}; every frame of a stream must have one size"
            )
        label = None
        if mask is not None:
            mask = self._check_mask(mask, f"mask for live frame {self._live_next}", self._live_size)
        if mask is not None and mask.any():  # a mask without objects says nothing
            self.objects.add([int(v) for v in np.unique(mask) if v > 0])
            label = prepare_label(self.objects.slot_map(mask), self.size)
        index = self._live_next
        self._live_next += 1
        self.frames_pushed += 1
        results = self._live.push(FrameInput(index, prepare_image(frame, self.size), label))
        return [(i, self._live.mask(prob, self._live_size)) for i, prob in results]

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """End of the live stream: the masks of the frames still pending. The next :meth:`step` starts a new
        stream (with the same objects)."""
        if self._live is None:
            return []
        run, size = self._live, self._live_size
        self._live = None
        self._live_next = 0
        return [(i, run.mask(prob, size)) for i, prob in run.flush()]

    # -- internals -------------------------------------------------------------------------------
    def _need_video(self) -> FrameSource:
        if self._source is None:
            raise ValueError("no video held: call open(video) first (a frame list, folder or video file)")
        return self._source

    def _check_mask(self, mask: np.ndarray, what: str, size: tuple[int, int] | None = None) -> np.ndarray:
        mask = np.asarray(mask)
        size = size or self._frame_size
        if mask.ndim != 2 or tuple(mask.shape) != tuple(size):
            raise ValueError(f"{what}: shape {mask.shape}, but the frames are {size}; give a [H, W] id map")
        if mask.dtype != np.uint8:
            if not np.issubdtype(mask.dtype, np.integer) or mask.min() < 0 or mask.max() > 255:
                raise ValueError(f"{what}: values must be integer object ids 0..{MAX_OBJECT_ID}")
            mask = mask.astype(np.uint8)
        if (mask == 255).any():
            raise ValueError(f"{what}: contains 255 (the void label); use object ids 1..{MAX_OBJECT_ID}")
        return mask

    def _track(self, direction: str) -> _Track:
        track = self._tracks.get(direction)
        if track is None:
            source = self._need_video()
            folder = None
            if not source.in_memory:
                if self._scratch is None:
                    self._scratch = tempfile.TemporaryDirectory(prefix="pcvos-masks-")
                folder = Path(self._scratch.name) / direction
            track = self._tracks[direction] = _Track(direction == "backward", len(source), _MaskStore(folder))
        return track

    def _next_annotation(self, track: _Track, start: int, objects: set[int]) -> int:
        """The first position after ``start`` annotated for any of ``objects``, the last position if one of
        them has none."""
        stop = start
        for obj in objects:
            later = [track.position(t) for t, m in self._annotations.items()
                     if track.position(t) > start and (m == obj).any()]
            if not later:
                return track.length - 1
            stop = max(stop, min(later))
        return stop

    def _input(self, track: _Track, position: int) -> FrameInput:
        source, index = self._source, track.frame(position)
        rgb = source.read(index)
        if tuple(rgb.shape[:2]) != self._frame_size:
            raise ValueError(
                f"{source.name(index)}: {rgb.shape[1]}x{rgb.shape[0]} but the video's first frame is "
                f"{self._frame_size[1]}x{self._frame_size[0]}; every frame of a video must have one size"
            )
        annotation = self._annotations.get(index)
        label = None if annotation is None else prepare_label(self.objects.slot_map(annotation), self.size)
        return FrameInput(position, prepare_image(rgb, self.size), label, source=source.name(index))

    def _run(self, track: _Track) -> Iterator[tuple[int, np.ndarray]]:
        """Yield every annotated-onward position's mask in travel order, recomputing the invalid ones.

        A rerun resumes from the snapshot at the first invalid position (the
        first annotated position when there is none), pushes frames until it
        is between clips with a valid position next (or at the end), and
        stores what it computes.
        """
        first = min(track.position(t) for t in self._annotations)
        position = first
        while position < track.length:
            if position in track.valid:
                yield track.frame(position), track.masks.read(track.frame(position))
                position += 1
                continue
            resume = max((s for s in track.snapshots if first <= s <= position), default=None)
            if resume is None:
                run, resume = VideoRun(self.engine, objects=self.objects), first
            else:
                run = VideoRun(self.engine, objects=self.objects, session=track.snapshots[resume].snapshot())
            shown = position  # positions before it were yielded already
            for result in self._advance(track, run, resume):
                if result[0] >= shown:
                    yield track.frame(result[0]), result[1]
                    shown = result[0] + 1
            position = shown

    def _advance(self, track: _Track, run: VideoRun, start: int) -> Iterator[tuple[int, np.ndarray]]:
        """Push positions from ``start`` until between clips with a valid position next; (position, mask)."""
        position = start
        while True:
            results = run.push(self._input(track, position))
            self.frames_pushed += 1
            position += 1
            if position == track.length:
                results += run.flush()
            for pushed, prob in results:
                index = track.frame(pushed)
                mask = run.mask(prob, self._frame_size)
                track.masks.write(index, mask)
                track.valid.add(pushed)
                yield pushed, mask
            if position == track.length:
                return
            if not run.session.pending:
                track.snapshots[position] = run.session.snapshot()
                if position in track.valid:
                    return


def _check_rgb(frame: np.ndarray, what: str) -> None:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{what}: expected uint8 [H, W, 3] RGB, got {frame.dtype} {frame.shape}")
