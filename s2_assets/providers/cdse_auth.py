"""CDSE login: a Keycloak password grant, then refresh grants, with the token cached.

CDSE caps the number of open sessions per account and every password grant opens one, so a
client logs in once and keeps its token alive with the refresh token; it logs in again only
when the refresh token is gone or refused. One ``TokenCache`` is shared by every thread of a
provider; a lock keeps two threads from refreshing at once. Tokens and passwords never appear
in messages or reprs.

A refused login (Keycloak's ``invalid_grant``, or a 401 from the token endpoint) is not
tried again: Keycloak locks an account after repeated failures, and a run fetching fifty
products would otherwise make fifty attempts. The refusal is remembered for the life of the
cache (the run) and, through a small state file keyed by a hash of user and token URL (never
the password), by every process and run on the machine for a cool-down.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from s2_assets.errors import ProviderError

CLIENT_ID = "cdse-public"


class CdseAuthError(ProviderError):
    """CDSE refused our credentials or the token endpoint could not be used."""


class CdseTokenServiceError(CdseAuthError):
    """The token endpoint is unreachable or failing (5xx, 429): worth another try later."""


class CdseLoginRefusedError(CdseAuthError):
    """CDSE refused these credentials; no login with them is tried again for a while."""


DEFAULT_COOLDOWN_S = 900.0


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/s2_assets``, else ``~/.local/state/s2_assets``."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "s2_assets"


class RefusalMemory:
    """Remembers that CDSE refused a user at a token URL, for ``cooldown_s`` seconds, in
    ``<state_dir>/cdse-login-refused-<hash>.json`` (user and URL are hashed into the name;
    the file holds the user, the time and Keycloak's reason, never the password).

    Args:
        state_dir: where the file lives; None keeps the memory in this object only.
        clock: wall-clock seconds; tests pass a fake.
    """

    def __init__(
        self,
        state_dir: Path | None,
        username: str,
        token_url: str,
        *,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = hashlib.sha256(f"{username}\n{token_url}".encode()).hexdigest()[:20]
        self.path = None if state_dir is None else state_dir / f"cdse-login-refused-{key}.json"
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._message: str | None = None

    def refused(self) -> str | None:
        """Why no login may be tried now, or None."""
        if self._message is not None:
            return self._message
        if self.path is None or self.cooldown_s <= 0:
            return None
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
            until, at = float(state["until"]), float(state["at"])
            message = str(state["message"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if self._clock() >= until:
            return None
        return (
            f"{message} (at {_utc(at)}); no further login with these "
            f"credentials until {_utc(until)} (fix the password, then delete {self.path} to "
            "try again at once)"
        )

    def remember(self, message: str) -> str:
        """Record a refusal; return the message to raise (with the cool-down in it)."""
        self._message = message
        if self.path is None or self.cooldown_s <= 0:
            return message
        at = self._clock()
        until = at + self.cooldown_s
        state = {"message": message, "at": at, "until": until}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(prefix=".", suffix=".part", dir=self.path.parent)
            with os.fdopen(handle, "w", encoding="utf-8") as sink:
                json.dump(state, sink)
            os.replace(partial, self.path)
        except OSError:
            return message  # the run still stops trying; only other runs may try again
        self._message = (
            f"{message}; no further login with these credentials until {_utc(until)} "
            f"(fix the password, then delete {self.path} to try again at once)"
        )
        return self._message


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Credentials:
    """A CDSE account. The password is kept out of ``repr``."""

    username: str
    password: str = field(repr=False)

    @property
    def complete(self) -> bool:
        return bool(self.username) and bool(self.password)


@dataclass
class _Tokens:
    access: str = field(repr=False)
    access_expires: float
    refresh: str = field(repr=False)
    refresh_expires: float


class TokenCache:
    """Bearer tokens for CDSE downloads, fetched and refreshed on demand.

    Args:
        token_url: Keycloak token endpoint.
        credentials: the account; a login is attempted only when a token is needed.
        session_factory: makes the ``requests.Session`` used for token calls.
        timeout: ``(connect, read)`` seconds for token calls.
        margin: seconds before expiry at which a token counts as expired, so that a token
            never runs out between being handed out and reaching the server.
        clock: monotonic seconds; tests pass a fake.
        refusals: where a refused login is remembered (default: this object only).
    """

    def __init__(
        self,
        token_url: str,
        credentials: Credentials,
        *,
        session_factory: Callable[[], requests.Session] = requests.Session,
        timeout: tuple[float, float] = (10.0, 30.0),
        margin: float = 60.0,
        client_id: str = CLIENT_ID,
        clock: Callable[[], float] = time.monotonic,
        refusals: RefusalMemory | None = None,
    ) -> None:
        self._url = token_url
        self._credentials = credentials
        self._session_factory = session_factory
        self._timeout = timeout
        self._margin = margin
        self._client_id = client_id
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: _Tokens | None = None
        self._refusals = refusals or RefusalMemory(None, credentials.username, token_url)
        self.logins = 0
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"TokenCache(token_url={self._url!r}, username={self._credentials.username!r})"

    def token(self) -> str:
        """A valid access token: the cached one, a refreshed one, or one from a new login.

        Raises:
            CdseAuthError: no credentials, bad credentials, or the endpoint failed.
        """
        with self._lock:
            now = self._clock()
            tokens = self._tokens
            if tokens is not None and now < tokens.access_expires - self._margin:
                return tokens.access
            if tokens is not None and now < tokens.refresh_expires - self._margin:
                refreshed = self._grant(
                    {"grant_type": "refresh_token", "refresh_token": tokens.refresh},
                    refresh=True,
                )
                if refreshed is not None:
                    self.refreshes += 1
                    self._tokens = refreshed
                    return refreshed.access
            self._tokens = self._login()
            return self._tokens.access

    def invalidate(self, token: str) -> None:
        """Mark ``token`` as expired (the server answered 401), unless another thread has
        already replaced it; the refresh token stays usable."""
        with self._lock:
            if self._tokens is not None and self._tokens.access == token:
                self._tokens.access_expires = float("-inf")

    def _login(self) -> _Tokens:
        if not self._credentials.complete:
            raise CdseAuthError(
                "CDSE download needs an account: set the username and password of the cdse "
                "resource (CDSE_USERNAME and CDSE_PASSWORD in the environment)"
            )
        if (refused := self._refusals.refused()) is not None:
            raise CdseLoginRefusedError(refused)
        tokens = self._grant(
            {
                "grant_type": "password",
                "username": self._credentials.username,
                "password": self._credentials.password,
            },
            refresh=False,
        )
        assert tokens is not None  # a failed password grant raises
        self.logins += 1
        return tokens

    def _grant(self, form: dict[str, str], *, refresh: bool) -> _Tokens | None:
        """Post one grant. A refused refresh gives ``None`` (log in instead); a refused
        login raises."""
        kind = "refresh" if refresh else "login"
        started = self._clock()
        try:
            with self._session_factory() as session:
                response = session.post(
                    self._url, data={**form, "client_id": self._client_id}, timeout=self._timeout
                )
        except requests.RequestException as exc:
            raise CdseTokenServiceError(
                f"CDSE {kind} failed: cannot reach {self._url} ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            if refresh and response.status_code in (400, 401):
                return None
            if not refresh and _is_refusal(response):
                message = (
                    f"CDSE refused the login of user {self._credentials.username!r} at "
                    f"{self._url}: HTTP {response.status_code} {_keycloak_reason(response)}"
                )
                raise CdseLoginRefusedError(self._refusals.remember(message))
            error = (
                CdseTokenServiceError
                if response.status_code == 429 or response.status_code >= 500
                else CdseAuthError
            )
            raise error(
                f"CDSE {kind} refused by {self._url}: HTTP {response.status_code} "
                f"{_keycloak_reason(response)}"
            )
        try:
            body = response.json()
            return _Tokens(
                access=str(body["access_token"]),
                access_expires=started + float(body.get("expires_in", 600)),
                refresh=str(body.get("refresh_token") or ""),
                refresh_expires=started + float(body.get("refresh_expires_in", 0) or 0),
            )
        except (ValueError, KeyError, TypeError):
            raise CdseAuthError(
                f"CDSE {kind}: {self._url} answered 200 without a usable access_token"
            ) from None


def _is_refusal(response: requests.Response) -> bool:
    """Whether a password grant was refused for the credentials (not for a busy server)."""
    if response.status_code == 401:
        return True
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        response.status_code == 400
        and isinstance(body, dict)
        and (body.get("error") == "invalid_grant")
    )


def _keycloak_reason(response: requests.Response) -> str:
    """Keycloak's ``error`` and ``error_description``, never the raw body (it could echo
    what we sent)."""
    try:
        body = response.json()
    except ValueError:
        return "(no JSON error body)"
    if not isinstance(body, dict):
        return "(unexpected error body)"
    error = str(body.get("error", ""))[:80]
    description = str(body.get("error_description", ""))[:160]
    return f"({error}: {description})" if description else f"({error})"
