"""Writing job files: the template, task edits that keep everything else, round trips."""

from __future__ import annotations

import configparser
import io
import os
import stat
from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from s2_assets.errors import JobFileError
from s2_assets.jobs import writer
from s2_assets.jobs.cells import DateSpec, RemoveRule
from s2_assets.jobs.jobfile import COLUMNS, REQUIRED_COLUMNS, load_job, parse_job_text
from s2_assets.jobs.model import JobFileProblems, JobSettings
from s2_assets.specs import INDEX_NAMES, MaskSpec

HEADER_141 = (
    "tile;date_min;date_max;max_clouds;provider;filter_max_pb;download;compute_l2a;"
    "cloudmasks;indices;remove;comments"
)
# A hand-edited sen2chain file: comments, odd spacing, a disabled row, a comment after a row.
HAND_WRITTEN = (
    "# my job\n"
    "logs = True\n"
    "timing = 30 2 * * *   # nightly\n"
    "\n"
    "# the table\n"
    f"{HEADER_141}\n"
    "40KCB ; today-10;today;80;cop_dataspace;True;l2a;True;CM001;NDVI;l2a;Reunion  # keep me\n"
    "!40KCC;2020-01-01;;;;;l1c;False;False;False;False;\n"
    "# trailing comment\n"
)


def write(tmp_path: Path, text: str, name: str = "job_demo.cfg") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


def test_new_job_writes_the_template(tmp_path: Path) -> None:
    job = writer.new_job(tmp_path / "config" / "jobs", "demo")
    assert job.path == tmp_path / "config" / "jobs" / "job_demo.cfg"
    assert load_job(job.path) == job
    assert job.settings == JobSettings()
    (task,) = job.tasks
    assert task.tile == "40KCB" and task.enabled
    assert task.date_min == DateSpec(open_as=date(2015, 1, 1), days_ago=5)
    assert task.date_max == DateSpec(open_as=date(9999, 12, 31), days_ago=0)
    assert (task.max_clouds, task.provider, task.filter_max_pb) == (100, "cop_dataspace", True)
    assert task.download is None and not task.compute_l2a
    assert (task.cloudmasks, task.indices, task.remove) == ((), (), ())
    assert task.comments == "Init line sur La Réunion"
    text = job.path.read_text(encoding="utf-8")
    assert text.startswith("# sen2chain processing job")
    assert "copy_L2A_sideproducts = False\n" in text
    assert f"\n{';'.join(COLUMNS)}\n40KCB;today-5;today;100;cop_dataspace;True;;;False;" in text
    assert [p.name for p in job.path.parent.iterdir()] == ["job_demo.cfg"]


def test_new_job_settings_and_empty_table(tmp_path: Path) -> None:
    settings = JobSettings(logs=True, timing="0 3 * * 1", provider="peps", tries=3, sleep=5)
    job = writer.new_job(tmp_path, "night", settings=settings, template_row=False)
    assert job.tasks == ()
    assert load_job(job.path).settings == settings


def test_new_job_refusals_write_nothing(tmp_path: Path) -> None:
    writer.new_job(tmp_path, "demo")
    with pytest.raises(JobFileError, match="already exists"):
        writer.new_job(tmp_path, "demo")
    with pytest.raises(JobFileError, match="letters, digits and '_' only"):
        writer.new_job(tmp_path, "la-reunion")
    with pytest.raises(JobFileProblems, match="hour 99 is outside 0-23") as caught:
        writer.new_job(tmp_path, "bad", settings=JobSettings(timing="0 99 * * *"))
    assert str(caught.value).startswith("nothing written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job_demo.cfg"]


def test_template_is_readable_the_way_sen2chain_reads_it(tmp_path: Path) -> None:
    """ConfigParser with a fake section for the settings; pandas by header trial for the table."""
    job = writer.new_job(tmp_path, "demo")
    text = job.path.read_text(encoding="utf-8")
    config = configparser.ConfigParser(allow_no_value=True, strict=False)
    config.read_string("[top]\n" + text)
    top = config["top"]
    assert (top["logs"], top["timing"], top["copy_l2a_sideproducts"]) == (
        "False",
        "0 0 * * *",
        "False",
    )
    for header in range(1, 20):
        try:
            table = pd.read_csv(io.StringIO(text), sep=";", dtype=str, keep_default_na=False,
                                comment="#", header=header)  # fmt: skip
        except pd.errors.ParserError:
            continue
        if set(REQUIRED_COLUMNS) <= set(table.columns):
            break
    assert list(table.columns) == list(COLUMNS)
    assert (
        table.iloc[0]["tile"] == "40KCB" and table.iloc[0]["comments"] == "Init line sur La Réunion"
    )


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_round_trip_is_exact(tmp_path: Path, newline: str) -> None:
    text = "\ufeff" + HAND_WRITTEN.replace("\n", newline).rstrip()  # BOM, no final newline
    path = write(tmp_path, text)
    first = load_job(path)
    writer.save_job(first)
    assert path.read_bytes() == text.encode("utf-8")
    assert load_job(path) == first


def test_task_cells_render_a_task_that_parses_back() -> None:
    source = (
        "logs = False\ntiming = @daily\n" + ";".join(COLUMNS) + "\n"
        "!40KCB;2020-01-01;today-3;0;peps;False;04.00;05.10;l2a;True;"
        "CM001/cm003-prb20-iter2;All;l1c-new-cc80/l2a-all;x\n"
        "40KCC;today;;;;;;;;;;;;\n"
    )
    job = parse_job_text(source, Path("job_a.cfg"))
    rendered = "logs = False\ntiming = @daily\n" + ";".join(COLUMNS) + "\n"
    rendered += "".join(
        ";".join(writer.task_cells(t)[c] for c in COLUMNS) + "\n" for t in job.tasks
    )
    again = parse_job_text(rendered, Path("job_a.cfg"))
    assert again.tasks == job.tasks
    first = again.tasks[0]
    assert first.cloudmasks == (MaskSpec("CM001"), MaskSpec("CM003", probability=20, iterations=2))
    assert first.indices == INDEX_NAMES and first.remove[0] == RemoveRule("l1c", "new", 80)


def test_add_task_appends_after_the_last_row(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    job = writer.add_task(load_job(path), {"tile": "40KCD", "indices": "NDVI/EVI"})
    lines = lines_of(path)
    assert lines[8] == "40KCD;;;;;;;;;NDVI/EVI;;"
    assert lines[:8] == HAND_WRITTEN.split("\n")[:8]
    assert lines[9:] == HAND_WRITTEN.split("\n")[8:]
    new = job.tasks[2]
    assert (new.index, new.line, new.tile, new.indices) == (2, 9, "40KCD", ("NDVI", "EVI"))
    assert load_job(path) == job


def test_add_task_to_an_empty_table_and_crlf(tmp_path: Path) -> None:
    text = f"logs = False\r\ntiming = @daily\r\n{HEADER_141}\r\n# end\r\n"
    path = write(tmp_path, text)
    writer.add_task(load_job(path), {"tile": "40KCB"})
    assert (
        path.read_bytes()
        == (
            f"logs = False\r\ntiming = @daily\r\n{HEADER_141}\r\n40KCB;;;;;;;;;;;\r\n# end\r\n"
        ).encode()
    )


def test_a_value_for_a_missing_column_adds_the_column(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    job = writer.edit_task(load_job(path), 1, {"pb_min": "04.00", "pb_max": ""})
    lines = lines_of(path)
    assert lines[5] == HEADER_141.replace("filter_max_pb;", "filter_max_pb;pb_min;")
    assert lines[6] == (
        "40KCB ; today-10;today;80;cop_dataspace;True;;l2a;True;CM001;NDVI;l2a;Reunion  # keep me"
    )
    assert lines[7] == "!40KCC;2020-01-01;;;;;04.00;l1c;False;False;False;False;"
    assert job.columns[6] == "pb_min" and "pb_max" not in job.columns
    assert job.tasks[1].pb_min == 4.0 and job.tasks[0].pb_min is None


def test_edit_task_changes_only_the_given_cells(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    job = writer.edit_task(load_job(path), 0, {"max_clouds": "50", "remove": "l1c-all-cc90"})
    lines = lines_of(path)
    assert lines[6] == (
        "40KCB ; today-10;today;50;cop_dataspace;True;l2a;True;CM001;NDVI;l1c-all-cc90;"
        "Reunion  # keep me"
    )
    assert lines[:6] == HAND_WRITTEN.split("\n")[:6] and lines[7:] == HAND_WRITTEN.split("\n")[7:]
    assert job.tasks[0].max_clouds == 50
    assert job.tasks[0].remove == (RemoveRule("l1c", "all", 90),)
    assert job.tasks[1] == load_job(path).tasks[1]


def test_edit_can_disable_and_enable(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    job = writer.edit_task(load_job(path), 0, {"tile": "!40KCB"})
    job = writer.edit_task(job, 1, {"tile": "40KCC"})
    assert [t.enabled for t in job.tasks] == [False, True]


def test_remove_task_deletes_only_its_row(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    job = writer.remove_task(load_job(path), 0)
    expected = HAND_WRITTEN.split("\n")
    del expected[6]
    assert lines_of(path) == expected
    assert [(t.index, t.tile, t.line) for t in job.tasks] == [(0, "40KCC", 7)]


def test_refused_edits_leave_the_file_untouched(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    job = load_job(path)
    with pytest.raises(JobFileProblems) as caught:
        writer.edit_task(job, 0, {"indices": "NDVX", "max_clouds": "101"})
    assert str(caught.value).startswith(f"nothing written: the change would give {path} 2 problems")
    assert [(p.line, p.column) for p in caught.value.problems] == [
        (7, "max_clouds"),
        (7, "indices"),
    ]
    with pytest.raises(JobFileError, match=r"no task 2; valid task ids: 0\.\.1"):
        writer.edit_task(job, 2, {"max_clouds": "5"})
    with pytest.raises(JobFileError, match="no task -1"):
        writer.remove_task(job, -1)
    with pytest.raises(JobFileError, match="unknown column 'clouds'; valid: tile, date_min"):
        writer.edit_task(job, 0, {"clouds": "5"})
    with pytest.raises(JobFileError, match="column 'comments' value 'a;b' holds ';'"):
        writer.edit_task(job, 0, {"comments": "a;b"})
    with pytest.raises(JobFileError, match="holds ';', '#' or a line break"):
        writer.add_task(job, {"tile": "40KCB", "comments": "see #3"})
    with pytest.raises(JobFileError, match="needs a tile"):
        writer.add_task(job, {"indices": "NDVI"})
    assert path.read_text(encoding="utf-8") == HAND_WRITTEN
    assert [p.name for p in tmp_path.iterdir()] == ["job_demo.cfg"]


def test_a_file_changed_since_loading_is_not_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    job = load_job(path)
    changed = HAND_WRITTEN.replace("logs = True", "logs = False")
    path.write_text(changed, encoding="utf-8")
    with pytest.raises(JobFileError, match="changed on disk since it was loaded"):
        writer.remove_task(job, 0)
    assert path.read_text(encoding="utf-8") == changed


def test_writes_keep_the_file_mode(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    os.chmod(path, 0o640)
    writer.edit_task(load_job(path), 0, {"comments": "Run"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert load_job(path).tasks[0].comments == "Run"


def test_edited_jobs_compare_as_new_values(tmp_path: Path) -> None:
    path = write(tmp_path, HAND_WRITTEN)
    before = load_job(path)
    after = writer.edit_task(before, 1, {"date_max": "2021-12-31"})
    assert after.tasks[0] == before.tasks[0]
    assert after.tasks[1] == replace(
        before.tasks[1], date_max=DateSpec(open_as=date(9999, 12, 31), fixed=date(2021, 12, 31))
    )
