"""Broken and colliding job files on a real instance: the schedule skips with the file:line
error, a partition only a broken task governs fails with it (never the defaults), names that
would collide in Dagster are refused or reported, and retired providers are named."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from s2_assets.definitions import build_definitions
from s2_assets.demo.products import DEMO_PRODUCTS, build_archive
from s2_assets.jobs.commands import main_jobs
from s2_assets.library.tree import Library
from s2_assets.settings import Settings

HEADER = """logs = False
timing = 0 1 * * *
provider = archive
tile;date_min;date_max;max_clouds;provider;filter_max_pb;download;compute_l2a;cloudmasks;indices;remove;comments
"""
GOOD_ROW = "31UFS;2022-01-01;2022-02-10;80;archive;True;l2a;False;;;;x\n"


def definitions(tmp_path: Path, files: dict[str, str]) -> tuple[dg.Definitions, Path]:
    archive = tmp_path / "archive"
    build_archive(archive, [p for p in DEMO_PRODUCTS if p.tile == "40KCB"], size=12)
    library = tmp_path / "library"
    jobs = Library(library).jobs_dir
    jobs.mkdir(parents=True)
    for name, text in files.items():
        (jobs / name).write_text(text)
    settings = Settings(data_home=library, archive_root=str(archive), date_start="2022-01-01")
    return build_definitions(settings), library


def test_a_broken_file_skips_its_schedule_and_its_tiles_never_take_defaults(
    tmp_path: Path,
) -> None:
    # One bad cell: before, the tile fell back to the defaults and a 90 % product was fetched
    # for a task limited to 80 %.
    bad = HEADER + "40KCB;2022-01-01;2022-02-10;eighty;archive;True;l2a;False;;;;x\n"
    defs, library = definitions(
        tmp_path, {"job_reunion.cfg": bad, "job_paris.cfg": HEADER + GOOD_ROW}
    )
    schedule = defs.get_schedule_def("reunion_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, repository_def=defs.get_repository_def()
        )
        skipped = schedule.evaluate_tick(context)
        assert skipped.skip_message and "job_reunion.cfg:5" in skipped.skip_message
        assert "max_clouds" in skipped.skip_message
        # The other job keeps working.
        assert defs.get_schedule_def("paris_schedule").cron_schedule == "0 1 * * *"
        # A hand-started run on the broken job's tile fails with the file's error.
        instance.add_dynamic_partitions("tiles", ["40KCB"])
        job = defs.resolve_implicit_global_asset_job_def()
        job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("acquisitions")],
            partition_key="40KCB",
        )
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("l2a")],
            partition_key="2022-02-04|40KCB",
            raise_on_error=False,
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        text = str(failure.event_specific_data)
        assert "broken job file" in text and "job_reunion.cfg" in text
    assert not (library / "data" / "L2A" / "40KCB").exists()


def test_colliding_file_names_are_reported_and_the_location_stays_up(tmp_path: Path) -> None:
    # Before: "Duplicate job definition" took the whole code location down.
    defs, _ = definitions(
        tmp_path,
        {"job_my-job.cfg": HEADER + GOOD_ROW, "job_my_job.cfg": HEADER + GOOD_ROW},
    )
    with dg.instance_for_test():
        names = {s.name for s in defs.get_repository_def().schedule_defs}
        broken = defs.get_schedule_def("my_job_2_schedule")
    assert {"my_job_schedule", "my_job_2_schedule"} <= names
    assert "job_my-job.cfg" in (broken.description or "")
    assert "collides with job_my_job.cfg" in (broken.description or "")


def test_jobs_new_and_validate_refuse_colliding_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "jobs"
    assert main_jobs(["new", "library_clean"], jobs) == 1
    assert "built-in" in capsys.readouterr().err
    jobs.mkdir(exist_ok=True)
    (jobs / "job_my-job.cfg").write_text(HEADER + GOOD_ROW)
    assert main_jobs(["new", "my_job"], jobs) == 1
    assert "collides with job_my-job.cfg" in capsys.readouterr().err
    assert main_jobs(["validate"], jobs) == 1
    assert "cannot name Dagster jobs" in capsys.readouterr().out
    # A file named like a built-in job is broken at load (its schedule explains).
    (jobs / "job_library_clean.cfg").write_text(HEADER + GOOD_ROW)
    assert main_jobs(["validate"], jobs) == 1
    assert "built-in Dagster job" in capsys.readouterr().out


@pytest.mark.parametrize("provider", ["peps", "scihub"])
def test_retired_providers_are_refused_with_what_to_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: str
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    # sen2chain's own template row used peps: before, it validated, then every tick failed.
    (jobs / "job_old.cfg").write_text(
        HEADER + f"40KCB;today-5;today;100;{provider};True;l1c;False;;;;x\n"
    )
    assert main_jobs(["validate"], jobs) == 1
    out = capsys.readouterr().out
    assert "job_old.cfg:5" in out and f"provider {provider!r} no longer exists" in out
    assert "use cop_dataspace" in out
    defs, _ = definitions(tmp_path, {"job_old.cfg": (jobs / "job_old.cfg").read_text()})
    with dg.instance_for_test():
        broken = defs.get_schedule_def("old_schedule")
    assert "no longer exists" in (broken.description or "")
