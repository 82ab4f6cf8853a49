"""Permanent memory of one video: keys shared by all objects, values per object.

Every object has its own ordered list of memory entries (objects that appear
later start with a shorter list, and an annotated frame that coincides with a
clip end appears twice in the lists of the objects already present, as in the
released code). Keys do not depend on the object, so objects whose lists are
identical form a *group* that shares one affinity and one top-k; only the
value gather is per object.

The base class keeps everything (``keep-all``, the official behaviour);
bounded strategies override :meth:`MemoryStore.commit` and may use the read
statistics passed to :meth:`MemoryStore.observe_read`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class MemoryEntry:
    """One memorised frame (or, for pixel-level strategies, a set of memory elements)."""

    frame: int
    key: torch.Tensor  # [Ck, n]
    values: dict[int, torch.Tensor]  # object id -> [Cv, n]
    permanent: bool = False  # annotated frames are never evicted
    quality: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class MemoryGroup:
    """Objects that read the same memory entries, with the entries concatenated."""

    objects: list[int]
    entry_ids: tuple[int, ...]
    keys: torch.Tensor  # [Ck, N]
    key_sq: torch.Tensor  # [N]
    values: torch.Tensor  # [O, Cv, N]


class MemoryStore:
    """Keep-all memory (official PCVOS): every committed frame stays."""

    name = "keep-all"

    def __init__(self) -> None:
        self.entries: dict[int, MemoryEntry] = {}
        self.object_entries: dict[int, list[int]] = {}
        self._next_id = 0
        self._groups: list[MemoryGroup] | None = None

    # -- writing -----------------------------------------------------------------
    def add(
        self,
        frame: int,
        key: torch.Tensor,
        values: dict[int, torch.Tensor],
        permanent: bool = False,
        quality: float | None = None,
    ) -> None:
        """Offer a frame to memory.

        Args:
            frame: frame index.
            key: [Ck, h, w] key of the frame.
            values: object id -> [Cv, h, w] value for every object to memorise it for.
            permanent: True for annotated frames (always kept).
            quality: optional predicted mask quality (used by the ``quality`` strategy).
        """
        # Own copies: a view would keep the whole clip's key batch [n, Ck, h, w] alive for every entry.
        entry = MemoryEntry(
            frame,
            key.flatten(1).clone(),
            {obj: v.flatten(1).clone() for obj, v in values.items()},
            permanent=permanent,
            quality=quality,
        )
        self.commit(entry)
        self._groups = None

    def commit(self, entry: MemoryEntry) -> None:
        """Strategy hook: keep-all appends every entry."""
        self._append(entry)

    def assess(self, network, values: torch.Tensor, masks: torch.Tensor) -> float | None:
        """Strategy hook: the quality of a frame offered to memory (None = not needed, nothing computed).

        Args:
            network: the :class:`~model.network.PCVOS` (for its optional quality head).
            values: [O, Cv, h, w] the frame's memory values, one per object.
            masks: [O, 1, Hp, Wp] the object probabilities they were encoded with.
        """
        return None

    def _append(self, entry: MemoryEntry) -> int:
        entry_id = self._next_id
        self._next_id += 1
        self.entries[entry_id] = entry
        for obj in entry.values:
            self.object_entries.setdefault(obj, []).append(entry_id)
        return entry_id

    def _remove(self, entry_id: int) -> None:
        entry = self.entries.pop(entry_id)
        for obj in entry.values:
            self.object_entries[obj].remove(entry_id)
        self._groups = None

    # -- reading -----------------------------------------------------------------
    def observe_read(self, group: MemoryGroup, weights: torch.Tensor, indices: torch.Tensor) -> None:
        """Read statistics hook (top-k weights and indices [k, M] of one query batch)."""

    def groups(self, objects: list[int]) -> list[MemoryGroup]:
        """The memory of ``objects`` grouped by identical entry lists (cached until memory changes)."""
        if self._groups is None or sorted(o for g in self._groups for o in g.objects) != sorted(objects):
            self._groups = self._build_groups(objects)
        return self._groups

    def _build_groups(self, objects: list[int]) -> list[MemoryGroup]:
        by_entries: dict[tuple[int, ...], list[int]] = {}
        for obj in objects:
            by_entries.setdefault(tuple(self.object_entries.get(obj, ())), []).append(obj)
        groups = []
        for entry_ids, objs in by_entries.items():
            if not entry_ids:
                raise RuntimeError(f"objects {objs} have no memory; annotate them before segmenting")
            keys = torch.cat([self.entries[i].key for i in entry_ids], dim=1)
            values = torch.stack(
                [torch.cat([self.entries[i].values[o] for i in entry_ids], dim=1) for o in objs]
            )
            groups.append(MemoryGroup(objs, entry_ids, keys, keys.float().pow(2).sum(0), values))
        return groups

    def describe(self) -> dict:
        """Size of the memory now (for logs and benchmarks)."""
        return {
            "strategy": self.name,
            "entries": len(self.entries),
            "permanent": sum(e.permanent for e in self.entries.values()),
            "elements": self.num_elements(),
            "bytes": self.nbytes(),
        }

    def num_elements(self) -> int:
        """Memory elements (key columns) held, counting shared keys once."""
        return sum(e.key.shape[1] for e in self.entries.values())

    def nbytes(self) -> int:
        total = 0
        for e in self.entries.values():
            total += e.key.numel() * e.key.element_size()
            total += sum(v.numel() * v.element_size() for v in e.values.values())
        return total
