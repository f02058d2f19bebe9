"""The STAC catalogue: JSON-schema validation offline, a pystac round trip back to the files,
projection info equal to each file's header, and atomic replacement.

The library holds demo L2A products of two tiles in two UTM zones, their cloud masks and two
indices computed by the real pipeline (``s2_assets.raster.product_masks``, ``product_indices``), and the indices of an
L2A whose SAFE was removed (sen2chain keeps indices after removing L2A).
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import jsonschema
import numpy as np
import pystac
import pytest
import rasterio
from pystac.validation import validate_dict
from pystac.validation.stac_validator import JsonSchemaSTACValidator

from s2_assets.assets.outputs import CatalogConfig, build_catalog_asset
from s2_assets.demo.products import build_safe
from s2_assets.library.tree import Library
from s2_assets.outputs import stac as catalog_stac
from s2_assets.outputs import stac_items
from s2_assets.outputs.stac import catalog_dir, write_catalog
from s2_assets.products import ProductName, acquisition_time, read_metadata
from s2_assets.raster.product_indices import compute_indices
from s2_assets.raster.product_masks import compute_cloud_masks
from s2_assets.resources.library import LibraryResource

SPECS = ["CM001", "CM004-CSH1-CMP1-CHP1-TCI1-ITER0"]
INDICES = ["NDVI", "NDWIGAO"]
PRODUCTS = [
    ("40KCB", datetime(2024, 3, 5, 6, 35, 11, tzinfo=UTC), 30.0),
    ("40KCB", datetime(2024, 3, 15, 6, 35, 11, tzinfo=UTC), 60.0),
    ("31UFS", datetime(2024, 3, 7, 10, 40, 21, tzinfo=UTC), 5.0),
]
PROJECTION_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
PROJECTION_V1_1 = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
EXTENSIONS = {
    PROJECTION_V2,
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
}
SCHEMAS = Path(__file__).parent / "data" / "stac_schemas"
# Bytes the server sent for each published schema (Content-Length).
SERVED = {
    "projection-v2.0.0.json": 4374,
    "projection-v1.1.0.json": 4369,
    "eo-v1.1.0.json": 5052,
    "mgrs-v1.0.0.json": 2889,
    "raster-v1.1.0.json": 6318,
}


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator with the STAC 1.1 core and GeoJSON schemas pystac ships
    and the extension schemas kept in ``data/stac_schemas``: every document is validated
    against core and extension schemas, and any other schema (one that would need the
    network) is an error. ``extensions`` records the extension schemas used."""

    def __init__(self) -> None:
        super().__init__()
        self.extensions: set[str] = set()
        for name in SERVED:
            schema = json.loads((SCHEMAS / name).read_text())
            self.schema_cache[schema["$id"].rstrip("#")] = schema

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise AssertionError(f"schema {schema_uri} is not kept offline: it needs the network")
        return super()._get_schema(schema_uri)

    def validate_extension(
        self,
        stac_dict: dict[str, Any],
        stac_object_type: Any,
        stac_version: str,
        extension_id: str,
        href: str | None = None,
    ) -> str | None:
        self.extensions.add(extension_id)
        return super().validate_extension(
            stac_dict, stac_object_type, stac_version, extension_id, href
        )


def _build(root: Path) -> Library:
    library = Library(root)
    for tile, sensing, cover in PRODUCTS:
        safe = build_safe(
            library.level_dir("L2A", tile), level="L2A", tile=tile, sensing=sensing, size=12,
            cloud_cover=cover,
        )  # fmt: skip
        metadata = read_metadata(safe)
        pid = metadata.product_uri
        mask_dir = library.mask_dir(tile, pid)
        compute_cloud_masks(
            product_id=pid, safe_dir=safe, side_products=None, metadata=metadata, specs=SPECS,
            out_dir=mask_dir,
        )  # fmt: skip
        compute_indices(
            product_id=pid, safe_dir=safe, metadata=metadata, indices=INDICES,
            masks={"CM001": mask_dir / f"{pid}_CM001.tif"},
            out_dir_for=partial(library.index_dir, tile=tile, l2a_id=pid),
        )  # fmt: skip
    return library


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """The library above, with the third product's SAFE removed and debris in its folders."""
    library = _build(tmp_path_factory.mktemp("stac") / "library")
    removed = library.products("L2A", "31UFS")[0]
    shutil.rmtree(removed.path)
    index_dir = library.index_dir("NDVI", "31UFS", removed.id)
    (index_dir / f".{removed.id}_NDVI.tif.123.part.tif").write_bytes(b"half")
    (index_dir / f"{removed.id}_NDVI_CM001_QL.tif").write_bytes(b"not a product")
    (index_dir / "notes.txt").write_text("kept by a user")
    write_catalog(library)
    return library


def _json_files(library: Library) -> list[Path]:
    return sorted(catalog_dir(library).rglob("*.json"))


def test_every_document_validates_against_the_stac_schemas(built: Library) -> None:
    validator = OfflineValidator()
    files = _json_files(built)
    for path in files:
        validate_dict(json.loads(path.read_text()), href=str(path), validator=validator)
    # 2 L2A (the third SAFE was removed) + 3 mask items + 2 indices x 3 products,
    # 4 collections and the root.
    assert len(files) == 2 + 3 + 6 + 4 + 1
    assert validator.extensions == EXTENSIONS


def test_the_validator_can_fail(built: Library) -> None:
    path = next(p for p in _json_files(built) if "/ndvi/S2" in str(p))
    item = json.loads(path.read_text())
    del item["properties"]["datetime"]
    with pytest.raises(pystac.STACValidationError):
        validate_dict(item, href=str(path), validator=OfflineValidator())


def test_extension_fields_are_well_formed(built: Library) -> None:
    items = [
        json.loads(p.read_text()) for p in _json_files(built) if p.parent.name.startswith("S2")
    ]
    for item in items:
        properties = item["properties"]
        assert re.fullmatch(r"EPSG:\d{5}", properties["proj:code"])
        assert properties["mgrs:utm_zone"] in (31, 40)
        assert properties["mgrs:latitude_band"] + properties["mgrs:grid_square"] in ("KCB", "UFS")
        assert 0 <= properties.get("eo:cloud_cover", 0) <= 100
        for asset in item["assets"].values():
            if asset.get("roles") != ["metadata"]:
                assert len(asset["proj:shape"]) == 2 and all(
                    isinstance(v, int) for v in asset["proj:shape"]
                )
                assert len(asset["proj:transform"]) == 6


def test_round_trip_leads_back_to_every_file_with_its_grid(built: Library) -> None:
    catalog = pystac.Catalog.from_file(str(catalog_dir(built) / "catalog.json"))
    collections = {c.id: c for c in catalog.get_collections()}
    assert sorted(collections) == ["cloudmasks", "l2a", "ndvi", "ndwigao"]
    counts = {cid: len(list(c.get_items())) for cid, c in collections.items()}
    assert counts == {"l2a": 2, "cloudmasks": 3, "ndvi": 3, "ndwigao": 3}

    ndvi = {item.properties["s2:product_id"]: item for item in collections["ndvi"].get_items()}
    for tile, sensing, _cover in PRODUCTS:
        pid = next(p for p in ndvi if f"_T{tile}_" in p and sensing.strftime("%Y%m%d") in p)
        item = ndvi[pid]
        assert item.datetime is not None and abs(item.datetime - sensing).total_seconds() < 1
        assert sorted(item.assets) == ["NDVI", "NDVI_CM001"]  # debris and quicklooks left out
        assert item.properties["s2:mgrs_tile"] == tile
        if tile == "31UFS":
            assert "eo:cloud_cover" not in item.properties  # its SAFE, and metadata, is gone
        else:
            expected = read_metadata(built.products("L2A", tile, sensing.date())[0].path)
            assert item.properties["eo:cloud_cover"] == expected.cloud_cover
    for collection in collections.values():
        for item in collection.get_items():
            for asset in item.assets.values():
                path = Path(asset.get_absolute_href() or "")
                assert path.is_file(), path
                assert not Path(asset.href).is_absolute()
                if asset.roles == ["metadata"]:
                    continue
                with rasterio.open(path) as src:
                    assert asset.extra_fields["proj:shape"] == [src.height, src.width]
                    assert asset.extra_fields["proj:transform"] == list(src.transform)[:6]
                    assert item.properties["proj:code"] == f"EPSG:{src.crs.to_epsg()}"
                    assert asset.extra_fields["data_type"] == src.dtypes[0]
            west, south, east, north = item.bbox or []
            assert west < east and south < north
        assert collection.extent.spatial.bboxes[0][0] <= min(
            i.bbox[0] for i in collection.get_items() if i.bbox
        )


def test_masks_items_carry_each_spec(built: Library) -> None:
    catalog = pystac.Catalog.from_file(str(catalog_dir(built) / "catalog.json"))
    masks = catalog.get_child("cloudmasks")
    assert masks is not None
    for item in masks.get_items():
        assert sorted(item.assets) == sorted(SPECS)
        for asset in item.assets.values():
            assert asset.extra_fields["nodata"] == 255 and asset.media_type == pystac.MediaType.COG


def test_the_catalogue_moves_with_the_library(built: Library, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(built.root, moved, symlinks=True)
    catalog = pystac.Catalog.from_file(str(moved / "data" / "STAC" / "catalog.json"))
    hrefs = [
        Path(asset.get_absolute_href() or "")
        for item in catalog.get_items(recursive=True)
        for asset in item.assets.values()
    ]
    assert hrefs and all(h.is_file() and moved in h.parents for h in hrefs)


def test_a_failed_write_keeps_the_previous_catalogue(
    built: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = Library(tmp_path / "copy")
    shutil.copytree(built.root, library.root, symlinks=True)
    before = {p: p.read_bytes() for p in _json_files(library)}
    calls = iter(range(10_000))

    def failing_dumps(value: Any, **kwargs: Any) -> str:
        if next(calls) == 5:
            raise OSError("disk full")
        return json.dumps(value, **kwargs)

    monkeypatch.setattr(catalog_stac.json, "dumps", failing_dumps)
    with pytest.raises(OSError, match="disk full"):
        write_catalog(library)
    assert {p: p.read_bytes() for p in _json_files(library)} == before
    assert [p.name for p in catalog_dir(library).parent.iterdir() if p.name.startswith(".")] == []


def test_unreadable_files_are_skipped_and_named(tmp_path: Path) -> None:
    library = _build(tmp_path / "library")
    pid = library.products("L2A", "31UFS")[0].id
    broken = library.index_dir("NDWIGAO", "31UFS", pid) / f"{pid}_NDWIGAO_CM001.tif"
    broken.write_bytes(b"II*\x00 truncated")
    summary = write_catalog(library)
    assert any(str(broken) in reason for reason in summary.skipped)
    assert summary.items == {"l2a": 3, "cloudmasks": 3, "ndvi": 3, "ndwigao": 3}
    item = json.loads(
        (catalog_dir(library) / "ndwigao" / f"{pid}_NDWIGAO" / f"{pid}_NDWIGAO.json").read_text()
    )
    assert sorted(item["assets"]) == ["NDWIGAO"]


def test_catalog_asset_writes_and_reports(built: Library, tmp_path: Path) -> None:
    library = Library(tmp_path / "copy")
    shutil.copytree(built.root, library.root, symlinks=True)
    shutil.rmtree(catalog_dir(library))
    result = dg.materialize(
        [build_catalog_asset([])], resources={"library": LibraryResource(root=str(library.root))}
    )
    [materialization] = result.asset_materializations_for_node("catalog")
    metadata = materialization.metadata
    assert metadata["path"].value == str(catalog_dir(library) / "catalog.json")
    assert metadata["items"].value == {"l2a": 2, "cloudmasks": 3, "ndvi": 3, "ndwigao": 3}
    assert metadata["item_count"].value == 11 and metadata["skipped_count"].value == 0
    assert pystac.Catalog.from_file(str(catalog_dir(library) / "catalog.json")).id == "s2_assets"


def test_a_rebuild_reads_only_the_headers_of_changed_files(
    built: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = Library(tmp_path / "copy")
    shutil.copytree(built.root, library.root, symlinks=True)
    write_catalog(library)  # the copy's own paths
    before = {p: p.read_bytes() for p in _json_files(library)}
    opened: list[Path] = []
    real = stac_items.read_raster_info

    def spy(path: Path) -> catalog_stac.RasterInfo:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(stac_items, "read_raster_info", spy)
    write_catalog(library)
    assert opened == []
    assert {p: p.read_bytes() for p in _json_files(library)} == before

    pid = library.products("L2A", "40KCB")[0].id
    changed = library.index_dir("NDVI", "40KCB", pid) / f"{pid}_NDVI.tif"
    with rasterio.open(changed) as src:
        profile, data = src.profile, src.read(1)
    changed.unlink()
    with rasterio.open(changed, "w", **profile | {"driver": "GTiff"}) as dst:
        dst.write(data, 1)
    write_catalog(library)
    assert opened == [changed]


def test_an_empty_library_gets_an_empty_valid_catalogue(library: Library) -> None:
    summary = write_catalog(library)
    assert summary.items == {} and summary.assets == 0
    root = json.loads(summary.path.read_text())
    validate_dict(root, href=str(summary.path), validator=OfflineValidator())
    assert [link["rel"] for link in root["links"]] == ["root"]


def test_jpeg2000_outputs_keep_their_sidecar_nodata(tmp_path: Path) -> None:
    """sen2chain's JPEG2000 outputs carry nodata in a ``.aux.xml`` sidecar."""
    library = Library(tmp_path / "library")
    tile, sensing, _ = PRODUCTS[0]
    safe = build_safe(library.level_dir("L2A", tile), level="L2A", sensing=sensing, size=12)
    metadata = read_metadata(safe)
    pid = metadata.product_uri
    compute_indices(
        product_id=pid, safe_dir=safe, metadata=metadata, indices=["NDVI"], masks={},
        out_dir_for=partial(library.index_dir, tile=tile, l2a_id=pid), fmt="jp2",
    )  # fmt: skip
    write_catalog(library)
    item = json.loads(
        (catalog_dir(library) / "ndvi" / f"{pid}_NDVI" / f"{pid}_NDVI.json").read_text()
    )
    asset = item["assets"]["NDVI"]
    assert asset["type"] == pystac.MediaType.JPEG2000 and asset["nodata"] == 16383


def test_the_extension_schemas_are_the_published_ones() -> None:
    for name, served in SERVED.items():
        data = (SCHEMAS / name).read_bytes()
        assert len(data) == served, name  # byte for byte as served (Content-Length)
        schema = json.loads(data)
        extension, version = name.removesuffix(".json").rsplit("-", 1)
        assert schema["$id"].rstrip("#") == (
            f"https://stac-extensions.github.io/{extension}/{version}/schema.json"
        )


def test_extension_schemas_catch_bad_fields(built: Library) -> None:
    path = next(p for p in _json_files(built) if "/ndvi/S2" in str(p))
    good = json.loads(path.read_text())
    validate_dict(good, href=str(path), validator=OfflineValidator())
    # proj:epsg was removed in projection v2.0.0, so an item cannot carry both.
    both = json.loads(path.read_text())
    both["properties"]["proj:epsg"] = 32740
    bad_band = json.loads(path.read_text())
    bad_band["assets"]["NDVI"]["raster:bands"][0]["data_type"] = "int15"
    bad_cover = json.loads(path.read_text())
    bad_cover["properties"]["eo:cloud_cover"] = 140
    for document in (both, bad_band, bad_cover):
        with pytest.raises(pystac.STACValidationError):
            validate_dict(document, href=str(path), validator=OfflineValidator())


def test_each_projection_version_forbids_the_other_versions_crs_field(built: Library) -> None:
    """Why no catalogue carries proj:epsg beside proj:code: the published schemas of
    projection v2.0.0 and v1.1.0 reject a ``proj:`` field they do not define (on the item's
    properties and on each asset), while letting through any field without that prefix."""
    path = next(p for p in _json_files(built) if "/ndvi/S2" in str(p))
    item = json.loads(path.read_text())
    v1_item = catalog_stac.with_epsg(json.loads(path.read_text()))
    assert item["properties"]["proj:code"] == "EPSG:32740"
    assert v1_item["properties"]["proj:epsg"] == 32740
    cases = [  # (item as written, schema it declares, the other version's field and value)
        (item, "projection-v2.0.0.json", "proj:epsg", 32740),
        (v1_item, "projection-v1.1.0.json", "proj:code", "EPSG:32740"),
    ]
    for document, name, field, value in cases:
        schema = json.loads((SCHEMAS / name).read_text())
        assert schema["$id"] in document["stac_extensions"]
        validator = jsonschema.Draft7Validator(schema)
        fields = jsonschema.Draft7Validator(schema["definitions"]["fields"])
        assert validator.is_valid(document)
        for where in ("properties", "asset"):
            both = json.loads(json.dumps(document))
            target = both["properties"] if where == "properties" else both["assets"]["NDVI"]
            target[field] = value
            assert not validator.is_valid(both), (name, where)
            [error] = fields.iter_errors(target)
            assert error.validator == "additionalProperties" and repr(field) in error.message
            other = json.loads(json.dumps(document))
            other["properties"]["s2:crs_note"] = value  # no proj: prefix: allowed
            assert validator.is_valid(other)


def _items(library: Library, *, absolute: bool = False) -> list[dict[str, Any]]:
    root = catalog_dir(library, absolute=absolute)
    return [json.loads(p.read_text()) for p in sorted(root.rglob("S2*/*.json"))]


def test_raster_bands_say_how_to_read_each_file(built: Library) -> None:
    checked = 0
    for item in _items(built):
        here = catalog_dir(built) / item["collection"] / item["id"]
        for key, asset in item["assets"].items():
            if asset.get("roles") == ["metadata"]:
                continue
            [band] = asset["raster:bands"]
            path = (here / asset["href"]).resolve()
            with rasterio.open(path) as src:
                assert band["data_type"] == asset["data_type"] == src.dtypes[0]
                assert band["spatial_resolution"] == src.res[0]
                if src.nodata is not None:
                    assert band["nodata"] == asset["nodata"] == src.nodata
                if item["collection"] in ("ndvi", "ndwigao"):
                    assert (band["scale"], band["offset"]) == (src.scales[0], src.offsets[0])
                    assert band["scale"] == pytest.approx(1e-4) and band["nodata"] == 32767
            if item["collection"] == "l2a":
                safe = next(p for p in path.parents if p.suffix == ".SAFE")
                metadata = read_metadata(safe)
                if key.startswith("B"):
                    name = key.split("_")[0]
                    assert band["scale"] == 1 / metadata.quantification
                    assert band["offset"] == metadata.offset(name) / metadata.quantification
                    assert band["nodata"] == 0
                elif key == "MSK_CLDPRB_20m":
                    assert band["unit"] == "%" and "nodata" not in band and "scale" not in band
            if item["collection"] == "cloudmasks":
                assert band["nodata"] == 255 and "scale" not in band
            checked += 1
    assert checked > 30


def test_the_offset_of_a_baseline_4_band_is_negative(built: Library) -> None:
    [b04] = [
        i["assets"]["B04_10m"]["raster:bands"][0] for i in _items(built) if "B04_10m" in i["assets"]
    ][:1]
    assert b04["offset"] == pytest.approx(-0.1) and b04["scale"] == pytest.approx(1e-4)


def test_no_machine_path_in_the_catalogue(built: Library) -> None:
    for path in _json_files(built):
        assert str(built.root) not in path.read_text(), path
    root = json.loads((catalog_dir(built) / "catalog.json").read_text())
    assert "library" in root["description"]


def test_item_time_is_the_acquisition_time_of_the_product_name(built: Library) -> None:
    for item in _items(built):
        name = ProductName.parse(item["properties"]["s2:product_id"])
        assert item["properties"]["datetime"] == name.sensing.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert acquisition_time(name) == name.sensing


def test_absolute_catalogue_for_loaders_that_need_epsg(built: Library, tmp_path: Path) -> None:
    library = Library(tmp_path / "copy")
    shutil.copytree(built.root, library.root, symlinks=True)
    relative = {p: p.read_bytes() for p in _json_files(library)}
    summary = write_catalog(library, absolute=True)
    assert summary.path == library.root / "data" / "STAC_ABSOLUTE" / "catalog.json"
    assert {p: p.read_bytes() for p in _json_files(library)} == relative  # untouched
    validator = OfflineValidator()
    for path in sorted(catalog_dir(library, absolute=True).rglob("*.json")):
        validate_dict(json.loads(path.read_text()), href=str(path), validator=validator)
    assert validator.extensions == EXTENSIONS - {PROJECTION_V2} | {PROJECTION_V1_1}
    items = _items(library, absolute=True)
    assert len(items) == 11
    for item in items:
        properties = item["properties"]
        assert "proj:code" not in properties
        assert properties["proj:epsg"] in (32631, 32740)
        for asset in item["assets"].values():
            assert Path(asset["href"]).is_absolute() and Path(asset["href"]).is_file()


def test_catalog_asset_can_write_the_absolute_catalogue_too(built: Library, tmp_path: Path) -> None:
    library = Library(tmp_path / "copy")
    shutil.copytree(built.root, library.root, symlinks=True)
    result = dg.materialize(
        [build_catalog_asset([])],
        resources={"library": LibraryResource(root=str(library.root))},
        run_config=dg.RunConfig({"catalog": CatalogConfig(absolute_hrefs=True)}),
    )
    assert result.success
    assert (catalog_dir(library, absolute=True) / "catalog.json").is_file()


def test_headers_cached_by_an_older_build_are_read_again(
    built: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = Library(tmp_path / "copy")
    shutil.copytree(built.root, library.root, symlinks=True)
    write_catalog(library)
    cache = catalog_dir(library) / catalog_stac.HEADER_CACHE
    old = json.loads(cache.read_text())
    for _stamp, info in old.values():
        del info["scale"], info["offset"]  # what a build before raster:bands cached
    cache.write_text(json.dumps(old))
    opened: list[Path] = []
    real = stac_items.read_raster_info

    def spy(path: Path) -> catalog_stac.RasterInfo:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(stac_items, "read_raster_info", spy)
    write_catalog(library)
    assert len(opened) == len(old)
    ndvi = [i for i in _items(library) if i["collection"] == "ndvi"]
    assert all(i["assets"]["NDVI"]["raster:bands"][0]["scale"] == 1e-4 for i in ndvi)


def _write_composite(path: Path, dtype: str, scale: float, nodata: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", width=4, height=4, count=1, dtype=dtype, crs="EPSG:32740",
        transform=rasterio.transform.from_origin(300000, 7800040, 10, 10), nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(np.full((4, 4), 7, dtype=dtype), 1)
        dst.scales, dst.offsets = (scale,), (0.0,)


def test_monthly_composites_get_a_collection_when_there_are_any(
    built: Library, tmp_path: Path
) -> None:
    library = Library(tmp_path / "copy")
    shutil.copytree(built.root, library.root, symlinks=True)
    month = library.root / "data" / "COMPOSITES" / "NDVI" / "40KCB" / "2024-02"
    for stat in ("median", "mean", "max"):
        _write_composite(month / f"40KCB_2024-02_NDVI_CM001_{stat}.tif", "int16", 1e-4, 32767)
    _write_composite(month / "40KCB_2024-02_NDVI_CM001_count.tif", "uint8", 1.0, 255)
    summary = write_catalog(library)
    assert summary.items["composites-ndvi"] == 1
    validator = OfflineValidator()
    for path in _json_files(library):
        validate_dict(json.loads(path.read_text()), href=str(path), validator=validator)
    item = json.loads(
        (
            catalog_dir(library)
            / "composites-ndvi"
            / "40KCB_2024-02_NDVI"
            / "40KCB_2024-02_NDVI.json"
        ).read_text()
    )
    properties = item["properties"]
    assert properties["datetime"] is None
    assert (properties["start_datetime"], properties["end_datetime"]) == (
        "2024-02-01T00:00:00Z",
        "2024-02-29T23:59:59Z",
    )
    bands = {key: asset["raster:bands"][0] for key, asset in item["assets"].items()}
    assert sorted(bands) == ["CM001_count", "CM001_max", "CM001_mean", "CM001_median"]
    assert bands["CM001_median"]["scale"] == 1e-4 and bands["CM001_median"]["nodata"] == 32767
    assert "scale" not in bands["CM001_count"] and bands["CM001_count"]["data_type"] == "uint8"
