"""Extraction job files: parsing (every column, file:line errors), the tiles their polygons
touch, and a schedule tick that registers the tiles and whose runs write the CSVs."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.definitions import build_definitions
from s2_assets.jobs.cells import DateSpec
from s2_assets.jobs.extraction_file import (
    extraction_jobs_dir,
    load_extraction_job,
    parse_extraction_text,
)
from s2_assets.jobs.extraction_plan import plan, tiles_touching
from s2_assets.jobs.model import JobFileProblems
from s2_assets.library.tree import Library
from s2_assets.outputs.polygons import read_polygons
from s2_assets.settings import Settings
from s2_assets.specs import INDEX_NAMES
from s2_assets_tests.test_timeseries import DAY, NAMES, SHAPES, X0, add_product, box, write_geojson

HEADER = (
    "shapefile;date_min;date_max;max_clouds;cloudmasks;indices;force_extraction;"
    "compiled_data;smooth_data;copy_server"
)


def job_text(*rows: str, header: str = HEADER, settings: str = "") -> str:
    return "logs = False\ntiming = 0 3 * * *\n" + settings + header + "\n" + "\n".join(rows) + "\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    library = tmp_path / "library"
    (library / "vectors").mkdir(parents=True)
    write_geojson(library / "vectors" / "fields.geojson", SHAPES[:2], NAMES[:2])
    return library


def parse(text: str, root: Path, name: str = "job_fields.cfg"):
    return parse_extraction_text(text, extraction_jobs_dir(root) / name, root=root)


def problems(text: str, root: Path) -> list[str]:
    with pytest.raises(JobFileProblems) as caught:
        parse(text, root)
    return [str(p) for p in caught.value.problems]


def test_every_column_is_read(root: Path) -> None:
    job = parse(
        job_text(
            "vectors/fields.geojson;2024-01-01;;50;CM001/CM004-CSH1-CMP1-CHP1-TCI1-ITER0;"
            "NDVI/ndwigao;True;yearly/monthly;yes;",
            "!vectors/fields.geojson;today-30;today;;;All;;;;False",
            settings="nb_proc = 2\nprocess_by_line = 1\n",
        ),
        root,
    )
    assert job.jid == "fields" and job.settings.timing == "0 3 * * *"
    assert (job.settings.nb_proc, job.settings.process_by_line) == (2, 1)
    first, second = job.tasks
    assert first.vector == root / "vectors" / "fields.geojson" and first.enabled
    assert first.date_min.fixed == date(2024, 1, 1) and first.date_max.is_open
    assert first.max_clouds == 50 and first.indices == ("NDVI", "NDWIGAO")
    assert first.masks == ("CM001", "CM004-CSH1-CMP1-CHP1-TCI1-ITER0")
    assert first.force_extraction and first.smooth_data
    assert first.compiled_data == ("yearly", "monthly")
    assert not second.enabled and second.line == 7
    assert second.date_min == DateSpec(open_as=date(2015, 1, 1), days_ago=30)
    assert second.indices == INDEX_NAMES and second.masks == (None,)  # raw index
    assert not second.force_extraction and second.compiled_data == () and not second.smooth_data
    assert job.enabled_tasks == (first,)


def test_errors_name_file_line_column_and_what_is_valid(root: Path) -> None:
    found = problems(
        job_text(
            "vectors/nowhere.gpkg;2024-01-01;;50;CM009;NDVI;;;;",
            "vectors/fields.geojson;2024-02-01;2024-01-01;101;;;maybe;hourly;;user@host:/data",
            settings="nb_proc = many\nverbose = yes\n",
        ),
        root,
    )
    path = extraction_jobs_dir(root) / "job_fields.cfg"
    text = "\n".join(found)
    assert f"{path}:3: setting 'nb_proc' value 'many': not a whole number" in text
    assert f"{path}:4: not a known setting" in text and "valid settings: logs, timing" in text
    assert (
        f"{path}:6: column 'shapefile' (field 1) value 'vectors/nowhere.gpkg': no such file" in text
    )
    assert "column 'cloudmasks' (field 5) value 'CM009'" in text
    assert f"{path}:7: column 'max_clouds' (field 4) value '101'" in text
    assert "column 'force_extraction' (field 7) value 'maybe': not a boolean" in text
    assert (
        "column 'compiled_data' (field 8) value 'hourly': unknown period 'hourly'; valid: yearly"
        in text
    )
    assert (
        "column 'copy_server' (field 10) value 'user@host:/data': copying to a server is not"
        in text
    )
    assert "column 'indices' (field 6) value '': no index to extract" in text
    assert "column 'date_max' (field 3) value '2024-01-01': date_max is before date_min" in text
    assert len(found) == 10


def test_header_and_settings_problems(root: Path) -> None:
    found = problems("timing = 61 * * * *\nshapefile;date_min;cloud\n", root)
    text = "\n".join(found)
    assert "required setting 'logs' is missing" in text
    assert ":1: setting 'timing' value '61 * * * *'" in text
    assert "column 'cloud' (field 3): unknown column; valid: shapefile" in text
    assert "lacks required column(s) date_max, max_clouds, cloudmasks, indices" in text


def test_a_repeated_column_is_named_as_written(root: Path) -> None:
    found = problems("logs = False\ntiming = 0 3 * * *\nshapefile;SHAPEFILE;date_min\n", root)
    assert any("column 'SHAPEFILE' (field 2): column appears twice" in f for f in found)


def test_polygons_find_the_tiles_they_touch(library: Library, tmp_path: Path) -> None:
    add_product(library, "40KCB")
    add_product(library, "40KDB", x0=X0 + 1000)  # 1 km east: only the wide polygon reaches it
    near = write_geojson(tmp_path / "near.geojson", [box(2, 2, 6, 6)], ["a"])
    wide = write_geojson(
        tmp_path / "wide.geojson", [box(2, 2, 6, 6), box(100, 0, 104, 2)], ["a", "e"]
    )
    assert tiles_touching(library, read_polygons(near), ("NDVI",)) == ["40KCB"]
    assert tiles_touching(library, read_polygons(wide), ("NDVI",)) == ["40KCB", "40KDB"]
    assert tiles_touching(library, read_polygons(wide), ("EVI",)) == []  # no EVI files


def write_job(library: Library, text: str, name: str = "job_fields.cfg") -> Path:
    path = extraction_jobs_dir(library.root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_plan_is_one_run_per_row_mask_and_tile(library: Library) -> None:
    add_product(library, "40KCB")
    write_geojson(library.root / "fields.geojson", SHAPES[:2], NAMES[:2])
    job = load_extraction_job(
        write_job(
            library,
            job_text(
                "fields.geojson;2024-01-01;;80;CM001/;NDVI;;;;".replace("/;", ";"),
                "fields.geojson;today-10;today;80;;NDVI;;all;yes;",
            ),
        )
    )
    runs = plan(job, library, date(2024, 3, 10))
    assert [(r.task.line, r.mask, r.tile) for r in runs] == [
        (4, "CM001", "40KCB"),
        (5, None, "40KCB"),
    ]
    assert runs[0].config == {
        "vector": "fields.geojson", "indices": ["NDVI"], "date_min": "2024-01-01",
        "date_max": "9999-12-31", "max_cloud": 80.0, "mask": "CM001", "plots": False,
        "smooth": False, "compiled": [], "force": False,
    }  # fmt: skip
    assert runs[1].config["date_min"] == "2024-02-29" and runs[1].config["date_max"] == "2024-03-10"
    assert runs[1].config["smooth"] and runs[1].config["compiled"] == ["all"]


def test_schedule_tick_registers_tiles_and_its_runs_write_the_csvs(
    library: Library, tmp_path: Path
) -> None:
    add_product(library, "40KCB")
    write_geojson(library.root / "fields.geojson", SHAPES[:2], NAMES[:2])
    write_job(library, job_text("fields.geojson;2024-01-01;;80;CM001;NDVI;;monthly;yes;"))
    write_job(library, "logs = maybe\n", name="job_broken.cfg")
    (tmp_path / "archive").mkdir()
    settings = Settings(data_home=library.root, archive_root=str(tmp_path / "archive"))
    defs = build_definitions(settings)
    schedule = defs.get_schedule_def("fields_extraction_schedule")
    assert schedule.cron_schedule == "0 3 * * *"
    repository = defs.get_repository_def()
    # The schedule context is closed (with): it opens its own instance from the ref, and an
    # unclosed one leaves Dagster's defs-state storage pointing at it for later tests.
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2024, 3, 10, 3, 0, tzinfo=UTC),
            repository_def=repository,
        ) as context,
    ):
        [request] = list(schedule.evaluate_tick(context).run_requests or [])
        assert instance.get_dynamic_partitions("tiles") == ["40KCB"]
        assert request.partition_key == "40KCB"
        assert request.tags["s2/extraction"] == "fields"
        job = defs.resolve_job_def("fields_extraction_job")
        result = job.execute_in_process(
            instance=instance, partition_key="40KCB", run_config=request.run_config
        )
        assert result.success
        broken = defs.get_schedule_def("broken_extraction_schedule")
        skip = broken.evaluate_tick(context)
        assert "broken" in (skip.skip_message or "") and "logs" in (skip.skip_message or "")
    name = "fields-geojson_NDVI_CM001_2024-01-01_9999-12-31"
    folder = library.root / "data" / "EXTRACTION" / "fields-geojson"
    with open(folder / f"{name}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["fid"], r["date"]) for r in rows] == [
        ("0", "2024-03-05 06:35:11"),
        ("1", "2024-03-05 06:35:11"),
    ]
    assert "smoothed" in rows[0]
    assert (folder / f"{name}.nc").is_file()
    assert (folder / "compiled" / "monthly" / f"{name}_2024-03.csv").is_file()
    assert DAY.date() == date(2024, 3, 5)


def test_a_tick_without_touched_tiles_skips_saying_why(library: Library, tmp_path: Path) -> None:
    library.root.mkdir(parents=True, exist_ok=True)
    write_geojson(library.root / "fields.geojson", SHAPES[:2], NAMES[:2])
    write_job(library, job_text("fields.geojson;2024-01-01;;80;CM001;NDVI;;;;"))
    (tmp_path / "archive").mkdir()
    defs = build_definitions(
        Settings(data_home=library.root, archive_root=str(tmp_path / "archive"))
    )
    repository = defs.get_repository_def()
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2024, 3, 10, 3, 0, tzinfo=UTC),
            repository_def=repository,
        ) as context,
    ):
        result = defs.get_schedule_def("fields_extraction_schedule").evaluate_tick(context)
    assert not result.run_requests
    assert "no tile of the library" in (result.skip_message or "")
