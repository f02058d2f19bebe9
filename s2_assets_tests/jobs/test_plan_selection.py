"""The planner selects each row's catalogue products once per tile, not once per day: the
outputs it plans must be those :func:`s2_assets.jobs.wanted.day_outputs` gives day by day
(cloud limit, provider, highest baseline of each acquisition, two rows on one tile)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from s2_assets.jobs.jobfile import load_job
from s2_assets.jobs.options import TaskOptions
from s2_assets.jobs.planner import governed_days, plan_job
from s2_assets.jobs.tile_disk import TileDisk
from s2_assets.jobs.wanted import day_outputs
from s2_assets.library.tree import Library
from s2_assets.providers.base import ProductRecord
from s2_assets_tests.jobs.test_convergence import HEADER

TILE = "40KCB"
FIRST = date(2022, 1, 1)


def records() -> list[ProductRecord]:
    """Forty days: an acquisition every other day, both levels, a reprocessing (higher
    baseline) every sixth day, clouds from 0 to 95 %, another provider's L2A every tenth day."""
    found = []
    for n in range(0, 40, 2):
        sensing = datetime.combine(FIRST + timedelta(days=n), datetime.min.time(), UTC)
        sensing += timedelta(hours=6, minutes=35, seconds=11)
        stamp = sensing.strftime("%Y%m%dT%H%M%S")
        baselines = ["04.00", "05.09"] if n % 6 == 0 else ["05.09"]
        for level in ("L1C", "L2A"):
            for baseline in baselines:
                number = baseline.replace(".", "")
                product = f"S2A_MSI{level}_{stamp}_N{number}_R120_T{TILE}_{stamp[:9]}09{number}"
                provider = "cop_dataspace" if n % 10 == 0 and level == "L2A" else "archive"
                found.append(
                    ProductRecord(product, level, TILE, sensing, n * 2.5, baseline, provider, "x")
                )
    return found


def test_selecting_once_per_tile_plans_what_selecting_per_day_does(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    lib.jobs_dir.mkdir(parents=True)
    (lib.jobs_dir / "job_s.cfg").write_text(
        HEADER
        + f"{TILE};2022-01-01;2022-01-20;30;archive;True;l2a;False;CM001;NDVI;;first\n"
        + f"{TILE};2022-01-01;2022-02-28;100;;False;l2a;True;;NDVI;;second\n"
    )
    job = load_job(lib.jobs_dir / "job_s.cfg")
    table = records()
    now = datetime(2022, 3, 1, tzinfo=UTC)
    plan = plan_job(job, lib, today=now.date(), now=now, read_table=lambda tile: list(table))

    disk = TileDisk(lib, TILE)
    expected = []
    governed = governed_days(job, {TILE: table}, now.date())
    tasks = {task.index: task for task in job.enabled_tasks}
    for key in sorted(governed):
        options = TaskOptions.from_task(job, tasks[governed[key]])
        day = [r for r in table if r.date == key.date]
        expected += [(key, out) for out, present in day_outputs(options, day, disk) if not present]
    assert plan.missing == expected
    # The filters did bite: the first row (to 01-20) keeps the highest baseline only, 30 %
    # clouds at most and its provider; the second keeps every baseline.
    by_id = {r.product_id: r for r in table}
    first = [by_id[o.product] for k, o in plan.missing if k.date <= date(2022, 1, 20)]
    later = [by_id[o.product] for k, o in plan.missing if k.date > date(2022, 1, 20)]
    assert first and all(r.baseline == "05.09" and r.provider == "archive" for r in first)
    window = [r for r in table if r.date <= date(2022, 1, 20)]
    assert max(r.cloud_cover or 0 for r in first) <= 30 < max(r.cloud_cover or 0 for r in window)
    assert any(r.provider != "archive" for r in window)
    assert {r.baseline for r in later} == {"04.00", "05.09"}
    assert plan.wanted == len(expected)
