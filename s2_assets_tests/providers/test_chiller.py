"""The Chiller client against the local stand-in: every reply shape and every fault."""

from __future__ import annotations

import socket
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from s2_assets.demo.products import build_safe, zip_safe
from s2_assets.errors import StagingError
from s2_assets.providers.chiller import (
    UPLOAD_CONTENT_TYPE,
    ChillerClient,
    ChillerJob,
    normalise_paths,
    parse_finished,
)
from s2_assets.resources.chiller import ChillerResource
from s2_assets_tests.chiller_standin import ChillerStandIn, ColdArchive, is_cold

ROOT = "/eodc/products/copernicus.eu/s2a_prd_msil1c/2024/01/01"
A = f"{ROOT}/S2A_MSIL1C_20240101T063511_N0510_R120_T40KCB_20240101T083400.zip"
B = f"{ROOT}/S2A_MSIL1C_20240101T063511_N0510_R120_T40KCC_20240101T083400.zip"
C = f"{ROOT}/S2A_MSIL1C_20240101T063511_N0510_R120_T40KDB_20240101T083400.zip"


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[ChillerStandIn]:
    with ChillerStandIn(tmp_path, archive=ColdArchive(tmp_path)) as running:
        yield running


@pytest.fixture
def client(standin: ChillerStandIn) -> Iterator[ChillerClient]:
    chiller = ChillerClient(standin.url, request_timeout=5)
    yield chiller
    chiller.close()


def _no_sleep(seconds: float) -> None:
    pass


def test_submit_sends_sorted_unique_lines_and_reads_a_job_id(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    job = client.submit([B, A, B, f"  {C}\n"])

    assert standin.uploads[0].body == f"{A}\n{B}\n{C}"
    assert standin.uploads[0].content_type == UPLOAD_CONTENT_TYPE
    assert len(job.job_id) == 19 and job.job_id.isdigit()
    assert job.poll_url == f"{standin.url}/jobs/{job.job_id}"
    assert job.files == (A, B, C)


def test_submit_accepts_a_polling_url_reply(standin: ChillerStandIn, client: ChillerClient) -> None:
    standin.reply_url = True
    job = client.submit([A])

    assert job.poll_url == f"{standin.url}/jobs/{job.job_id}"
    assert job.job_id in standin.jobs
    assert client.wait(job, interval=0, sleep=_no_sleep) == []
    assert f"GET /jobs/{job.job_id}" in standin.requests


def test_trailing_slash_in_base_url_is_ignored(standin: ChillerStandIn) -> None:
    job = ChillerClient(standin.url + "/").submit([A])
    assert job.poll_url == f"{standin.url}/jobs/{job.job_id}"


def test_job_moves_queued_running_finished_and_reads_staged_files(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.polls_before_finished = 2
    standin.not_staged = {B}
    job = client.submit([A, B])

    first, second, third = (client.status(job) for _ in range(3))

    assert (first.state, first.finished, first.failed) == ("Queued", False, False)
    assert (second.state, second.finished) == ("Running", False)
    assert (third.state, third.finished, third.failed) == ("Finished", True, False)
    assert third.staged == {A}
    assert third.staged_files_path == str(standin.staged_dir / f"{job.job_id}.staged.txt")
    assert third.missing(job.files) == [B]


@pytest.mark.parametrize(
    ("finished_style", "state_style"),
    [
        ("string", "normal"),
        ("title", "normal"),
        ("bool", "normal"),
        ("absent", "normal"),
        ("absent", "lower"),
        ("string", "absent"),
        ("bool", "absent"),
        ("title", "absent"),
    ],
)
def test_every_reply_shape_of_a_finished_job_is_understood(
    standin: ChillerStandIn, client: ChillerClient, finished_style: str, state_style: str
) -> None:
    standin.finished_style = finished_style
    standin.state_style = state_style
    standin.polls_before_finished = 1
    standin.not_staged = {C}
    job = client.submit([A, C])

    running = client.status(job)
    done = client.status(job)

    assert not running.finished
    assert done.finished and not done.failed
    assert done.missing(job.files) == [C]


@pytest.mark.parametrize(("value", "expected"), [("TRUE", True), (" false ", False), (None, None)])
def test_parse_finished(value: Any, expected: bool | None) -> None:
    assert parse_finished(value, job_id="1") is expected


def test_unknown_finished_value_names_job_value_and_valid_forms(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    job = client.submit([A])
    standin.job_reply = '{"State": "Running", "Finished": "maybe"}'

    with pytest.raises(StagingError, match=rf"job {job.job_id}.*'maybe'.*valid"):
        client.status(job)


def test_error_state_is_reported_by_status_and_raised_by_wait(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.error = True
    standin.polls_before_finished = 0
    job = client.submit([A])

    status = client.status(job)
    assert status.failed and not status.finished and status.state == "ERROR"
    assert status.staged == frozenset()
    with pytest.raises(StagingError, match=rf"job {job.job_id} ended in state ERROR"):
        client.wait(job, interval=0, sleep=_no_sleep)


def test_wait_returns_the_files_not_staged(standin: ChillerStandIn, client: ChillerClient) -> None:
    standin.polls_before_finished = 3
    standin.not_staged = {A, C}
    slept: list[float] = []
    job = client.submit([A, B, C])

    assert client.wait(job, interval=7, sleep=slept.append) == [A, C]
    assert slept == [7, 7, 7]


def test_wait_times_out_naming_the_job(standin: ChillerStandIn, client: ChillerClient) -> None:
    standin.polls_before_finished = 100
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    job = client.submit([A])
    with pytest.raises(StagingError, match=rf"job {job.job_id} not finished after 25 s"):
        client.wait(job, interval=10, timeout=25, sleep=sleep, clock=lambda: now[0])
    assert now[0] == 25


def test_upload_http_error_shows_status_and_body_excerpt(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.inject(503, on="upload")
    with pytest.raises(StagingError, match=r"upload of 1 file.*HTTP 503: 'injected failure 503'"):
        client.submit([A])
    assert standin.jobs == {}


def test_poll_http_error_names_the_job(standin: ChillerStandIn, client: ChillerClient) -> None:
    job = client.submit([A])
    standin.inject(502, on="jobs")
    with pytest.raises(StagingError, match=rf"job {job.job_id}: GET .* HTTP 502: .*tape library"):
        client.status(job)


def test_wait_rides_out_transient_poll_errors(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.polls_before_finished = 0
    job = client.submit([A])
    standin.inject(500, times=2, on="jobs")

    assert client.wait(job, interval=0, max_poll_errors=3, sleep=_no_sleep) == []


def test_wait_gives_up_after_consecutive_poll_errors(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    job = client.submit([A])
    standin.inject(500, times=3, on="jobs")
    with pytest.raises(StagingError, match=rf"job {job.job_id}.*HTTP 500"):
        client.wait(job, interval=0, max_poll_errors=3, sleep=_no_sleep)


def test_unknown_job_is_an_http_error(client: ChillerClient, standin: ChillerStandIn) -> None:
    ghost = ChillerJob("1234567890123456789", f"{standin.url}/jobs/1234567890123456789", (A,))
    with pytest.raises(StagingError, match=r"job 1234567890123456789: .*HTTP 404"):
        client.status(ghost)


def test_unreadable_staged_files_list_names_job_and_path(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.staged_list_missing = True
    standin.polls_before_finished = 0
    job = client.submit([A])
    with pytest.raises(
        StagingError, match=rf"job {job.job_id}: cannot read .*{job.job_id}\.staged"
    ):
        client.status(job)


def test_finished_without_staged_files_path_is_an_error(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    job = client.submit([A])
    standin.job_reply = '{"State": "Finished"}'
    with pytest.raises(StagingError, match=rf"job {job.job_id} is finished but .* no StagedFiles"):
        client.status(job)


@pytest.mark.parametrize("reply", ["<html>gateway</html>", "", "12 34"])
def test_upload_reply_that_is_no_job_id_is_an_error(
    standin: ChillerStandIn, client: ChillerClient, reply: str
) -> None:
    standin.upload_reply = reply
    with pytest.raises(StagingError, match=r"neither a job id .* nor a polling URL"):
        client.submit([A])


@pytest.mark.parametrize("reply", ["not json", "[1, 2]"])
def test_poll_reply_that_is_no_json_object_is_an_error(
    standin: ChillerStandIn, client: ChillerClient, reply: str
) -> None:
    job = client.submit([A])
    standin.job_reply = reply
    with pytest.raises(StagingError, match=rf"job {job.job_id}: reply is not"):
        client.status(job)


@pytest.mark.parametrize("bad", ["relative/file.zip", "", "/a\n/b"])
def test_paths_must_be_absolute_single_lines(bad: str) -> None:
    with pytest.raises(StagingError, match=r"absolute paths, one per line"):
        normalise_paths([A, bad])


def test_empty_list_is_refused_before_any_request(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    with pytest.raises(StagingError, match="empty file list"):
        client.submit([])
    assert standin.requests == []


@pytest.mark.parametrize("url", ["chiller.eodc.eu", "ftp://chiller.eodc.eu", "https://"])
def test_invalid_base_url(url: str) -> None:
    with pytest.raises(StagingError, match="invalid Chiller URL"):
        ChillerClient(url)


def test_connection_failure_names_the_request_and_hides_credentials() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ChillerClient(f"http://user:hunter2@127.0.0.1:{port}", request_timeout=2)
    with pytest.raises(StagingError) as info:
        client.submit([A])
    assert f"POST http://127.0.0.1:{port}/upload failed: ConnectionError" in str(info.value)
    assert "hunter2" not in str(info.value)


class _RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.verify_seen: list[Any] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.verify_seen.append(kwargs.get("verify"))
        return super().request(method, url, *args, **kwargs)


@pytest.mark.parametrize(
    ("ca_bundle", "expected"), [(None, True), ("/etc/site-ca.pem", "/etc/site-ca.pem")]
)
def test_tls_is_always_verified(
    standin: ChillerStandIn, ca_bundle: str | None, expected: bool | str
) -> None:
    session = _RecordingSession()
    client = ChillerClient(standin.url, ca_bundle=ca_bundle, session=session)
    job = client.submit([A])
    client.status(job)
    assert session.verify_seen == [expected, expected]


def test_staging_warms_cold_archive_files(
    standin: ChillerStandIn, client: ChillerClient, tmp_path: Path
) -> None:
    assert standin.archive is not None
    zips = []
    for tile in ("40KCB", "40KCC"):
        safe = build_safe(
            tmp_path / "build", level="L1C", tile=tile, size=12,
            sensing=datetime(2017, 6, 20, 10, 0, 31, tzinfo=UTC),
        )  # fmt: skip
        zips.append(zip_safe(safe, tmp_path / "zips" / f"{safe.name[:-5]}.zip"))
    warm_path, cold_path = (standin.archive.add(path) for path in zips)
    assert warm_path.parent == standin.archive.root / "s2a_prd_msil1c" / "2017" / "06" / "20"
    assert is_cold(warm_path) and warm_path.stat().st_size == zips[0].stat().st_size
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(warm_path)

    standin.not_staged = {str(cold_path)}
    standin.polls_before_finished = 1
    job = client.submit([str(warm_path), str(cold_path)])
    assert is_cold(warm_path)  # submitting alone does not stage
    missing = client.wait(job, interval=0, sleep=_no_sleep)

    assert missing == [str(cold_path)]
    assert not is_cold(warm_path) and is_cold(cold_path)
    with zipfile.ZipFile(warm_path) as archive:
        assert archive.testzip() is None
        assert archive.namelist()[0].startswith(zips[0].name[:-4] + ".SAFE/")


def test_resource_chunks_submissions_and_waits_for_all(standin: ChillerStandIn) -> None:
    standin.polls_before_finished = 1
    standin.not_staged = {C}
    resource = ChillerResource(url=standin.url, chunk_size=2, poll_interval_s=0.01, timeout_s=5)

    jobs = resource.submit([C, A, B, A])

    assert [job.files for job in jobs] == [(A, B), (C,)]
    assert [upload.body for upload in standin.uploads] == [f"{A}\n{B}", C]
    assert not resource.status(jobs[0]).finished
    assert resource.wait(jobs) == [C]


def test_resource_without_url_means_no_chiller(standin: ChillerStandIn) -> None:
    for resource in (ChillerResource(), ChillerResource(url="  ")):
        assert not resource.enabled
        with pytest.raises(StagingError, match="no Chiller URL is set"):
            resource.submit([A])
    assert standin.requests == []
