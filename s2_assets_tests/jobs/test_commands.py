"""The ``s2-assets jobs`` subcommands, driven in-process through ``main_jobs``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from s2_assets.jobs.commands import add_jobs_parser, main_jobs
from s2_assets.jobs.jobfile import load_job

BROKEN = (
    "logs = perhaps\ntiming = 0 0 * * *\n"
    "tile;date_min;date_max;max_clouds;download;compute_l2a;cloudmasks;indices;remove\n"
    "40KCB;soon;;;;;;;\n"
)


def run(capsys: pytest.CaptureFixture[str], jobs_dir: Path, *argv: str, **kw: object) -> tuple:
    code = main_jobs(list(argv), jobs_dir, **kw)  # type: ignore[arg-type]
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_new_then_list_with_schedule_status(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, tmp_path, "new", "demo", "--timing", "30 2 * * 1", "--logs")
    assert code == 0 and "job_demo.cfg (1 task(s))" in out
    assert run(capsys, tmp_path, "new", "other", "--empty")[0] == 0
    (tmp_path / "job_broken.cfg").write_text(BROKEN, encoding="utf-8")
    asked: list[str] = []

    def status(name: str) -> str | None:
        asked.append(name)
        return "RUNNING" if name == "demo_schedule" else None

    code, out, _ = run(capsys, tmp_path, "list", get_schedule_status=status)
    assert code == 0
    # Columns are two or more spaces apart; a timing holds single spaces.
    rows = [re.split(r"\s{2,}", line) for line in out.splitlines()]
    assert rows[:4] == [
        [
            "job_id",
            "config_file",
            "logging",
            "timing",
            "schedule_status",
            "cron_timing",
            "problems",
        ],
        ["broken", "True", "-", "-", "unknown", "-", "2"],
        ["demo", "True", "True", "30 2 * * 1", "RUNNING", "30 2 * * 1", "0"],
        ["other", "True", "False", "0 0 * * *", "unknown", "0 0 * * *", "0"],
    ]
    assert "1 job file(s) have problems" in out
    assert asked == ["broken_schedule", "demo_schedule", "other_schedule"]


def test_list_without_status_and_without_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, _ = run(capsys, tmp_path, "list")
    assert code == 0 and "no job files" in out
    run(capsys, tmp_path, "new", "demo")
    assert "unknown" in run(capsys, tmp_path, "list")[1]


def test_show_prints_settings_and_resolved_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run(capsys, tmp_path, "new", "demo")
    code, out, _ = run(capsys, tmp_path, "show", "demo", "--today", "2024-03-10")
    assert code == 0
    assert "  timing = 0 0 * * *" in out and "  process_by_line = 0" in out
    assert "[0] 40KCB  line" in out
    assert "window      2024-03-05..2024-03-10  (date_min today-5, date_max today)" in out
    assert "comments    Init line sur La Réunion" in out


def test_validate_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run(capsys, tmp_path, "new", "demo")
    code, out, _ = run(capsys, tmp_path, "validate")
    assert code == 0 and "ok  " in out and "job_demo.cfg: 1 task(s)" in out
    (tmp_path / "job_broken.cfg").write_text(BROKEN, encoding="utf-8")
    code, out, _ = run(capsys, tmp_path, "validate")
    assert code == 1
    assert "job_demo.cfg: 1 task(s)" in out
    assert "job_broken.cfg has 2 problems" in out
    assert "job_broken.cfg:1: setting 'logs' value 'perhaps': not a boolean" in out
    assert "job_broken.cfg:4: column 'date_min' (field 2) value 'soon': not a date" in out
    code, out, _ = run(capsys, tmp_path, "validate", "broken")
    assert code == 1 and "has 2 problems" in out and "job_demo" not in out
    assert run(capsys, tmp_path, "validate", "demo")[0] == 0


def test_add_edit_remove_tasks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run(capsys, tmp_path, "new", "demo", "--empty")
    code, out, _ = run(
        capsys, tmp_path, "add-task", "demo", "--tile", "40KCB", "--date-min", "2020-01-01",
        "--max-clouds", "80", "--download", "l2a", "--cloudmasks", "CM001",
        "--indices", "NDVI/EVI", "--remove", "l2a-new-cc90", "--comments", "Reunion",
    )  # fmt: skip
    assert code == 0 and "added task 0" in out
    assert run(capsys, tmp_path, "add-task", "demo", "--tile", "40KCC", "--disabled")[0] == 0
    path = tmp_path / "job_demo.cfg"
    first, second = load_job(path).tasks
    assert (first.max_clouds, first.download, first.indices) == (80, "l2a", ("NDVI", "EVI"))
    assert not second.enabled

    assert run(capsys, tmp_path, "edit-task", "demo", "1", "--enable", "--pb-min", "04.00")[0] == 0
    assert run(capsys, tmp_path, "edit-task", "demo", "0", "--disable")[0] == 0
    assert run(capsys, tmp_path, "edit-task", "demo", "1", "--tile", "40KCD")[0] == 0
    first, second = load_job(path).tasks
    assert not first.enabled and first.tile == "40KCB" and first.comments == "Reunion"
    assert second.enabled and second.tile == "40KCD" and second.pb_min == 4.0

    code, out, _ = run(capsys, tmp_path, "remove-task", "demo", "0")
    assert code == 0 and "(1 left)" in out
    assert [t.tile for t in load_job(path).tasks] == ["40KCD"]


def test_command_errors_exit_1_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run(capsys, tmp_path, "new", "demo")
    path = tmp_path / "job_demo.cfg"
    before = path.read_bytes()
    code, out, _ = run(capsys, tmp_path, "edit-task", "demo", "0", "--indices", "NDVX")
    assert code == 1 and "nothing written" in out and "unknown index 'NDVX'" in out
    code, _, err = run(capsys, tmp_path, "edit-task", "demo", "0")
    assert code == 1 and "nothing to change" in err
    code, _, err = run(capsys, tmp_path, "remove-task", "demo", "3")
    assert code == 1 and "no task 3; valid task ids: 0..0" in err
    code, _, err = run(capsys, tmp_path, "show", "nope")
    assert code == 1 and "no job 'nope'" in err and "existing: demo" in err
    code, _, err = run(capsys, tmp_path, "new", "demo")
    assert code == 1 and "already exists" in err
    code, out, _ = run(capsys, tmp_path, "new", "late", "--timing", "0 0 * * 9")
    assert code == 1 and "day of week 9 is outside 0-7" in out
    assert run(capsys, tmp_path, "add-task", "demo")[0] == 2  # argparse: --tile is required
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job_demo.cfg"]


def test_add_jobs_parser_reads_the_jobs_dir_only_when_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    calls: list[int] = []

    def jobs_dir() -> Path:
        calls.append(1)
        return tmp_path

    parser = argparse.ArgumentParser(prog="s2-assets")
    add_jobs_parser(parser.add_subparsers(dest="command", required=True), jobs_dir)
    args = parser.parse_args(["jobs", "new", "demo"])
    assert calls == []
    assert args.handler(args) == 0
    assert calls == [1] and (tmp_path / "job_demo.cfg").is_file()
