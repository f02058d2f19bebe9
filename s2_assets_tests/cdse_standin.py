"""A local Copernicus Data Space for tests: HTTP servers on 127.0.0.1 that speak CDSE's wire
protocol as reference/external-systems.md section 1 describes it.

- Keycloak token endpoint: password and refresh grants for ``cdse-public``, expiring access
  and refresh tokens (refresh tokens rotate), Keycloak's error bodies.
- OData catalogue: ``Products`` with the ``$filter`` subset our client and common scripts
  send (parsed for real: ``and``/``or``/``not``, ``eq ne lt le gt ge``, ``contains``,
  ``startswith``, ``endswith``, ``Attributes/OData.CSC.<Type>Attribute/any(...)``),
  ``$orderby`` with Id as tie-breaker, ``$top`` (max 1000) and ``$skip`` (max 10000, or
  less when set), ``$count``, ``$expand=Attributes``, ``@odata.nextLink``; ``Products(<Id>)``.
- Download host: ``Products(<Id>)/$value`` checks the bearer token, then redirects to a
  second host (``localhost`` on another port, the "zipper") which checks it again, so a
  client that lets ``requests`` drop ``Authorization`` on the redirect gets 401.
- Zipper: ``Range``/206, 416, 429 with ``Retry-After`` above ``max_streams`` concurrent
  streams, offline products, and switchable faults (``Faults``).

Counters (``Stats``) let tests assert what happened on the wire.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from s2_assets.products import ProductName
from s2_assets_tests.providers.cdse_odata import ODataError, parse_filter, resolve

TOKEN_PATH = "/auth/realms/CDSE/protocol/openid-connect/token"
_PRODUCT_PATH = re.compile(r"^/odata/v1/Products\(([^)]+)\)(/\$value)?$")
_DOWNLOAD_PATH = re.compile(r"^/download/odata/v1/Products\(([^)]+)\)/\$value$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_ISO = "%Y-%m-%dT%H:%M:%S.%f"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_ISO)[:-3] + "Z"


@dataclass
class StandinProduct:
    """One product the stand-in lists and serves (the bytes of a real zip)."""

    name: ProductName
    body: bytes
    cloud_cover: float
    online: bool = True
    id: str = ""
    bad_checksums: bool = False

    def __post_init__(self) -> None:
        if not self.id:
            self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, self.name.id))

    @classmethod
    def from_zip(
        cls, path: Path, *, cloud_cover: float = 20.0, online: bool = True
    ) -> StandinProduct:
        return cls(ProductName.parse(path.name), path.read_bytes(), cloud_cover, online)

    def checksums(self, *, blake3_offered: bool) -> list[dict[str, str]]:
        md5 = hashlib.md5(self.body).hexdigest()
        entries = [{"Value": md5, "Algorithm": "MD5", "ChecksumDate": "2024-09-12T14:52:51Z"}]
        if blake3_offered:
            import blake3

            digest = blake3.blake3(self.body).hexdigest()
            entries.append(
                {"Value": digest, "Algorithm": "BLAKE3", "ChecksumDate": "2024-09-12T14:52:51Z"}
            )
        if self.bad_checksums:
            for entry in entries:
                entry["Value"] = "0" * len(entry["Value"])
        return entries

    def entity(self, *, attributes: bool, blake3_offered: bool) -> dict[str, Any]:
        """The product as the catalogue returns it."""
        n = self.name
        start = _iso(n.sensing + timedelta(milliseconds=24))
        level = n.level
        entity: dict[str, Any] = {
            "@odata.mediaContentType": "application/octet-stream",
            "Id": self.id,
            "Name": n.safe_name,
            "ContentType": "application/octet-stream",
            "ContentLength": len(self.body),
            "OriginDate": _iso(n.sensing + timedelta(hours=3)),
            "PublicationDate": _iso(n.sensing + timedelta(hours=3, minutes=12)),
            "ModificationDate": _iso(n.sensing + timedelta(hours=3, minutes=13)),
            "Online": self.online,
            "EvictionDate": "9999-12-31T23:59:59.999Z",
            "S3Path": f"/eodata/Sentinel-2/MSI/{level}/{n.sensing:%Y/%m/%d}/{n.safe_name}",
            "Checksum": self.checksums(blake3_offered=blake3_offered),
            "ContentDate": {"Start": start, "End": start},
            "Footprint": "geography'SRID=4326;POLYGON ((57 -21, 58 -21, 58 -20, 57 -20, 57 -21))'",
        }
        if attributes:
            product_type = "S2MSI1C" if level == "L1C" else "S2MSI2A"

            def attribute(kind: str, name: str, value: Any) -> dict[str, Any]:
                return {
                    "@odata.type": f"#OData.CSC.{kind}Attribute",
                    "Name": name,
                    "Value": value,
                    "ValueType": kind,
                }

            entity["Attributes"] = [
                attribute("String", "tileId", n.tile),
                attribute("Double", "cloudCover", self.cloud_cover),
                attribute("String", "productType", product_type),
                # CDSE spells baselines both ways; the client must not rely on this one.
                attribute("String", "processingBaseline", str(float(n.baseline or 0))),
                attribute("Integer", "relativeOrbitNumber", n.relative_orbit),
                attribute("String", "platformSerialIdentifier", n.mission[-1]),
            ]
        return entity


@dataclass
class Faults:
    """Switchable misbehaviour; tests set these before (or while) the client runs.

    Attributes:
        cut_after: byte counts; each download response pops one and drops the connection
            after sending that many body bytes.
        expire_tokens_at: when a stream reaches this byte of the file, every access token
            expires and the connection drops (token expiry mid-download); fires once.
        ignore_range: answer 200 with the whole file even when a Range is asked for.
        corrupt_downloads: the next N download responses have one byte flipped.
        download_errors: statuses to answer the next download requests with, one each.
        search_errors: statuses to answer the next catalogue searches with, one each.
        token_errors: statuses to answer the next token requests with, one each.
        malformed_json: the next N catalogue searches get a truncated JSON body.
        offline_status: what downloading an offline product answers (unknown at CDSE).
        retry_after: the ``Retry-After`` header of 429s (and of download_errors 503s).
        max_streams: concurrent zipper streams before 429 (CDSE: 4 per account).
        stream_delay: seconds to sleep after each chunk sent (keeps streams open).
        skip_limit: largest ``$skip`` accepted.
        next_link_key: spelling of the next-page key (CDSE docs print ``@OData.nextLink``).
        blake3_offered: list BLAKE3 checksums beside MD5.
    """

    cut_after: list[int] = field(default_factory=list)
    expire_tokens_at: int | None = None
    ignore_range: bool = False
    corrupt_downloads: int = 0
    download_errors: list[int] = field(default_factory=list)
    search_errors: list[int] = field(default_factory=list)
    token_errors: list[int] = field(default_factory=list)
    malformed_json: int = 0
    offline_status: int = 404
    retry_after: str = "1"
    max_streams: int = 4
    stream_delay: float = 0.0
    skip_limit: int = 10000
    next_link_key: str = "@odata.nextLink"
    blake3_offered: bool = True


@dataclass
class Stats:
    """What the stand-in saw."""

    logins: int = 0
    failed_logins: int = 0
    refreshes: int = 0
    refused_refreshes: int = 0
    searches: list[dict[str, list[str]]] = field(default_factory=list)
    entity_requests: int = 0
    download_requests: int = 0
    zipper_requests: int = 0
    unauthorized: int = 0
    ranges: list[str | None] = field(default_factory=list)
    too_many: int = 0
    active_streams: int = 0
    max_active_streams: int = 0
    completed_streams: int = 0
    bearer_tokens: set[str] = field(default_factory=set)


class CdseStandin:
    """The stand-in: an API server (token, catalogue, download) and a zipper server.

    Args:
        username: the one account that can log in.
        password: its password.
        access_ttl: seconds an access token lives (CDSE: 600).
        refresh_ttl: seconds a refresh token lives (CDSE: 3600).
    """

    def __init__(
        self,
        *,
        username: str = "alice@example.org",
        password: str = "pw-Sup3r-Secret",
        access_ttl: float = 600.0,
        refresh_ttl: float = 3600.0,
    ) -> None:
        self.username = username
        self.password = password
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.faults = Faults()
        self.stats = Stats()
        self.products: dict[str, StandinProduct] = {}
        self.lock = threading.Lock()
        self._access: dict[str, float] = {}
        self._refresh: dict[str, float] = {}
        self._servers: list[ThreadingHTTPServer] = []

    def add(self, product: StandinProduct) -> StandinProduct:
        self.products[product.id] = product
        return product

    def by_name(self, product_id: str) -> StandinProduct:
        return next(p for p in self.products.values() if p.name.id == product_id)

    def start(self) -> None:
        api = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, zipper=False))
        zipper = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, zipper=True))
        for server in (api, zipper):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        self._servers = [api, zipper]
        self.api_root = f"http://127.0.0.1:{api.server_address[1]}"
        # Another host name as well as another port: requests strips Authorization here.
        self.zipper_root = f"http://localhost:{zipper.server_address[1]}"

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    @property
    def catalogue_url(self) -> str:
        return f"{self.api_root}/odata/v1"

    @property
    def download_url(self) -> str:
        return f"{self.api_root}/download/odata/v1"

    @property
    def token_url(self) -> str:
        return f"{self.api_root}{TOKEN_PATH}"

    def expire_access_tokens(self) -> None:
        with self.lock:
            self._access = dict.fromkeys(self._access, 0.0)

    def expire_refresh_tokens(self) -> None:
        with self.lock:
            self._refresh = dict.fromkeys(self._refresh, 0.0)

    def _issue(self) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        now = time.monotonic()
        self._access[access] = now + self.access_ttl
        self._refresh[refresh] = now + self.refresh_ttl
        return {
            "access_token": access,
            "expires_in": self.access_ttl,
            "refresh_expires_in": self.refresh_ttl,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "AUDIENCE_PUBLIC openid email profile",
        }

    def token_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.faults.token_errors:
                status = self.faults.token_errors.pop(0)
                return status, {"error": "server_error", "error_description": "Unavailable"}
            if form.get("client_id") != "cdse-public":
                return 401, {"error": "invalid_client", "error_description": "Invalid client"}
            grant = form.get("grant_type")
            if grant == "password":
                if form.get("username") == self.username and form.get("password") == self.password:
                    self.stats.logins += 1
                    return 200, self._issue()
                self.stats.failed_logins += 1
                return 401, {
                    "error": "invalid_grant",
                    "error_description": "Invalid user credentials",
                }
            if grant == "refresh_token":
                expires = self._refresh.pop(form.get("refresh_token", ""), 0.0)
                if expires > time.monotonic():
                    self.stats.refreshes += 1
                    return 200, self._issue()
                self.stats.refused_refreshes += 1
                return 400, {"error": "invalid_grant", "error_description": "Token is not active"}
            return 400, {"error": "unsupported_grant_type", "error_description": str(grant)}

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        token = header.removeprefix("Bearer ")
        with self.lock:
            self.stats.bearer_tokens.add(token)
            return self._access.get(token, 0.0) > time.monotonic()

    def search(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """The catalogue's answer to a ``Products`` query (raises ODataError for a 400)."""

        def single(key: str, default: str) -> str:
            return query.get(key, [default])[-1]

        predicate = parse_filter(single("$filter", "true eq true"))
        try:
            top, skip = int(single("$top", "20")), int(single("$skip", "0"))
        except ValueError as exc:
            raise ODataError(f"Invalid $top or $skip: {exc}") from None
        if not 0 <= top <= 1000:
            raise ODataError(f"Invalid $top {top}: must be within 0..1000")
        if not 0 <= skip <= self.faults.skip_limit:
            raise ODataError(f"Invalid $skip {skip}: must be within 0..{self.faults.skip_limit}")
        expand = "Attributes" in query.get("$expand", [])
        blake3_offered = self.faults.blake3_offered
        entities = [
            (p, p.entity(attributes=True, blake3_offered=blake3_offered))
            for p in self.products.values()
        ]
        matched = [(p, e) for p, e in entities if predicate({"entity": e})]
        order = single("$orderby", "")
        if order:
            key, _, direction = order.partition(" ")
            if key not in ("ContentDate/Start", "ContentDate/End", "PublicationDate"):
                raise ODataError(f"Invalid $orderby {order!r}")
            matched.sort(
                key=lambda pe: (resolve({"entity": pe[1]}, key), pe[1]["Id"]),
                reverse=direction.strip() == "desc",
            )
        page = matched[skip : skip + top]
        body: dict[str, Any] = {
            "@odata.context": "$metadata#Products(Attributes())"
            if expand
            else "$metadata#Products",
            "value": [p.entity(attributes=expand, blake3_offered=blake3_offered) for p, _ in page],
        }
        if single("$count", "false") == "true":
            body["@odata.count"] = len(matched)
        if skip + top < len(matched):
            following = {k: v[-1] for k, v in query.items() if k != "$count"}
            following["$skip"] = str(skip + top)
            link = "&".join(f"{k}={quote(v, safe=',()/:')}" for k, v in following.items())
            body[self.faults.next_link_key] = f"{self.catalogue_url}/Products?{link}"
        return body


def _handler(standin: CdseStandin, *, zipper: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.standin = standin
    Handler.zipper = zipper
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    standin: CdseStandin
    zipper: bool

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the counters instead."""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._send(status, data, {"Content-Type": "application/json", **(headers or {})})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if self.zipper or urlsplit(self.path).path != TOKEN_PATH:
            self._json(404, {"detail": "Not found"})
            return
        status, body = self.standin.token_grant(form)
        self._json(status, body)

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        if self.zipper:
            match = _PRODUCT_PATH.match(split.path)
            if match and match[2]:
                self._zipper(match[1])
            else:
                self._json(404, {"detail": "Not found"})
            return
        if split.path == "/odata/v1/Products":
            self._search(parse_qs(split.query, keep_blank_values=True))
        elif (match := _PRODUCT_PATH.match(split.path)) and not match[2]:
            self._entity(match[1])
        elif match := _DOWNLOAD_PATH.match(split.path):
            self._download(match[1])
        else:
            self._json(404, {"detail": "Not found"})

    def _search(self, query: dict[str, list[str]]) -> None:
        standin = self.standin
        with standin.lock:
            standin.stats.searches.append(query)
            error = standin.faults.search_errors.pop(0) if standin.faults.search_errors else None
            malformed = error is None and standin.faults.malformed_json > 0
            standin.faults.malformed_json -= int(malformed)
        if error is not None:
            self._json(error, {"detail": "Internal error"}, {"Retry-After": "0"})
            return
        if malformed:
            self._send(200, b'{"@odata.context": "$metadata#Products", "value": [{"Id": ', {})
            return
        try:
            body = standin.search(query)
        except ODataError as exc:
            self._json(400, {"detail": {"message": str(exc)}})
            return
        self._json(200, body)

    def _entity(self, product_id: str) -> None:
        self.standin.stats.entity_requests += 1
        product = self.standin.products.get(product_id)
        if product is None:
            self._json(404, {"detail": f"Product {product_id} not found"})
            return
        blake3_offered = self.standin.faults.blake3_offered
        self._json(200, product.entity(attributes=True, blake3_offered=blake3_offered))

    def _download(self, product_id: str) -> None:
        standin = self.standin
        standin.stats.download_requests += 1
        if not standin.authorized(self.headers.get("Authorization")):
            standin.stats.unauthorized += 1
            self._json(401, {"detail": "Expired signature!"})
            return
        self._send(302, b"", {"Location": f"{standin.zipper_root}{self.path[len('/download') :]}"})

    def _zipper(self, product_id: str) -> None:
        standin, faults, stats = self.standin, self.standin.faults, self.standin.stats
        with standin.lock:
            stats.zipper_requests += 1
            stats.ranges.append(self.headers.get("Range"))
        if not standin.authorized(self.headers.get("Authorization")):
            stats.unauthorized += 1
            self._json(401, {"detail": "Unauthorized"})
            return
        product = standin.products.get(product_id)
        if product is None:
            self._json(404, {"detail": "Not found"})
            return
        if not product.online:
            self._json(faults.offline_status, {"detail": "Product is not online"})
            return
        with standin.lock:
            error = faults.download_errors.pop(0) if faults.download_errors else None
            busy = error is None and stats.active_streams >= faults.max_streams
            if busy:
                stats.too_many += 1
            elif error is None:
                stats.active_streams += 1
                stats.max_active_streams = max(stats.max_active_streams, stats.active_streams)
        if error is not None:
            self._json(error, {"detail": "Server error"}, {"Retry-After": faults.retry_after})
            return
        if busy:
            body = {"code": "DAT-ZIP-100", "message": "Max session number exceeded"}
            self._json(429, body, {"Retry-After": faults.retry_after})
            return
        released = False

        def release() -> None:
            # Before the last bytes leave: a client that has read everything may open its
            # next stream at once, and must find the slot free, as on the real service.
            nonlocal released
            if not released:
                released = True
                with standin.lock:
                    stats.active_streams -= 1

        try:
            self._stream(product, release)
        finally:
            release()

    def _stream(self, product: StandinProduct, release: Callable[[], None]) -> None:
        standin, faults = self.standin, self.standin.faults
        data = product.body
        with standin.lock:
            cut = faults.cut_after.pop(0) if faults.cut_after else None
            if faults.corrupt_downloads > 0:
                faults.corrupt_downloads -= 1
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        start, headers, status = 0, {"Content-Type": "application/zip"}, 200
        match = _RANGE.match(self.headers.get("Range") or "")
        if match and not faults.ignore_range:
            start = int(match[1])
            end = int(match[2]) if match[2] else len(data) - 1
            if start >= len(data) or end < start:
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            data, status = data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{len(product.body)}"
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        sent = 0
        while sent < len(data):
            limit = len(data)
            if cut is not None:
                limit = min(limit, cut)
            if faults.expire_tokens_at is not None and faults.expire_tokens_at > start:
                limit = min(limit, faults.expire_tokens_at - start)
            if sent >= limit:
                if faults.expire_tokens_at is not None and start + sent >= faults.expire_tokens_at:
                    faults.expire_tokens_at = None
                    standin.expire_access_tokens()
                release()
                self._drop()
                return
            chunk = data[sent : min(sent + 16384, limit)]
            if sent + len(chunk) == len(data):
                release()
            self.wfile.write(chunk)
            sent += len(chunk)
            if faults.stream_delay:
                time.sleep(faults.stream_delay)
        self.wfile.flush()
        with standin.lock:
            standin.stats.completed_streams += 1

    def _drop(self) -> None:
        """Cut the connection mid-body, as a failing proxy does."""
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
