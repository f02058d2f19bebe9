"""The staging ledger: chunking, throttling, settling jobs, the cursor, against the stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from s2_assets.errors import StagingError
from s2_assets.providers.chiller import ChillerClient, ChillerJob, ChillerStatus
from s2_assets.providers.staging_ledger import StagingLedger, chunk_paths
from s2_assets.providers.staging_records import Chunk, OpenJob, TickReport
from s2_assets.resources.chiller import ChillerResource
from s2_assets_tests.chiller_standin import ChillerStandIn

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
DIR = "/eodc/products/copernicus.eu/s2a_prd_msil1c"


def zip_path(day: int, tile: str = "40KCB", level: str = "L1C") -> str:
    folder = DIR.replace("msil1c", f"msi{level.lower()}")
    stamp = f"202401{day:02d}T063511"
    name = f"S2A_MSI{level}_{stamp}_N0510_R120_T{tile}_202401{day:02d}T083400"
    return f"{folder}/2024/01/{day:02d}/{name}.zip"


def key(day: int, tile: str = "40KCB") -> str:
    return f"2024-01-{day:02d}|{tile}"


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[ChillerStandIn]:
    with ChillerStandIn(tmp_path) as running:
        yield running


@pytest.fixture
def client(standin: ChillerStandIn) -> Iterator[ChillerClient]:
    chiller = ChillerClient(standin.url, request_timeout=5)
    yield chiller
    chiller.close()


def tick(
    ledger: StagingLedger,
    service: ChillerClient | ChillerResource,
    minutes: int = 0,
    *,
    chunk_size: int = 100,
    max_open: int = 4,
    timeout_s: float = 3600,
) -> tuple[StagingLedger, TickReport]:
    """One tick through a JSON round trip, as a sensor's cursor would carry the ledger."""
    fresh = StagingLedger.from_json(ledger.to_json())
    now = T0 + timedelta(minutes=minutes)
    if isinstance(service, ChillerResource):
        report = service.tick(fresh, now=now)
    else:
        report = fresh.tick(
            service, now=now, chunk_size=chunk_size, max_open=max_open, timeout_s=timeout_s
        )
    return fresh, report


def test_add_merges_files_and_reports_only_changes() -> None:
    ledger = StagingLedger()
    assert ledger.add({key(1): [zip_path(1)], key(2): [zip_path(2)]}) == [key(1), key(2)]
    assert ledger.add({key(1): [zip_path(1)]}) == []
    assert ledger.add({key(1): [zip_path(1, level="L2A")]}) == [key(1)]
    assert ledger.partitions[key(1)] == (zip_path(1), zip_path(1, level="L2A"))


def test_plan_keeps_partitions_whole_and_respects_free_slots() -> None:
    ledger = StagingLedger()
    # Three partitions of two files each, chunks of three: packing whole partitions gives
    # one partition per chunk rather than splitting day 2 across jobs.
    ledger.add({key(d): [zip_path(d), zip_path(d, level="L2A")] for d in (1, 2, 3)})

    plan = ledger.plan(chunk_size=3, max_open=2)

    assert plan == [
        Chunk((zip_path(1), zip_path(1, level="L2A")), (key(1),)),
        Chunk((zip_path(2), zip_path(2, level="L2A")), (key(2),)),
    ]


def test_plan_splits_a_partition_larger_than_a_chunk() -> None:
    ledger = StagingLedger()
    files = [zip_path(1, tile) for tile in ("40KCB", "40KCC", "40KDB")]
    ledger.add({key(1): files, key(2): [zip_path(2)]})

    plan = ledger.plan(chunk_size=2, max_open=5)

    assert plan == [
        Chunk(tuple(sorted(files)[:2]), (key(1),)),
        Chunk((sorted(files)[2], zip_path(2)), (key(1), key(2))),
    ]


def test_plan_asks_for_a_shared_file_once_and_skips_open_and_staged_files() -> None:
    shared = zip_path(1)
    ledger = StagingLedger(
        {key(1): [shared], key(1, "40KCC"): [shared, zip_path(1, "40KCC")], key(2): [zip_path(2)]},
        jobs=[OpenJob("7", "http://x/jobs/7", (zip_path(2),), T0)],
    )

    assert ledger.plan(chunk_size=10, max_open=2) == [
        Chunk((shared, zip_path(1, "40KCC")), (key(1), key(1, "40KCC")))
    ]
    assert ledger.plan(chunk_size=10, max_open=1) == []


@pytest.mark.parametrize(("chunk_size", "max_open"), [(0, 1), (1, 0)])
def test_plan_rejects_limits_below_one(chunk_size: int, max_open: int) -> None:
    with pytest.raises(StagingError, match=">= 1"):
        StagingLedger().plan(chunk_size=chunk_size, max_open=max_open)


def test_chunk_paths() -> None:
    assert chunk_paths(["/c", "/a", "/b", "/a"], 2) == [["/a", "/b"], ["/c"]]
    with pytest.raises(StagingError, match="chunk size must be >= 1, not 0"):
        chunk_paths(["/a"], 0)


def test_ticks_submit_once_then_release_exactly_the_staged_partitions(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.polls_before_finished = 1
    standin.not_staged = {zip_path(3)}
    wanted = {key(d): [zip_path(d)] for d in (1, 2, 3)}
    ledger = StagingLedger()
    ledger.add(wanted)

    ledger, first = tick(ledger, client)
    assert len(first.submitted) == 1 and len(standin.uploads) == 1
    assert first.ready == [] and first.open_jobs == 1 and first.waiting_files == 0

    assert ledger.add(wanted) == []  # discovery sees the same products again
    ledger, second = tick(ledger, client, 1)  # poll 1: Queued
    assert second.submitted == [] and second.ready == [] and len(standin.uploads) == 1

    ledger, third = tick(ledger, client, 2)  # poll 2: Finished
    job_id = first.submitted[0].job_id
    assert third.ready == [key(1), key(2)]
    assert third.not_staged == [zip_path(3)]
    assert third.dropped == {key(3): (zip_path(3),)}
    assert [(o.job_id, o.end) for o in third.outcomes] == [(job_id, "finished")]
    assert third.run_tags() == {
        "s2/staging_jobs": job_id,
        "s2/staging_not_staged": "1",
        "s2/staging_dropped_partitions": "1",
    }
    assert f"not staged: {zip_path(3)}" in third.summary()
    assert json.loads(ledger.to_json())["lost"] == {
        zip_path(3): f"job {job_id} finished without staging it"
    }
    assert ledger.partitions == {} and ledger.jobs == {} and ledger.staged == set()

    ledger, fourth = tick(ledger, client, 3)
    assert fourth.ready == [] and fourth.outcomes == [] and len(standin.uploads) == 1


def test_open_jobs_are_throttled_and_the_rest_waits_for_a_slot(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.polls_before_finished = 0
    ledger = StagingLedger()
    ledger.add({key(d): [zip_path(d)] for d in range(1, 6)})

    ready: list[str] = []
    for minute in range(4):
        ledger, report = tick(ledger, client, minute, chunk_size=2, max_open=1)
        assert report.open_jobs <= 1
        ready += report.ready

    assert [upload.body.count("\n") + 1 for upload in standin.uploads] == [2, 2, 1]
    assert ready == [key(d) for d in range(1, 6)]
    assert ledger.partitions == {} and ledger.jobs == {}


def test_a_partition_spread_over_two_jobs_waits_for_both(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    files = [zip_path(1, tile) for tile in ("40KCB", "40KCC", "40KDB")]
    ledger = StagingLedger()
    ledger.add({key(1): files})
    ledger, _ = tick(ledger, client, chunk_size=2)
    first, second = standin.jobs.values()
    first.polls_before_finished, second.polls_before_finished = 1, 5

    for minute in (1, 2):
        ledger, report = tick(ledger, client, minute, chunk_size=2)
        assert report.ready == []
    assert ledger.staged == set(first.files)

    second.polls_before_finished = 0
    ledger, report = tick(ledger, client, 3, chunk_size=2)
    assert report.ready == [key(1)]


def test_error_state_drops_and_reports_the_partitions(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.error = True
    standin.polls_before_finished = 0
    ledger = StagingLedger()
    ledger.add({key(1): [zip_path(1)], key(2): [zip_path(2)]})
    ledger, _ = tick(ledger, client)

    ledger, report = tick(ledger, client, 1)

    (outcome,) = report.outcomes
    assert (outcome.end, outcome.reason) == ("failed", "Chiller state ERROR")
    assert report.not_staged == [zip_path(1), zip_path(2)]
    assert report.dropped == {key(1): (zip_path(1),), key(2): (zip_path(2),)}
    assert report.ready == [] and ledger.partitions == {}


def test_poll_errors_keep_the_job_open_until_the_timeout(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.polls_before_finished = 0
    ledger = StagingLedger()
    ledger.add({key(1): [zip_path(1)]})
    ledger, _ = tick(ledger, client)
    job_id = next(iter(ledger.jobs))

    standin.inject(503, times=2, on="jobs")
    ledger, report = tick(ledger, client, 1)
    assert "HTTP 503" in report.poll_errors[job_id]
    ledger, _ = tick(ledger, client, 2)
    assert ledger.jobs[job_id].poll_errors == 2
    assert "HTTP 503" in json.loads(ledger.to_json())["jobs"][0]["last_error"]

    ledger, report = tick(ledger, client, 3)
    assert report.ready == [key(1)] and report.poll_errors == {}


def test_unfinished_job_times_out_and_is_reported(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    standin.polls_before_finished = 100
    ledger = StagingLedger()
    ledger.add({key(1): [zip_path(1)]})
    ledger, _ = tick(ledger, client, timeout_s=600)

    ledger, report = tick(ledger, client, 10, timeout_s=600)
    assert report.outcomes == [] and len(ledger.jobs) == 1
    ledger, report = tick(ledger, client, 11, timeout_s=600)

    (outcome,) = report.outcomes
    assert outcome.end == "timed out"
    assert outcome.reason == "not finished 660 s after submission (limit 600 s)"
    assert report.dropped == {key(1): (zip_path(1),)}
    assert len(standin.uploads) == 1  # given up, not silently resubmitted


def test_submission_error_keeps_what_was_submitted(
    standin: ChillerStandIn, client: ChillerClient
) -> None:
    ledger = StagingLedger()
    ledger.add({key(d): [zip_path(d)] for d in (1, 2, 3)})
    standin.inject(503, on="upload")

    ledger, report = tick(ledger, client, chunk_size=1)
    assert "HTTP 503" in report.submit_error and report.submitted == []

    ledger, report = tick(ledger, client, 1, chunk_size=1, max_open=2)
    assert [job.files for job in report.submitted] == [(zip_path(1),), (zip_path(2),)]
    assert report.waiting_files == 1


class _FlakySubmit:
    """Accepts one job, then refuses: a failure in the middle of a tick."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, paths: Iterable[str]) -> ChillerJob:
        self.calls += 1
        if self.calls > 1:
            raise StagingError("Chiller upload: HTTP 500")
        return ChillerJob("1", "http://chiller/jobs/1", tuple(paths))

    def status(self, job: ChillerJob) -> ChillerStatus:
        return ChillerStatus(job.job_id, "Running", finished=False, failed=False)


def test_failure_mid_tick_records_the_jobs_already_accepted() -> None:
    ledger = StagingLedger()
    ledger.add({key(1): [zip_path(1)], key(2): [zip_path(2)]})

    report = ledger.tick(_FlakySubmit(), now=T0, chunk_size=1, max_open=4, timeout_s=60)

    assert list(ledger.jobs) == ["1"] and report.submit_error == "Chiller upload: HTTP 500"
    assert ledger.pending_files() == [zip_path(2)]


def test_a_partition_with_no_files_is_ready_at_once(client: ChillerClient) -> None:
    ledger = StagingLedger()
    ledger.add({key(1): []})
    ledger, report = tick(ledger, client)
    assert report.ready == [key(1)] and report.submitted == []


def test_cursor_round_trip() -> None:
    ledger = StagingLedger(
        {key(1): [zip_path(1), zip_path(1, "40KCC")], key(2): [zip_path(2)]},
        jobs=[OpenJob("42", "https://chiller.eodc.eu/jobs/42", (zip_path(2),), T0, 1, "HTTP 502")],
        staged=[zip_path(1)],
    )
    again = StagingLedger.from_json(ledger.to_json())
    assert again.partitions == ledger.partitions
    assert again.jobs == ledger.jobs
    assert again.staged == ledger.staged
    assert len(json.loads(ledger.to_json())["files"]) == 3
    nested = json.loads(json.dumps({"after": 17, "ledger": ledger.to_dict()}))
    assert StagingLedger.from_dict(nested["ledger"]).jobs == ledger.jobs
    assert StagingLedger.from_json(None).partitions == {}


_EMPTY = '"version": 1, "files": ["/a"], "partitions": {}, "staged": []'
_JOB = '"id": "1", "url": "u", "submitted": "2024-01-01T00:00:00+00:00"'


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"version": 99}',
        '{"version": 1, "partitions": {}}',
        "{" + _EMPTY + ', "jobs": [{' + _JOB.replace("+00:00", "") + ', "files": []}]}',
        "{" + _EMPTY + ', "jobs": [{' + _JOB + ', "files": [1]}]}',
        "{" + _EMPTY + ', "jobs": [{' + _JOB + ', "files": [-1]}]}',
    ],
)
def test_bad_cursor_is_a_clear_error(text: str) -> None:
    with pytest.raises(StagingError, match=r"staging cursor|no timezone"):
        StagingLedger.from_json(text)


def test_naive_times_are_refused(client: ChillerClient) -> None:
    with pytest.raises(StagingError, match="has no timezone"):
        StagingLedger().tick(
            client, now=datetime(2024, 1, 1), chunk_size=1, max_open=1, timeout_s=1
        )


def test_finish_of_an_unknown_job_lists_the_open_ones() -> None:
    ledger = StagingLedger(jobs=[OpenJob("5", "u", (), T0)])
    with pytest.raises(StagingError, match="no open staging job '6'; open jobs: 5"):
        ledger.finish("6", [])


def test_resource_tick_uses_its_limits(standin: ChillerStandIn) -> None:
    standin.polls_before_finished = 0
    resource = ChillerResource(url=standin.url, chunk_size=1, max_open_jobs=2, timeout_s=600)
    ledger = StagingLedger()
    ledger.add({key(d): [zip_path(d)] for d in (1, 2, 3)})

    ledger, first = tick(ledger, resource)
    ledger, second = tick(ledger, resource, 1)

    assert [job.files for job in first.submitted] == [(zip_path(1),), (zip_path(2),)]
    assert second.ready == [key(1), key(2)]
    assert [job.files for job in second.submitted] == [(zip_path(3),)]


def test_cursor_writes_each_path_once() -> None:
    # Ten years of one tile at a 5-day revisit (730 dates, L1C and L2A, 119-character paths),
    # half of it in an open job: each path is written once (136 bytes per file, not 260).
    ledger = StagingLedger()
    ledger.add({f"{n:04d}|40KCB": [f"{zip_path(1)[:-8]}{n:04d}.zip", f"{zip_path(1, level='L2A')[:-8]}{n:04d}.zip"] for n in range(730)})  # fmt: skip
    for number, chunk in enumerate(ledger.plan(chunk_size=730, max_open=1)):
        ledger.record_submission(ChillerJob(str(number), "u", chunk.files), submitted=T0)
    text = ledger.to_json()

    assert len(ledger.open_files()) == 730
    assert text.count("T40KCB") == 1460
    assert len(text) < 1460 * 140
