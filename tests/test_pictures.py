"""The pictures: the one overlay renderer, charts, labelled grids, benchmark overlay videos, training tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataset import synthetic as syn
from inference.overlays import check_overlay_names, overlay_root, read_result_mask, write_overlays
from model.curves import TrainingCurves, frame_tiles, object_ids
from util.palette import davis_palette
from util.pictures import BACKGROUND, GRID, Chart, Series, halo_colour, label_grid, nice_ticks, overlay
from util.video_io import VideoReader


def _frame(h: int = 40, w: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_overlay_outline_in_object_colour_fill_blended_halo_contrasting_frame_elsewhere():
    rgb = _frame()
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 10:25] = 1  # dark red: a white halo
    mask[10:30, 25:40] = 3  # (128, 128, 0) olive: luma 113, also white
    mask[0:5, 45:50] = 2  # touches the frame edge: no outline along the edge
    palette = davis_palette()
    out = overlay(rgb, mask, alpha=0.4, outline=2, halo=1)
    # outline: the two pixels along the inside of the boundary, in the object colour exactly
    for y, x in ((10, 15), (11, 15), (29, 12), (20, 10), (20, 11)):
        assert tuple(out[y, x]) == tuple(palette[1]), (y, x)
    assert tuple(out[20, 38]) == tuple(palette[3]) and tuple(out[20, 39]) == tuple(palette[3])
    # between two objects each keeps its own outline (no halo over an outline)
    assert tuple(out[20, 24]) == tuple(palette[1]) and tuple(out[20, 25]) == tuple(palette[3])
    # inside: the frame blended with the colour at alpha
    inner = (1 - 0.4) * rgb[20, 15].astype(float) + 0.4 * palette[1]
    np.testing.assert_array_equal(out[20, 15], inner.round().astype(np.uint8))
    # halo: one pixel outside, white for a dark colour
    assert tuple(out[9, 15]) == (255, 255, 255) and tuple(out[20, 9]) == (255, 255, 255)
    # object 2 at the frame's corner: outline on its inner sides, none on the frame edge
    assert tuple(out[4, 47]) == tuple(palette[2]) and tuple(out[0, 49]) != tuple(palette[2])
    # elsewhere: the frame, unchanged
    halo = np.zeros_like(mask, bool)
    halo[8:32, 8:42] = True
    halo[0:7, 43:50] = True
    np.testing.assert_array_equal(out[~halo], rgb[~halo])
    assert halo_colour((250, 250, 0)) == (0, 0, 0) and halo_colour((128, 0, 0)) == (255, 255, 255)


def test_overlay_uses_the_given_palette_and_resizes_the_mask():
    rgb = np.full((20, 20, 3), 100, np.uint8)
    mask = np.zeros((10, 10), np.uint8)
    mask[2:8, 2:8] = 1
    out = overlay(rgb, mask, palette=np.array([[0, 0, 0], [10, 200, 50]], np.uint8))
    assert tuple(out[4, 10]) == (10, 200, 50)  # outline of the 2x-enlarged square at rows 4-5
    assert tuple(out[0, 0]) == (100, 100, 100)


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(84.72, 86.18) == [84.5, 85.0, 85.5, 86.0, 86.5]
    assert nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = nice_ticks(3, 1234)
    assert ticks[0] <= 3 and ticks[-1] >= 1234 and len(ticks) <= 8


def test_chart_draws_each_point_where_pixel_says():
    chart = Chart(title="t", x_label="x", y_label="y", width=600, height=400)
    chart.add(Series("a", [1.0, 2.0, 4.0], [10.0, 30.0, 20.0], ["p", "q", "r"]))
    image = np.asarray(chart.render())
    assert image.shape == (400, 600, 3)
    for x, y in ((1.0, 10.0), (2.0, 30.0), (4.0, 20.0)):
        col, row = chart.pixel(x, y)
        assert 0 < col < 600 and 0 < row < 400
        assert tuple(image[row, col]) != BACKGROUND  # the point's marker
    col, row = chart.pixel(3.0, 10.0)  # nowhere near a point or the line: background or a grid line
    assert tuple(image[row, col]) in (BACKGROUND, GRID)
    with pytest.raises(ValueError, match="2 x values but 1 y values"):
        chart.add(Series("b", [1, 2], [3]))


def test_label_grid_enlarges_small_tiles_and_labels_them():
    tiles = [[np.full((16, 24, 3), v, np.uint8) for v in (0, 128, 255)] for _ in range(2)]
    grid = label_grid(tiles, ["image", "ground truth", "prediction"], ["frame 1", "frame 2"], min_tile=160)
    assert grid.shape[0] >= 2 * 160 and grid.shape[1] >= 3 * 240  # 10x: every tile at least 160 px
    assert (grid == 0).all(axis=2).sum() >= 2 * 160 * 240  # the black tiles, enlarged
    with pytest.raises(ValueError, match="tile of size"):
        label_grid([[tiles[0][0], np.zeros((5, 5, 3), np.uint8)]])


def test_training_tiles_show_every_object_of_truth_and_prediction():
    torch.manual_seed(0)
    rgb = torch.randn(3, 3, 32, 32)
    masks = torch.zeros(3, 2, 32, 32)
    masks[:, 0, 4:12, 4:12] = 1
    masks[:, 1, 20:28, 20:28] = 1
    prob = torch.zeros(2, 2, 32, 32)
    prob[1, :, 20:28, 20:28] = 0.9  # only object 2 found
    ids = object_ids(masks[1])
    assert ids[8, 8] == 1 and ids[24, 24] == 2 and ids[0, 0] == 0
    assert set(np.unique(object_ids(prob[:, 0]))) == {0, 2}
    grid = frame_tiles(rgb, masks, prob)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[0] >= 2 * 192 and grid.shape[1] >= 3 * 192


def test_training_curves_keep_the_resumed_runs_points(tmp_path):
    curves = TrainingCurves(tmp_path)
    for step in (1, 2, 3):
        curves.add(step, {"loss/total": 1.0 / step, "loss/image": 0.5, "iou": 0.2 * step, "lr": 1e-5})
    png = curves.write()
    assert Image.open(png).size == (1520, 480)
    resumed = TrainingCurves(tmp_path, start_iteration=2)
    assert [p["iteration"] for p in resumed.points] == [1, 2] and "lr" not in resumed.points[0]
    assert TrainingCurves(tmp_path).points == []  # a new run starts afresh


def test_benchmark_overlays_one_mp4_per_video_from_the_masks(tmp_path):
    config = syn.SyntheticConfig(num_frames=4, height=48, width=64, num_objects=2, num_distractors=0, seed=5)
    videos = syn.make_split("ov", 1, config, seed=5, allow_late=False)
    root = tmp_path / "davis"
    syn.write_davis(root, videos)
    from dataset.benchmarks import davis_benchmark

    out = tmp_path / "out"
    bench = davis_benchmark(root, "2017", "val", out, None)
    source = bench.sources[0]
    # the ground truth stands in for results: masks of frames 0..2 only
    (out / source.name).mkdir(parents=True)
    gt = root / "Annotations" / "480p" / source.name
    for frame in source.frames[:3]:
        (out / source.name / f"{frame.stem}.png").write_bytes((gt / f"{frame.stem}.png").read_bytes())
    logs = []
    assert write_overlays(out, bench.sources, redraw=set(), log=logs.append) == 1
    path = overlay_root(out) / f"{source.name}.mp4"
    assert path.is_file() and logs == [f"overlays: 1 videos in {out / 'overlays'}"]
    frames = list(VideoReader(path))
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    assert write_overlays(out, bench.sources, redraw=set(), log=logs.append) == 0  # present: kept
    assert overlay_root(Path("r/Annotations")) == Path("r/overlays")
    grey = tmp_path / "grey.png"
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(grey)
    np.testing.assert_array_equal(read_result_mask(grey), [[0, 1]])


def test_a_video_named_like_the_overlay_folder_is_refused(tmp_path):
    from dataset.frames import VideoSource

    clash = VideoSource("overlays", [tmp_path / "00000.jpg"], {})
    with pytest.raises(ValueError, match="--overlay: video 'overlays' would share its folder"):
        check_overlay_names(tmp_path, [clash])
    check_overlay_names(tmp_path / "Annotations", [clash])  # YouTube-VOS: the overlays live beside Annotations/


def test_every_driver_takes_overlay():
    import eval_davis
    import eval_generic
    import eval_youtube
    import inference_pretrained_pcvos
    import segment

    assert segment.parse_args(["--video", "v.mp4", "--mask", "m.png", "--overlay", "o.mp4"]).overlay == Path("o.mp4")
    for driver, argv in ((eval_davis, ["--davis-path", "d", "--output", "o"]),
                         (eval_generic, ["--data", "d", "--output", "o"]),
                         (eval_youtube, ["--yv-path", "y", "--output", "o"]),
                         (inference_pretrained_pcvos, ["--yv-path", "y", "--yv2018-path", "y", "--output", "o"])):
        assert driver.parse_args(argv).overlay is False, driver.__name__
        assert driver.parse_args([*argv, "--overlay"]).overlay is True, driver.__name__
