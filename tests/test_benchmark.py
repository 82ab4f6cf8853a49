"""Speed paths keep the numbers: shared decoder terms, the official-like baseline, reduced precision;
and scripts/benchmark.py writes its report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dataset.frames import prepare_image
from inference.engine import EngineConfig, FrameInput, PCVOSEngine, prepare_network
from model.memory import bag_readout, l2_affinity, topk_affinity
from model.network import PCVOS, PCVOSConfig
from model.refine import effective_window, shift_attention_mask, window_partition, window_reverse
from scripts import benchmark
from scripts.official_like import OfficialLikeCore
from tests.reference_core import gather_readout, topk_weights
from util.recipe_weights import apply_recipe


@pytest.fixture(scope="module")
def small_net():
    return apply_recipe(PCVOS(PCVOSConfig.small())).eval()


@pytest.fixture(scope="module")
def video():
    """A generated 3-object scene at 64x112: uint8 frames [T, H, W, 3], normalised [T, 3, H, W], label [H, W]."""
    frames, label = benchmark.make_video(8, 64, 112, 3, seed=1)
    images = torch.stack([prepare_image(f, -1) for f in frames])
    return frames, images, torch.from_numpy(label.astype(np.int64))


def run(net, images, label, objects, **config):
    engine = PCVOSEngine(prepare_network(net, EngineConfig(**config)), EngineConfig(**config))
    frames = (FrameInput(t, images[t], label if t == 0 else None) for t in range(images.shape[0]))
    return torch.stack([r.prob for r in engine.segment(frames, num_objects=objects)], dim=1)  # [K + 1, T, H, W]


def test_decode_objects_equals_decode(small_net):
    """The shared-context decoder path gives the plain decoder's logits, row by row."""
    g = torch.Generator().manual_seed(0)
    objects, frames = 3, 2
    with torch.no_grad():
        feats = small_net.encode_key(torch.randn(frames, 3, 48, 64, generator=g))
        readout = torch.randn(objects * frames, small_net.config.value_dim, 3, 4, generator=g)
        index = torch.arange(objects * frames) % frames
        plain = small_net.decode(readout, feats.f16_thin[index], feats.f8[index], feats.f4[index])
        context = small_net.decode_context(feats.f16_thin, feats.f8, feats.f4)
        shared = small_net.decode_objects(readout, context)
    assert shared.shape == plain.shape
    assert (shared - plain).abs().max() <= 1e-5 * plain.abs().max()


def test_official_like_core_matches_engine(small_net, video):
    _, images, label = video
    ours = run(small_net, images, label, 3, clip_length=5)
    core = OfficialLikeCore(small_net, clip_length=5)
    theirs = core.segment(images, label, 3)
    assert (ours - theirs).abs().max() <= 1e-4


def test_bf16_masks_agree_with_fp32():
    """bf16 autocast on the CPU: masks agree with fp32 wherever fp32 is not a near-tie.

    The paper network with recipe weights (the small one with recipe weights
    predicts every object almost everywhere: all near-ties).
    """
    net = apply_recipe(PCVOS()).eval()
    frames, label = benchmark.make_video(5, 48, 80, 2, seed=1)
    images = torch.stack([prepare_image(f, -1) for f in frames])
    label = torch.from_numpy(label.astype(np.int64))
    fp32 = run(net, images, label, 2, clip_length=2)[:, 1:]
    bf16 = run(net, images, label, 2, clip_length=2, precision="bf16")[:, 1:]
    assert torch.isfinite(bf16).all()
    top = fp32.topk(2, dim=0).values
    confident = (top[0] - top[1]) > 0.05  # recipe weights are untrained: near-ties elsewhere
    agree = (fp32.argmax(0) == bf16.argmax(0))[confident].float().mean()
    assert confident.float().mean() > 0.5 and agree >= 0.995, (confident.float().mean(), agree)


def test_benchmark_script_writes_reports(tmp_path):
    out = tmp_path / "bench"
    (tmp_path / "bench.md").write_text("# Benchmarks\n\nprose that must survive\n")
    argv = ["--size", "32x48", "--frames", "3", "--clip-lengths", "2", "--repeats", "1", "--warmup", "1",
            "--model", "small-recipe", "--baseline", "--end-to-end", "--videos", "1", "--workers", "0",
            "--device", "cpu", "--profile", "--out", str(out), "--quiet"]
    assert benchmark.main(argv) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    run_ = data["runs"]["cpu-32x48-K2-T3"]
    assert run_["size"] == "32x48" and run_["objects"] == 2 and run_["clip_lengths"] == [2]
    variants = {(r["variant"], r["precision"]) for r in run_["engine"]}
    assert variants == {("ours", "fp32"), ("ours", "bf16"), ("official-like", "fp32")}
    for row in run_["engine"]:
        assert row["fps"] > 0 and row["peak_rss_mb"] > 0 and row["speedup_vs_official_like"] > 0
        assert len(row["seconds"]) == 1 and row["cuda_max_allocated_mb"] is None
        assert row["median_cpu_seconds"] > 0 and row["cpu_time_speedup_vs_official_like"] > 0
        assert row["profile_seconds"]["total"] > 0 and "encode_key" in row["profile_seconds"]
    baseline = next(r for r in run_["engine"] if r["variant"] == "official-like")
    assert baseline["max_prob_diff_vs_ours_fp32"] <= 1e-4
    assert {(r["variant"], r["precision"]) for r in run_["end_to_end"]} == variants
    text = (tmp_path / "bench.md").read_text()
    assert "prose that must survive" in text and "### cpu-32x48-K2-T3" in text and "| 2 | ours | bf16 |" in text
    run_["frames"] = 99
    benchmark.write_reports(out, "cpu-32x48-K2-T3", run_)  # a re-run replaces its block instead of appending
    text = (tmp_path / "bench.md").read_text()
    assert text.count("### cpu-32x48-K2-T3") == 1 and "99 frames" in text and "prose that must survive" in text


@pytest.mark.parametrize("size", [(2, 9, 12), (3, 5, 8)])  # shifted windows with padding; windows shrunk to the grid
def test_fused_refinement_attention_equals_explicit(size):
    torch.manual_seed(0)
    refiner = apply_recipe(PCVOS(PCVOSConfig.small())).eval().refine_transformer
    keys = torch.randn(1, 64, *size)
    values = torch.randn(3, 128, *size)  # three objects share the key row
    with torch.no_grad():
        explicit = refiner(keys, values)
        for module in refiner.modules():
            if hasattr(module, "fused"):
                module.fused = True
        fused = refiner(keys, values)
    assert (fused - explicit).abs().max() <= 1e-5


def test_bag_readout_equals_gather_readout():
    """Query-major affinity + embedding-bag readout = the [N, M] affinity + gather readout."""
    g = torch.Generator().manual_seed(0)
    keys, queries = torch.randn(16, 300, generator=g), torch.randn(16, 70, generator=g)
    values = torch.randn(3, 24, 300, generator=g)  # [O, Cv, N]
    weights, indices = topk_weights(l2_affinity(keys, queries), 20)
    expected = gather_readout(values, weights, indices)  # [O, Cv, M]
    weights_q, indices_q = topk_affinity(keys, queries, 20, keys.pow(2).sum(0))
    assert torch.equal(indices_q, indices.t())
    assert (weights_q - weights.t()).abs().max() <= 1e-6
    read = bag_readout(values.transpose(1, 2).contiguous(), weights_q, indices_q)  # [O, M, Cv]
    assert (read.transpose(1, 2) - expected).abs().max() <= 1e-5
    few = topk_affinity(keys[:, :7], queries, 20)  # fewer memory elements than k
    assert few[0].shape == (70, 7) and torch.allclose(few[0].sum(1), torch.ones(70))


@pytest.mark.slow
def test_compiled_engine_matches_eager(video):
    """EngineConfig.compile (inductor, frozen weights): the eager probabilities within fp32 tolerance (minutes)."""
    _, images, label = video
    eager = run(apply_recipe(PCVOS(PCVOSConfig.small())).eval(), images[:4], label, 3, clip_length=2)
    compiled = run(apply_recipe(PCVOS(PCVOSConfig.small())).eval(), images[:4], label, 3, clip_length=2,
                   compile="default")
    assert (compiled - eager).abs().max() <= 1e-4


def released_block(block, keys, values, mask):
    """RefineBlock as released: zero-pad the normalised streams, project every token, proj before cropping."""
    b, d, h, w, _ = values.shape
    window, shift = effective_window((d, h, w), block.window, block.shift)
    pads = [(win - s % win) % win for s, win in zip((d, h, w), window)]
    k = F.pad(block.norm1(keys), (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    v = F.pad(block.norm1_v(values), (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    padded, shifted = tuple(k.shape[1:4]), any(shift)
    if shifted:
        k, v = (torch.roll(x, tuple(-s for s in shift), (1, 2, 3)) for x in (k, v))
    q = block.attn.qk(window_partition(k, window))
    out = block.attn.proj(block.attn(block.attn.attention(q, mask if shifted else None),
                                     block.attn.v(window_partition(v, window)), keys.shape[0]))
    out = window_reverse(out, window, b, padded)
    if shifted:
        out = torch.roll(out, shift, (1, 2, 3))
    values = values + out[:, :d, :h, :w]
    return values + block.mlp(block.norm2(values))


@pytest.mark.parametrize("size", [(5, 15, 27), (3, 5, 8), (1, 4, 4)])
def test_refine_block_projects_before_padding(size):
    """Projecting before padding (padded tokens = bias), proj after cropping and the chunked MLP: same numbers."""
    torch.manual_seed(0)
    layer = apply_recipe(PCVOS(PCVOSConfig.small())).eval().refine_transformer.layers[0]
    keys, values = torch.randn(1, *size, 64), torch.randn(2, *size, 128)
    window, shift = effective_window(size, layer.window, layer.shift)
    padded = tuple(-(-s // w) * w for s, w in zip(size, window))
    mask = shift_attention_mask(padded, window, shift, keys.device) if any(shift) else None
    with torch.no_grad():
        for block in layer.blocks:
            assert (block(keys, values, mask) - released_block(block, keys, values, mask)).abs().max() <= 1e-5


def test_value_encoder_shares_one_key_feature(small_net):
    """One f16 row for all objects of a frame = the same row repeated per object."""
    g = torch.Generator().manual_seed(0)
    image, masks = torch.randn(1, 3, 48, 64, generator=g), torch.rand(3, 1, 48, 64, generator=g)
    with torch.no_grad():
        f16 = small_net.encode_key(image).f16
        repeated = small_net.encode_value(image.expand(3, -1, -1, -1), f16.expand(3, -1, -1, -1), masks, masks)
        shared = small_net.encode_value(image.expand(3, -1, -1, -1), f16, masks, masks)
    assert (shared - repeated).abs().max() <= 1e-5 * repeated.abs().max()
