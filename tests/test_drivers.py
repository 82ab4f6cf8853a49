"""End-to-end tests of the drivers (eval_davis, eval_youtube, inference_pretrained_pcvos, segment)
on generated DAVIS / YouTube-VOS layouts and mp4 files, with a small random model on the CPU.

Each driver runs in-process through ``main(argv)``; the data are a couple of 64x112 videos
of at most 12 frames, so the whole file takes well under a minute on two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import eval_davis
import eval_youtube
import inference_pretrained_pcvos
import segment
from dataset import synthetic as syn
from dataset.benchmarks import parse_mask_arg
from dataset.masks import MaskReader
from inference.engine import EngineConfig, PCVOSEngine, prepare_network
from inference.runner import segment_stream
from model.network import PCVOS, PCVOSConfig
from util import davis_metrics as dm
from util.errors import run_cli
from util.pictures import BACKGROUND, GRID, overlay
from util.sharding import Shard, env_shard, parse_shard, resolve_shard, shard_device
from util.video_io import VideoReader

H, W = 64, 112
REPO = Path(__file__).resolve().parents[1]
FAST = ["--device", "cpu", "--workers", "0"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model(small_model: Path) -> Path:
    """The small random checkpoint of tests/conftest.py."""
    return small_model


def _davis_videos(frames: int = 6) -> list[syn.VideoSpec]:
    config = syn.SyntheticConfig(num_frames=frames, height=H, width=W, num_objects=2, num_distractors=1)
    return syn.make_split("dv", 2, config, seed=1, allow_late=False)


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("davis") / "trainval"
    syn.write_davis(root, _davis_videos())
    return root


@pytest.fixture(scope="module")
def youtube(tmp_path_factory) -> Path:
    """Two 12-frame videos, each with an object that first appears at frame 5, non-contiguous ids."""
    root = tmp_path_factory.mktemp("youtube")
    config = syn.SyntheticConfig(num_frames=12, height=H, width=W, num_objects=2, late_objects=1, num_distractors=1)
    syn.write_youtube(root, syn.make_split("yv", 2, config, seed=2), ground_truth=True)
    return root


def _files(root: Path) -> set[str]:
    """Result files under root; hidden bookkeeping (settings records, temporaries) is checked elsewhere."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _meta(youtube: Path) -> dict:
    return json.loads((youtube / "valid" / "meta.json").read_text())["videos"]


def _pixels(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


# --------------------------------------------------------------------------- DAVIS


def test_eval_davis_2017_val_writes_every_frame_and_the_scores(model, davis, tmp_path, capsys):
    out = tmp_path / "d17"
    assert eval_davis.main(["--davis-path", str(davis), "--output", str(out), "--model", str(model), *FAST]) == 0
    names = [f"{t:05d}.png" for t in range(6)]
    expected = {f"{v}/{n}" for v in ("dv_000", "dv_001") for n in names}
    expected |= {"global_results-val.csv", "per-sequence_results-val.csv"}
    assert _files(out) == expected
    for video in ("dv_000", "dv_001"):
        gt0 = _pixels(davis / "Annotations" / "480p" / video / "00000.png")
        for name in names:
            image = Image.open(out / video / name)
            assert image.mode == "P" and image.size == (W, H)
            assert set(np.unique(np.array(image))) <= set(np.unique(gt0))
        np.testing.assert_array_equal(_pixels(out / video / "00000.png"), gt0)  # given mask is written back

    # the CSVs hold what the scoring library computes for these masks
    evaluation = dm.evaluate(davis, out, ["dv_000", "dv_001"], workers=1)
    row = evaluation.global_row()
    lines = (out / "global_results-val.csv").read_text().splitlines()
    assert lines[0] == ",".join(dm.GLOBAL_COLUMNS)
    assert lines[1] == ",".join(f"{row[c]:.3f}" for c in dm.GLOBAL_COLUMNS)
    per_seq = (out / "per-sequence_results-val.csv").read_text().splitlines()
    assert len(per_seq) == 1 + len(evaluation.object_stats())
    text = capsys.readouterr().out
    assert f"J&F-Mean {row['J&F-Mean']:.3f}" in text
    assert "2 videos, 12 frames in" in text.splitlines()[-1] and "FPS engine" in text.splitlines()[-1]


def test_eval_davis_overlay_draws_one_video_per_sequence_beside_the_masks(model, davis, tmp_path, capsys):
    out = tmp_path / "d17"
    argv = ["--davis-path", str(davis), "--output", str(out), "--model", str(model), "--no-score", "--overlay", *FAST]
    assert eval_davis.main(argv) == 0
    masks = {f"{v}/{t:05d}.png" for v in ("dv_000", "dv_001") for t in range(6)}
    assert _files(out) == masks | {"overlays/dv_000.mp4", "overlays/dv_001.mp4"}
    assert not [p for p in (out / "overlays").iterdir() if p.name.startswith(".")]  # no temporaries left
    frames = list(VideoReader(out / "overlays" / "dv_000.mp4"))
    assert len(frames) == 6 and frames[0].shape == (H, W, 3)
    rgb = np.array(Image.open(davis / "JPEGImages" / "480p" / "dv_000" / "00000.jpg").convert("RGB"))
    drawn = overlay(rgb, _pixels(out / "dv_000" / "00000.png"))
    assert np.abs(frames[0].astype(int) - drawn).mean() < 8  # the renderer's picture, through mp4 compression
    assert f"overlays: 2 videos in {out / 'overlays'}" in capsys.readouterr().out


def test_eval_davis_2016_writes_grey_0_255_single_object(model, tmp_path):
    root = tmp_path / "2016"
    syn.write_davis2016(root, _davis_videos(5)[:1])
    out = tmp_path / "d16"
    argv = ["--year", "2016", "--davis-path", str(root), "--output", str(out), "--model", str(model), *FAST]
    assert eval_davis.main(argv) == 0
    assert _files(out) == {f"dv_000/{t:05d}.png" for t in range(5)} | {
        "global_results-val.csv", "per-sequence_results-val.csv"}
    for t in range(5):
        image = Image.open(out / "dv_000" / f"{t:05d}.png")
        assert image.mode == "L" and image.size == (W, H)
        assert set(np.unique(np.array(image))) <= {0, 255}
    gt0 = _pixels(root / "Annotations" / "480p" / "dv_000" / "00000.png")
    np.testing.assert_array_equal(_pixels(out / "dv_000" / "00000.png"), gt0)
    per_seq = (out / "per-sequence_results-val.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in per_seq[1:]] == ["dv_000_1"]  # one object per sequence


def test_eval_davis_test_dev_is_not_scored_and_shards_cover_every_video_once(model, tmp_path, capsys):
    parent = tmp_path / "DAVIS2017"
    syn.write_davis(parent / "test-dev", _davis_videos(4), split="test-dev")
    out = tmp_path / "td"
    base = ["--split", "test-dev", "--davis-path", str(parent), "--output", str(out), "--model", str(model), *FAST]
    assert eval_davis.main([*base, "--shard", "0/2"]) == 0
    assert _files(out) == {f"dv_000/{t:05d}.png" for t in range(4)}
    assert "shard 0/2" in capsys.readouterr().out
    assert eval_davis.main([*base, "--shard", "1/2"]) == 0
    assert _files(out) == {f"{v}/{t:05d}.png" for v in ("dv_000", "dv_001") for t in range(4)}  # no CSVs


def test_eval_davis_scores_the_complete_sequences_and_reports_incomplete_gt(model, tmp_path, capsys):
    """A GT folder missing frames used to leave the whole run unscored without a word."""
    root = tmp_path / "trainval"
    syn.write_davis(root, syn.make_split("dv", 3, syn.SyntheticConfig(
        num_frames=5, height=H, width=W, num_objects=1, num_distractors=0), seed=1, allow_late=False))
    (root / "Annotations" / "480p" / "dv_001" / "00003.png").unlink()
    out = tmp_path / "d17"
    assert eval_davis.main(["--davis-path", str(root), "--output", str(out), "--model", str(model), *FAST]) == 0
    text = capsys.readouterr().out
    assert "EXCLUDED dv_001: incomplete ground truth" in text and "(00003.png)" in text
    headline = next(line for line in text.splitlines() if line.startswith("davis2017-val: J&F-Mean"))
    assert "over 2 of 3 sequences" in headline
    rows = (out / "per-sequence_results-val.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["dv_000_1", "dv_002_1"]
    assert len(list((out / "dv_001").glob("*.png"))) == 5  # still segmented, only not scored


# --------------------------------------------------------------------------- YouTube-VOS


def test_eval_youtube_writes_meta_frames_at_annotation_size_and_zip(model, youtube, tmp_path, capsys):
    out = tmp_path / "yv"
    argv = ["--yv-path", str(youtube), "--output", str(out), "--model", str(model), "--size", "48", *FAST]
    assert eval_youtube.main(argv) == 0
    meta = _meta(youtube)
    expected = {
        f"Annotations/{video}/{frame}.png"
        for video, entry in meta.items()
        for obj in entry["objects"].values()
        for frame in obj["frames"]
    }
    assert _files(out) == expected
    assert len(expected) == 6  # every 5th frame of 12: 00000, 00005, 00010 per video
    for video, entry in meta.items():
        ids = {int(k) for k in entry["objects"]}
        late = {int(k) for k, obj in entry["objects"].items() if obj["frames"][0] != "00000"}
        assert late and max(ids) > len(ids)  # a late object, and non-contiguous ids: the fixture is doing its job
        for name in ("00000", "00005", "00010"):
            image = Image.open(out / "Annotations" / video / f"{name}.png")
            assert image.mode == "P" and image.size == (W, H)  # original annotation size, not 48p
            present = set(np.unique(np.array(image))) - {0}
            assert present <= ids
            if name == "00000":
                assert not present & late  # absent before its first appearance
        # at the frame where the late object appears, its given mask is written back (up to the
        # 64 -> 48 -> 64 resampling of its border)
        given = _pixels(youtube / "valid" / "Annotations" / video / "00005.png")
        written = _pixels(out / "Annotations" / video / "00005.png")
        for obj in late:
            assert (written[given == obj] == obj).mean() > 0.8
    archive = out.with_name("yv.zip")
    with zipfile.ZipFile(archive) as handle:
        entries = [n for n in handle.namelist() if not n.endswith("/")]
        assert {n.split("/")[0] for n in handle.namelist()} == {"Annotations"}
    assert set(entries) == expected
    assert "2 videos, 24 frames in" in capsys.readouterr().out  # predict-all: every frame segmented


def test_eval_youtube_output_all_required_only_and_shards(model, youtube, tmp_path, capsys):
    common = ["--yv-path", str(youtube), "--model", str(model), "--size", "64", *FAST]
    out = tmp_path / "all"
    assert eval_youtube.main([*common, "--output", str(out), "--output-all", "--no-zip"]) == 0
    assert _files(out) == {f"Annotations/{v}/{t:05d}.png" for v in ("yv_000", "yv_001") for t in range(12)}
    assert not out.with_name("all.zip").exists()

    out = tmp_path / "req"
    assert eval_youtube.main([*common, "--output", str(out), "--required-only", "--zip", str(tmp_path / "s.zip")]) == 0
    assert len(_files(out)) == 6
    assert "2 videos, 6 frames in" in capsys.readouterr().out  # only the meta.json frames were segmented
    for video in ("yv_000", "yv_001"):  # working size = original: the given late mask comes back exactly
        given = _pixels(youtube / "valid" / "Annotations" / video / "00005.png")
        written = _pixels(out / "Annotations" / video / "00005.png")
        np.testing.assert_array_equal(written[given > 0], given[given > 0])
    assert (tmp_path / "s.zip").is_file()

    out = tmp_path / "sharded"
    sharded = [*common, "--output", str(out), "--required-only"]
    assert eval_youtube.main([*sharded, "--shard", "1/2"]) == 0
    assert {p.split("/")[1] for p in _files(out)} == {"yv_001"}
    assert not out.with_name("sharded.zip").exists()  # not complete yet
    assert eval_youtube.main([*sharded, "--shard", "0/2"]) == 0
    assert {p.split("/")[1] for p in _files(out)} == {"yv_000", "yv_001"}
    with zipfile.ZipFile(out.with_name("sharded.zip")) as handle:
        assert len([n for n in handle.namelist() if n.endswith(".png")]) == 6


# --------------------------------------------------------------------------- sweep


def test_sweep_reuses_one_network_and_writes_one_row_per_clip_length(model, davis, youtube, tmp_path, monkeypatch):
    loads = []
    real_load = inference_pretrained_pcvos.load_network_and_settings
    monkeypatch.setattr(
        inference_pretrained_pcvos, "load_network_and_settings", lambda *a: loads.append(a) or real_load(*a)
    )
    out = tmp_path / "sweep"
    argv = [
        "--model", str(model), "--clip-lengths", "2", "3", "--benchmarks", "davis2017", "youtube2019",
        "--davis-path", str(davis), "--yv-path", str(youtube), "--size", "64", "--output", str(out), "--overlay",
        *FAST,
    ]
    assert inference_pretrained_pcvos.main(argv) == 0
    assert len(loads) == 1
    report = json.loads((out / "sweep.json").read_text())
    rows = report["rows"]
    assert [(r["L"], r["benchmark"]) for r in rows] == [(2, "davis2017"), (2, "youtube2019"),
                                                        (3, "davis2017"), (3, "youtube2019")]
    for r in rows:
        assert r["frames"] == (12 if r["benchmark"] == "davis2017" else 24)
        assert r["fps_engine"] > 0 and r["fps_end_to_end"] > 0 and r["peak_rss_mib"] > 100
        assert (r["J&F"] is None) == (r["benchmark"] == "youtube2019")
        assert (out / f"L{r['L']}" / r["benchmark"]).is_dir()
    davis_rows = [r for r in rows if r["benchmark"] == "davis2017"]
    for r in davis_rows:
        csv = (out / f"L{r['L']}" / "davis2017" / "global_results-val.csv").read_text().splitlines()[1]
        assert csv.split(",")[0] == f"{r['J&F']:.3f}"
    assert (out / "L3" / "youtube2019.zip").is_file()
    table = (out / "sweep.md").read_text().splitlines()
    assert len(table) == 2 + len(rows) and table[0].startswith("| L | benchmark")
    # the speed-accuracy curve: J&F against engine FPS, a marker at every scored L
    picture = np.array(Image.open(out / "sweep.png").convert("RGB"))
    chart = inference_pretrained_pcvos.sweep_chart(rows)
    chart.render()
    assert picture.shape == (chart.height, chart.width, 3)
    for r in davis_rows:
        col, row = chart.pixel(r["fps_engine"], 100 * r["J&F"])
        assert tuple(picture[row, col]) not in (BACKGROUND, GRID), r
    assert [s.label for s in chart.series] == ["davis2017"] and chart.series[0].point_labels == ["L=2", "L=3"]
    # --overlay: every run's videos, beside its masks (YouTube-VOS: beside Annotations/)
    for length in (2, 3):
        assert sorted(p.name for p in (out / f"L{length}" / "davis2017" / "overlays").iterdir()) == [
            "dv_000.mp4", "dv_001.mp4"]
        assert len(list((out / f"L{length}" / "youtube2019" / "overlays").glob("*.mp4"))) == 2


# --------------------------------------------------------------------------- segment.py


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, syn.SyntheticVideo]:
    """An 8-frame mp4 whose object 2 first appears at frame 5."""
    root = tmp_path_factory.mktemp("clip")
    config = syn.SyntheticConfig(num_frames=8, height=H, width=W, num_objects=2, late_objects=1, seed=4)
    video = syn.generate_video(config, "clip")
    assert video.first_frame == {1: 0, 2: 5}
    syn.write_mp4(root / "clip.mp4", video.frames)
    return root, video


def test_segment_mp4_with_palette_and_late_rgb_mask_and_overlay(model, clip, tmp_path):
    root, video = clip
    syn.write_first_mask(root / "first.png", video.masks[0])
    colour = np.zeros((H, W, 3), np.uint8)
    colour[video.masks[5] == 2] = (10, 200, 50)
    Image.fromarray(colour).save(root / "late.png")
    out, overlay = tmp_path / "masks", tmp_path / "over.mp4"
    argv = ["--video", str(root / "clip.mp4"), "--mask", str(root / "first.png"), "--mask", f"5:{root / 'late.png'}",
            "--output", str(out), "--overlay", str(overlay), "--model", str(model), "--size", "-1", *FAST]
    assert segment.main(argv) == 0
    assert _files(out) == {f"{t:05d}.png" for t in range(8)}
    for t in range(8):
        image = Image.open(out / f"{t:05d}.png")
        assert image.mode == "P" and image.size == (W, H)
        ids = set(np.unique(np.array(image)))
        assert ids <= {0, 1, 2} and (t >= 5 or 2 not in ids)
    np.testing.assert_array_equal(_pixels(out / "00000.png"), video.masks[0])
    assert (_pixels(out / "00005.png")[video.masks[5] == 2] == 2).all()  # the RGB colour became object 2
    assert Image.open(out / "00005.png").getpalette()[6:9] == [10, 200, 50]  # ... and keeps its colour
    capture = cv2.VideoCapture(str(overlay))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 8 and (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (W, H)
    capture.release()


def test_segment_frame_folder_with_binary_mask_starting_later(model, tmp_path):
    data = tmp_path / "generic"
    config = syn.SyntheticConfig(num_frames=6, height=H, width=W, num_objects=1, seed=9)
    syn.write_generic(data, [syn.VideoSpec("v", config)])
    frames = data / "JPEGImages" / "v"
    mask = np.where(syn.generate_video(config).masks[2] > 0, 255, 0).astype(np.uint8)
    Image.fromarray(mask).save(tmp_path / "m.png")  # greyscale 0/255
    out = tmp_path / "out"
    argv = ["--video", str(frames), "--mask", f"2:{tmp_path / 'm.png'}", "--output", str(out),
            "--model", str(model), "--size", "-1", "--direction", "forward", *FAST]
    assert segment.main(argv) == 0
    assert _files(out) == {f"{t:05d}.png" for t in range(2, 6)}  # forward: nothing before the first mask
    np.testing.assert_array_equal(_pixels(out / "00002.png"), (mask > 0).astype(np.uint8))


def _reversed_folder(frames: Path, last: int, target: Path) -> Path:
    """Frames ``last``, ``last - 1``, ..., 0 of a frame folder, copied byte for byte as 00000.jpg, 00001.jpg, ..."""
    target.mkdir(parents=True)
    files = sorted(frames.glob("*.jpg"))
    for position, index in enumerate(range(last, -1, -1)):
        (target / f"{position:05d}.jpg").write_bytes(files[index].read_bytes())
    return target


@pytest.fixture(scope="module")
def middle(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """A 9-frame folder with two objects, and the palette mask of its frame 4."""
    root = tmp_path_factory.mktemp("middle")
    config = syn.SyntheticConfig(num_frames=9, height=H, width=W, num_objects=2, num_distractors=1, seed=5)
    syn.write_generic(root / "data", [syn.VideoSpec("v", config)])
    masks = syn.generate_video(config).masks
    syn.write_first_mask(root / "m4.png", masks[4])
    return root / "data" / "JPEGImages" / "v", root / "m4.png", masks


def _png_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_segment_both_directions_before_a_middle_mask_equal_a_forward_run_on_the_reversed_video(
    model, middle, tmp_path, capsys
):
    frames, mask, _ = middle
    m, common = 4, ["--model", str(model), "--size", "-1", "-L", "3", *FAST]
    assert segment.main(["--video", str(frames), "--mask", f"{m}:{mask}", "--output", str(tmp_path / "both"),
                         *common]) == 0  # the default direction: both
    out = capsys.readouterr().out
    assert "masks: 9 PNGs" in out
    assert ": 1 video, 9 frames in " in out  # frame m starts both runs: counted once
    assert segment.main(["--video", str(frames), "--mask", f"{m}:{mask}", "--output", str(tmp_path / "fwd"),
                         "--direction", "forward", *common]) == 0
    reverse = _reversed_folder(frames, m, tmp_path / "reversed")
    assert segment.main(["--video", str(reverse), "--mask", str(mask), "--output", str(tmp_path / "rev"),
                         "--direction", "forward", *common]) == 0
    both, fwd, rev = (_png_bytes(tmp_path / name) for name in ("both", "fwd", "rev"))
    assert sorted(both) == [f"{t:05d}.png" for t in range(9)]
    assert sorted(fwd) == [f"{t:05d}.png" for t in range(m, 9)] and sorted(rev) == [f"{t:05d}.png" for t in range(5)]
    for t in range(m):  # before the mask: the time-reversed forward run, byte for byte
        assert both[f"{t:05d}.png"] == rev[f"{m - t:05d}.png"], t
    for t in range(m, 9):  # from the mask on: the forward run, byte for byte
        assert both[f"{t:05d}.png"] == fwd[f"{t:05d}.png"], t
    assert len({both[f"{t:05d}.png"] for t in range(m)}) > 1  # really segmented, not one mask copied
    assert set(np.unique(_pixels(tmp_path / "both" / "00000.png"))) <= {0, 1, 2}


def test_segment_both_keeps_the_forward_bytes_for_a_mask_at_frame_0(model, middle, tmp_path):
    frames, _, masks = middle
    syn.write_first_mask(tmp_path / "m0.png", masks[0])
    runs = {}
    for direction in ("both", "forward"):
        out = tmp_path / direction
        assert segment.main(["--video", str(frames), "--mask", str(tmp_path / "m0.png"), "--output", str(out),
                             "--direction", direction, "--model", str(model), "--size", "-1", *FAST]) == 0
        runs[direction] = _png_bytes(out)
    assert len(runs["both"]) == 9 and runs["both"] == runs["forward"]


def test_segment_backward_from_the_last_mask_on_a_video_file_equals_the_predictor(model, clip, tmp_path):
    """--direction backward on an mp4: frames 0..5 (the last mask) only, with both masks, the masks of
    Predictor.propagate('backward'); the overlay still shows all 8 frames."""
    from inference.predictor import Predictor

    root, video = clip
    syn.write_first_mask(root / "m2.png", np.where(video.masks[2] == 1, 1, 0).astype(np.uint8))
    syn.write_first_mask(root / "m5.png", np.where(video.masks[5] == 2, 2, 0).astype(np.uint8))
    out, over = tmp_path / "masks", tmp_path / "over.mp4"
    assert segment.main(["--video", str(root / "clip.mp4"), "--mask", f"2:{root / 'm2.png'}",
                         "--mask", f"5:{root / 'm5.png'}", "--direction", "backward", "--output", str(out),
                         "--overlay", str(over), "--model", str(model), "--size", "-1", "-L", "2", *FAST]) == 0
    assert _files(out) == {f"{t:05d}.png" for t in range(6)}
    predictor = Predictor.from_checkpoint(model, "cpu", EngineConfig(clip_length=2), size=-1)
    predictor.open(root / "clip.mp4")
    for t, name in ((2, "m2.png"), (5, "m5.png")):
        predictor.add_mask(t, _pixels(root / name))
    expected = dict(predictor.propagate("backward"))
    predictor.close()
    assert sorted(expected) == list(range(6))
    for t in range(6):
        np.testing.assert_array_equal(_pixels(out / f"{t:05d}.png"), expected[t])
    assert set(np.unique(_pixels(out / "00000.png"))) <= {0, 1, 2} and (_pixels(out / "00001.png") == 2).any()
    capture = cv2.VideoCapture(str(over))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 8


def _bad_masks(root: Path) -> dict[str, tuple[str, str]]:
    Image.fromarray(np.zeros((H, W), np.uint8)).save(root / "empty.png")
    Image.fromarray(np.full((H - 4, W), 255, np.uint8)).save(root / "smaller.png")
    (root / "broken.png").write_bytes(b"this is not a png")
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(root / "ok.png")
    return {
        "empty": (str(root / "empty.png"), "empty.png: mask is empty"),
        "size": (str(root / "smaller.png"), "smaller.png: mask is 112x60 (WxH) but the video is 112x64"),
        "unreadable": (str(root / "broken.png"), "broken.png: cannot read mask image"),
        "missing": (str(root / "absent.png"), "absent.png: mask file not found"),
        "beyond": (f"8:{root / 'ok.png'}", "frame 8 is beyond the video"),
    }


@pytest.mark.parametrize("case", ["empty", "size", "unreadable", "missing", "beyond"])
def test_segment_rejects_bad_masks_naming_the_file(clip, tmp_path, case, capsys):
    root, _ = clip
    mask, message = _bad_masks(tmp_path)[case]
    argv = ["--video", str(root / "clip.mp4"), "--mask", mask, "--output", str(tmp_path / "o"), *FAST]
    assert run_cli(segment.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # fails before any work


def test_segment_unreadable_video_exits_non_zero_with_the_file_name(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(tmp_path / "m.png")
    run = subprocess.run(
        [sys.executable, str(REPO / "segment.py"), "--video", str(tmp_path / "bad.mp4"),
         "--mask", str(tmp_path / "m.png"), "--output", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode != 0
    assert "bad.mp4: cannot decode this video" in run.stderr


# --------------------------------------------------------------------------- library pieces


def test_mask_reader_colours_grey_and_binary(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[0, 3] = (0, 0, 255)  # first in raster order -> object 1
    rgb[2, 0] = (255, 0, 0)  # -> object 2
    rgb[3, 5] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    reader = MaskReader()
    ids = reader.read(tmp_path / "rgb.png", (4, 6))
    assert ids[0, 3] == 1 and ids[3, 5] == 1 and ids[2, 0] == 2 and ids.sum() == 4
    for values in ([0, 1], [0, 255]):
        grey = np.array([[values[0], values[1]], [values[1], values[0]]], np.uint8)
        Image.fromarray(grey).save(tmp_path / "g.png")
        np.testing.assert_array_equal(MaskReader().read(tmp_path / "g.png", (2, 2)), [[0, 1], [1, 0]])
    Image.fromarray(np.array([[0, 3], [7, 255]], np.uint8)).save(tmp_path / "ids.png")
    np.testing.assert_array_equal(MaskReader().read(tmp_path / "ids.png", (2, 2)), [[0, 3], [7, 0]])  # 255 = void
    assert parse_mask_arg("12:a/b.png") == (12, Path("a/b.png")) and parse_mask_arg("a.png") == (0, Path("a.png"))


def test_segment_stream_holds_only_a_few_frames(tmp_path):
    """Frames are pulled as the engine needs them: at most about a clip plus the prefetch depth is held."""
    torch.manual_seed(0)
    engine = PCVOSEngine(prepare_network(PCVOS(PCVOSConfig.small()).eval()), EngineConfig(clip_length=3))
    video = syn.generate_video(syn.SyntheticConfig(num_frames=20, height=32, width=48, num_objects=1, seed=3))
    pulled, done, outstanding = [0], [], []

    def frames():
        for frame in video.frames:
            pulled[0] += 1
            outstanding.append(pulled[0] - len(done))
            yield frame

    def sink(index, rgb, mask):
        assert index == len(done) and rgb.shape == (32, 48, 3) and mask.shape == (32, 48)
        done.append(index)

    stats = segment_stream(engine, frames(), {0: video.masks[0]}, -1, sink, prefetch_depth=2)
    assert done == list(range(20)) and stats.frames == 20 and stats.frames_read == 20
    assert max(outstanding) <= 3 + 2 + 3  # clip + prefetch queue + one in flight per stage


def test_shards_cover_every_item_exactly_once():
    items = list(range(11))
    for count in (1, 2, 3, 5):
        chosen = [x for i in range(count) for x in Shard(i, count).select(items)]
        assert sorted(chosen) == items
    assert parse_shard("1/4") == Shard(1, 4)
    for bad in ("4/4", "x/2", "1", "-1/2"):
        with pytest.raises(Exception, match="expected i/n"):
            parse_shard(bad)
    assert env_shard({"RANK": "2", "WORLD_SIZE": "3"}) == Shard(2, 3) and env_shard({}) is None
    assert resolve_shard(None, {"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    assert resolve_shard(Shard(0, 2), {"RANK": "1", "WORLD_SIZE": "2"}) == Shard(0, 2)
    assert resolve_shard(None, {}) == Shard()
    assert shard_device("auto", {"LOCAL_RANK": "3"}, cuda_count=2) == "cuda:1"
    assert shard_device("auto", {"LOCAL_RANK": "3"}, cuda_count=0) == "auto"
    assert shard_device("cpu", {"LOCAL_RANK": "3"}, cuda_count=2) == "cpu"
