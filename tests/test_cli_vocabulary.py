"""docs/cli.md's table against every command's parser: one name per idea, old names hidden, defaults shown."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from util.arguments import HelpFormatter, help_with_default

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = ("segment", "eval_generic", "eval_davis", "eval_youtube", "inference_pretrained_pcvos", "interactive_demo")
SCRIPTS = ("ablation", "bench_memory", "bench_score_davis", "benchmark", "download", "make_synthetic",
           "memory_diagnosis", "icr_diagnosis", "precision_agreement", "quickstart", "resize_youtube", "score_davis")
COMMANDS = (*DRIVERS, "train", *(f"scripts/{name}" for name in SCRIPTS))
#: hidden flags that are no old name: bench_memory's subprocess protocol
INTERNAL = {("scripts/bench_memory", "--worker")}


def build_parser(command: str) -> argparse.ArgumentParser:
    if command.startswith("scripts/"):
        sys.path.insert(0, str(ROOT / "scripts"))
        command = command.split("/", 1)[1]
    return importlib.import_module(command).build_parser()


def table() -> list[dict]:
    """The rows of docs/cli.md's 'Every flag' table."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text.split("## Every flag", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        flag, meaning, where, old = (cell.strip() for cell in line.strip().strip("|").split(" | "))
        commands: list[str] = []
        for name in (w.strip() for w in where.split(",")):
            commands += DRIVERS if name == "drivers" else [name]
        rows.append({"flags": re.findall(r"`([^`]+)`", flag), "meaning": meaning, "where": commands,
                     "old": re.findall(r"`([^`]+)`", old)})
    return rows


def options(parser: argparse.ArgumentParser) -> tuple[dict[str, argparse.Action], dict[str, argparse.Action]]:
    """(visible, hidden): every option string of the parser and its action; --help left out."""
    visible, hidden = {}, {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        for option in action.option_strings:
            (hidden if action.help == argparse.SUPPRESS else visible)[option] = action
    return visible, hidden


ROWS = table()
PARSERS = {command: build_parser(command) for command in COMMANDS}


def test_the_table_is_read_and_names_every_command():
    assert len(ROWS) > 100
    assert {c for row in ROWS for c in row["where"]} == set(COMMANDS)
    for row in ROWS:
        assert row["flags"] and row["meaning"] and row["where"], row
        assert len(set(row["where"])) == len(row["where"]), row


def test_one_row_per_flag():
    """A flag has one meaning: it is in one row (one meaning in every command that has it)."""
    seen: dict[str, int] = {}
    for i, row in enumerate(ROWS):
        for flag in row["flags"]:
            assert flag not in seen, f"{flag} is in two rows of docs/cli.md"
            seen[flag] = i


@pytest.mark.parametrize("command", COMMANDS)
def test_table_matches_the_parser(command):
    parser = PARSERS[command]
    visible, hidden = options(parser)
    listed = {flag: row for row in ROWS if command in row["where"] for flag in row["flags"]}
    assert set(visible) == set(listed), (
        f"{command}: flags not in docs/cli.md: {sorted(set(visible) - set(listed))}; "
        f"listed there but not accepted: {sorted(set(listed) - set(visible))}")
    for row in ROWS:
        if command in row["where"]:  # the row's flags are one action: -L and --clip-length are one flag
            assert len({id(visible[flag]) for flag in row["flags"]}) == 1, (command, row["flags"])
    old_names = {old: row for row in ROWS if command in row["where"] for old in row["old"]}
    for option, action in hidden.items():
        if (command, option) in INTERNAL:
            continue
        assert option in old_names, f"{command}: hidden {option} is not an old name in docs/cli.md"
        canonical = visible[old_names[option]["flags"][0]]
        siblings = [a for a in parser._actions if a.dest == action.dest and a.help != argparse.SUPPRESS]
        if siblings:  # an old name writes what the new one does
            assert siblings == [canonical], (command, option)


def test_every_old_name_is_accepted_somewhere_it_is_listed():
    for row in ROWS:
        for old in row["old"]:
            assert any(old in options(PARSERS[c])[1] for c in row["where"]), (old, row["flags"])


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_each_default(command):
    """Every flag with a default says it; a required one prints no '(default: None)'; the help uses util.arguments."""
    parser = PARSERS[command]
    assert isinstance(parser._get_formatter(), HelpFormatter), command
    assert "(default: None)" not in " ".join(parser.format_help().split())
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        shown = help_with_default(action)
        assert action.help, f"{command} {action.option_strings[0]}: no help text"
        if action.required:
            assert "default" not in shown.replace("no default", ""), (command, action.option_strings)
        elif action.default is not None or isinstance(action, argparse._StoreTrueAction):
            assert "default" in shown, (command, action.option_strings, shown)


def test_old_names_parse_to_the_new_ones(tmp_path):
    """Renamed flags keep working: required ones too, under their old name."""
    import eval_davis
    import inference_pretrained_pcvos
    import train

    args = eval_davis.parse_args(["--davis-path", "d", "--out", "o"])
    assert (args.davis_root, args.output) == (Path("d"), Path("o"))
    with pytest.raises(SystemExit):
        eval_davis.parse_args(["--output", "o"])  # still required
    usage = eval_davis.build_parser().format_usage()
    assert "--davis-root FOLDER" in usage and "[--davis-root" not in usage  # and shown as required
    sweep = inference_pretrained_pcvos.parse_args(["--output", "o", "--benchmarks", "generic", "--generic-path", "g",
                                                   "-L", "3", "7"])
    assert (sweep.generic_root, sweep.clip_lengths) == (Path("g"), [3, 7])
    assert not hasattr(sweep, "clip_length")  # a sweep has no single L to accept and ignore
    trained = train.build_parser().parse_args(["--stage", "3", "--num-workers", "3", "--clip-lengths", "2", "2"])
    assert (trained.num_workers, trained.clip_lengths) == (3, [2, 2])
    assert "--num-workers" not in train.build_parser().format_help()


# --------------------------------------------------------------------------- fast answers (docs/cli.md)

HEAVY = ("torch", "torchvision", "cv2", "timm")


def _run_importing(argv: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run a command under ``python -X importtime``: (the process, every module it imported)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "argparse" in modules  # the listing was read
    return proc, modules


@pytest.mark.parametrize("command", [*DRIVERS, "train"])
def test_help_answers_without_importing_torch(command):
    proc, modules = _run_importing([f"{command}.py", "--help"])
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.parametrize(("argv", "message"), [
    (["segment.py", "--video", "absent.mp4", "--mask", "m.png", "--output", "out"], "--video absent.mp4: no such file"),
    (["eval_davis.py", "--davis-root", "absent", "--output", "out"], "--davis-root absent: no such folder"),
    (["eval_generic.py", "--generic-root", ".", "--output", "out", "--model", "absent.pth"],
     "--model absent.pth: file not found"),
    (["train.py", "--stage", "3", "--davis-root", "absent"], "--davis-root absent: no such folder"),
])
def test_a_wrong_path_is_refused_without_importing_torch(argv, message):
    proc, modules = _run_importing(argv)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_no_flag_is_accepted_and_ignored(capsys):
    """A flag the chosen mode does not read is refused in one line, before anything loads."""
    import eval_generic
    import eval_youtube
    import inference_pretrained_pcvos
    from util.errors import run_cli

    base = ["--generic-root", str(ROOT), "--output", "out", "--model", "recipe"]
    assert run_cli(eval_generic.main, [*base, "--memory-budget", "300"]) == 2
    assert "--memory-budget 300: --memory keep-all does not read it (only afb)" in capsys.readouterr().err
    assert run_cli(eval_generic.main, [*base, "--memory", "fifo", "--quality-threshold", "0.5"]) == 2
    assert "--quality-threshold 0.5: --memory fifo does not read it" in capsys.readouterr().err
    sweep = ["--output", "o", "--benchmarks", "generic", "--generic-root", "g"]
    for extra in (["--davis-split", "val"], ["--youtube-root", "y"], ["--no-zip"], ["--davis-size", "480"]):
        with pytest.raises(SystemExit):
            inference_pretrained_pcvos.parse_args([*sweep, *extra])
        assert "none of them is chosen" in capsys.readouterr().err
    assert inference_pretrained_pcvos.parse_args(sweep).davis_split is None  # not given: the default applies
    for extra in (["--zip", "z.zip", "--no-zip"], ["--required-only", "--output-all"]):
        with pytest.raises(SystemExit):
            eval_youtube.parse_args(["--youtube-root", "y", "--output", "o", *extra])
        assert "not allowed with" in capsys.readouterr().err
