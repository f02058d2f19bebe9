"""Client for EODC's Chiller, the service that stages tape-archived files to disk.

Chiller's API is only partly documented (see reference/external-systems.md section 2), so
the client accepts every reply shape the two known sources show: the upload reply is either
a bare job id (EODC's docs) or a polling URL (the ``eodc`` SDK); a job's JSON says it is done
through ``State`` (``Finished`` / ``ERROR``, any case) and/or ``Finished`` (``"true"``, ``true``,
``"True"``); ``StagedFiles`` is a path on the shared filesystem to a list of what was staged.

Plain Python over ``requests``: no Dagster. TLS is always verified.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from s2_assets.errors import StagingError

# Form-encoded is what the eodc SDK sends; Chiller reads the raw body as newline-joined paths.
UPLOAD_CONTENT_TYPE = "application/x-www-form-urlencoded"
# A job id goes into a URL path: keep it to characters that need no quoting.
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class ChillerJob:
    """A submitted staging job: its id, where to poll it, and the files it asked for."""

    job_id: str
    poll_url: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class ChillerStatus:
    """What one poll of a job said.

    ``staged`` is read from the ``StagedFiles`` list once the job is finished; it stays
    empty while the job runs or when it ended in ERROR.
    """

    job_id: str
    state: str
    finished: bool
    failed: bool
    staged_files_path: str | None = None
    staged: frozenset[str] = frozenset()

    def missing(self, requested: Iterable[str]) -> list[str]:
        """The requested files that the finished job did not stage, sorted."""
        return sorted(set(requested) - self.staged)


def normalise_paths(paths: Iterable[str]) -> list[str]:
    """De-duplicated, sorted absolute paths, as Chiller expects one per line.

    Raises:
        StagingError: naming the first path that is empty, relative or has a line break.
    """
    cleaned: set[str] = set()
    for raw in paths:
        path = str(raw).strip()
        if not path or "\n" in path or "\r" in path or not path.startswith("/"):
            raise StagingError(
                f"cannot stage {raw!r}: Chiller takes absolute paths, one per line "
                "(like /eodc/products/copernicus.eu/s2a_prd_msil1c/2024/01/01/<name>.zip)"
            )
        cleaned.add(path)
    return sorted(cleaned)


def parse_finished(value: Any, *, job_id: str) -> bool | None:
    """Read Chiller's ``Finished`` field: a string or a boolean, any case; None if absent.

    Raises:
        StagingError: naming the job and the value when it is neither true nor false.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise StagingError(
        f"Chiller job {job_id}: unreadable Finished value {value!r}; "
        'valid: "true"/"false" in any case, or a JSON boolean'
    )


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT_CHARS else flat[:_EXCERPT_CHARS] + "..."


def _safe_url(url: str) -> str:
    """A URL fit for a message: no user info, no query (they could carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class ChillerClient:
    """Submit file lists to Chiller and poll the jobs.

    Args:
        url: Chiller's base URL, e.g. ``https://chiller.eodc.eu`` (a trailing slash is ignored).
        request_timeout: seconds to wait for each HTTP request.
        ca_bundle: a CA bundle to verify Chiller's certificate with, for sites with their
            own CA; None uses the system's. Verification itself cannot be turned off.
        session: a ``requests.Session`` to reuse; one is created when None.
    """

    def __init__(
        self,
        url: str,
        *,
        request_timeout: float = 60.0,
        ca_bundle: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        base = url.strip().rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StagingError(
                f"invalid Chiller URL {_safe_url(base)!r}: expected http(s)://host[:port][/path], "
                "e.g. https://chiller.eodc.eu"
            )
        if request_timeout <= 0:
            raise StagingError(f"Chiller request timeout must be > 0 s, not {request_timeout}")
        self.url = base
        self.request_timeout = request_timeout
        self._verify: bool | str = ca_bundle or True
        self._session = session or requests.Session()

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def submit(self, paths: Iterable[str]) -> ChillerJob:
        """Ask Chiller to stage ``paths`` as one job.

        Args:
            paths: absolute file paths; duplicates are dropped and the list is sorted.

        Returns:
            The job, with the de-duplicated, sorted files it asked for.

        Raises:
            StagingError: on an empty list, an HTTP error, or a reply that is neither a job
                id nor a polling URL.
        """
        files = normalise_paths(paths)
        if not files:
            raise StagingError("refusing to submit an empty file list to Chiller")
        target = f"{self.url}/upload"
        what = f"Chiller upload of {len(files)} file(s) ({files[0]} ...)"
        response = self._request("POST", target, what, data="\n".join(files).encode())
        reply = response.text.strip()
        if reply.startswith(("http://", "https://")):
            poll_url = reply
            job_id = urlsplit(reply).path.rstrip("/").rsplit("/", 1)[-1]
        else:
            job_id = reply
            poll_url = f"{self.url}/jobs/{job_id}"
        if not _JOB_ID_RE.match(job_id):
            raise StagingError(
                f"{what}: reply {_excerpt(response.text)!r} is neither a job id "
                "(letters, digits, '._~-') nor a polling URL ending in one"
            )
        return ChillerJob(job_id=job_id, poll_url=poll_url, files=tuple(files))

    def status(self, job: ChillerJob) -> ChillerStatus:
        """Poll ``job`` once.

        An ERROR state is returned (``failed``), not raised: only ``wait`` treats it as fatal,
        so a caller that polls on a schedule can record it and move on.

        Raises:
            StagingError: naming the job, on an HTTP error, a reply that is not a JSON object,
                an unreadable ``Finished``, or a finished job whose ``StagedFiles`` cannot be read.
        """
        what = f"Chiller job {job.job_id}"
        response = self._request("GET", job.poll_url, what)
        try:
            body = response.json()
        except ValueError as exc:
            raise StagingError(f"{what}: reply is not JSON: {_excerpt(response.text)!r}") from exc
        if not isinstance(body, dict):
            raise StagingError(f"{what}: reply is not a JSON object: {_excerpt(response.text)!r}")
        state = str(body.get("State") or "").strip()
        finished_flag = parse_finished(body.get("Finished"), job_id=job.job_id)
        failed = state.upper() == "ERROR"
        # Either field is enough: the docs show only Finished, the SDK reads only State.
        finished = not failed and (finished_flag is True or state.lower() == "finished")
        staged_path = body.get("StagedFiles")
        staged_text = str(staged_path).strip() if staged_path not in (None, "") else None
        staged: frozenset[str] = frozenset()
        if finished:
            staged = self._read_staged(job, staged_text)
        return ChillerStatus(
            job_id=job.job_id,
            state=state or ("Finished" if finished else "unknown"),
            finished=finished,
            failed=failed,
            staged_files_path=staged_text,
            staged=staged,
        )

    def wait(
        self,
        job: ChillerJob,
        *,
        interval: float = 60.0,
        timeout: float = 21600.0,
        max_poll_errors: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> list[str]:
        """Poll ``job`` until it finishes; for the CLI and manual use, never inside a run.

        Args:
            job: the job ``submit`` returned.
            interval: seconds between polls.
            timeout: seconds after which to give up.
            max_poll_errors: consecutive failed polls tolerated (Chiller hiccups, a
                StagedFiles list not yet visible on the shared filesystem).
            sleep: how to wait (injected by tests).
            clock: monotonic seconds (injected by tests).

        Returns:
            The files asked for that were not staged, sorted.

        Raises:
            StagingError: naming the job, when it ends in ERROR, times out, or fails to poll
                ``max_poll_errors`` times in a row.
        """
        deadline = clock() + timeout
        errors = 0
        while True:
            try:
                status = self.status(job)
                errors = 0
            except StagingError:
                errors += 1
                if errors >= max_poll_errors:
                    raise
            else:
                if status.failed:
                    raise StagingError(
                        f"Chiller job {job.job_id} ended in state {status.state} "
                        f"({len(job.files)} file(s) from {job.files[0]})"
                    )
                if status.finished:
                    return status.missing(job.files)
            remaining = deadline - clock()
            if remaining <= 0:
                raise StagingError(
                    f"Chiller job {job.job_id} not finished after {timeout:g} s "
                    f"(polled {_safe_url(job.poll_url)})"
                )
            sleep(min(interval, remaining))

    def _request(
        self, method: str, url: str, what: str, data: bytes | None = None
    ) -> requests.Response:
        headers = {"Content-Type": UPLOAD_CONTENT_TYPE} if data is not None else {}
        try:
            response = self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=self.request_timeout,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            raise StagingError(
                f"{what}: {method} {_safe_url(url)} failed: {type(exc).__name__}"
            ) from exc
        if not response.ok:
            raise StagingError(
                f"{what}: {method} {_safe_url(url)} returned HTTP {response.status_code}: "
                f"{_excerpt(response.text)!r}"
            )
        return response

    def _read_staged(self, job: ChillerJob, path: str | None) -> frozenset[str]:
        if path is None:
            raise StagingError(
                f"Chiller job {job.job_id} is finished but its reply has no StagedFiles path"
            )
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StagingError(
                f"Chiller job {job.job_id}: cannot read its StagedFiles list {path}: "
                f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) else exc}"
            ) from exc
        return frozenset(line.strip() for line in text.splitlines() if line.strip())
