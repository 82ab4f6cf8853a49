"""Network layout against the official key list, and every checkpoint path (good and bad)."""

from __future__ import annotations

import pytest
import torch

from model.checkpoint import CheckpointError, InferenceSettings, build_model, load_weights
from model.network import PCVOS, PCVOSConfig
from tests.conftest import DATA
from util.recipe_weights import recipe_state_dict


@pytest.fixture(scope="module")
def net():
    return PCVOS()


@pytest.fixture(scope="module")
def recipe(net):
    return recipe_state_dict(net)


def official_state_dict(name: str) -> tuple[list[tuple[str, list[int], str]], int]:
    """(key, shape, dtype) of every entry of an official checkpoint, in order, and its parameter count."""
    entries, total = [], None
    for line in (DATA / f"state_dict_{name}.tsv").read_text().splitlines():
        if line.startswith("# total_parameters "):
            total = int(line.split()[-1])
        elif line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            entries.append((key, [int(s) for s in shape.split(",") if s], dtype))
    return entries, total


def test_state_dict_is_the_official_one(net):
    theirs, total = official_state_dict("pcvos")
    ours = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in net.state_dict().items()]
    assert ours == theirs
    assert sum(p.numel() for p in net.parameters()) == total == 62_182_522


def test_stcn_keys_are_ours_minus_refinement(net):
    stcn = [(key, shape) for key, shape, _ in official_state_dict("stcn")[0]]
    ours = [(k, list(v.shape)) for k, v in net.state_dict().items()
            if not k.startswith(("input_proj.", "refine_transformer."))]
    assert ours == stcn


def test_official_checkpoint_loads_strictly(tmp_path, recipe):
    path = tmp_path / "s03.pth"
    torch.save(recipe, path)
    model, report = build_model(path)
    assert report.kind == "pcvos" and report.missing == [] and not report.widened
    for key, value in model.state_dict().items():
        assert torch.equal(value, recipe[key]), key


def test_stcn_checkpoint_reports_refinement_as_initialised(tmp_path, recipe):
    stcn = {k: v for k, v in recipe.items() if not k.startswith(("input_proj.", "refine_transformer."))}
    path = tmp_path / "stcn.pth"
    torch.save({"module." + k: v for k, v in stcn.items()}, path)  # DDP-prefixed keys are accepted too
    model = PCVOS()
    before = model.refine_transformer.layers[0].blocks[0].attn.qk.weight.clone()
    report = load_weights(model, path)
    assert report.kind == "stcn"
    assert {k.split(".")[0] for k in report.missing} == {"input_proj", "refine_transformer"}
    assert torch.equal(model.decoder.pred.weight, recipe["decoder.pred.weight"])
    assert torch.equal(model.refine_transformer.layers[0].blocks[0].attn.qk.weight, before)
    assert "initialised fresh" in report.summary()
    with pytest.raises(CheckpointError, match="no intra-clip refinement"):
        load_weights(PCVOS(), path, strict_refine=True)


def test_stage0_value_encoder_is_widened(tmp_path, recipe):
    stage0 = dict(recipe)
    stage0["value_encoder.conv1.weight"] = recipe["value_encoder.conv1.weight"][:, :4].clone()
    path = tmp_path / "s0.pth"
    torch.save(stage0, path)
    model = PCVOS()
    report = load_weights(model, path)
    assert report.widened and report.kind == "stage0"
    weight = model.value_encoder.conv1.weight
    assert weight.shape[1] == 5 and torch.equal(weight[:, :4], stage0["value_encoder.conv1.weight"])
    assert weight[:, 4].abs().sum() > 0  # orthogonal init, as in training


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match=str(path)):
        build_model(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        build_model(tmp_path / "missing.pth")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="state_dict"):
        build_model(tmp_path / "list.pth")


def test_wrong_shapes_and_unknown_keys_are_listed(tmp_path, recipe):
    bad = dict(recipe)
    bad["key_proj.key_proj.weight"] = torch.zeros(32, 1024, 3, 3)
    bad["extra.weight"] = torch.zeros(1)
    del bad["decoder.pred.bias"]
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError) as info:
        load_weights(PCVOS(), path)
    text = str(info.value)
    assert "key_proj.key_proj.weight: file (32, 1024, 3, 3) vs model (64, 1024, 3, 3)" in text
    assert "extra.weight" in text and "decoder.pred.bias" in text and str(path) in text


def test_training_checkpoint_rebuilds_its_architecture(tmp_path):
    config = PCVOSConfig.small()
    small = PCVOS(config)
    path = tmp_path / "train.pth"
    torch.save({"network": small.state_dict(), "model_config": config.to_dict(), "iteration": 3}, path)
    model, report = build_model(path)
    assert model.config.key_backbone == "resnet18" and model.config.value_dim == 128
    assert report.kind == "pcvos"
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_weights(PCVOS(), path)


def test_narrow_value_encoder_keeps_the_key_names(tmp_path):
    """The small model's value encoder is a ResNet-18 of width 32: same keys, quarter-width shapes."""
    full = PCVOS(PCVOSConfig(key_backbone="resnet18", value_dim=128, hidden_dim=64, decoder_dim=64))
    small = PCVOS(PCVOSConfig.small())
    assert PCVOSConfig.small().value_width == 32
    a, b = full.value_encoder.state_dict(), small.value_encoder.state_dict()
    assert list(a) == list(b)
    assert b["conv1.weight"].shape == (32, 5, 7, 7) and b["layer3.1.conv2.weight"].shape == (128, 128, 3, 3)
    assert b["layer2.0.downsample.0.weight"].shape == (64, 32, 1, 1) and "layer2.0.downsample.0.bias" in b
    assert b["fuser.block1.conv1.weight"].shape[1] == 128 + 256  # layer3 (4 x 32) + the key f16
    frames, f16 = torch.randn(3, 3, 64, 64), torch.randn(3, 256, 4, 4)
    masks = torch.rand(3, 1, 64, 64)
    assert small.encode_value(frames, f16, masks, 1 - masks).shape == (3, 128, 4, 4)
    # A checkpoint written before value_width existed (full-width value encoder) still rebuilds as such.
    legacy = full.config.to_dict()
    del legacy["value_width"]
    path = tmp_path / "legacy.pth"
    torch.save({"network": full.state_dict(), "model_config": legacy, "iteration": 1}, path)
    model, _ = build_model(path)
    assert model.config.value_width == 64
    assert model.value_encoder.layer3[1].conv2.weight.shape == (256, 256, 3, 3)


def test_recorded_clip_length_is_the_drivers_default(tmp_path, capsys):
    """A checkpoint that records an L (as the quickstart's does) runs at it without -L; -L still wins."""
    import eval_generic
    from inference.cli import build_engine
    from model.checkpoint import recommend_settings

    config = PCVOSConfig.small()
    path = tmp_path / "train.pth"
    torch.save({"network": PCVOS(config).state_dict(), "model_config": config.to_dict(), "iteration": 3}, path)
    base = ["--model", str(path), "--data", str(tmp_path), "--output", str(tmp_path / "out"), "--device", "cpu"]

    def clip_length(*extra: str) -> int:
        return build_engine(eval_generic.parse_args([*base, *extra])).config.clip_length

    assert clip_length() == 5  # nothing recorded: the paper model's L
    recommend_settings(path, 3, "best on the validation videos")
    assert not list(tmp_path.glob(".*tmp*"))  # written in place, atomically
    assert build_model(path)[1].inference == InferenceSettings(
        clip_length=3, flip=False, why="best on the validation videos", source=str(path))
    assert torch.load(path, weights_only=True)["inference"] == {  # a plain record in the file
        "clip_length": 3, "why": "best on the validation videos", "flip": False}
    capsys.readouterr()
    assert clip_length() == 3
    assert "-L 3: the clip length" in capsys.readouterr().err
    assert clip_length("-L", "7") == 7
    with pytest.raises(ValueError, match="-L/--clip-length 0: must be >= 1"):
        clip_length("-L", "0")
    with pytest.raises(ValueError, match="must be >= 1"):
        recommend_settings(path, 0, "")
    data = torch.load(path, weights_only=True)
    data["inference"]["clip_length"] = "ten"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=rf"{path.name}: the clip length it records is 'ten'.*pass -L N"):
        clip_length()
    assert clip_length("-L", "2") == 2  # a bad record does not block an explicit -L
    with pytest.raises(CheckpointError, match="only train.py checkpoints"):
        plain = tmp_path / "plain.pth"
        torch.save(PCVOS(config).state_dict(), plain)
        recommend_settings(plain, 1, "")


def test_recorded_flip_is_the_drivers_default(tmp_path, capsys):
    """A checkpoint that records mirror test-time augmentation (as the quickstart's does) runs with it unless
    --no-flip; one without a record runs without it unless --flip."""
    import eval_generic
    from inference.cli import build_engine
    from model.checkpoint import recommend_settings

    config = PCVOSConfig.small()
    path = tmp_path / "train.pth"
    torch.save({"network": PCVOS(config).state_dict(), "model_config": config.to_dict()}, path)
    base = ["--model", str(path), "--data", str(tmp_path), "--output", str(tmp_path / "out"), "--device", "cpu"]

    def flip(*extra: str) -> bool:
        return build_engine(eval_generic.parse_args([*base, *extra])).config.flip

    assert flip() is False and flip("--flip") is True
    recommend_settings(path, 1, "test", flip=True)
    capsys.readouterr()
    assert flip() is True
    assert "--flip: " in capsys.readouterr().err
    assert flip("--no-flip") is False
    data = torch.load(path, weights_only=True)
    data["inference"]["flip"] = "yes"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=rf"{path.name}: the mirror augmentation it records is 'yes'.*--no-flip"):
        flip()
    assert flip("--no-flip") is False  # a bad record does not block an explicit choice


def test_engine_settings_come_from_the_flags_then_the_checkpoint_then_the_defaults(tmp_path):
    """One rule for every caller (inference.settings.resolve_engine_config); the parsed flags are not modified."""
    import argparse

    import eval_generic
    from inference.cli import engine_settings
    from inference.predictor import Predictor
    from inference.settings import DEFAULT_CLIP_LENGTH, EngineConfig, resolve_engine_config
    from model.checkpoint import recommend_settings

    recorded = InferenceSettings(clip_length=3, flip=True, why="w", source="x.pth")
    assert resolve_engine_config() == EngineConfig() and EngineConfig().clip_length == DEFAULT_CLIP_LENGTH == 5
    assert resolve_engine_config(recorded) == EngineConfig(clip_length=3, flip=True)
    assert resolve_engine_config(recorded, clip_length=7, flip=False, top_k=9) == EngineConfig(
        clip_length=7, flip=False, top_k=9)
    seen = []
    resolve_engine_config(recorded, lambda name, value: seen.append((name, value)), clip_length=None, flip=False)
    assert seen == [("clip_length", 3)]
    bad = InferenceSettings.from_record({"clip_length": 0, "flip": "yes", "why": 1}, "bad.pth")
    assert (bad.clip_length, bad.flip, bad.why, bad.invalid) == (None, None, "", {"clip_length": 0, "flip": "yes"})
    with pytest.raises(CheckpointError, match="bad.pth: the clip length it records is 0, not a positive integer"):
        resolve_engine_config(bad, flip=False)
    assert resolve_engine_config(bad, clip_length=2, flip=False).clip_length == 2
    with pytest.raises(TypeError, match="unknown settings"):
        resolve_engine_config(clip_lenght=2)

    args = eval_generic.parse_args(["--generic-root", "d", "--output", "o", "--top-k", "11"])
    before = argparse.Namespace(**vars(args))
    assert engine_settings(args, recorded) == EngineConfig(clip_length=3, flip=True, top_k=11)
    assert args == before  # nothing is resolved into the namespace

    config = PCVOSConfig.small()
    path = tmp_path / "train.pth"
    torch.save({"network": PCVOS(config).state_dict(), "model_config": config.to_dict()}, path)
    recommend_settings(path, 2, "small", flip=True)
    assert Predictor.from_checkpoint(path, device="cpu").engine.config == EngineConfig(clip_length=2, flip=True)


def test_non_finite_weights_are_refused_naming_the_tensors_and_the_file(tmp_path):
    """NaN / inf weights used to load and segment everything as background, exit 0."""
    config = PCVOSConfig.small()
    state = PCVOS(config).state_dict()
    names = [k for k, v in state.items() if v.is_floating_point()][:7]
    for i, name in enumerate(names):
        state[name] = state[name].clone()
        state[name].view(-1)[0] = float("nan") if i % 2 else float("inf")
    path = tmp_path / "diverged.pth"
    torch.save({"network": state, "model_config": config.to_dict()}, path)
    with pytest.raises(CheckpointError) as info:
        build_model(path)
    text = str(info.value)
    assert text.startswith(f"{path}: 7 of {len(state)} tensors hold NaN or infinite values ({', '.join(names[:5])}, ")
    assert "(2 more)" in text and names[5] not in text and "use another checkpoint" in text
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_weights(PCVOS(config), path)  # what train.py --weights calls
    from inference.cli import load_network

    with pytest.raises((SystemExit, CheckpointError), match=f"{path}: 7 of"):  # every driver's --model
        load_network(str(path), torch.device("cpu"))


def test_non_finite_quality_head_is_refused(tmp_path):
    from model.checkpoint import QUALITY_PREFIX, load_quality_head

    net = PCVOS(PCVOSConfig.small())
    net.enable_quality_head()
    head = {QUALITY_PREFIX + k: v.clone() for k, v in net.quality_head.state_dict().items()}
    first = next(iter(head))
    head[first].view(-1)[0] = float("nan")
    torch.save(head, tmp_path / "head.pth")
    with pytest.raises(CheckpointError, match=rf"head.pth: 1 of {len(head)} tensors .*\({first.split('.', 1)[1]}\)"):
        load_quality_head(net, tmp_path / "head.pth")
