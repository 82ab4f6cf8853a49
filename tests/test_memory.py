"""Bounded memory (issue #6): strategy rules on tiny tensors, the real engine on a long stream, the CLI
flags, the quality head's separate weights and its training."""

from __future__ import annotations

import dataclasses
import math
import weakref
from pathlib import Path

import pytest
import torch

import eval_davis
import eval_generic
import eval_youtube
import inference_pretrained_pcvos
import segment
import train
from inference.cli import build_engine, load_network, memory_options
from inference.engine import EngineConfig, FrameInput, PCVOSEngine, prepare_network
from inference.memory_store import MemoryStore
from inference.memory_strategies import (
    AfbMemory,
    FifoMemory,
    MemoryOptions,
    QualityMemory,
    confidence_quality,
    nearest_elements,
)
from model.checkpoint import QUALITY_PREFIX, build_model, load_quality_head, load_weights
from model.losses import binary_iou, quality_loss
from model.network import PCVOS, PCVOSConfig
from model.trainer import TrainConfig
from tests.test_datasets import write_video_roots
from tests.test_engine_reference import make_video
from util.recipe_weights import apply_recipe


def offer(store: MemoryStore, frame: int, key, values=None, permanent=False, quality=None) -> None:
    """Add a frame given as key columns [Ck, n] (values default to the key, one object)."""
    key = torch.as_tensor(key, dtype=torch.float32)
    values = {1: key.clone()} if values is None else values
    store.add(frame, key[:, :, None], {o: v[:, :, None] for o, v in values.items()}, permanent, quality)


def frames(store: MemoryStore) -> list[int]:
    return [e.frame for e in store.entries.values()]


def bank_elements(store: AfbMemory) -> list[float]:
    """First key channel of every non-permanent element, sorted (the tests use it as the element's name)."""
    return sorted(float(v) for e in store.entries.values() if not e.permanent for v in e.key[0])


# --------------------------------------------------------------------------- fifo


def test_fifo_keeps_permanent_and_last_n():
    store = FifoMemory(max_frames=2)
    offer(store, 0, [[1.0]], permanent=True)
    for t in (5, 10, 15, 20):
        offer(store, t, [[float(t)]])
    assert frames(store) == [0, 15, 20]
    offer(store, 22, [[2.0]], permanent=True)  # a later annotation: permanent too
    offer(store, 25, [[3.0]])
    assert frames(store) == [0, 20, 22, 25]
    assert store.describe()["permanent"] == 2 and store.num_elements() == 4
    with pytest.raises(ValueError, match="max-memory-frames"):
        FifoMemory(0)


# --------------------------------------------------------------------------- afb


def test_nearest_elements_in_chunks():
    g = torch.Generator().manual_seed(0)
    bank, new = torch.randn(4, 30, generator=g), torch.randn(4, 7, generator=g)
    dist = torch.cdist(new.t(), bank.t()).pow(2)  # [7, 30]
    index, sq = nearest_elements(bank, new, budget=31)  # one new column per chunk
    assert torch.equal(index, dist.argmin(1))
    torch.testing.assert_close(sq, dist.min(1).values, atol=1e-4, rtol=1e-4)


def test_afb_merges_close_elements_exactly():
    store = AfbMemory(budget=100, merge_threshold=0.5, update_rate=0.25)
    offer(store, 0, [[10.0], [0.0]], permanent=True)
    offer(store, 9, [[0.0, 4.0], [2.0, 0.0]], values={1: torch.tensor([[1.0, 3.0]])})
    # columns: near (0, 2) twice (||x - m||^2 / sqrt(2) = .035) -> merged as their mean; equal to the permanent
    # (10, 0) -> appended (permanent elements are never merge targets; 36 / sqrt 2 from (4, 0)); far -> appended.
    new_key = torch.tensor([[0.2, -0.2, 10.0, -9.0], [2.1, 2.1, 0.0, -9.0]])
    offer(store, 10, new_key, values={1: torch.tensor([[5.0, 7.0, 8.0, 9.0]])})  # 1 frame later: rate 0.25
    bank = store.entries[1]  # all non-permanent elements of object set {1}
    assert len(store.entries) == 2 and bank.extra["born"].tolist() == [9, 9, 10, 10]
    expected = 0.75 * torch.tensor([0.0, 2.0]) + 0.25 * torch.tensor([0.0, 2.1])
    torch.testing.assert_close(bank.key[:, 0], expected)
    torch.testing.assert_close(bank.values[1][0, 0], torch.tensor(0.75 * 1.0 + 0.25 * 6.0))
    assert torch.equal(bank.key[:, 1], torch.tensor([4.0, 0.0]))  # untouched
    assert torch.equal(store.entries[0].key, torch.tensor([[10.0], [0.0]]))  # permanent: unchanged
    assert torch.equal(bank.key[:, 2:], torch.tensor([[10.0, -9.0], [0.0, -9.0]]))  # appended
    assert torch.equal(bank.values[1][:, 2:], torch.tensor([[8.0, 9.0]]))
    assert (store.merged, store.appended, store.num_elements()) == (2, 4, 5)
    # two frames later the rate compounds: 1 - 0.75^2
    offer(store, 12, [[4.0], [0.5]], values={1: torch.tensor([[7.0]])})
    rate = 1 - 0.75**2
    torch.testing.assert_close(store.entries[1].key[:, 1], torch.tensor([4.0, 0.5 * rate]))
    torch.testing.assert_close(store.entries[1].values[1][0, 1], torch.tensor(3.0 + 4.0 * rate))


def test_afb_evicts_lowest_usage_per_age_exactly():
    store = AfbMemory(budget=6, merge_threshold=0.0, update_rate=0.1)  # threshold 0: never merge
    offer(store, 0, [[0.0, 1.0]], permanent=True)
    offer(store, 10, [[10.0, 11.0]])
    offer(store, 20, [[20.0, 21.0]])
    # One clip reads: weights > 1e-3 count as hits; indices past the group (PMM's temporary) are ignored.
    group = store.groups([1])[0]
    assert group.keys.shape[1] == 6
    weights = torch.tensor([[0.9, 0.9, 0.9, 0.9], [0.0005, 0.1, 0.1, 0.1]])
    indices = torch.tensor([[2, 2, 4, 6], [3, 0, 5, 5]])
    store.observe_read(group, weights, indices)
    # usage after folding: frame-10 entry [log 3, 0]; frame-20 entry [log 2, log 3]; ages at frame 40: 30, 20
    offer(store, 40, [[40.0, 41.0]])
    assert store.evicted == 2
    # scores: 10 -> log3/30 = .037, 11 -> 0, 20 -> log2/20 = .035, 21 -> log3/20 = .055: drop 11 and 20
    assert bank_elements(store) == [10.0, 21.0, 40.0, 41.0]
    assert store.entries[0].key.tolist() == [[0.0, 1.0]]
    usage = {float(k): float(u) for e in store.entries.values() if not e.permanent
             for k, u in zip(e.key[0], e.extra["usage"])}
    assert usage[10.0] == pytest.approx(math.log(3)) and usage[21.0] == pytest.approx(math.log(3))
    assert store.num_elements() == 6


def test_afb_never_evicts_permanent_and_ties_go_to_the_oldest():
    store = AfbMemory(budget=4, merge_threshold=0.0)
    offer(store, 0, [[0.0, 1.0]], permanent=True)
    offer(store, 5, [[5.0]])
    offer(store, 10, [[10.0]])
    offer(store, 15, [[15.0]])  # frames 5 and 10 both unused (score 0): the older one leaves
    assert bank_elements(store) == [10.0, 15.0] and store.num_elements() == 4
    offer(store, 20, [[20.0, 21.0, 22.0]])  # more than the room: every non-permanent goes, permanent stays
    assert bank_elements(store) == [20.0, 21.0, 22.0] and store.num_elements() == 5
    assert store.entries[0].key.tolist() == [[0.0, 1.0]] and len(store.entries) == 2


def test_afb_objects_annotated_later_get_their_own_bank():
    store = AfbMemory(budget=100, merge_threshold=0.5)
    offer(store, 0, [[0.0]], permanent=True)
    offer(store, 5, [[5.0]])
    two = {1: torch.tensor([[1.0]]), 2: torch.tensor([[2.0]])}
    store.add(10, torch.tensor([[7.0]])[:, :, None], {o: v[:, :, None] for o, v in two.items()}, permanent=True)
    store.add(15, torch.tensor([[5.0]])[:, :, None], {o: v[:, :, None] for o, v in two.items()})
    # identical to the {1} bank's element, but that bank has no value for object 2: appended, not merged
    assert store.merged == 0 and [sorted(e.values) for e in store.entries.values()] == [[1], [1], [1, 2], [1, 2]]
    assert [len(g.entry_ids) for g in store.groups([1, 2])] == [4, 2]


# --------------------------------------------------------------------------- quality


def test_confidence_quality_is_the_expected_iou():
    binary = torch.zeros(1, 4, 4)
    binary[0, :2] = 1
    assert confidence_quality(binary).item() == 1.0
    soft = torch.tensor([[[0.9, 0.6], [0.2, 0.0]]])
    # inter = 0.9 + 0.6, union = 2 + 0.2, +1 smoothing each
    assert confidence_quality(soft).item() == pytest.approx((1.5 + 1) / (2.2 + 1))


def test_quality_rejects_low_frames_and_evicts_argmin_not_the_annotation():
    store = QualityMemory(max_frames=3, threshold=0.8)
    offer(store, 0, [[0.0]], permanent=True, quality=0.5)  # reference quality 0.5
    offer(store, 5, [[5.0]], quality=0.35)  # s = 0.7 < 0.8: temporary, read by the next clip only
    assert frames(store) == [0, 5] and store.entries[1].extra["temporary"]
    offer(store, 10, [[10.0]], quality=0.45)  # s = 0.9: stored (ordinal 1); the temporary one is dropped
    assert frames(store) == [0, 10] and (store.accepted, store.rejected) == (1, 1)
    offer(store, 15, [[15.0]], quality=0.5)  # ordinal 2, s = 1
    offer(store, 20, [[20.0]], quality=0.5)  # ordinal 3
    # full; newcomer 4: frame 10 scores .9 + e^-3 = .95 < 1 + e^-2 < 1 + e^-1 -> frame 10 (the oldest) leaves.
    # QDMN's off-by-one sliced one slot earlier: the annotated frame.
    offer(store, 25, [[25.0]], quality=0.5)
    assert frames(store) == [0, 15, 20, 25]
    offer(store, 30, [[30.0]], quality=0.41)  # s = .82, admitted (ordinal 5); frame 15 (1 + e^-3) leaves
    offer(store, 35, [[35.0]], quality=0.5)  # ordinal 6; frame 20 (1 + e^-3) leaves, not 30 (.82 + e^-1)
    assert frames(store) == [0, 25, 30, 35]
    # ordinal 7: 25 -> 1 + e^-3 = 1.05, 30 -> .82 + e^-2 = .955, 35 -> 1 + e^-1: the poorer newer frame leaves
    offer(store, 40, [[40.0]], quality=0.5)
    assert frames(store) == [0, 25, 35, 40]
    assert store.replacement_score(5, 7) == pytest.approx(1.0 + math.exp(-3))


def test_confidence_reference_is_the_first_propagated_frame():
    store = QualityMemory(max_frames=3, threshold=0.8, source="confidence")
    label = torch.zeros(1, 1, 32, 32)
    label[..., :8, :8] = 1
    q = store.assess(PCVOS(PCVOSConfig.small()), torch.zeros(1, 128, 2, 2), label)
    offer(store, 0, [[0.0]], permanent=True, quality=q)  # an annotation: 1.0, not a reference
    assert q == 1.0 and store.reference is None
    offer(store, 5, [[5.0]], quality=0.5)  # the reference, admitted
    offer(store, 10, [[10.0]], quality=0.35)  # 0.7: temporary
    offer(store, 15, [[15.0]], quality=0.45)  # 0.9: admitted
    assert store.reference == 0.5 and frames(store) == [0, 5, 15] and (store.accepted, store.rejected) == (2, 1)


def test_quality_source_needs_a_head_when_asked():
    net = PCVOS(PCVOSConfig.small())
    store = QualityMemory(source="head")
    with pytest.raises(RuntimeError, match="--quality-weights"):
        store.assess(net, torch.zeros(1, 128, 2, 2), torch.zeros(1, 1, 32, 32))
    assert QualityMemory(source="auto").resolve_source(net) == "confidence"


# --------------------------------------------------------------------------- the real engine


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return apply_recipe(PCVOS(PCVOSConfig.small())).eval()


def stream(net, options: MemoryOptions, frames_: int, clip_length: int = 2, seed: int = 4, keep: bool = True):
    """Run the engine; returns (results or weak references to their probabilities, store sizes after each
    result, the store)."""
    images, maps = make_video(frames_, 48, 64, {0: [1, 2]}, seed=seed)
    stores = []
    factory = options.factory()

    def make():
        stores.append(factory())
        return stores[-1]

    engine = PCVOSEngine(prepare_network(net), EngineConfig(clip_length=clip_length), memory_factory=make)
    results, sizes = [], []
    for result in engine.segment((FrameInput(t, images[t], maps.get(t)) for t in range(frames_)), num_objects=2):
        results.append(result if keep else weakref.ref(result.prob))
        sizes.append(stores[0].num_elements())
        del result
    return results, sizes, stores[0]


def test_store_stays_bounded_through_the_engine(small_net):
    per_frame = 3 * 4  # 48 x 64 frames -> 3 x 4 memory elements
    for strategy in ("fifo", "afb", "quality"):
        # afb: threshold 0 merges exact duplicates only (the recipe's small keys would all merge otherwise)
        refs, sizes, store = stream(small_net, MemoryOptions(strategy, max_frames=3, merge_threshold=0.0), 30,
                                    keep=False)
        assert sum(ref() is not None for ref in refs) == 0  # the engine keeps no output once it is consumed
        bound = per_frame * (1 + 3 + (strategy == "quality"))  # annotated + 3 (+ quality's one temporary)
        assert max(sizes) <= bound, (strategy, max(sizes))
        assert len(store.entries) >= 1 and store.entries[0].permanent and store.entries[0].frame == 0
        if strategy == "fifo":
            assert frames(store) == [0, 24, 26, 28]
        if strategy == "afb":
            assert store.evicted > 0 and store.appended > per_frame * 4
            usage = torch.cat([e.extra["usage"] for e in store.entries.values() if not e.permanent])
            assert usage.sum() > 0  # the engine reports top-k reads (observe_read is wired)


def test_keep_all_is_unchanged_and_unbounded_strategies_agree(small_net):
    default, sizes, _ = stream(small_net, MemoryOptions("keep-all"), 12, clip_length=3)
    assert sizes[-1] == 12 * (1 + 11 // 3)  # keep-all: one memory frame (3 x 4 elements) per clip of 3, forever
    images, maps = make_video(12, 48, 64, {0: [1, 2]}, seed=4)
    plain = list(PCVOSEngine(small_net, EngineConfig(clip_length=3)).segment(
        (FrameInput(t, images[t], maps.get(t)) for t in range(12)), num_objects=2))
    assert all(torch.equal(a.prob, b.prob) for a, b in zip(default, plain))
    # a cap the video never reaches reads exactly what keep-all reads
    roomy, _, _ = stream(small_net, MemoryOptions("fifo", max_frames=50), 12, clip_length=3)
    assert all(torch.equal(a.prob, b.prob) for a, b in zip(default, roomy))
    tight, _, _ = stream(small_net, MemoryOptions("fifo", max_frames=1), 12, clip_length=3)
    assert any(not torch.equal(a.prob, b.prob) for a, b in zip(default, tight))


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, small_net) -> Path:
    path = tmp_path_factory.mktemp("weights") / "small.pth"
    torch.save({"network": small_net.state_dict(), "model_config": small_net.config.to_dict()}, path)
    return path


def test_every_driver_has_the_memory_flags(tmp_path):
    flags = ["--memory", "afb", "--max-memory-frames", "7", "--memory-budget", "300", "--afb-merge-threshold",
             "0.2", "--afb-update-rate", "0.05", "--quality-threshold", "0.7", "--quality-source", "confidence"]
    parsed = [
        eval_generic.parse_args(["--data", "d", "--output", "o", *flags]),
        eval_davis.parse_args(["--davis-path", "d", "--output", "o", *flags]),
        eval_youtube.parse_args(["--yv-path", "d", "--output", "o", *flags]),
        segment.parse_args(["--video", "v.mp4", "--mask", "m.png", "--output", "o", *flags]),
        inference_pretrained_pcvos.parse_args(["--output", "o", *flags, "--benchmarks", "generic",
                                               "--generic-path", "g"]),
    ]
    for args in parsed:
        assert (args.memory, args.max_memory_frames, args.memory_budget) == ("afb", 7, 300)
        assert (args.afb_merge_threshold, args.afb_update_rate) == (0.2, 0.05)
        assert (args.quality_threshold, args.quality_source, args.quality_weights) == (0.7, "confidence", None)
    assert eval_generic.parse_args(["--data", "d", "--output", "o"]).memory == "keep-all"


def test_flags_reach_the_engine(small_net, small_checkpoint, tmp_path, monkeypatch, capsys):
    base = ["--data", str(tmp_path), "--output", str(tmp_path / "o"), "--model", str(small_checkpoint),
            "--device", "cpu"]
    store = memory_options(eval_generic.parse_args([*base, "--memory", "fifo", "--max-memory-frames", "7"])).factory()()
    assert isinstance(store, FifoMemory) and store.max_frames == 7
    with pytest.raises(SystemExit, match="no quality head"):
        memory_options(eval_generic.parse_args([*base, "--memory", "quality", "--quality-source", "head"]), small_net)
    engine = build_engine(eval_generic.parse_args([*base, "--memory", "afb", "--memory-budget", "300",
                                                   "--afb-merge-threshold", "0.2", "--afb-update-rate", "0.05"]))
    store = engine.memory_factory()
    assert isinstance(store, AfbMemory) and (store.budget, store.merge_threshold, store.update_rate) == (300, 0.2, 0.05)

    # end to end through run_benchmark: the driver's engine commits into the chosen store
    from dataset.synthetic import SyntheticConfig, VideoSpec, write_generic

    data = tmp_path / "data"
    write_generic(data, [VideoSpec("v", SyntheticConfig(num_frames=9, height=48, width=64, num_distractors=0))])
    commits = []
    real = QualityMemory.commit
    monkeypatch.setattr(QualityMemory, "commit", lambda self, entry: (commits.append(entry), real(self, entry)))
    code = eval_generic.main(["--data", str(data), "--output", str(tmp_path / "out"), "--model", str(small_checkpoint),
                              "--device", "cpu", "--workers", "0", "--size", "-1", "-L", "2", "--memory", "quality"])
    assert code == 0 and "generic: 1 videos" in capsys.readouterr().out
    assert [e.frame for e in commits] == [0, 2, 4, 6, 8]
    assert commits[0].quality == pytest.approx(1.0, abs=1e-4) and commits[0].permanent  # confidence of a label


# --------------------------------------------------------------------------- quality head weights and training


def test_quality_head_keys_are_separate(tmp_path, small_net):
    with_head = PCVOS(dataclasses.replace(PCVOSConfig.small(), quality_head=True))
    plain = set(small_net.state_dict())
    extra = set(with_head.state_dict()) - plain
    assert plain <= set(with_head.state_dict()) and extra and all(k.startswith(QUALITY_PREFIX) for k in extra)
    assert not any(k.startswith(QUALITY_PREFIX) for k in PCVOS().state_dict())  # official layout when off
    # official-style weights into a model with the head: the head is reported fresh, the rest loads
    official = tmp_path / "official.pth"
    torch.save(small_net.state_dict(), official)
    report = load_weights(with_head, official)
    assert sorted(report.missing) == sorted(extra) and "quality_head" in report.summary()
    assert torch.equal(with_head.decoder.pred.weight, small_net.decoder.pred.weight)
    # the head's own file loads on top, with or without the prefix
    head = {k: torch.full_like(v, 1e-4) for k, v in with_head.quality_head.state_dict().items()}
    torch.save({QUALITY_PREFIX + k: v for k, v in head.items()}, tmp_path / "head.pth")
    net = PCVOS(PCVOSConfig.small())
    net.enable_quality_head()
    load_quality_head(net, tmp_path / "head.pth")
    assert torch.equal(net.quality_head.fc2.weight, head["fc2.weight"])
    with torch.no_grad():
        assert 0 < float(net.assess_quality(torch.ones(2, 128, 3, 4))[0]) < 1


def test_binary_iou_and_quality_loss():
    pred = torch.tensor([[[[0.9, 0.6], [0.2, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])  # [2, 1, 2, 2]
    gt = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    torch.testing.assert_close(binary_iou(pred, gt), torch.tensor([[1 / 3], [1.0]]))
    score = torch.tensor([[[0.5]], [[0.0]]])
    loss = quality_loss(score, binary_iou(pred, gt)[..., None], torch.tensor([[1.0], [0.0]]))  # sample 2 unused
    assert loss.item() == pytest.approx((0.5 - 1 / 3) ** 2)


def test_quality_head_trains_alone_and_loads_separately(tmp_path, small_checkpoint):
    davis, youtube, _ = write_video_roots(tmp_path / "data")
    config = TrainConfig(
        stage=3, model_size="small", iterations=1, batch_size=1, crop_size=48, num_workers=0, imagenet=False,
        output=str(tmp_path / "out"), log_every=1, image_every=0, save_every=0, progress="none",
        tensorboard=False, davis_root=str(davis), youtube_root=str(youtube), weights=str(small_checkpoint),
        quality_head=True, quality_only=True, lr=1e-3,
    )
    logged = []
    result = train.run_full(config, callback=lambda it, metrics: logged.append(metrics))
    assert all(m["loss/quality"] > 0 for m in logged)
    trained = torch.load(result.final, map_location="cpu", weights_only=True)["network"]
    start = torch.load(small_checkpoint, map_location="cpu", weights_only=True)["network"]
    for key, value in start.items():  # everything but the head is frozen
        assert torch.equal(trained[key], value), key
    head_file = result.final.with_name("s3_small_quality_head.pth")
    head = torch.load(head_file, map_location="cpu", weights_only=True)
    assert set(head) == {k for k in trained if k.startswith(QUALITY_PREFIX)}
    fresh = PCVOS(dataclasses.replace(PCVOSConfig.small(), quality_head=True)).quality_head.state_dict()
    assert any(not torch.equal(head[QUALITY_PREFIX + k], fresh[k]) for k in fresh)  # it learned something
    net = load_network(str(small_checkpoint), torch.device("cpu"), str(head_file))  # --quality-weights path
    assert torch.equal(net.quality_head.fc1.weight, head["quality_head.fc1.weight"])
    assert QualityMemory().resolve_source(net) == "head"
    model, _ = build_model(result.final)  # the full checkpoint carries the head too
    assert model.quality_head is not None
    with pytest.raises(ValueError, match="--quality-head"):
        train.run_full(dataclasses.replace(config, quality_head=False))
