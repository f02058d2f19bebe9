"""CDSE login against the stand-in's Keycloak endpoint: one login, refreshes before expiry,
a new login only when the refresh is refused, and no secret in any message."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from s2_assets.providers.cdse_auth import (
    CdseAuthError,
    CdseLoginRefusedError,
    CdseTokenServiceError,
    Credentials,
    RefusalMemory,
    TokenCache,
)
from s2_assets_tests.cdse_standin import CdseStandin


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(cdse: CdseStandin, clock: Clock, password: str | None = None) -> TokenCache:
    credentials = Credentials(cdse.username, cdse.password if password is None else password)
    return TokenCache(cdse.token_url, credentials, margin=60.0, clock=clock)


def test_token_is_cached_then_refreshed_before_expiry(cdse: CdseStandin) -> None:
    clock = Clock()
    tokens = _cache(cdse, clock)
    first = tokens.token()
    clock.now += 500  # 600 s token, 60 s margin: still good
    assert tokens.token() == first
    assert (cdse.stats.logins, cdse.stats.refreshes) == (1, 0)
    clock.now += 45  # 55 s left: inside the margin, so renewed with the refresh token
    second = tokens.token()
    assert second != first
    assert (cdse.stats.logins, cdse.stats.refreshes) == (1, 1)
    assert cdse.authorized(f"Bearer {second}")


def test_refused_refresh_falls_back_to_login(cdse: CdseStandin) -> None:
    clock = Clock()
    tokens = _cache(cdse, clock)
    tokens.token()
    cdse.expire_refresh_tokens()  # e.g. the Keycloak session was ended
    clock.now += 590
    tokens.token()
    assert (cdse.stats.logins, cdse.stats.refused_refreshes) == (2, 1)


def test_expired_refresh_token_is_not_even_tried(cdse: CdseStandin) -> None:
    clock = Clock()
    tokens = _cache(cdse, clock)
    tokens.token()
    clock.now += 3600
    tokens.token()
    assert (cdse.stats.logins, cdse.stats.refreshes, cdse.stats.refused_refreshes) == (2, 0, 0)


def test_invalidate_only_drops_the_token_that_failed(cdse: CdseStandin) -> None:
    clock = Clock()
    tokens = _cache(cdse, clock)
    old = tokens.token()
    tokens.invalidate(old)
    new = tokens.token()
    assert new != old and cdse.stats.refreshes == 1
    tokens.invalidate(old)  # a slower thread reporting the same 401 late
    assert tokens.token() == new and cdse.stats.refreshes == 1


def test_threads_share_one_login(cdse: CdseStandin) -> None:
    tokens = _cache(cdse, Clock())
    seen: list[str] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        seen.append(tokens.token())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(seen) == 8 and len(set(seen)) == 1
    assert cdse.stats.logins == 1


def test_bad_credentials_are_reported_without_the_password(cdse: CdseStandin) -> None:
    tokens = _cache(cdse, Clock(), password="not-the-Passw0rd")
    with pytest.raises(CdseAuthError) as refused:
        tokens.token()
    message = str(refused.value)
    assert "HTTP 401 (invalid_grant: Invalid user credentials)" in message
    assert "not-the-Passw0rd" not in message and "not-the-Passw0rd" not in repr(tokens)
    assert cdse.stats.failed_logins == 1


def test_missing_credentials_say_how_to_set_them(cdse: CdseStandin) -> None:
    tokens = TokenCache(cdse.token_url, Credentials("", ""))
    with pytest.raises(CdseAuthError, match="CDSE_USERNAME and CDSE_PASSWORD"):
        tokens.token()
    assert cdse.stats.failed_logins == 0 and cdse.stats.logins == 0


def test_unreachable_token_endpoint_names_the_url() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/token"
    tokens = TokenCache(url, Credentials("user", "Secret-pw1"), timeout=(1.0, 1.0))
    with pytest.raises(CdseAuthError, match=f"cannot reach {url}") as failed:
        tokens.token()
    assert "Secret-pw1" not in str(failed.value)


def test_credentials_repr_hides_the_password() -> None:
    assert "hunter2" not in repr(Credentials("user", "hunter2"))


def test_failing_token_service_is_a_retryable_error(cdse: CdseStandin) -> None:
    clock = Clock()
    tokens = _cache(cdse, clock)
    cdse.faults.token_errors = [503]
    with pytest.raises(CdseTokenServiceError, match="HTTP 503"):
        tokens.token()
    tokens.token()
    # A refresh that meets a failing service is not replaced by a new login (a session).
    clock.now += 590
    cdse.faults.token_errors = [502]
    with pytest.raises(CdseTokenServiceError, match=r"CDSE refresh refused .* HTTP 502"):
        tokens.token()
    tokens.token()
    assert (cdse.stats.logins, cdse.stats.refreshes) == (1, 1)


def _refusing(
    cdse: CdseStandin, state: Path, wall: Clock, *, user: str | None = None
) -> TokenCache:
    username = cdse.username if user is None else user
    memory = RefusalMemory(state, username, cdse.token_url, cooldown_s=900, clock=wall)
    return TokenCache(cdse.token_url, Credentials(username, "not-the-Passw0rd"), refusals=memory)


def test_a_refused_login_is_not_tried_again_in_the_run(cdse: CdseStandin, tmp_path: Path) -> None:
    tokens = _refusing(cdse, tmp_path / "state", Clock())
    errors = []
    for _ in range(3):  # three products of one run
        with pytest.raises(CdseLoginRefusedError) as refused:
            tokens.token()
        errors.append(str(refused.value))
    assert cdse.stats.failed_logins == 1
    assert errors[0].startswith(
        f"CDSE refused the login of user '{cdse.username}' at {cdse.token_url}: HTTP 401 "
        "(invalid_grant: Invalid user credentials); no further login with these credentials "
        "until "
    )
    assert len(set(errors)) == 1
    assert all("not-the-Passw0rd" not in e for e in errors)


def test_the_refusal_holds_across_runs_for_the_cool_down(cdse: CdseStandin, tmp_path: Path) -> None:
    wall = Clock()
    state = tmp_path / "state"
    with pytest.raises(CdseLoginRefusedError):
        _refusing(cdse, state, wall).token()
    (memo,) = state.iterdir()
    text = memo.read_text()
    assert "not-the-Passw0rd" not in text and cdse.username not in memo.name
    wall.now += 899  # the next run, inside the cool-down: not even one request
    with pytest.raises(CdseLoginRefusedError, match="no further login with these credentials"):
        _refusing(cdse, state, wall).token()
    assert cdse.stats.failed_logins == 1
    other = _refusing(cdse, state, wall, user="bob@example.org")  # another account is tried
    with pytest.raises(CdseLoginRefusedError):
        other.token()
    assert cdse.stats.failed_logins == 2
    wall.now += 2  # cool-down over: one more try
    with pytest.raises(CdseLoginRefusedError):
        _refusing(cdse, state, wall).token()
    assert cdse.stats.failed_logins == 3


def test_a_400_invalid_grant_login_is_a_refusal_a_503_is_not(
    cdse: CdseStandin, tmp_path: Path
) -> None:
    wall = Clock()
    tokens = _refusing(cdse, tmp_path / "state", wall)
    cdse.faults.token_errors = [503]
    with pytest.raises(CdseTokenServiceError):
        tokens.token()
    assert not (tmp_path / "state").exists()
    original = cdse.token_grant

    def disabled(form: dict[str, str]) -> tuple[int, dict[str, str]]:
        original(form)
        return 400, {"error": "invalid_grant", "error_description": "Account disabled"}

    cdse.token_grant = disabled  # type: ignore[method-assign]
    with pytest.raises(
        CdseLoginRefusedError, match=r"HTTP 400 \(invalid_grant: Account disabled\)"
    ):
        tokens.token()
    with pytest.raises(CdseLoginRefusedError):
        tokens.token()
    assert cdse.stats.failed_logins == 1
