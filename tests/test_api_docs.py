"""docs/api.md runs: its ```python blocks are executed in order, as one session (they assert what they show)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_api_examples_run():
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 4  # building, a camera loop, an object added mid-video with a correction, backward
    namespace: dict = {"__name__": "api_docs"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)  # noqa: S102 - the docs' own code
    assert namespace["order"] == [5, 6, 7, 4, 3, 2, 1, 0]  # the last block ran to its end
