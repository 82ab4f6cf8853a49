"""Tests of the synthetic video generator and its layout writers (small sizes, a few seconds)."""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dataset import synthetic as syn
from dataset import synthetic_scene
from scripts import make_synthetic
from util.palette import read_index_png

SMALL = syn.SyntheticConfig(num_frames=12, height=48, width=64, num_objects=2, num_distractors=1, seed=5)


def _files(root: Path) -> set[str]:
    """All files under root as posix paths relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def default_video() -> syn.SyntheticVideo:
    return syn.generate_video(syn.SyntheticConfig(seed=0))


# --------------------------------------------------------------------------- generator


def test_same_seed_same_bytes_different_seed_differs() -> None:
    a = syn.generate_video(SMALL)
    b = syn.generate_video(SMALL)
    c = syn.generate_video(replace(SMALL, seed=6))
    assert a.frames.tobytes() == b.frames.tobytes() and a.masks.tobytes() == b.masks.tobytes()
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.masks, c.masks)


def test_shapes_dtypes_and_ids(default_video: syn.SyntheticVideo) -> None:
    assert default_video.frames.shape == (30, 240, 432, 3) and default_video.frames.dtype == np.uint8
    assert default_video.masks.shape == (30, 240, 432) and default_video.masks.dtype == np.uint8
    assert default_video.first_frame == {1: 0, 2: 0}
    assert set(np.unique(default_video.masks[0])) == {0, 1, 2}


def test_iter_frames_matches_generate_video() -> None:
    video = syn.generate_video(SMALL)
    for t, (frame, mask) in enumerate(syn.iter_frames(SMALL)):
        assert np.array_equal(frame, video.frames[t]) and np.array_equal(mask, video.masks[t])


def test_objects_are_textured_not_flat(default_video: syn.SyntheticVideo) -> None:
    for label in (1, 2):
        pixels = default_video.frames[0][default_video.masks[0] == label].astype(np.float64)
        assert pixels.std(axis=0).max() > 12, "object should carry a two-colour texture"


def test_hand_set_overlap_mask_matches_paste_and_occlusion() -> None:
    def square(colour: tuple[int, int, int]) -> syn.Sprite:
        rgba = np.zeros((21, 21, 4), np.uint8)
        rgba[..., :3] = colour
        rgba[..., 3] = 255
        return syn.Sprite(rgba)

    def still(x: float, y: float) -> syn.Track:
        return syn.Track(np.array([[x, y]]), np.ones(1), np.zeros(1))

    back = syn.SceneObject(1, square((255, 0, 0)), still(20, 20), depth=0.0)
    front = syn.SceneObject(2, square((0, 0, 255)), still(30, 25), depth=1.0)
    scene = syn.Scene(50, 60, 1, np.zeros((50, 60, 3), np.uint8), np.zeros((1, 2)), [back, front])
    frame, mask = syn.render_frame(scene, 0)
    red = (frame == (255, 0, 0)).all(axis=2)
    blue = (frame == (0, 0, 255)).all(axis=2)
    assert np.array_equal(mask == 1, red) and np.array_equal(mask == 2, blue)
    assert blue.sum() == 21 * 21  # front object complete
    overlap = 11 * 16  # x 20..30, y 15..30 of the back square are hidden
    assert red.sum() == 21 * 21 - overlap
    assert mask[25, 25] == 2 and mask[12, 12] == 1 and mask[0, 0] == 0
    # A distractor (label 0) in front erases target pixels from the mask as well.
    cover = syn.SceneObject(0, square((0, 255, 0)), still(20, 20), depth=2.0)
    scene.objects.append(cover)
    _, mask = syn.render_frame(scene, 0)
    assert not (mask[10:31, 10:31] == 1).any()


def test_every_object_moves_at_least_its_size(default_video: syn.SyntheticVideo) -> None:
    for label in default_video.first_frame:
        ys, xs = np.nonzero(default_video.masks[0] == label)
        start, size = np.array([xs.mean(), ys.mean()]), np.sqrt(len(xs))
        moved = 0.0
        for mask in default_video.masks[1:]:
            ys, xs = np.nonzero(mask == label)
            if len(xs):
                moved = max(moved, float(np.linalg.norm(np.array([xs.mean(), ys.mean()]) - start)))
        assert moved >= size, f"object {label} moved {moved:.1f} px < its size {size:.1f}"


def test_copy_first_mask_baseline_scores_poorly(default_video: syn.SyntheticVideo) -> None:
    scores = []
    for label in default_video.first_frame:
        first = default_video.masks[0] == label
        for mask in default_video.masks[1:]:
            current = mask == label
            scores.append((first & current).sum() / max((first | current).sum(), 1))
    assert np.mean(scores) < 0.45


def test_distractors_exist_look_alike_and_are_unlabelled() -> None:
    config = replace(SMALL, num_objects=1, num_distractors=2, height=96, width=128, noise_std=0)
    scene = syn.build_scene(config)
    distractors = [o for o in scene.objects if o.label == 0]
    target = next(o for o in scene.objects if o.label == 1)
    assert len(distractors) == 2
    frame, mask = syn.render_frame(scene, 0)
    assert set(np.unique(mask)) <= {0, 1}
    # Drawn distractor pixels exist in the frame but carry label 0.
    drawn = np.zeros_like(mask)
    for obj in distractors:
        synthetic_scene._paste(np.zeros_like(frame), drawn, replace(obj, label=9), 0)
    assert np.count_nonzero(drawn == 9) > 0 and not (mask[drawn == 9] == 1).all()
    # Same colour family: mean sprite colours within a small distance of the target's.
    def mean_colour(obj: syn.SceneObject) -> np.ndarray:
        rgba = obj.sprite.rgba
        return rgba[..., :3][rgba[..., 3] > 0].mean(axis=0)

    # Default: the same colour family, moved by lookalike_shift (60) so appearance can tell them apart.
    for obj in distractors:
        distance = np.linalg.norm(mean_colour(obj) - mean_colour(target))
        assert 20 < distance < 100, distance
    # lookalike_shift=0: indistinguishable colours (within a few levels).
    same = syn.build_scene(replace(config, lookalike_shift=0))
    target = next(o for o in same.objects if o.label == 1)
    for obj in (o for o in same.objects if o.label == 0):
        assert np.abs(mean_colour(obj) - mean_colour(target)).max() < 40
    with pytest.raises(ValueError, match="lookalike_shift"):
        syn.SyntheticConfig(lookalike_shift=-1)


def test_late_objects_appear_at_multiple_of_five() -> None:
    config = replace(SMALL, num_frames=30, num_objects=3, late_objects=2, seed=11)
    video = syn.generate_video(config)
    for label, start in video.first_frame.items():
        present = [t for t in range(30) if (video.masks[t] == label).any()]
        assert present[0] == start and start % 5 == 0
    assert sum(start > 0 for start in video.first_frame.values()) == 2


def test_leave_and_return() -> None:
    config = syn.SyntheticConfig(num_frames=300, height=48, width=64, num_objects=1, leave_and_return=True)
    present = np.array([(mask == 1).any() for _, mask in syn.iter_frames(config)])
    gone = np.flatnonzero(~present)
    assert present[0] and len(gone) and present[gone[0]:].any()


def test_iter_frames_streams_long_video() -> None:
    config = syn.SyntheticConfig(num_frames=3000, height=120, width=216, leave_and_return=True)
    stream = syn.iter_frames(config)
    assert inspect.isgenerator(stream)
    start = time.perf_counter()
    for _ in range(500):
        frame, mask = next(stream)
    assert frame.shape == (120, 216, 3) and mask.shape == (120, 216)
    assert time.perf_counter() - start < 5.0
    stream.close()


def test_make_split_varies_and_names() -> None:
    specs = syn.make_split("syn", 6, syn.SyntheticConfig(num_frames=20, num_objects=3), seed=1)
    assert [s.name for s in specs] == [f"syn_{i:03d}" for i in range(6)]
    assert all(1 <= s.config.num_objects <= 3 for s in specs)
    assert any(s.config.late_objects for s in specs)
    assert len({s.config.seed for s in specs}) == 6
    assert not any(s.config.late_objects for s in syn.make_split("d", 6, seed=1, allow_late=False))


def test_relative_motion_by_hand() -> None:
    masks = []
    for t in range(4):
        mask = np.zeros((40, 60), np.uint8)
        mask[5:15, 5 + 5 * t : 15 + 5 * t] = 1  # a 10x10 square, 15 px to the right by frame 3
        mask[30:34, 50:54] = 3  # a static object with a non-contiguous id
        if t >= 2:
            mask[20:28, 0 + 4 * (t - 2) : 8 + 4 * (t - 2)] = 2  # appears at frame 2, then moves 4 px
        masks.append(mask)
    motion = syn.relative_motion(masks)
    assert list(motion) == [1, 2, 3]
    assert motion[1] == pytest.approx(15 / (2 * np.sqrt(100 / np.pi)))
    assert motion[2] == pytest.approx(4 / (2 * np.sqrt(64 / np.pi)))
    assert motion[3] == 0.0


def test_make_split_min_motion_keeps_only_moving_videos() -> None:
    config = syn.SyntheticConfig(num_frames=20, height=64, width=96, motion_speed=0.012, num_distractors=1)
    plain = syn.make_split("v", 8, config, seed=2, allow_late=False)
    slow = [s for s in plain if min(syn.scene_motion(s.config).values()) < 1.0]
    assert slow, "the case needs a candidate that min_motion rejects"
    kept = syn.make_split("v", 4, config, seed=2, allow_late=False, min_motion=1.0)
    assert [s.name for s in kept] == [f"v_{i:03d}" for i in range(4)]
    assert all(min(syn.scene_motion(s.config).values()) >= 1.0 for s in kept)
    assert {s.config.seed for s in kept} <= {s.config.seed for s in syn.make_split("v", 40, config, seed=2,
                                                                                     allow_late=False)}
    with pytest.raises(ValueError, match="move by >= 50"):
        syn.make_split("v", 1, replace(config, num_frames=4), seed=2, min_motion=50.0)


# --------------------------------------------------------------------------- writers


def _late_video() -> syn.SyntheticVideo:
    config = replace(SMALL, num_frames=11, num_objects=3, late_objects=1, seed=3)
    return syn.generate_video(config, name="vid")


def test_write_generic(tmp_path: Path) -> None:
    video = _late_video()
    late = video.first_frame[3]
    syn.write_generic(tmp_path, [video])
    expected = {f"JPEGImages/vid/{t:05d}.jpg" for t in range(11)}
    expected |= {"Annotations/vid/00000.png", f"Annotations/vid/{late:05d}.png"}
    assert _files(tmp_path) == expected
    assert set(np.unique(read_index_png(tmp_path / "Annotations/vid/00000.png"))) == {0, 1, 2}
    assert set(np.unique(read_index_png(tmp_path / f"Annotations/vid/{late:05d}.png"))) == {0, 3}


def test_write_davis(tmp_path: Path) -> None:
    spec = syn.VideoSpec("seq", replace(SMALL, num_frames=3))
    syn.write_davis(tmp_path, [spec], split="val")
    expected = {f"{kind}/480p/seq/{t:05d}.{ext}" for t in range(3) for kind, ext in
                (("JPEGImages", "jpg"), ("Annotations", "png"))}
    expected |= {"ImageSets/2017/val.txt", "ImageSets/2016/val.txt"}
    assert _files(tmp_path) == expected
    assert (tmp_path / "ImageSets/2017/val.txt").read_text() == "seq\n"
    with Image.open(tmp_path / "Annotations/480p/seq/00000.png") as image:
        assert image.mode == "P"
    assert set(np.unique(read_index_png(tmp_path / "Annotations/480p/seq/00000.png"))) == {0, 1, 2}
    with pytest.raises(ValueError, match="frame 0"):
        syn.write_davis(tmp_path / "late", [_late_video()])


def test_write_davis2016(tmp_path: Path) -> None:
    syn.write_davis2016(tmp_path, [syn.VideoSpec("seq", replace(SMALL, num_frames=2))])
    assert "ImageSets/2016/val.txt" in _files(tmp_path)
    assert set(np.unique(np.array(Image.open(tmp_path / "Annotations/480p/seq/00001.png")))) <= {0, 255}


def test_write_youtube_layout_meta_and_ids(tmp_path: Path) -> None:
    video = _late_video()
    late = video.first_frame[3]
    syn.write_youtube(tmp_path, [video], split="valid", ground_truth=True)
    kept = [t for t in range(0, 11, 5)]
    expected = {f"all_frames/valid_all_frames/JPEGImages/vid/{t:05d}.jpg" for t in range(11)}
    expected |= {f"valid/JPEGImages/vid/{t:05d}.jpg" for t in kept}
    expected |= {"valid/Annotations/vid/00000.png", f"valid/Annotations/vid/{late:05d}.png", "valid/meta.json"}
    expected |= {f"valid_gt/Annotations/vid/{t:05d}.png" for t in kept}
    assert _files(tmp_path) == expected
    ids = syn.noncontiguous_ids("vid", [1, 2, 3])
    assert list(ids.values()) != [1, 2, 3] and sorted(ids.values()) == list(ids.values())
    meta = json.loads((tmp_path / "valid/meta.json").read_text())
    objects = meta["videos"]["vid"]["objects"]
    assert set(objects) == {str(i) for i in ids.values()}
    assert objects[str(ids[1])] == {"category": "synthetic", "frames": ["00000", "00005", "00010"]}
    assert objects[str(ids[3])]["frames"] == [f"{t:05d}" for t in range(late, 11, 5)]
    first = read_index_png(tmp_path / "valid/Annotations/vid/00000.png")
    assert set(np.unique(first)) == {0, ids[1], ids[2]}
    appear = read_index_png(tmp_path / f"valid/Annotations/vid/{late:05d}.png")
    assert set(np.unique(appear)) == {0, ids[3]}
    gt = read_index_png(tmp_path / "valid_gt/Annotations/vid/00010.png")
    assert np.array_equal(gt > 0, video.masks[10] > 0)
    sparse = (tmp_path / "valid/JPEGImages/vid/00005.jpg").read_bytes()
    assert sparse == (tmp_path / "all_frames/valid_all_frames/JPEGImages/vid/00005.jpg").read_bytes()


def test_write_youtube_train(tmp_path: Path) -> None:
    syn.write_youtube_train(tmp_path / "YouTube", [_late_video()], davis_root=tmp_path / "DAVIS")
    files = _files(tmp_path)
    for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        assert {f for f in files if f.startswith(f"YouTube/train_480p/{kind}/")} == {
            f"YouTube/train_480p/{kind}/vid/{t:05d}.{ext}" for t in (0, 5, 10)
        }
    assert "DAVIS/ImageSets/2017/train.txt" in files
    assert len([f for f in files if f.startswith("DAVIS/Annotations/480p/vid/")]) == 11
    assert set(np.unique(read_index_png(tmp_path / "YouTube/train_480p/Annotations/vid/00010.png"))) == {0, 1, 2, 3}


def test_write_static(tmp_path: Path) -> None:
    syn.write_static(tmp_path, 2, seed=0, size=(40, 56))
    assert _files(tmp_path) == {f"DUTS-TR/syn_static_{i:05d}.{e}" for i in range(2) for e in ("jpg", "png")}
    mask = np.array(Image.open(tmp_path / "DUTS-TR/syn_static_00000.png"))
    assert mask.shape == (40, 56) and set(np.unique(mask)) == {0, 255}


def test_write_mp4_round_trip(tmp_path: Path) -> None:
    frames = [frame for frame, _ in syn.iter_frames(replace(SMALL, num_frames=9))]
    assert syn.write_mp4(tmp_path / "v.mp4", iter(frames), fps=24) == 9
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    read = []
    ok, frame = capture.read()
    while ok:
        read.append(frame)
        ok, frame = capture.read()
    capture.release()
    assert len(read) == 9 and read[0].shape == (48, 64, 3)
    error = np.abs(read[0][..., ::-1].astype(int) - frames[0].astype(int)).mean()
    assert error < 20  # lossy codec, but the same picture in RGB order


def test_cli_every_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--videos", "2", "--frames", "6", "--size", "32x48", "--seed", "1"]
    for layout in make_synthetic.LAYOUTS:
        assert make_synthetic.main(["--layout", layout, "--out", str(tmp_path / layout), *common]) == 0
        assert f"layout={layout}" in capsys.readouterr().out
    assert (tmp_path / "davis/ImageSets/2017/val.txt").read_text().split() == ["syn_000", "syn_001"]
    assert (tmp_path / "youtube/valid/meta.json").exists()
    assert (tmp_path / "youtube-train/DAVIS/2017/trainval/ImageSets/2017/train.txt").exists()
    assert (tmp_path / "mp4/syn_000.mp4").exists() and (tmp_path / "mp4/syn_000_first_mask.png").exists()
    assert len(list((tmp_path / "static/DUTS-TR").glob("*.jpg"))) == 2
