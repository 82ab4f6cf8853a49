"""Splitting a list of videos between processes: ``--shard i/n`` or torchrun's RANK / WORLD_SIZE.

Every driver that loops over videos accepts ``--shard i/n`` (0-based ``i``); when
the flag is absent and the process was started by ``torchrun`` (``RANK`` and
``WORLD_SIZE`` in the environment), the shard is taken from there. Shard ``i``
gets items ``i, i + n, i + 2n, ...`` of the sorted list, so the shards of one
``n`` cover every item exactly once and long and short videos mix.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``Shard(0, 1)`` = everything)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= i < n and n >= 1")

    @property
    def is_whole(self) -> bool:
        return self.count == 1

    def select(self, items: Sequence[T]) -> list[T]:
        """This shard's items (strided, order kept)."""
        return list(items[self.index :: self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``'i/n'`` -> Shard; raises ``argparse.ArgumentTypeError`` with a usable message."""
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts)
        return Shard(index, count)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. --shard 0/4 for the first of four shards"
        ) from error


def env_shard(environ: Mapping[str, str] | None = None) -> Shard | None:
    """The shard torchrun describes (``RANK``, ``WORLD_SIZE``), or None outside torchrun."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        return Shard(int(env["RANK"]), int(env["WORLD_SIZE"]))
    except ValueError as error:
        raise ValueError(
            f"RANK={env['RANK']!r} WORLD_SIZE={env['WORLD_SIZE']!r}: not a valid rank / world size"
        ) from error


def resolve_shard(explicit: Shard | None, environ: Mapping[str, str] | None = None) -> Shard:
    """``--shard`` wins; else torchrun's environment; else the whole list."""
    if explicit is not None:
        return explicit
    return env_shard(environ) or Shard()


def shard_device(device: str, environ: Mapping[str, str] | None = None, cuda_count: int | None = None) -> str:
    """Under torchrun, ``--device auto`` means this process's GPU (``cuda:LOCAL_RANK``).

    Any explicit device, a run without ``LOCAL_RANK`` or a machine without CUDA
    keeps ``device`` unchanged.
    """
    env = os.environ if environ is None else environ
    if device != "auto" or "LOCAL_RANK" not in env:
        return device
    if cuda_count is None:
        import torch  # deferred: the parsing helpers above stay importable without torch

        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda_count == 0:
        return device
    return f"cuda:{int(env['LOCAL_RANK']) % cuda_count}"


def add_shard_arg(parser: argparse.ArgumentParser) -> None:
    """``--shard i/n`` (default: torchrun's RANK/WORLD_SIZE, else everything)."""
    parser.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        help="process only shard i of n of the video list (0-based, e.g. 0/4); under torchrun the "
        "default is RANK/WORLD_SIZE",
    )
