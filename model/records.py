"""What a checkpoint file is and what it records, without torch: read by command lines before they load anything.

* :class:`CheckpointError`: a checkpoint that cannot be used, with the reason;
* :class:`InferenceSettings`: the inference settings a train.py checkpoint records (docs/cli.md);
* :func:`not_a_checkpoint_file`: the error for a folder given where a checkpoint file is expected.

:mod:`model.checkpoint` (which reads and writes the files) re-exports all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the network, with the reason."""


#: what each recordable setting must be, and how a person overrides it (inference.settings.resolve_engine_config)
_RECORDABLE = {
    "clip_length": ("the clip length", "a positive integer", "-L N (clip_length= in Python)"),
    "flip": ("the mirror augmentation", "true or false", "--flip or --no-flip (flip= in Python)"),
}


@dataclass(frozen=True)
class InferenceSettings:
    """The inference settings a train.py checkpoint records (its ``'inference'`` entry): what the model runs
    at unless the caller says otherwise. The quickstart records the clip length that won on its selection
    videos and no mirror augmentation, so that ``eval_davis.py --model <it>`` without flags reproduces its
    report's headline (docs/cli.md).

    A recorded value of the wrong type is kept aside in ``invalid`` and reported only when the setting
    is needed: an explicit ``-L`` still runs a checkpoint whose recorded L is damaged.
    """

    clip_length: int | None = None
    flip: bool | None = None
    why: str = ""  # the reason for the values, shown when a driver uses them
    source: str = ""  # the file, named by errors
    invalid: dict = field(default_factory=dict, compare=False)  # setting -> the malformed recorded value

    def __post_init__(self) -> None:
        if self.clip_length is not None and not _is_clip_length(self.clip_length):
            raise ValueError(f"{self.source or 'inference settings'}: clip length must be >= 1, got "
                             f"{self.clip_length!r}")

    @classmethod
    def from_record(cls, record: object, source: str = "") -> InferenceSettings:
        """The settings a checkpoint's ``'inference'`` entry holds (None or absent: none)."""
        if record is None:
            return cls(source=source)
        if not isinstance(record, dict):
            return cls(source=source, invalid={name: record for name in _RECORDABLE})
        length, flip = record.get("clip_length"), record.get("flip")
        invalid = {}
        if length is not None and not _is_clip_length(length):
            invalid["clip_length"], length = length, None
        if flip is not None and not isinstance(flip, bool):
            invalid["flip"], flip = flip, None
        why = record.get("why")
        return cls(clip_length=length, flip=flip, why=why if isinstance(why, str) else "", source=source,
                   invalid=invalid)

    def to_record(self) -> dict:
        """The ``'inference'`` entry of a checkpoint (settings not chosen are left out)."""
        record: dict = {"why": self.why}
        if self.clip_length is not None:
            record["clip_length"] = int(self.clip_length)
        if self.flip is not None:
            record["flip"] = bool(self.flip)
        return record

    def get(self, name: str) -> int | bool | None:
        """The recorded value of ``name`` ('clip_length' or 'flip'; None: not recorded).

        Raises:
            CheckpointError: the checkpoint records a malformed value for it.
        """
        if name not in _RECORDABLE:
            raise KeyError(name)
        if name in self.invalid:
            what, kind, flag = _RECORDABLE[name]
            raise CheckpointError(
                f"{self.source or 'checkpoint'}: {what} it records is {self.invalid[name]!r}, not {kind}; pass "
                f"{flag} to choose one"
            )
        return getattr(self, name)


def _is_clip_length(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def not_a_checkpoint_file(path: Path, flag: str | None = None) -> CheckpointError:
    """The error for a folder given where a checkpoint file is expected, suggesting the files inside it."""
    inside = sorted(p.name for p in Path(path).glob("*.pth"))
    hint = f"the .pth file inside it ({', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''})" if inside \
        else "a .pth checkpoint file (this folder holds none)"
    where = f"{flag} {path}" if flag else str(path)
    return CheckpointError(f"{where}: is a folder, not a checkpoint file; pass {hint}")
