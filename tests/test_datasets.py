"""Training data: TPS warp, frame sampler, gap curriculum, datasets (tiny generated folders)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataset.sampling import (
    GapCurriculum,
    draw_gaps,
    global_sample_indices,
    sample_clip_frames,
    scaled_gap,
)
from dataset.tps import evaluate_tps, random_control_points, solve_tps, warp_image_and_mask

# --------------------------------------------------------------------------- tiny data writers (shared)


def _scene(rng: np.random.Generator, height: int, width: int, t: int, objects: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy background with ``objects`` moving coloured rectangles -> (RGB uint8, label map uint8)."""
    image = (rng.random((height, width, 3)) * 60 + 80).astype(np.uint8)
    labels = np.zeros((height, width), np.uint8)
    for k in range(objects):
        y = 8 + (5 * k + 2 * t) % (height - 30)
        x = 10 + (25 * k + 3 * t) % (width - 30)
        colour = np.array([200, 40, 40]) if k == 0 else np.array([40, 40, 200])
        image[y : y + 20, x : x + 22] = colour
        labels[y : y + 20, x : x + 22] = k + 1
    return image, labels


def _palette_png(path: Path, labels: np.ndarray) -> None:
    im = Image.fromarray(labels, mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
    im.save(path)


def write_static_root(root: Path, count: int = 4, size: tuple[int, int] = (72, 96)) -> Path:
    """root/DUTS-TR/<name>.jpg + .png (grey 0/255), one object each."""
    folder = root / "DUTS-TR"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, labels = _scene(np.random.default_rng(i), *size, t=i, objects=1)
        Image.fromarray(image).save(folder / f"img{i}.jpg")
        Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L").save(folder / f"img{i}.png")
    return root


def write_video_roots(root: Path, frames: int = 12, size: tuple[int, int] = (72, 96)) -> tuple[Path, Path, Path]:
    """DAVIS 2017 trainval, YouTube train_480p and BL30K layouts with 2 videos each -> (davis, youtube, bl30k)."""
    davis, youtube, bl30k = root / "DAVIS" / "2017", root / "YouTube", root / "BL30K"
    layouts = {
        "davis": (davis / "trainval" / "JPEGImages" / "480p", davis / "trainval" / "Annotations" / "480p", 1),
        "youtube": (youtube / "train_480p" / "JPEGImages", youtube / "train_480p" / "Annotations", 5),
        "bl30k": (bl30k / "JPEGImages", bl30k / "Annotations", 1),
    }
    for name, (images, labels_dir, stride) in layouts.items():
        for v in range(2):
            video = f"{name}{v}"
            (images / video).mkdir(parents=True, exist_ok=True)
            (labels_dir / video).mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(v)
            for t in range(0, frames * stride, stride):
                image, labels = _scene(rng, *size, t=t // stride, objects=2 if v == 0 else 1)
                Image.fromarray(image).save(images / video / f"{t:05d}.jpg")
                _palette_png(labels_dir / video / f"{t:05d}.png", labels)
    listing = davis / "trainval" / "ImageSets" / "2017"
    listing.mkdir(parents=True, exist_ok=True)
    (listing / "train.txt").write_text("davis0\ndavis1\n")
    return davis, youtube, bl30k


# --------------------------------------------------------------------------- TPS


def test_tps_identity_when_destination_equals_source():
    rng = np.random.default_rng(0)
    image = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    mask = (rng.random((40, 50)) > 0.5).astype(np.uint8)
    src, _ = random_control_points(rng, 40, 50)
    warped, warped_mask = warp_image_and_mask(image, mask, src, src)
    assert np.array_equal(warped, image)
    assert np.array_equal(warped_mask, mask)


def test_tps_known_translation():
    rng = np.random.default_rng(1)
    image = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    mask = (rng.random((40, 50)) > 0.5).astype(np.uint8)
    src, _ = random_control_points(rng, 40, 50)
    dst = src + np.array([3 / 49, 2 / 39])  # 3 px right, 2 px down
    warped, warped_mask = warp_image_and_mask(image, mask, src, dst)
    assert np.array_equal(warped[2:, 3:], image[:-2, :-3])
    assert np.array_equal(warped_mask[2:, 3:], mask[:-2, :-3])
    assert warped_mask[:2].sum() == 0  # uncovered border is 0


def test_tps_interpolates_control_points_and_reproduces_affine():
    rng = np.random.default_rng(2)
    ctrl = rng.random((12, 2))
    values = rng.normal(size=(12, 2))
    theta = solve_tps(ctrl, values)
    assert theta.shape == (14, 2)  # reduced system: n + 2 unknowns
    np.testing.assert_allclose(evaluate_tps(theta, ctrl, ctrl), values, atol=1e-9)
    affine = ctrl @ np.array([[0.3, 0.1], [-0.2, 0.5]]) + 0.1
    theta = solve_tps(ctrl, affine)
    points = rng.random((7, 2))
    np.testing.assert_allclose(evaluate_tps(theta, ctrl, points), points @ np.array([[0.3, 0.1], [-0.2, 0.5]]) + 0.1,
                               atol=1e-9)


def test_random_control_points_distinct_rows_and_columns():
    src, dst = random_control_points(np.random.default_rng(3), 100, 120)
    assert src.shape == dst.shape == (12, 2)
    assert len(np.unique(src[:, 0])) == 12 and len(np.unique(src[:, 1])) == 12
    assert 0 < np.abs(dst - src).max() < 0.2


# --------------------------------------------------------------------------- sampling


def test_gap_curriculum_values():
    gap = GapCurriculum()
    total = 1000
    assert [gap(i, total) for i in (0, 99, 100, 250, 399, 400, 799, 850, 900, 999)] == [
        5, 5, 5, 10, 15, 15, 15, 10, 5, 5,
    ]
    values = [gap(i, total) for i in range(total)]
    peak = values.index(15)
    assert all(a <= b for a, b in zip(values[:peak], values[1 : peak + 1]))  # rises monotonically
    assert max(values) == 15 and min(values) == 5


def test_scaled_gap_for_youtube_stride():
    assert scaled_gap(5, 5) == 1 and scaled_gap(15, 5) == 3 and scaled_gap(3, 5) == 1 and scaled_gap(7, 1) == 7


@pytest.mark.parametrize("num_frames", [7, 20, 100])
def test_sampler_gaps_within_bounds_and_order(num_frames):
    reversed_seen = forward_seen = 0
    for seed in range(200):
        idx = sample_clip_frames(num_frames, np.random.default_rng(seed), (3, 3), inter_gap=15, intra_gap=5)
        assert len(idx) == 7 and min(idx) >= 0 and max(idx) < num_frames
        steps = np.diff(idx)
        if steps[0] > 0:
            forward_seen += 1
        else:
            reversed_seen += 1
            steps = -steps
        assert (steps >= 1).all()  # strictly monotone: enough frames
        assert steps[0] <= 15 and steps[3] <= 15  # into clip A, into clip B
        assert all(steps[i] <= 5 for i in (1, 2, 4, 5))  # inside clips
    assert reversed_seen > 50 and forward_seen > 50


def test_sampler_short_video_repeats_frames():
    idx = sample_clip_frames(3, np.random.default_rng(0), (3, 3), 15, 5, reverse_p=0.0)
    assert len(idx) == 7 and idx == sorted(idx) and max(idx) <= 2


def test_draw_gaps_shrinks_largest_first():
    gaps = draw_gaps(np.random.default_rng(0), (3, 3), 15, 5, available=6)
    assert gaps == [1] * 6


def test_global_sample_indices_same_global_batch_for_any_split():
    def union(world, accum):
        return sorted(i for r in range(world) for m in global_sample_indices(3, 8, r, world, accum) for i in m)

    assert union(1, 1) == union(2, 1) == union(2, 2) == union(1, 4) == list(range(24, 32))
    assert global_sample_indices(0, 8, 1, 2, 2) == [[2, 3], [6, 7]]


# --------------------------------------------------------------------------- datasets


def test_static_dataset_sample(tmp_path):
    from dataset.static_dataset import StaticDataset

    dataset = StaticDataset(write_static_root(tmp_path / "static"), crop=48, num_frames=3, seed=0)
    sample = dataset[5]
    assert sample["rgb"].shape == (3, 3, 48, 48) and sample["masks"].shape == (3, 1, 48, 48)
    assert sample["cls_gt"].dtype == torch.int64 and set(sample["cls_gt"].unique().tolist()) <= {0, 1}
    assert torch.equal(sample["masks"][:, 0].long(), sample["cls_gt"])
    assert sample["masks"].sum() > 0
    again = dataset[5]  # a pure function of the index
    assert torch.equal(sample["rgb"], again["rgb"]) and torch.equal(sample["masks"], again["masks"])
    assert not torch.equal(dataset[6]["rgb"], sample["rgb"])


def test_video_dataset_sample_and_determinism(tmp_path):
    from dataset.video_dataset import VideoDataset, davis_source, youtube_source

    davis, youtube, _ = write_video_roots(tmp_path)
    sources = [davis_source(davis), youtube_source(youtube)]
    assert [len(s.videos) for s in sources] == [2, 2] and sources[1].stride == 5
    dataset = VideoDataset(sources, crop=48, global_batch=2, seed=1)
    assert len(dataset) == 2 * 5 + 2  # 5 x DAVIS + 1 x YouTube
    for k in range(6):
        s = dataset[k]
        assert s["rgb"].shape == (7, 3, 48, 48) and s["masks"].shape == (7, 2, 48, 48)
        assert s["selector"][0] == 1
        expected = s["masks"][:, 0] + 2 * s["masks"][:, 1]
        assert torch.equal(expected.long(), s["cls_gt"])
        assert (s["masks"].sum(1) <= 1).all()  # objects are disjoint
        if s["selector"][1] == 0:
            assert s["masks"][:, 1].sum() == 0
    assert torch.equal(dataset[3]["rgb"], dataset[3]["rgb"])


def test_video_augment_max_scale_enlarges_every_crop():
    """Crops of at most max_scale of the frame's area see fewer columns of it than the unrestricted crops."""
    from dataset.augment import VideoAugment, to_image, to_mask

    columns = np.repeat(np.arange(1, 29, dtype=np.uint8), 8)[None].repeat(128, 0)  # label = 1 + x // 8, 28 labels
    frame = to_image(np.full((128, 224, 3), 100, np.uint8))

    def widest(augment: VideoAugment) -> int:
        torch.manual_seed(0)
        seen = []
        for _ in range(20):
            _, masks = augment([frame], [to_mask(columns)])
            seen.append(len(set(masks[0].unique().tolist()) - {0}))
        return max(seen)

    # A crop of <= 0.3 x 128 x 224 pixels at aspect <= 4/3 is <= 107 columns wide, <= 131 after the per-frame
    # rotation of <= 15 degrees: <= 18 labels. Unrestricted crops span up to the whole width.
    zoomed, full = widest(VideoAugment(112, 0.075, 0.3)), widest(VideoAugment(112))
    assert zoomed <= 18 < full


def test_video_dataset_sample_without_object(tmp_path):
    from dataset.video_dataset import VideoDataset, VideoSource

    folder_i, folder_m = tmp_path / "img" / "v", tmp_path / "ann" / "v"
    folder_i.mkdir(parents=True)
    folder_m.mkdir(parents=True)
    for t in range(4):
        Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(folder_i / f"{t:05d}.jpg")
        _palette_png(folder_m / f"{t:05d}.png", np.zeros((40, 40), np.uint8))
    source = VideoSource("empty", [(folder_i, folder_m, [f"{t:05d}" for t in range(4)])])
    sample = VideoDataset([source], crop=32)[0]
    assert sample["masks"].sum() == 0 and sample["cls_gt"].sum() == 0
    assert sample["selector"].tolist() == [1.0, 0.0]


def test_missing_dataset_folder_message(tmp_path):
    from dataset.static_dataset import find_static_images
    from dataset.video_dataset import DatasetNotFoundError, davis_source, youtube_source

    with pytest.raises(DatasetNotFoundError, match=r"--davis-root.*docs/training.md.*download.py davis"):
        davis_source(tmp_path / "nope")
    (tmp_path / "yt" / "train").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="resize_youtube.py"):
        youtube_source(tmp_path / "yt")
    with pytest.raises(DatasetNotFoundError, match="--static-root"):
        find_static_images(tmp_path / "none")


def test_bl30k_strict_label_rule():
    from dataset.video_dataset import usable_labels

    first = torch.zeros(1, 40, 40, dtype=torch.uint8)
    first[0, :10, :10] = 1  # 100 px: too small
    first[0, 20:32, 20:32] = 2  # 144 px, < 900; other frames small -> kept
    first[0, 0:5, 30:40] = 3  # 50 px
    other = torch.zeros_like(first)
    assert usable_labels([first, other], strict=False) == [1, 2, 3]
    assert usable_labels([first, other], strict=True) == [2]
    big = torch.full_like(first, 2)  # label 2 has >= 400 px in another frame -> dropped
    assert usable_labels([first, big], strict=True) == []


# --------------------------------------------------------------------------- scripts


def _load_script(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_resize_youtube_short_side_480(tmp_path):
    resize = _load_script("resize_youtube")
    assert resize.target_size(1280, 720) == (853, 480) and resize.target_size(720, 1280) == (480, 853)
    src = tmp_path / "YouTube" / "train"
    (src / "JPEGImages" / "v").mkdir(parents=True)
    (src / "Annotations" / "v").mkdir(parents=True)
    Image.fromarray(np.full((360, 640, 3), 90, np.uint8)).save(src / "JPEGImages" / "v" / "00000.jpg")
    labels = np.zeros((360, 640), np.uint8)
    labels[100:200, 100:300] = 2
    _palette_png(src / "Annotations" / "v" / "00000.png", labels)
    assert resize.main(["--root", str(tmp_path / "YouTube")]) == 0
    out = tmp_path / "YouTube" / "train_480p"
    with Image.open(out / "JPEGImages" / "v" / "00000.jpg") as im:
        assert im.size == (853, 480)
    with Image.open(out / "Annotations" / "v" / "00000.png") as im:
        assert im.mode == "P" and im.size == (853, 480)
        assert set(np.unique(np.asarray(im)).tolist()) == {0, 2}  # nearest: no new labels
    assert resize.resize_video(src, out, "v") == 0  # complete videos are skipped


class _FakeResponse:
    def __init__(self, payload: bytes) -> None:
        import io

        self.stream = io.BytesIO(payload)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)


def test_download_verifies_checksum_without_network(tmp_path):
    import hashlib

    download = _load_script("download")
    payload = b"weights" * 1000
    good = download.Item("https://example.invalid/w.pth", "w.pth", hashlib.sha256(payload).hexdigest()[:8])
    calls = []

    def opener(url):
        calls.append(url)
        return _FakeResponse(payload)

    path = download.fetch(good, tmp_path, opener)
    assert path.read_bytes() == payload and calls == [good.url]
    download.fetch(good, tmp_path, opener)  # present and valid: no second fetch
    assert len(calls) == 1
    bad = download.Item("https://example.invalid/x.pth", "x.pth", "00000000")
    with pytest.raises(download.DownloadError, match="checksum mismatch"):
        download.fetch(bad, tmp_path, opener)
    assert not (tmp_path / "x.pth").exists() and not list(tmp_path.glob(".*part"))


def test_download_cli_manual_and_offline(tmp_path, capsys):
    download = _load_script("download")
    assert download.main(["youtube"]) == 0 and "resize_youtube.py" in capsys.readouterr().out

    def offline(url):
        raise OSError("no network")

    assert download.main(["imagenet", "--out", str(tmp_path)], opener=offline) == 2
    assert "download failed" in capsys.readouterr().err
