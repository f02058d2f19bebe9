"""The demo behind the README's first command: a small archive, two tiles, real runs.

Builds a demo archive of product zips, points the library and a SQLite ``DAGSTER_HOME`` into
``demo_data/``, registers the tiles, and materializes ``acquisitions``, then ``l1c``,
``l2a``, ``cloudmask`` and three indices as one ranged run per tile, as a backfill would.
Its settings go to ``demo_data/.env``, which ``s2-assets`` (and ``dagster dev`` started in
that folder) reads, so later commands need no exports. Its ``date`` partitions cover only
the days around its products (2022-01-15 to 2022-02-10), so the partition grid is readable.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from s2_assets.definitions import build_definitions
from s2_assets.demo.products import DEMO_PRODUCTS, DEMO_TILES, build_archive
from s2_assets.jobs.jobfile import COLUMNS
from s2_assets.jobs.model import JobSettings
from s2_assets.jobs.options import JOB_TAG
from s2_assets.jobs.run_now import run_ranges
from s2_assets.jobs.writer import job_text
from s2_assets.partitions import TileDate
from s2_assets.settings import Settings

# The demo's job settings and table columns (sen2chain's, without the optional pb_min and
# pb_max); the tests write their job files in the same shape.
DEMO_SETTINGS = JobSettings(
    timing="0 3 * * 1", provider="archive", nb_proc=2, clean_before=False, clean_after=False
)
DEMO_COLUMNS = tuple(c for c in COLUMNS if c not in ("pb_min", "pb_max"))
DEMO_JOB = """# Demo job: what a sen2chain job file looks like. Its schedule (demo_schedule) is stopped;
# start it in the UI (Automation) to refresh the catalogue weekly.
""" + job_text(
    DEMO_SETTINGS,
    DEMO_COLUMNS,
    [
        "40KCB;2022-01-15;2022-02-10;80;archive;True;l1c;False;CM004-CSH1-CMP1-CHP1-TCI1-ITER0;"
        "NDVI/NDWIGAO/EVI;;Reunion",
        "31UFS;2022-01-15;2022-02-10;80;archive;True;l1c;False;CM004-CSH1-CMP1-CHP1-TCI1-ITER0;"
        "NDVI/NDWIGAO/EVI;;Paris",
    ],
)
DEMO_ASSETS = ("l1c", "l2a", "cloudmask", "ndvi", "ndwigao", "evi")
DEMO_DATE_START, DEMO_DATE_END = "2022-01-15", "2022-02-10"
# The runs' events are recorded in the instance all the same; the console shows INFO and up
# (Dagster's default, DEBUG, prints every event of every step).
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class DemoPaths:
    """Everything the demo writes, below one folder."""

    base: Path

    @property
    def archive(self) -> Path:
        return self.base / "archive"

    @property
    def library(self) -> Path:
        return self.base / "library"

    @property
    def dagster_home(self) -> Path:
        return self.base / "dagster_home"

    @property
    def env_file(self) -> Path:
        return self.base / ".env"

    def environment(self) -> dict[str, str]:
        return {
            "DAGSTER_HOME": str(self.dagster_home),
            "S2_DATA_HOME": str(self.library),
            "S2_ARCHIVE_ROOT": str(self.archive),
            "S2_DATE_START": DEMO_DATE_START,
            "S2_DATE_END": DEMO_DATE_END,
        }


def _env_text(values: dict[str, str]) -> str:
    lines = [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    return "# Written by `s2-assets demo`: the demo's settings.\n" + "\n".join(lines) + "\n"


def prepare(paths: DemoPaths, instance_config: Path) -> None:
    """Create the demo folders and the instance's dagster.yaml; set the environment."""
    paths.dagster_home.mkdir(parents=True, exist_ok=True)
    jobs = paths.library / "config" / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    (jobs / "job_demo.cfg").write_text(DEMO_JOB, encoding="utf-8")
    shutil.copyfile(instance_config, paths.dagster_home / "dagster.yaml")
    environment = paths.environment()
    scratch = paths.env_file.with_name(".env.part")
    scratch.write_text(_env_text(environment), encoding="utf-8")
    scratch.replace(paths.env_file)
    os.environ.update(environment)


def run_demo(paths: DemoPaths, instance_config: Path, *, size: int = 120) -> dict[str, int]:
    """Build the archive and materialize the pipeline; returns products per level."""
    prepare(paths, instance_config)
    build_archive(paths.archive, DEMO_PRODUCTS, size=size)
    defs = build_definitions(Settings.from_env())
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("tiles", list(DEMO_TILES))
        for tile in DEMO_TILES:
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey("acquisitions")],
                partition_key=tile,
                tags={JOB_TAG: "demo"},
                run_config={
                    "ops": {"acquisitions": {"config": {"start": DEMO_DATE_START}}},
                    **QUIET,
                },
            )
            if not result.success:
                raise RuntimeError(f"acquisitions failed for {tile}")
        run_ranges(
            job,
            instance,
            DEMO_ASSETS,
            [TileDate(p.tile, p.sensing.date()) for p in DEMO_PRODUCTS],
            # Started by hand, not by the job: each selected asset fetches its own level (the
            # demo job itself asks for L1C only, as a sen2chain task asks for one level).
            {},
            {"ops": {op: {"config": {"max_cloud": 80.0}} for op in ("l1c", "l2a")}, **QUIET},
        )
    library = paths.library / "data"
    return {level: sum(1 for _ in (library / level).glob("*/*.SAFE")) for level in ("L1C", "L2A")}
