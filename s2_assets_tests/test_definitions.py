"""The code location loads: every asset, job, schedule and sensor resolves, the partitions are
tiles x daily date, and ``dagster definitions validate`` passes on the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.definitions import build_definitions
from s2_assets.jobs.writer import new_job
from s2_assets.library.tree import Library
from s2_assets.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "archive").mkdir()
    return Settings(
        data_home=tmp_path / "library",
        archive_root=str(tmp_path / "archive"),
        date_start="2022-01-01",
    )


def test_definitions_are_loadable(settings: Settings) -> None:
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)


def test_assets_and_their_partitions(settings: Settings) -> None:
    graph = build_definitions(settings).resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"acquisitions", "l1c", "l2a"} <= keys

    acquisitions = graph.get(dg.AssetKey("acquisitions")).partitions_def
    assert isinstance(acquisitions, dg.DynamicPartitionsDefinition)
    assert acquisitions.name == "tiles"

    for name in ("l1c", "l2a"):
        node = graph.get(dg.AssetKey(name))
        partitions = node.partitions_def
        assert isinstance(partitions, dg.MultiPartitionsDefinition)
        dims = {d.name: d.partitions_def for d in partitions.partitions_defs}
        assert set(dims) == {"tile", "date"}
        assert isinstance(dims["tile"], dg.DynamicPartitionsDefinition)
        assert dims["tile"].name == "tiles"
        assert isinstance(dims["date"], dg.DailyPartitionsDefinition)
        assert dims["date"].start.date().isoformat() == "2022-01-01"
        # A backfill of many days of one tile runs as one ranged run, not one run per day.
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert dg.AssetKey("acquisitions") in node.parent_keys
        mapping = graph.get_partition_mapping(node.key, dg.AssetKey("acquisitions"))
        assert isinstance(mapping, dg.MultiToSingleDimensionPartitionMapping)
        assert mapping.partition_dimension_name == "tile"


def test_resources_are_bound_from_settings(settings: Settings) -> None:
    resources = build_definitions(settings).resources or {}
    assert {"library", "providers"} <= set(resources)
    assert resources["library"].root == str(settings.data_home)
    assert resources["providers"].archive.root == settings.archive_root
    assert resources["providers"].default == "archive"


def test_every_job_schedule_and_sensor_resolves(settings: Settings) -> None:
    jobs_dir = Library(settings.data_home).jobs_dir
    new_job(jobs_dir, "reunion")
    (jobs_dir / "job_broken.cfg").write_text("this is not a job file\n")
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    jobs = {job.name for job in repo.get_all_jobs()}
    schedules = {schedule.name for schedule in repo.schedule_defs}
    sensors = {sensor.name for sensor in repo.sensor_defs}
    assert {"reunion_job", "broken_job"} <= jobs
    assert {"reunion_schedule", "broken_schedule"} <= schedules
    assert "new_acquisitions_sensor" in sensors
    for name in jobs:
        assert defs.resolve_job_def(name).name == name
    for name in schedules:
        assert defs.resolve_schedule_def(name).name == name
    for name in sensors:
        assert defs.resolve_sensor_def(name).name == name
    broken = defs.resolve_schedule_def("broken_schedule")
    assert broken.description is not None
    assert "BROKEN job file" in broken.description
    assert "job_broken.cfg" in broken.description


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("S2_DATA_HOME", str(tmp_path / "lib"))
    monkeypatch.setenv("S2_ARCHIVE_ROOT", str(tmp_path / "zips"))
    monkeypatch.setenv("S2_DATE_START", "2020-05-01")
    settings = Settings.from_env()
    assert settings.data_home == tmp_path / "lib"
    assert settings.archive_root == str(tmp_path / "zips")
    assert settings.date_start == "2020-05-01"
    assert settings.first_day.isoformat() == "2020-05-01"
    monkeypatch.setenv("S2_DATE_START", "May 2020")
    with pytest.raises(ValueError, match=r"S2_DATE_START='May 2020' is not a date"):
        Settings.from_env()


def test_dagster_definitions_validate_passes(tmp_path: Path) -> None:
    """The same check as the CLI users run, on the module ``[tool.dagster]`` points at."""
    library = tmp_path / "library"
    new_job(Library(library).jobs_dir, "reunion")
    (tmp_path / "archive").mkdir()
    (tmp_path / "home").mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "S2_DATA_HOME": str(library),
        "S2_ARCHIVE_ROOT": str(tmp_path / "archive"),
        "S2_DATE_START": "2022-01-01",
    }
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "s2_assets.definitions"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Validation successful" in output
