"""A local Chiller for tests: an HTTP server on 127.0.0.1 that behaves like EODC's staging
service as reference/external-systems.md section 2 describes it, and a cold tape tree.

``POST /upload`` takes newline-joined paths and replies with a 19-digit job id (or, switched,
a polling URL); ``GET /jobs/<id>`` replies with the working-assumption JSON
``{"Id", "State", "Finished", "StagedFiles", "Files"}``, moving Queued -> Running -> Finished
(or ERROR) over a set number of polls. When a job finishes it writes its ``StagedFiles`` list
to a temp dir and warms the cold archive files it staged. Faults: HTTP errors on the next
requests, a missing list file, garbage replies, files left unstaged.

Cold files: the zip's bytes wait in a hidden ``.<name>.cold`` file beside a zero-filled
placeholder of the same size, so listing the tree sees every product but opening a cold zip
fails, as reading from tape before staging must not be relied on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from s2_assets.products import ProductName

_JOB_PATH = re.compile(r"^/jobs/([^/]+)/?$")
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


def cold_marker(path: Path) -> Path:
    """Where a cold file's real bytes wait."""
    return path.with_name(f".{path.name}.cold")


def is_cold(path: Path | str) -> bool:
    """Whether ``path`` is a cold archive file (unreadable until a job stages it)."""
    return cold_marker(Path(path)).exists()


class ColdArchive:
    """A fake ``/eodc/products/copernicus.eu`` tree under a temp dir.

    Args:
        base: temp dir; the tree is ``<base>/eodc/products/copernicus.eu``.
    """

    def __init__(self, base: Path) -> None:
        self.root = base / "eodc" / "products" / "copernicus.eu"
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, product_id: str) -> Path:
        """EODC's place for a product: ``<platform>_prd_msi<level>/YYYY/MM/DD/<id>.zip``."""
        name = ProductName.parse(product_id)
        day = name.sensing
        folder = f"{name.mission.lower()}_prd_msi{name.level.lower()}"
        return self.root / folder / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}" / f"{name.id}.zip"

    def add(self, zip_path: Path, *, cold: bool = True) -> Path:
        """Copy a product zip into the tree (cold unless told otherwise); return its path."""
        target = self.path_for(zip_path.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(zip_path, target)
        if cold:
            self.freeze(target)
        return target

    def freeze(self, path: Path) -> None:
        """Make ``path`` cold: same name and size, unreadable content."""
        if is_cold(path):
            return
        size = path.stat().st_size
        os.replace(path, cold_marker(path))
        with open(path, "wb") as placeholder:
            placeholder.truncate(size)

    def warm(self, path: Path) -> bool:
        """Bring a cold file back; True if it was cold."""
        marker = cold_marker(path)
        if not marker.exists():
            return False
        os.replace(marker, path)
        return True


@dataclass
class StandInJob:
    """One job as the stand-in keeps it."""

    job_id: str
    files: list[str]
    polls_before_finished: int
    error: bool
    polls: int = 0
    staged: list[str] | None = None


@dataclass
class Upload:
    """One POST /upload as received."""

    body: str
    content_type: str


@dataclass
class ChillerStandIn:
    """The local Chiller; start it as a context manager (or with the ``chiller`` fixture).

    Knobs (change them between requests): ``reply_url`` (upload replies with a polling URL),
    ``polls_before_finished`` and ``error`` (taken per job at submission), ``not_staged``
    (files no job stages), ``finished_style`` (``string``, ``title``, ``bool``, ``absent``),
    ``state_style`` (``normal``, ``lower``, ``absent``), ``staged_list_missing``,
    ``upload_reply`` / ``job_reply`` (raw bodies replacing the normal ones), and
    ``inject(status, times, on)`` for HTTP errors.
    """

    base: Path
    archive: ColdArchive | None = None
    reply_url: bool = False
    polls_before_finished: int = 2
    error: bool = False
    not_staged: set[str] = field(default_factory=set)
    finished_style: str = "string"
    state_style: str = "normal"
    staged_list_missing: bool = False
    upload_reply: str | None = None
    job_reply: str | None = None
    uploads: list[Upload] = field(default_factory=list)
    jobs: dict[str, StandInJob] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _faults: list[tuple[int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _last_id: int = 0

    @property
    def url(self) -> str:
        assert self._server is not None, "stand-in not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def staged_dir(self) -> Path:
        return self.base / "chiller-staged"

    def inject(self, status: int, times: int = 1, on: str = "any") -> None:
        """Answer the next ``times`` requests to ``on`` (``upload``, ``jobs``, ``any``) with
        HTTP ``status`` and a short text body."""
        with self._lock:
            self._faults.extend([(status, on)] * times)

    def __enter__(self) -> ChillerStandIn:
        self.staged_dir.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def new_id(self) -> str:
        # Like the documented example: a nanosecond Unix time, 19 digits, unique here.
        job = max(time.time_ns(), self._last_id + 1)
        self._last_id = job
        return str(job)

    def take_fault(self, endpoint: str) -> int | None:
        for index, (status, on) in enumerate(self._faults):
            if on in ("any", endpoint):
                del self._faults[index]
                return status
        return None

    def upload(self, body: str, content_type: str) -> tuple[int, str]:
        with self._lock:
            self.uploads.append(Upload(body, content_type))
            files = [line for line in body.split("\n") if line.strip()]
            if not files:
                return 400, "empty file list\n"
            job = StandInJob(self.new_id(), files, self.polls_before_finished, self.error)
            self.jobs[job.job_id] = job
            if self.upload_reply is not None:
                return 200, self.upload_reply
            reply = f"{self.url}/jobs/{job.job_id}" if self.reply_url else job.job_id
            return 200, reply + "\n"

    def poll(self, job_id: str) -> tuple[int, str, str]:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, f"no job {job_id}\n", _TEXT
            job.polls += 1
            done = job.polls > job.polls_before_finished
            if done and not job.error and job.staged is None:
                self._finish(job)
            state = "Queued" if job.polls == 1 else "Running"
            if done:
                state = "ERROR" if job.error else "Finished"
            if self.job_reply is not None:
                return 200, self.job_reply, _JSON
            return 200, json.dumps(self._body(job, state, done and not job.error)), _JSON

    def _finish(self, job: StandInJob) -> None:
        job.staged = [path for path in job.files if path not in self.not_staged]
        if not self.staged_list_missing:
            target = self.staged_dir / f"{job.job_id}.staged.txt"
            partial = target.with_name(f".{target.name}.part")
            partial.write_text("".join(f"{path}\n" for path in job.staged))
            os.replace(partial, target)
        if self.archive is not None:
            for path in job.staged:
                self.archive.warm(Path(path))

    def _body(self, job: StandInJob, state: str, finished: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Id": job.job_id,
            "StagedFiles": str(self.staged_dir / f"{job.job_id}.staged.txt"),
            "Files": len(job.files),
        }
        if self.state_style != "absent":
            body["State"] = state.lower() if self.state_style == "lower" else state
        if self.finished_style == "bool":
            body["Finished"] = finished
        elif self.finished_style == "title":
            body["Finished"] = str(finished)
        elif self.finished_style == "string":
            body["Finished"] = str(finished).lower()
        return body


def _handler_for(standin: ChillerStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            standin.requests.append(f"POST {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            if self.path.rstrip("/") != "/upload":
                self._reply(404, "not found\n")
                return
            if (status := self._fault("upload")) is not None:
                self._reply(status, f"injected failure {status}\n")
                return
            self._reply(*standin.upload(body, self.headers.get("Content-Type", "")))

        def do_GET(self) -> None:
            standin.requests.append(f"GET {self.path}")
            match = _JOB_PATH.match(self.path)
            if match is None:
                self._reply(404, "not found\n")
                return
            if (status := self._fault("jobs")) is not None:
                self._reply(status, f"injected failure {status}: upstream tape library busy\n")
                return
            self._reply(*standin.poll(match[1]))

        def _fault(self, endpoint: str) -> int | None:
            with standin._lock:
                return standin.take_fault(endpoint)

        def _reply(self, status: int, text: str, content_type: str = _TEXT) -> None:
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean; requests are recorded in standin.requests

    return Handler


@pytest.fixture
def chiller(tmp_path: Path) -> Iterator[ChillerStandIn]:
    """A running stand-in with a cold archive under ``tmp_path``."""
    with ChillerStandIn(tmp_path, archive=ColdArchive(tmp_path)) as standin:
        yield standin
