"""Bounded memory strategies for long videos (``--memory``): fifo, afb, quality.

All of them keep the per-clip semantics of the engine: memory changes only in
:meth:`~inference.memory_store.MemoryStore.commit`, i.e. at clip boundaries;
inside a clip every frame reads a frozen memory (plus PMM's temporary entries,
at most ceil(L / 5) - 1 per clip). Annotated frames are *permanent*: no
strategy evicts them or changes them.

* ``keep-all`` (:class:`~inference.memory_store.MemoryStore`): the official
  behaviour, one frame per clip forever.
* ``fifo`` (:class:`FifoMemory`): permanent frames + the ``max_frames`` most
  recent memory frames.
* ``afb`` (:class:`AfbMemory`): AFB-URR's adaptive feature bank, per memory
  element (1/16 pixel): a new frame's elements are merged into their nearest
  bank element when close enough, else appended; usage is counted from the
  top-k readout and the least used elements (usage per frame of age) are
  evicted, exactly, under a feature budget.
* ``quality`` (:class:`QualityMemory`): QDMN's rule: a frame enters memory
  only if its quality (quality head or a confidence proxy) is at least
  ``threshold`` x the annotated frame's; a rejected frame is read by the next
  clip only; over ``max_frames`` the stored frame with the lowest quality +
  recency score leaves.

See docs/memory.md for the choices and the measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from inference.memory_store import MemoryEntry, MemoryGroup, MemoryStore
from inference.settings import (  # the names and defaults, defined where a parser can read them without torch
    AFB_MERGE_THRESHOLD,
    AFB_UPDATE_RATE,
    DEFAULT_MAX_FRAMES,
    QUALITY_SOURCES,
    QUALITY_THRESHOLD,
    STRATEGIES,
)

#: afb: a top-k weight above this counts as a hit (AFB-URR's thres_valid).
AFB_HIT_THRESHOLD = 1e-3

# --------------------------------------------------------------------------- fifo


class FifoMemory(MemoryStore):
    """Permanent (annotated) frames + the ``max_frames`` most recent memory frames.

    Args:
        max_frames: non-permanent frames kept (>= 1); the oldest leaves first.
    """

    name = "fifo"

    def __init__(self, max_frames: int = DEFAULT_MAX_FRAMES) -> None:
        super().__init__()
        if max_frames < 1:
            raise ValueError(f"--max-memory-frames must be >= 1, got {max_frames}")
        self.max_frames = max_frames

    def commit(self, entry: MemoryEntry) -> None:
        if not entry.permanent:
            transient = [i for i, e in self.entries.items() if not e.permanent]  # insertion order = age
            for entry_id in transient[: max(0, len(transient) - self.max_frames + 1)]:
                self._remove(entry_id)
        self._append(entry)


# --------------------------------------------------------------------------- quality


def confidence_quality(masks: torch.Tensor) -> torch.Tensor:
    """Training-free stand-in for the quality head: the expected IoU of the binarised prediction.

    Treating each probability p as the chance that the pixel belongs to the
    object, the prediction ``p > 0.5`` has expected intersection
    ``sum_{p > .5} p`` and expected union ``|p > .5| + sum_{p <= .5} p``
    (their ratio, smoothed by one pixel). It is 1 for a binary mask (an
    annotation), and drops with soft or scattered probabilities. This is the
    head's own training target (IoU of the binarised prediction) with the
    unknown ground truth replaced by the probabilities.

    Args:
        masks: [O, H, W] (or [O, 1, H, W]) object probabilities.

    Returns:
        [O] in (0, 1].
    """
    p = masks.float().flatten(1)
    pred = p > 0.5
    inter = torch.where(pred, p, torch.zeros_like(p)).sum(1)
    union = pred.sum(1) + torch.where(pred, torch.zeros_like(p), p).sum(1)
    return (inter + 1) / (union + 1)


class QualityMemory(MemoryStore):
    """QDMN's quality-aware memory, with the reference implementation's bugs fixed.

    * Quality q of a frame: mean over objects of the quality head's predicted
      IoU (``source='head'``) or of :func:`confidence_quality`
      (``'confidence'``); ``'auto'`` uses the head when the network has one.
    * Normalised quality s = q / q_ref. With the head, q_ref = the head's score
      of the first annotated frame (QDMN DAVIS). With the confidence proxy an
      annotation scores 1 by construction, so q_ref = the first propagated
      candidate's quality (QDMN's YouTube-VOS rule): frames are judged against
      how confident this model is on this video.
    * Admission: s >= ``threshold``. A rejected frame becomes a *temporary*
      entry that only the next clip reads (QDMN's temporary memory), then it
      is dropped.
    * Replacement: when ``max_frames`` frames are stored, the stored frame m
      with the lowest s_m + exp(-|n - m|) leaves (n, m: insertion ordinals of
      admitted frames, n the newcomer), ties to the oldest. Candidates are the
      non-permanent entries only, looked up by entry id: QDMN sliced its
      tensors with a position from a list that excluded the first frame (off
      by one; evicting the annotated frame when the oldest was chosen).
    """

    name = "quality"

    def __init__(
        self, max_frames: int = DEFAULT_MAX_FRAMES, threshold: float = QUALITY_THRESHOLD, source: str = "auto"
    ) -> None:
        super().__init__()
        if max_frames < 1:
            raise ValueError(f"--max-memory-frames must be >= 1, got {max_frames}")
        if source not in QUALITY_SOURCES:
            raise ValueError(f"--quality-source must be one of {QUALITY_SOURCES}, got {source!r}")
        self.max_frames = max_frames
        self.threshold = threshold
        self.source = source
        self.reference: float | None = None
        self.resolved_source: str | None = None  # set by assess(): 'head' or 'confidence'
        self._ordinal = 0
        self._temporary: int | None = None
        self.accepted = 0
        self.rejected = 0

    def resolve_source(self, network) -> str:
        """'head' or 'confidence' for this network (raises if 'head' is asked of a network without one)."""
        has_head = getattr(network, "quality_head", None) is not None
        if self.source == "head" and not has_head:
            raise RuntimeError(
                "--quality-source head: the network has no quality head. Load one with --quality-weights "
                "(train it with train.py --quality-head), or use --quality-source confidence."
            )
        if self.source == "auto":
            return "head" if has_head else "confidence"
        return self.source

    def assess(self, network, values: torch.Tensor, masks: torch.Tensor) -> float:
        self.resolved_source = self.resolve_source(network)
        if self.resolved_source == "head":
            return float(network.assess_quality(values.float()).float().mean())
        return float(confidence_quality(masks).mean())

    def commit(self, entry: MemoryEntry) -> None:
        if self._temporary is not None:  # the previous rejected frame served its one clip
            self._remove(self._temporary)
            self._temporary = None
        quality = 1.0 if entry.quality is None else float(entry.quality)
        if entry.permanent:
            if self.reference is None and quality > 0 and self.resolved_source != "confidence":
                self.reference = quality
            self._append(entry)
            return
        if self.reference is None and quality > 0:  # confidence proxy: the first propagated candidate
            self.reference = quality
        score = quality / (self.reference or 1.0)
        entry.extra["score"] = score
        if score < self.threshold:
            self.rejected += 1
            entry.extra["temporary"] = True
            self._temporary = self._append(entry)
            return
        self.accepted += 1
        self._ordinal += 1
        entry.extra["ordinal"] = self._ordinal
        stored = [i for i, e in self.entries.items() if not e.permanent and not e.extra.get("temporary")]
        if len(stored) >= self.max_frames:
            self._remove(min(stored, key=lambda i: self.replacement_score(i, self._ordinal)))
        self._append(entry)

    def replacement_score(self, entry_id: int, newest: int) -> float:
        """s_m + exp(-|n - m|) of a stored entry (lower leaves first)."""
        extra = self.entries[entry_id].extra
        return extra["score"] + math.exp(-abs(newest - extra["ordinal"]))

    def describe(self) -> dict:
        return {**super().describe(), "accepted": self.accepted, "rejected": self.rejected,
                "reference_quality": self.reference}


# --------------------------------------------------------------------------- afb


def nearest_elements(bank: torch.Tensor, new: torch.Tensor, budget: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest bank element (L2) of every new element, in chunks of at most ``budget`` affinities.

    Args:
        bank: [C, N]; new: [C, n].

    Returns:
        (index [n] into the bank, squared distance [n]).
    """
    bank = bank.float()
    bank_sq = bank.pow(2).sum(0)
    chunk = max(1, budget // max(1, bank.shape[1]))
    index, dist = [], []
    for start in range(0, new.shape[1], chunk):
        x = new[:, start : start + chunk].float()
        sim = 2 * (bank.t() @ x) - bank_sq[:, None]  # [N, c]: -||m - x||^2 + ||x||^2
        best, arg = sim.max(0)
        index.append(arg)
        dist.append((x.pow(2).sum(0) - best).clamp_min(0))
    return torch.cat(index), torch.cat(dist)


class AfbMemory(MemoryStore):
    """AFB-URR's adaptive feature bank on PCVOS's shared keys.

    Per commit of a non-permanent frame with elements x (keys [Ck, n], values
    per object):

    1. nearest non-permanent bank element m of every x, by the readout's own
       L2 distance, computed once on the keys (keys are shared by objects);
    2. x is *merged* when ||x - m||^2 / sqrt(Ck) <= ``merge_threshold`` (the
       two keys' affinities to a query at x differ by at most that many
       logits): all x that chose the same m are averaged and
       m <- (1 - r) m + r mean(x), for the key and for every object's value,
       with r = 1 - (1 - ``update_rate``)^d, d = frames since the previous
       commit (AFB-URR merges every frame; PCVOS commits every L frames);
    3. the other x are *appended*; if the bank would exceed ``budget``
       elements, exactly the lowest-scoring non-permanent elements are
       evicted first, score = usage / frames since insertion (ties: oldest).

    Non-permanent elements live in one *bank* entry per object set (usually
    one; objects annotated later start a new one), with per-element usage and
    insertion frame, so the entry count does not grow with the video.

    Usage: after each clip, every element adds log(1 + hits), hits = the
    clip's query positions whose top-k weight on it exceeds 1e-3
    (:meth:`observe_read`). Permanent (annotated) elements are never merged
    into, never evicted. Deviations from AFB-URR: an L2 criterion on the
    readout's scale instead of cosine similarity, a linear update instead of
    "keep the norm, move the direction" (norms matter to an L2 readout), one
    update per clip; see docs/memory.md.

    Args:
        budget: max elements (shared key columns, permanent ones included);
            None = ``frames`` x the elements of the first frame offered.
        frames: frame equivalents of the default budget.
        merge_threshold, update_rate: see above.
        hit_threshold: top-k weight that counts as a hit.
    """

    name = "afb"

    def __init__(
        self,
        budget: int | None = None,
        frames: int = DEFAULT_MAX_FRAMES + 1,
        merge_threshold: float = AFB_MERGE_THRESHOLD,
        update_rate: float = AFB_UPDATE_RATE,
        hit_threshold: float = AFB_HIT_THRESHOLD,
    ) -> None:
        super().__init__()
        if budget is not None and budget < 1:
            raise ValueError(f"--memory-budget must be >= 1 feature, got {budget}")
        if not 0 <= update_rate <= 1:
            raise ValueError(f"--afb-update-rate must be in [0, 1], got {update_rate}")
        self.budget = budget
        self.frames = frames
        self.merge_threshold = merge_threshold
        self.update_rate = update_rate
        self.hit_threshold = hit_threshold
        self._pending: dict[int, torch.Tensor] = {}
        self._now = 0
        self._last_commit: int | None = None
        self._banks: dict[frozenset[int], int] = {}  # object set -> entry id of its element bank
        self.merged = 0
        self.appended = 0
        self.evicted = 0

    # -- reading statistics -------------------------------------------------------------
    def observe_read(self, group: MemoryGroup, weights: torch.Tensor, indices: torch.Tensor) -> None:
        sizes = [self.entries[i].key.shape[1] for i in group.entry_ids]
        total = sum(sizes)
        hits = indices[(weights > self.hit_threshold) & (indices < total)]  # PMM's temporary columns excluded
        counts = torch.bincount(hits.flatten(), minlength=total).float()
        for entry_id, part in zip(group.entry_ids, counts.split(sizes)):
            if entry_id in self._pending:
                self._pending[entry_id] += part
            else:
                self._pending[entry_id] = part

    def _fold_usage(self) -> None:
        """Add log(1 + hits) of the last clip's reads to every element's usage."""
        for entry_id, hits in self._pending.items():
            entry = self.entries.get(entry_id)
            if entry is not None and not entry.permanent:
                entry.extra["usage"] += torch.log1p(hits)
        self._pending.clear()

    # -- writing ------------------------------------------------------------------------
    def commit(self, entry: MemoryEntry) -> None:
        self._fold_usage()
        self._now = max(self._now, entry.frame)
        interval = 1 if self._last_commit is None else max(1, entry.frame - self._last_commit)
        self._last_commit = entry.frame
        if self.budget is None:
            self.budget = self.frames * entry.key.shape[1]
        entry.extra["usage"] = entry.key.new_zeros(entry.key.shape[1])
        entry.extra["born"] = torch.full_like(entry.extra["usage"], float(entry.frame))
        if entry.permanent:
            self._append(entry)
            return
        targets = [i for i, e in self.entries.items() if not e.permanent and entry.values.keys() <= e.values.keys()]
        if targets:
            index, dist = nearest_elements(torch.cat([self.entries[i].key for i in targets], 1), entry.key)
            merge = dist / math.sqrt(entry.key.shape[0]) <= self.merge_threshold
            if bool(merge.any()):
                self._merge(targets, index[merge], entry, merge, 1 - (1 - self.update_rate) ** interval)
                entry = _select_columns(entry, ~merge)
        if entry.key.shape[1]:
            self._make_room(entry.key.shape[1])
            self.appended += entry.key.shape[1]
            self._add_to_bank(entry)

    def _add_to_bank(self, entry: MemoryEntry) -> None:
        """Append elements to the bank of their object set (one entry per set, so the entry count stays constant)."""
        objects = frozenset(entry.values)
        bank_id = self._banks.get(objects)
        if bank_id is None or bank_id not in self.entries:
            self._banks[objects] = self._append(entry)
            return
        bank = self.entries[bank_id]
        bank.key = torch.cat([bank.key, entry.key], 1)
        bank.values = {o: torch.cat([v, entry.values[o]], 1) for o, v in bank.values.items()}
        for name in ("usage", "born"):
            bank.extra[name] = torch.cat([bank.extra[name], entry.extra[name]])

    def _merge(
        self, targets: list[int], index: torch.Tensor, entry: MemoryEntry, merge: torch.Tensor, rate: float
    ) -> None:
        """Move the chosen bank elements towards the mean of the new elements that chose them (weight ``rate``)."""
        sizes = [self.entries[i].key.shape[1] for i in targets]
        count = torch.bincount(index, minlength=sum(sizes)).to(entry.key.dtype)
        touched = count > 0

        def blend(bank: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            mean = torch.zeros_like(bank).index_add_(1, index, new[:, merge]) / count.clamp_min(1)
            return torch.where(touched, (1 - rate) * bank + rate * mean, bank)

        keys = blend(torch.cat([self.entries[i].key for i in targets], 1), entry.key)
        for entry_id, part in zip(targets, keys.split(sizes, 1)):
            self.entries[entry_id].key = part
        for obj, value in entry.values.items():
            mixed = blend(torch.cat([self.entries[i].values[obj] for i in targets], 1), value)
            for entry_id, part in zip(targets, mixed.split(sizes, 1)):
                self.entries[entry_id].values[obj] = part
        self.merged += int(merge.sum())
        self._groups = None

    def _make_room(self, incoming: int) -> None:
        """Evict exactly the lowest-scoring non-permanent elements so that ``incoming`` more fit the budget."""
        excess = self.num_elements() + incoming - self.budget
        candidates = [i for i, e in self.entries.items() if not e.permanent]
        if excess <= 0 or not candidates:
            return
        born = torch.cat([self.entries[i].extra["born"] for i in candidates])
        usage = torch.cat([self.entries[i].extra["usage"] for i in candidates])
        scores = usage / (self._now - born).clamp_min(1)
        order = torch.argsort(born, stable=True)  # ties go to the oldest
        order = order[torch.argsort(scores[order], stable=True)]
        drop = torch.zeros_like(scores, dtype=torch.bool)
        drop[order[:excess]] = True
        sizes = [self.entries[i].key.shape[1] for i in candidates]
        for entry_id, gone in zip(candidates, drop.split(sizes)):
            if bool(gone.all()):
                self._remove(entry_id)
            elif bool(gone.any()):
                self.entries[entry_id] = _select_columns(self.entries[entry_id], ~gone)
        self.evicted += int(drop.sum())
        self._groups = None

    def describe(self) -> dict:
        return {**super().describe(), "budget": self.budget, "merged": self.merged, "appended": self.appended,
                "evicted": self.evicted}


def _select_columns(entry: MemoryEntry, keep: torch.Tensor) -> MemoryEntry:
    """The entry restricted to the element columns where ``keep`` is True (per-element statistics included)."""
    extra = dict(entry.extra)
    for name in ("usage", "born"):
        if name in extra:
            extra[name] = extra[name][keep]
    return MemoryEntry(
        entry.frame, entry.key[:, keep], {o: v[:, keep] for o, v in entry.values.items()},
        entry.permanent, entry.quality, extra,
    )


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class MemoryOptions:
    """What ``--memory`` and its flags select; :meth:`factory` builds one store per video."""

    strategy: str = "keep-all"
    max_frames: int = DEFAULT_MAX_FRAMES  # fifo, quality: non-permanent frames; afb: default budget in frames
    budget: int | None = None  # afb: elements; None = (max_frames + 1) frame equivalents
    merge_threshold: float = AFB_MERGE_THRESHOLD
    update_rate: float = AFB_UPDATE_RATE
    quality_threshold: float = QUALITY_THRESHOLD
    quality_source: str = "auto"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--memory must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.quality_source not in QUALITY_SOURCES:
            raise ValueError(f"--quality-source must be one of {QUALITY_SOURCES}, got {self.quality_source!r}")
        if self.max_frames < 1:
            raise ValueError(f"--max-memory-frames must be >= 1, got {self.max_frames}")

    def factory(self) -> Callable[[], MemoryStore]:
        """A zero-argument constructor of a fresh store (the engine builds one per video)."""
        if self.strategy == "fifo":
            return lambda: FifoMemory(self.max_frames)
        if self.strategy == "afb":
            return lambda: AfbMemory(self.budget, self.max_frames + 1, self.merge_threshold, self.update_rate)
        if self.strategy == "quality":
            return lambda: QualityMemory(self.max_frames, self.quality_threshold, self.quality_source)
        return MemoryStore
