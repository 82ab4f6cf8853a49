"""Outputs are safe, complete or absent, and reruns skip finished work (issue #19 items 1, 4, 6).

* names from the data (meta.json, ImageSets, folders, zip entries) never leave the output root;
* AtomicFolder never replaces or deletes anything outside its root, nor a folder of other files;
* a failed mask write, an exception, SIGINT or SIGKILL leave no half-written result;
* a rerun of a benchmark driver skips the complete videos of the same settings and refuses others.

Small generated data and a small random model on the CPU; the subprocess tests (real signals)
are marked slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval_davis
import eval_generic
import eval_youtube
import segment
from dataset import synthetic as syn
from dataset.benchmarks import davis_sequences
from dataset.frames import video_from_folders
from inference.benchmark_run import write_submission_zip
from inference.engine import EngineConfig, PCVOSEngine
from inference.runner import segment_source
from model.network import PCVOS, PCVOSConfig
from util import writer as writer_module
from util.paths import inside, safe_name
from util.writer import STAMP, AtomicFolder, MaskWriter

REPO = Path(__file__).resolve().parents[1]
H, W = 32, 48
FAST = ["--device", "cpu", "--workers", "0"]
ESCAPING = ["..", ".", "", "../escape", "../../escape", "a/b", "a\\b", "/etc", "C:x", "nul\x00byte"]


@pytest.fixture(scope="module")
def model(small_model: Path) -> Path:
    """The small random checkpoint of tests/conftest.py."""
    return small_model


def _snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """relative path -> content digest ('dir' for folders) of everything under root, except under skip."""
    out = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        out[path.relative_to(root).as_posix()] = "dir" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def _error_of(main, argv: list[str], capsys) -> str:
    """Run a driver's main expecting a refusal; return its message (SystemExit, ValueError or exit code 2)."""
    try:
        code = main(argv)
    except SystemExit as error:
        assert error.code not in (0, None)
        return str(error.code)
    except ValueError as error:
        return str(error)
    assert code != 0
    return capsys.readouterr().err


# --------------------------------------------------------------------------- item 1: safe names


@pytest.mark.parametrize("value", ESCAPING)
def test_safe_name_refuses_names_that_are_not_one_plain_part(value):
    with pytest.raises(ValueError) as error:
        safe_name(value, "data/meta.json", "video name")
    message = str(error.value)
    assert message.startswith("data/meta.json: video name ") and repr(value) in message and "rename it" in message


@pytest.mark.parametrize("value", ["blackswan", "a-b_c.d", "00000.png", "..png", "名前", " spaced "])
def test_safe_name_keeps_ordinary_names(value):
    assert safe_name(value, "x") == value


def test_inside_is_strict_and_follows_links(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    assert inside(root, root / "video") and inside(root, root / "a" / ".." / "b")
    assert not inside(root, root) and not inside(root, root / ".." / "escape")
    assert not inside(root, root / "link" / "x")  # resolves outside through the link


def test_atomic_folder_never_touches_a_folder_outside_its_root(tmp_path):
    root = tmp_path / "out" / "Annotations"
    root.mkdir(parents=True)
    sentinel = tmp_path / "out" / "escape"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("precious")
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="outside the output root"):
        AtomicFolder(root / ".." / "escape", root)
    # a link planted inside the root that points at the sentinel is refused too, before and at commit
    (root / "video").symlink_to(sentinel)
    with pytest.raises(ValueError, match="outside the output root"):
        AtomicFolder(root / "video", root)
    (root / "video").unlink()
    folder = AtomicFolder(root / "video", root)
    (folder.tmp / "00000.png").write_bytes(b"x")
    (root / "video").symlink_to(sentinel)
    with pytest.raises(ValueError, match="outside the output root"):
        folder.commit()
    (root / "video").unlink()
    folder.abort()
    assert _snapshot(tmp_path) == before


def test_atomic_folder_refuses_to_replace_a_folder_of_other_files(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "00000.jpg").write_bytes(b"frame")
    folder = AtomicFolder(target, tmp_path)
    (folder.tmp / "00000.png").write_bytes(b"mask")
    with pytest.raises(ValueError, match="'00000.jpg', which this program does not write"):
        folder.commit()
    assert (target / "00000.jpg").read_bytes() == b"frame" and not (target / "00000.png").exists()
    folder.abort()
    assert not folder.tmp.exists()
    # a folder of masks (an earlier result) is replaced as a whole
    (target / "00000.jpg").unlink()
    (target / "00007.png").write_bytes(b"old")
    folder = AtomicFolder(target, tmp_path)
    (folder.tmp / "00000.png").write_bytes(b"new")
    folder.commit()
    assert sorted(p.name for p in target.iterdir()) == ["00000.png"] and not folder.tmp.exists()


def test_write_submission_zip_refuses_escaping_entries(tmp_path):
    masks = tmp_path / "out" / "Annotations"
    (masks / "ok").mkdir(parents=True)
    (masks / "ok" / "00000.png").write_bytes(b"png")
    (tmp_path / "out" / "x").mkdir()
    (tmp_path / "out" / "x" / "00000.png").write_bytes(b"png")
    target = tmp_path / "sub.zip"
    for video in ("../x", "..", "/abs"):
        with pytest.raises(ValueError, match="video name"):
            write_submission_zip(masks, ["ok", video], target)
        assert not target.exists() and not list(tmp_path.glob(".sub.zip*"))
    (tmp_path / ".sub.zip.999999999.partial").write_bytes(b"left by a killed run")  # no such process
    (tmp_path / ".other.zip.999999999.partial").write_bytes(b"not ours")
    write_submission_zip(masks, ["ok"], target)
    assert sorted(p.name for p in tmp_path.glob(".*")) == [".other.zip.999999999.partial"]
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist() == ["Annotations/", "Annotations/ok/", "Annotations/ok/00000.png"]


def test_davis_imagesets_name_that_escapes_is_refused_naming_the_list(tmp_path):
    config = syn.SyntheticConfig(num_frames=3, height=H, width=W, num_objects=1)
    syn.write_davis(tmp_path / "trainval", [syn.VideoSpec("dv", config)])
    listing = tmp_path / "trainval" / "ImageSets" / "2017" / "val.txt"
    listing.write_text("dv\n..\n")
    with pytest.raises(ValueError) as error:
        davis_sequences(tmp_path / "trainval", "2017", "val")
    assert str(error.value).startswith(f"{listing}: sequence name '..'")


def _escaping_youtube(tmp_path: Path) -> Path:
    """A YouTube-VOS layout whose meta.json names videos '../../escape' and '../escape', with frames
    and annotations planted where those names lead, so that nothing but the name check stops them."""
    root = tmp_path / "yt"
    config = syn.SyntheticConfig(num_frames=6, height=H, width=W, num_objects=1)
    syn.write_youtube(root, [syn.VideoSpec("aa", config), syn.VideoSpec("bb", config)])
    frames, sparse, annotations = (root / "all_frames" / "valid_all_frames" / "JPEGImages",
                                   root / "valid" / "JPEGImages", root / "valid" / "Annotations")
    # frames and annotations are moved to where the escaping names lead from all_frames/ and Annotations/
    renames = {"aa": "../../escape", "bb": "../escape"}
    for old, new in renames.items():
        for base in (frames, annotations):
            target = Path(os.path.normpath(base / new))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(base / old, target)
        shutil.rmtree(sparse / old)
    meta_path = root / "valid" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["videos"] = {renames[k]: v for k, v in meta["videos"].items()}
    meta_path.write_text(json.dumps(meta))
    return root


def test_eval_youtube_refuses_escaping_video_names_and_leaves_everything_intact(model, tmp_path, capsys):
    data = _escaping_youtube(tmp_path)
    out = tmp_path / "res" / "yv"  # masks would go to res/yv/Annotations/<video>/
    out.mkdir(parents=True)
    sentinel = tmp_path / "res" / "escape"  # where Annotations/../../escape points
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("precious")
    before = _snapshot(tmp_path, skip=out)
    message = _error_of(eval_youtube.main, ["--yv-path", str(data), "--output", str(out), "--model", str(model),
                                            "--size", "-1", *FAST], capsys)
    assert "meta.json: video name '../" in message and "escape'" in message and "rename it" in message
    assert (sentinel / "keep.txt").read_text() == "precious"
    assert _snapshot(tmp_path, skip=out) == before  # nothing created, changed or deleted outside --output
    assert not list(out.rglob("*.png"))
    for archive in tmp_path.rglob("*.zip"):  # no zip at all here; and none may ever hold an escaping entry
        with zipfile.ZipFile(archive) as handle:
            assert not [n for n in handle.namelist() if ".." in n.split("/") or n.startswith("/")]
    assert not list(tmp_path.rglob("*.zip"))


# --------------------------------------------------------------------------- item 4: complete or absent


def test_mask_writer_flush_raises_a_failed_write_and_binary_writes_0_255(tmp_path):
    writer = MaskWriter()
    writer.submit(tmp_path / "missing-folder" / "00000.png", np.ones((2, 3), np.uint8))
    with pytest.raises(FileNotFoundError):
        writer.flush()
    with pytest.raises(FileNotFoundError):  # nothing more is accepted after a failure
        writer.submit(tmp_path / "00001.png", np.ones((2, 3), np.uint8))
    writer.close()  # already reported: not raised twice
    assert not (tmp_path / "00001.png").exists()

    with MaskWriter(binary=True) as binary:
        binary.submit(tmp_path / "b.png", np.array([[0, 3], [7, 0]], np.uint8))
        binary.flush()
        image = Image.open(tmp_path / "b.png")
        assert image.mode == "L" and np.array(image).tolist() == [[0, 255], [255, 0]]
    with MaskWriter() as palette:
        palette.submit(tmp_path / "p.png", np.array([[0, 3]], np.uint8))
    image = Image.open(tmp_path / "p.png")
    assert image.mode == "P" and np.array(image).tolist() == [[0, 3]]
    assert not list(tmp_path.glob(".*"))  # no temporaries left


def test_segment_source_commits_nothing_when_a_mask_write_fails(tmp_path, monkeypatch):
    data = tmp_path / "data"
    config = syn.SyntheticConfig(num_frames=4, height=H, width=W, num_objects=1, seed=5)
    syn.write_generic(data, [syn.VideoSpec("v", config)])
    source = video_from_folders("v", data / "JPEGImages" / "v", data / "Annotations" / "v")
    real = writer_module.write_mask_png

    def failing(path, mask, palette=None, binary=False):
        if Path(path).name == "00002.png":
            raise OSError(28, "No space left on device", str(path))
        real(path, mask, palette, binary)

    monkeypatch.setattr(writer_module, "write_mask_png", failing)
    torch.manual_seed(0)
    engine = PCVOSEngine(PCVOS(PCVOSConfig.small()).eval(), EngineConfig(clip_length=2))
    out = tmp_path / "out"
    out.mkdir()
    with MaskWriter() as writer, pytest.raises(OSError, match="No space left"):
        segment_source(engine, source, -1, out, writer, workers=0)
    assert list(out.iterdir()) == []  # neither a folder with PNGs missing nor a temporary


def _long_clip(root: Path, frames: int) -> tuple[Path, Path]:
    config = syn.SyntheticConfig(num_frames=frames, height=H, width=W, num_objects=1, seed=3)
    video = syn.generate_video(config, "clip")
    root.mkdir(parents=True, exist_ok=True)
    syn.write_mp4(root / "clip.mp4", video.frames)
    syn.write_first_mask(root / "first.png", video.masks[0])
    return root / "clip.mp4", root / "first.png"


def _interrupt(argv: list[str], watch: Path, sig: int) -> subprocess.CompletedProcess:
    """Start a driver, wait until a mask PNG appears anywhere under ``watch`` (mid-run), then send ``sig``."""
    process = subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=_sigint_as_in_a_terminal)
    deadline = time.monotonic() + 240
    try:
        while not any(watch.rglob("*.png")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never started writing masks"
            time.sleep(0.05)
        process.send_signal(sig)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def _sigint_as_in_a_terminal() -> None:
    """In the child: SIGINT at its default. Under a shell's background job (``nohup ... &``) pytest starts with
    SIGINT ignored, its children inherit that, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_segment_interrupted_leaves_no_partial_masks_or_overlay(tmp_path, sig):
    work = tmp_path / "work"
    work.mkdir()

    def argv(clip: Path, mask: Path, size: str) -> list[str]:
        return [str(REPO / "segment.py"), "--video", str(clip), "--mask", str(mask), "--output", str(work / "masks"),
                "--overlay", str(work / "ov.mp4"), "--model", "recipe", "--size", size, *FAST]

    run = _interrupt(argv(*_long_clip(tmp_path / "long", 200), "96"), work, sig)
    assert run.returncode != 0
    assert _visible(work) == []  # no masks folder, no overlay: nothing that looks like a result
    leftovers = sorted(p.name for p in work.iterdir())
    if sig == signal.SIGINT:
        assert leftovers == []  # cleaned up on the way out
    else:
        assert ".masks.partial" in leftovers  # killed: only our temporaries remain ...
        assert set(leftovers) <= {".masks.partial", ".ov.partial.mp4"}
    # ... and the next run into the same place removes them
    assert segment.main(argv(*_long_clip(tmp_path / "short", 3), "-1")[1:]) == 0
    assert sorted(p.name for p in work.iterdir()) == ["masks", "ov.mp4"]
    assert _visible(work / "masks") == ["00000.png", "00001.png", "00002.png"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_eval_generic_interrupted_leaves_no_partial_video_folder(tmp_path, sig):
    long_config = syn.SyntheticConfig(num_frames=200, height=H, width=W, num_objects=1, seed=6)
    syn.write_generic(tmp_path / "long", [syn.VideoSpec("v", long_config)])
    out = tmp_path / "out"
    argv = [str(REPO / "eval_generic.py"), "--data", str(tmp_path / "long"), "--output", str(out),
            "--model", "recipe", "--size", "96", *FAST]
    out.mkdir()
    run = _interrupt(argv, out, sig)
    assert run.returncode != 0
    assert _visible(out) == []  # no video folder that would look finished (or be skipped by a rerun)
    if sig == signal.SIGINT:
        assert list(out.iterdir()) == []
    short = syn.SyntheticConfig(num_frames=3, height=H, width=W, num_objects=1, seed=6)
    syn.write_generic(tmp_path / "short", [syn.VideoSpec("v", short)])
    assert eval_generic.main([argv[1], str(tmp_path / "short"), *argv[3:7], "--size", "-1", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["v"]  # the leftover temporary is gone
    assert _visible(out / "v") == ["00000.png", "00001.png", "00002.png"]


# --------------------------------------------------------------------------- item 6: reruns skip finished work


def _pngs(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (inode, mtime_ns) of every mask PNG: changes when a mask is rewritten."""
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*.png")}


@pytest.mark.slow
def test_eval_davis_rerun_skips_complete_videos_and_refuses_other_settings(model, tmp_path, capsys):
    config = syn.SyntheticConfig(num_frames=4, height=H, width=W, num_objects=2, num_distractors=0)
    davis = tmp_path / "trainval"
    syn.write_davis(davis, syn.make_split("dv", 2, config, seed=1, allow_late=False))
    out = tmp_path / "d17"
    argv = ["--davis-path", str(davis), "--output", str(out), "--model", str(model), "-L", "2", *FAST]
    assert eval_davis.main(argv) == 0
    first = capsys.readouterr().out
    scores = (out / "global_results-val.csv").read_text()
    masks = _pngs(out)
    assert len(masks) == 8 and "2 videos, 8 frames" in first
    stamp = json.loads((out / "dv_000" / STAMP).read_text())
    assert stamp["settings"]["clip_length"] == 2 and stamp["settings"]["model"].startswith("sha256:")

    # same settings: nothing recomputed, same scores
    assert eval_davis.main(argv) == 0
    text = capsys.readouterr().out
    assert "2 of 2 videos already complete" in text and "0 videos, 0 frames" in text
    assert _pngs(out) == masks
    assert (out / "global_results-val.csv").read_text() == scores

    # one video missing (as after a killed run): only it is computed, the scores cover both
    shutil.rmtree(out / "dv_001")
    (out / "global_results-val.csv").unlink()
    assert eval_davis.main(argv) == 0
    text = capsys.readouterr().out
    assert "1 of 2 videos already complete" in text and "1 videos, 4 frames" in text
    assert {k: v for k, v in _pngs(out).items() if k.startswith("dv_000")} == {
        k: v for k, v in masks.items() if k.startswith("dv_000")}
    assert (out / "global_results-val.csv").read_text() == scores
    masks = _pngs(out)

    # other settings: refused before any work, naming what differs and what to do
    message = _error_of(eval_davis.main, [*argv[:-len(FAST) - 2], "-L", "3", *FAST], capsys)
    assert f"{out}: 2 video folder(s) here were made with other settings" in message
    assert "clip_length was 2, now 3" in message and "--overwrite" in message
    assert _pngs(out) == masks

    # --overwrite recomputes every video
    assert eval_davis.main([*argv, "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert "already complete" not in text and "2 videos, 8 frames" in text
    rewritten = _pngs(out)
    assert rewritten.keys() == masks.keys() and all(rewritten[k] != masks[k] for k in masks)
    assert (out / "global_results-val.csv").read_text() == scores  # same settings, same masks


def test_rerun_refuses_result_folders_without_a_settings_record(model, tmp_path, capsys):
    config = syn.SyntheticConfig(num_frames=3, height=H, width=W, num_objects=1)
    davis = tmp_path / "trainval"
    syn.write_davis(davis, [syn.VideoSpec("dv", config)])
    out = tmp_path / "old"
    (out / "dv").mkdir(parents=True)
    for t in range(3):  # a result of an earlier version: masks, no record
        Image.fromarray(np.zeros((H, W), np.uint8)).save(out / "dv" / f"{t:05d}.png")
    argv = ["--davis-path", str(davis), "--output", str(out), "--model", str(model), "--no-score", *FAST]
    message = _error_of(eval_davis.main, argv, capsys)
    assert "'dv': it has no settings record" in message and "--overwrite" in message
    assert eval_davis.main([*argv, "--overwrite"]) == 0
    assert (out / "dv" / STAMP).is_file() and len(list((out / "dv").glob("*.png"))) == 3


def test_outputs_never_replace_input_files(model, tmp_path, capsys):
    """segment.py into the folder holding its mask keeps the mask (twice); eval_generic refuses to replace
    the data's own annotation folder even with --overwrite."""
    config = syn.SyntheticConfig(num_frames=3, height=H, width=W, num_objects=1, seed=8)
    syn.write_generic(tmp_path / "data", [syn.VideoSpec("v", config)])
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(tmp_path / "data" / "Annotations" / "v" / "00000.png", out / "first.png")
    argv = ["--video", str(tmp_path / "data" / "JPEGImages" / "v"), "--mask", str(out / "first.png"),
            "--output", str(out), "--model", str(model), "--size", "-1", *FAST]
    for _ in range(2):
        assert segment.main(argv) == 0
        assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png", "first.png"]

    annotations = tmp_path / "data" / "Annotations"
    before = _snapshot(tmp_path / "data")
    message = _error_of(eval_generic.main, ["--data", str(tmp_path / "data"), "--output", str(annotations),
                                            "--model", str(model), "--overwrite", *FAST], capsys)
    assert "it is the video's frame or annotation folder" in message
    assert _snapshot(tmp_path / "data") == before
