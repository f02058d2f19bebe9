"""Index formulas against hand-computed values: offsets, nodata, zero denominators, clipping."""

from __future__ import annotations

import numpy as np
import pytest

from s2_assets.errors import IndexNameError
from s2_assets.raster import indices as ix
from s2_assets.specs import INDEX_NAMES

NODATA = 32767


def _bands(offset: int = 0, **dn: list[int]) -> dict[str, np.ndarray]:
    """Offset-corrected float32 bands from raw DN lists."""
    return {b: np.asarray(v, dtype=np.float32) + np.float32(offset) for b, v in dn.items()}


def _run(name: str, offset: int = 0, **dn: list[int]) -> list[int]:
    bands = _bands(offset, **dn)
    nodata = np.zeros(len(next(iter(dn.values()))), dtype=bool)
    for band in ix.INDICES[name].bands:
        nodata |= np.asarray(dn[band]) == 0
    return ix.compute_index(name, bands, nodata=nodata).tolist()


def test_every_index_is_defined_with_sen2chain_bands() -> None:
    assert tuple(ix.INDICES) == INDEX_NAMES
    assert ix.bands_needed(("NDVI",)) == ("B04", "B08")
    assert ix.bands_needed(("IRECI", "ndbi")) == ("B04", "B05", "B06", "B07", "B08", "B11")
    assert ix.INDICES["NDRE"].jp2_quality == ix.INDICES["IRECI"].jp2_quality == 30
    with pytest.raises(IndexNameError, match="NDVI, NDWIMCF"):
        ix.index_def("NDXI")


def test_ndvi_before_and_after_baseline_04() -> None:
    # Reflectances 0.3 and 0.1 -> 0.5 -> 5000, whether stored with or without the offset.
    assert _run("NDVI", B08=[3000], B04=[1000]) == [5000]
    assert _run("NDVI", -1000, B08=[4000], B04=[2000]) == [5000]
    # sen2chain would have kept the 1000 offset here if the baseline said < 04.00:
    assert _run("NDVI", B08=[4000], B04=[2000]) == [3333]


def test_truncates_toward_zero() -> None:
    assert _run("NDVI", B08=[2000, 1000], B04=[1000, 2000]) == [3333, -3333]
    assert _run("NDWIMCF", B03=[1000], B08=[2000]) == [-3333]


def test_normalized_differences_of_each_pair() -> None:
    dn = {"B02": [500], "B03": [700], "B04": [600], "B05": [1300], "B08": [3600],
          "B11": [1800], "B12": [900]}  # fmt: skip
    expected = {
        "NDWIGAO": (3600 - 1800) / (3600 + 1800), "MNDWI": (700 - 1800) / (700 + 1800),
        "NDRE": (3600 - 1300) / (3600 + 1300), "NBR": (3600 - 900) / (3600 + 900),
        "NDBI": (1800 - 3600) / (1800 + 3600),
    }  # fmt: skip
    for name, ratio in expected.items():
        assert _run(name, **dn) == [int(ratio * 10000)], name


def test_dark_pixels_after_offset_clip_instead_of_exploding() -> None:
    # DN 500 with offset -1000 is reflectance -500: (-500 - 1500) / (-500 + 1500) = -2.
    assert _run("NDVI", -1000, B08=[500], B04=[2500]) == [-10000]
    assert _run("NDVI", -1000, B08=[2500], B04=[500]) == [10000]


def test_zero_or_negative_denominator_and_zero_dn_are_nodata() -> None:
    assert _run("NDVI", -1000, B08=[1000, 900, 1200], B04=[1000, 1000, 700]) == [
        NODATA,
        NODATA,
        NODATA,
    ]  # fmt: skip  (sums 0, -100, -100 after the offset)
    assert _run("NDVI", B08=[0, 3000], B04=[1000, 0]) == [NODATA, NODATA]
    assert _run("NDVI", B08=[0], B04=[0]) == [NODATA]


def test_ireci_in_dn_units() -> None:
    # B06 * (B07 - B04) / B05 = 2800 * (3300 - 500) / 1300 = 6030.77 -> 6030
    assert _run("IRECI", B07=[3300], B05=[1300], B06=[2800], B04=[500]) == [6030]
    assert _run("IRECI", -1000, B07=[4300], B05=[1000], B06=[3800], B04=[1500]) == [NODATA]
    # Big numerator: clipped into int16 with 32767 reserved, never wrapped.
    assert _run("IRECI", B07=[60000], B05=[1], B06=[60000], B04=[1]) == [32766]
    assert _run("IRECI", B07=[1], B05=[1], B06=[60000], B04=[60000]) == [-32768]


def test_brightness_indices() -> None:
    # sqrt((700^2 + 600^2) / 2) = 651.92 -> 651
    assert _run("BIGR", B03=[700], B04=[600]) == [651]
    assert _run("BIRNIR", B08=[3600], B04=[500]) == [int(np.sqrt((3600**2 + 500**2) / 2))]
    assert _run("BIBG", B02=[400], B03=[700]) == [int(np.sqrt((400**2 + 700**2) / 2))]
    assert _run("BIGR", B03=[60000], B04=[60000]) == [32766]
    assert _run("BIBG", B02=[0], B03=[700]) == [NODATA]


def test_evi() -> None:
    # N 0.36, R 0.05, B 0.04: 2.5 * 0.31 / (0.36 + 0.3 - 0.3 + 1) = 0.569852... -> 5698
    assert _run("EVI", B08=[3600], B04=[500], B02=[400]) == [5698]
    # Denominator 0.1 + 6 * 0.1 - 7.5 * 0.3 + 1 = -0.55 -> nodata; sen2chain wrapped these.
    assert _run("EVI", B08=[1000], B04=[1000], B02=[3000]) == [NODATA]
    # A tiny positive denominator 0.5 + 0.6 - 2.09775 + 1 = 0.00225: 444 x 10000, clipped.
    assert _run("EVI", B08=[5000], B04=[1000], B02=[2797]) == [32766]


def test_apply_mask_hides_every_non_zero_mask_pixel() -> None:
    values = np.array([10, 20, 30, NODATA], dtype=np.int16)
    mask = np.array([0, 1, 255, 0], dtype=np.uint8)
    assert ix.apply_mask(values, mask).tolist() == [10, NODATA, NODATA, NODATA]


def test_mask_fill_keeps_every_int16_value_and_hides_the_rest() -> None:
    values = np.array([-32768, -1, 0, 32766, NODATA, -32768, 32766], dtype=np.int16)
    hidden = np.array([False, False, False, False, False, True, True])
    fill = ix.mask_fill(hidden)
    assert fill.dtype == np.int16 and fill.tolist() == [-32768] * 5 + [NODATA] * 2
    assert ix.apply_mask_fill(values, fill).tolist() == [
        -32768,
        -1,
        0,
        32766,
        NODATA,
        NODATA,
        NODATA,
    ]


def test_jp2_values_keep_nodata_apart_from_valid_values() -> None:
    values = np.array([-20000, -16384, 0, 16382, 16383, 20000, NODATA], dtype=np.int16)
    assert ix.to_jp2_values(values).tolist() == [
        -16384, -16384, 0, 16382, 16382, 16382, 16383,
    ]  # fmt: skip


def _plain_index(name: str, reflectance: dict[str, np.ndarray], nodata: np.ndarray) -> np.ndarray:
    """The formulas as whole-array numpy expressions, every non-finite value nodata."""
    definition = ix.INDICES[name]
    bands = [reflectance[band] for band in definition.bands]
    undefined = nodata.copy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if definition.kind == "nd":
            first, second = bands
            values = (first - second) / (first + second) * np.float32(10000)
            undefined |= first + second <= 0
            lo, hi = -10000, 10000
        elif definition.kind == "ireci":
            b07, b05, b06, b04 = bands
            values = b06 * (b07 - b04) / b05
            undefined |= b05 <= 0
            lo, hi = -32768, 32766
        elif definition.kind == "bi":
            first, second = bands
            values = np.sqrt((first * first + second * second) / np.float32(2))
            lo, hi = -32768, 32766
        else:
            red, nir, blue = (band / np.float32(10000) for band in bands)
            denominator = nir + np.float32(6) * red - np.float32(7.5) * blue + np.float32(1)
            values = np.float32(2.5) * (nir - red) / denominator * np.float32(10000)
            undefined |= denominator <= 0
            lo, hi = -32768, 32766
        undefined |= ~np.isfinite(values)
        out = np.trunc(np.clip(values, lo, hi)).astype(np.int16)
    out[undefined] = NODATA
    return out


@pytest.mark.parametrize("offset", [-1000, 0])
def test_blocked_formulas_equal_whole_array_expressions(offset: int) -> None:
    """Random DN (zeros, extremes, EVI's near-zero denominators) on a strip wider and
    taller than a block, with reused scratch buffers: every value as the plain formula."""
    rng = np.random.default_rng(5)
    shape = (37, ix.BLOCK_PIXELS // 8 + 3)  # blocks of 8 rows, the last one short
    bands = sorted({band for d in ix.INDICES.values() for band in d.bands})
    dn = {band: rng.integers(0, 12000, shape).astype(np.uint16) for band in bands}
    for band in bands:
        dn[band].flat[rng.integers(0, dn[band].size, 500)] = 0
        dn[band].flat[rng.integers(0, dn[band].size, 50)] = 65535
        dn[band].flat[rng.integers(0, dn[band].size, 50)] = 1
    # EVI denominators within a rounding error of zero: 0.5 + 0.6 - 7.5 B + 1 with
    # B around 0.28 (DN 2800 + offset), on both sides of zero.
    near = (slice(None), slice(0, 400))
    dn["B08"][near], dn["B04"][near] = 5000 - offset, 1000 - offset
    dn["B02"][near] = rng.integers(2790, 2810, (shape[0], 400)) - offset
    reflectance = {b: a.astype(np.float32) + np.float32(offset) for b, a in dn.items()}
    scratch = ix.Scratch()
    for name, definition in ix.INDICES.items():
        nodata = np.logical_or.reduce([dn[band] == 0 for band in definition.bands])
        values, bad = ix.index_values(name, reflectance, nodata=nodata, scratch=scratch)
        expected = _plain_index(name, reflectance, nodata)
        np.testing.assert_array_equal(values, expected, err_msg=name)
        np.testing.assert_array_equal(bad, expected == NODATA, err_msg=name)
        np.testing.assert_array_equal(ix.compute_index(name, reflectance, nodata=nodata), values)
        layers = [dn[band] == 0 for band in definition.bands]  # combined block by block
        by_band, _ = ix.index_values(name, reflectance, nodata=layers, scratch=scratch)
        np.testing.assert_array_equal(by_band, expected, err_msg=name)
        np.testing.assert_array_equal(np.logical_or.reduce(layers), nodata)
    evi = ix.compute_index("EVI", reflectance, nodata=np.zeros(shape, dtype=bool))
    assert (evi[near] == NODATA).any() and (evi[near] == 32766).any()
