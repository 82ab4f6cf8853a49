"""Tests of util/davis_metrics.py and scripts/score_davis.py against the official DAVIS toolkit.

The golden set (``tests/data/davis_metrics``, see ``tests/data/README.md``) is a synthetic
GT / prediction set with what davis2017-evaluation produced on it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts import score_davis
from tests.conftest import DATA
from util import davis_metrics as dm

GOLDEN = DATA / "davis_metrics"


@pytest.fixture(scope="module")
def golden_all() -> dm.Evaluation:
    """All 15 golden sequences scored once (2 workers, exercising the process pool)."""
    names = dm.read_sequence_list(GOLDEN / "gt" / "ImageSets" / "val.txt")
    return dm.evaluate(GOLDEN / "gt", GOLDEN / "pred", names, workers=2)


@pytest.fixture(scope="module")
def official() -> dict:
    return json.loads((GOLDEN / "official" / "all_sequences.json").read_text())


# --------------------------------------------------------------------------------------------
# Golden comparisons
# --------------------------------------------------------------------------------------------


def test_cli_csvs_byte_identical_to_official(tmp_path: Path) -> None:
    argv = [
        "--gt", str(GOLDEN / "gt"),
        "--pred", str(GOLDEN / "pred"),
        "--sequences", str(GOLDEN / "gt" / "ImageSets" / "val_agree.txt"),
        "--out", str(tmp_path),
        "--workers", "1",
    ]  # fmt: skip
    assert score_davis.main(argv) == 0
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (tmp_path / name).read_bytes() == (GOLDEN / "official" / name).read_bytes(), name
    report = json.loads((tmp_path / "per-object_results-val.json").read_text())
    assert report["excluded"] == {}
    assert not (tmp_path / "warnings-val.txt").exists()


def test_per_object_stats_match_official(golden_all: dm.Evaluation, official: dict) -> None:
    mine = {s.name: s.as_dict() for s in golden_all.object_stats()}
    assert set(mine) == set(official["per_object"])
    for name, expected in official["per_object"].items():
        for key, value in expected.items():
            if value is None:  # official Decay NaN (uint8 bug): checked in the s14 test
                assert key.endswith("Decay") and name.startswith("s14_long_260"), (name, key)
                continue
            assert mine[name][key] == pytest.approx(value, abs=1e-9, rel=0), (name, key)
    row = golden_all.global_row()
    for key in ("J&F-Mean", "J-Mean", "J-Recall", "F-Mean", "F-Recall"):
        assert row[key] == pytest.approx(official["global"][key], abs=1e-9, rel=0), key
    assert math.isfinite(row["J-Decay"]) and math.isfinite(row["F-Decay"])


def test_extra_id_is_reported_not_aborting(golden_all: dm.Evaluation, official: dict) -> None:
    assert [s.name for s in golden_all.excluded] == list(official["aborted"]) == ["s07_extra_id"]
    (seq,) = golden_all.excluded
    assert "s07_extra_id" in seq.problem and "contains id 3" in seq.problem
    assert len(golden_all.scored) == 14
    assert not any(s.name.startswith("s07_extra_id") for s in golden_all.object_stats())
    assert any(line.startswith("EXCLUDED s07_extra_id") for line in dm.warning_lines(golden_all))
    report = dm.report_dict(golden_all)
    assert set(report["excluded"]) == {"s07_extra_id"}
    assert set(report["excluded"]["s07_extra_id"]["per_object_extra_ids_ignored"]) == {
        "s07_extra_id_1",
        "s07_extra_id_2",
    }


def test_cli_reports_extra_id_and_scores_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--gt", str(GOLDEN / "gt"), "--pred", str(GOLDEN / "pred"), "--out", str(tmp_path)]
    argv += ["--sequences", str(GOLDEN / "gt" / "ImageSets" / "val.txt"), "--workers", "2"]
    assert score_davis.main(argv) == 1
    out = capsys.readouterr().out
    assert "EXCLUDED s07_extra_id" in out and "scored 14 sequences, 33 objects" in out
    assert "s07_extra_id" in (tmp_path / "warnings-val.txt").read_text()


def _read(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def test_decay_of_long_sequence_is_finite_and_hand_computed(golden_all: dm.Evaluation) -> None:
    seq = next(s for s in golden_all.scored if s.name == "s14_long_260")
    gt_dir = GOLDEN / "gt" / "Annotations" / "s14_long_260"
    frames = sorted(p.name for p in gt_dir.glob("*.png"))[1:-1]
    assert len(frames) == 258
    j = []
    for name in frames:  # plain per-frame IoU, independent of the library
        g = _read(gt_dir / name) == 1
        p = _read(GOLDEN / "pred" / "s14_long_260" / name) == 1
        union = np.logical_or(g, p).sum()
        j.append(1.0 if union == 0 else np.logical_and(g, p).sum() / union)
    j = np.array(j)
    np.testing.assert_allclose(seq.j[0], j, rtol=0, atol=1e-15)
    # n = 258: linspace(1, 258, 5) = 1, 65.25, 129.5, 193.75, 258 -> edges 0, 64, 129, 193, 257.
    assert dm.decay_edges(258).tolist() == [0, 64, 129, 193, 257]
    (stats,) = seq.object_stats()
    assert math.isfinite(stats.j_decay) and math.isfinite(stats.f_decay)
    assert stats.j_decay == pytest.approx(j[0:65].mean() - j[193:258].mean(), abs=1e-12)
    f = seq.f[0]
    assert stats.f_decay == pytest.approx(f[0:65].mean() - f[193:258].mean(), abs=1e-12)


# --------------------------------------------------------------------------------------------
# Unit tests
# --------------------------------------------------------------------------------------------


def test_seg2bmap_single_pixel_at_origin() -> None:
    mask = np.zeros((5, 7), bool)
    mask[0, 0] = True
    assert np.argwhere(dm.seg2bmap(mask)).tolist() == [[0, 0]]


def test_seg2bmap_single_pixel_at_bottom_right() -> None:
    h, w = 5, 7
    mask = np.zeros((h, w), bool)
    mask[-1, -1] = True
    assert np.argwhere(dm.seg2bmap(mask)).tolist() == [[h - 2, w - 2], [h - 2, w - 1], [h - 1, w - 2]]


def test_seg2bmap_full_mask_and_border_lines() -> None:
    assert not dm.seg2bmap(np.ones((6, 9), bool)).any()
    row = np.zeros((6, 9), bool)
    row[-1, :] = True  # 1-px line on the last row -> boundary on the row above
    assert np.argwhere(dm.seg2bmap(row))[:, 0].tolist() == [4] * 9
    col = np.zeros((6, 9), bool)
    col[:, -1] = True  # 1-px column on the last column -> boundary in the column to its left
    assert np.argwhere(dm.seg2bmap(col))[:, 1].tolist() == [7] * 6


@pytest.mark.parametrize(
    ("h", "w", "r"),
    [
        (480, 854, 8),
        (481, 853, 8),
        (360, 640, 6),
        (720, 1280, 12),
        (1080, 1920, 18),
        (240, 427, 4),
        (37, 53, 1),
    ],
)
def test_boundary_radius(h: int, w: int, r: int) -> None:
    assert dm.boundary_radius(h, w) == r


def test_disk_size() -> None:
    assert dm.disk(8).shape == (17, 17) and int(dm.disk(8).sum()) == 197
    assert dm.disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


def test_decay_edges_and_statistics_small_n() -> None:
    assert dm.decay_edges(1).tolist() == [0, 0, 0, 0, 0]
    assert dm.decay_edges(2).tolist() == [0, 0, 1, 1, 1]
    assert dm.db_statistics(np.array([0.7])) == (0.7, 1.0, 0.0)
    mean, recall, decay = dm.db_statistics(np.array([0.9, 0.5]))
    assert mean == pytest.approx(0.7) and recall == 0.5 and decay == pytest.approx(0.4)
    # Inclusive right edges: n = 5 -> edges 0, 1, 2, 3, 4; first bin v[0:2], last bin v[3:5].
    assert dm.decay_edges(5).tolist() == [0, 1, 2, 3, 4]
    assert dm.db_statistics(np.array([1.0, 0.8, 0.6, 0.4, 0.0]))[2] == pytest.approx(0.9 - 0.2)


def jaccard(gt: np.ndarray, pred: np.ndarray) -> float:
    """Full-frame region similarity J = |G & P| / |G | P| of two binary [H, W] masks; 1.0 if both are empty."""
    union = int(np.count_nonzero(gt | pred))
    return 1.0 if union == 0 else int(np.count_nonzero(gt & pred)) / union


def f_measure(gt: np.ndarray, pred: np.ndarray, bound_th: float = dm.BOUND_TH) -> float:
    """Full-frame boundary F with the toolkit's radius for the frame size (the reference for the cropped one)."""
    radius = dm.boundary_radius(pred.shape[0], pred.shape[1], bound_th)
    return dm._f_from_boundaries(dm.seg2bmap(gt), dm.seg2bmap(pred), radius)


def test_hand_checked_j_and_f() -> None:
    # 10x10 frame -> radius ceil(0.008 * 14.1) = 1 (a plus-shaped disk).
    gt = np.zeros((10, 10), bool)
    gt[2:5, 2:5] = True
    pred = np.zeros((10, 10), bool)
    pred[2:5, 4:7] = True
    # overlap: column 4 (3 px); union 15 px.
    assert jaccard(gt, pred) == pytest.approx(3 / 15)
    # Both boundaries are 12-px 4x4 outlines (rows 1-4) at columns 1-4 and 3-6; 8 of the 12
    # pixels of each lie within one plus-step of the other -> P = R = 2/3.
    assert f_measure(gt, pred) == pytest.approx(2 / 3)
    assert dm.object_frame_scores(gt, pred, 1) == pytest.approx((3 / 15, 2 / 3))


def test_empty_conventions() -> None:
    empty, full = np.zeros((20, 30), bool), np.ones((20, 30), bool)
    assert jaccard(empty, empty) == 1.0 and f_measure(empty, empty) == 1.0
    # full-frame prediction vs empty GT: no boundary on either side -> J = 0 but F = 1
    assert jaccard(empty, full) == 0.0 and f_measure(empty, full) == 1.0
    blob = empty.copy()
    blob[5:10, 5:10] = True
    assert f_measure(blob, empty) == 0.0 and f_measure(empty, blob) == 0.0
    assert dm.object_frame_scores(empty, empty, 1) == (1.0, 1.0)


def _brute_force_f(gt: np.ndarray, pred: np.ndarray, r: int) -> float:
    """F from pairwise boundary-pixel distances (no dilation), with the same conventions."""
    bg, bp = np.argwhere(dm.seg2bmap(gt)), np.argwhere(dm.seg2bmap(pred))
    if len(bg) == 0 and len(bp) == 0:
        return 1.0
    if len(bg) == 0 or len(bp) == 0:
        return 0.0
    close = ((bg[:, None, :] - bp[None, :, :]) ** 2).sum(-1) <= r * r  # [n_gt, n_pred]
    precision, recall = close.any(0).mean(), close.any(1).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _random_boxes(rng: np.random.Generator, mask: np.ndarray) -> None:
    h, w = mask.shape
    for _ in range(int(rng.integers(0, 3))):
        y, x = int(rng.integers(-3, h)), int(rng.integers(-3, w))
        y1, x1 = max(y + int(rng.integers(1, 12)), 0), max(x + int(rng.integers(1, 12)), 0)
        mask[max(y, 0) : y1, max(x, 0) : x1] = True  # boxes often clipped by the image border


def test_cropped_scores_equal_full_frame_and_brute_force() -> None:
    rng = np.random.default_rng(0)
    for trial in range(80):
        h, w = int(rng.integers(3, 40)), int(rng.integers(3, 40))
        gt, pred = np.zeros((h, w), bool), np.zeros((h, w), bool)
        for mask in (gt, pred):
            _random_boxes(rng, mask)
            if trial % 10 == 0:
                mask |= rng.random((h, w)) > 0.9  # scattered pixels, also on the borders
            if trial % 20 == 1:
                mask[:] = True
        r = dm.boundary_radius(h, w, 0.05)  # larger than DAVIS so the tolerance matters here
        j, f = dm.object_frame_scores(gt, pred, r)
        assert j == jaccard(gt, pred), trial
        assert f == dm._f_from_boundaries(dm.seg2bmap(gt), dm.seg2bmap(pred), r), trial
        assert f == pytest.approx(_brute_force_f(gt, pred, r), abs=1e-12), trial


# --------------------------------------------------------------------------------------------
# Per-sequence problems and single-object mode on a tiny synthetic set
# --------------------------------------------------------------------------------------------


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _toy_dataset(root: Path, n_frames: int = 5) -> tuple[Path, Path]:
    """GT with two objects, 24x32, in ``root/gt/Annotations/<seq>``; a perfect prediction."""
    gt_root, pred_root = root / "gt", root / "pred"
    for seq in ("a", "b"):
        for t in range(n_frames):
            mask = np.zeros((24, 32), np.uint8)
            mask[2 + t : 10 + t, 3:12] = 1
            mask[12:20, 15 + t : 25 + t] = 2
            _write(gt_root / "Annotations" / seq / f"{t:05d}.png", mask)
            _write(pred_root / seq / f"{t:05d}.png", mask)
    return gt_root, pred_root


def test_missing_prediction_and_size_mismatch_are_per_sequence(tmp_path: Path) -> None:
    gt_root, pred_root = _toy_dataset(tmp_path)
    (pred_root / "a" / "00002.png").unlink()
    _write(pred_root / "b" / "00003.png", np.zeros((12, 16)))
    ev = dm.evaluate(gt_root, pred_root, ["a", "b"], workers=1)
    problems = {s.name: s.problem for s in ev.excluded}
    assert "missing prediction" in problems["a"] and str(pred_root / "a" / "00002.png") in problems["a"]
    assert "12x16" in problems["b"] and "24x32" in problems["b"]
    assert ev.object_stats() == []


def test_missing_gt_root_and_sequence_are_clear_errors(tmp_path: Path) -> None:
    gt_root, pred_root = _toy_dataset(tmp_path)
    with pytest.raises(dm.ScoringError, match="does not exist"):
        dm.evaluate(tmp_path / "nope", pred_root, ["a"], workers=1)
    with pytest.raises(dm.ScoringError, match="GT folder .*'zz'"):
        dm.evaluate(gt_root, pred_root, ["a", "zz"], workers=1)
    assert dm.default_sequences(gt_root) == ["a", "b"]


def test_davis_layout_and_image_sets(tmp_path: Path) -> None:
    gt_root, pred_root = _toy_dataset(tmp_path)
    (gt_root / "Annotations").rename(tmp_path / "ann")
    (gt_root / "Annotations").mkdir()
    (tmp_path / "ann").rename(gt_root / "Annotations" / "480p")  # DAVIS: Annotations/480p/<seq>
    (gt_root / "ImageSets").mkdir()
    (gt_root / "ImageSets" / "val.txt").write_text("a\nb\n")
    (gt_root / "ImageSets" / "2017").mkdir()
    (gt_root / "ImageSets" / "2017" / "val.txt").write_text("b\n")  # preferred over ImageSets/val.txt
    assert dm.annotations_dir(gt_root) == gt_root / "Annotations" / "480p"
    ev = dm.evaluate(gt_root, pred_root, workers=1)
    assert [s.name for s in ev.object_stats()] == ["b_1", "b_2"]
    assert dm.report_dict(ev)["warnings"] == []


def test_perfect_prediction_and_missing_object(tmp_path: Path) -> None:
    gt_root, pred_root = _toy_dataset(tmp_path)
    for t in range(5):  # object 2 never predicted in "b": zero-padded, J = F = 0
        path = pred_root / "b" / f"{t:05d}.png"
        _write(path, np.where(_read(path) == 2, 0, _read(path)))
    stats = {s.name: s for s in dm.evaluate(gt_root, pred_root, ["a", "b"], workers=2).object_stats()}
    assert [stats[n].j_mean for n in ("a_1", "a_2", "b_1", "b_2")] == [1.0, 1.0, 1.0, 0.0]
    assert stats["b_2"].f_mean == 0.0 and stats["a_2"].f_recall == 1.0


def test_single_object_mode(tmp_path: Path) -> None:
    gt_root, pred_root = _toy_dataset(tmp_path)
    for t in range(5):  # "a": 0/255 greyscale with noise <= 128 (ignored); "b": index map 0/1/2
        path = pred_root / "a" / f"{t:05d}.png"
        fg = _read(path) > 0
        _write(path, np.where(fg, 255, 60))
    ev = dm.evaluate(gt_root, pred_root, ["a", "b"], single_object=True, workers=1)
    assert [s.name for s in ev.object_stats()] == ["a_1", "b_1"]
    assert all(s.j_mean == 1.0 and s.f_mean == 1.0 for s in ev.object_stats())
    notes = dict((s.name, s.notes) for s in ev.sequences)
    assert notes["a"] == [] and "index-map" in notes["b"][0]


# --------------------------------------------------------------------------------------------
# Incomplete ground truth (GT root holding JPEGImages/, the DAVIS layout)
# --------------------------------------------------------------------------------------------


def _with_frames(gt_root: Path, n_frames: int = 5, seqs: tuple[str, ...] = ("a", "b")) -> None:
    for seq in seqs:
        for t in range(n_frames):
            _write(gt_root / "JPEGImages" / seq / f"{t:05d}.jpg", np.zeros((24, 32)))


def test_incomplete_gt_is_reported_with_its_frames_and_excluded(tmp_path: Path) -> None:
    gt_root, pred_root = _toy_dataset(tmp_path, n_frames=6)
    (gt_root / "Annotations" / "a" / "00002.png").unlink()
    (gt_root / "Annotations" / "a" / "00005.png").unlink()  # the last frame too
    before = dm.evaluate(gt_root, pred_root, ["a", "b"], workers=1)  # no JPEGImages: toolkit behaviour
    assert before.excluded == [] and before.coverage() == ""
    _with_frames(gt_root, 6)
    ev = dm.evaluate(gt_root, pred_root, ["a", "b"], workers=1)
    (seq,) = ev.excluded
    assert seq.name == "a" and seq.missing_gt == ["00002.png", "00005.png"]
    assert "incomplete ground truth" in seq.problem and "misses 2 of the frames" in seq.problem
    assert "(00002.png, 00005.png)" in seq.problem and str(gt_root / "Annotations" / "a") in seq.problem
    assert [s.name for s in ev.object_stats()] == ["b_1", "b_2"]
    assert ev.coverage() == "over 1 of 2 sequences"
    (line,) = dm.warning_lines(ev)
    assert line.startswith("EXCLUDED a: incomplete ground truth") and "00002.png, 00005.png" in line
    assert dm.report_dict(ev)["excluded"]["a"]["missing_gt_frames"] == ["00002.png", "00005.png"]


def test_sparse_gt_at_a_stride_is_complete_unless_a_stride_frame_is_missing(tmp_path: Path) -> None:
    gt_root, pred_root = _toy_dataset(tmp_path, n_frames=21)
    for seq in ("a", "b"):
        for t in range(21):
            if t % 5:
                (gt_root / "Annotations" / seq / f"{t:05d}.png").unlink()
    _with_frames(gt_root, 23)  # two frames after the last annotated one: not at the stride
    assert dm.evaluate(gt_root, pred_root, ["a", "b"], workers=1).excluded == []
    (gt_root / "Annotations" / "b" / "00010.png").unlink()
    (seq,) = dm.evaluate(gt_root, pred_root, ["a", "b"], workers=1).excluded
    assert seq.name == "b" and seq.missing_gt == ["00010.png"]
    assert dm.missing_gt_frames(["00005.png", "00010.png"], gt_root / "JPEGImages" / "a") == ["00000.png",
                                                                                             "00015.png", "00020.png"]


def test_cli_headline_says_over_n_of_m_when_gt_is_incomplete(tmp_path: Path, capsys) -> None:
    gt_root, pred_root = _toy_dataset(tmp_path)
    argv = ["--gt", str(gt_root), "--pred", str(pred_root), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert score_davis.main(argv) == 0
    complete = capsys.readouterr().out
    assert "Global results for val ---" in complete and " of 2 sequences" not in complete
    csvs = {n: (tmp_path / "out" / n).read_bytes() for n in ("global_results-val.csv",)}
    _with_frames(gt_root)
    (gt_root / "Annotations" / "b" / "00003.png").unlink()
    assert score_davis.main(argv) == 1
    out = capsys.readouterr().out
    assert "Global results for val over 1 of 2 sequences ---" in out
    assert "EXCLUDED b: incomplete ground truth" in out and "00003.png" in out
    assert "00003.png" in (tmp_path / "out" / "warnings-val.txt").read_text()
    assert (tmp_path / "out" / "global_results-val.csv").read_bytes() == csvs["global_results-val.csv"]  # a only


def test_cli_headline_says_over_14_of_15_on_the_golden_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--gt", str(GOLDEN / "gt"), "--pred", str(GOLDEN / "pred"), "--out", str(tmp_path)]
    argv += ["--sequences", str(GOLDEN / "gt" / "ImageSets" / "val.txt"), "--workers", "1"]
    assert score_davis.main(argv) == 1
    assert "Global results for val over 14 of 15 sequences" in capsys.readouterr().out
