"""What every CDSE call shares: the settings, the error kinds and how long to wait before
trying again.

The defaults point at the real hosts and follow CDSE's published limits (4 concurrent
downloads per account, ``$top`` at most 1000, ``$skip`` at most 10000); tests point the URLs
at a stand-in and shrink the waits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests

from s2_assets.errors import ProviderError

CATALOGUE_URL = "https://catalogue.dataspace.copernicus.eu/odata/v1"
DOWNLOAD_URL = "https://download.dataspace.copernicus.eu/odata/v1"
TOKEN_URL = (
    "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
)
# The download host redirects to zipper.dataspace.copernicus.eu; the bearer token may follow
# redirects only to these hosts (and their subdomains) and to the configured URLs' hosts.
TRUSTED_HOSTS = ("dataspace.copernicus.eu",)
MAX_TOP = 1000
MAX_SKIP = 10000


class CdseCatalogueError(ProviderError):
    """The CDSE catalogue could not be searched or answered something unreadable."""


class CdseDownloadError(ProviderError):
    """A CDSE product could not be downloaded."""


class CdseChecksumError(CdseDownloadError):
    """A downloaded CDSE product does not match its size or checksum."""


@dataclass(frozen=True)
class CdseSettings:
    """Every knob of the CDSE client.

    Attributes:
        catalogue_url: OData root of the catalogue (search needs no login).
        download_url: OData root of the download service (``Products(<Id>)/$value``).
        token_url: Keycloak token endpoint.
        client_id: Keycloak client; CDSE's public one needs no secret.
        trusted_hosts: hosts the bearer token may be sent to after a redirect.
        connect_timeout: seconds to open a connection.
        read_timeout: seconds without a byte before a read counts as broken.
        search_retries: extra tries of a catalogue page after errors, 429s and 5xx.
        download_retries: extra tries of a download that makes no progress; an attempt that
            moved bytes forward resets the count, since a resume keeps them.
        busy_retries: extra tries of a download answered 429 (account busy) with no
            progress; counted apart from ``download_retries`` because waiting for a free
            slot is normal when several processes share the account.
        backoff: first wait in seconds; doubles per failed try, with jitter.
        max_backoff: longest wait of our own.
        max_retry_after: longest ``Retry-After`` honoured; a longer one is cut to this.
        chunk_size: bytes read per network read while streaming.
        page_size: ``$top`` of catalogue pages (1..1000).
        window_days: a search over a longer range is split into windows this long, so paging
            stays far below the catalogue's ``$skip`` limit.
        skip_limit: the catalogue's largest ``$skip``; a window that would need more is split.
        token_margin: seconds before expiry at which a token is renewed.
        max_parallel_downloads: streams one client runs at once (CDSE allows 4 per account).
        state_dir: where a refused login is remembered across processes and runs; None
            remembers it in the client only.
        login_cooldown: seconds after a refused login before the same user is tried again
            (0: only the rest of the run is spared).
    """

    catalogue_url: str = CATALOGUE_URL
    download_url: str = DOWNLOAD_URL
    token_url: str = TOKEN_URL
    client_id: str = "cdse-public"
    trusted_hosts: tuple[str, ...] = TRUSTED_HOSTS
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    search_retries: int = 4
    download_retries: int = 6
    busy_retries: int = 30
    backoff: float = 2.0
    max_backoff: float = 120.0
    max_retry_after: float = 600.0
    chunk_size: int = 1024 * 1024
    page_size: int = MAX_TOP
    window_days: int = 366
    skip_limit: int = MAX_SKIP
    token_margin: float = 60.0
    max_parallel_downloads: int = 4
    state_dir: Path | None = None
    login_cooldown: float = 900.0

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.page_size <= MAX_TOP:
            problems.append(f"page_size={self.page_size} (valid: 1..{MAX_TOP})")
        if self.window_days < 1:
            problems.append(f"window_days={self.window_days} (valid: 1 or more)")
        if self.chunk_size < 1:
            problems.append(f"chunk_size={self.chunk_size} (valid: 1 or more)")
        if self.max_parallel_downloads < 1:
            problems.append(f"max_parallel_downloads={self.max_parallel_downloads} (valid: >= 1)")
        if min(self.search_retries, self.download_retries, self.busy_retries) < 0:
            problems.append("search_retries, download_retries, busy_retries must be >= 0")
        for name in ("catalogue_url", "download_url", "token_url"):
            if urlsplit(getattr(self, name)).scheme not in ("http", "https"):
                problems.append(f"{name}={getattr(self, name)!r} (valid: an http(s) URL)")
        if problems:
            raise ValueError("invalid CDSE settings: " + "; ".join(problems))

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def is_trusted(self, host: str | None) -> bool:
        """Whether the bearer token may be sent to ``host``."""
        if not host:
            return False
        host = host.lower()
        own = {
            urlsplit(url).hostname or ""
            for url in (self.catalogue_url, self.download_url, self.token_url)
        }
        return host in own or any(
            host == trusted or host.endswith(f".{trusted}") for trusted in self.trusted_hosts
        )

    def retry_delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before try number ``attempt`` (1-based) after a failure.

        A server's ``Retry-After`` (seconds or an HTTP date) wins over our own backoff.
        """
        if retry_after:
            seconds = parse_retry_after(retry_after)
            if seconds is not None:
                return min(seconds, self.max_retry_after)
        # Full jitter: several clients cut off at once should not come back in step.
        ceiling = min(self.max_backoff, self.backoff * 2 ** max(attempt - 1, 0))
        return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str) -> float | None:
    """``Retry-After`` in seconds (``"120"`` or an HTTP date), ``None`` if unreadable."""
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def server_reason(response: requests.Response) -> str:
    """A short, safe description of an error response: status plus the server's own
    ``code``/``message``/``detail`` fields, never the raw body."""
    text = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return text
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("error") or body
        if isinstance(detail, dict):
            parts = [str(detail.get(key)) for key in ("code", "message") if detail.get(key)]
            if parts:
                text += f" ({': '.join(parts)[:200]})"
        elif isinstance(detail, str):
            text += f" ({detail[:200]})"
    return text
