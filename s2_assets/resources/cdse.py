"""The CDSE resource: settings and credentials in, a shared ``CdseProvider`` out."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from s2_assets.providers.cdse import CdseProvider, CdseSettings, Credentials
from s2_assets.providers.cdse_auth import DEFAULT_COOLDOWN_S, default_state_dir
from s2_assets.providers.cdse_http import CATALOGUE_URL, DOWNLOAD_URL, TOKEN_URL, TRUSTED_HOSTS


class CdseResource(dg.ConfigurableResource):
    """Copernicus Data Space: catalogue search and verified, resumable downloads.

    Bind ``username`` and ``password`` with ``dg.EnvVar`` so that only the variable names
    reach run config and the UI. Search works without them.
    """

    catalogue_url: str = Field(default=CATALOGUE_URL, description="OData root of the catalogue.")
    download_url: str = Field(default=DOWNLOAD_URL, description="OData root for downloads.")
    token_url: str = Field(default=TOKEN_URL, description="Keycloak token endpoint.")
    username: str = Field(default="", description="CDSE account (e.g. EnvVar CDSE_USERNAME).")
    password: str = Field(
        default="", repr=False, description="CDSE password (e.g. EnvVar CDSE_PASSWORD)."
    )
    client_id: str = Field(default="cdse-public", description="Keycloak client id.")
    trusted_hosts: list[str] = Field(
        default=list(TRUSTED_HOSTS),
        description="Hosts (and their subdomains) the token may follow a redirect to.",
    )
    connect_timeout: float = Field(default=10.0, description="Seconds to open a connection.")
    read_timeout: float = Field(default=120.0, description="Seconds without a byte = broken.")
    search_retries: int = Field(default=4, description="Extra tries of a catalogue page.")
    download_retries: int = Field(
        default=6, description="Extra tries of a download that makes no progress."
    )
    busy_retries: int = Field(
        default=30, description="Extra tries of a download answered 429 (account busy)."
    )
    backoff_seconds: float = Field(default=2.0, description="First wait; doubles per try.")
    max_backoff_seconds: float = Field(default=120.0, description="Longest wait of our own.")
    max_retry_after_seconds: float = Field(
        default=600.0, description="Longest server Retry-After honoured."
    )
    chunk_size: int = Field(default=1024 * 1024, description="Bytes per network read.")
    page_size: int = Field(default=1000, description="Catalogue $top (1..1000).")
    window_days: int = Field(default=366, description="Longer searches are split into windows.")
    token_margin_seconds: float = Field(
        default=60.0, description="Renew a token this long before it expires."
    )
    max_parallel_downloads: int = Field(
        default=4, description="Streams one process runs at once (CDSE allows 4 per account)."
    )
    state_dir: str = Field(
        default="",
        description="Where a refused login is remembered across runs; empty: "
        "$XDG_STATE_HOME/s2_assets (~/.local/state/s2_assets).",
    )
    login_cooldown_seconds: int = Field(
        default=int(DEFAULT_COOLDOWN_S),
        description="After a refused login, whole seconds before the same user is tried "
        "again (within a run, never); 0 remembers it for the run only.",
    )

    _provider: CdseProvider | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def settings(self) -> CdseSettings:
        """The provider settings this resource describes.

        Raises:
            ValueError: naming each field out of range and its valid values.
        """
        return CdseSettings(
            catalogue_url=self.catalogue_url.rstrip("/"),
            download_url=self.download_url.rstrip("/"),
            token_url=self.token_url,
            client_id=self.client_id,
            trusted_hosts=tuple(self.trusted_hosts),
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            search_retries=self.search_retries,
            download_retries=self.download_retries,
            busy_retries=self.busy_retries,
            backoff=self.backoff_seconds,
            max_backoff=self.max_backoff_seconds,
            max_retry_after=self.max_retry_after_seconds,
            chunk_size=self.chunk_size,
            page_size=self.page_size,
            window_days=self.window_days,
            token_margin=self.token_margin_seconds,
            max_parallel_downloads=self.max_parallel_downloads,
            state_dir=Path(self.state_dir).expanduser() if self.state_dir else default_state_dir(),
            login_cooldown=float(self.login_cooldown_seconds),
        )

    def provider(self) -> CdseProvider:
        """The provider for this run: created once, so its token cache lasts the whole run."""
        with self._lock:
            if self._provider is None:
                self._provider = CdseProvider(
                    self.settings(), Credentials(self.username, self.password)
                )
            return self._provider
