"""scripts/precision_agreement.py: the bf16-vs-fp32 mask check that docs/benchmarks.md quotes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dataset.synthetic import SyntheticConfig, make_split, write_davis
from model.network import PCVOS, PCVOSConfig
from scripts import precision_agreement
from util.palette import read_index_png, write_index_png


def test_mask_agreement_counts_pixels_after_the_first_frame(tmp_path):
    a, b = tmp_path / "a" / "v", tmp_path / "b" / "v"
    for t in range(3):
        mask = np.zeros((4, 5), np.uint8)
        mask[1, 1] = 1
        write_index_png(a / f"{t:05d}.png", mask)
        if t == 2:
            mask[0, :] = 2  # 5 pixels differ in the last frame
        if t == 0:
            mask[:] = 3  # the first frame is not counted
        write_index_png(b / f"{t:05d}.png", mask)
    assert precision_agreement.mask_agreement(tmp_path / "a", tmp_path / "b") == (40 - 5, 40)
    (b / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match="00001.png"):
        precision_agreement.mask_agreement(tmp_path / "a", tmp_path / "b")


@pytest.mark.slow
def test_script_end_to_end_on_a_tiny_set(tmp_path):
    config = SyntheticConfig(num_frames=6, height=64, width=112, num_objects=2)
    write_davis(tmp_path / "davis" / "trainval", make_split("val", 1, config, seed=3, allow_late=False), split="val")
    torch.manual_seed(0)
    net = PCVOS(PCVOSConfig.small())
    checkpoint = tmp_path / "small.pth"
    torch.save({"network": net.state_dict(), "model_config": net.config.to_dict()}, checkpoint)
    out = tmp_path / "agreement.json"
    argv = ["--checkpoint", str(checkpoint), "--davis-root", str(tmp_path / "davis"), "--clip-lengths", "2",
            "--precision", "fp32", "bf16", "--workers", "0", "--device", "cpu", "--json", str(out)]
    assert precision_agreement.main(argv) == 0
    rows = {r["precision"]: r for r in json.loads(out.read_text())["rows"]}
    first = read_index_png(next((tmp_path / "davis" / "trainval" / "Annotations" / "480p").glob("*/00000.png")))
    assert rows["fp32"]["pixels"] == 5 * first.size
    assert rows["fp32"]["agreement"] == 1.0  # fp32 twice: deterministic
    # bf16 really runs: a random network's probabilities sit near 0.5 and rounding flips many pixels (61 %).
    assert 0.3 < rows["bf16"]["agreement"] < 0.999
    assert 0.0 <= rows["bf16"]["jf"] <= 1.0
