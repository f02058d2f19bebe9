"""End to end on a real (temporary, SQLite) Dagster instance: register tiles, materialize
``acquisitions``, then ``l1c`` + ``l2a`` as ONE ranged run per tile, as a backfill would, and
again to see that nothing is fetched twice. Bad tiles and bad zips fail clearly."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from s2_assets.demo.products import DEMO_PRODUCTS, DEMO_TILES, product_name
from s2_assets.library import acquisitions as catalogue
from s2_assets.products import ProductName, baseline_number, read_metadata
from s2_assets_tests.conftest import DemoArchive, corrupt_member, rewrite_zip
from s2_assets_tests.pipeline import RANGE_END, RANGE_START, Pipeline

MAX_CLOUD = 80.0
LEVELS = ("L1C", "L2A")


def days_of(tile: str) -> list[date]:
    return sorted({p.sensing.date() for p in DEMO_PRODUCTS if p.tile == tile})


def expected_ids(level: str, tile: str, *, max_cloud: float = MAX_CLOUD) -> set[str]:
    """What the filters should keep: cloud <= max_cloud (asked cover; the generated cover
    differs by a pixel or two, never across 80) and the newest baseline per acquisition."""
    chosen = [
        p
        for p in DEMO_PRODUCTS
        if p.level == level and p.tile == tile and p.cloud_cover <= max_cloud
    ]
    newest: dict[Any, float] = {}
    for p in chosen:
        newest[p.sensing] = max(newest.get(p.sensing, 0.0), baseline_number(p.baseline))
    return {product_name(p).id for p in chosen if baseline_number(p.baseline) == newest[p.sensing]}


def partition_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, dict[str, Any]]:
    """Materialization metadata by partition key, as plain values."""
    return {
        str(event.partition): {key: value.value for key, value in event.metadata.items()}
        for event in result.asset_materializations_for_node(node)
    }


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Everything the failed steps of a run say: messages, causes and Failure metadata."""
    parts = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            data = event.step_failure_data
            if data.error is not None:
                parts.append(data.error.to_string())
            if data.user_failure_data is not None:
                parts.append(str(data.user_failure_data.description))
                parts.extend(str(v.value) for v in data.user_failure_data.metadata.values())
    return "\n".join(parts)


def pipeline_on(instance: dg.DagsterInstance, library: Path, archive: Path) -> Pipeline:
    """The pipeline with this module's cloud limit on the products."""
    return Pipeline(instance, library, archive, product_config={"max_cloud": MAX_CLOUD})


def good_and_bad(demo_archive: DemoArchive, archive: Path) -> tuple[Path, Path]:
    """Copy the 40KCB L1C zips of 2022-01-20 (good) and 2022-01-25 (to damage) to ``archive``."""
    good = demo_archive.zip_of(demo_archive.find(level="L1C", tile="40KCB", day="2022-01-20"))
    bad = demo_archive.zip_of(demo_archive.find(level="L1C", tile="40KCB", day="2022-01-25"))
    for source in (good, bad):
        target = archive / source.relative_to(demo_archive.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return good, bad


@dataclass
class DemoRun:
    """Everything the module's tests look at, from one pass and a repeat over the demo."""

    pipeline: Pipeline
    acquisitions: dict[str, dict[str, Any]]
    acquisitions_again: dict[str, dict[str, Any]]
    first: dict[str, dg.ExecuteInProcessResult]
    inodes: dict[str, int]
    second: dict[str, dg.ExecuteInProcessResult]


@pytest.fixture(scope="module")
def demo_run(
    demo_archive: DemoArchive, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoRun]:
    with dg.instance_for_test() as instance:
        pipeline = pipeline_on(
            instance, tmp_path_factory.mktemp("e2e") / "library", demo_archive.root
        )
        instance.add_dynamic_partitions("tiles", list(DEMO_TILES))
        acquisitions = {
            tile: partition_metadata(pipeline.acquisitions(tile), "acquisitions")[tile]
            for tile in DEMO_TILES
        }
        first = {
            tile: pipeline.products(tile, days_of(tile)[0], days_of(tile)[-1])
            for tile in DEMO_TILES
        }
        inodes = {
            str(path): path.stat().st_ino for path in pipeline.library.root.glob("data/L*/*/*.SAFE")
        }
        acquisitions_again = {
            tile: partition_metadata(pipeline.acquisitions(tile), "acquisitions")[tile]
            for tile in DEMO_TILES
        }
        second = {
            tile: pipeline.products(tile, days_of(tile)[0], days_of(tile)[-1])
            for tile in DEMO_TILES
        }
        yield DemoRun(pipeline, acquisitions, acquisitions_again, first, inodes, second)


def test_acquisitions_catalogue_every_product(demo_run: DemoRun) -> None:
    for tile in DEMO_TILES:
        ids = sorted(product_name(p).id for p in DEMO_PRODUCTS if p.tile == tile)
        meta = demo_run.acquisitions[tile]
        assert meta["products"] == len(ids)
        assert meta["new_products"] == len(ids)
        assert meta["new_product_ids"] == ids
        assert meta["new_partitions"] == [f"{d}|{tile}" for d in days_of(tile)]
        table = catalogue.read_table(demo_run.pipeline.library.acquisitions_path(tile))
        assert sorted(r.product_id for r in table) == ids
        assert all(r.cloud_cover is not None for r in table)
        assert meta["path"] == str(demo_run.pipeline.library.acquisitions_path(tile))


def test_library_holds_the_chosen_safes(demo_run: DemoRun) -> None:
    lib = demo_run.pipeline.library
    for tile in DEMO_TILES:
        for level in LEVELS:
            held = lib.products(level, tile)
            assert {p.id for p in held} == expected_ids(level, tile)
            assert len(held) == 3
            for product in held:
                assert product.path == lib.product_path(product.name)
                assert read_metadata(product.path).product_uri == product.id
    assert list(lib.temp_dir.iterdir()) == []


def test_one_ranged_run_per_tile_covers_every_day(demo_run: DemoRun) -> None:
    for tile in DEMO_TILES:
        result = demo_run.first[tile]
        assert result.success
        run = demo_run.pipeline.instance.get_run_by_id(result.run_id)
        assert run is not None
        first, last = days_of(tile)[0], days_of(tile)[-1]
        assert run.tags[RANGE_START] == f"{first}|{tile}"
        assert run.tags[RANGE_END] == f"{last}|{tile}"
        span = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        for node in ("l1c", "l2a"):
            assert sorted(partition_metadata(result, node)) == [f"{d}|{tile}" for d in span]
    # Per pass: one acquisitions run and one product run per tile, not one run per day.
    runs = demo_run.pipeline.instance.get_runs()
    assert len(runs) == 2 * 2 * len(DEMO_TILES)
    assert sum(RANGE_START in r.tags for r in runs) == 2 * len(DEMO_TILES)


def test_partition_metadata_of_the_first_run(demo_run: DemoRun) -> None:
    lib = demo_run.pipeline.library
    meta = partition_metadata(demo_run.first["40KCB"], "l1c")
    jan_20 = meta["2022-01-20|40KCB"]
    jan_20_id = "S2A_MSIL1C_20220120T063511_N0301_R120_T40KCB_20220120T083511"
    assert jan_20["products"] == 1
    assert jan_20["product_ids"] == [jan_20_id]
    assert jan_20["fetched_now"] == [jan_20_id]
    assert jan_20["offline"] == []
    assert jan_20["baselines"] == ["03.01"]
    path = lib.product_path(ProductName.parse(jan_20_id))
    assert jan_20["paths"] == [str(path)]
    assert jan_20["bytes"] == sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    # A day without an acquisition is recorded as checked and empty.
    assert meta["2022-01-21|40KCB"]["products"] == 0
    assert meta["2022-01-21|40KCB"]["fetched_now"] == []
    l2a = partition_metadata(demo_run.first["31UFS"], "l2a")
    assert l2a["2022-01-27|31UFS"]["product_ids"] == [
        "S2A_MSIL2A_20220127T104319_N0400_R008_T31UFS_20220127T124319"
    ]
    assert l2a["2022-01-27|31UFS"]["baselines"] == ["04.00"]


def test_cloud_filter_keeps_the_cloudy_day_out(demo_run: DemoRun) -> None:
    lib = demo_run.pipeline.library
    table = catalogue.read_table(lib.acquisitions_path("40KCB"))
    cloudy = [r for r in table if r.date == date(2022, 2, 4)]
    assert len(cloudy) == 2
    assert all(r.cloud_cover is not None and r.cloud_cover > MAX_CLOUD for r in cloudy)
    for node in ("l1c", "l2a"):
        meta = partition_metadata(demo_run.first["40KCB"], node)["2022-02-04|40KCB"]
        assert meta["products"] == 0
        assert meta["fetched_now"] == []
    assert lib.products("L1C", "40KCB", date(2022, 2, 4)) == []
    # 70 % is under the limit: kept.
    assert len(lib.products("L2A", "31UFS", date(2022, 1, 27))) == 1


def test_max_baseline_filter_keeps_the_newest_reprocessing(demo_run: DemoRun) -> None:
    for node, level in (("l1c", "L1C"), ("l2a", "L2A")):
        meta = partition_metadata(demo_run.first["40KCB"], node)["2022-01-30|40KCB"]
        assert meta["products"] == 1
        assert meta["baselines"] == ["05.09"]
        assert meta["product_ids"] == [
            f"S2B_MSI{level}_20220130T063511_N0509_R120_T40KCB_20220130T083511"
        ]


def test_second_pass_fetches_nothing(demo_run: DemoRun) -> None:
    for tile in DEMO_TILES:
        assert demo_run.acquisitions_again[tile]["new_products"] == 0
        assert demo_run.acquisitions_again[tile]["new_partitions"] == []
        assert (
            demo_run.acquisitions_again[tile]["products"] == demo_run.acquisitions[tile]["products"]
        )
        result = demo_run.second[tile]
        assert result.success
        for node in ("l1c", "l2a"):
            first = partition_metadata(demo_run.first[tile], node)
            again = partition_metadata(result, node)
            assert set(again) == set(first)
            for key, meta in again.items():
                assert meta["fetched_now"] == [], key
                assert meta["product_ids"] == first[key]["product_ids"], key
    now = {str(p): p.stat().st_ino for p in demo_run.pipeline.library.root.glob("data/L*/*/*.SAFE")}
    assert now == demo_run.inodes  # not even replaced by an identical copy
    assert len(now) == 12


def test_materializations_are_in_the_instance(demo_run: DemoRun) -> None:
    instance = demo_run.pipeline.instance
    for node in ("l1c", "l2a"):
        done = instance.get_materialized_partitions(dg.AssetKey(node))
        for tile in DEMO_TILES:
            assert {f"{d}|{tile}" for d in days_of(tile)} <= done
    assert instance.get_materialized_partitions(dg.AssetKey("acquisitions")) == set(DEMO_TILES)


def test_turning_the_baseline_filter_off_fetches_the_older_one(
    demo_archive: DemoArchive, tmp_path: Path
) -> None:
    with dg.instance_for_test() as instance:
        pipeline = pipeline_on(instance, tmp_path / "library", demo_archive.root)
        pipeline.register("40KCB")
        day = date(2022, 1, 30)
        result = pipeline.products("40KCB", day, day, filter_max_pb=False)
    meta = partition_metadata(result, "l1c")["2022-01-30|40KCB"]
    assert meta["baselines"] == ["04.00", "05.09"]
    assert sorted(meta["fetched_now"]) == [
        "S2A_MSIL1C_20220130T063511_N0400_R120_T40KCB_20220130T083511",
        "S2B_MSIL1C_20220130T063511_N0509_R120_T40KCB_20220130T083511",
    ]


def test_bad_tile_key_fails_clearly_and_writes_nothing(
    demo_archive: DemoArchive, tmp_path: Path
) -> None:
    with dg.instance_for_test() as instance:
        pipeline = pipeline_on(instance, tmp_path / "library", demo_archive.root)
        # Dynamic partition keys are not checked when added: a user can register "T40KCB".
        instance.add_dynamic_partitions("tiles", ["T40KCB"])
        result = pipeline.acquisitions("T40KCB", raise_on_error=False)
        assert not result.success
        assert (
            "invalid tile id 'T40KCB': expected two digits and three letters, like 40KCB "
            "(drop the leading 'T': '40KCB')"
        ) in failure_text(result)
        day = date(2022, 1, 20)
        result = pipeline.products("T40KCB", day, day, raise_on_error=False)
        assert not result.success
        assert "invalid partition key '2022-01-20|T40KCB'" in failure_text(result)
    lib = pipeline.library
    assert not lib.acquisitions_path("T40KCB").exists()
    assert [p for p in lib.root.rglob("*") if p.is_file()] == []


def _corrupt(source: Path, target: Path) -> None:
    corrupt_member(source, target, "_B04.jp2")


def _escaping(source: Path, target: Path) -> None:
    safe = f"{source.stem}.SAFE"
    rewrite_zip(source, target, extra={f"{safe}/../../../escaped.txt": b"x"})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_corrupt, "_B04.jp2' is corrupt (Bad CRC-32"),
        (_escaping, ".SAFE/../../../escaped.txt' escapes the product folder"),
    ],
    ids=["crc", "escaping"],
)
def test_bad_zip_fails_the_run_and_leaves_only_good_products(
    demo_archive: DemoArchive,
    tmp_path: Path,
    damage: Callable[[Path, Path], None],
    message: str,
) -> None:
    archive = tmp_path / "archive"
    good, bad = good_and_bad(demo_archive, archive)
    damage(bad, archive / bad.relative_to(demo_archive.root))
    with dg.instance_for_test() as instance:
        pipeline = pipeline_on(instance, tmp_path / "library", archive)
        pipeline.register("40KCB")
        result = pipeline.products(
            "40KCB", date(2022, 1, 20), date(2022, 1, 25), raise_on_error=False
        )
    assert not result.success
    text = failure_text(result)
    assert "1 L1C product(s) failed; the others are in the library" in text
    assert f"{bad.stem}: product zip {bad.name}: entry " in text
    assert message in text
    lib = pipeline.library
    assert [p.id for p in lib.products("L1C", "40KCB")] == [good.stem]
    assert not lib.product_path(ProductName.parse(bad.stem)).exists()
    assert list(lib.temp_dir.iterdir()) == []
    assert [p.name for p in tmp_path.rglob("escaped.txt")] == []


def _half_band(source: Path, target: Path) -> None:
    # Every CRC right (the zip was built from a damaged file): only verification sees it.
    with zipfile.ZipFile(source) as archive:
        entry = next(i.filename for i in archive.infolist() if i.filename.endswith("_B04.jp2"))
        data = archive.read(entry)
    rewrite_zip(
        source, target, keep=lambda i: i.filename != entry, extra={entry: data[: len(data) // 2]}
    )


def test_truncated_band_is_quarantined_said_on_its_partition_and_fetched_again(
    demo_archive: DemoArchive, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    good, bad = good_and_bad(demo_archive, archive)
    _half_band(bad, archive / bad.relative_to(demo_archive.root))
    name = ProductName.parse(bad.stem)
    with dg.instance_for_test() as instance:
        pipeline = pipeline_on(instance, tmp_path / "library", archive)
        pipeline.register("40KCB")
        first, last = date(2022, 1, 20), date(2022, 1, 25)
        result = pipeline.products("40KCB", first, last, raise_on_error=False)
        assert not result.success
        lib = pipeline.library
        assert [p.id for p in lib.products("L1C", "40KCB")] == [good.stem]
        assert not lib.has_product(name)
        folder = lib.quarantine_dir / name.id
        reason = (folder / "REASON.txt").read_text(encoding="utf-8")
        assert "_B04.jp2: truncated (" in reason
        assert (folder / name.safe_name).is_dir()
        records = instance.fetch_observations(dg.AssetKey("l1c"), limit=10).records
        observed = {
            str(record.partition_key): record.asset_observation.metadata  # type: ignore[union-attr]
            for record in records
        }
        assert list(observed) == ["2022-01-25|40KCB"], failure_text(result)
        assert observed["2022-01-25|40KCB"]["run_id"].value == result.run_id
        (entry,) = observed["2022-01-25|40KCB"]["quarantined"].value  # type: ignore[misc]
        assert entry["product"] == name.id and entry["folder"] == str(folder)
        assert "_B04.jp2: truncated (" in entry["why"]
        assert f"quarantined in {folder}" in failure_text(result)
        # The source is repaired (a fresh download): the next run wants it again and gets it.
        shutil.copyfile(bad, archive / bad.relative_to(demo_archive.root))
        again = pipeline.products("40KCB", last, last)
        assert partition_metadata(again, "l1c")["2022-01-25|40KCB"]["fetched_now"] == [name.id]
        assert lib.has_product(name)
