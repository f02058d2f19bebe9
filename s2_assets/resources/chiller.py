"""The Chiller resource: EODC's tape-staging service, configured once and shared by the
discovery code, ``staging_sensor`` and the CLI.

Without a URL there is no Chiller: EODC products are read directly (slowly when cold).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import dagster as dg
from pydantic import Field, PrivateAttr

from s2_assets.errors import StagingError
from s2_assets.providers.chiller import ChillerClient, ChillerJob, ChillerStatus
from s2_assets.providers.staging_ledger import StagingLedger, chunk_paths
from s2_assets.providers.staging_records import TickReport


class ChillerResource(dg.ConfigurableResource):
    """EODC Chiller: stage tape-archived product zips to disk before they are read.

    Staging is throttled by ``max_open_jobs`` (jobs open at once) and runs are never made to
    wait: ``staging_sensor`` polls once per tick. ``wait`` blocks and is for the CLI only.
    """

    url: str | None = Field(
        default=None,
        description="Chiller base URL, e.g. https://chiller.eodc.eu; empty means no Chiller "
        "(products are read directly).",
    )
    poll_interval_s: float = Field(default=60.0, gt=0, description="Seconds between polls.")
    timeout_s: float = Field(
        default=21600.0,
        gt=0,
        description="Seconds after submission when an unfinished job is given up.",
    )
    # No ge=1 here: pydantic would check the placeholder value of a dg.EnvVar.int binding.
    # S2_CHILLER_* values are checked when the code location loads, run config by the ledger.
    chunk_size: int = Field(default=1000, description="Most files per Chiller job (>= 1).")
    max_open_jobs: int = Field(default=4, description="Most Chiller jobs open at once (>= 1).")
    request_timeout_s: float = Field(default=60.0, gt=0, description="Seconds per HTTP request.")
    ca_bundle: str | None = Field(
        default=None,
        description="CA bundle to verify Chiller's certificate with (site CA); TLS is always "
        "verified.",
    )

    _client: ChillerClient | None = PrivateAttr(default=None)

    @property
    def enabled(self) -> bool:
        """Whether a Chiller URL is set."""
        return bool(self.url and self.url.strip())

    def client(self) -> ChillerClient:
        """The plain client behind this resource, created on first use.

        Raises:
            StagingError: when no URL is set.
        """
        if not self.enabled:
            raise StagingError(
                "no Chiller URL is set (ChillerResource.url): EODC products are read directly"
            )
        if self._client is None:
            self._client = ChillerClient(
                str(self.url),
                request_timeout=self.request_timeout_s,
                ca_bundle=self.ca_bundle or None,
            )
        return self._client

    def submit(self, paths: Iterable[str]) -> list[ChillerJob]:
        """Stage ``paths`` (de-duplicated, sorted) as jobs of at most ``chunk_size`` files.

        This ignores ``max_open_jobs``: it is for one-off use; the sensor goes through ``tick``.
        """
        return [self.client().submit(chunk) for chunk in chunk_paths(paths, self.chunk_size)]

    def status(self, job: ChillerJob) -> ChillerStatus:
        """Poll ``job`` once (see ``ChillerClient.status``)."""
        return self.client().status(job)

    def wait(self, jobs: Sequence[ChillerJob]) -> list[str]:
        """Block until every job in ``jobs`` finishes; return the files not staged, sorted.

        Raises:
            StagingError: naming the job that ended in ERROR, timed out or could not be polled.
        """
        missing: set[str] = set()
        for job in jobs:
            missing.update(
                self.client().wait(job, interval=self.poll_interval_s, timeout=self.timeout_s)
            )
        return sorted(missing)

    def tick(self, ledger: StagingLedger, *, now: datetime) -> TickReport:
        """One non-blocking sensor step over ``ledger`` with this resource's limits."""
        return ledger.tick(
            self.client(),
            now=now,
            chunk_size=self.chunk_size,
            max_open=self.max_open_jobs,
            timeout_s=self.timeout_s,
        )
