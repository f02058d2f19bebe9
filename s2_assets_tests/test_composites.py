"""The ``composite`` asset: month -> days mapping, a month materialized from masked index files
in the library (values, names, metadata, provenance), an empty month, the choice of index and
mask, and the automation condition that recomputes stale months."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import rasterio

from s2_assets.assets.composites import build_composite_asset, month_of_days
from s2_assets.assets.derived import build_indices_asset
from s2_assets.library.provenance import read_record
from s2_assets.library.tree import Library
from s2_assets.partitions import TileMonth, tile_date_partitions, tile_month_partitions
from s2_assets.products import ProductName
from s2_assets.resources.library import LibraryResource
from s2_assets_tests.raster.test_composite import reference, write_index

SPEC = "CM001"
TILE = "40KCB"


def l2a_id(day: int, month: int = 1) -> str:
    sensing = datetime(2024, month, day, 6, 35, 11)
    return ProductName(
        sensing=sensing, mission="S2A", level="L2A", baseline="05.10", relative_orbit=120,
        tile=TILE, discriminator=(sensing + timedelta(hours=2)).strftime("%Y%m%dT%H%M%S"),
    ).id  # fmt: skip


def put_index(lib: Library, product: str, values: np.ndarray, *, index: str = "NDVI") -> Path:
    folder = lib.index_dir(index, TILE, product)
    write_index(folder / f"{product}_{index}.tif", np.where(values == 32767, 1234, values))
    return write_index(folder / f"{product}_{index}_{SPEC}.tif", values)


def assets() -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        days = tile_date_partitions("2023-12-15")
        l2a = dg.AssetSpec("l2a", partitions_def=days)
        cloudmask = dg.AssetSpec("cloudmask", partitions_def=days)
        indices = build_indices_asset(days, l2a, cloudmask)  # type: ignore[arg-type]
        return indices, build_composite_asset(tile_month_partitions("2023-12-15"), indices)


def materialize(
    lib: Library, key: str, instance: dg.DagsterInstance, config: dict[str, object] | None = None
) -> dg.ExecuteInProcessResult:
    _, composite = assets()
    instance.add_dynamic_partitions("tiles", [TILE])
    return dg.materialize(
        [composite],
        partition_key=key,
        instance=instance,
        resources={"library": LibraryResource(root=str(lib.root))},
        run_config={"ops": {"composite": {"config": config}}} if config else None,
    )


def test_a_month_maps_to_its_days_and_a_day_to_its_month() -> None:
    mapping = month_of_days()
    days, months = tile_date_partitions("2023-12-15"), tile_month_partitions("2023-12-15")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tiles", [TILE, "31UFS"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
            months.subset_with_partition_keys(["2024-02|40KCB"]), months, days,
            dynamic_partitions_store=instance,
        ).partitions_subset.get_partition_keys()  # fmt: skip
        downstream = mapping.get_downstream_partitions_for_partitions(
            days.subset_with_partition_keys(["2024-02-29|40KCB", "2024-03-01|31UFS"]), days,
            months, dynamic_partitions_store=instance,
        ).get_partition_keys()  # fmt: skip
    assert sorted(upstream) == [f"2024-02-{d:02d}|40KCB" for d in range(1, 30)]
    assert sorted(downstream) == ["2024-02|40KCB", "2024-03|31UFS"]
    month_dim = {d.name: d.partitions_def for d in months.partitions_defs}["month"]
    assert month_dim.get_first_partition_key() == "2023-12"  # the month of S2_DATE_START
    assert TileMonth.parse("2024-02|40KCB").last.day == 29


def test_a_month_is_composited_from_its_masked_files(library: Library) -> None:
    rng = np.random.default_rng(1)
    layers = [rng.integers(-3000, 9000, (24, 24)) for _ in range(4)]
    for layer in layers:
        layer[rng.random(layer.shape) < 0.3] = 32767
    inputs = [
        put_index(library, l2a_id(d), layer)
        for d, layer in zip((3, 8, 13, 31), layers, strict=True)
    ]
    put_index(library, l2a_id(2, month=2), np.zeros((24, 24)))  # next month: not an input
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(library, "2024-01|40KCB", instance)
    assert result.success
    folder = library.root / "data" / "COMPOSITES" / "NDVI" / TILE / "2024-01"
    expected = reference(layers)
    for stat in ("median", "mean", "count", "max"):
        path = folder / f"{TILE}_2024-01_NDVI_{SPEC}_{stat.upper()}.tif"
        with rasterio.open(path) as src:
            np.testing.assert_array_equal(src.read(1), expected[stat], err_msg=stat)
        record = read_record(path)
        assert record is not None and record.kind == "COMPOSITE" and record.index == "NDVI"
        assert record.source_product.split(";") == [p.parent.name for p in inputs]
    (materialization,) = result.asset_materializations_for_node("composite")
    metadata = materialization.metadata
    assert metadata["observations"].value == 4 and metadata["files_written"].value == 4
    listed = metadata["inputs"].value[f"NDVI {SPEC}"]  # type: ignore[index]
    assert [row["path"] for row in listed] == [str(p) for p in inputs]
    assert [row["problem"] for row in listed] == ["no provenance record"] * 4
    summary = metadata["composites"].value[f"NDVI {SPEC}"]  # type: ignore[index]
    assert summary["observations"] == 4 and len(summary["files"]) == 4
    assert "data:image/png;base64," in str(metadata["quicklook"].value)
    assert metadata["empty"].value == []


def test_an_empty_month_writes_nothing_and_says_so(library: Library) -> None:
    put_index(library, l2a_id(3), np.zeros((8, 8)))
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(library, "2024-03|40KCB", instance)
    (materialization,) = result.asset_materializations_for_node("composite")
    assert materialization.metadata["observations"].value == 0
    assert "nothing to composite" in str(materialization.metadata["note"].value)
    named = materialize(library, "2024-03|40KCB", instance, {"indices": ["ndvi"], "masks": [SPEC]})
    (materialization,) = named.asset_materializations_for_node("composite")
    assert materialization.metadata["empty"].value == [f"NDVI {SPEC}"]
    assert "no masked file in 2024-03 for: NDVI CM001" in str(
        materialization.metadata["note"].value
    )
    assert not (library.root / "data" / "COMPOSITES").exists()


def test_config_picks_indices_masks_and_statistics(library: Library) -> None:
    day = l2a_id(5)
    put_index(library, day, np.full((8, 8), 100))
    put_index(library, day, np.full((8, 8), 200), index="NBR")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(
        library, "2024-01|40KCB", instance, {"indices": ["NBR"], "statistics": ["max", "count"]}
    )
    assert result.success
    made = sorted(p.name for p in (library.root / "data" / "COMPOSITES").rglob("*.tif"))
    assert made == [f"{TILE}_2024-01_NBR_{SPEC}_COUNT.tif", f"{TILE}_2024-01_NBR_{SPEC}_MAX.tif"]
    bad = dg.materialize(
        [assets()[1]], partition_key="2024-01|40KCB", instance=instance, raise_on_error=False,
        resources={"library": LibraryResource(root=str(library.root))},
        run_config={"ops": {"composite": {"config": {"statistics": ["mode"]}}}},
    )  # fmt: skip
    assert not bad.success
    failure = bad.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "unknown statistic 'mode'; valid: median, mean, count, max" in (
        failure.message
    )


def test_new_indices_on_a_day_make_its_month_stale_and_requested() -> None:
    indices, composite = assets()
    defs = dg.Definitions(
        assets=[indices, composite], resources={"library": LibraryResource(root="/unused")}
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tiles", [TILE])
    month = dg.AssetKey("composite")

    def evaluate(cursor: object) -> dg.EvaluateAutomationConditionsResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)

    def new_ndvi(day: str) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("ndvi", partition=f"{day}|{TILE}")
        )

    result = evaluate(None)
    assert result.total_requested == 0
    new_ndvi("2024-01-05")
    new_ndvi("2024-02-10")
    result = evaluate(result.cursor)
    assert sorted(result.get_requested_partitions(month)) == ["2024-01|40KCB", "2024-02|40KCB"]
    # What the UI's Automation tab shows: the labelled condition, true for the stale months.
    (top,) = [r for r in result.results if r.key == month]
    assert top.condition.get_label() == "composite of a stale month"
    stale = top.child_results[0]
    assert stale.condition.get_label() == "stale: a day of the month has new indices"
    assert stale.true_subset.size == 2
    result = evaluate(result.cursor)  # requested once, not again
    assert result.total_requested == 0
    # The composite finishes and, before the next evaluation, a day of its month gets new
    # indices: the month is stale again (the flag is cleared by the request, not the update).
    instance.report_runless_asset_event(
        dg.AssetMaterialization("composite", partition="2024-01|40KCB")
    )
    new_ndvi("2024-01-20")
    result = evaluate(result.cursor)
    assert sorted(result.get_requested_partitions(month)) == ["2024-01|40KCB"]
    result = evaluate(result.cursor)
    assert result.total_requested == 0


def test_the_governing_job_names_the_indices_and_masks(library: Library) -> None:
    day = l2a_id(5)
    put_index(library, day, np.full((8, 8), 100))
    put_index(library, day, np.full((8, 8), 200), index="NBR")
    library.jobs_dir.mkdir(parents=True)
    (library.jobs_dir / "job_month.cfg").write_text(
        "logs = False\ntiming = 0 3 * * 1\nprovider = archive\n\n"
        "tile;date_min;date_max;max_clouds;provider;filter_max_pb;download;compute_l2a;"
        "cloudmasks;indices;remove;comments\n"
        f"{TILE};2024-01-01;2024-01-31;80;archive;True;l1c;False;{SPEC};NBR;;\n",
        encoding="utf-8",
    )
    result = materialize(library, "2024-01|40KCB", dg.DagsterInstance.ephemeral())
    (materialization,) = result.asset_materializations_for_node("composite")
    assert list(materialization.metadata["composites"].value) == [f"NBR {SPEC}"]  # type: ignore[arg-type]
