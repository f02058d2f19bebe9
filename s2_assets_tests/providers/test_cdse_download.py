"""CDSE downloads against the stand-in: every fault either ends in a complete, verified zip
or in a clear error with nothing under the final name."""

from __future__ import annotations

import hashlib
import logging
import threading
import zipfile
from pathlib import Path

import pytest
import requests

from s2_assets.errors import ProductOfflineError, ProviderError
from s2_assets.products import ProductName
from s2_assets.providers import cdse_download
from s2_assets.providers.base import ProductRecord
from s2_assets.providers.cdse import CdseAuthError, CdseChecksumError, CdseDownloadError
from s2_assets.providers.cdse_download import verify_zip
from s2_assets_tests.cdse_standin import CdseStandin
from s2_assets_tests.providers.conftest import SleepRecorder, make_provider


def _record(cdse: CdseStandin, sleeps: SleepRecorder, zip_path: Path) -> ProductRecord:
    """The catalogue row of a served zip, found through a real search."""
    name = ProductName.parse(zip_path.name)
    assert name.tile is not None
    records = make_provider(cdse, sleeps).search(name.tile, name.level, name.date, name.date)
    return next(r for r in records if r.product_id == name.id)


def _only_final(workdir: Path, record: ProductRecord) -> Path:
    """The one file a successful fetch leaves: the verified zip."""
    final = workdir / f"{record.product_id}.zip"
    assert sorted(p.name for p in workdir.iterdir()) == [final.name]
    return final


def _nothing_final(workdir: Path, record: ProductRecord) -> None:
    assert not (workdir / f"{record.product_id}.zip").exists()


@pytest.fixture
def l1c(cdse: CdseStandin, sleeps: SleepRecorder, cdse_zips: dict[str, Path]) -> ProductRecord:
    return _record(cdse, sleeps, cdse_zips["l1c"])


def test_download_follows_redirect_with_token_and_verifies(
    cdse: CdseStandin,
    sleeps: SleepRecorder,
    l1c: ProductRecord,
    cdse_zips: dict[str, Path],
    tmp_path: Path,
) -> None:
    path = make_provider(cdse, sleeps).fetch(l1c, tmp_path)
    assert path == _only_final(tmp_path, l1c)
    assert path.read_bytes() == cdse_zips["l1c"].read_bytes()
    assert cdse.stats.download_requests == 1 and cdse.stats.zipper_requests == 1
    assert cdse.stats.unauthorized == 0 and cdse.stats.logins == 1
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist()[0].startswith(f"{l1c.product_id}.SAFE/")


def test_the_redirect_trap_is_real(cdse: CdseStandin, l1c: ProductRecord) -> None:
    """Plain requests drops Authorization on the cross-host redirect: the zipper says 401."""
    token = requests.post(
        cdse.token_url,
        data={
            "grant_type": "password",
            "username": cdse.username,
            "password": cdse.password,
            "client_id": "cdse-public",
        },
        timeout=5,
    ).json()["access_token"]
    response = requests.get(l1c.location, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert response.status_code == 401
    assert response.url.startswith(cdse.zipper_root)


def test_redirect_to_an_untrusted_host_is_refused(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    provider = make_provider(cdse, sleeps, trusted_hosts=("dataspace.copernicus.eu",))
    with pytest.raises(CdseDownloadError, match="redirected to 'localhost'"):
        provider.fetch(l1c, tmp_path)
    assert cdse.stats.zipper_requests == 0
    _nothing_final(tmp_path, l1c)


def test_connection_cut_half_way_resumes_with_range(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    assert l1c.size is not None
    half = l1c.size // 2
    cdse.faults.cut_after = [half, 16384]
    path = make_provider(cdse, sleeps).fetch(l1c, tmp_path)
    verify_zip(path, l1c)
    _only_final(tmp_path, l1c)
    first, second, third = cdse.stats.ranges
    assert first is None and second is not None and third is not None
    resumed_at = int(second.removeprefix("bytes=").rstrip("-"))
    # Whole chunks that reached the disk are kept; the torn last chunk is asked for again.
    assert half - 8192 < resumed_at <= half
    assert resumed_at < int(third.removeprefix("bytes=").rstrip("-")) <= resumed_at + 16384
    assert cdse.stats.logins == 1 and sleeps.calls == []


def test_server_ignoring_range_restarts_from_zero(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    assert l1c.size is not None
    cdse.faults.cut_after = [l1c.size // 2]
    cdse.faults.ignore_range = True
    path = make_provider(cdse, sleeps).fetch(l1c, tmp_path)
    assert verify_zip(path, l1c) == "BLAKE3"
    assert cdse.stats.ranges[1] is not None  # asked to resume; got 200 and the whole file
    assert cdse.stats.completed_streams == 1


def test_part_left_by_an_earlier_process_is_resumed(
    cdse: CdseStandin,
    sleeps: SleepRecorder,
    l1c: ProductRecord,
    cdse_zips: dict[str, Path],
    tmp_path: Path,
) -> None:
    body = cdse_zips["l1c"].read_bytes()
    (tmp_path / f"{l1c.product_id}.zip.part").write_bytes(body[:50000])
    make_provider(cdse, sleeps).fetch(l1c, tmp_path)
    assert cdse.stats.ranges == ["bytes=50000-"]
    assert _only_final(tmp_path, l1c).read_bytes() == body


def test_token_expiry_mid_download_refreshes_once_and_resumes(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    cdse.faults.expire_tokens_at = 40960
    path = make_provider(cdse, sleeps).fetch(l1c, tmp_path)
    verify_zip(path, l1c)
    assert cdse.stats.logins == 1 and cdse.stats.refreshes == 1
    assert cdse.stats.unauthorized == 1
    assert cdse.stats.ranges[-1] == "bytes=40960-"


def test_expired_refresh_token_falls_back_to_login(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    provider = make_provider(cdse, sleeps)
    provider.tokens.token()
    cdse.expire_access_tokens()
    cdse.expire_refresh_tokens()
    provider.fetch(l1c, tmp_path)
    assert cdse.stats.logins == 2 and cdse.stats.refused_refreshes == 1


def test_persistent_401_fails_after_one_refresh(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    cdse.access_ttl = -1.0  # every token the stand-in hands out is already dead
    with pytest.raises(CdseAuthError, match=f"{l1c.product_id}: download refused \\(HTTP 401\\)"):
        make_provider(cdse, sleeps, token_margin=-10.0).fetch(l1c, tmp_path)
    assert cdse.stats.unauthorized == 2
    _nothing_final(tmp_path, l1c)


def test_5xx_is_retried_with_backoff(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    cdse.faults.download_errors = [500, 502, 503]
    cdse.faults.retry_after = ""
    make_provider(cdse, sleeps, backoff=0.004, max_backoff=1.0).fetch(l1c, tmp_path)
    _only_final(tmp_path, l1c)
    assert len(sleeps.calls) == 3
    # Exponential with jitter: try n waits between half and all of backoff * 2**(n-1).
    for attempt, wait in enumerate(sleeps.calls, start=1):
        ceiling = 0.004 * 2 ** (attempt - 1)
        assert ceiling / 2 <= wait <= ceiling


def test_persistent_5xx_gives_up_cleanly(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    cdse.faults.download_errors = [500] * 10
    with pytest.raises(CdseDownloadError, match=f"{l1c.product_id}: gave up after 3 tries"):
        make_provider(cdse, sleeps, download_retries=2).fetch(l1c, tmp_path)
    _nothing_final(tmp_path, l1c)


def test_corrupt_bytes_are_downloaded_again(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    cdse.faults.corrupt_downloads = 1
    path = make_provider(cdse, sleeps).fetch(l1c, tmp_path)
    verify_zip(path, l1c)
    assert cdse.stats.completed_streams == 2


def test_wrong_checksum_fails_and_publishes_nothing(
    cdse: CdseStandin, sleeps: SleepRecorder, cdse_zips: dict[str, Path], tmp_path: Path
) -> None:
    cdse.by_name(ProductName.parse(cdse_zips["l1c"].name).id).bad_checksums = True
    record = _record(cdse, sleeps, cdse_zips["l1c"])
    with pytest.raises(CdseChecksumError, match=f"{record.product_id}: BLAKE3 .* does not match"):
        make_provider(cdse, sleeps).fetch(record, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{record.product_id}.zip.lock"]
    assert cdse.stats.completed_streams == 2


def test_md5_is_used_without_blake3(
    cdse: CdseStandin,
    sleeps: SleepRecorder,
    l1c: ProductRecord,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cdse_download, "blake3_available", lambda: False)
    path = make_provider(cdse, sleeps).fetch(l1c, tmp_path)
    assert verify_zip(path, l1c) == "MD5"
    broken = {**l1c.checksums, "MD5": hashlib.md5(b"other").hexdigest()}
    with pytest.raises(CdseChecksumError, match="MD5"):
        verify_zip(path, ProductRecord(**{**l1c.__dict__, "checksums": broken}))


def test_a_catalogue_listing_md5_only_is_verified_with_md5(
    cdse: CdseStandin, sleeps: SleepRecorder, cdse_zips: dict[str, Path], tmp_path: Path
) -> None:
    cdse.faults.blake3_offered = False
    record = _record(cdse, sleeps, cdse_zips["l1c"])
    assert set(record.checksums) == {"MD5"}
    assert verify_zip(make_provider(cdse, sleeps).fetch(record, tmp_path), record) == "MD5"


def test_without_checksums_the_zip_crcs_are_checked(l1c: ProductRecord, tmp_path: Path) -> None:
    bare = ProductRecord(**{**l1c.__dict__, "checksums": {}, "size": None})
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("a.SAFE/x.txt", b"x" * 1000)
    assert verify_zip(good, bare).startswith("zip CRC")
    data = bytearray(good.read_bytes())
    data[data.index(b"xxxx")] = ord("y")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(CdseChecksumError, match=r"CRC mismatch in zip member a\.SAFE/x\.txt"):
        verify_zip(bad, bare)


def test_existing_final_zip_is_verified_not_downloaded(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    provider = make_provider(cdse, sleeps)
    first = provider.fetch(l1c, tmp_path)
    assert provider.fetch(l1c, tmp_path) == first
    assert cdse.stats.zipper_requests == 1
    first.write_bytes(b"truncated")
    provider.fetch(l1c, tmp_path)
    verify_zip(first, l1c)
    assert cdse.stats.zipper_requests == 2


def test_offline_product_raises_offline_and_is_retried_later(
    cdse: CdseStandin, sleeps: SleepRecorder, cdse_zips: dict[str, Path], tmp_path: Path
) -> None:
    served = cdse.by_name(ProductName.parse(cdse_zips["l2a"].name).id)
    served.online = False
    record = _record(cdse, sleeps, cdse_zips["l2a"])
    assert record.online is False
    provider = make_provider(cdse, sleeps)
    with pytest.raises(ProductOfflineError, match=f"{record.product_id} is offline"):
        provider.fetch(record, tmp_path)
    assert cdse.stats.zipper_requests == 0
    # A later round: the stale row still says offline, the catalogue now says online.
    served.online = True
    verify_zip(provider.fetch(record, tmp_path), record)


@pytest.mark.parametrize("status", [404, 409, 422])
def test_product_going_offline_after_search(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path, status: int
) -> None:
    cdse.faults.offline_status = status
    cdse.by_name(l1c.product_id).online = False
    with pytest.raises(ProductOfflineError, match=f"HTTP {status}"):
        make_provider(cdse, sleeps).fetch(l1c, tmp_path)
    assert cdse.stats.zipper_requests == 1 and cdse.stats.entity_requests == 1
    _nothing_final(tmp_path, l1c)


def test_fifth_concurrent_stream_waits_out_429(
    cdse: CdseStandin, cdse_zips: dict[str, Path], tmp_path: Path
) -> None:
    """Five products fetched by five clients at once (as five processes would): the
    account allows four streams, the fifth gets 429 + Retry-After and waits."""
    sleeps = SleepRecorder(cap=0.05)
    cdse.faults.stream_delay = 0.02
    cdse.faults.retry_after = "2"
    roles = ["l1c", "l2a", "l1c_n0509", "series0", "series1"]
    records = [_record(cdse, sleeps, cdse_zips[role]) for role in roles]
    errors: list[BaseException] = []

    def fetch(record: ProductRecord) -> None:
        try:
            make_provider(cdse, sleeps).fetch(record, tmp_path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(r,)) for r in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert cdse.stats.too_many >= 1 and cdse.stats.max_active_streams == 4
    assert 2.0 in sleeps.calls  # Retry-After honoured, not our own backoff
    for record in records:
        verify_zip(tmp_path / f"{record.product_id}.zip", record)


def test_one_client_runs_at_most_max_parallel_streams(
    cdse: CdseStandin, sleeps: SleepRecorder, cdse_zips: dict[str, Path], tmp_path: Path
) -> None:
    cdse.faults.stream_delay = 0.01
    provider = make_provider(cdse, sleeps, max_parallel_downloads=2)
    records = [_record(cdse, sleeps, cdse_zips[r]) for r in ("l1c", "l2a", "series0", "series1")]
    threads = [threading.Thread(target=provider.fetch, args=(r, tmp_path)) for r in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert cdse.stats.max_active_streams == 2 and cdse.stats.too_many == 0
    assert cdse.stats.logins == 1  # one token shared by every thread
    assert len(list(tmp_path.glob("*.zip"))) == 4


def test_secrets_never_reach_logs_or_errors(
    cdse: CdseStandin,
    sleeps: SleepRecorder,
    l1c: ProductRecord,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cdse.faults.expire_tokens_at = 20000
    cdse.faults.cut_after = [50000]
    cdse.faults.download_errors = [503]
    provider = make_provider(cdse, sleeps)
    provider.fetch(l1c, tmp_path)
    messages: list[str] = []
    with pytest.raises(CdseAuthError) as refused:
        make_provider(cdse, sleeps, password="wrong-Pa55word").fetch(l1c, tmp_path / "x")
    messages.append(str(refused.value))
    cdse.faults.download_errors = [500] * 5
    with pytest.raises(ProviderError) as failed:
        make_provider(cdse, sleeps, download_retries=1).fetch(l1c, tmp_path / "y")
    messages.append(str(failed.value))
    texts = [caplog.text, *messages, repr(provider), repr(provider.tokens)]
    assert len(cdse.stats.bearer_tokens) >= 2  # a login and a refresh happened
    for secret in [cdse.password, "wrong-Pa55word", *cdse.stats.bearer_tokens]:
        assert all(secret not in text for text in texts)
    assert "Invalid user credentials" in messages[0]


def test_stored_row_downloads_from_the_current_download_url(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    """A row read back from the acquisitions table, found when the URL was another one."""
    stale = ProductRecord.from_row(
        {**l1c.to_row(), "location": "https://old-host.example/odata/v1/Products(x)/$value"}
    )
    verify_zip(make_provider(cdse, sleeps).fetch(stale, tmp_path / "by_id"), l1c)
    by_location = ProductRecord(**{**l1c.__dict__, "remote_id": ""})
    verify_zip(make_provider(cdse, sleeps).fetch(by_location, tmp_path / "by_url"), l1c)
    assert cdse.stats.completed_streams == 2


def test_failing_token_service_is_waited_out(
    cdse: CdseStandin, sleeps: SleepRecorder, l1c: ProductRecord, tmp_path: Path
) -> None:
    cdse.faults.token_errors = [503, 500]
    verify_zip(make_provider(cdse, sleeps).fetch(l1c, tmp_path), l1c)
    assert len(sleeps.calls) == 2 and cdse.stats.logins == 1
