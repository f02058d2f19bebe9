"""Download one CDSE product zip: stream to ``<id>.zip.part``, resume with ``Range`` after a
broken connection, verify, then rename to ``<id>.zip``.

Two traps shape this module. ``requests`` drops the ``Authorization`` header when a redirect
changes host, and CDSE's download host redirects to another one (``zipper.``), so redirects
are followed here, by hand, to trusted hosts only. And nothing unverified may carry the final
name: the size and checksum (BLAKE3 when the ``blake3`` package is there, else MD5; the zip's
own CRCs when the catalogue offers neither) are checked on the ``.part`` file before the
rename. A lock file keeps two processes from writing the same ``.part``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from s2_assets.errors import ProductOfflineError
from s2_assets.providers.base import ProductRecord
from s2_assets.providers.cdse_auth import CdseAuthError, CdseTokenServiceError, TokenCache
from s2_assets.providers.cdse_http import (
    CdseChecksumError,
    CdseDownloadError,
    CdseSettings,
    server_reason,
)

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# What CDSE answers for a product it cannot serve now is undocumented; these are the
# statuses that may mean "offline", confirmed by asking the catalogue.
_MAYBE_OFFLINE = frozenset({403, 404, 409, 410, 422, 423})
_MAX_REDIRECTS = 5
_HASH_BLOCK = 4 * 1024 * 1024


@cache
def blake3_available() -> bool:
    """Whether the optional ``blake3`` package can be imported."""
    return importlib.util.find_spec("blake3") is not None


def checksum_algorithm(checksums: dict[str, str]) -> str | None:
    """The algorithm we verify with: BLAKE3 when offered and importable, else MD5, else none."""
    if "BLAKE3" in checksums and blake3_available():
        return "BLAKE3"
    return "MD5" if "MD5" in checksums else None


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file with ``MD5`` or ``BLAKE3``."""
    if algorithm == "BLAKE3":
        import blake3

        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(str(path))
        return str(hasher.hexdigest())
    if algorithm == "MD5":
        with path.open("rb") as stream:
            return hashlib.file_digest(stream, "md5").hexdigest()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}; valid: BLAKE3, MD5")


def verify_zip(path: Path, record: ProductRecord) -> str:
    """Check a downloaded zip against its catalogue record; return what was checked.

    Raises:
        CdseChecksumError: naming the product, what was expected and what was found.
    """
    size = path.stat().st_size
    if record.size is not None and size != record.size:
        raise CdseChecksumError(
            f"{record.product_id}: downloaded {size} bytes, the catalogue says {record.size}"
        )
    algorithm = checksum_algorithm(record.checksums)
    if algorithm is None:
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except zipfile.BadZipFile as exc:
            raise CdseChecksumError(f"{record.product_id}: not a readable zip ({exc})") from None
        if bad is not None:
            raise CdseChecksumError(f"{record.product_id}: CRC mismatch in zip member {bad}")
        return "zip CRC (the catalogue offers no checksum)"
    expected = record.checksums[algorithm].lower()
    found = file_digest(path, algorithm)
    if found != expected:
        raise CdseChecksumError(
            f"{record.product_id}: {algorithm} {found} does not match the catalogue's {expected}"
        )
    return algorithm


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Downloader:
    """Verified, resumable downloads of CDSE products, safe to share between threads.

    Args:
        settings: URLs, timeouts, retries, chunk size.
        tokens: the bearer-token cache.
        session: this thread's ``requests.Session``.
        is_online: asks the catalogue whether a product is online now (``None``: unknown).
        sleep: waits between tries (tests pass a recorder).
    """

    def __init__(
        self,
        settings: CdseSettings,
        tokens: TokenCache,
        *,
        session: Callable[[], requests.Session],
        is_online: Callable[[ProductRecord], bool | None],
        sleep: Callable[[float], None],
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._session = session
        self._is_online = is_online
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(settings.max_parallel_downloads)

    def fetch(self, record: ProductRecord, workdir: Path) -> Path:
        """Download ``record`` to ``<workdir>/<product id>.zip``, verified.

        Raises:
            ProductOfflineError: the product is not online at CDSE now.
            CdseAuthError: the account was refused.
            CdseDownloadError: the download failed for good (message says why).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        final = workdir / f"{record.product_id}.zip"
        part = final.with_name(f"{final.name}.part")
        lock = final.with_name(f"{final.name}.lock")
        with _exclusive(lock):
            if final.exists():
                try:
                    verify_zip(final, record)
                    return final
                except CdseChecksumError as exc:
                    log.warning("%s; downloading it again", exc)
                    final.unlink()
            if not record.online and not self._is_online(record):
                raise ProductOfflineError(
                    f"{record.product_id} is offline at CDSE (Online: false); "
                    "it will be tried again on a later round"
                )
            # A corrupt result is downloaded afresh once: a second mismatch means the
            # catalogue's checksum or the server's bytes are wrong, and retrying won't help.
            fresh_tries = 1
            while True:
                with self._slots:
                    self._download(record, part)
                try:
                    checked = verify_zip(part, record)
                except CdseChecksumError as exc:
                    part.unlink(missing_ok=True)
                    if fresh_tries == 2:
                        raise
                    fresh_tries += 1
                    log.warning("%s; downloading it again from the start", exc)
                    continue
                os.replace(part, final)
                lock.unlink(missing_ok=True)
                log.info("%s: downloaded and verified (%s)", record.product_id, checked)
                return final

    def _download(self, record: ProductRecord, part: Path) -> None:
        """Bring ``part`` to the full size, resuming what is there."""
        pid = record.product_id
        # Built from the Id and today's settings when we can: a row stored in the acquisitions
        # table keeps the download URL of the day it was found.
        url = (
            f"{self._settings.download_url}/Products({record.remote_id})/$value"
            if record.remote_id
            else record.location
        )
        expected = record.size
        failures = busy = 0
        refreshed = False
        last = ""
        while True:
            offset = part.stat().st_size if part.exists() else 0
            if expected is not None and offset > expected:
                part.unlink()
                offset = 0
            if expected is not None and offset == expected and offset > 0:
                return
            if failures > self._settings.download_retries or busy > self._settings.busy_retries:
                raise CdseDownloadError(
                    f"{pid}: gave up after {failures + busy} tries without progress ({last})"
                )
            try:
                token = self._tokens.token()
            except CdseTokenServiceError as exc:
                failures += 1
                last = str(exc)
                self._sleep(self._settings.retry_delay(failures))
                continue
            retry_after: str | None = None
            end = offset
            try:
                with self._open(pid, url, token, offset) as response:
                    status = response.status_code
                    if status == 401:
                        self._tokens.invalidate(token)
                        if refreshed:
                            raise CdseAuthError(
                                f"{pid}: download refused (HTTP 401) with a freshly renewed token"
                            )
                        refreshed = True
                        continue
                    if status in (200, 206):
                        start, total = self._resume_point(pid, response, offset)
                        if expected is None:
                            expected = total
                        elif total is not None and total != expected:
                            raise CdseDownloadError(
                                f"{pid}: the server sends {total} bytes, the catalogue says "
                                f"{expected}"
                            )
                        moved, cut = self._stream(response, part, start)
                        end = start + moved
                        if cut is None and (expected is None or end == expected):
                            return
                        last = f"connection lost at byte {end} ({cut or 'short body'})"
                    elif status == 416:
                        part.unlink(missing_ok=True)
                        last = "HTTP 416 (range not satisfiable): starting over"
                    elif status == 429 or status >= 500:
                        retry_after = response.headers.get("Retry-After")
                        last = server_reason(response)
                    elif status in _MAYBE_OFFLINE and self._is_online(record) is False:
                        raise ProductOfflineError(
                            f"{pid} is offline at CDSE ({server_reason(response)}); "
                            "it will be tried again on a later round"
                        )
                    else:
                        raise CdseDownloadError(
                            f"{pid}: download from {urlsplit(response.url).hostname} failed: "
                            f"{server_reason(response)}"
                        )
            except requests.RequestException as exc:
                last = f"no connection ({type(exc).__name__})"
            # Progress means the file got longer than it was: a resume keeps those bytes, so
            # a connection that keeps breaking but moves forward is not a failure.
            if end > offset:
                failures = busy = 0
                refreshed = False
                log.info("%s: %s; resuming", pid, last)
                continue
            # A busy account (429) is waited out on its own, longer budget.
            if last.startswith("HTTP 429"):
                busy += 1
                tries = busy
            else:
                failures += 1
                tries = failures
            delay = self._settings.retry_delay(tries, retry_after)
            log.warning("%s: %s; trying again in %.2f s", pid, last, delay)
            self._sleep(delay)

    @contextmanager
    def _open(self, pid: str, url: str, token: str, offset: int) -> Iterator[requests.Response]:
        """GET with the token, following redirects by hand so the header survives a change
        of host; only trusted hosts, and never from https down to http."""
        headers = {"Authorization": f"Bearer {token}"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        session = self._session()
        for _ in range(_MAX_REDIRECTS + 1):
            host = urlsplit(url).hostname
            if not self._settings.is_trusted(host):
                raise CdseDownloadError(
                    f"{pid}: redirected to {host!r}, which is not a CDSE host; add it to "
                    f"trusted_hosts ({', '.join(self._settings.trusted_hosts)}) if it is one"
                )
            response = session.get(
                url,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=self._settings.timeout,
            )
            if not response.is_redirect:
                try:
                    yield response
                finally:
                    response.close()
                return
            target = urljoin(url, response.headers["Location"])
            response.close()
            if urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https":
                raise CdseDownloadError(f"{pid}: refused a redirect from https to {target}")
            url = target
        raise CdseDownloadError(f"{pid}: more than {_MAX_REDIRECTS} redirects from {url}")

    @staticmethod
    def _resume_point(pid: str, response: requests.Response, offset: int) -> tuple[int, int | None]:
        """Where the body starts in the file, and the full size if the server says."""
        if response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match[1]) != offset:
                raise CdseDownloadError(
                    f"{pid}: asked for bytes {offset}- and got Content-Range "
                    f"{response.headers.get('Content-Range')!r}"
                )
            return offset, None if match[3] == "*" else int(match[3])
        # 200: the whole file again (the server ignored Range, or we asked for none).
        length = response.headers.get("Content-Length")
        return 0, int(length) if length and length.isdigit() else None

    def _stream(
        self, response: requests.Response, part: Path, start: int
    ) -> tuple[int, str | None]:
        """Write the body into ``part`` from byte ``start``.

        Returns the bytes written and, when the connection broke, the error's name; what was
        written stays for the next try to resume from.
        """
        moved = 0
        cut: str | None = None
        mode = "r+b" if start and part.exists() else "wb"
        try:
            with part.open(mode) as out:
                out.seek(start)
                out.truncate()
                try:
                    for chunk in response.iter_content(chunk_size=self._settings.chunk_size):
                        out.write(chunk)
                        moved += len(chunk)
                except requests.RequestException as exc:
                    cut = type(exc).__name__
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise CdseDownloadError(f"cannot write {part}: {exc.strerror or exc}") from exc
        return moved, cut
