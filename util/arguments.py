"""What every command line of the project shares (docs/cli.md): the parser, its help format, hidden old names.

* :func:`new_parser` returns a :class:`Parser` whose help ends each flag's text with its default
  (``(default: 2)``, ``(default: off)`` for a switch); a flag whose default is computed says so in
  its own words, and a required flag shows none;
* :func:`add_alias` keeps a renamed flag working under its old name without listing it in ``--help``;
* :func:`frame_size` reads an ``HxW`` frame size;
* :func:`require_path` refuses a missing input in a line, before the heavy imports.

Only the standard library is imported here: building a parser and printing ``--help`` must not wait
for torch (docs/cli.md, "Fast answers").
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Ends each flag's help with its default; keeps a multi-line description as written, wraps a one-line one."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" not in text.strip():
            return argparse.HelpFormatter._fill_text(self, text, width, indent)
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        return help_with_default(action)


def help_with_default(action: argparse.Action) -> str:
    """The help text of ``action`` as ``--help`` prints it (before %-formatting)."""
    text = action.help or ""
    if (text == argparse.SUPPRESS or not action.option_strings or action.required
            or action.default is argparse.SUPPRESS or "default" in text):
        return text
    if isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction)):
        return text if isinstance(action, argparse._HelpAction) else f"{text} (default: off)"
    if action.default is None:
        return text
    value = action.default
    shown = " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    return f"{text} (default: {shown.replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that accepts a required flag under one of its hidden old names as well."""

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        hidden = {a.dest for a in self._actions if a.option_strings and a.help == argparse.SUPPRESS}
        relaxed = [a for a in self._actions if a.required and a.dest in hidden]
        self._relaxed = relaxed
        for action in relaxed:  # argparse would demand the new name itself
            action.required = False
        try:
            parsed, extras = super().parse_known_args(args, namespace)
        finally:
            for action in relaxed:
                action.required = True
            self._relaxed = []
        missing = [a for a in relaxed if getattr(parsed, a.dest, None) is None]
        if missing:
            self.error("the following arguments are required: " + ", ".join(a.option_strings[0] for a in missing))
        return parsed, extras


    def format_usage(self) -> str:
        with self._as_declared():
            return super().format_usage()

    def format_help(self) -> str:
        with self._as_declared():
            return super().format_help()

    @contextlib.contextmanager
    def _as_declared(self) -> Iterator[None]:
        """Required flags shown as required while a parse has relaxed them (--help, a usage error)."""
        relaxed = getattr(self, "_relaxed", [])
        for action in relaxed:
            action.required = True
        try:
            yield
        finally:
            for action in relaxed:
                action.required = False


def new_parser(description: str | None, **kwargs) -> Parser:
    """The parser of one command (its description: the module docstring or one line)."""
    return Parser(description=description, formatter_class=HelpFormatter, **kwargs)


def add_alias(container: argparse._ActionsContainer, action: argparse.Action, *names: str) -> None:
    """Accept ``names`` as hidden old names of ``action``: same destination, values and checks, not in ``--help``.

    ``container``: the parser or argument group ``action`` was added to.
    """
    hidden = {"dest": action.dest, "default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
    if isinstance(action, argparse._StoreTrueAction):
        container.add_argument(*names, action="store_true", **hidden)
    elif isinstance(action, (argparse._StoreAction, argparse._AppendAction)):
        container.add_argument(*names, action="append" if isinstance(action, argparse._AppendAction) else "store",
                               type=action.type, nargs=action.nargs, choices=action.choices,
                               metavar=action.metavar, **hidden)
    else:
        raise TypeError(f"add_alias: {type(action).__name__} actions have no aliases ({action.option_strings})")


def frame_size(text: str) -> tuple[int, int]:
    """``'240x432'`` -> ``(240, 432)``: a frame size as height x width in pixels (each >= 16)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"frame size {text!r}: expected HxW in pixels, e.g. 240x432") from error
    if height < 16 or width < 16:
        raise argparse.ArgumentTypeError(f"frame size {text!r}: both sides must be >= 16 pixels")
    return height, width


def require_path(path: str | os.PathLike, flag: str, folder: bool, hint: str) -> None:
    """Refuse a missing input before anything heavy is loaded: ``<flag> <path>: no such folder (file); <hint>``."""
    path = Path(path)
    if folder and not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "no such folder"
        raise (NotADirectoryError if path.exists() else FileNotFoundError)(f"{flag} {path}: {problem}; {hint}")
    if not folder and not path.exists():
        raise FileNotFoundError(f"{flag} {path}: no such file; {hint}")
