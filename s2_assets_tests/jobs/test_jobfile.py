"""Job file parsing: every form and default, every error with its line, loading many files."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from s2_assets.errors import JobFileError
from s2_assets.jobs.cells import DateSpec, RemoveRule
from s2_assets.jobs.jobfile import load_job, load_jobs, parse_job_text
from s2_assets.jobs.model import JobFileProblems, JobProblem, JobSettings, task_chunks
from s2_assets.specs import INDEX_NAMES, MaskSpec

HEADER_141 = (
    "tile;date_min;date_max;max_clouds;provider;filter_max_pb;download;compute_l2a;"
    "cloudmasks;indices;remove;comments"
)
EXAMPLE_ROW = (
    "40KCB;;today;80;cop_dataspace;True;l2a;True;CM004-CSH1-CMP1-CHP1-TCI1-ITER1;"
    "NDVI/NDWIGAO/MNDWI/NDRE/IRECI/BIGR/BIRNIR/BIBG/EVI/NBR;l2a;Reunion"
)
FULL_HEADER = (
    "tile;date_min;date_max;max_clouds;provider;filter_max_pb;pb_min;pb_max;download;"
    "compute_l2a;cloudmasks;indices;remove;comments"
)
PATH = Path("config/jobs/job_reunion.cfg")


def parse(text: str, path: Path = PATH) -> tuple:
    job = parse_job_text(text, path)
    return job.settings, job.tasks


def problems(text: str, path: Path = PATH) -> tuple[JobProblem, ...]:
    with pytest.raises(JobFileProblems) as caught:
        parse_job_text(text, path)
    assert isinstance(caught.value, JobFileError)
    return caught.value.problems


def job_text(*rows: str, header: str = HEADER_141, settings: str = "") -> str:
    return "logs = False\ntiming = 0 0 * * *\n" + settings + header + "\n" + "\n".join(rows)


def test_the_issue_example_line() -> None:
    _, tasks = parse(job_text(EXAMPLE_ROW))
    (task,) = tasks
    assert task.index == 0 and task.line == 4 and task.enabled
    assert task.tile == "40KCB"
    assert task.date_min == DateSpec(open_as=date(2015, 1, 1))
    assert task.date_max == DateSpec(open_as=date(9999, 12, 31), days_ago=0)
    assert task.window(date(2024, 5, 1)) == (date(2015, 1, 1), date(2024, 5, 1))
    assert task.max_clouds == 80
    assert task.provider == "cop_dataspace"
    assert task.filter_max_pb is True
    assert task.pb_min is None and task.pb_max is None
    assert task.download == "l2a"
    assert task.compute_l2a is True
    assert task.cloudmasks == (MaskSpec("CM004", iterations=1),)
    assert task.indices == (
        "NDVI", "NDWIGAO", "MNDWI", "NDRE", "IRECI", "BIGR", "BIRNIR", "BIBG", "EVI", "NBR",
    )  # fmt: skip
    assert task.remove == (RemoveRule("l2a", "new", 0),)
    assert task.comments == "Reunion"


def test_settings_defaults_and_required_keys_only() -> None:
    settings, tasks = parse(job_text())
    assert settings == JobSettings(
        logs=False,
        timing="0 0 * * *",
        provider="cop_dataspace",
        tries=1,
        sleep=0,
        nb_proc=8,
        copy_l2a_sideproducts=False,
        clean_before=True,
        clean_after=True,
        process_by_line=0,
    )
    assert tasks == ()


def test_every_setting_read_case_insensitive_with_comments() -> None:
    text = (
        "\ufeff# documentation line\n"
        "LOGS = yes   # inline comment\n"
        "timing:   30  2 * * 1-5\n"
        "provider = peps\n"
        "Tries = 3\n"
        "sleep=10\n"
        "nb_proc = 2\n"
        "copy_L2A_sideproducts = True\n"
        "clean_before = off\n"
        "clean_after = 0\n"
        "process_by_line = 4\n"
        "\n"
        "# the table\n" + HEADER_141 + "\n"
    )
    settings, _ = parse(text)
    assert settings == JobSettings(
        logs=True,
        timing="30 2 * * 1-5",
        provider="peps",
        tries=3,
        sleep=10,
        nb_proc=2,
        copy_l2a_sideproducts=True,
        clean_before=False,
        clean_after=False,
        process_by_line=4,
    )


def test_empty_values_take_defaults_and_empty_timing_is_daily() -> None:
    text = job_text(settings="tries =\nnb_proc\nclean_after = \n").replace(
        "timing = 0 0 * * *", "timing ="
    )
    settings, _ = parse(text)
    assert settings.timing == "0 0 * * *"
    assert (settings.tries, settings.nb_proc, settings.clean_after) == (1, 8, True)


def test_cell_defaults_when_cells_are_empty() -> None:
    _, (task,) = parse(job_text("40KCB;;;;;;;;;;;", header=HEADER_141))
    assert task.window(date(2024, 1, 1)) == (date(2015, 1, 1), date(9999, 12, 31))
    assert task.max_clouds == 100
    assert task.provider == "cop_dataspace"
    assert task.filter_max_pb is False  # an empty cell switches the filter off
    assert task.download is None and task.compute_l2a is False
    assert task.cloudmasks == () and task.indices == () and task.remove == ()
    assert task.comments == ""


def test_defaults_of_missing_optional_columns() -> None:
    header = "tile;date_min;date_max;max_clouds;download;compute_l2a;cloudmasks;indices;remove"
    settings = "provider = peps\n"
    _, (task,) = parse(job_text("40KCB;;;;;;;;", header=header, settings=settings))
    assert task.provider == "peps"  # no provider column: the job's provider
    assert task.filter_max_pb is True  # no filter_max_pb column: on, as sen2chain
    assert task.pb_min is None and task.pb_max is None
    assert task.comments == ""


def test_empty_or_false_provider_cell_takes_the_job_provider() -> None:
    rows = (
        "40KCB;;;;;;;;;;;",
        "40KCB;;;;False;;;;;;;",
        "40KCB;;;;None;;;;;;;",
        "40KCB;;;;peps;;;;;;;",
    )
    _, tasks = parse(job_text(*rows, settings="provider = cop_dataspace\n"))
    assert [t.provider for t in tasks] == [
        "cop_dataspace",
        "cop_dataspace",
        "cop_dataspace",
        "peps",
    ]


def test_full_header_with_baselines_and_all_forms() -> None:
    row = (
        "!40KCB;2020-01-01;today-3;0;peps;False;04.00;05.10;True;no;CM001/CM002-B11;All;"
        "l1c-all-cc90;x"
    )
    _, (task,) = parse(job_text(row, header=FULL_HEADER))
    assert not task.enabled and task.tile == "40KCB"
    assert task.window(date(2024, 1, 10)) == (date(2020, 1, 1), date(2024, 1, 7))
    assert task.max_clouds == 0
    assert task.filter_max_pb is False  # DESIGN D2
    assert (task.pb_min, task.pb_max) == (4.0, 5.1)  # DESIGN D3
    assert task.accepts_baseline("04.00") and task.accepts_baseline("05.10")
    assert not task.accepts_baseline("03.01") and not task.accepts_baseline("05.11")
    assert task.download == "l1c"
    assert task.compute_l2a is False
    assert task.cloudmasks == (MaskSpec("CM001"), MaskSpec("CM002"))
    assert task.indices == INDEX_NAMES
    assert task.remove == (RemoveRule("l1c", "all", 90),)


def test_legacy_headers_and_case_and_spacing() -> None:
    header = "Tile ; date_min;date_max;max_clouds;l1c;L2A;cloudmask;indices;remove"
    _, (task,) = parse(
        job_text(" 40KCB ; today ;  ; 50 ; l1c ; True ; CM001 ; NDVI ; ", header=header)
    )
    assert task.tile == "40KCB"
    assert task.download == "l1c" and task.compute_l2a is True
    assert task.cloudmasks == (MaskSpec("CM001"),) and task.indices == ("NDVI",)
    assert task.date_min.days_ago == 0  # 'today' as date_min is accepted (D11)


def test_bang_anywhere_disables_and_ids_count_disabled_rows() -> None:
    rows = (
        "40KCB;;;;;;;;;;;",
        "40K!CC;;;;;;;;;;;",
        "# a comment row",
        "",
        "40KCD;;;;;;;;;;; # tail",
    )
    text = job_text(*rows)
    job = parse_job_text(text, PATH)
    assert [(t.index, t.line, t.tile, t.enabled) for t in job.tasks] == [
        (0, 4, "40KCB", True),
        (1, 5, "40KCC", False),
        (2, 8, "40KCD", True),
    ]
    assert [t.index for t in job.enabled_tasks] == [0, 2]
    assert job.tiles == ("40KCB", "40KCD")
    assert job.header_line == 3


def test_a_short_row_is_a_cell_count_error() -> None:
    # 11 of 12 cells: the cell count, not a wrong value in a shifted column.
    shifted = "40KCB;2020-01-01;today;archive;True;l1c;False;;;;Reunion"
    for row, count in (("40KCB;2020-01-01", 2), (shifted, 11)):
        (found,) = problems(job_text(row))
        assert found.line == 4 and found.column is None
        assert found.message.startswith(f"row has {count} cells but the header has 12 (tile;")
        assert "give every column a cell, empty ones included" in found.message


def test_empty_cells_read_as_empty() -> None:
    _, (task,) = parse(job_text("40KCB;2020-01-01;;;;;;;;;;"))
    assert task.date_min.fixed == date(2020, 1, 1)
    assert task.max_clouds == 100 and task.comments == ""


def test_setting_errors_are_all_reported_with_lines() -> None:
    text = (
        "logs = maybe\n"
        "tries = -1\n"
        "sleep = 1.5\n"
        "timing = 0 25 * * *\n"
        "clean_afer = True\n"
        "sleep = 2\n"
        "this is not a setting\n"
        "provider = peps dataspace\n" + HEADER_141 + "\n"
    )
    found = {(p.line, p.column): p for p in problems(text)}
    assert set(found) == {
        (1, "logs"),
        (2, "tries"),
        (3, "sleep"),
        (4, "timing"),
        (5, None),
        (6, None),
        (7, None),
        (8, "provider"),
    }
    assert "valid: true/false" in found[1, "logs"].message
    assert found[1, "logs"].value == "maybe"
    assert "0 or more" in found[2, "tries"].message
    assert "hour 25 is outside 0-23" in found[4, "timing"].message
    assert "minute hour day-of-month month day-of-week" in found[4, "timing"].message
    assert "unknown setting 'clean_afer'; valid: logs, timing" in found[5, None].message
    assert "repeats line 3" in found[6, None].message
    assert "not a 'key = value' setting" in found[7, None].message
    assert str(found[1, "logs"]).startswith(f"{PATH}:1: setting 'logs' value 'maybe': ")


def test_missing_required_settings() -> None:
    found = problems(HEADER_141 + "\n")
    assert [(p.line, p.message[:26]) for p in found] == [
        (None, "required setting 'logs' is"),
        (None, "required setting 'timing' "),
    ]


def test_header_errors() -> None:
    header = "tile;date_min;date_max;max_clouds;download;l1c;cloudmasks;indices;extra"
    found = problems(job_text("40KCB;;;;;;;;", header=header))
    assert [(p.line, p.column, p.position) for p in found] == [
        (3, "l1c", 6),
        (3, "extra", 9),
        (3, None, None),
    ]
    assert "column appears twice" in found[0].message
    assert "unknown column; valid: tile, date_min" in found[1].message
    assert "(legacy: l1c, l2a, cloudmask)" in found[1].message
    assert "lacks required column(s) compute_l2a, remove" in found[2].message


def test_no_table_at_all() -> None:
    (found,) = problems("logs = True\ntiming = @daily\n")
    assert found.line is None and "no task table" in found.message


def test_every_cell_error_is_reported_with_line_field_and_value() -> None:
    rows = (
        "40KCX;tomorrow;2020-13-01;120;peps dataspace;perhaps;04.00;N0510;l3a;si;OCM;NDVX;"
        "l1c-some;ok",
        "40KCB;2021-01-01;2020-01-01;;;;06.00;05.00;;;;;;",
        "40KCB;;;;;;;;;;;;;;extra",
    )
    found = problems(job_text(*rows, header=FULL_HEADER))
    located = [(p.line, p.column, p.position, p.value) for p in found]
    assert located == [
        (4, "tile", 1, "40KCX"),
        (4, "date_min", 2, "tomorrow"),
        (4, "date_max", 3, "2020-13-01"),
        (4, "max_clouds", 4, "120"),
        (4, "provider", 5, "peps dataspace"),
        (4, "filter_max_pb", 6, "perhaps"),
        (4, "pb_max", 8, "N0510"),
        (4, "download", 9, "l3a"),
        (4, "compute_l2a", 10, "si"),
        (4, "cloudmasks", 11, "OCM"),
        (4, "indices", 12, "NDVX"),
        (4, "remove", 13, "l1c-some"),
        (5, "date_max", 3, "2020-01-01"),
        (5, "pb_max", 8, "5.0"),
        (6, None, None, None),
    ]
    messages = {p.column: p.message for p in found if p.line == 4}
    assert "row letter must be one of" in messages["tile"]
    assert "'!' in the cell disables the row" in messages["tile"]
    assert "today, or today-N" in messages["date_min"]
    assert "valid: CM001" not in messages["cloudmasks"]  # the forms come from specs.py
    assert "CM002-B11, CM003-PRB<p>-ITER<n>" in messages["cloudmasks"]
    assert "valid: NDVI, NDWIMCF, NDWIGAO" in messages["indices"]
    assert "l1c-new, l1c-all, l2a-new, l2a-all" in messages["remove"]
    assert "date_max is before date_min 2021-01-01" in found[12].message
    assert "pb_max is below pb_min 6.0" in found[13].message
    assert "row has 15 cells but the header has 14" in found[14].message
    text = str(found[0])
    assert text.startswith(f"{PATH}:4: column 'tile' (field 1) value '40KCX': invalid tile id")


def test_disabled_rows_are_validated_too() -> None:
    (found,) = problems(job_text("!40KCB;;;nope;;;;;;;;"))
    assert (found.line, found.column) == (4, "max_clouds")


def test_known_providers_are_enforced_when_given() -> None:
    text = job_text("40KCB;;;;peps;;;;;;;", "40KCB;;;;archive;;;;;;;", settings="provider = cdse\n")
    with pytest.raises(JobFileProblems) as caught:
        parse_job_text(text, PATH, providers={"archive", "cop_dataspace"})
    found = caught.value.problems
    assert [(p.line, p.column) for p in found] == [(3, "provider"), (5, "provider")]
    assert "valid: archive, cop_dataspace" in found[0].message
    job = parse_job_text(text.replace("cdse", "archive").replace("peps", "archive"), PATH,
                         providers={"archive"})  # fmt: skip
    assert {t.provider for t in job.tasks} == {"archive"}


def test_jid_must_make_dagster_names() -> None:
    (found,) = problems(job_text(), Path("job_la-reunion.cfg"))
    assert "letters, digits and '_' only" in found.message


def test_exception_message_lists_every_problem() -> None:
    with pytest.raises(JobFileProblems) as caught:
        parse_job_text(job_text("40KCB;x;y;;;;;;;;;"), PATH)
    message = str(caught.value)
    assert message.startswith(f"job file {PATH} has 2 problems:")
    assert f"{PATH}:4: column 'date_min'" in message and f"{PATH}:4: column 'date_max'" in message


def test_load_job_reads_the_file_and_reports_bad_encoding(tmp_path: Path) -> None:
    path = tmp_path / "job_demo.cfg"
    path.write_text(job_text(EXAMPLE_ROW), encoding="utf-8")
    assert load_job(path).jid == "demo"
    path.write_bytes(b"logs = True\ntiming = @daily\n# R\xe9union\n")
    with pytest.raises(JobFileProblems, match=r":3: not UTF-8 text \(byte 0xe9\)"):
        load_job(path)
    with pytest.raises(JobFileProblems, match="cannot read"):
        load_job(tmp_path / "job_missing.cfg")


def test_a_broken_file_never_stops_the_others(tmp_path: Path) -> None:
    (tmp_path / "job_b_good.cfg").write_text(job_text(EXAMPLE_ROW), encoding="utf-8")
    (tmp_path / "job_a_broken.cfg").write_text(
        job_text("40KCB;today+1;;;;;;;;;;"), encoding="utf-8"
    )
    (tmp_path / "job_c_good.cfg").write_text(job_text(), encoding="utf-8")
    (tmp_path / "notes.cfg").write_text("not a job", encoding="utf-8")
    (tmp_path / ".job_d.cfg.123.tmp").write_text("half written", encoding="utf-8")
    jobs, errors = load_jobs(tmp_path)
    assert [job.jid for job in jobs] == ["b_good", "c_good"]
    (error,) = errors
    assert isinstance(error, JobFileProblems)
    assert error.path == tmp_path / "job_a_broken.cfg"
    assert [(p.line, p.column) for p in error.problems] == [(4, "date_min")]
    assert load_jobs(tmp_path / "absent") == ([], [])


def test_task_chunks_follow_process_by_line() -> None:
    _, tasks = parse(job_text(*[f"40KCB;;;{n};;;;;;;;" for n in range(7)]))
    assert [len(chunk) for chunk in task_chunks(tasks, 3)] == [3, 2, 2]
    assert [len(chunk) for chunk in task_chunks(tasks, 0)] == [7]
    assert [len(chunk) for chunk in task_chunks(tasks, 10)] == [7]
    assert [chunk[0].max_clouds for chunk in task_chunks(tasks, 2)] == [0, 2, 4, 6]
    assert task_chunks((), 3) == []


def test_workers_caps_nb_proc_like_sen2chain() -> None:
    assert JobSettings(nb_proc=8).workers(cpus=4) == 3
    assert JobSettings(nb_proc=2).workers(cpus=16) == 2
    assert JobSettings(nb_proc=0).workers(cpus=1) == 1


def test_parsing_needs_neither_pandas_nor_dagster(tmp_path: Path) -> None:
    path = tmp_path / "job_x.cfg"
    path.write_text(job_text(EXAMPLE_ROW), encoding="utf-8")
    code = (
        "import sys; from pathlib import Path\n"
        "from s2_assets.jobs import commands, jobfile, writer\n"
        f"job = jobfile.load_job(Path({str(path)!r}))\n"
        "assert job.tasks[0].indices[0] == 'NDVI'\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'dagster'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
