"""The one mask reader (dataset/masks.py): its rules, the anti-aliasing check, and both paths that use it.

Valid masks come from dataset/synthetic.py (small objects, up to 10 objects, touching and occluding
each other); smoothed ones are made from them the way image tools make them (Gaussian blur, bilinear
resize of the greyscale, RGB or palette image, JPEG). Every smoothed mask must be refused, every valid
one read exactly.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import segment
from dataset import synthetic as syn
from dataset.benchmarks import generic_benchmark, merge_objects, read_user_masks
from dataset.frames import VideoSource, frame_loader, label_palette, label_values, video_from_folders
from dataset.masks import MaskError, MaskReader, check_antialiasing, read_mask
from util.palette import davis_palette, write_index_png

REPO = Path(__file__).resolve().parents[1]
H, W = 64, 112


def _mask(objects: int = 2, height: int = 120, width: int = 200, seed: int = 0,
          scale: tuple[float, float] = (0.12, 0.3)) -> np.ndarray:
    """A synthetic first-frame label map uint8 [H, W] with ids 1..objects (occluding one another)."""
    config = syn.SyntheticConfig(num_frames=1, height=height, width=width, num_objects=objects,
                                 num_distractors=1, object_scale=scale, seed=seed)
    return syn.render_frame(syn.build_scene(config), 0)[1]


def _refused(path: Path, *fragments: str) -> str:
    with pytest.raises(MaskError) as error:
        MaskReader().read(path)
    message = str(error.value)
    assert message.startswith(f"{path}: mask looks anti-aliased"), message
    assert "nearest-neighbour" in message and "--mask-values ids" in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------- the rules


def test_palette_grey_binary_void_and_16_bit_rules(tmp_path):
    ids = np.zeros((40, 40), np.uint8)
    ids[2:12, 2:12], ids[20:30, 5:15], ids[5:15, 25:35] = 1, 3, 7
    write_index_png(tmp_path / "p.png", ids)
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), ids)  # palette: indices are ids
    with_void = ids.copy()
    with_void[0, :] = 255
    Image.fromarray(with_void).save(tmp_path / "g.png")  # greyscale ids, 255 = void next to other ids
    np.testing.assert_array_equal(read_mask(tmp_path / "g.png"), ids)
    one = (ids > 0).astype(np.uint8)
    for value, mode in ((255, "L"), (1, "L"), (255, "P"), (65535, "I;16"), (1, "I;16")):
        path = tmp_path / f"binary_{value}_{mode.replace(';', '')}.png"
        raw = one.astype(np.uint16) * value
        if mode == "P":
            write_index_png(path, raw.astype(np.uint8))
        else:
            Image.fromarray(raw.astype(np.uint16 if mode == "I;16" else np.uint8)).save(path)
        file = MaskReader().read_file(path)
        np.testing.assert_array_equal(file.ids, one)  # one object, id 1
        assert file.binary_value == min(value, 255)
    Image.fromarray(ids.astype(np.uint16)).save(tmp_path / "ids16.png")  # 16-bit ids that fit
    assert Image.open(tmp_path / "ids16.png").mode.startswith("I")
    np.testing.assert_array_equal(read_mask(tmp_path / "ids16.png"), ids)
    Image.fromarray(ids.astype(np.uint16) * 300).save(tmp_path / "big16.png")
    with pytest.raises(MaskError, match=r"big16.png: 16-bit greyscale values up to 2100 .* do not fit 8-bit"):
        read_mask(tmp_path / "big16.png")


def test_rgb_colours_are_objects_stable_across_files_and_keep_their_colours(tmp_path):
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[2:10, 20:30] = (0, 0, 255)  # first in raster order -> object 1
    rgb[20:30, 2:10] = (255, 0, 0)  # -> object 2
    Image.fromarray(rgb).save(tmp_path / "a.png")
    later = np.zeros((40, 40, 4), np.uint8)
    later[5:15, 5:15] = (255, 0, 0, 255)  # same colour, same object
    later[25:35, 25:35] = (10, 200, 50, 255)  # new colour -> object 3
    later[0:4, 0:4] = (90, 90, 90, 0)  # transparent -> background
    Image.fromarray(later).save(tmp_path / "b.png")
    reader = MaskReader()
    a, b = reader.read(tmp_path / "a.png"), reader.read(tmp_path / "b.png")
    assert a[5, 25] == 1 and a[25, 5] == 2 and set(np.unique(a)) == {0, 1, 2}
    assert b[10, 10] == 2 and b[30, 30] == 3 and b[2, 2] == 0 and set(np.unique(b)) == {0, 2, 3}
    assert reader.palette[3].tolist() == [10, 200, 50] and reader.palette[1].tolist() == [0, 0, 255]


# --------------------------------------------------------------------------- anti-aliasing


def test_blurred_greyscale_mask_is_refused_with_the_evidence(tmp_path):
    grey = np.where(_mask(1, 240, 432) > 0, 255, 0).astype(np.uint8)
    Image.fromarray(cv2.GaussianBlur(grey, (0, 0), 1.5)).save(tmp_path / "blur.png")
    count = len(np.unique(np.array(Image.open(tmp_path / "blur.png")))) - 1
    assert count > 100  # what used to become > 100 objects
    message = _refused(tmp_path / "blur.png", f"{count} distinct values", "along the boundaries between other regions",
                       "< 0.1 % of the image")
    assert "save it without smoothing" in message
    many = MaskReader("ids").read(tmp_path / "blur.png")  # the documented way to say "these are objects"
    assert len(np.unique(many)) - 1 == count - 1  # every value an object, 255 void


@pytest.mark.parametrize("how", ["bilinear up 2x (cv2)", "bilinear down 2x (cv2)", "PIL bilinear x1.37",
                                 "PIL bilinear x0.73", "jpeg"])
def test_resized_or_compressed_greyscale_masks_are_refused(tmp_path, how):
    grey = np.where(_mask(2, 240, 432, seed=1) > 0, 255, 0).astype(np.uint8)
    h, w = grey.shape
    if how.startswith("bilinear"):
        factor = 2 if "up" in how else 0.5
        out = cv2.resize(grey, (int(w * factor), int(h * factor)), interpolation=cv2.INTER_LINEAR)
    elif how == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(grey).save(buffer, format="JPEG", quality=90)
        out = np.array(Image.open(buffer))
    else:
        factor = float(how.rsplit("x", 1)[1])
        out = np.array(Image.fromarray(grey).resize((int(w * factor), int(h * factor)), Image.BILINEAR))
    Image.fromarray(out).save(tmp_path / "m.png")
    _refused(tmp_path / "m.png")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bilinear_resized_rgb_and_palette_masks_are_refused(tmp_path, seed):
    ids = _mask(3, 120, 200, seed=seed)
    rgb = Image.fromarray(davis_palette()[ids])
    rgb.resize((300, 180), Image.BILINEAR).save(tmp_path / "rgb.png")
    _refused(tmp_path / "rgb.png", "distinct colours")
    rgb.resize((160, 96), Image.BILINEAR).quantize(64).save(tmp_path / "quantized.png")  # editor: RGB -> indexed
    assert Image.open(tmp_path / "quantized.png").mode == "P"
    _refused(tmp_path / "quantized.png")
    youtube_ids = np.array([0, 1, 3, 7, 9, 12], np.float32)[ids]  # non-contiguous ids, resized as numbers
    resized = cv2.resize(youtube_ids, (300, 180), interpolation=cv2.INTER_LINEAR)
    write_index_png(tmp_path / "index.png", np.round(resized).astype(np.uint8))
    _refused(tmp_path / "index.png")


@pytest.mark.parametrize("mode", ["palette", "grey", "rgb"])
def test_valid_synthetic_masks_are_accepted_and_read_exactly(tmp_path, mode):
    """Small objects, up to 10 objects that occlude and touch each other, several sizes: never refused."""
    checked = 0
    for seed in range(6):
        for objects, (h, w), scale in ((1, (64, 112), (0.12, 0.3)), (3, (64, 112), (0.05, 0.3)),
                                       (6, (120, 200), (0.03, 0.08)), (10, (240, 432), (0.05, 0.3)),
                                       (10, (64, 112), (0.12, 0.3)), (10, (240, 432), (0.03, 0.07))):
            ids = _mask(objects, h, w, seed=seed, scale=scale)
            path = tmp_path / f"{mode}.png"
            if mode == "palette":
                write_index_png(path, ids)
            elif mode == "grey":
                Image.fromarray(ids).save(path)
            else:
                Image.fromarray(davis_palette()[ids]).save(path)
            got = MaskReader().read(path)
            if mode == "rgb":  # numbered by first appearance: the same partition, maybe other numbers
                pairs = set(zip(ids.ravel().tolist(), got.ravel().tolist()))
                assert len(pairs) == len(np.unique(ids)) == len(np.unique(got)), (seed, objects)
            else:
                np.testing.assert_array_equal(got, ids)
            checked += 1
    assert checked == 36


def test_detector_evidence_counts():
    ring = np.zeros((64, 64), np.int64)
    ring[16:48, 16:48] = 255
    blurred = cv2.GaussianBlur(ring.astype(np.uint8), (0, 0), 2).astype(np.int64)
    evidence = check_antialiasing(blurred, [np.unique(blurred)[:, None]])
    assert evidence.antialiased and evidence.blends >= evidence.values // 2 and evidence.blends >= 10
    sharp = check_antialiasing(ring, [np.unique(ring)[:, None]])
    assert not sharp.antialiased and sharp.values == 1 and sharp.blends == 0


# --------------------------------------------------------------------------- both paths, one reader


def test_annotation_folders_read_exactly_as_before(tmp_path):
    """Palette ids 1..K, YouTube's non-contiguous ids and a 0/255 binary mask: the values the
    annotation-folder drivers segment and write are unchanged (the previous rule, kept here as reference)."""

    def previous_rule(paths: list[Path]) -> list[int]:
        values = set()
        for path in paths:
            values.update(int(v) for v in np.unique(np.array(Image.open(path))) if v > 0)
        return [255] if values == {255} else sorted(v for v in values if v < 255)

    config = syn.SyntheticConfig(num_frames=12, height=H, width=W, num_objects=3, late_objects=1, seed=2)
    syn.write_youtube(tmp_path / "yv", syn.make_split("yv", 3, config, seed=2))
    syn.write_davis(tmp_path / "davis", syn.make_split("dv", 2, syn.SyntheticConfig(
        num_frames=4, height=H, width=W, num_objects=4), seed=1, allow_late=False))
    syn.write_davis2016(tmp_path / "d16", syn.make_split("dv", 1, syn.SyntheticConfig(
        num_frames=4, height=H, width=W, num_objects=1), seed=1, allow_late=False))
    folders = [p for p in (tmp_path / "yv" / "valid" / "Annotations").iterdir()]
    folders += [p for p in (tmp_path / "davis" / "Annotations" / "480p").iterdir()]
    folders += [p for p in (tmp_path / "d16" / "Annotations" / "480p").iterdir()]
    assert any(previous_rule(sorted(f.glob("*.png"))) == [255] for f in folders)  # the 2016 binary masks
    assert any(max(previous_rule(sorted(f.glob("*.png")))) > len(previous_rule(sorted(f.glob("*.png"))))
               for f in folders)  # non-contiguous YouTube ids
    for folder in folders:
        pngs = sorted(folder.glob("*.png"))
        source = VideoSource(folder.name, [], dict(enumerate(pngs)))
        assert label_values(source) == previous_rule(pngs), folder
        for png in pngs:
            raw = np.array(Image.open(png))
            expected = (raw > 0).astype(np.uint8) if set(np.unique(raw)) == {0, 255} else np.where(raw == 255, 0, raw)
            np.testing.assert_array_equal(MaskReader().read_file(png).ids, expected)


def _generic(root: Path, first: np.ndarray | Image.Image, frames: int = 3) -> Path:
    config = syn.SyntheticConfig(num_frames=frames, height=H, width=W, num_objects=1, seed=9)
    syn.write_generic(root, [syn.VideoSpec("v", config)])
    png = root / "Annotations" / "v" / "00000.png"
    (first if isinstance(first, Image.Image) else Image.fromarray(first)).save(png)
    return png


def test_annotation_folder_and_segment_masks_follow_the_same_rules(tmp_path):
    """RGB and 16-bit annotations, refused before, now read in annotation folders as segment.py reads them;
    a blurred annotation is refused in both."""
    ids = _mask(2, H, W, seed=3)
    for name, image in (("rgb", Image.fromarray(davis_palette()[ids])), ("grey16", Image.fromarray(
            ids.astype(np.uint16))), ("palette", None)):
        root = tmp_path / name
        png = _generic(root, image if image is not None else ids)
        if image is None:
            write_index_png(png, ids)
        source = generic_benchmark(root, tmp_path / "out").sources[0]
        values = label_values(source)
        item = next(iter(frame_loader(source, -1, {v: i + 1 for i, v in enumerate(values)}, workers=0)))
        user = MaskReader().read(png, (H, W))
        assert values == sorted(int(v) for v in np.unique(user) if v)
        np.testing.assert_array_equal(np.array([0, *values])[item["label"].numpy()], user)
        if name == "rgb":
            assert label_palette(source)[1].tolist() == davis_palette()[ids[ids > 0][0]].tolist()
    blurred = cv2.GaussianBlur(np.where(ids > 0, 255, 0).astype(np.uint8), (0, 0), 1.5)
    png = _generic(tmp_path / "blurred", blurred)
    with pytest.raises(MaskError, match=r"00000.png: mask looks anti-aliased"):
        label_values(video_from_folders("v", tmp_path / "blurred" / "JPEGImages" / "v", png.parent))
    assert label_values(video_from_folders("v", tmp_path / "blurred" / "JPEGImages" / "v", png.parent, "ids"))
    stream = type("S", (), {"count": 3, "size": (H, W), "path": png})()
    with pytest.raises(MaskError, match=r"00000.png: mask looks anti-aliased"):
        read_user_masks([str(png)], stream)
    labels, _ = read_user_masks([str(png)], stream, "ids")
    assert len(np.unique(labels[0])) > 20


def test_davis2016_merge_reads_by_the_same_rules(tmp_path):
    ids = _mask(3, H, W, seed=4)
    raw = ids.copy()
    raw[0, :] = 255  # void border: not part of the merged object
    write_index_png(tmp_path / "a.png", raw)
    merge_objects(tmp_path / "a.png", tmp_path / "merged.png")
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "merged.png")), (ids > 0).astype(np.uint8))


# --------------------------------------------------------------------------- drivers


def test_segment_refuses_blurred_and_antialiased_masks_before_any_work(tmp_path):
    config = syn.SyntheticConfig(num_frames=3, height=H, width=W, num_objects=1, seed=9)
    syn.write_generic(tmp_path / "g", [syn.VideoSpec("v", config)])
    ids = syn.generate_video(config).masks[0]
    grey = cv2.GaussianBlur(np.where(ids > 0, 255, 0).astype(np.uint8), (0, 0), 1.5)
    Image.fromarray(grey).save(tmp_path / "blur.png")
    big = Image.fromarray(davis_palette()[cv2.resize(ids, (W // 2, H // 2), interpolation=cv2.INTER_NEAREST)])
    big.resize((W, H), Image.BILINEAR).save(tmp_path / "aa_rgb.png")
    for name in ("blur.png", "aa_rgb.png"):
        with pytest.raises(MaskError) as error:
            segment.main(["--video", str(tmp_path / "g" / "JPEGImages" / "v"), "--mask", str(tmp_path / name),
                          "--output", str(tmp_path / "o"), "--device", "cpu", "--workers", "0"])
        assert str(error.value).startswith(f"{tmp_path / name}: mask looks anti-aliased")
        assert not (tmp_path / "o").exists()


def test_mask_values_flag_in_every_driver():
    import eval_davis
    import eval_generic
    import eval_youtube
    import inference_pretrained_pcvos

    required = {
        segment: ["--video", "v.mp4", "--mask", "m.png", "--output", "o"],
        eval_generic: ["--data", "d", "--output", "o"],
        eval_davis: ["--davis-path", "d", "--output", "o"],
        eval_youtube: ["--yv-path", "y", "--output", "o"],
        inference_pretrained_pcvos: ["--yv-path", "y", "--yv2018-path", "y", "--output", "o"],
    }
    for driver, argv in required.items():
        assert driver.parse_args(argv).mask_values == "auto", driver
        assert driver.parse_args([*argv, "--mask-values", "ids"]).mask_values == "ids", driver
        with pytest.raises(SystemExit):
            driver.parse_args([*argv, "--mask-values", "colours"])


def test_eval_generic_refuses_blurred_annotation_and_takes_it_with_mask_values_ids(small_model, tmp_path):
    ids = _mask(1, H, W, seed=5)
    grey = np.where(ids > 0, 255, 0).astype(np.uint8)
    upscaled = cv2.resize(grey[::2, ::2], (W, H), interpolation=cv2.INTER_LINEAR)  # 0, 64, 191, 255 (and a few)
    _generic(tmp_path / "data", upscaled)
    base = [sys.executable, str(REPO / "eval_generic.py"), "--data", str(tmp_path / "data"), "--model",
            str(small_model), "--device", "cpu", "--workers", "0", "--size", "-1"]
    refused = subprocess.run([*base, "--output", str(tmp_path / "a")], capture_output=True, text=True, timeout=300,
                             cwd=REPO)
    assert refused.returncode != 0
    assert f"{tmp_path / 'data' / 'Annotations' / 'v' / '00000.png'}: mask looks anti-aliased" in refused.stderr
    taken = subprocess.run([*base, "--output", str(tmp_path / "b"), "--mask-values", "ids"], capture_output=True,
                           text=True, timeout=300, cwd=REPO)
    assert taken.returncode == 0, taken.stderr
    values = sorted(set(np.unique(upscaled).tolist()) - {0, 255})
    written = set(np.unique(np.array(Image.open(tmp_path / "b" / "v" / "00000.png"))).tolist())
    assert written == {0, *values}  # every value an object, written back with its own id
