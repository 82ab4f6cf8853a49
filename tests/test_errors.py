"""Expected failures end in one line and exit code 2, Ctrl-C in one line and 130, bugs keep their traceback.

The benchmark drivers are run in-process through ``util.errors.run_cli`` (exactly what their
``__main__`` does) on tiny generated layouts with one broken input each; the checks that can be
made before inference must fail before any video's output folder exists. Two subprocess tests
send SIGINT to a running ``eval_generic.py`` / ``segment.py`` (process group, as a terminal does).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval_davis
import eval_generic
import eval_youtube
import inference_pretrained_pcvos
import segment
import train
from dataset import synthetic as syn
from model.checkpoint import CheckpointError, config_from_checkpoint
from model.network import PCVOS, PCVOSConfig
from util.errors import EXIT_ERROR, EXIT_INTERRUPTED, error_text, run_cli

H, W = 64, 112
REPO = Path(__file__).resolve().parents[1]
FAST = ["--device", "cpu", "--workers", "0"]


# --------------------------------------------------------------------------- run_cli itself


def _raiser(error: BaseException) -> Callable[[list[str] | None], int]:
    def main(argv: list[str] | None = None) -> int:
        raise error

    return main


def test_run_cli_maps_user_errors_interrupts_and_exit_codes(capsys):
    assert run_cli(lambda argv: 0, []) == 0 and run_cli(lambda argv: None, []) == 0
    assert run_cli(lambda argv: 3, []) == 3  # a driver's own code passes through (train.py: 3 = diverged)
    assert run_cli(_raiser(ValueError("x.png: mask is empty (all 0); draw an object")), []) == EXIT_ERROR == 2
    assert capsys.readouterr().err == "error: x.png: mask is empty (all 0); draw an object\n"
    assert run_cli(_raiser(CheckpointError("m.pth: bad")), []) == 2  # ValueError subclass
    assert capsys.readouterr().err == "error: m.pth: bad\n"
    assert run_cli(_raiser(NotADirectoryError(20, "Not a directory", "/a/file/out")), []) == 2
    assert capsys.readouterr().err == "error: /a/file/out: Not a directory\n"  # not "[Errno 20] ..."
    assert run_cli(_raiser(FileNotFoundError("--x y: file not found")), []) == 2
    assert capsys.readouterr().err == "error: --x y: file not found\n"
    assert run_cli(_raiser(KeyboardInterrupt()), []) == EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interrupted") and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        run_cli(_raiser(SystemExit(7)), [])
    assert exit_.value.code == 7
    with pytest.raises(RuntimeError, match="a bug"):  # a programming error keeps its traceback
        run_cli(_raiser(RuntimeError("a bug")), [])
    with pytest.raises(TypeError):
        run_cli(_raiser(TypeError("also a bug")), [])


def test_errors_from_dataloader_workers_show_only_the_original_message():
    from torch._utils import ExceptionWrapper

    def reraised(error: BaseException) -> BaseException:
        try:
            try:
                raise error
            except BaseException:
                ExceptionWrapper(where="in DataLoader worker process 0").reraise()
        except BaseException as caught:  # noqa: BLE001 - the re-raised copy is what the main process sees
            return caught

    plain = reraised(ValueError("/d/v/00003.jpg: cannot read image (broken data stream)"))
    assert type(plain) is ValueError and "Original Traceback" in str(plain)  # torch's multi-line message ...
    assert error_text(plain) == "/d/v/00003.jpg: cannot read image (broken data stream)"  # ... reduced to its text
    custom = reraised(CheckpointError("m.pth: model_config: value_dim 'x'"))
    assert error_text(custom) == "m.pth: model_config: value_dim 'x'"
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer: the one to show") from inner
    except ValueError as chained:
        assert error_text(reraised(chained)) == "outer: the one to show"


def test_sigint_with_a_worker_process_is_one_line(tmp_path):
    """Ctrl-C in a terminal reaches the whole process group, DataLoader workers included."""
    data = _long_video(tmp_path)
    out = tmp_path / "out"
    argv = [sys.executable, str(REPO / "eval_generic.py"), "--data", str(data), "--output", str(out),
            "--model", "recipe", "--device", "cpu", "--workers", "1"]
    code, err = _interrupt(argv, started=lambda: (out / ".v.partial").is_dir())
    assert code == 130, err
    assert err.count("\n") == 1 and err.startswith("interrupted") and "Traceback" not in err, err
    assert not (out / "v").exists() and not (out / ".v.partial").exists()  # the unfinished video was discarded


def test_sigint_stops_segment_py_with_one_line(tmp_path):
    data = _long_video(tmp_path)
    run = tmp_path / "run"  # masks are written aside in here and the folder committed at the end
    out = run / "masks"
    argv = [sys.executable, str(REPO / "segment.py"), "--video", str(data / "JPEGImages" / "v"),
            "--mask", str(data / "first.png"), "--output", str(out), "--model", "recipe", "--device", "cpu"]
    code, err = _interrupt(argv, started=lambda: run.is_dir() and any(run.rglob("*.png")))
    assert code == 130, err
    assert err.count("\n") == 1 and err.startswith("interrupted") and "Traceback" not in err, err
    assert not out.exists()  # nothing half-written under the name the user gave


def _long_video(root: Path, frames: int = 150) -> Path:
    """A generic layout with one video ``v`` long enough to be interrupted mid-run, plus ``first.png``."""
    data = root / "data"
    config = syn.SyntheticConfig(num_frames=frames, height=H, width=W, num_objects=1, seed=3)
    syn.write_generic(data, [syn.VideoSpec("v", config)])
    shutil.copyfile(data / "Annotations" / "v" / "00000.png", data / "first.png")
    return data


def _sigint_as_in_a_terminal() -> None:
    """In the child: SIGINT at its default. Under a shell's background job (``nohup ... &``) pytest starts with
    SIGINT ignored, its children inherit that, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(argv: list[str], started: Callable[[], bool], timeout: float = 300) -> tuple[int, str]:
    """Run ``argv`` in its own process group; SIGINT the group once ``started()``; (exit code, stderr)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=REPO, preexec_fn=_sigint_as_in_a_terminal)
    deadline = time.monotonic() + timeout
    try:
        while not started():
            if proc.poll() is not None:
                pytest.fail(f"finished before it could be interrupted:\n{proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("never started segmenting")
            time.sleep(0.05)
        time.sleep(0.3)  # well inside the video
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


# --------------------------------------------------------------------------- bad inputs, every benchmark driver


def _config() -> syn.SyntheticConfig:
    return syn.SyntheticConfig(num_frames=6, height=H, width=W, num_objects=1, num_distractors=0, seed=5)


@dataclass
class Layout:
    """How one driver reads one video ``v`` and where it writes it."""

    main: Callable[[list[str] | None], int]
    write: Callable[[Path], None]  # writes the layout into the given root
    argv: Callable[[Path, Path], list[str]]  # (data root, output) -> arguments without --model
    annotation: str  # the first annotation, relative to the root
    frames: str  # folder of the frames, relative to the root
    has_zip: bool = False
    scored: bool = False  # the annotations are also the GT the DAVIS toolkit scores against


LAYOUTS = {
    "eval_generic": Layout(
        eval_generic.main,
        lambda root: syn.write_generic(root, [syn.VideoSpec("v", _config())]),
        lambda root, out: ["--data", str(root), "--output", str(out)],
        "Annotations/v/00000.png", "JPEGImages/v",
    ),
    "eval_davis": Layout(
        eval_davis.main,
        lambda root: syn.write_davis(root, [syn.VideoSpec("v", _config())]),
        lambda root, out: ["--davis-path", str(root), "--output", str(out)],
        "Annotations/480p/v/00000.png", "JPEGImages/480p/v", scored=True,
    ),
    "eval_davis_2016": Layout(  # the first-frame objects are merged into a staged copy: errors must name the original
        eval_davis.main,
        lambda root: syn.write_davis2016(root, [syn.VideoSpec("v", _config())]),
        lambda root, out: ["--year", "2016", "--davis-path", str(root), "--output", str(out)],
        "Annotations/480p/v/00000.png", "JPEGImages/480p/v", scored=True,
    ),
    "eval_youtube": Layout(
        eval_youtube.main,
        lambda root: syn.write_youtube(root, [syn.VideoSpec("v", _config())]),
        lambda root, out: ["--yv-path", str(root), "--output", str(out)],
        "valid/Annotations/v/00000.png", "all_frames/valid_all_frames/JPEGImages/v", has_zip=True,
    ),
    "inference_pretrained_pcvos": Layout(
        inference_pretrained_pcvos.main,
        lambda root: syn.write_generic(root, [syn.VideoSpec("v", _config())]),
        lambda root, out: ["--benchmarks", "generic", "--generic-path", str(root), "--clip-lengths", "2",
                           "--output", str(out)],
        "Annotations/v/00000.png", "JPEGImages/v",
    ),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    roots = {}
    for name, layout in LAYOUTS.items():
        roots[name] = tmp_path_factory.mktemp(name) / "data"
        layout.write(roots[name])
    return roots


@dataclass
class Probe:
    """One bad input: ``apply(case)`` breaks it; the message must contain every string of ``expect(case)``."""

    apply: Callable[[Case], None]
    expect: Callable[[Case], list[str]]
    preflight: bool = True  # found before any video is segmented
    zip_only: bool = False
    scored_only: bool = False  # bad only as the GT of a scored benchmark (drivers read RGB masks as colours)


@dataclass
class Case:
    root: Path
    out: Path
    model: Path
    layout: Layout
    extra: list[str]
    tmp: Path

    @property
    def annotation(self) -> Path:
        return self.root / self.layout.annotation

    def frame(self, t: int) -> Path:
        return self.root / self.layout.frames / f"{t:05d}.jpg"


def _write_checkpoint(case: Case, model_config: object) -> None:
    case.model = case.tmp / "damaged.pth"
    state = PCVOS(PCVOSConfig.small()).state_dict()
    torch.save({"network": state, "model_config": model_config}, case.model)


def _models_folder(case: Case) -> None:
    folder = case.tmp / "models"
    folder.mkdir()
    shutil.copyfile(case.model, folder / "small.pth")
    case.model = folder


def _output_under_file(case: Case) -> None:
    (case.tmp / "file.txt").write_text("a file")
    case.out = case.tmp / "file.txt" / "out"


def _output_is_file(case: Case) -> None:
    case.out = case.tmp / "results"
    case.out.write_text("a file")


def _zip_is_folder(case: Case) -> None:
    (case.tmp / "zips").mkdir()
    case.extra += ["--zip", str(case.tmp / "zips")]


def _zip_under_file(case: Case) -> None:
    (case.tmp / "file.txt").write_text("a file")
    case.extra += ["--zip", str(case.tmp / "file.txt" / "sub.zip")]


def _annotation(pixels: np.ndarray, mode: str | None = None) -> Callable[[Case], None]:
    return lambda case: Image.fromarray(pixels, mode).save(case.annotation)


PROBES = {
    "annotation_empty": Probe(
        lambda case: syn.write_first_mask(case.annotation, np.zeros((H, W), np.uint8)),
        lambda case: [str(case.annotation), "annotation is empty (every pixel is 0)"]),
    "annotation_rgb": Probe(
        _annotation(np.full((H, W, 3), 200, np.uint8)),
        lambda case: [str(case.annotation), "mode 'RGB'", "DAVIS toolkit", "palette"], scored_only=True),
    "annotation_16bit": Probe(
        _annotation(np.full((H, W), 1000, np.uint16)),
        lambda case: [str(case.annotation), "16-bit"]),
    "annotation_wrong_size": Probe(
        lambda case: syn.write_first_mask(case.annotation, np.ones((H - 4, W), np.uint8)),
        lambda case: [str(case.annotation), f"is {W}x{H - 4} (WxH)", f"{W}x{H}", "nearest-neighbour"]),
    "annotation_not_png": Probe(
        lambda case: case.annotation.write_bytes(b"not a png"),
        lambda case: [str(case.annotation), "cannot read"]),
    "first_frame_corrupt": Probe(
        lambda case: case.frame(0).write_bytes(b"\xff\xd8 not a jpeg"),
        lambda case: [str(case.frame(0)), "cannot read image"]),
    "later_frame_corrupt": Probe(  # only decoding finds it: mid-run, in a DataLoader worker
        lambda case: (case.frame(3).write_bytes(b"\xff\xd8 not a jpeg"), case.extra.extend(["--workers", "1"])),
        lambda case: [str(case.frame(3)), "cannot read image"], preflight=False),
    "output_under_a_file": Probe(
        _output_under_file, lambda case: [str(case.out), str(case.tmp / "file.txt"), "is a file, not a folder"]),
    "output_is_a_file": Probe(_output_is_file, lambda case: [str(case.out), "is a file, not a folder"]),
    "zip_is_a_folder": Probe(
        _zip_is_folder, lambda case: ["--zip", str(case.tmp / "zips"), "is a folder", "submission.zip"],
        zip_only=True),
    "zip_under_a_file": Probe(
        _zip_under_file, lambda case: ["--zip", str(case.tmp / "file.txt"), "is a file, not a folder"], zip_only=True),
    "model_is_a_folder": Probe(
        _models_folder, lambda case: [str(case.model), "is a folder, not a checkpoint file", "small.pth"]),
    "model_missing": Probe(
        lambda case: setattr(case, "model", case.tmp / "absent.pth"), lambda case: [str(case.model), "not found"]),
    "model_config_bad_value": Probe(
        lambda case: _write_checkpoint(case, {**PCVOSConfig.small().to_dict(), "value_dim": "wide"}),
        lambda case: [str(case.model), "model_config", "value_dim 'wide'"]),
    "model_config_unknown_key": Probe(
        lambda case: _write_checkpoint(case, {**PCVOSConfig.small().to_dict(), "heads": 8}),
        lambda case: [str(case.model), "model_config", "unknown keys ['heads']"]),
    "model_config_not_a_mapping": Probe(
        lambda case: _write_checkpoint(case, [1, 2]), lambda case: [str(case.model), "model_config", "[1, 2]"]),
}

CASES = [
    (d, p) for d in LAYOUTS for p, probe in PROBES.items()
    if (LAYOUTS[d].has_zip or not probe.zip_only) and (LAYOUTS[d].scored or not probe.scored_only)
]


@pytest.mark.parametrize(("driver", "probe"), CASES)
def test_bad_input_is_one_line_and_exit_2(driver, probe, pristine, small_model, tmp_path, capsys):
    layout, spec = LAYOUTS[driver], PROBES[probe]
    root = tmp_path / "data"
    shutil.copytree(pristine[driver], root)
    case = Case(root, tmp_path / "out", small_model, layout, ["--size", "-1", *FAST], tmp_path)
    spec.apply(case)
    code = run_cli(layout.main, [*layout.argv(case.root, case.out), "--model", str(case.model), *case.extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line, no traceback
    for text in spec.expect(case):
        assert text in err, f"{text!r} not in {err!r}"
    if case.out.is_dir():
        written = {p.name for p in case.out.rglob("*")}
        assert "v" not in written and ".v.partial" not in written  # no half-written video
        if spec.preflight:
            assert not [p for p in case.out.rglob("*") if p.is_file()]


# --------------------------------------------------------------------------- segment.py, train.py, scripts, checkpoints


def test_segment_py_checks_outputs_and_model_before_segmenting(small_model, tmp_path, capsys):
    data = tmp_path / "data"
    syn.write_generic(data, [syn.VideoSpec("v", _config())])
    (tmp_path / "file.txt").write_text("a file")
    (tmp_path / "overlay.mp4").mkdir()
    base = ["--video", str(data / "JPEGImages" / "v"), "--mask", str(data / "Annotations" / "v" / "00000.png"),
            *FAST]
    probes = [
        (["--output", str(tmp_path / "file.txt" / "m"), "--model", str(small_model)],
         [str(tmp_path / "file.txt"), "is a file, not a folder"]),
        (["--overlay", str(tmp_path / "overlay.mp4"), "--model", str(small_model)],
         ["--overlay", str(tmp_path / "overlay.mp4"), "is a folder"]),
        (["--output", str(tmp_path / "m"), "--model", str(small_model.parent)],
         ["--model", str(small_model.parent), "is a folder, not a checkpoint file", small_model.name]),
    ]
    for extra, expect in probes:
        assert run_cli(segment.main, [*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and all(t in err for t in expect), err
    assert not (tmp_path / "m").exists()


def test_train_py_reports_a_folder_given_as_weights_in_one_line(tmp_path, capsys):
    (tmp_path / "w").mkdir()
    code = run_cli(train.main, ["--stage", "3", "--model-size", "small", "--no-imagenet", "--weights",
                                str(tmp_path / "w"), "--davis-root", str(tmp_path / "x"), "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"train.py: error: {tmp_path / 'w'}: is a folder, not a checkpoint file" in err


def test_scripts_report_bad_flags_in_one_line(capsys):
    from scripts import make_synthetic

    assert run_cli(make_synthetic.main, ["--layout", "generic", "--out", "unused", "--videos", "0"]) == 2
    assert capsys.readouterr().err == "error: --videos 0 --frames 30: both must be >= 1\n"


def test_malformed_model_config_is_a_checkpoint_error_naming_file_and_value(tmp_path):
    state = PCVOS(PCVOSConfig.small()).state_dict()
    good = PCVOSConfig.small().to_dict()
    for config, value in [
        ({**good, "key_backbone": "vgg16"}, "key_backbone 'vgg16'"),
        ({**good, "value_dim": -3}, "value_dim -3"),
        ({**good, "value_dim": True}, "value_dim True"),
        ({**good, "refine": "yes"}, "refine 'yes'"),
        ({**good, "refine_windows": [[2, 7]]}, "refine_windows [[2, 7]]"),
        ({**good, "value_in_channels": 3}, "value_in_channels 3"),
        ({**good, "surprise": 1}, "unknown keys ['surprise']"),
        ("{not json", "not valid JSON"),
        (42, "got int 42"),
    ]:
        path = tmp_path / "m.pth"
        torch.save({"network": state, "model_config": config}, path)
        with pytest.raises(CheckpointError) as error:
            config_from_checkpoint(path)
        assert str(path) in str(error.value) and value in str(error.value), error.value
    for config in [good, json.dumps(good), {}, None]:  # what train.py writes, JSON text, nothing recorded
        torch.save({"network": state, "model_config": config}, path)
        assert config_from_checkpoint(path) == (PCVOSConfig.small() if config else PCVOSConfig())
