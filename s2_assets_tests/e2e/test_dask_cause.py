"""Why dagster-dask fails on our runs: the exact cause, reproduced without a cluster of ours.

``DaskExecutor`` hands the run's ``DagsterRun`` to ``client.submit``. Dask walks every tuple
argument to find futures, and ``DagsterRun`` is a named tuple; a partitioned run carries its
``partitions_subset``, whose ``partitions_def`` is a Dagster ``@record``, and records refuse
iteration. So every partitioned run fails, whatever its executor config, run config, tags or
resources; unpartitioned runs work. (Runs in the ``.ci/e2e.sh`` environment, which installs the
``dask`` extra; skipped where dagster-dask is missing.)
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("dagster_dask")

daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")


@dg.asset
def plain() -> None:
    """Unpartitioned."""


@dg.asset(partitions_def=daily)
def by_day() -> None:
    """One partition per day."""


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    """An in-process Dask cluster: no sockets, no worker processes."""
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster,
        distributed.Client(cluster) as opened,
    ):
        yield opened


def a_run(asset: dg.AssetsDefinition, tags: dict[str, str]) -> dg.DagsterRun:
    """The ``DagsterRun`` Dagster creates for a run of ``asset`` with ``tags``."""
    job = dg.Definitions(assets=[asset]).resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    return instance.create_run_for_job(job, tags=tags)


def run_id_of(run: dg.DagsterRun) -> str:
    return run.run_id


def test_a_partitioned_run_cannot_be_submitted_to_dask(client: distributed.Client) -> None:
    run = a_run(by_day, {"dagster/partition": "2024-01-02"})
    assert run.partitions_subset is not None
    with pytest.raises(Exception, match="Iteration is not allowed on `@record` TimeWindow"):
        client.submit(run_id_of, run)


def test_an_unpartitioned_run_can(client: distributed.Client) -> None:
    run = a_run(plain, {})
    assert run.partitions_subset is None
    assert client.submit(run_id_of, run).result() == run.run_id


def test_the_same_run_without_its_partitions_subset_can(client: distributed.Client) -> None:
    """The workaround's principle: keep the record out of Dask's reach. The worker can load the
    run from the instance by id (what dagster-celery does) instead of receiving it."""
    run = a_run(by_day, {"dagster/partition": "2024-01-02"})
    stripped = dg.DagsterRun(**{**run._asdict(), "partitions_subset": None})
    assert client.submit(run_id_of, stripped).result() == run.run_id
