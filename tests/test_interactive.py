"""Backend of the interactive app (inference/interactive/): its exported masks equal segment.py's byte for
byte (forward, and both directions against segment.py on the time-reversed frames), a correction
recomputes only the frames it changes, and the session's state survives failures, cancels and restarts.

Runs the FastAPI app in-process (TestClient) with --model recipe on 12-frame 64x112 videos.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

import interactive_demo
import segment
from dataset import synthetic as syn
from inference.interactive.frames import FrameCache
from inference.interactive.session import Session
from util.palette import read_index_png, write_index_png
from util.video_io import VideoReader

H, W, T, L = 64, 112, 12, 3
FAST = ["--device", "cpu", "--workers", "0", "--size", "-1", "-L", str(L), "--model", "recipe"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 12-frame two-object video as an mp4 and as a folder of its decoded frames (and reversed)."""
    root = tmp_path_factory.mktemp("interactive")
    config = syn.SyntheticConfig(num_frames=T, height=H, width=W, num_objects=2, num_distractors=1)
    clip = syn.generate_video(config)
    syn.write_mp4(root / "clip.mp4", list(clip.frames))
    decoded = list(VideoReader(root / "clip.mp4"))
    (root / "frames").mkdir()
    (root / "reversed").mkdir()
    for t, rgb in enumerate(decoded):
        cv2.imwrite(str(root / "frames" / f"{t:05d}.png"), rgb[..., ::-1])
        cv2.imwrite(str(root / "reversed" / f"{T - 1 - t:05d}.png"), rgb[..., ::-1])
    return {"root": root, "masks": clip.masks, "decoded": decoded}


def _app(workdir: Path, extra: list[str] | None = None) -> TestClient:
    args = interactive_demo.parse_args([*FAST, "--workdir", str(workdir), *(extra or [])])
    return TestClient(interactive_demo.build_app(args))


def _open(client: TestClient, path: Path) -> str:
    response = client.post("/api/sessions", json={"path": str(path)})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _propagate(client: TestClient, sid: str, direction: str, start: int | None = None) -> dict:
    response = client.post(f"/api/sessions/{sid}/propagate", json={"direction": direction, "start": start})
    assert response.status_code == 200, response.text
    while (job := client.get(f"/api/sessions/{sid}/job").json())["state"] == "running":
        time.sleep(0.05)
    assert job["state"] == "done", job
    return job


def _export(client: TestClient, sid: str) -> Path:
    response = client.post(f"/api/sessions/{sid}/export", json={"alpha": 0.5})
    assert response.status_code == 200, response.text
    return Path(response.json()["folder"]) / "masks"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _mask_png(path: Path, mask: np.ndarray) -> Path:
    write_index_png(path, mask)
    return path


def test_frame_cache_decodes_a_container_losslessly_and_lazily(video, tmp_path):
    cache = FrameCache(video["root"] / "clip.mp4", tmp_path / "cache")
    assert np.array_equal(cache.rgb(4), video["decoded"][4])
    assert len(list((tmp_path / "cache").glob("*.png"))) == 5, "frames are decoded only up to the one asked for"
    assert cache.decode_all() == T and cache.exact
    assert all(np.array_equal(cache.rgb(t), video["decoded"][t]) for t in range(T))
    with pytest.raises(IndexError):
        cache.rgb(T)
    cache.close()
    again = FrameCache(video["root"] / "clip.mp4", tmp_path / "cache")  # a restarted server: count from the cache
    assert again.exact and again.count == T


def test_forward_export_equals_segment_py(video, tmp_path):
    mask_png = _mask_png(tmp_path / "first.png", video["masks"][0])
    client = _app(tmp_path / "work")
    sid = _open(client, video["root"] / "clip.mp4")
    with mask_png.open("rb") as f:
        response = client.post(f"/api/sessions/{sid}/annotations/0/import", files={"file": ("first.png", f)})
    assert response.status_code == 200 and response.json()["annotated"] == [0]
    job = _propagate(client, sid, "forward")
    assert job["done"] == T and job["changed"] == T
    exported = _export(client, sid)

    assert segment.main(["--video", str(video["root"] / "clip.mp4"), "--mask", str(mask_png),
                         "--output", str(tmp_path / "segment"), *FAST]) == 0
    expected = _files(tmp_path / "segment")
    assert len(expected) == T and _files(exported) == expected
    # the zip holds the same files and the overlay
    zip_url = client.post(f"/api/sessions/{sid}/export", json={"alpha": 0.5}).json()["zip"]
    archive = zipfile.ZipFile(io.BytesIO(client.get(zip_url).content))
    assert {n: archive.read(n) for n in archive.namelist() if n.startswith("masks/")} == {
        f"masks/{k}": v for k, v in expected.items()}
    assert len(list(VideoReader(exported.parent / "overlay.mp4"))) == T


def test_from_this_frame_writes_only_the_frames_from_there(video, tmp_path):
    """"From this frame" at frame 6, forward: frames 6.. get segment.py's masks, frames 1..5 stay without one."""
    mask_png = _mask_png(tmp_path / "first.png", video["masks"][0])
    client = _app(tmp_path / "work")
    sid = _open(client, video["root"] / "frames")
    assert client.put(f"/api/sessions/{sid}/annotations/0", content=video["masks"][0].tobytes()).status_code == 200
    job = _propagate(client, sid, "forward", start=6)
    assert job["done"] == T - 6 and job["last"] == T - 1, job
    assert segment.main(["--video", str(video["root"] / "frames"), "--mask", str(mask_png),
                         "--output", str(tmp_path / "segment"), *FAST]) == 0
    shown = {t: client.get(f"/api/sessions/{sid}/masks/{t}") for t in range(T)}
    assert all(shown[t].status_code == 204 for t in range(1, 6))
    for t in range(6, T):
        assert np.array_equal(np.frombuffer(shown[t].content, np.uint8).reshape(H, W),
                              read_index_png(tmp_path / "segment" / f"{t:05d}.png")), t
    bad = client.post(f"/api/sessions/{sid}/propagate", json={"direction": "forward", "start": T})
    assert bad.status_code == 400 and f"start frame {T} is outside the video" in bad.text


def test_both_directions_equal_segment_py_forward_and_on_reversed_frames(video, tmp_path):
    """A mask in the middle (frame m): frames from m on are segment.py's forward run, frames before m its run
    over the time-reversed video (whose frame T - 1 - m is frame m)."""
    m = 5
    mask_png = _mask_png(tmp_path / "middle.png", video["masks"][m])
    client = _app(tmp_path / "work")
    sid = _open(client, video["root"] / "frames")
    assert client.put(f"/api/sessions/{sid}/annotations/{m}", content=video["masks"][m].tobytes()).status_code == 200
    job = _propagate(client, sid, "both")
    assert job["done"] == T
    exported = _files(_export(client, sid))

    assert segment.main(["--video", str(video["root"] / "frames"), "--mask", f"{m}:{mask_png}",
                         "--output", str(tmp_path / "fwd"), "--direction", "forward", *FAST]) == 0
    assert segment.main(["--video", str(video["root"] / "reversed"), "--mask", f"{T - 1 - m}:{mask_png}",
                         "--output", str(tmp_path / "bwd"), "--direction", "forward", *FAST]) == 0
    expected = _files(tmp_path / "fwd")
    backward = _files(tmp_path / "bwd")
    assert len(backward) == m + 1
    expected.update({f"{T - 1 - int(name[:5]):05d}.png": data for name, data in backward.items()
                     if T - 1 - int(name[:5]) < m})
    assert sorted(expected) == [f"{t:05d}.png" for t in range(T)]
    assert exported == expected


def test_a_correction_recomputes_only_the_frames_it_changes(video, tmp_path):
    client = _app(tmp_path / "work")
    sid = _open(client, video["root"] / "frames")
    client.put(f"/api/sessions/{sid}/annotations/0", content=video["masks"][0].tobytes())
    _propagate(client, sid, "forward")
    session, propagator = client.app.state.sessions.get(sid)
    assert propagator.frames_computed == T
    before = _files(session.dir / "masks")

    # correct frame 7: start from its propagated mask and paint a block of object 1
    t = 7
    corrected = session.mask(t).copy()
    corrected[40:56, 80:100] = 1
    client.put(f"/api/sessions/{sid}/annotations/{t}", content=corrected.tobytes())
    job = _propagate(client, sid, "forward")
    # At L = 3 the clips after the annotated frame 0 are 1-3, 4-6, 7-9, 10-11: the clip that held frame 7 starts
    # at 7, and no later annotation re-anchors the objects, so frames 7..11 are computed again, and only they.
    assert propagator.frames_computed == T - t
    after = _files(session.dir / "masks")
    assert {n for n in after if after[n] != before[n]} <= {f"{i:05d}.png" for i in range(t, T)}
    assert job["changed"] == len({n for n in after if after[n] != before[n]}) > 0
    assert np.array_equal(session.mask(t), corrected)

    # the result equals a fresh session given both annotations at once (the predictor's exactness claim)
    fresh = _app(tmp_path / "fresh")
    sid2 = _open(fresh, video["root"] / "frames")
    fresh.put(f"/api/sessions/{sid2}/annotations/0", content=video["masks"][0].tobytes())
    fresh.put(f"/api/sessions/{sid2}/annotations/{t}", content=corrected.tobytes())
    _propagate(fresh, sid2, "forward")
    assert _files(fresh.app.state.sessions.get(sid2)[0].dir / "masks") == after


def test_failed_or_cancelled_propagation_keeps_the_earlier_masks(video, tmp_path):
    client = _app(tmp_path / "work")
    sid = _open(client, video["root"] / "frames")
    client.put(f"/api/sessions/{sid}/annotations/0", content=video["masks"][0].tobytes())
    _propagate(client, sid, "forward")
    session = client.app.state.sessions.get(sid)[0]
    before = _files(session.dir / "masks")
    zeros = np.zeros((H, W), np.uint8)

    def failing():
        yield 0, zeros
        yield 1, zeros
        raise RuntimeError("out of memory")

    job = session.start_job("forward")
    session.run_job(job, failing(), T)
    assert job.state == "failed" and "out of memory" in job.error and job.done == 2
    assert _files(session.dir / "masks") == before and not (session.dir / "staging").exists()

    job = session.start_job("forward")
    job.cancel.set()
    session.run_job(job, iter([(0, zeros), (1, zeros)]), T)
    assert job.state == "cancelled" and _files(session.dir / "masks") == before

    # cancel through the route while a real propagation runs (L = 1: every frame is its own clip)
    client.put(f"/api/sessions/{sid}/settings", json={"clip_length": 1, "precision": "fp32", "memory": "keep-all",
                                                      "size": -1})
    client.post(f"/api/sessions/{sid}/propagate", json={"direction": "forward"})
    assert client.post(f"/api/sessions/{sid}/cancel").status_code == 200
    while (state := client.get(f"/api/sessions/{sid}/job").json())["state"] == "running":
        time.sleep(0.05)
    assert state["state"] in ("cancelled", "done")
    if state["state"] == "cancelled":
        assert _files(session.dir / "masks") == before


def test_session_reopens_after_a_restart_and_finishes_an_interrupted_commit(video, tmp_path):
    workdir = tmp_path / "work"
    client = _app(workdir)
    sid = _open(client, video["root"] / "clip.mp4")
    client.put(f"/api/sessions/{sid}/annotations/0", content=video["masks"][0].tobytes())
    _propagate(client, sid, "forward")
    shown = client.get(f"/api/sessions/{sid}/masks/6").content
    folder = workdir / sid

    # a commit interrupted after its COMMIT file: the new server finishes it; staged files without one are dropped
    staged = np.full((H, W), 2, np.uint8)
    (folder / "staging").mkdir()
    write_index_png(folder / "staging" / "00003.png", staged)
    (folder / "staging" / "COMMIT").write_text(json.dumps(["00003.png"]))

    restarted = _app(workdir)
    assert restarted.get("/api/sessions").json()[0]["id"] == sid
    info = restarted.get(f"/api/sessions/{sid}").json()
    assert info["annotated"] == [0] and info["propagated"] == T and info["count"] == T
    assert [o["id"] for o in info["objects"]] == [1, 2]
    response = restarted.get(f"/api/sessions/{sid}/masks/6")
    assert response.headers["x-mask-source"] == "propagated" and response.content == shown
    assert np.array_equal(read_index_png(folder / "masks" / "00003.png"), staged)
    assert not (folder / "staging").exists()

    (folder / "staging").mkdir()
    write_index_png(folder / "staging" / "00004.png", staged)
    Session(folder)
    assert not np.array_equal(read_index_png(folder / "masks" / "00004.png"), staged)
    # a new propagation recomputes what the staged file had overwritten
    _propagate(restarted, sid, "forward")
    assert restarted.get(f"/api/sessions/{sid}/masks/6").content == shown


def test_objects_undo_and_user_errors(video, tmp_path):
    client = _app(tmp_path / "work")
    sid = _open(client, video["root"] / "frames")
    assert client.post(f"/api/sessions/{sid}/objects").json()["object"] == 1
    assert client.post(f"/api/sessions/{sid}/objects").json()["object"] == 2
    client.put(f"/api/sessions/{sid}/annotations/0", content=video["masks"][0].tobytes())
    _propagate(client, sid, "forward")
    info = client.delete(f"/api/sessions/{sid}/objects/2").json()
    assert [o["id"] for o in info["objects"]] == [1]
    session = client.app.state.sessions.get(sid)[0]
    assert all(2 not in np.unique(session.mask(t)) for t in range(T))
    assert set(np.unique(session.annotation(0))) == {0, 1}
    assert client.post(f"/api/sessions/{sid}/objects").json()["object"] == 2, "the lowest free id comes back"
    # undo in the page = put back the earlier mask, or delete the annotation
    assert client.delete(f"/api/sessions/{sid}/annotations/0").json()["annotated"] == []

    errors = [
        client.post("/api/sessions", json={"path": str(tmp_path / "missing.mp4")}),
        client.put(f"/api/sessions/{sid}/annotations/0", content=b"xyz"),
        client.put(f"/api/sessions/{sid}/annotations/{T}", content=bytes(H * W)),
        client.post(f"/api/sessions/{sid}/propagate", json={"direction": "forward"}),
        client.post(f"/api/sessions/{sid}/propagate", json={"direction": "sideways"}),
        client.put(f"/api/sessions/{sid}/settings", json={"clip_length": 0, "precision": "fp32",
                                                          "memory": "keep-all", "size": 480}),
        client.post(f"/api/sessions/{sid}/annotations/0/import", files={"file": ("m.png", b"not a png")}),
    ]
    assert [e.status_code for e in errors] == [400] * len(errors)
    details = [e.json()["detail"] for e in errors]
    assert "missing.mp4" in details[0] and "bytes" in details[1] and "outside the video" in details[2]
    assert "no annotated frame" in details[3] and "sideways" in details[4] and "L must be" in details[5]
    assert "m.png" in details[6]
    assert client.get("/api/sessions/nope-123").status_code == 404
    with (video["root"] / "clip.mp4").open("rb") as f:
        uploaded = client.post("/api/sessions/upload", files={"file": ("my clip.mp4", f)}).json()
    assert uploaded["count"] == T and (tmp_path / "work" / uploaded["id"] / "source" / "my clip.mp4").is_file()
    frame = client.get(f"/api/sessions/{uploaded['id']}/frames/3.jpg")
    assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
    assert client.get("/api/sessions/..%2Fetc").status_code in (400, 404)


def test_the_server_says_what_it_runs(tmp_path, capsys):
    _app(tmp_path / "work")
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("interactive_demo.py: model recipe (untrained test weights) | device cpu"), line
    assert f"| precision fp32 | L {L} | memory keep-all" in line and "| size original resolution |" in line, line
