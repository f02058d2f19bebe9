"""Product checks: each on a good product and on broken ones (truncated JPEG2000, missing
layers, wrong CRS or grid, values out of range, no nodata, not a COG), then through Dagster:
a ranged run, a blocking failure that stops what follows, and a subset of indices."""

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.shutil import copy as gdal_copy

from s2_assets.assets.checks import build_checks
from s2_assets.library.checks import raster_problems, safe_problems
from s2_assets.library.tree import Library
from s2_assets.partitions import tile_date_partitions
from s2_assets.products import read_metadata
from s2_assets.raster.product_indices import compute_indices
from s2_assets.raster.product_masks import compute_cloud_masks
from s2_assets.resources.library import LibraryResource
from s2_assets.specs import INDEX_NAMES
from s2_assets_tests.conftest import SENSING, DemoSafes

TILE, DAY = "40KCB", SENSING.date().isoformat()
CM = "CM001"


@pytest.fixture(scope="module")
def good_library(tmp_path_factory: pytest.TempPathFactory, demo_safes: DemoSafes) -> Library:
    """One L1C and one L2A of 40KCB with a CM001 mask and NDVI, BIGR and EVI (raw and masked
    COGs), plus NDWIGAO as sen2chain's JPEG2000. Read-only: tests copy it."""
    lib = Library(tmp_path_factory.mktemp("good") / "library")
    for safe in (demo_safes.l1c_new, demo_safes.l2a_new):
        level = "L1C" if "MSIL1C" in safe.name else "L2A"
        shutil.copytree(safe, lib.level_dir(level, TILE) / safe.name)
    safe = lib.level_dir("L2A", TILE) / demo_safes.l2a_new.name
    metadata = read_metadata(safe)
    l2a_id = metadata.product_uri
    mask_dir = lib.mask_dir(TILE, l2a_id)
    compute_cloud_masks(
        product_id=l2a_id, safe_dir=safe, side_products=None, metadata=metadata, specs=[CM],
        out_dir=mask_dir,
    )  # fmt: skip
    for names, masks, fmt in (
        (["NDVI", "BIGR", "EVI"], {CM: mask_dir / f"{l2a_id}_{CM}.tif"}, "tif"),
        (["NDWIGAO"], {}, "jp2"),
    ):
        compute_indices(
            product_id=l2a_id, safe_dir=safe, metadata=metadata, indices=names, masks=masks,
            out_dir_for=lambda index: lib.index_dir(index, TILE, l2a_id), fmt=fmt,
        )  # fmt: skip
    return lib


@pytest.fixture
def lib(good_library: Library, tmp_path: Path) -> Library:
    shutil.copytree(good_library.root, tmp_path / "library", symlinks=True)
    return Library(tmp_path / "library")


def l2a_safe(lib: Library) -> Path:
    return lib.products("L2A", TILE)[0].path


def mask_file(lib: Library) -> Path:
    l2a_id = lib.products("L2A", TILE)[0].id
    return lib.mask_dir(TILE, l2a_id) / f"{l2a_id}_{CM}.tif"


def index_file(lib: Library, index: str, suffix: str = "", fmt: str = "tif") -> Path:
    l2a_id = lib.products("L2A", TILE)[0].id
    return lib.index_dir(index, TILE, l2a_id) / f"{l2a_id}_{index}{suffix}.{fmt}"


def rewrite(
    path: Path, *, change: Callable[[np.ndarray], np.ndarray] = lambda a: a, cog: bool = True,
    **profile: Any,
) -> None:  # fmt: skip
    """Write ``path`` again with changed values or profile (crs, transform, nodata), as a
    COG or as a plain tiled GeoTIFF."""
    with rasterio.open(path) as src:
        data, base = src.read(1), dict(src.profile)
    base.update(driver="GTiff", tiled=True, blockxsize=16, blockysize=16, **profile)
    plain = path.with_name("plain.tif")
    with rasterio.open(plain, "w", **base) as dst:
        dst.write(change(data), 1)
    path.unlink()
    if cog:
        gdal_copy(str(plain), str(path), driver="COG")
        plain.unlink()
    else:
        plain.rename(path)


# ------------------------------------------------------------------------- SAFEs


def test_good_safes_pass(good_library: Library) -> None:
    for level in ("L1C", "L2A"):
        (product,) = good_library.products(level, TILE)
        assert safe_problems(product.path, level) == []


def test_truncated_jpeg2000_is_named(lib: Library) -> None:
    band = next(l2a_safe(lib).glob("GRANULE/*/IMG_DATA/R10m/*_B04_10m.jp2"))
    content = band.read_bytes()
    band.write_bytes(content[: len(content) // 2])
    (problem,) = safe_problems(l2a_safe(lib), "L2A")
    assert band.name in problem and "truncated" in problem


def test_a_codestream_that_does_not_decode_is_named(lib: Library) -> None:
    band = next(l2a_safe(lib).glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))
    content = bytearray(band.read_bytes())
    # Keep the boxes, the tile-part header (SOT segment and SOD, 14 bytes) and the end marker:
    # the structure walk passes, only decoding shows the packet data is garbage.
    start = content.index(b"\xff\x90")
    content[start + 14 : -2] = b"\xff" * (len(content) - start - 16)
    band.write_bytes(bytes(content))
    problems = safe_problems(l2a_safe(lib), "L2A")
    assert any(band.name in p and "does not decode" in p for p in problems), problems


def test_missing_scl_cloud_probability_and_band(lib: Library) -> None:
    safe = l2a_safe(lib)
    for pattern in ("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2", "GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2",
                    "GRANULE/*/IMG_DATA/R60m/*_B09_60m.jp2"):  # fmt: skip
        next(safe.glob(pattern)).unlink()
    problems = "\n".join(safe_problems(safe, "L2A"))
    assert "SCL_20m.jp2: listed but missing" in problems
    assert "B09_60m.jp2: listed but missing" in problems
    assert "no GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2" in problems


def test_unreadable_metadata_and_wrong_level(lib: Library) -> None:
    safe = l2a_safe(lib)
    assert "MSIL2A" in "\n".join(safe_problems(safe, "L1C"))
    (safe / "MTD_MSIL2A.xml").write_text("<broken")
    (problem,) = safe_problems(safe, "L2A")
    assert "MTD_MSIL2A.xml: not well-formed XML" in problem


# ------------------------------------------------------------------- masks and indices


def grid_of(lib: Library, resolution: int) -> Any:
    from s2_assets.library.checks import l2a_grid

    return l2a_grid(lib, TILE, lib.products("L2A", TILE)[0].id, resolution)


def test_good_masks_and_indices_pass(good_library: Library) -> None:
    found = raster_problems(mask_file(good_library), kind="mask", index=None,
                            grid=grid_of(good_library, 20))  # fmt: skip
    assert (found.errors, found.warnings) == ([], [])
    for index, suffix in (("NDVI", ""), ("NDVI", f"_{CM}"), ("BIGR", ""), ("EVI", f"_{CM}")):
        path = index_file(good_library, index, suffix)
        found = raster_problems(path, kind="index", index=index, grid=grid_of(good_library, 10))
        assert (found.errors, found.warnings) == ([], [])


def test_lossy_jpeg2000_index_values_are_only_warnings(good_library: Library) -> None:
    """sen2chain's lossy 15-bit JPEG2000 does not keep nodata: on the demo product the 21
    nodata pixels (16383) decode as 14336. That is reported, as a warning, not a failure."""
    path = index_file(good_library, "NDWIGAO", fmt="jp2")
    found = raster_problems(path, kind="index", index="NDWIGAO", grid=grid_of(good_library, 10))
    assert found.errors == []
    (warning,) = found.warnings
    assert "pixel(s) not in [-10000, 10000]" in warning and "lossy JPEG2000" in warning


def test_mask_in_another_crs(lib: Library) -> None:
    rewrite(mask_file(lib), crs="EPSG:32739")
    (problem,) = raster_problems(
        mask_file(lib), kind="mask", index=None, grid=grid_of(lib, 20)
    ).errors
    assert problem == f"{mask_file(lib).name}: CRS EPSG:32739, the L2A's is EPSG:32740"


def test_index_on_a_shifted_grid(lib: Library) -> None:
    path = index_file(lib, "NDVI")
    with rasterio.open(path) as src:
        shifted = src.transform * Affine.translation(1, 0)
    rewrite(path, transform=shifted)
    (problem,) = raster_problems(path, kind="index", index="NDVI", grid=grid_of(lib, 10)).errors
    assert "not the L2A's 12x12" in problem
    # A mask compared with the 10 m grid is refused the same way (masks are 20 m).
    assert raster_problems(mask_file(lib), kind="mask", index=None, grid=grid_of(lib, 10)).errors


def test_values_out_of_range(lib: Library) -> None:
    ndvi = index_file(lib, "NDVI")
    rewrite(ndvi, change=lambda a: np.where(a == 32767, a, 12000).astype(a.dtype))
    (problem,) = raster_problems(ndvi, kind="index", index="NDVI", grid=grid_of(lib, 10)).errors
    assert "not in [-10000, 10000] (from 12000 to 12000)" in problem

    bigr = index_file(lib, "BIGR")  # a brightness is never negative
    rewrite(bigr, change=lambda a: np.where(a == 32767, a, -5).astype(a.dtype))
    (problem,) = raster_problems(bigr, kind="index", index="BIGR", grid=None).errors
    assert "not in [0, 32766]" in problem

    def seven(values: np.ndarray) -> np.ndarray:
        values[2, 3:5] = 7
        return values

    rewrite(mask_file(lib), change=seven)
    (problem,) = raster_problems(
        mask_file(lib), kind="mask", index=None, grid=grid_of(lib, 20)
    ).errors
    assert "2 pixel(s) not one of (0, 1, 255) (from 7 to 7)" in problem


def test_no_nodata_declared(lib: Library) -> None:
    rewrite(mask_file(lib), nodata=None)
    (problem,) = raster_problems(
        mask_file(lib), kind="mask", index=None, grid=grid_of(lib, 20)
    ).errors
    assert problem.endswith("no nodata declared (expected 255)")
    ndvi = index_file(lib, "NDVI", f"_{CM}")
    rewrite(ndvi, nodata=0)
    (problem,) = raster_problems(ndvi, kind="index", index="NDVI", grid=grid_of(lib, 10)).errors
    assert problem.endswith("nodata 0, expected 32767")


def test_not_a_cog(lib: Library) -> None:
    ndvi = index_file(lib, "NDVI")
    rewrite(ndvi, cog=False)
    (problem,) = raster_problems(ndvi, kind="index", index="NDVI", grid=grid_of(lib, 10)).errors
    assert "no COG layout header" in problem

    mask = mask_file(lib)
    content = mask.read_bytes()
    assert b"KNOWN_INCOMPATIBLE_EDITION=NO\n" in content
    # What GDAL writes into the header when a COG is edited in a way that breaks its layout.
    mask.write_bytes(content.replace(b"EDITION=NO\n", b"EDITION=YES", 1))
    (problem,) = raster_problems(mask, kind="mask", index=None, grid=grid_of(lib, 20)).errors
    assert "edited after writing" in problem


def test_truncated_jpeg2000_index(lib: Library) -> None:
    path = index_file(lib, "NDWIGAO", fmt="jp2")
    path.write_bytes(path.read_bytes()[:200])
    (problem,) = raster_problems(path, kind="index", index="NDWIGAO", grid=grid_of(lib, 10)).errors
    assert problem.startswith(f"{path.name}: truncated")


def test_wrong_type(lib: Library) -> None:
    rewrite(mask_file(lib), change=lambda a: a.astype("int16"), dtype="int16")
    (problem,) = raster_problems(
        mask_file(lib), kind="mask", index=None, grid=grid_of(lib, 20)
    ).errors
    assert "1 band(s) of int16, expected 1 of uint8" in problem


# ---------------------------------------------------------------------- through Dagster


PARTITIONS = tile_date_partitions("2022-01-01")


def standins() -> tuple[dg.AssetsDefinition, ...]:
    """Assets with the real keys and partitions that only record a materialization: the
    checks read the library, not what the assets return."""

    def product(name: str, deps: list[Any]) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=PARTITIONS, deps=deps,
                  backfill_policy=dg.BackfillPolicy.single_run())  # fmt: skip
        def standin() -> None:
            return None

        return standin

    warnings.simplefilter("ignore", dg.BetaWarning)
    l1c = product("l1c", [])
    l2a = product("l2a", [])
    cloudmask = product("cloudmask", [l2a])
    specs = [dg.AssetSpec(n.lower(), partitions_def=PARTITIONS, deps=[cloudmask], skippable=True)
             for n in INDEX_NAMES]  # fmt: skip

    @dg.multi_asset(specs=specs, can_subset=True, name="indices",
                    backfill_policy=dg.BackfillPolicy.single_run())  # fmt: skip
    def indices(context: dg.AssetExecutionContext) -> Any:
        for key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key)

    return l1c, l2a, cloudmask, indices


def run(lib: Library, selection: list[str], *, start: str = "2022-01-29", end: str = "2022-01-31"):  # type: ignore[no-untyped-def]
    l1c, l2a, cloudmask, indices = standins()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tiles", [TILE])
    return dg.materialize(
        [l1c, l2a, cloudmask, indices, *build_checks(l1c, l2a, cloudmask, indices)],
        selection=dg.AssetSelection.assets(*selection)
        | dg.AssetSelection.checks_for_assets(*selection),
        instance=instance,
        resources={"library": LibraryResource(root=str(lib.root))},
        tags={
            "dagster/asset_partition_range_start": f"{start}|{TILE}",
            "dagster/asset_partition_range_end": f"{end}|{TILE}",
        },
        raise_on_error=False,
    )


def evaluations(result: Any) -> dict[str, Any]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e
        for e in result.get_asset_check_evaluations()
    }


def test_ranged_run_checks_every_product_of_the_range(lib: Library) -> None:
    result = run(lib, ["l1c", "l2a", "cloudmask", "ndvi", "ndwigao"])
    assert result.success
    found = evaluations(result)
    assert set(found) == {"l1c:safe_complete", "l2a:safe_complete", "cloudmask:masks_valid",
                          "ndvi:index_valid", "ndwigao:index_valid"}  # fmt: skip
    lossy = found.pop("ndwigao:index_valid")
    assert all(e.passed for e in found.values())
    # The lossy JPEG2000 index fails with WARN severity: reported, but the run succeeded.
    assert not lossy.passed and lossy.severity == dg.AssetCheckSeverity.WARN
    assert lossy.metadata["failures"].value == [] and len(lossy.metadata["warnings"].value) == 1
    metadata = found["ndvi:index_valid"].metadata
    assert (metadata["partitions"].value, metadata["checked"].value) == (3, 2)
    assert found["cloudmask:masks_valid"].metadata["checked"].value == 1
    assert found["l2a:safe_complete"].metadata["checked"].value == 1


def test_a_bad_mask_blocks_the_indices_of_the_run(lib: Library) -> None:
    rewrite(mask_file(lib), crs="EPSG:32739")
    result = run(lib, ["cloudmask", "ndvi"])
    assert not result.success
    check = evaluations(result)["cloudmask:masks_valid"]
    assert not check.passed
    assert check.metadata["failures"].value == [
        f"{mask_file(lib).name}: CRS EPSG:32739, the L2A's is EPSG:32740"
    ]
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "ndvi" not in materialized and "cloudmask" in materialized


def test_a_bad_l2a_fails_its_check_naming_the_file(lib: Library) -> None:
    band = next(l2a_safe(lib).glob("GRANULE/*/IMG_DATA/R20m/*_B11_20m.jp2"))
    band.write_bytes(band.read_bytes()[:100])
    result = run(lib, ["l2a"], start=DAY, end=DAY)
    check = evaluations(result)["l2a:safe_complete"]
    assert not check.passed
    assert band.name in check.description and "truncated" in check.description


def test_masks_of_a_removed_l2a_are_still_checked_against_the_side_products(lib: Library) -> None:
    safe = l2a_safe(lib)
    from s2_assets.sen2cor.sideproducts import copy_side_products

    copy_side_products(safe, mask_file(lib).parent)
    shutil.rmtree(safe)
    result = run(lib, ["cloudmask"], start=DAY, end=DAY)
    check = evaluations(result)["cloudmask:masks_valid"]
    assert check.passed and check.metadata["checked"].value == 1
    assert "notes" not in check.metadata


def test_checks_are_in_the_code_location(tmp_path: Path) -> None:
    from s2_assets.definitions import build_definitions
    from s2_assets.settings import Settings

    (tmp_path / "archive").mkdir()
    settings = Settings(data_home=tmp_path / "lib", archive_root=str(tmp_path / "archive"))
    graph = build_definitions(settings).resolve_asset_graph()
    keys = {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys}
    expected = {"l1c:safe_complete", "l2a:safe_complete", "cloudmask:masks_valid"}
    assert keys >= expected | {f"{name.lower()}:index_valid" for name in INDEX_NAMES}
