"""scripts/icr_diagnosis.py: the token layout it assumes, the shares it adds up, and that its probe only reads."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from dataset import synthetic as syn
from model.checkpoint import build_model
from model.network import PCVOS, PCVOSConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import icr_diagnosis as icr  # noqa: E402
import memory_diagnosis as md  # noqa: E402


def test_token_frames_follow_the_blocks_padding_and_shift():
    plain = icr.token_frames((3, 2, 2), (2, 2, 2), (0, 0, 0))
    assert plain.tolist() == [[0] * 4 + [1] * 4, [2] * 4 + [-1] * 4]  # 3 frames padded to 4, two windows
    shifted = icr.token_frames((3, 2, 2), (2, 2, 2), (1, 1, 1))
    assert shifted.tolist() == [[1] * 4 + [2] * 4, [-1] * 4 + [0] * 4]  # rolled back by one frame


def test_attention_shares_of_identity_and_uniform_weights():
    frames = torch.tensor([[0, 0, 1, -1]])
    identity = icr.attention_shares(torch.eye(4)[None, None], frames, None)
    assert identity == {"own token": 3.0, "own frame": 3.0, "other frames": 0.0, "padding": 0.0,
                        "uniform": pytest.approx(1.0), "queries": 3.0}  # sums over the 3 real queries
    uniform = icr.attention_shares(torch.full((1, 1, 4, 4), 0.25), frames, None)
    assert uniform["own token"] == pytest.approx(0.75)
    assert uniform["own frame"] == pytest.approx(0.5 + 0.5 + 0.25)
    assert uniform["other frames"] == pytest.approx(0.25 + 0.25 + 0.5)
    assert uniform["padding"] == pytest.approx(0.75)
    assert uniform["uniform"] == pytest.approx(0.25 + 0.25 + 0.5)  # uniform weights give "other frames" exactly
    mask = torch.zeros(1, 4, 4)
    mask[:, :, 2] = -100.0  # frame 1's token may not be attended: frame 0 reaches no other frame, frame 1 two of 3
    assert icr.attention_shares(torch.full((1, 1, 4, 4), 0.25), frames, mask)["uniform"] == pytest.approx(2 / 3)


def clip(network: PCVOS, frames: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    keys = torch.randn(1, network.config.hidden_dim, frames, 4, 4)
    return keys, torch.randn(2, network.config.value_dim, frames, 4, 4)


def test_probe_reads_without_changing_the_refinement_and_is_removed():
    torch.manual_seed(0)
    network = PCVOS(PCVOSConfig.small()).eval()
    keys, readout = clip(network)
    with torch.no_grad():
        expected = network.refine_clip(keys, readout)
        probe = icr.RefineProbe(network).install()
        assert torch.equal(network.refine_clip(keys, readout), expected)
        probe.remove()
    assert "refine_clip" not in vars(network)
    for block in network.refine_transformer.layers[0].blocks:
        assert "attention" not in vars(block.attn) and not block._forward_hooks and not block._forward_pre_hooks
    summary = probe.summary()
    assert list(summary) == ["block 0.0", "block 0.1 (shifted)", "readout"]
    for name in ("block 0.0", "block 0.1 (shifted)"):
        shares = summary[name]
        assert shares["own frame"] + shares["other frames"] + shares["padding"] == pytest.approx(1.0, abs=1e-5)
        # a fresh refinement attends almost uniformly: what it gives other frames is their share of the window
        assert shares["other frames"] == pytest.approx(shares["uniform"], abs=0.05) and shares["other frames"] > 0.2
        assert 0.0 < shares["attention"] and 0.0 < shares["MLP"]
    assert summary["readout"]["exchange"] > 1e-3


def test_a_refinement_that_attends_to_itself_exchanges_nothing():
    torch.manual_seed(0)
    network = PCVOS(PCVOSConfig.small()).eval()
    for block in network.refine_transformer.layers[0].blocks:
        block.attn.qk.weight.data *= 1000.0  # logits q.q: every token's largest is its own
        block.attn.relative_position_bias_table.data.zero_()
    probe = icr.RefineProbe(network).install()
    with torch.no_grad():
        network.refine_clip(*clip(network))
    probe.remove()
    summary = probe.summary()
    assert summary["block 0.0"]["own token"] == pytest.approx(1.0, abs=1e-3)
    assert summary["block 0.0"]["other frames"] == pytest.approx(0.0, abs=1e-3)
    assert summary["readout"]["exchange"] < 1e-3


def test_a_run_without_refinement_gets_a_fresh_one(tmp_path):
    config = dataclasses.replace(PCVOSConfig.small(), refine=False)
    path = tmp_path / "no_icr.pth"
    torch.save({"network": PCVOS(config).state_dict(), "model_config": config.to_dict()}, path)
    network, fresh = icr.load_network(path, torch.device("cpu"))
    assert fresh and network.refine_transformer is not None and not network.training


def test_measure_scores_what_the_plain_engine_scores(small_model, tmp_path):
    from inference.engine import EngineConfig, PCVOSEngine

    root = tmp_path / "trainval"
    config = syn.SyntheticConfig(num_frames=6, height=64, width=112, num_objects=2, num_distractors=1)
    syn.write_davis(root, syn.make_split("dv", 2, config, seed=2, allow_late=False))
    network, _ = build_model(small_model, torch.device("cpu"))
    entry = icr.measure(network, root, -1, 5, tmp_path / "probed", videos=1)
    plain = PCVOSEngine(network, EngineConfig(clip_length=5, memory_read="pmm", flip=False))
    assert entry["J&F"] == md.score_engine(plain, root, -1, tmp_path / "plain", videos=1)["J&F"]
    assert sorted(p.name for p in (tmp_path / "probed").iterdir() if p.is_dir()) == ["dv_000"]  # the first video
    assert entry["blocks"]["block 0.0"]["other frames"] > 0.0  # frames 1-5 are one clip of 5


def test_clip_length_of_one_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        icr.main(["--ablation", str(tmp_path), "--runs", "pcvos_s0", "--clip-lengths", "1"])
