"""End to end on a real instance: l2a -> cloudmask -> a subset of the index assets."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import rasterio

from s2_assets.demo.products import DEMO_PRODUCTS, build_archive
from s2_assets.library.failures import read_failures
from s2_assets.raster.outputs import OutputFile
from s2_assets.raster.types import RasterError, WrittenRaster
from s2_assets_tests.pipeline import Pipeline

FIRST, LAST = "2022-01-22", "2022-01-27"


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    """31UFS registered and catalogued on a temporary instance (12 px products)."""
    archive = tmp_path / "archive"
    build_archive(archive, [p for p in DEMO_PRODUCTS if p.tile == "31UFS"], size=12)
    with dg.instance_for_test() as instance:
        pipeline = Pipeline(instance, tmp_path / "library", archive)
        pipeline.register("31UFS")
        yield pipeline


def test_l2a_cloudmask_and_two_indices_in_one_ranged_run(pipeline: Pipeline) -> None:
    result = pipeline.ranged("31UFS", FIRST, LAST, ("l2a", "cloudmask", "ndvi", "nbr"))
    assert result.success
    ndvi = {
        m.partition: m.metadata
        for m in result.asset_materializations_for_node("indices")
        if m.asset_key == dg.AssetKey("ndvi")
    }
    nbr_done = {
        m.partition
        for m in result.asset_materializations_for_node("indices")
        if m.asset_key == dg.AssetKey("nbr")
    }
    # Two acquisitions in the range (01-22, 01-27), six days materialized in one run.
    assert len(ndvi) == 6 and nbr_done == set(ndvi)
    assert ndvi["2022-01-22|31UFS"]["count"].value == 2  # raw + CM004-masked
    assert "data:image/png;base64," in ndvi["2022-01-22|31UFS"]["quicklook"].value
    assert ndvi["2022-01-23|31UFS"]["count"].value == 0  # no acquisition that day
    library = pipeline.library.root
    indices = library / "data" / "INDICES"
    assert sorted(p.name for p in indices.iterdir()) == ["NBR", "NDVI"]  # only what was asked
    (l2a_dir,) = [p for p in (indices / "NDVI" / "31UFS").iterdir() if "20220122" in p.name]
    raw = l2a_dir / f"{l2a_dir.name}_NDVI.tif"
    masked = l2a_dir / f"{l2a_dir.name}_NDVI_CM004-CSH1-CMP1-CHP1-TCI1-ITER0.tif"
    with rasterio.open(raw) as r, rasterio.open(masked) as m:
        assert r.nodata == m.nodata == 32767 and r.scales == (0.0001,)
        raw_values, masked_values = r.read(1), m.read(1)
    # Masking only ever turns pixels into nodata, and it did turn some (30 % cloud).
    kept = masked_values != 32767
    assert (masked_values[kept] == raw_values[kept]).all()
    assert (masked_values == 32767).sum() > (raw_values == 32767).sum()
    mask_dir = library / "data" / "CLOUDMASKS" / "31UFS" / l2a_dir.name
    assert (mask_dir / f"{l2a_dir.name}_CM004-CSH1-CMP1-CHP1-TCI1-ITER0.tif").is_file()


def test_rematerializing_kept_masks_records_what_the_partition_holds(pipeline: Pipeline) -> None:
    """Masks already on disk are kept, and each partition's metadata still lists them."""
    specs = {"ops": {"cloudmask": {"config": {"specs": ["CM001", "CM004"]}}}}

    def masks(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, dg.MetadataValue]]:
        return {
            str(m.partition): m.metadata
            for m in result.asset_materializations_for_node("cloudmask")
        }

    first = pipeline.ranged("31UFS", FIRST, LAST, ("l2a", "cloudmask"), run_config=specs)
    again = pipeline.ranged("31UFS", FIRST, LAST, ("cloudmask",), run_config=specs)
    before, after = masks(first), masks(again)
    day, empty = "2022-01-22|31UFS", "2022-01-23|31UFS"
    assert before[day]["written_now"].value == 2 and after[day]["written_now"].value == 0
    assert after[day]["count"].value == 2 and after[empty]["count"].value == 0
    assert after[empty]["written_now"].value == 0  # per partition, not the run's total
    assert after[day]["files"].value == before[day]["files"].value  # same stats, read back
    assert after[day]["quicklook"].value == before[day]["quicklook"].value
    paths = [f["path"] for f in after[day]["files"].value]  # type: ignore[union-attr]
    assert [Path(p).name.rsplit("_", 1)[-1] for p in paths] == [
        "CM001.tif",
        "CM004-CSH1-CMP1-CHP1-TCI1-ITER5.tif",  # sen2chain's defaults fill the short spec
    ]
    assert len(after[day]["provenance"].value) == 2  # type: ignore[arg-type]
    assert "masks_written" not in after[day]


def test_an_index_that_fails_to_publish_fails_its_product_alone(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Products publish while the next one streams: a failure still lands on its own
    product, the other is published, and the next run heals it."""
    assert pipeline.ranged("31UFS", FIRST, LAST, ("l2a", "cloudmask")).success
    original = OutputFile.publish

    def publish(self: OutputFile, *args: object, **kwargs: object) -> WrittenRaster:
        if "20220122" in self.writer.path.name and self.mask_spec is not None:
            raise RasterError(f"cannot encode {self.writer.path.name}: No space left on device")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(OutputFile, "publish", publish)
    failed = pipeline.ranged("31UFS", FIRST, LAST, ("ndvi",), raise_on_error=False)
    assert not failed.success
    library = pipeline.library
    (first, second) = library.products("L2A", "31UFS")
    failures = read_failures(library.logs_dir, "31UFS")
    assert list(failures) == [("indices", first.id)]
    assert "No space left on device" in failures["indices", first.id].error
    ndvi = library.root / "data" / "INDICES" / "NDVI" / "31UFS"
    masked = "_NDVI_CM004-CSH1-CMP1-CHP1-TCI1-ITER0.tif"
    # What the product published before the failure stays; nothing of the failed file.
    assert sorted(p.name for p in (ndvi / first.id).glob("*.tif")) == [first.id + "_NDVI.tif"]
    assert not [p for p in (ndvi / first.id).iterdir() if p.name.startswith(".")]
    assert sorted(p.name for p in (ndvi / second.id).glob("*.tif")) == [
        second.id + "_NDVI.tif",
        second.id + masked,
    ]
    monkeypatch.setattr(OutputFile, "publish", original)
    healed = pipeline.ranged("31UFS", FIRST, LAST, ("ndvi",))
    assert (ndvi / first.id / f"{first.id}{masked}").is_file()
    assert read_failures(library.logs_dir, "31UFS") == {}
    written = {
        str(m.partition): m.metadata["count"].value
        for m in healed.asset_materializations_for_node("indices")
    }
    # The index of a product with a file missing is written whole again, raw included.
    assert written["2022-01-22|31UFS"] == 2 and written["2022-01-27|31UFS"] == 0
