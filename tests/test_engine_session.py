"""The engine driven one frame at a time (push / flush), sessions copied and resumed, frames of the wrong size
refused with a message naming them, and network preparation as an explicit step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dataset.frames import video_from_folders
from inference.engine import EngineConfig, FrameInput, PCVOSEngine, prepare_network
from inference.runner import segment_source
from model.network import PCVOS, PCVOSConfig
from model.refine import ClipAttention
from tests.test_engine_reference import make_video
from util.palette import write_index_png
from util.recipe_weights import apply_recipe


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return prepare_network(apply_recipe(PCVOS(PCVOSConfig.small())).eval())


def _frames(images, maps):
    return [FrameInput(t, images[t], maps.get(t)) for t in range(images.shape[0])]


def test_push_returns_masks_when_their_clip_is_complete_and_equals_segment(small_net):
    images, maps = make_video(9, 48, 64, {0: [1, 2], 5: [3]}, seed=21)
    engine = PCVOSEngine(small_net, EngineConfig(clip_length=3))
    whole = list(engine.segment(_frames(images, maps), num_objects=3))

    session = engine.start(num_objects=3)
    arrived, pushed = [], []
    for frame in _frames(images, maps):
        out = session.push(frame)
        arrived.append([r.index for r in out])
        pushed += out
    tail = session.flush()
    # label at 0 is final at once; clips of 3 restart at the label of frame 5, which ends a short clip
    assert arrived == [[0], [], [], [1, 2, 3], [], [4, 5], [], [], [6, 7, 8]]
    assert tail == []
    assert [r.index for r in whole] == [r.index for r in pushed] == list(range(9))
    assert all(torch.equal(a.prob, b.prob) for a, b in zip(whole, pushed))

    session = engine.start(num_objects=3)
    for frame in _frames(images, maps)[:8]:
        session.push(frame)
    assert session.pending == (6, 7)
    assert [r.index for r in session.flush()] == [6, 7]  # the last, short clip
    with pytest.raises(RuntimeError, match="flushed"):
        session.push(_frames(images, maps)[8])


def test_snapshot_resumes_exactly(small_net):
    images, maps = make_video(10, 48, 64, {0: [1, 2]}, seed=22)
    engine = PCVOSEngine(small_net, EngineConfig(clip_length=3))
    frames = _frames(images, maps)
    session = engine.start(num_objects=2)
    for frame in frames[:4]:
        session.push(frame)
    assert session.pending == ()
    copy = session.snapshot()
    first = [r for f in frames[4:] for r in session.push(f)] + session.flush()
    second = [r for f in frames[4:] for r in copy.push(f)] + copy.flush()
    assert [r.index for r in first] == [r.index for r in second] == list(range(4, 10))
    assert all(torch.equal(a.prob, b.prob) for a, b in zip(first, second))
    session = engine.start(num_objects=2)
    session.push(frames[0])
    session.push(frames[1])
    with pytest.raises(RuntimeError, match="between clips"):
        session.snapshot()


def test_drop_objects_stops_tracking(small_net):
    images, maps = make_video(7, 48, 64, {0: [1, 2]}, seed=23)
    engine = PCVOSEngine(small_net, EngineConfig(clip_length=2))
    session = engine.start()
    frames = _frames(images, maps)
    before = [r for f in frames[:3] for r in session.push(f)]
    assert before[-1].prob[1].amax() > 0.3
    session.drop_objects([1])
    assert session.objects == [2]
    after = [r for f in frames[3:] for r in session.push(f)] + session.flush()
    assert [r.index for r in after] == [3, 4, 5, 6]
    assert all(r.prob.shape[0] == 3 and r.prob[1].abs().max() == 0 for r in after)
    assert all(r.prob[2].amax() > 0.3 for r in after)


def test_frame_of_another_size_is_refused_with_its_name(small_net):
    images, maps = make_video(4, 48, 64, {0: [1]}, seed=24)
    engine = PCVOSEngine(small_net, EngineConfig(clip_length=2))
    frames = _frames(images, maps)
    frames[3] = FrameInput(3, torch.zeros(3, 48, 80), source="00003.jpg")
    with pytest.raises(ValueError) as error:
        list(engine.segment(frames))
    message = str(error.value)
    assert "frame 3 (00003.jpg)" in message and "80x48" in message and "64x48" in message and "frame 0" in message
    wrong_label = [FrameInput(0, images[0], maps[0][:40])]
    with pytest.raises(ValueError, match="frame 0: its label is 64x40 but the frame is 64x48"):
        list(engine.segment(wrong_label))


def test_folder_with_frames_of_another_aspect_ratio_names_the_file(small_net, tmp_path):
    frames_dir, masks_dir = tmp_path / "JPEGImages" / "v", tmp_path / "Annotations" / "v"
    frames_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(4):
        width = 96 if t == 2 else 64  # frame 2: another aspect ratio
        Image.fromarray(rng.integers(0, 255, (48, width, 3), dtype=np.uint8)).save(frames_dir / f"{t:05d}.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 10:30] = 1
    write_index_png(masks_dir / "00000.png", mask)
    engine = PCVOSEngine(small_net, EngineConfig(clip_length=2))
    source = video_from_folders("v", frames_dir, masks_dir)
    with pytest.raises(ValueError, match=r"frame 2 \(.*00002\.png\): size 96x48 .* 64x48"):
        segment_source(engine, source, size=-1, output=None, writer=None, workers=0)


def test_engine_construction_leaves_the_network_alone():
    torch.manual_seed(0)
    net = PCVOS(PCVOSConfig.small()).eval()
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    attention = [m for m in net.modules() if isinstance(m, ClipAttention)]
    assert attention
    config = EngineConfig(fused_attention=True)  # channels_last is on by default
    PCVOSEngine(net, config)
    assert conv.weight.is_contiguous() and not any(m.fused for m in attention)
    assert prepare_network(net, config) is net
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert all(m.fused for m in attention)
    PCVOSEngine(net, EngineConfig(clip_length=2, fused_attention=True))  # another L on the same network: fine
    with pytest.raises(ValueError, match="prepared with"):
        PCVOSEngine(net, EngineConfig())  # fused_attention differs from the preparation
    prepare_network(net, EngineConfig(channels_last=False))
    assert conv.weight.is_contiguous() and not any(m.fused for m in attention)
