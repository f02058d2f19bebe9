"""The STAC catalogue: JSON-schema validation offline, a pystac round trip back to the files,
projection info equal to each file's header, and atomic replacement.

The library holds demo L2A products of two tiles in two UTM zones, their cloud masks and two
indices computed by the real pipeline (``s2_assets.raster.compute``), and the indices of an
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
import pystac
import pytest
import rasterio
from pystac.validation import validate_dict
from pystac.validation.stac_validator import JsonSchemaSTACValidator

from s2_assets import catalog_stac
from s2_assets.assets.outputs import build_catalog_asset
from s2_assets.catalog_stac import catalog_dir, write_catalog
from s2_assets.demo import build_safe
from s2_assets.library import Library
from s2_assets.products import read_metadata
from s2_assets.raster.compute import compute_cloud_masks, compute_indices
from s2_assets.resources.library import LibraryResource

SPECS = ["CM001", "CM004-CSH1-CMP1-CHP1-TCI1-ITER0"]
INDICES = ["NDVI", "NDWIGAO"]
PRODUCTS = [
    ("40KCB", datetime(2024, 3, 5, 6, 35, 11, tzinfo=UTC), 30.0),
    ("40KCB", datetime(2024, 3, 15, 6, 35, 11, tzinfo=UTC), 60.0),
    ("31UFS", datetime(2024, 3, 7, 10, 40, 21, tzinfo=UTC), 5.0),
]
EXTENSIONS = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
}


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator limited to the schemas pystac ships (STAC 1.1 core and
    GeoJSON). No installed package ships the extension schemas and fetching them needs the
    network, so extension ids are recorded and their fields checked by hand in the tests."""

    def __init__(self) -> None:
        super().__init__()
        self.extensions: set[str] = set()

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise AssertionError(f"schema {schema_uri} is not shipped: it would need the network")
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
        return None


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
    real = catalog_stac.read_raster_info

    def spy(path: Path) -> catalog_stac.RasterInfo:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(catalog_stac, "read_raster_info", spy)
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
