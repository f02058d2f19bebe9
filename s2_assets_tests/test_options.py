"""Which task governs a (tile, date): job tag, windows, unlisted tiles, and what it asks for."""

from datetime import date
from pathlib import Path

from s2_assets.jobs.jobfile import parse_job_text
from s2_assets.jobs.options import DEFAULT_OPTIONS, options_for

HEAD = """logs = False
timing = 0 0 * * *
provider = archive

tile;date_min;date_max;max_clouds;provider;filter_max_pb;download;compute_l2a;cloudmasks;indices;remove;comments
"""
TODAY = date(2022, 3, 1)


def job(jid: str, rows: str):
    return parse_job_text(HEAD + rows, Path(f"job_{jid}.cfg"))


A = job(
    "a",
    "40KCB;2022-01-01;2022-01-31;40;archive;False;l1c;True;CM001;NDVI/EVI;l1c-new-cc80;\n"
    "40KCB;2022-02-01;today;70;archive;True;l2a;False;;;;\n",
)
B = job("b", "40KCB;2021-01-01;2021-12-31;10;archive;True;l1c;False;;;;\n")


def test_a_manual_run_of_a_listed_tile_takes_the_task_whose_window_holds_the_day() -> None:
    january = options_for([A, B], "40KCB", date(2022, 1, 15), today=TODAY)
    assert (january.job, january.task, january.max_cloud) == ("a", 0, 40.0)
    assert january.filter_max_pb is False and january.compute_l2a
    assert january.cloudmasks == ("CM001",) and january.indices == ("NDVI", "EVI")
    assert january.asset_names == ("l1c", "l2a", "cloudmask", "ndvi", "evi", "housekeeping")
    february = options_for([A, B], "40KCB", date(2022, 2, 20), today=TODAY)
    assert (february.task, february.download, february.levels) == (1, "l2a", ("L2A",))
    older = options_for([A, B], "40KCB", date(2021, 6, 1), today=TODAY)
    assert (older.job, older.max_cloud) == ("b", 10.0)


def test_the_job_tag_restricts_to_that_job_and_falls_back_to_its_first_task() -> None:
    tagged = options_for([A, B], "40KCB", date(2021, 6, 1), today=TODAY, job="a")
    assert (tagged.job, tagged.task) == ("a", 0)


def test_an_unlisted_tile_gets_the_documented_defaults() -> None:
    options = options_for([A, B], "31UFS", date(2022, 1, 15), today=TODAY)
    assert options == DEFAULT_OPTIONS
    assert options.max_cloud == 100.0 and options.filter_max_pb and options.provider is None
    assert options.asset_names == ("l1c",)
