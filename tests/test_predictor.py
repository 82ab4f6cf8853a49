"""The predictor: the same masks as the drivers, backward = forward on the reversed video, corrections that
recompute only the frames they change, object ids mapped to slots, live stepping, video files cached on disk."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import eval_generic
from dataset import synthetic as syn
from inference import EngineConfig, ObjectManager, Predictor
from model.network import PCVOS, PCVOSConfig
from util.palette import read_index_png, write_index_png
from util.recipe_weights import apply_recipe
from util.video_io import VideoReader

H, W = 48, 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The small network with recipe weights, saved as a train.py-style checkpoint."""
    config = PCVOSConfig.small()
    path = tmp_path_factory.mktemp("model") / "small.pth"
    torch.save({"network": apply_recipe(PCVOS(config)).state_dict(), "model_config": config.to_dict()}, path)
    return path


@pytest.fixture(scope="module")
def video() -> syn.SyntheticVideo:
    """12 frames, object 1 from frame 0, object 2 from frame 5."""
    config = syn.SyntheticConfig(num_frames=12, height=H, width=W, num_objects=2, late_objects=1,
                                 num_distractors=0, seed=4)
    video = syn.generate_video(config)
    assert video.first_frame == {1: 0, 2: 5}
    return video


def predictor(checkpoint, clip_length=3, size=-1) -> Predictor:
    return Predictor.from_checkpoint(checkpoint, device="cpu", config=EngineConfig(clip_length=clip_length),
                                     size=size)


def only(mask: np.ndarray, obj: int, value: int | None = None) -> np.ndarray:
    return np.where(mask == obj, value or obj, 0).astype(np.uint8)


def test_object_manager_maps_any_ids_to_few_slots():
    objects = ObjectManager()
    assert objects.add([200]) == [200] and objects.slot(200) == 1 and objects.num_slots == 1
    objects.add([7, 200])
    assert objects.slot(7) == 2 and objects.num_slots == 2
    objects.remove(200)  # retired: slot 1 stays a (zero) channel until compact
    objects.add([9])
    assert objects.slot(9) == 3 and objects.num_slots == 3 and objects.ids == [7, 9]
    assert objects.id_table(torch.device("cpu")).tolist() == [0, 0, 7, 9]
    objects.compact()
    assert (objects.slot(7), objects.slot(9), objects.num_slots) == (1, 2, 2)
    with pytest.raises(ValueError, match="object id 255"):
        objects.add([255])


def test_id_200_takes_one_channel(checkpoint, video, monkeypatch):
    from inference.runner import VideoRun

    pred = predictor(checkpoint)
    pred.open(list(video.frames[:4]))
    pred.add_mask(0, only(video.masks[0], 1, 200))
    channels = []
    to_mask = VideoRun.mask
    monkeypatch.setattr(VideoRun, "mask", lambda run, prob, size: channels.append(prob.shape[0]) or
                        to_mask(run, prob, size))
    masks = dict(pred.propagate())
    assert set(channels) == {2}  # background + one object, not 201
    assert sorted(masks) == [0, 1, 2, 3]
    assert all(set(np.unique(m)) <= {0, 200} for m in masks.values()) and (masks[3] == 200).any()


def test_forward_over_a_folder_equals_eval_generic(checkpoint, video, tmp_path, capsys):
    """Same frames, masks, checkpoint and settings (L = 3, working short side 40, ids 3 and 200, object 200 from
    frame 5): byte-identical masks at the input resolution."""
    frames, annotations = tmp_path / "data" / "JPEGImages" / "v", tmp_path / "data" / "Annotations" / "v"
    frames.mkdir(parents=True)
    for t, rgb in enumerate(video.frames):
        Image.fromarray(rgb).save(frames / f"{t:05d}.png")
    write_index_png(annotations / "00000.png", only(video.masks[0], 1, 3))
    write_index_png(annotations / "00005.png", only(video.masks[5], 2, 200))
    out = tmp_path / "out"
    assert eval_generic.main(["--data", str(tmp_path / "data"), "--output", str(out), "--model", str(checkpoint),
                              "--size", "40", "-L", "3", "--device", "cpu", "--workers", "0"]) == 0
    capsys.readouterr()
    theirs = {int(p.stem): read_index_png(p) for p in (out / "v").glob("*.png")}

    pred = predictor(checkpoint, size=40)
    assert pred.open(frames) == 12
    for png in sorted(annotations.glob("*.png")):
        pred.add_mask(int(png.stem), read_index_png(png))
    ours = dict(pred.propagate("forward"))
    assert sorted(ours) == sorted(theirs) == list(range(12))
    assert all(ours[t].shape == (H, W) and np.array_equal(ours[t], theirs[t]) for t in range(12))
    assert (ours[11] == 3).any() and (ours[11] == 200).any()  # not degenerate
    assert pred._tracks["forward"].masks.folder is not None  # a folder's masks are kept on disk


def test_backward_equals_forward_on_the_reversed_video(checkpoint, video):
    m = 7
    pred = predictor(checkpoint)
    pred.open(list(video.frames))
    pred.add_mask(m, video.masks[m])
    backward = list(pred.propagate("backward"))
    assert [t for t, _ in backward] == list(range(m, -1, -1))
    assert pred.frames_pushed == m + 1  # frames after m are never read

    reference = predictor(checkpoint)
    reference.open(list(video.frames[m::-1]))  # frames m, m-1, ..., 0
    reference.add_mask(0, video.masks[m])
    forward_reversed = dict(reference.propagate("forward"))
    assert all(np.array_equal(mask, forward_reversed[m - t]) for t, mask in backward)
    assert len({mask.tobytes() for _, mask in backward}) > 1 and (backward[-1][1] > 0).any()

    both = list(pred.propagate("both"))  # forward from m, then the stored backward masks before m
    assert [t for t, _ in both] == [*range(m, 12), *range(m - 1, -1, -1)]
    assert pred.frames_pushed == m + 1 + (12 - m)
    assert all(np.array_equal(mask, forward_reversed[m - t]) for t, mask in both[12 - m:])


@pytest.mark.slow
def test_a_correction_recomputes_only_the_frames_it_changes(checkpoint, video):
    """Object 1 annotated at 0 and 9, L = 3: clips [1-3] [4-6] [7-9] [10-11]. A correction at 5 recomputes from 4
    (the start of its clip) to 9 (object 1's next annotation): 6 frames, equal to a fresh run with all masks."""
    pred = predictor(checkpoint)
    pred.open(list(video.frames))
    pred.add_mask(0, only(video.masks[0], 1))
    pred.add_mask(9, only(video.masks[9], 1))
    first = dict(pred.propagate())
    assert pred.frames_pushed == 12

    corrected = only(video.masks[5], 1)
    corrected[:, : W // 2] = 0  # a different mask for object 1 at frame 5
    pred.add_mask(5, corrected)
    pushed = pred.frames_pushed
    second = dict(pred.propagate())
    assert pred.frames_pushed - pushed == 6  # frames 4..9
    assert sorted(second) == list(range(12))
    for t in [0, 1, 2, 3, 10, 11]:  # before the clip of 5, and after the next annotation: kept
        assert np.array_equal(second[t], first[t])
    assert not np.array_equal(second[5], first[5]) and np.array_equal(second[5], corrected)

    fresh = predictor(checkpoint)
    fresh.open(list(video.frames))
    for t, mask in [(0, only(video.masks[0], 1)), (5, corrected), (9, only(video.masks[9], 1))]:
        fresh.add_mask(t, mask)
    reference = dict(fresh.propagate())
    assert all(np.array_equal(second[t], reference[t]) for t in range(10))

    pushed = pred.frames_pushed
    pred.add_mask(5, corrected)  # nothing changes: nothing to recompute
    assert dict(pred.propagate()).keys() == second.keys() and pred.frames_pushed == pushed

    # a new object at 6, never annotated later: from 6 (a clip starts there since the label at 5) to the end
    pred.add_mask(6, only(video.masks[6], 2))
    third = dict(pred.propagate())
    assert pred.frames_pushed - pushed == 6 and (third[11] == 2).any()
    assert all(np.array_equal(third[t], second[t]) for t in range(6))
    assert pred.result(11).tobytes() == third[11].tobytes()

    pushed = pred.frames_pushed
    pred.remove_object(2)  # recomputed from its first annotation (frame 6) on
    fourth = dict(pred.propagate())
    assert pred.frames_pushed - pushed == 6 and not any((m == 2).any() for m in fourth.values())
    assert all(np.array_equal(fourth[t], second[t]) for t in range(10))  # as if it had never been added
    assert pred.objects.ids == [1]


def test_live_steps_give_the_held_video_masks_with_a_clip_of_latency(checkpoint, video):
    pred = predictor(checkpoint)
    arrived = []
    for t in range(8):
        mask = only(video.masks[0], 1, 7) if t == 0 else only(video.masks[5], 2, 9) if t == 5 else None
        arrived.append(pred.step(video.frames[t], mask))
    tail = pred.flush()
    assert [[i for i, _ in out] for out in arrived] == [[0], [], [], [1, 2, 3], [], [4, 5], [], []]
    assert [i for i, _ in tail] == [6, 7]
    live = {i: m for out in [*arrived, tail] for i, m in out}
    assert (live[7] == 9).any() and (live[7] == 7).any()

    held = predictor(checkpoint)
    held.open(list(video.frames[:8]))
    held.add_mask(0, only(video.masks[0], 1, 7))
    held.add_mask(5, only(video.masks[5], 2, 9))
    assert all(np.array_equal(mask, live[t]) for t, mask in held.propagate())

    assert pred.step(video.frames[0], np.zeros((H, W), np.uint8)) == []  # a mask without objects: no mask
    both = np.where(video.masks[5] == 1, 7, np.where(video.masks[5] == 2, 9, 0)).astype(np.uint8)
    assert [i for i, _ in pred.step(video.frames[5], both)] == [1]
    pred.remove_object(7)  # live: stops being tracked at once
    rest = [*pred.step(video.frames[6]), *pred.flush()]
    assert [i for i, _ in rest] == [2] and (rest[0][1] == 9).any() and not (rest[0][1] == 7).any()


def test_video_file_is_decoded_to_a_disk_cache(checkpoint, video, tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    for rgb in video.frames[:6]:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    decoded = list(VideoReader(path))
    cache = tmp_path / "cache"
    pred = predictor(checkpoint)
    assert pred.open(path, cache_dir=cache) == len(decoded) == 6
    assert len(list(cache.glob("*.npy"))) == 6
    pred.add_mask(0, video.masks[0])
    from_file = dict(pred.propagate())
    arrays = predictor(checkpoint)
    arrays.open(decoded)
    arrays.add_mask(0, video.masks[0])
    assert all(np.array_equal(mask, from_file[t]) for t, mask in arrays.propagate())


def test_user_errors_are_value_errors(checkpoint, video):
    pred = predictor(checkpoint)
    with pytest.raises(ValueError, match="no video held"):
        pred.add_mask(0, video.masks[0])
    pred.open(list(video.frames[:3]))
    with pytest.raises(ValueError, match="no mask given"):
        pred.propagate()
    with pytest.raises(ValueError, match=r"shape \(48, 60\)"):
        pred.add_mask(0, video.masks[0][:, :60])
    with pytest.raises(ValueError, match="255"):
        pred.add_mask(0, np.full((H, W), 255, np.uint8))
    with pytest.raises(ValueError, match="frame index 3"):
        pred.add_mask(3, video.masks[0])
    pred.add_mask(0, video.masks[0])
    with pytest.raises(ValueError, match="direction 'sideways'"):
        pred.propagate("sideways")
    with pytest.raises(ValueError, match="frame 1: expected uint8"):
        Predictor.open(pred, [video.frames[0], video.frames[1].astype(np.float32)])
    with pytest.raises(ValueError, match="live frame 1: 32x48"):
        pred.step(video.frames[0])
        pred.step(np.zeros((48, 32, 3), np.uint8))


def test_every_path_pushes_through_the_one_run_loop(checkpoint, video, monkeypatch):
    """Held-video propagation (fresh and resumed after a correction) and live frames all go through
    inference.runner.VideoRun.push: no loop of its own in the predictor."""
    from inference.engine import EngineSession
    from inference.runner import VideoRun

    through_run, direct = [], []
    run_push, session_push = VideoRun.push, EngineSession.push

    def counted_run(run, frame):
        through_run.append(frame.index)
        return run_push(run, frame)

    def counted_session(session, frame):
        direct.append(frame.index)
        return session_push(session, frame)

    monkeypatch.setattr(VideoRun, "push", counted_run)
    monkeypatch.setattr(EngineSession, "push", counted_session)
    pred = predictor(checkpoint, clip_length=2)
    pred.open(list(video.frames[:6]))
    pred.add_mask(0, video.masks[0])
    dict(pred.propagate("both"))
    pred.add_mask(3, video.masks[3])  # a correction: the rerun resumes from a snapshot
    dict(pred.propagate())
    for t, frame in enumerate(video.frames[:3]):
        pred.step(frame, video.masks[0] if t == 0 else None)
    pred.flush()
    assert len(through_run) == pred.frames_pushed == len(direct) > 6
