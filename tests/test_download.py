"""scripts/download.py's checkpoint downloads against a local HTTP server (no real network): a full download, a
resumed partial one, a damaged file refused, and offline as one line."""

from __future__ import annotations

import dataclasses
import importlib.util
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load_download():
    spec = importlib.util.spec_from_file_location("_script_download_test", ROOT / "scripts" / "download.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


download = _load_download()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload``; honours ``Range: bytes=N-``; the first ``server.cut`` plain GETs announce the
    whole length but send only half of it and hang up (an interrupted transfer)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        payload: bytes = self.server.payload
        wanted = self.headers.get("Range")
        self.server.requests.append(wanted)
        try:
            if wanted:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                self.send_header("Content-Length", str(len(payload) - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                self.wfile.write(payload[start:])
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if self.server.cut > 0:
                self.server.cut -= 1
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client hung up first (it resumes with a Range)
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.payload, httpd.requests, httpd.cut = b"", [], 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    """A small stand-in for the released PCVOS file: every key the real one has (1-element tensors) plus 1 MB,
    enough for a transfer cut in half to leave a real partial file."""
    path = tmp_path_factory.mktemp("ckpt") / "w.pth"
    state = {key: torch.zeros(1) for key in download.expected_keys("pcvos")}
    state["key_encoder.conv1.weight"] = torch.arange(262_144, dtype=torch.float32)
    torch.save(state, path)
    return path.read_bytes()


def _serve(monkeypatch, server, payload: bytes, size: int | None = None) -> download.Weights:
    server.payload = payload
    item = dataclasses.replace(download.WEIGHTS["pcvos"][0], url=f"http://127.0.0.1:{server.server_port}/w.pth",
                               size=size)
    monkeypatch.setitem(download.WEIGHTS, "pcvos", [item])
    return item


def test_full_download_is_verified_and_lands_under_its_name(server, checkpoint_bytes, tmp_path, monkeypatch,
                                                             capsys):
    _serve(monkeypatch, server, checkpoint_bytes, size=len(checkpoint_bytes))
    assert download.main(["pcvos", "--out", str(tmp_path), "--retries", "0"]) == 0
    dest = tmp_path / "s03_pcvos_ytvos.pth"
    assert dest.read_bytes() == checkpoint_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s03_pcvos_ytvos.pth"]  # no temporary left
    assert "downloaded and verified" in capsys.readouterr().out
    requests_before = len(server.requests)
    assert download.main(["pcvos", "--out", str(tmp_path), "--retries", "0"]) == 0  # present: not fetched again
    assert len(server.requests) == requests_before and "already present and verified" in capsys.readouterr().out


def test_an_interrupted_download_resumes_where_it_stopped(server, checkpoint_bytes, tmp_path, monkeypatch, capsys):
    _serve(monkeypatch, server, checkpoint_bytes)
    server.cut = 1
    assert download.main(["pcvos", "--out", str(tmp_path), "--retries", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run the same command again to resume" in err
    dest = tmp_path / "s03_pcvos_ytvos.pth"
    assert not dest.exists()  # never a half file under the final name
    (partial,) = tmp_path.glob(".s03_pcvos_ytvos.pth.download*.part")
    kept = partial.stat().st_size
    assert 0 < kept < len(checkpoint_bytes)
    assert download.main(["pcvos", "--out", str(tmp_path), "--retries", "0"]) == 0
    assert f"bytes={kept}-" in server.requests  # only the rest was asked for
    assert dest.read_bytes() == checkpoint_bytes and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("damage", ["truncated", "wrong keys", "wrong size"])
def test_a_damaged_or_foreign_file_is_refused(server, checkpoint_bytes, tmp_path, monkeypatch, capsys, damage):
    if damage == "truncated":  # a server that sends a cut file as if it were whole
        item = _serve(monkeypatch, server, checkpoint_bytes[: len(checkpoint_bytes) // 2])
    elif damage == "wrong keys":
        path = tmp_path / "other.pth"
        torch.save({"conv.weight": torch.zeros(3)}, path)
        item = _serve(monkeypatch, server, path.read_bytes())
        path.unlink()
    else:
        item = _serve(monkeypatch, server, checkpoint_bytes, size=len(checkpoint_bytes) + 1)
    out = tmp_path / "saves"
    assert download.main(["pcvos", "--out", str(out), "--retries", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused and was removed" in err and item.by_hand in err
    expected = {"truncated": "damaged checkpoint, truncated or corrupt", "wrong keys": "lacks",
                "wrong size": f"{len(checkpoint_bytes)} bytes, the released"}[damage]
    assert expected in err
    assert not list(out.iterdir())  # neither the final name nor a staging file


def test_offline_is_one_line_saying_what_to_fetch_and_where(tmp_path, monkeypatch, capsys):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused, as without a network
    item = dataclasses.replace(download.WEIGHTS["pcvos"][0], url=f"http://127.0.0.1:{port}/w.pth")
    monkeypatch.setitem(download.WEIGHTS, "pcvos", [item])
    assert download.main(["pcvos", "--out", str(tmp_path), "--retries", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("download.py: error: s03_pcvos_ytvos.pth: download failed")
    # the Drive page of the authors' README, and where the file goes
    assert "https://drive.google.com/file/d/1g69yjZOkl4Hz3iFYfJkmo8Pvk1T25jjk/view" in err
    assert f"save it as {tmp_path / 's03_pcvos_ytvos.pth'}" in err
    assert not list(tmp_path.glob("s03*"))


def test_the_table_names_the_released_files():
    assert {k: [w.filename for w in v] for k, v in download.WEIGHTS.items()} == {
        "pcvos": ["s03_pcvos_ytvos.pth"], "stcn": ["stcn.pth"], "stcn-s03": ["stcn_s03.pth"]}
    assert all(w.source == f"https://drive.google.com/uc?id={w.drive_id}" for v in download.WEIGHTS.values()
               for w in v)
    pcvos, stcn = download.expected_keys("pcvos"), download.expected_keys("stcn")
    assert stcn < pcvos and all(k.startswith(("input_proj.", "refine_transformer.")) for k in pcvos - stcn)
