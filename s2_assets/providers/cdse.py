"""The Copernicus Data Space (CDSE) provider: OData catalogue search and verified downloads.

Search needs no account. It asks for one collection, product type, tile and sensing window
(and optionally a cloud limit), always ordered so paging is stable, follows
``@odata.nextLink``, and cuts long ranges into windows so it never pages past the
catalogue's ``$skip`` limit. Baselines come from the product name (``N0510`` -> ``05.10``):
the catalogue's own ``processingBaseline`` attribute is spelled inconsistently. Baseline and
cloud filters are ``providers.base.filter_records``'s job, on the rows returned here.

Downloads (``fetch``) log in through ``TokenCache`` and stream through ``Downloader``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_start
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests

from s2_assets.errors import ProductNameError
from s2_assets.products import LEVELS, ProductName, validate_tile_id
from s2_assets.providers.base import ProductRecord, unique_by_id
from s2_assets.providers.cdse_auth import CdseAuthError, Credentials, RefusalMemory, TokenCache
from s2_assets.providers.cdse_download import Downloader
from s2_assets.providers.cdse_http import (
    CdseCatalogueError,
    CdseChecksumError,
    CdseDownloadError,
    CdseSettings,
    server_reason,
)

__all__ = [
    "PRODUCT_TYPES",
    "CdseAuthError",
    "CdseCatalogueError",
    "CdseChecksumError",
    "CdseDownloadError",
    "CdseProvider",
    "CdseSettings",
    "Credentials",
    "build_filter",
    "parse_product",
]

log = logging.getLogger(__name__)

PRODUCT_TYPES = {"L1C": "S2MSI1C", "L2A": "S2MSI2A"}
_ODATA_TIME = "%Y-%m-%dT%H:%M:%S.000Z"


def _attribute_filter(kind: str, name: str, operator: str, value: str) -> str:
    return (
        f"Attributes/OData.CSC.{kind}Attribute/any(att:att/Name eq '{name}' and "
        f"att/OData.CSC.{kind}Attribute/Value {operator} {value})"
    )


def build_filter(
    tile: str, level: str, start: datetime, end: datetime, *, max_cloud: float | None = None
) -> str:
    """The OData ``$filter`` for one tile, level and sensing window ``[start, end)``.

    Raises:
        TileIdError: for an invalid tile.
        ValueError: for a level other than L1C or L2A.
    """
    tile = validate_tile_id(tile)
    if level not in PRODUCT_TYPES:
        raise ValueError(f"unknown level {level!r}; valid: {', '.join(LEVELS)}")
    parts = [
        # The collection clause first: CDSE's docs call it the biggest speed-up.
        "Collection/Name eq 'SENTINEL-2'",
        _attribute_filter("String", "productType", "eq", f"'{PRODUCT_TYPES[level]}'"),
        _attribute_filter("String", "tileId", "eq", f"'{tile}'"),
        f"ContentDate/Start ge {start.astimezone(UTC).strftime(_ODATA_TIME)}",
        f"ContentDate/Start lt {end.astimezone(UTC).strftime(_ODATA_TIME)}",
    ]
    if max_cloud is not None:
        parts.append(_attribute_filter("Double", "cloudCover", "le", f"{float(max_cloud):.2f}"))
    return " and ".join(parts)


def _query(params: dict[str, str]) -> str:
    # Spaces as %20, not '+': OData servers are not all form-decoders.
    safe = ",'():/"
    return "&".join(f"{key}={quote(value, safe=safe)}" for key, value in params.items())


def _attributes(item: dict[str, Any]) -> dict[str, Any]:
    return {
        str(attribute.get("Name")): attribute.get("Value")
        for attribute in item.get("Attributes") or []
        if isinstance(attribute, dict)
    }


def _normalise_baseline(value: Any) -> str | None:
    """``'5.10'``, ``'05.10'`` or ``5.1`` -> ``'05.10'`` (the catalogue is inconsistent)."""
    try:
        return f"{float(value):05.2f}"
    except (TypeError, ValueError):
        return None


def parse_product(item: dict[str, Any], *, download_url: str) -> ProductRecord | None:
    """One catalogue product as a ``ProductRecord``; ``None`` (logged) for a name that is not
    a Sentinel-2 product name.

    Raises:
        CdseCatalogueError: when a field every product has is missing or unreadable.
    """
    raw_name = str(item.get("Name") or "")
    try:
        name = ProductName.parse(raw_name)
        remote_id = str(item["Id"])
        attributes = _attributes(item)
        cloud = attributes.get("cloudCover")
        baseline = name.baseline or _normalise_baseline(attributes.get("processingBaseline"))
        tile = name.tile or str(attributes.get("tileId") or "")
        size = item.get("ContentLength")
        checksums = {
            str(entry["Algorithm"]).upper(): str(entry["Value"]).lower()
            for entry in item.get("Checksum") or []
            if isinstance(entry, dict) and entry.get("Algorithm") and entry.get("Value")
        }
        record = ProductRecord(
            product_id=name.id,
            level=name.level,
            tile=tile,
            sensing_time=name.sensing,
            cloud_cover=None if cloud is None else float(cloud),
            baseline=baseline or "",
            provider=CdseProvider.name,
            location=f"{download_url}/Products({remote_id})/$value",
            size=None if size is None else int(size),
            online=bool(item.get("Online", True)),
            remote_id=remote_id,
            checksums=checksums,
        )
    except ProductNameError as exc:
        log.warning("skipping catalogue entry %r: %s", item.get("Id"), exc)
        return None
    except (KeyError, TypeError, ValueError) as exc:
        raise CdseCatalogueError(
            f"catalogue entry {raw_name or item.get('Id')!r} is unreadable ({exc!r})"
        ) from None
    if not record.baseline or not record.tile:
        log.warning("skipping %s: no baseline or tile in its name or attributes", raw_name)
        return None
    return record


def _next_skip(link: str) -> int:
    values = parse_qs(urlsplit(link).query).get("$skip") or ["0"]
    try:
        return int(values[0])
    except ValueError:
        return 0


class CdseProvider:
    """Search the CDSE catalogue and download verified product zips.

    One object is meant to live for a whole run: it holds the token cache (one login, then
    refreshes) and one HTTP session per thread. Every method is safe to call from several
    threads; separate processes share nothing but the files under ``workdir``, which a
    lock file guards.

    Args:
        settings: URLs, limits, retries (``CdseSettings``).
        credentials: the CDSE account; search works without.
        sleep: how to wait between tries (tests pass a recorder).
    """

    name = "cop_dataspace"

    def __init__(
        self,
        settings: CdseSettings | None = None,
        credentials: Credentials | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or CdseSettings()
        credentials = credentials or Credentials("", "")
        self.tokens = TokenCache(
            self.settings.token_url,
            credentials,
            timeout=self.settings.timeout,
            margin=self.settings.token_margin,
            client_id=self.settings.client_id,
            refusals=RefusalMemory(
                self.settings.state_dir,
                credentials.username,
                self.settings.token_url,
                cooldown_s=self.settings.login_cooldown,
            ),
        )
        self._sleep = sleep
        self._local = threading.local()
        self._downloader = Downloader(
            self.settings,
            self.tokens,
            session=self._session,
            is_online=self.is_online,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"CdseProvider(catalogue_url={self.settings.catalogue_url!r})"

    def _session(self) -> requests.Session:
        # requests.Session is not thread-safe; one per thread keeps connection reuse.
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def search(
        self,
        tile: str,
        level: str,
        start: date,
        end: date,
        *,
        max_cloud: float | None = None,
    ) -> list[ProductRecord]:
        """Every product of ``tile`` at ``level`` sensed on a UTC day in ``[start, end]``.

        Args:
            tile: MGRS tile id without the leading ``T``.
            level: ``L1C`` or ``L2A``.
            start: first sensing day.
            end: last sensing day (inclusive).
            max_cloud: optional cloud limit in percent, applied by the catalogue.

        Raises:
            CdseCatalogueError: the catalogue failed after the configured retries.
        """
        window_start = datetime.combine(start, day_start(), UTC)
        stop = datetime.combine(end, day_start(), UTC) + timedelta(days=1)
        records: list[ProductRecord] = []
        step = timedelta(days=self.settings.window_days)
        while window_start < stop:
            window_end = min(window_start + step, stop)
            records.extend(self._search_window(tile, level, window_start, window_end, max_cloud))
            window_start = window_end
        kept = [r for r in unique_by_id(records) if r.tile == tile and r.level == level]
        return sorted(kept, key=lambda r: (r.sensing_time, r.product_id))

    def _search_window(
        self, tile: str, level: str, start: datetime, end: datetime, max_cloud: float | None
    ) -> list[ProductRecord]:
        records: list[ProductRecord] = []
        for link, page in self._pages(tile, level, start, end, max_cloud):
            if link and _next_skip(link) > self.settings.skip_limit:
                middle = start + (end - start) / 2
                middle = middle.replace(microsecond=0)
                if not start < middle < end:
                    raise CdseCatalogueError(
                        f"tile {tile} {level}: more than {self.settings.skip_limit} products "
                        f"sensed in one second at {start.isoformat()}; cannot page further"
                    )
                log.info("tile %s %s: splitting %s..%s at %s", tile, level, start, end, middle)
                return self._search_window(
                    tile, level, start, middle, max_cloud
                ) + self._search_window(tile, level, middle, end, max_cloud)
            for item in page:
                record = parse_product(item, download_url=self.settings.download_url)
                if record is not None:
                    records.append(record)
        return records

    def _pages(
        self, tile: str, level: str, start: datetime, end: datetime, max_cloud: float | None
    ) -> Iterator[tuple[str | None, list[dict[str, Any]]]]:
        """Each page of one query with the link to the next one (``None`` on the last)."""
        params = {
            "$filter": build_filter(tile, level, start, end, max_cloud=max_cloud),
            # With $orderby the server adds Id as a tie-breaker: stable, duplicate-free pages.
            "$orderby": "ContentDate/Start asc",
            "$top": str(self.settings.page_size),
            "$expand": "Attributes",
        }
        url: str | None = f"{self.settings.catalogue_url}/Products?{_query(params)}"
        what = f"tile {tile} {level} {start:%Y-%m-%d}..{end:%Y-%m-%d}"
        while url is not None:
            body = self._get_json(url, what)
            page = body.get("value")
            if not isinstance(page, list):
                raise CdseCatalogueError(f"catalogue search for {what}: no 'value' list in reply")
            link = body.get("@odata.nextLink") or body.get("@OData.nextLink")
            url = str(link) if link and page else None
            yield url, page

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        """GET a catalogue URL as JSON, retrying connection errors, 429, 5xx and bodies that
        are not JSON (seen from overloaded front ends)."""
        problem = ""
        retry_after: str | None = None
        for attempt in range(self.settings.search_retries + 1):
            if attempt:
                self._sleep(self.settings.retry_delay(attempt, retry_after))
                retry_after = None
            try:
                response = self._session().get(url, timeout=self.settings.timeout)
            except requests.RequestException as exc:
                problem = f"no connection ({type(exc).__name__})"
                continue
            with response:
                if response.status_code == 429 or response.status_code >= 500:
                    problem = server_reason(response)
                    retry_after = response.headers.get("Retry-After")
                    continue
                if response.status_code != 200:
                    raise CdseCatalogueError(
                        f"catalogue search for {what} refused: {server_reason(response)}"
                    )
                try:
                    body = response.json()
                except ValueError:
                    problem = "reply is not JSON"
                    continue
            if isinstance(body, dict):
                return body
            problem = "reply is not a JSON object"
        raise CdseCatalogueError(
            f"catalogue search for {what} failed after {self.settings.search_retries + 1} "
            f"tries: {problem}"
        )

    def is_online(self, record: ProductRecord) -> bool | None:
        """Ask the catalogue whether a product is online now; ``None`` if it cannot tell."""
        if not record.remote_id:
            return None
        url = f"{self.settings.catalogue_url}/Products({record.remote_id})"
        try:
            with self._session().get(url, timeout=self.settings.timeout) as response:
                if response.status_code != 200:
                    return None
                body = response.json()
        except (requests.RequestException, ValueError):
            return None
        online = body.get("Online") if isinstance(body, dict) else None
        return online if isinstance(online, bool) else None

    def fetch(self, record: ProductRecord, workdir: Path) -> Path:
        """A verified zip of ``record`` at ``<workdir>/<product id>.zip``.

        Resumes a ``.part`` left by an earlier try; an existing zip is re-verified, not
        downloaded again.

        Raises:
            ProductOfflineError: the product is not online now; try on a later round.
            CdseAuthError: the account was refused.
            CdseDownloadError: the download failed for good, or did not verify.
        """
        return self._downloader.fetch(record, workdir)
