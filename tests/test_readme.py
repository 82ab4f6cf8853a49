"""The README's commands are runnable as written: every script exists and its parser accepts the line;
every page the README and docs/ link to exists."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: script -> how to parse a command line with it (the scripts whose parser is reachable without running them)
PARSERS = {
    "segment.py": "parse_args", "eval_davis.py": "parse_args", "eval_generic.py": "parse_args",
    "eval_youtube.py": "parse_args", "inference_pretrained_pcvos.py": "parse_args", "interactive_demo.py": "parse_args",
    "train.py": "build_parser", "scripts/score_davis.py": "parse_args", "scripts/benchmark.py": "parse_args",
    "scripts/quickstart.py": "parse_args", "scripts/make_synthetic.py": "parse_args",
    "scripts/ablation.py": "build_parser",
}


def readme_commands() -> list[str]:
    """Every `python ...` command of the README: in code spans and in code blocks."""
    text = README.read_text(encoding="utf-8")
    spans = re.findall(r"`(python [^`]+)`", text)
    blocks = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
              for line in block.splitlines() if line.startswith("python ")]
    return list(dict.fromkeys(spans + blocks))


def _module(script: str):
    path = ROOT / script
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    if spec.name in sys.modules:
        return sys.modules[spec.name]
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_readme_shows_a_command_for_every_main_task():
    scripts = {shlex.split(c)[1] for c in readme_commands()}
    assert {"segment.py", "eval_davis.py", "inference_pretrained_pcvos.py", "train.py", "interactive_demo.py",
            "scripts/score_davis.py", "scripts/benchmark.py", "scripts/download.py"} <= scripts
    assert "make run" in README.read_text() and "make test" in README.read_text()


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses_as_written(command):
    argv = shlex.split(command)
    script = argv[1]
    assert (ROOT / script).is_file(), command
    if script == "scripts/download.py":
        assert argv[2] in _module(script).WEIGHTS, command
        return
    parse = getattr(_module(script), PARSERS[script])
    if PARSERS[script] == "build_parser":
        parse().parse_args(argv[2:])
    else:
        parse(argv[2:])  # argparse exits (SystemExit) on a flag it does not know


def test_every_linked_page_exists():
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert missing == []
