"""The ``s2-assets`` command: ``demo`` builds the archive and runs the pipeline, idempotently."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from s2_assets.cli import build_parser, main
from s2_assets.demo.quickstart import DemoPaths

DEMO_ENV = ("DAGSTER_HOME", "S2_DATA_HOME", "S2_ARCHIVE_ROOT", "S2_DATE_START", "S2_DATE_END")


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The demo sets these in os.environ; record them so the test leaves the process as found."""
    for name in DEMO_ENV:
        monkeypatch.setenv(name, str(tmp_path / "unused"))


def fetched_by_run(dagster_home: Path) -> dict[str, list[str]]:
    """Every product id an ``l1c``/``l2a`` materialization reports as fetched, by run id."""
    fetched: dict[str, list[str]] = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for key in ("l1c", "l2a"):
            records = instance.fetch_materializations(dg.AssetKey(key), limit=1000).records
            for record in records:
                materialization = record.asset_materialization
                assert materialization is not None
                ids = materialization.metadata["fetched_now"].value
                assert isinstance(ids, list)
                fetched.setdefault(record.run_id, []).extend(str(i) for i in ids)
    return fetched


def test_demo_runs_and_is_idempotent(
    tmp_path: Path, isolated_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "demo"
    paths = DemoPaths(base)
    assert main(["demo", "--dir", str(base), "--size", "12"]) == 0
    out = capsys.readouterr().out
    assert f"Demo library: {paths.library}  (6 L1C, 6 L2A products)" in out
    assert f"Dagster instance: {paths.dagster_home}" in out
    assert f" --env-file {base}/.env ui\n" in out
    assert f"S2_DATA_HOME={paths.library}" in paths.env_file.read_text()
    assert (paths.dagster_home / "dagster.yaml").is_file()
    safes = sorted(paths.library.glob("data/L*/*/*.SAFE"))
    assert len(safes) == 12
    assert {p.parent.name for p in safes} == {"40KCB", "31UFS"}
    inodes = {str(p): p.stat().st_ino for p in safes}
    zips = sorted(paths.archive.rglob("*.zip"))
    assert len(zips) == 16
    zip_times = {str(z): z.stat().st_mtime_ns for z in zips}
    first = fetched_by_run(paths.dagster_home)
    assert sum(len(ids) for ids in first.values()) == 12

    assert main(["demo", "--dir", str(base), "--size", "12"]) == 0
    assert "(6 L1C, 6 L2A products)" in capsys.readouterr().out
    again = fetched_by_run(paths.dagster_home)
    new_runs = set(again) - set(first)
    assert len(new_runs) == 2  # one ranged product run per tile
    assert all(again[run] == [] for run in new_runs)
    assert {str(p): p.stat().st_ino for p in paths.library.glob("data/L*/*/*.SAFE")} == inodes
    # The archive is kept, not rebuilt.
    assert {str(z): z.stat().st_mtime_ns for z in paths.archive.rglob("*.zip")} == zip_times


def test_demo_rejects_a_size_that_breaks_the_grids(
    tmp_path: Path, isolated_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--size", "10"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "s2-assets demo: ValueError: size must be a multiple of 6 (10/20/60 m grids), not 10",
        "(run again with --debug for the traceback)",
    ]


def test_parser() -> None:
    parser = build_parser()
    args = parser.parse_args(["demo"])
    assert (args.dir, args.size) == ("demo_data", 120)
    args = parser.parse_args(["--env-file", "x/.env", "ui", "--port", "3001"])
    assert (args.env_file, args.host, args.port) == (Path("x/.env"), "127.0.0.1", 3001)
    with pytest.raises(SystemExit) as info:
        parser.parse_args([])
    assert info.value.code == 2
