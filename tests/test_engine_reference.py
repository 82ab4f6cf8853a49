"""The engine agrees with a naive core written straight from the spec, on cases the golden files lack:
other clip lengths, more objects, odd frame sizes (padding), late objects, a label frame that is also a
memory frame, parallel matching, and tiny grids (the refinement's relative-position quirk)."""

from __future__ import annotations

import pytest
import torch

from inference.engine import EngineConfig, FrameInput, PCVOSEngine, prepare_network
from model.network import PCVOS, PCVOSConfig
from tests.reference_core import reference_segment
from util.recipe_weights import apply_recipe


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return prepare_network(apply_recipe(PCVOS(PCVOSConfig.small())).eval())


def make_video(frames: int, height: int, width: int, labels: dict[int, list[int]], seed: int):
    """Random frames and blob labels: {frame: [object ids first appearing there]}."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(frames, 3, height, width, generator=g)
    maps = {}
    for t, ids in labels.items():
        m = torch.zeros(height, width, dtype=torch.int64)
        for obj in ids:
            y = int(torch.randint(0, height // 2, (1,), generator=g))
            x = int(torch.randint(0, width // 2, (1,), generator=g))
            m[y : y + height // 3, x : x + width // 3] = obj
        maps[t] = m
    return images, maps


def run_engine(net, images, labels, num_objects, **config):
    engine = PCVOSEngine(net, EngineConfig(**config))
    frames = (FrameInput(t, images[t], labels.get(t)) for t in range(images.shape[0]))
    out = torch.zeros(num_objects + 1, *images.shape[:1], *images.shape[-2:])
    out[0] = 1e-7
    seen = []
    for result in engine.segment(frames, num_objects=num_objects):
        out[: result.prob.shape[0], result.index] = result.prob
        seen.append(result.index)
    return out, seen


CASES = [
    # frames, H, W, labels, L, memory_read
    (9, 70, 90, {0: [1, 2]}, 3, "pmm"),  # odd size -> padding, two full clips + memory
    (13, 64, 128, {0: [1], 4: [2, 3]}, 10, "pmm"),  # late objects, PMM appends inside a 9-frame clip
    (12, 48, 80, {0: [1, 2], 6: [3]}, 3, "pmm"),  # label frame 6 is also a clip-end memory frame
    (12, 112, 130, {0: [1, 2]}, 11, "parallel"),  # parallel matching, 8 x 9 grid with shifted windows
    (6, 40, 40, {1: [2]}, 1, "pmm"),  # L = 1, object id 2 only, first label at frame 1
]


@pytest.mark.parametrize("frames,height,width,labels,clip_length,mode", CASES)
def test_engine_matches_reference(small_net, frames, height, width, labels, clip_length, mode):
    images, maps = make_video(frames, height, width, labels, seed=frames * 7 + clip_length)
    k = max(i for ids in labels.values() for i in ids)
    with torch.no_grad():
        ref = reference_segment(small_net, images, maps, k, clip_length, parallel=mode == "parallel")
    ours, seen = run_engine(small_net, images, maps, k, clip_length=clip_length, memory_read=mode)
    first = min(labels)
    assert seen == list(range(first, frames))
    err = (ours[:, first:] - ref[:, first:]).abs().max().item()
    assert err <= 1e-4, f"max |engine - reference| = {err}"
    # the case is not degenerate: objects are predicted and the schedule matters
    assert (ours[1:, first + 1 :].amax() > 0.3).item()


def test_pmm_equals_parallel_up_to_five_frames(small_net):
    images, maps = make_video(11, 64, 96, {0: [1, 2]}, seed=3)
    pmm, _ = run_engine(small_net, images, maps, 2, clip_length=5, memory_read="pmm")
    par, _ = run_engine(small_net, images, maps, 2, clip_length=5, memory_read="parallel")
    assert (pmm - par).abs().max() <= 1e-4
    pmm10, _ = run_engine(small_net, images, maps, 2, clip_length=10, memory_read="pmm")
    par10, _ = run_engine(small_net, images, maps, 2, clip_length=10, memory_read="parallel")
    assert (pmm10[:, 6:] - par10[:, 6:]).abs().max() > 1e-4  # frames 6.. see frame 5 only with PMM


def test_required_frames_only_skips_frames(small_net):
    images, maps = make_video(11, 48, 64, {0: [1]}, seed=5)
    engine = PCVOSEngine(small_net, EngineConfig(clip_length=2))
    frames = (FrameInput(t, images[t], maps.get(t), required=t % 5 == 0) for t in range(11))
    assert [r.index for r in engine.segment(frames)] == [0, 5, 10]


def test_bf16_runs_and_stays_close(small_net):
    images, maps = make_video(6, 48, 64, {0: [1, 2]}, seed=9)
    fp32, _ = run_engine(small_net, images, maps, 2, clip_length=5)
    bf16, _ = run_engine(small_net, images, maps, 2, clip_length=5, precision="bf16")
    assert torch.isfinite(bf16).all()
    top = fp32.topk(2, dim=0).values
    confident = (top[0] - top[1]) > 0.2  # random weights leave many near-ties elsewhere
    agree = (fp32.argmax(0) == bf16.argmax(0))[confident].float().mean()
    assert confident.float().mean() > 0.1 and agree > 0.97, (confident.float().mean(), agree)


def test_flip_is_mirror_symmetric_and_changes_the_masks(small_net):
    """Mirror test-time augmentation: segmenting the mirrored video gives the mirrored masks, exactly (the two
    memories swap roles), which fails if either memory gets a mask the wrong way round; and it is not a no-op."""
    images, maps = make_video(8, 48, 64, {0: [1, 2], 3: [3]}, seed=11)  # no padding: 48 x 64
    mirrored = {t: m.flip(-1) for t, m in maps.items()}
    ours, seen = run_engine(small_net, images, maps, 3, clip_length=2, flip=True)
    theirs, _ = run_engine(small_net, images.flip(-1), mirrored, 3, clip_length=2, flip=True)
    assert seen == list(range(8))
    assert (ours - theirs.flip(-1)).abs().max() <= 1e-6
    plain, _ = run_engine(small_net, images, maps, 3, clip_length=2)
    assert (ours[:, 1:] - plain[:, 1:]).abs().max() > 1e-2
    assert (ours[1:, 1:].amax() > 0.3).item()

