"""The FastAPI app of the interactive page: routes over :class:`Session` and :class:`Propagator`.

Masks travel as raw bytes, one object id per pixel in row-major order (width x height bytes); the
gzip middleware compresses them on the wire. Frames travel as JPEG. Every user error is a 400
with a one-line ``detail`` the page shows as it is.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from inference.interactive.propagate import PRECISION_CHOICES, Propagator, PropagatorFactory
from inference.interactive.session import SESSION_FILE, Session, Settings, check_session_id, mask_from_bytes
from inference.memory_strategies import STRATEGIES

STATIC = Path(__file__).resolve().parent / "static"


class OpenRequest(BaseModel):
    path: str


class SettingsRequest(BaseModel):
    clip_length: int
    precision: str
    memory: str
    size: int


class PropagateRequest(BaseModel):
    direction: str = "forward"
    start: int | None = None  # "from this frame": only frames from here on (forward) / up to here (backward)


class ExportRequest(BaseModel):
    alpha: float = 0.5
    overlay: bool = True


class Sessions:
    """The sessions of one workdir: opened from disk on first use (so they survive a server restart), each
    with its propagator."""

    def __init__(self, workdir: Path, defaults: Settings, propagators: PropagatorFactory) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.defaults = defaults
        self.propagators = propagators
        self._open: dict[str, tuple[Session, Propagator]] = {}
        self._lock = threading.Lock()

    def list(self) -> list[dict]:
        out = []
        for meta in sorted(self.workdir.glob(f"*/{SESSION_FILE}"), key=lambda p: p.stat().st_mtime, reverse=True):
            out.append({"id": meta.parent.name})
        return out

    def get(self, session_id: str) -> tuple[Session, Propagator]:
        check_session_id(session_id)
        with self._lock:
            if session_id not in self._open:
                folder = self.workdir / session_id
                if not (folder / SESSION_FILE).is_file():
                    raise LookupError(f"session {session_id!r}: no such session in {self.workdir}")
                session = Session(folder)
                self._open[session_id] = (session, self.propagators(session))
            return self._open[session_id]

    def create(self, source: Path, uploaded: bool = False) -> Session:
        session = Session.create(self.workdir, source, Settings(**vars(self.defaults)), uploaded=uploaded)
        with self._lock:
            self._open[session.id] = (session, self.propagators(session))
        return session


def create_app(workdir: Path, defaults: Settings, propagators: PropagatorFactory,
               on_job_end: Callable | None = None) -> FastAPI:
    """The app. ``propagators(session)`` builds a session's :class:`Propagator` (the network is shared)."""
    app = FastAPI(title="PCVOS interactive", docs_url=None, redoc_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    sessions = Sessions(workdir, defaults, propagators)
    app.state.sessions = sessions

    @app.exception_handler(ValueError)
    async def _user_error(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(LookupError)
    async def _not_found(request: Request, error: LookupError) -> JSONResponse:
        return JSONResponse({"detail": str(error.args[0] if error.args else error)}, status_code=404)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, error: OSError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/config")
    def config() -> dict:
        return {
            "defaults": vars(defaults),
            "precisions": list(PRECISION_CHOICES),
            "memories": list(STRATEGIES),
            "workdir": str(sessions.workdir),
        }

    @app.get("/api/sessions")
    def list_sessions() -> list[dict]:
        return sessions.list()

    @app.post("/api/sessions")
    def open_path(body: OpenRequest) -> dict:
        return sessions.create(Path(body.path).expanduser()).info()

    @app.post("/api/sessions/upload")
    def upload(file: UploadFile) -> dict:
        name = Path(file.filename or "video.mp4").name
        folder = Path(tempfile.mkdtemp(prefix=".upload-", dir=sessions.workdir))
        try:
            target = folder / name
            with target.open("wb") as out:
                shutil.copyfileobj(file.file, out, 1 << 20)
            return sessions.create(target, uploaded=True).info()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @app.get("/api/sessions/{session_id}")
    def session_info(session_id: str) -> dict:
        return sessions.get(session_id)[0].info()

    @app.get("/api/sessions/{session_id}/frames/{index}.jpg")
    def frame(session_id: str, index: int) -> Response:
        session = sessions.get(session_id)[0]
        try:
            data = session.frames.jpeg(index)
        except IndexError as error:
            raise HTTPException(404, str(error)) from error
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/sessions/{session_id}/masks/{index}")
    def mask(session_id: str, index: int) -> Response:
        session = sessions.get(session_id)[0]
        session.check_index(index)
        mask, source = session.shown_mask(index)
        headers = {"X-Mask-Source": source, "Cache-Control": "no-store"}
        if mask is None:
            return Response(status_code=204, headers=headers)
        return Response(mask.tobytes(), media_type="application/octet-stream", headers=headers)

    @app.put("/api/sessions/{session_id}/annotations/{index}")
    async def put_annotation(session_id: str, index: int, request: Request) -> dict:
        session = sessions.get(session_id)[0]
        session.set_annotation(index, mask_from_bytes(await request.body(), session.frames.size))
        return session.info()

    @app.delete("/api/sessions/{session_id}/annotations/{index}")
    def delete_annotation(session_id: str, index: int) -> dict:
        session = sessions.get(session_id)[0]
        session.delete_annotation(index)
        return session.info()

    @app.post("/api/sessions/{session_id}/annotations/{index}/import")
    def import_mask(session_id: str, index: int, file: UploadFile) -> dict:
        session = sessions.get(session_id)[0]
        session.import_mask(index, file.file.read(), Path(file.filename or "mask.png").name)
        return session.info()

    @app.post("/api/sessions/{session_id}/objects")
    def add_object(session_id: str) -> dict:
        session = sessions.get(session_id)[0]
        obj = session.add_object()
        return {**session.info(), "object": obj}

    @app.delete("/api/sessions/{session_id}/objects/{obj}")
    def remove_object(session_id: str, obj: int) -> dict:
        session, propagator = sessions.get(session_id)
        session.remove_object(obj)
        propagator.remove_object(obj)
        return session.info()

    @app.put("/api/sessions/{session_id}/settings")
    def put_settings(session_id: str, body: SettingsRequest) -> dict:
        session, propagator = sessions.get(session_id)
        settings = Settings(**body.model_dump())
        settings.check(PRECISION_CHOICES, STRATEGIES)
        session.set_settings(settings)
        propagator.invalidate()
        return session.info()

    @app.post("/api/sessions/{session_id}/propagate")
    def propagate(session_id: str, body: PropagateRequest) -> dict:
        session, propagator = sessions.get(session_id)
        job = session.start_job(body.direction)
        try:
            results, total = propagator.results(body.direction, body.start)
        except BaseException:
            job.state = "failed"
            raise
        job.total = total

        def end(finished) -> None:
            propagator.finished(finished)
            if on_job_end is not None:
                on_job_end(finished)

        threading.Thread(
            target=session.run_job, args=(job, results, total, end), name=f"propagate-{session.id}", daemon=True
        ).start()
        return job.public()

    @app.get("/api/sessions/{session_id}/job")
    def job(session_id: str, since: int = 0) -> dict:
        session = sessions.get(session_id)[0]
        current = session.job
        if current is None:
            return {"state": "none"}
        return {**current.public(), "frames": current.frames[since:], "cursor": len(current.frames)}

    @app.post("/api/sessions/{session_id}/cancel")
    def cancel(session_id: str) -> dict:
        session = sessions.get(session_id)[0]
        if session.job is not None:
            session.job.cancel.set()
        return {"state": session.job.state if session.job else "none"}

    @app.post("/api/sessions/{session_id}/export")
    def export(session_id: str, body: ExportRequest) -> dict:
        session = sessions.get(session_id)[0]
        files = session.export(body.alpha, body.overlay)
        base = f"/api/sessions/{session_id}/exports"
        masks = sorted(p.name for p in files["masks"].glob("*.png"))
        out = {"folder": str(files["masks"].parent), "masks": masks, "zip": f"{base}/{files['zip'].name}"}
        if "overlay" in files:
            out["overlay"] = f"{base}/overlay.mp4"
        return out

    @app.get("/api/sessions/{session_id}/exports/{name}")
    def exported(session_id: str, name: str) -> FileResponse:
        session = sessions.get(session_id)[0]
        path = session.dir / "exports" / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(404, f"export {name!r}: not found; export first")
        return FileResponse(path, filename=name)

    return app
