"""Object ids <-> the engine's tensor slots, and probabilities -> id masks.

Every path that runs the engine (the benchmark drivers, ``segment.py``'s stream,
the predictor) numbers its objects with one :class:`ObjectManager` and turns the
engine's probabilities back into masks of the user's ids with :func:`to_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: The highest object id a user may give: 0 is background, 255 the void label of the benchmarks.
MAX_OBJECT_ID = 254


class ObjectManager:
    """Maps the user's object ids (any values 1..``max_id``) to the engine's slots 1..K.

    The engine's probability tensors have one channel per slot, so id 200
    takes one channel, not 201. A new id gets the lowest free slot (ids added
    together: in increasing order, so the ids of one video take slots 1..K
    in increasing id order); a removed id's slot is retired (its channel
    stays, always zero) until :meth:`compact`, which the predictor calls when
    no computation holds slots.

    Args:
        max_id: the highest id accepted (the benchmark drivers pass 255: a 0/255 video's one object is
            written back as 255).
    """

    def __init__(self, max_id: int = MAX_OBJECT_ID) -> None:
        self.max_id = max_id
        self._slots: dict[int, int] = {}
        self._retired: set[int] = set()

    @property
    def ids(self) -> list[int]:
        """The live object ids, sorted."""
        return sorted(self._slots)

    @property
    def slots(self) -> dict[int, int]:
        """A copy of the id -> slot table."""
        return dict(self._slots)

    @property
    def num_slots(self) -> int:
        """Channels the engine needs besides background: the highest slot in use or retired."""
        return max([0, *self._slots.values(), *self._retired])

    def slot(self, obj: int) -> int:
        return self._slots[obj]

    def add(self, ids: Sequence[int]) -> list[int]:
        """Give slots to the ids not seen yet (in increasing order); returns those new ids."""
        new = sorted(set(int(i) for i in ids) - self._slots.keys())
        for obj in new:
            if not 1 <= obj <= self.max_id:
                raise ValueError(f"object id {obj}: not in 1..{self.max_id}; use ids 1..{self.max_id}")
            taken = set(self._slots.values()) | self._retired
            self._slots[obj] = next(s for s in range(1, len(taken) + 2) if s not in taken)
        return new

    def remove(self, obj: int) -> None:
        self._retired.add(self._slots.pop(obj))

    def compact(self) -> None:
        """Slots 1..K in increasing id order (the order the benchmark drivers use), none retired."""
        self._slots = {obj: i + 1 for i, obj in enumerate(sorted(self._slots))}
        self._retired.clear()

    def clear(self) -> None:
        self._slots.clear()
        self._retired.clear()

    def slot_map(self, mask: np.ndarray) -> np.ndarray:
        """uint8 [H, W] user ids -> int64 [H, W] slots (ids without a slot -> 0)."""
        table = np.zeros(256, dtype=np.int64)
        for obj, slot in self._slots.items():
            table[obj] = slot
        return table[mask]

    def id_table(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """int64 [num_slots + 1]: slot -> user id (retired slots and background -> 0)."""
        table = torch.zeros(self.num_slots + 1, dtype=torch.int64)
        for obj, slot in self._slots.items():
            table[slot] = obj
        return table.to(device)


def pad_channels(prob: torch.Tensor, channels: int) -> torch.Tensor:
    """[C, h, w] probabilities with zero channels appended up to ``channels`` (objects the engine has not
    seen yet, e.g. before their first mask)."""
    if prob.shape[0] >= channels:
        return prob
    return torch.cat([prob, prob.new_zeros(channels - prob.shape[0], *prob.shape[1:])])


def probabilities_to_mask(prob: torch.Tensor, out_size: tuple[int, int], lut: torch.Tensor) -> np.ndarray:
    """[K + 1, h, w] probabilities -> uint8 [H, W] original object ids.

    Bilinear resize (align_corners=False) to the output size, argmax over the
    channels (background included), then internal ids -> original values.
    """
    if tuple(prob.shape[-2:]) != tuple(out_size):
        prob = F.interpolate(prob[None], size=out_size, mode="bilinear", align_corners=False)[0]
    return lut[prob.argmax(0)].to(torch.uint8).cpu().numpy()


def to_mask(prob: torch.Tensor, out_size: tuple[int, int], table: torch.Tensor) -> np.ndarray:
    """An engine result's probabilities -> uint8 [H, W] user ids through ``table`` (``ObjectManager.id_table``)."""
    return probabilities_to_mask(pad_channels(prob, table.shape[0]), out_size, table)
