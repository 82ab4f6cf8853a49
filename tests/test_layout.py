"""Imports run one way: drivers -> inference/ -> dataset/, model/ -> util/ (README.md, Layout).

Every ``.py`` file of the repository is parsed with ``ast`` and each of its imports
(module level and inside functions) is checked against the rank table below: a
file may import its own package, or a package of a lower rank. ``dataset/`` and
``model/`` share a rank and so never import each other: the data does not know the
network, and the trainer is handed its data by ``train.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: package -> rank; an import must point to the file's own package or to a lower rank.
RANKS = {
    "util": 0,
    "dataset": 1,
    "model": 1,
    "inference": 2,
    "drivers": 3,  # the top-level *.py files and scripts/
    "tests": 4,
}
SKIPPED_DIRS = {"__pycache__", "node_modules"}


def driver_modules(repo: Path = REPO) -> set[str]:
    """Module names of the top-level driver scripts (``segment``, ``train``, ...)."""
    return {p.stem for p in repo.glob("*.py")}


def package_of_path(relative: str) -> str:
    """The rank-table package of a file, from its path relative to the repository root."""
    parts = Path(relative).parts
    if len(parts) == 1 or parts[0] == "scripts":
        return "drivers"
    return parts[0]


def package_of_module(module: str, drivers: set[str]) -> str | None:
    """The rank-table package an imported module belongs to, None for the standard library and third parties."""
    head = module.split(".")[0]
    if head == "scripts" or head in drivers:
        return "drivers"
    return head if head in RANKS else None


def imported_modules(tree: ast.AST) -> list[tuple[int, str | None, int]]:
    """(line, absolute module name or None for a relative import, relative level) of every import."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module, node.level))
    return found


def upward_imports(relative: str, source: str, drivers: set[str] | None = None) -> list[str]:
    """The imports of one file (``relative`` path, ``source`` text) that break the rank table, as messages."""
    drivers = driver_modules() if drivers is None else drivers
    own = package_of_path(relative)
    problems = []
    for line, module, level in imported_modules(ast.parse(source, filename=relative)):
        if level:  # relative imports stay inside the file's own package
            continue
        target = package_of_module(module, drivers)
        if target is None or target == own:
            continue
        if RANKS[target] >= RANKS[own]:
            problems.append(f"{relative}:{line}: {own} (rank {RANKS[own]}) imports {module} "
                            f"({target}, rank {RANKS[target]})")
    return problems


def python_files(repo: Path = REPO) -> list[Path]:
    return sorted(
        p for p in repo.rglob("*.py")
        if not any(part.startswith(".") or part in SKIPPED_DIRS for part in p.relative_to(repo).parts[:-1])
    )


def test_every_package_has_a_rank():
    """A new top-level folder of Python files must be placed in the table (else it would go unchecked)."""
    folders = {p.relative_to(REPO).parts[0] for p in python_files() if len(p.relative_to(REPO).parts) > 1}
    assert folders - {"scripts"} <= set(RANKS), f"folders without a rank: {sorted(folders - set(RANKS))}"


def test_imports_run_one_way():
    files = python_files()
    assert len(files) > 50 and any(p.name == "engine.py" for p in files)
    problems = [msg for p in files
                for msg in upward_imports(p.relative_to(REPO).as_posix(), p.read_text(encoding="utf-8"))]
    assert problems == []


DRIVERS = {"segment", "train"}


@pytest.mark.parametrize(("path", "source", "count"), [
    ("dataset/readers.py", "from inference.engine import PCVOSEngine\n", 1),
    ("dataset/readers.py", "def f():\n    import inference.runner as r\n    return r\n", 1),  # inside a function
    ("model/trainer.py", "from dataset.sampling import CURRICULA\n", 1),  # same rank
    ("dataset/frames.py", "import model.network\n", 1),  # same rank, the other way
    ("util/paths.py", "from dataset.masks import VOID\nimport torch\n", 1),
    ("inference/runner.py", "import segment\n", 1),  # a driver
    ("inference/runner.py", "from scripts import official_like\n", 1),
    ("scripts/tool.py", "from tests.reference_core import reference_segment\n", 1),
    ("inference/runner.py", "from dataset.frames import VideoSource\nfrom model.network import PCVOS\n"
     "from util.paths import safe_name\nimport numpy as np\nfrom . import engine\n", 0),
    ("segment.py", "import train\nfrom inference.runner import segment_stream\n", 0),
    ("tests/test_x.py", "import segment\nfrom scripts import benchmark\n", 0),
])
def test_upward_import_found_in_planted_source(path, source, count):
    """The check itself: a planted upward import is reported (with its line), allowed ones are not."""
    problems = upward_imports(path, source, DRIVERS)
    assert len(problems) == count, problems
    if count:
        assert problems[0].startswith(f"{path}:")
