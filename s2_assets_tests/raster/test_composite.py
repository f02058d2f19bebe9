"""Monthly composites: each statistic against a plain numpy reference, the rounding and
even-count median rules, nodata and masked inputs, JPEG2000 nodata, grids, strips, outputs."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from s2_assets.raster.composite import (
    STATISTICS,
    CompositeRequest,
    compute_composite,
    count_dtype,
    reduce_strip,
    round_half_away,
    strip_rows,
)
from s2_assets.raster.stack import StackFile, open_stack
from s2_assets.raster.types import INDEX_NODATA, RasterError

CRS = rasterio.crs.CRS.from_epsg(32740)
TRANSFORM = Affine(10, 0, 300000, 0, -10, 7800040)
T0 = datetime(2024, 1, 3, 6, 35, 11)


def write_index(
    path: Path,
    values: np.ndarray,
    *,
    nodata: int = INDEX_NODATA,
    scale: float = 0.0001,
    transform: Affine = TRANSFORM,
) -> Path:
    """A small int16 GeoTIFF as the index assets write it (nodata, scale recorded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0], count=1,
        dtype="int16", crs=CRS, transform=transform, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(values.astype(np.int16), 1)
        dst.scales = (scale,)
    return path


def stack_files(tmp_path: Path, layers: list[np.ndarray], **kwargs: object) -> list[StackFile]:
    return [
        StackFile(
            T0 + timedelta(days=5 * i),
            write_index(tmp_path / "in" / f"d{i}.tif", layer, **kwargs),  # type: ignore[arg-type]
            f"L2A_{i}",
        )
        for i, layer in enumerate(layers)
    ]


def reference(layers: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Plain numpy, pixel by pixel: the definitions of the module docstring."""
    cube = np.stack(layers).astype(np.int64)
    out = {name: np.full(cube.shape[1:], INDEX_NODATA, np.int64) for name in STATISTICS}
    for row in range(cube.shape[1]):
        for col in range(cube.shape[2]):
            obs = sorted(v for v in cube[:, row, col] if v != INDEX_NODATA)
            out["count"][row, col] = len(obs)
            if not obs:
                continue
            out["max"][row, col] = max(obs)
            n = len(obs)
            pair = obs[(n - 1) // 2] + obs[n // 2]
            out["median"][row, col] = half_away(pair, 2)
            out["mean"][row, col] = half_away(sum(obs), n)
    return out


def half_away(numerator: int, denominator: int) -> int:
    """Rounding written out with Python's exact fractions."""
    from fractions import Fraction

    value = Fraction(numerator, denominator)
    whole = int(abs(value) + Fraction(1, 2))
    return whole if value >= 0 else -whole


def request(tmp_path: Path, files: list[StackFile], **kwargs: object) -> CompositeRequest:
    return CompositeRequest(
        files=tuple(files), out_dir=tmp_path / "out", stem="40KCB_2024-01_NDVI_CM001",
        name="NDVI", mask_spec="CM001", ramp="RdYlGn", stretch=(-10000, 10000),
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_rounding_is_half_away_from_zero() -> None:
    numerators = np.array([5, 7, -5, -7, 10, 11, -11, 0, 1, -1], np.int64)
    denominators = np.array([2, 2, 2, 2, 3, 3, 3, 4, 3, 2], np.int64)
    expected = [3, 4, -3, -4, 3, 4, -4, 0, 0, -1]
    assert round_half_away(numerators, denominators).tolist() == expected
    assert [
        half_away(int(n), int(d)) for n, d in zip(numerators, denominators, strict=True)
    ] == expected


def test_median_of_an_even_count_is_the_rounded_mean_of_the_middle_two(tmp_path: Path) -> None:
    nd = INDEX_NODATA
    # Pixel by pixel: (3, 4) -> 3.5 -> 4; (-4, -3) -> -3.5 -> -4; (1, 2, 9, nd) -> 2;
    # (10, 20, 30, 40) -> 25; one observation -> itself; none -> nodata.
    layers = [
        np.array([[3, -4, 1, 10, 7, nd]]),
        np.array([[4, -3, 9, 40, nd, nd]]),
        np.array([[nd, nd, 2, 30, nd, nd]]),
        np.array([[nd, nd, nd, 20, nd, nd]]),
    ]
    block = open_stack(stack_files(tmp_path, layers)).load()
    out = reduce_strip(block)
    assert out["median"].values.tolist() == [[4, -4, 2, 25, 7, nd]]
    assert out["mean"].values.tolist() == [[4, -4, 4, 25, 7, nd]]  # 12/3 = 4, 100/4 = 25
    assert out["count"].values.tolist() == [[2, 2, 3, 4, 1, 0]]
    assert out["max"].values.tolist() == [[4, -3, 9, 40, 7, nd]]


@pytest.mark.parametrize("times", [1, 2, 5, 12])
def test_every_statistic_equals_the_numpy_reference(tmp_path: Path, times: int) -> None:
    rng = np.random.default_rng(times)
    layers = []
    for _ in range(times):
        layer = rng.integers(-10000, 10001, (37, 29))
        layer[rng.random(layer.shape) < 0.35] = INDEX_NODATA  # masked or no data
        layers.append(layer)
    layers[0][:3, :] = INDEX_NODATA
    for layer in layers:  # a corner with no observation at all
        layer[-2:, -2:] = INDEX_NODATA
    written = compute_composite(request(tmp_path, stack_files(tmp_path, layers)), rows=16)
    expected = reference(layers)
    assert [w.path.name for w in written] == [
        f"40KCB_2024-01_NDVI_CM001_{s.upper()}.tif" for s in STATISTICS
    ]
    for stat, item in zip(STATISTICS, written, strict=True):
        np.testing.assert_array_equal(read(item.path), expected[stat], err_msg=stat)
    assert read(written[2].path)[-1, -1] == 0


def test_outputs_keep_the_index_conventions(tmp_path: Path) -> None:
    layers = [np.full((20, 20), 5000), np.full((20, 20), INDEX_NODATA)]
    layers[1][:10] = 7000
    written = compute_composite(request(tmp_path, stack_files(tmp_path, layers)))
    by_stat = {w.path.name.rsplit("_", 1)[1].removesuffix(".tif"): w for w in written}
    for stat in ("MEDIAN", "MEAN", "MAX"):
        with rasterio.open(by_stat[stat].path) as src:
            assert src.dtypes == ("int16",) and src.nodata == INDEX_NODATA
            assert src.scales == (0.0001,) and src.crs == CRS and src.transform == TRANSFORM
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    with rasterio.open(by_stat["COUNT"].path) as src:
        assert src.dtypes == ("uint8",) and src.nodata == 255 and src.scales == (1.0,)
        assert src.read(1)[:10].tolist() == [[2] * 20] * 10 and src.read(1)[10:].min() == 1
    stats = by_stat["MEAN"].statistics
    assert stats.valid_pixels == 400 and stats.nodata_pixels == 0
    assert stats.minimum == pytest.approx(0.5) and stats.maximum == pytest.approx(0.6)
    assert by_stat["MEAN"].quicklook_png.startswith(b"\x89PNG")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        w.path.name for w in written
    )  # no temporary left


def test_jp2_nodata_and_scale_are_read_from_each_file(tmp_path: Path) -> None:
    # sen2chain's JPEG2000 indices use 16383 as nodata: no observation, not a value.
    first = write_index(tmp_path / "a.tif", np.array([[16383, 100]]), nodata=16383)
    second = write_index(tmp_path / "b.tif", np.array([[200, 16383]]), nodata=16383)
    third = write_index(tmp_path / "c.tif", np.array([[300, 32767]]))
    files = [StackFile(T0 + timedelta(days=i), p) for i, p in enumerate((first, second, third))]
    out = reduce_strip(open_stack(files).load())
    assert out["count"].values.tolist() == [[2, 1]]
    assert out["median"].values.tolist() == [[250, 100]]


def test_an_empty_month_writes_nothing(tmp_path: Path) -> None:
    assert compute_composite(request(tmp_path, [])) == []
    assert not (tmp_path / "out").exists()


def test_inputs_on_other_grids_or_scales_are_refused(tmp_path: Path) -> None:
    a = write_index(tmp_path / "a.tif", np.zeros((4, 4)))
    b = write_index(
        tmp_path / "b.tif", np.zeros((4, 4)), transform=TRANSFORM * Affine.translation(1, 0)
    )
    c = write_index(tmp_path / "c.tif", np.zeros((4, 4)), scale=1.0)
    with pytest.raises(RasterError, match=r"b\.tif .* is not on the grid of .*a\.tif"):
        open_stack([StackFile(T0, a), StackFile(T0 + timedelta(1), b)])
    with pytest.raises(RasterError, match=r"c\.tif has scale 1\.0, .*a\.tif has 0\.0001"):
        open_stack([StackFile(T0, a), StackFile(T0 + timedelta(1), c)])
    with pytest.raises(RasterError, match="unknown statistic 'mode'"):
        compute_composite(request(tmp_path, [StackFile(T0, a)], statistics=("mode",)))


def test_stack_is_lazy_and_reads_windows(tmp_path: Path) -> None:
    layers = [np.arange(48).reshape(6, 8) + 100 * i for i in range(3)]
    files = stack_files(tmp_path, layers)
    stack = open_stack(list(reversed(files)), name="NDVI")  # sorted by time whatever the order
    assert stack.dims == ("time", "y", "x") and stack.shape == (3, 6, 8)
    assert stack["time"].values[0] == np.datetime64(T0)
    assert stack["x"].values[0] == 300005.0 and stack["y"].values[0] == 7800035.0
    assert stack["spatial_ref"].attrs["crs_wkt"] == CRS.to_wkt()
    window = stack.isel(time=1, y=slice(2, 5), x=slice(1, 8, 3))
    assert window.values.tolist() == layers[1][2:5, 1:8:3].tolist()
    assert stack.isel(y=slice(None, None, -2)).values.tolist() == np.stack(layers)[:, ::-2].tolist()
    assert int(stack.sel(x=300015.0, y=7800025.0, method="nearest").isel(time=2)) == layers[2][1, 1]
    decoded = open_stack(files, decode=True)
    assert decoded.dtype == np.float32
    assert float(decoded[0, 0, 1]) == pytest.approx(0.0001)


def test_strip_rows_are_whole_blocks_within_the_budget() -> None:
    assert strip_rows(12, 10980) == 512
    assert strip_rows(1, 64) == 512 * (160 * 1024**2 // 128 // 512)
    assert strip_rows(400, 10980) == 19
    assert strip_rows(10_000, 10980) == 16
    assert count_dtype(254) == "uint8" and count_dtype(255) == "uint16"
