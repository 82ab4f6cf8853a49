"""How every command-line entry point ends: one line for the user's mistakes, a traceback for ours.

The project's error convention (docs/evaluation.md, "Errors"):

* a problem with the user's data, paths, flags or environment raises ``ValueError`` (or a
  subclass such as ``model.checkpoint.CheckpointError``) or an ``OSError`` subclass, with a
  message ``<file or flag>: <what is wrong> (<the offending value>); <what to do>``;
  :func:`run_cli` prints it as ONE line ``error: <message>`` on stderr and exits with 2;
* Ctrl-C (SIGINT) prints one line and exits with 130, the shell's code for SIGINT;
* ``SystemExit`` (argparse's usage errors, explicit exit codes) passes through unchanged;
* anything else is a programming error and keeps its traceback.

Drivers end with ``if __name__ == "__main__": sys.exit(run_cli(main))``; tests call
``run_cli(module.main, argv)`` to see exactly what a user would.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence

#: exit code of an expected failure (bad data, path, flag or environment); argparse uses 2 too
EXIT_ERROR = 2
#: exit code after SIGINT (128 + signal number, what a shell reports for a process killed by it)
EXIT_INTERRUPTED = 128 + signal.SIGINT
INTERRUPTED_LINE = "interrupted (SIGINT): stopped; outputs not finished were discarded, finished ones are kept"

#: the expected failures: turned into one line and exit code 2
USER_ERRORS = (ValueError, OSError)

# torch.utils.data re-raises a worker's exception as the same type with this message:
# "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n..."
_WORKER_PREFIX = "Caught "
_WORKER_MARKER = "Original Traceback (most recent call last):"


def error_text(error: BaseException) -> str:
    """The message to show for an expected failure: the exception's own text.

    * An exception re-raised from a DataLoader worker carries the worker's whole traceback in
      its message; only the original exception's text (the traceback's last entry) is kept.
    * An ``OSError`` raised by the system (``[Errno 20] Not a directory: 'x'``) becomes
      ``x: Not a directory``; one raised with a message of ours keeps that message.
    """
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        where = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
        return f"{where}: {error.strerror}"
    text = str(error) or type(error).__name__
    if text.startswith(_WORKER_PREFIX) and _WORKER_MARKER in text:
        return _original_message(text, type(error))
    return text


def _original_message(text: str, kind: type) -> str:
    """The ``<Type>: <message>`` tail of a formatted traceback, without the ``<Type>: ``."""
    names = [f"{kind.__module__}.{kind.__qualname__}", kind.__qualname__]
    lines = text.rstrip("\n").splitlines()
    for i in range(len(lines) - 1, -1, -1):  # the last one: chained exceptions come first
        for name in names:
            if lines[i].startswith(name + ": "):
                return "\n".join([lines[i][len(name) + 2:], *lines[i + 1:]])
            if lines[i] == name:
                return name
    return lines[-1]


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a driver's ``main(argv)`` and return its exit code, reporting failures as the convention says.

    Returns:
        ``main``'s own code (0 when it returns None), 2 after a ``ValueError`` / ``OSError``
        (one line ``error: <message>`` on stderr), 130 after Ctrl-C (one line). ``SystemExit``
        and every other exception propagate (the latter with its traceback: a bug).
    """
    try:
        code = main(argv)
    except KeyboardInterrupt:
        _report(INTERRUPTED_LINE)
        return EXIT_INTERRUPTED
    except USER_ERRORS as error:
        _report(f"error: {error_text(error)}")
        return EXIT_ERROR
    return 0 if code is None else int(code)


def _report(line: str) -> None:
    try:
        sys.stdout.flush()  # what was printed before stays before the error
    except (OSError, ValueError):
        pass
    print(line, file=sys.stderr, flush=True)
