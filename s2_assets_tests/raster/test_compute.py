"""compute_cloud_masks / compute_indices on synthetic L2A products from s2_assets.demo.products."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from scipy import ndimage

from s2_assets.demo.products import build_safe
from s2_assets.errors import IndexNameError, MaskSpecError
from s2_assets.products import NATIVE_RESOLUTION, band_path, qi_path, read_metadata
from s2_assets.raster import indices as ix
from s2_assets.raster import masks as mk
from s2_assets.raster.io import BandReader
from s2_assets.raster.product_indices import compute_indices
from s2_assets.raster.product_masks import compute_cloud_masks
from s2_assets.raster.types import RasterError, SideProducts
from s2_assets.sen2cor.sideproducts import copy_side_products
from s2_assets.specs import INDEX_NAMES, parse_mask_spec

SENSING = datetime(2024, 3, 5, 6, 35, 11, tzinfo=UTC)
SPECS = ["CM001", "CM002-B11", "CM003-PRB60-ITER3", "CM004-CSH1-CMP1-CHP1-TCI1-ITER2"]


@pytest.fixture(scope="module")
def l2a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_safe(
        tmp_path_factory.mktemp("l2a"), level="L2A", sensing=SENSING, size=60, cloud_cover=35
    )


@pytest.fixture(scope="module")
def old_l2a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_safe(
        tmp_path_factory.mktemp("old"), level="L2A", sensing=SENSING, size=48, baseline="03.01",
        cloud_cover=35,
    )  # fmt: skip


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _masks(
    l2a: Path, out: Path, *, strip_rows: int | None = None, specs: list[str] = SPECS
) -> dict[str, np.ndarray]:
    metadata = read_metadata(l2a)
    written = compute_cloud_masks(
        product_id=metadata.product_uri, safe_dir=l2a, side_products=None, metadata=metadata,
        specs=specs, out_dir=out, strip_rows=strip_rows,
    )  # fmt: skip
    return {w.name: _read(w.path) for w in written}


def test_masks_equal_whole_array_algorithms_at_any_strip_size(l2a: Path, tmp_path: Path) -> None:
    metadata = read_metadata(l2a)
    whole = {
        "SCL": _read(band_path(l2a, metadata, "SCL", 20)),
        "CLDPRB": _read(qi_path(l2a, "MSK_CLDPRB_20m.jp2")),
        "B11": _read(band_path(l2a, metadata, "B11", 20)),
    }
    parsed = tuple(parse_mask_spec(s) for s in SPECS)
    expected = mk.compute_masks(parsed, whole, b11_offset=-1000)
    for rows in (None, 1, 4, 7):
        got = _masks(l2a, tmp_path / f"r{rows}", strip_rows=rows)
        for spec in parsed:
            reference = mk.encode_mask(expected[spec], mk.mask_nodata(whole, spec))
            np.testing.assert_array_equal(got[str(spec)], reference, err_msg=f"{spec} rows={rows}")
    assert all(np.isin(np.unique(a), [0, 1, 255]).all() for a in got.values())
    assert (got["CM001"] == 255).any() and (got["CM001"] == 1).any() and (got["CM001"] == 0).any()


@pytest.fixture(scope="module")
def speckled_l2a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo L2A whose mask inputs are replaced by sparse random specks and dark spots, so
    dilation chains cross strip edges everywhere."""
    safe = build_safe(
        tmp_path_factory.mktemp("speckled"), level="L2A", sensing=SENSING, size=120, seed=3
    )
    metadata = read_metadata(safe)
    rng = np.random.default_rng(11)
    shape = (60, 60)
    # Random 3x3 blobs (which survive CM001's erosion) plus single specks (which do not).
    blobs = ndimage.binary_dilation(rng.random(shape) < 0.005, structure=np.ones((3, 3)))
    specks = rng.random(shape) < 0.01
    layers = {
        qi_path(safe, "MSK_CLDPRB_20m.jp2"): (blobs | specks) * rng.integers(26, 101, shape),
        band_path(safe, metadata, "SCL", 20): np.select(
            [rng.random(shape) < 0.015, rng.random(shape) < 0.02],
            [9, 0],
            rng.choice(np.array([4, 5, 6, 7, 11]), shape),
        ),
        band_path(safe, metadata, "B11", 20): np.where(rng.random(shape) < 0.01, 2000, 4000),
    }  # fmt: skip
    for path, values in layers.items():
        with rasterio.open(path) as src:
            profile = src.profile
        with rasterio.open(path, "w", **profile, QUALITY=100, REVERSIBLE="YES") as dst:
            dst.write(values.astype(profile["dtype"]), 1)
    return safe


@pytest.mark.parametrize("rows", [1, 5, 13])
@pytest.mark.parametrize("only", [None, *SPECS])
def test_masks_exact_across_strip_edges_on_speckled_inputs(
    speckled_l2a: Path, tmp_path: Path, rows: int, only: str | None
) -> None:
    metadata = read_metadata(speckled_l2a)
    whole = {
        "SCL": _read(band_path(speckled_l2a, metadata, "SCL", 20)),
        "CLDPRB": _read(qi_path(speckled_l2a, "MSK_CLDPRB_20m.jp2")),
        "B11": _read(band_path(speckled_l2a, metadata, "B11", 20)),
    }
    parsed = tuple(parse_mask_spec(s) for s in ([only] if only else SPECS))
    expected = mk.compute_masks(parsed, whole, b11_offset=-1000)
    got = _masks(speckled_l2a, tmp_path, strip_rows=rows, specs=[str(p) for p in parsed])
    for spec in parsed:
        reference = mk.encode_mask(expected[spec], mk.mask_nodata(whole, spec))
        assert 0 < int((reference == 1).sum()) < reference.size * 0.9, spec
        np.testing.assert_array_equal(got[str(spec)], reference, err_msg=f"{spec} rows={rows}")


def test_mask_files_are_uint8_cogs_on_the_source_grid(l2a: Path, tmp_path: Path) -> None:
    metadata = read_metadata(l2a)
    [written] = compute_cloud_masks(
        product_id=metadata.product_uri, safe_dir=l2a, side_products=None, metadata=None,
        specs=["cm004"], out_dir=tmp_path,
    )  # fmt: skip
    assert written.path.name == f"{metadata.product_uri}_CM004-CSH1-CMP1-CHP1-TCI1-ITER5.tif"
    with (
        rasterio.open(written.path) as src,
        rasterio.open(band_path(l2a, metadata, "SCL", 20)) as scl,
    ):
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.dtypes == ("uint8",) and src.nodata == 255
        assert src.crs == scl.crs and src.transform == scl.transform
    stats = written.statistics
    assert stats.valid_pixels + stats.masked_pixels + stats.nodata_pixels == 30 * 30
    assert stats.mean == pytest.approx(stats.masked_share)
    assert written.quicklook_png.startswith(b"\x89PNG") and written.kind == "mask"
    assert written.quicklook_markdown().startswith("![ql](data:image/png;base64,iVBOR")


def test_masks_from_side_products_match_the_safe(l2a: Path, tmp_path: Path) -> None:
    metadata = read_metadata(l2a)
    copy_side_products(l2a, tmp_path / "side")
    side = SideProducts.find(tmp_path / "side")
    assert side is not None
    specs = ["CM001", "CM003-PRB60-ITER3", "CM004-CSH1-CMP1-CHP1-TCI1-ITER2"]
    from_side = compute_cloud_masks(
        product_id=metadata.product_uri, safe_dir=None, side_products=side, metadata=None,
        specs=specs, out_dir=tmp_path / "a",
    )  # fmt: skip
    reference = _masks(l2a, tmp_path / "b")
    for written in from_side:
        np.testing.assert_array_equal(_read(written.path), reference[written.name])
    with pytest.raises(RasterError, match="CM002-B11 needs band B11"):
        compute_cloud_masks(
            product_id=metadata.product_uri, safe_dir=tmp_path / "gone", side_products=side,
            metadata=None, specs=["CM002-B11"], out_dir=tmp_path / "c",
        )  # fmt: skip
    with pytest.raises(RasterError, match="no L2A SAFE"):
        compute_cloud_masks(
            product_id="X", safe_dir=None, side_products=None, metadata=None, specs=["CM001"],
            out_dir=tmp_path / "d",
        )  # fmt: skip
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def _reference_indices(l2a: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """What sen2chain computes: whole bands, 20 m read with GDAL's bilinear out_shape."""
    metadata = read_metadata(l2a)
    with rasterio.open(band_path(l2a, metadata, "B04", 10)) as src:
        shape = src.shape
    dn: dict[str, np.ndarray] = {}
    touched: dict[str, np.ndarray] = {}
    rows = np.arange(shape[0])
    cols = np.arange(shape[1])
    for band in ix.bands_needed(names):
        with rasterio.open(band_path(l2a, metadata, band, NATIVE_RESOLUTION[band])) as src:
            if src.shape == shape:
                dn[band] = src.read(1)
                touched[band] = dn[band] == 0
                continue
            dn[band] = src.read(1, out_shape=shape, resampling=Resampling.bilinear)
            zero = src.read(1) == 0
        # 10 m pixel i blends 20 m pixels (i - 1) // 2 and (i + 1) // 2, clamped.
        r = [np.clip((rows + d) // 2, 0, zero.shape[0] - 1) for d in (-1, 1)]
        c = [np.clip((cols + d) // 2, 0, zero.shape[1] - 1) for d in (-1, 1)]
        touched[band] = np.logical_or.reduce([zero[np.ix_(a, b)] for a in r for b in c])
    reflectance = {b: a.astype(np.float32) + np.float32(metadata.offset(b)) for b, a in dn.items()}
    out = {}
    for name in names:
        nodata = np.logical_or.reduce([touched[b] for b in ix.INDICES[name].bands])
        out[name] = ix.compute_index(name, reflectance, nodata=nodata)
    return out


@pytest.mark.parametrize("rows", [None, 2, 6])
def test_indices_equal_whole_band_reference_at_any_strip_size(
    l2a: Path, tmp_path: Path, rows: int | None
) -> None:
    metadata = read_metadata(l2a)
    written = compute_indices(
        product_id=metadata.product_uri, safe_dir=l2a, metadata=metadata, indices=INDEX_NAMES,
        masks={}, out_dir_for=lambda name: tmp_path / name, strip_rows=rows,
    )  # fmt: skip
    reference = _reference_indices(l2a, INDEX_NAMES)
    assert [w.name for w in written] == list(INDEX_NAMES)
    for w in written:
        np.testing.assert_array_equal(_read(w.path), reference[w.name], err_msg=w.name)
        assert w.statistics.nodata_pixels > 0 and w.statistics.valid_pixels > 1000


def test_old_baseline_uses_raw_dn(old_l2a: Path, tmp_path: Path) -> None:
    metadata = read_metadata(old_l2a)
    assert metadata.offsets == {}
    [ndvi] = compute_indices(
        product_id=metadata.product_uri, safe_dir=old_l2a, metadata=metadata, indices=["ndvi"],
        masks={}, out_dir_for=lambda name: tmp_path,
    )  # fmt: skip
    b08 = _read(band_path(old_l2a, metadata, "B08", 10)).astype(np.float32)
    b04 = _read(band_path(old_l2a, metadata, "B04", 10)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.trunc((b08 - b04) / (b08 + b04) * np.float32(10000))
    got = _read(ndvi.path)
    valid = (b08 > 0) & (b04 > 0)
    np.testing.assert_array_equal(got[valid], expected[valid].astype(np.int16))
    assert (got[~valid] == 32767).all()


def test_subset_reads_each_needed_band_once(
    l2a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: dict[str, list[tuple[int, int]]] = {}
    original = BandReader.read_rows

    def recording(self: BandReader, start: int, stop: int) -> np.ndarray:
        reads.setdefault(self.path.name, []).append((start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(BandReader, "read_rows", recording)
    metadata = read_metadata(l2a)
    compute_indices(
        product_id=metadata.product_uri, safe_dir=l2a, metadata=metadata,
        indices=["NDVI", "NDWIGAO", "NBR", "ndvi"], masks={}, out_dir_for=lambda n: tmp_path / n,
        strip_rows=4,
    )  # fmt: skip
    assert sorted(name.split("_")[2] for name in reads) == ["B04", "B08", "B11", "B12"]
    for name, ranges in reads.items():
        height = 60 if "_10m" in name else 30
        covered = [row for start, stop in ranges for row in range(start, stop)]
        assert covered == list(range(height)), name  # every row once, in order


def test_masked_variants(l2a: Path, tmp_path: Path) -> None:
    metadata = read_metadata(l2a)
    masks = compute_cloud_masks(
        product_id=metadata.product_uri, safe_dir=l2a, side_products=None, metadata=metadata,
        specs=["CM001", "CM004-CSH1-CMP1-CHP1-TCI1-ITER0"], out_dir=tmp_path / "masks",
    )  # fmt: skip
    written = compute_indices(
        product_id=metadata.product_uri, safe_dir=l2a, metadata=metadata, indices=["EVI"],
        masks={m.name: m.path for m in masks}, out_dir_for=lambda n: tmp_path / n,
    )  # fmt: skip
    names = [w.path.name.removeprefix(metadata.product_uri) for w in written]
    assert names == ["_EVI.tif", "_EVI_CM001.tif", "_EVI_CM004-CSH1-CMP1-CHP1-TCI1-ITER0.tif"]
    raw = _read(written[0].path)
    for mask, variant in zip(masks, written[1:], strict=True):
        hidden = np.repeat(np.repeat(_read(mask.path) != 0, 2, 0), 2, 1)
        expected = np.where(hidden, 32767, raw)
        np.testing.assert_array_equal(_read(variant.path), expected)
        stats = variant.statistics
        assert stats.masked_pixels == int((hidden & (raw != 32767)).sum()) > 0
        assert stats.valid_pixels + stats.masked_pixels + stats.nodata_pixels == 3600
        assert variant.mask_spec == mask.name and 0 < stats.masked_share < 1
    with rasterio.open(written[0].path) as src:
        assert src.nodata == 32767 and src.scales == (0.0001,) and src.dtypes == ("int16",)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_jp2_option_writes_sen2chain_format(l2a: Path, tmp_path: Path) -> None:
    metadata = read_metadata(l2a)
    [raw] = compute_indices(
        product_id=metadata.product_uri, safe_dir=l2a, metadata=metadata, indices=["NDRE"],
        masks={}, out_dir_for=lambda n: tmp_path, fmt="jp2",
    )  # fmt: skip
    assert raw.path.suffix == ".jp2" and raw.path.with_name(raw.path.name + ".aux.xml").exists()
    with rasterio.open(raw.path) as src:
        assert src.driver == "JP2OpenJPEG" and src.nodata == 16383
        assert src.read(1).max() <= 16383
    with pytest.raises(RasterError, match="valid: tif, jp2"):
        compute_indices(
            product_id="x", safe_dir=l2a, metadata=metadata, indices=["NDVI"], masks={},
            out_dir_for=lambda n: tmp_path, fmt="png",
        )  # fmt: skip


def test_mask_on_another_grid_is_refused(l2a: Path, old_l2a: Path, tmp_path: Path) -> None:
    old = read_metadata(old_l2a)
    [other] = compute_cloud_masks(
        product_id=old.product_uri, safe_dir=old_l2a, side_products=None, metadata=old,
        specs=["CM001"], out_dir=tmp_path,
    )  # fmt: skip
    metadata = read_metadata(l2a)
    with pytest.raises(RasterError, match="neither on the 10 m grid"):
        compute_indices(
            product_id=metadata.product_uri, safe_dir=l2a, metadata=metadata, indices=["NDVI"],
            masks={"CM001": other.path}, out_dir_for=lambda n: tmp_path / "i",
        )  # fmt: skip
    assert not (tmp_path / "i").exists() or not list((tmp_path / "i").rglob("*.tif"))


def test_bad_specs_and_names_fail_before_writing(l2a: Path, tmp_path: Path) -> None:
    metadata = read_metadata(l2a)
    with pytest.raises(MaskSpecError, match=r"CM005.*valid forms: CM001, CM002-B11"):
        compute_cloud_masks(
            product_id=metadata.product_uri, safe_dir=l2a, side_products=None, metadata=metadata,
            specs=["CM001", "CM005"], out_dir=tmp_path,
        )  # fmt: skip
    with pytest.raises(IndexNameError, match="NDXI"):
        compute_indices(
            product_id=metadata.product_uri, safe_dir=l2a, metadata=metadata,
            indices=["NDVI", "NDXI"], masks={}, out_dir_for=lambda n: tmp_path,
        )  # fmt: skip
    with pytest.raises(MaskSpecError, match="CM9"):
        compute_indices(
            product_id=metadata.product_uri, safe_dir=l2a, metadata=metadata, indices=["NDVI"],
            masks={"CM9": tmp_path / "x.tif"}, out_dir_for=lambda n: tmp_path,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_same_spec_twice_is_computed_once(l2a: Path, tmp_path: Path) -> None:
    metadata = read_metadata(l2a)
    written = compute_cloud_masks(
        product_id=metadata.product_uri, safe_dir=l2a, side_products=None, metadata=metadata,
        specs=["CM004", "CM004-CSH1-CMP1-CHP1-TCI1-ITER5", "cm003"], out_dir=tmp_path,
    )  # fmt: skip
    assert [w.name for w in written] == [
        "CM004-CSH1-CMP1-CHP1-TCI1-ITER5", "CM003-PRB1-ITER5",
    ]  # fmt: skip
