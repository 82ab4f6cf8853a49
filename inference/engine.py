"""The per-clip inference engine: one core for every driver (DAVIS, YouTube-VOS,
generic folders, videos, the Python API).

Frames stream in, in order; masks stream out as soon as they are final. The
engine keeps only the frames of the clip being assembled, the memory, and the
prediction of a frame that is about to receive an annotation.

A program drives one video through an :class:`EngineSession`
(``engine.start()``, then ``push(frame)`` per frame and ``flush()`` at the end);
``PCVOSEngine.segment`` is the same loop over an iterable. Preparing the
network (channels-last weights, fused attention, compilation) is a separate,
explicit step, :func:`prepare_network`, done once by whoever loads the network:
several engines (one per L in a sweep) may share one network.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import torch

from inference.memory_store import MemoryGroup, MemoryStore
from inference.padding import compute_pad, pad, unpad
from inference.schedule import Clip, ClipScheduler, LabelStep
from inference.settings import MEMORY_READ_MODES, EngineConfig
from model.aggregate import EPS, aggregate, others_from_masks
from model.memory import bag_readout, topk_affinity
from model.network import PCVOS, KeyFeatures
from model.refine import ClipAttention
from util.runtime import autocast, compile_methods

__all__ = ["MEMORY_READ_MODES", "EngineConfig", "EngineSession", "FrameInput", "FrameResult", "PCVOSEngine",
           "prepare_network"]
#: CPU: frames per key-encoder call are capped to this many pixels (3 frames at 240x432, 1 at 480p).
CPU_BATCH_PIXELS = 320_000
#: Network stages compiled with ``EngineConfig.compile`` (memory reading stays eager).
COMPILED_STAGES = ("encode_key", "encode_value", "refine_keys", "refine_clip", "decode_context", "decode_objects")


@dataclass
class FrameInput:
    """One frame fed to the engine.

    image: [3, H, W] float, ImageNet-normalised, at the working resolution.
    label: [H, W] int64 object ids (1..K, 0 = none) for objects annotated at this frame, or None.
    required: whether a prediction is wanted (frames not required are skipped).
    source: where the frame came from (a file name), named by errors about it.
    """

    index: int
    image: torch.Tensor
    label: torch.Tensor | None = None
    required: bool = True
    source: str | None = None

    def describe(self) -> str:
        """'frame 7' or 'frame 7 (00007.jpg)', for error messages."""
        return f"frame {self.index}" + (f" ({self.source})" if self.source else "")


@dataclass
class FrameResult:
    """prob: [C + 1, H, W] float32 at the working resolution (background first), on the engine's device.

    C is the highest object id seen so far (or ``num_objects`` when given).
    """

    index: int
    prob: torch.Tensor


#: Attribute of a prepared network that records how it was prepared.
_PREPARED = "_pcvos_preparation"


def _preparation(config: EngineConfig) -> tuple[bool, bool, str | None]:
    return (config.channels_last, config.fused_attention, config.compile)


def prepare_network(network: PCVOS, config: EngineConfig | None = None) -> PCVOS:
    """Set a network up for inference the way ``config`` asks, in place; returns it.

    Three settings of :class:`EngineConfig` belong to the network, not to an
    engine: ``channels_last`` (conv weights stored NHWC; values unchanged),
    ``fused_attention`` (refinement windows through scaled_dot_product_attention)
    and ``compile`` (torch.compile of the network stages). Call this once after
    loading, before building engines; every engine built on the network then
    shares the preparation (an engine whose config asks for another one refuses
    the network). Calling it again with other settings re-prepares the network.
    """
    config = config or EngineConfig()
    # Converts the conv weights in place (values unchanged); activations follow the weights.
    network.to(memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    for module in network.modules():
        if isinstance(module, ClipAttention):
            module.fused = config.fused_attention
    if config.compile:
        compile_methods(network, COMPILED_STAGES, config.compile)
    elif getattr(network, "_compiled_mode", None) is not None:
        for name in COMPILED_STAGES:  # back to the class's plain methods
            network.__dict__.pop(name, None)
        network._compiled_mode = None
    setattr(network, _PREPARED, _preparation(config))
    return network


def _copy_store(store: MemoryStore) -> MemoryStore:
    """An independent copy of a memory store.

    Keys and values are never changed in place (strategies replace them), so
    the copy shares those tensors; keep-all never changes an entry at all and
    shares the entries too. The bounded strategies' entries and statistics
    (updated in place) are copied.
    """
    if type(store) is not MemoryStore:
        shared = {}
        for entry in store.entries.values():
            shared[id(entry.key)] = entry.key
            shared.update((id(v), v) for v in entry.values.values())
        return copy.deepcopy(store, shared)
    new = copy.copy(store)
    new.entries = dict(store.entries)
    new.object_entries = {obj: list(ids) for obj, ids in store.object_entries.items()}
    new._groups = None
    return new


class _VideoState:
    """Everything the engine holds for one video."""

    def __init__(self, store: MemoryStore, num_objects: int | None) -> None:
        self.store = store
        self.enabled: list[int] = []
        self.channels = num_objects or 0
        self.frames: dict[int, torch.Tensor] = {}  # padded images of pending frames [1, 3, Hp, Wp]
        self.labels: dict[int, torch.Tensor] = {}  # padded label maps [Hp, Wp]
        self.held: dict[int, torch.Tensor] = {}  # prediction of an annotated frame, before its labels
        self.pads = None
        self.mirror: MemoryStore | None = None  # memory of the mirrored video (EngineConfig.flip)


class EngineSession:
    """One video going through the engine, one frame at a time.

    ``push(frame)`` returns the masks that became final with that frame, in
    frame order: at L > 1 a frame's mask is final once its clip is complete
    (L frames, an annotated frame, or the end), so a pushed frame's result
    arrives up to L - 1 frames later. ``flush()`` ends the video and returns
    the rest. Frames must arrive in increasing ``index`` order and all have the
    size of the first one.
    """

    def __init__(self, engine: PCVOSEngine, num_objects: int | None = None) -> None:
        self.engine = engine
        cfg = engine.config
        self._state = _VideoState(engine.memory_factory(), num_objects)
        if cfg.flip:
            self._state.mirror = engine.memory_factory()
        self._scheduler = ClipScheduler(cfg.clip_length, cfg.mem_every)
        self._first: tuple[str, tuple[int, int]] | None = None  # (description, (H, W)) of the first frame
        self._finished = False

    @property
    def pending(self) -> tuple[int, ...]:
        """Frames pushed whose clip is not complete yet (their masks come with a later push or the flush)."""
        return self._scheduler.pending

    @property
    def objects(self) -> list[int]:
        """Object ids (1..K) the session tracks, in the order they were annotated."""
        return list(self._state.enabled)

    @torch.inference_mode()
    def push(self, frame: FrameInput) -> list[FrameResult]:
        """Feed the next frame; returns the results that became final, in frame order.

        Raises:
            ValueError: the frame (or its label) is not the size of the video's first frame, or
                frames arrive out of order.
        """
        if self._finished:
            raise RuntimeError("this session was flushed; start a new one for another video")
        self._check_size(frame)
        engine, state = self.engine, self._state
        image = frame.image.to(engine.device, torch.float32)
        if state.pads is None:
            state.pads = compute_pad(*image.shape[-2:])
        steps = self._scheduler.push(frame.index, labelled=frame.label is not None, required=frame.required)
        state.frames[frame.index] = pad(image[None], state.pads)
        if frame.label is not None:
            state.labels[frame.index] = pad(frame.label.to(engine.device, torch.int64), state.pads)
        results = [result for step in steps for result in engine._run(step, state)]
        if frame.index not in self._scheduler.pending:
            state.frames.pop(frame.index, None)
        return results

    @torch.inference_mode()
    def flush(self) -> list[FrameResult]:
        """End of the video: segment the frames still pending and return their results."""
        self._finished = True
        return [result for step in self._scheduler.finish() for result in self.engine._run(step, self._state)]

    def snapshot(self) -> EngineSession:
        """An independent copy of the session, to resume from later (e.g. after a correction).

        Only between clips (nothing pending): the copy holds the memory and the
        schedule's position, no frames. Keep-all memory is shared, not copied.
        """
        if self._scheduler.pending or self._state.held or self._state.labels:
            raise RuntimeError("a session can be copied only between clips (frames are pending)")
        new = copy.copy(self)
        new._scheduler = copy.copy(self._scheduler)
        new._scheduler._buffer = []
        state = copy.copy(self._state)
        state.store = _copy_store(self._state.store)
        state.mirror = None if self._state.mirror is None else _copy_store(self._state.mirror)
        state.enabled = list(self._state.enabled)
        state.frames, state.labels, state.held = {}, {}, {}
        new._state = state
        return new

    def drop_objects(self, ids: Iterable[int]) -> None:
        """Stop tracking objects: they leave the memory and get no probability from now on.

        Their channels stay (zero) in later results, so the other objects keep their ids.
        """
        ids = set(ids)
        state = self._state
        state.enabled = [obj for obj in state.enabled if obj not in ids]
        for store in (state.store, state.mirror):
            if store is None:
                continue
            for entry_id, entry in list(store.entries.items()):
                if ids & entry.values.keys():  # a new entry: a snapshot may share the old one
                    kept = {obj: v for obj, v in entry.values.items() if obj not in ids}
                    store.entries[entry_id] = replace(entry, values=kept)
            for obj in ids:
                store.object_entries.pop(obj, None)
            store._groups = None
        for prob in state.held.values():
            prob[[obj for obj in ids if obj < prob.shape[0]]] = 0

    def _check_size(self, frame: FrameInput) -> None:
        size = tuple(frame.image.shape[-2:])
        if self._first is None:
            self._first = (frame.describe(), size)
        elif size != self._first[1]:
            raise ValueError(
                f"{frame.describe()}: size {size[1]}x{size[0]} at the working resolution differs from the "
                f"video's first frame, {self._first[0]}, at {self._first[1][1]}x{self._first[1][0]}; every frame "
                "of a video must have the same size (the same aspect ratio once resized): resize or crop the frames"
            )
        if frame.label is not None and tuple(frame.label.shape[-2:]) != size:
            label = tuple(frame.label.shape[-2:])
            raise ValueError(
                f"{frame.describe()}: its label is {label[1]}x{label[0]} but the frame is {size[1]}x{size[0]}; "
                "a label must have its frame's size"
            )


class PCVOSEngine:
    """Per-clip propagation of object masks through a video.

    Args:
        network: a :class:`PCVOS` in eval mode on ``device``.
        config: :class:`EngineConfig`.
        memory_factory: builds the memory store of a video (keep-all by default).
    """

    def __init__(
        self,
        network: PCVOS,
        config: EngineConfig | None = None,
        memory_factory: Callable[[], MemoryStore] = MemoryStore,
    ) -> None:
        self.net = network
        self.config = config or EngineConfig()
        self.memory_factory = memory_factory
        self.device = next(network.parameters()).device
        prepared = getattr(network, _PREPARED, None)
        if prepared is not None and prepared != _preparation(self.config):
            raise ValueError(
                f"engine config: the network was prepared with (channels_last, fused_attention, compile) = "
                f"{prepared} but this engine asks for {_preparation(self.config)}; engines sharing a network "
                "must agree, or call prepare_network(network, config) again"
            )

    # -- public API ----------------------------------------------------------------
    def start(self, num_objects: int | None = None) -> EngineSession:
        """A session for one video: push its frames one at a time, then flush.

        Args:
            num_objects: total object count if known (the released code
                aggregates annotated frames over all K objects of the video).
        """
        return EngineSession(self, num_objects)

    def segment(self, frames: Iterable[FrameInput], num_objects: int | None = None) -> Iterator[FrameResult]:
        """Segment a video given as an iterable of frames in temporal order.

        Yields one :class:`FrameResult` per segmented frame (annotated frames
        included; frames before the first annotation and frames not required
        are not yielded), as soon as it is final. The same as pushing every
        frame into :meth:`start`'s session and flushing it.

        Args:
            frames: :class:`FrameInput` in increasing ``index`` order.
            num_objects: see :meth:`start`.
        """
        session = self.start(num_objects)
        for frame in frames:
            yield from session.push(frame)
        yield from session.flush()

    # -- steps -----------------------------------------------------------------------
    def _run(self, step: Clip | LabelStep, state: _VideoState) -> Iterator[FrameResult]:
        if isinstance(step, LabelStep):
            yield self._apply_label(step.frame, state)
        else:
            yield from self._segment_clip(step, state)

    def _apply_label(self, t: int, state: _VideoState) -> FrameResult:
        """Write an annotation into the prediction of frame t and memorise frame t."""
        label = state.labels.pop(t)
        ids = [int(i) for i in torch.unique(label) if i > 0]
        state.channels = max([state.channels, *ids])
        prob = state.held.pop(t, None)
        if prob is None:
            prob = torch.zeros(state.channels + 1, *label.shape, device=self.device)
            prob[0] = EPS
        elif prob.shape[0] < state.channels + 1:
            prob = torch.cat([prob, prob.new_zeros(state.channels + 1 - prob.shape[0], *label.shape)])
        annotated = label > 0
        prob[:, annotated] = 0
        for obj in ids:
            prob[obj] = (label == obj).float()
        state.enabled += [obj for obj in ids if obj not in state.enabled]
        prob = aggregate(prob[1:], dim=0)

        image = state.frames.pop(t)
        views = [(state.store, image, prob[state.enabled])]
        if state.mirror is not None:
            views.append((state.mirror, image.flip(-1), prob[state.enabled].flip(-1)))
        for store, view, masks in views:
            with autocast(self.device, self.config.precision):
                feats = self.net.encode_key(view)
            self._memorise(store, state, t, view, feats.key[0], feats.f16[0:1], masks, permanent=True)
        return FrameResult(t, unpad(prob, state.pads))

    def _segment_clip(self, clip: Clip, state: _VideoState) -> Iterator[FrameResult]:
        images = torch.cat([state.frames[t] for t in clip.frames])  # [n, 3, Hp, Wp]
        prob_obj, feats = self._clip_probabilities(images, state.store, state)  # [O, n, Hp, Wp]
        views = [(state.store, images, feats, False)]
        if state.mirror is not None:
            mirrored = images.flip(-1)
            prob_mirror, feats_mirror = self._clip_probabilities(mirrored, state.mirror, state)
            prob_obj = (prob_obj + prob_mirror.flip(-1)) / 2
            views.append((state.mirror, mirrored, feats_mirror, True))
        agg = aggregate(prob_obj, dim=0)  # [O + 1, n, Hp, Wp]

        for i, t in enumerate(clip.frames):
            if t not in clip.memory_frames:
                continue
            for store, view, view_feats, flipped in views:
                masks = agg[1:, i].flip(-1) if flipped else agg[1:, i]
                self._memorise(
                    store, state, t, view[i : i + 1], view_feats.key[i], view_feats.f16[i : i + 1], masks,
                    permanent=False,
                )
        for i, t in enumerate(clip.frames):
            full = agg.new_zeros(state.channels + 1, *agg.shape[-2:])
            full[0] = agg[0, i]
            full[state.enabled] = agg[1:, i]
            if t in state.labels:  # an annotation follows: hold the prediction for it
                state.held[t] = full
            else:
                state.frames.pop(t, None)
                yield FrameResult(t, unpad(full, state.pads))

    # -- network pieces ----------------------------------------------------------------
    def _clip_probabilities(
        self, images: torch.Tensor, store: MemoryStore, state: _VideoState
    ) -> tuple[torch.Tensor, KeyFeatures]:
        """Each enabled object's probability [O, n, Hp, Wp] over the clip's frames [n, 3, Hp, Wp], read from
        ``store``, and the frames' key features."""
        cfg = self.config
        with autocast(self.device, cfg.precision):
            feats = self._encode_key(images)
        readout = self._read_memory(store, state, feats.key)  # [O, Cv, n, h, w]
        with autocast(self.device, cfg.precision):
            keys = self.net.refine_keys(feats.f16)
            keys = None if keys is None else keys.transpose(0, 1)[None]  # [1, hid, n, h, w]
            refined = self.net.refine_clip(keys, readout)
            logits = self._decode(refined, feats)
        return torch.sigmoid(logits.float()).view(len(state.enabled), images.shape[0], *images.shape[-2:]), feats

    def _memorise(
        self,
        store: MemoryStore,
        state: _VideoState,
        t: int,
        image: torch.Tensor,
        key: torch.Tensor,
        f16: torch.Tensor,
        masks: torch.Tensor,
        permanent: bool,
    ) -> None:
        """Encode frame t's value for every enabled object and offer it to ``store``.

        image: [1, 3, Hp, Wp]; key: [Ck, h, w]; f16: [1, C16, h, w]; masks: [O, Hp, Wp].
        """
        masks = masks.unsqueeze(1)
        count = masks.shape[0]
        with autocast(self.device, self.config.precision):
            values = self.net.encode_value(
                image.expand(count, -1, -1, -1),
                f16,  # one row for all objects: the fusion block computes its share once
                masks,
                others_from_masks(masks),
            )
        values = values.float()
        quality = store.assess(self.net, values, masks)  # None unless the strategy uses it
        store.add(
            t, key.float(), {obj: values[i] for i, obj in enumerate(state.enabled)}, permanent=permanent,
            quality=quality,
        )

    def _encode_key(self, images: torch.Tensor) -> KeyFeatures:
        """encode_key of the clip's frames [n, 3, Hp, Wp] in near-equal batches of at most ``encode_batch``."""
        n = images.shape[0]
        step = self.config.encode_batch
        if step is None:
            step = n if self.device.type == "cuda" else max(1, CPU_BATCH_PIXELS // images[0, 0].numel())
        if step >= n:
            return self.net.encode_key(images)
        parts = [self.net.encode_key(chunk) for chunk in images.tensor_split(-(-n // step))]
        return KeyFeatures(*(torch.cat(stage) for stage in zip(*parts)))

    def _decode(self, refined: torch.Tensor, feats) -> torch.Tensor:
        """refined: [O, Cv, n, h, w] -> logits [O * n, 1, Hp, Wp] (rows object-major).

        Frames are decoded in groups of ``decode_batch // O``; the decoder's
        object-independent terms (skip convolutions, the f16_thin half of its
        first convs) are computed once per frame and shared by the objects.
        """
        objects, cv, n = refined.shape[:3]
        rows = refined.transpose(1, 2)  # [O, n, Cv, h, w]
        out = []
        pairs = self.config.decode_batch or (8 if self.device.type == "cuda" else objects)
        step = max(1, pairs // objects)
        for start in range(0, n, step):
            frames = slice(start, min(start + step, n))
            context = self.net.decode_context(feats.f16_thin[frames], feats.f8[frames], feats.f4[frames])
            chunk = rows[:, frames].reshape(-1, cv, *refined.shape[-2:])
            logits = self.net.decode_objects(chunk, context)
            out.append(logits.view(objects, -1, *logits.shape[1:]))
        return torch.cat(out, dim=1).flatten(0, 1)

    def _read_memory(self, store: MemoryStore, state: _VideoState, query_keys: torch.Tensor) -> torch.Tensor:
        """Memory readout of every enabled object for every clip frame.

        With PMM, the clip is matched in segments of ``pmm_every`` frames; after
        each segment its last frame's query key and readout are appended to a
        temporary copy of the memory, discarded after the clip. Parallel mode
        matches the whole clip at once.

        Args:
            query_keys: [n, Ck, h, w].

        Returns:
            [O, Cv, n, h, w] in ``state.enabled`` order, stored channels-last ([O, n, h, w, Cv] in memory,
            the layout the refinement works in).
        """
        cfg = self.config
        n, ck, h, w = query_keys.shape
        q = query_keys.float().flatten(2)  # [n, Ck, HW]
        segment = n if cfg.memory_read == "parallel" else cfg.pmm_every
        per_object: dict[int, torch.Tensor] = {}
        for group in store.groups(state.enabled):
            keys, key_sq = group.keys, group.key_sq
            rows = group.values.transpose(1, 2).contiguous()  # [O_g, N, Cv]: one memory element per row
            parts = []
            for start in range(0, n, segment):
                stop = min(start + segment, n)
                queries = q[start:stop].transpose(0, 1).reshape(ck, -1)  # [Ck, s * HW]
                read = self._match(keys, key_sq, rows, queries, group, store)  # [O_g, s * HW, Cv]
                parts.append(read)
                if stop < n:  # PMM: the segment's last frame joins the temporary memory
                    keys = torch.cat([keys, q[stop - 1]], dim=1)
                    key_sq = torch.cat([key_sq, q[stop - 1].pow(2).sum(0)])
                    rows = torch.cat([rows, read[:, -h * w :]], dim=1)
            stacked = torch.cat(parts, dim=1)  # [O_g, n * HW, Cv]
            for i, obj in enumerate(group.objects):
                per_object[obj] = stacked[i]
        out = torch.stack([per_object[obj] for obj in state.enabled])
        return out.view(len(state.enabled), n, h, w, -1).permute(0, 4, 1, 2, 3)

    def _match(
        self,
        keys: torch.Tensor,
        key_sq: torch.Tensor,
        rows: torch.Tensor,
        queries: torch.Tensor,
        group: MemoryGroup,
        store: MemoryStore,
    ) -> torch.Tensor:
        """Top-k readout of ``queries`` [Ck, M] from keys [Ck, N] and value rows [O, N, Cv] -> [O, M, Cv].

        Queries are matched in chunks so that no affinity exceeds ``affinity_budget``
        elements. The store sees the top-k weights and indices [k, M] of every chunk
        (indices past the group's permanent memory belong to PMM's temporary entries).
        """
        cfg = self.config
        per_column = max(keys.shape[1], rows.shape[0] * rows.shape[2])
        chunk = max(1, cfg.affinity_budget // per_column)
        out = []
        for start in range(0, queries.shape[1], chunk):
            weights, indices = topk_affinity(keys, queries[:, start : start + chunk], cfg.top_k, key_sq)
            store.observe_read(group, weights.t(), indices.t())
            out.append(bag_readout(rows, weights, indices))
        return torch.cat(out, dim=1)
