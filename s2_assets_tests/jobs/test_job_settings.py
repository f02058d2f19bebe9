"""Job settings and task columns acted on: compute_l2a through Sen2Cor, side products, logs,
remove rules shown truthfully, tries/sleep for offline products, process_by_line chunks."""

import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from s2_assets.definitions import build_definitions
from s2_assets.demo.products import DEMO_PRODUCTS, build_archive
from s2_assets.errors import ProductOfflineError
from s2_assets.jobs.backfill import requested_partitions
from s2_assets.library.tree import Library
from s2_assets.providers.archive import ArchiveProvider
from s2_assets.settings import Settings
from s2_assets_tests.jobs.driver import execute_backfill, run_requests, sense, tick
from s2_assets_tests.sen2cor_standin import write_launcher

HEADER = """logs = {logs}
timing = 0 1 * * *
provider = archive
tries = {tries}
sleep = 0
nb_proc = 1
copy_L2A_sideproducts = True
clean_before = False
clean_after = False
process_by_line = {by_line}

tile;date_min;date_max;max_clouds;provider;filter_max_pb;download;compute_l2a;cloudmasks;indices;remove;comments
"""
WHEN = datetime(2022, 2, 7, 2, 30, tzinfo=UTC)


def make(tmp_path: Path, rows: list[str], *, logs: bool = True, tries: int = 1, by_line: int = 0):
    archive = tmp_path / "archive"
    build_archive(archive, [p for p in DEMO_PRODUCTS if p.level == "L1C"], size=12)
    library = tmp_path / "library"
    jobs = Library(library).jobs_dir
    jobs.mkdir(parents=True)
    text = HEADER.format(logs=logs, tries=tries, by_line=by_line) + "\n".join(rows) + "\n"
    (jobs / "job_j.cfg").write_text(text)
    launcher = write_launcher(tmp_path / "Sen2Cor-02.12.03" / "bin")
    settings = Settings(
        data_home=library,
        archive_root=str(archive),
        date_start="2022-01-01",
        sen2cor_paths=(str(launcher),),
    )
    return build_definitions(settings), library


def test_compute_l2a_side_products_logs_and_remove_rules(tmp_path: Path) -> None:
    defs, library = make(
        tmp_path,
        [
            "40KCB;2022-01-19;2022-01-21;100;archive;True;l1c;True;CM004-CSH1-CMP1-CHP1-TCI1-ITER0;;l1c-new;Reunion"
        ],
    )
    with dg.instance_for_test() as instance:
        run_requests(defs, instance, tick(defs, instance, "j", WHEN), "j")
        result = sense(defs, instance, None)
        (request,) = result.run_requests
        covered = requested_partitions(request)
        assert set(covered) == {dg.AssetKey(k) for k in ("l1c", "l2a", "cloudmask", "housekeeping")}
        assert covered[dg.AssetKey("l2a")] == {"2022-01-20|40KCB"}
        assert request.tags["s2/task"] == "0"
        execute_backfill(defs, instance, request)

        l2a = list((library / "data" / "L2A" / "40KCB").iterdir())
        assert [p.name for p in l2a] == [
            "S2A_MSIL2A_20220120T063511_N0301_R120_T40KCB_20220120T083511.SAFE"
        ]
        assert (l2a[0] / "sen2chain_info.xml").is_file()
        masks = library / "data" / "CLOUDMASKS" / "40KCB" / l2a[0].name.removesuffix(".SAFE")
        l2a_id = l2a[0].name.removesuffix(".SAFE")
        assert {
            "MSK_CLDPRB_20m.jp2",
            f"{l2a_id}_CM004-CSH1-CMP1-CHP1-TCI1-ITER0.tif",
            "T40KCB_20220120T063511_SCL_20m.jp2",
        } <= {p.name for p in masks.iterdir()}
        # l1c-new: the converted L1C is gone, and the UI no longer claims it.
        assert not list((library / "data" / "L1C" / "40KCB").iterdir())
        latest = instance.fetch_materializations(dg.AssetKey("l1c"), limit=1).records[0]
        state = latest.asset_materialization
        assert state is not None and state.partition == "2022-01-20|40KCB"
        assert state.metadata["products"].value == 0
        assert state.metadata["paths"].value == []
        assert "l1c-new" in str(state.metadata["removed"].value)
        assert "2022-01-20|40KCB" in instance.get_materialized_partitions(dg.AssetKey("l2a"))

        (log,) = (library / "logs" / "job_j").glob("job_j_run_*.log")
        text = log.read_text()
        assert "computed ['S2A_MSIL2A_20220120T063511" in text and "removed S2A_MSIL1C" in text


def test_offline_products_are_retried_as_tries_say(tmp_path: Path, monkeypatch) -> None:
    defs, library = make(
        tmp_path, ["40KCB;2022-01-19;2022-01-21;100;archive;True;l1c;False;;;;x"], tries=2
    )
    real_fetch = ArchiveProvider.fetch
    calls: list[str] = []

    def flaky(self, record, workdir):  # offline on the first round, online on the second
        calls.append(record.product_id)
        if len(calls) == 1:
            raise ProductOfflineError(f"{record.product_id} is offline")
        return real_fetch(self, record, workdir)

    monkeypatch.setattr(ArchiveProvider, "fetch", flaky)
    with dg.instance_for_test() as instance:
        run_requests(defs, instance, tick(defs, instance, "j", WHEN), "j")
        (request,) = sense(defs, instance, None).run_requests
        execute_backfill(defs, instance, request)
    assert len(calls) == 2
    assert len(list((library / "data" / "L1C" / "40KCB").iterdir())) == 1


def test_process_by_line_launches_one_backfill_per_chunk(tmp_path: Path) -> None:
    defs, _ = make(
        tmp_path,
        [
            "40KCB;2022-01-01;2022-02-10;100;archive;True;l1c;False;;;;a",
            "31UFS;2022-01-01;2022-02-10;100;archive;True;l1c;False;;;;b",
        ],
        by_line=1,
        logs=False,
    )
    with dg.instance_for_test() as instance:
        run_requests(defs, instance, tick(defs, instance, "j", WHEN), "j")
        requests = sense(defs, instance, None).run_requests
    assert [r.tags["s2/task"] for r in requests] == ["0", "1"]
    tiles = [
        {k.split("|")[1] for ks in requested_partitions(r).values() for k in ks} for r in requests
    ]
    assert tiles == [{"40KCB"}, {"31UFS"}]


def test_run_now_discovers_and_processes_in_process(tmp_path: Path) -> None:
    from s2_assets.jobs.run_now import run_job_now

    defs, library = make(
        tmp_path, ["40KCB;2022-01-19;2022-01-26;100;archive;True;l1c;False;;;;x"], logs=False
    )
    with dg.instance_for_test() as instance:
        summary = run_job_now(defs, instance, Library(library), "j")
        again = run_job_now(defs, instance, Library(library), "j")
    assert (summary.discovery_runs, summary.product_runs, summary.partitions) == (1, 1, 6)
    held = sorted(p.name[:26] for p in (library / "data" / "L1C" / "40KCB").iterdir())
    assert held == ["S2A_MSIL1C_20220120T063511", "S2B_MSIL1C_20220125T063509"]
    assert (again.product_runs, again.partitions) == (0, 0)


def _old_debris(folder: Path, name: str) -> Path:
    debris = folder / name
    debris.mkdir(parents=True)
    (debris / "leftover.jp2").write_bytes(b"x")
    for path in (debris / "leftover.jp2", debris):
        os.utime(path, (1_600_000_000, 1_600_000_000))  # long ago: not a running job's
    return debris


def test_clean_before_and_after_run_the_library_clean(tmp_path: Path) -> None:
    defs, library = make(
        tmp_path, ["40KCB;2022-01-19;2022-01-21;100;archive;True;l1c;False;;;;x"], logs=False
    )
    job = Library(library).jobs_dir / "job_j.cfg"
    job.write_text(
        job.read_text()
        .replace("clean_before = False", "clean_before = True")
        .replace("clean_after = False", "clean_after = True")
    )
    defs = build_definitions(
        Settings(data_home=library, archive_root=str(tmp_path / "archive"), date_start="2022-01-01")
    )
    l1c_folder = library / "data" / "L1C" / "40KCB"
    before = _old_debris(l1c_folder, "S2A_MSIL2A_20220101T063511_N0400_R120_T40KCB_X.tmp")
    with dg.instance_for_test() as instance:
        run_requests(defs, instance, tick(defs, instance, "j", WHEN), "j")
        assert not before.exists()  # clean_before, during discovery
        (request,) = sense(defs, instance, None).run_requests
        assert dg.AssetKey("housekeeping") in requested_partitions(request)
        after = _old_debris(l1c_folder, "S2A_MSIL2A_20220102T063511_N0400_R120_T40KCB_Y.tmp")
        execute_backfill(defs, instance, request)
    assert not after.exists()  # clean_after, once the products exist
    assert len(list(l1c_folder.glob("*.SAFE"))) == 1
