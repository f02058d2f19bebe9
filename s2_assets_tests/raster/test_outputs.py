"""Output files: the running statistics' unmasked fast path agrees with the masked
reductions, and a file's record is written before the file is renamed into place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from s2_assets.raster.io import OutputFormat
from s2_assets.raster.outputs import OutputFile, StatsAccumulator
from s2_assets.raster.types import Grid, WrittenRaster

CRS_WKT = rasterio.crs.CRS.from_epsg(32740).to_wkt()


def _both(strips: list[np.ndarray], excluded: int) -> tuple[StatsAccumulator, StatsAccumulator]:
    slow, fast, told = StatsAccumulator(), StatsAccumulator(), StatsAccumulator()
    for values in strips:
        include = values != excluded
        counts = {"valid": int(include.sum()), "masked": 3, "nodata": int((~include).sum())}
        slow.add(values, include=include, **counts)
        fast.add_excluding(values, excluded=excluded, **counts)
        told.add_excluding(values, excluded=excluded, included=counts["valid"], **counts)
    assert told.result(1.0) == fast.result(1.0)
    return slow, fast


@pytest.mark.parametrize(
    ("dtype", "excluded", "low", "high"),
    [("int16", 32767, -32768, 32767), ("uint8", 255, 0, 256), ("int16", 0, -5, 6)],
)
def test_fast_statistics_equal_masked_reductions(
    dtype: str, excluded: int, low: int, high: int
) -> None:
    rng = np.random.default_rng(1)
    strips = [rng.integers(low, high, (40, 50)).astype(dtype) for _ in range(3)]
    strips[0][:] = excluded  # a strip with nothing included
    strips[1][5, 5] = np.iinfo(dtype).min  # extremes next to the excluded value
    strips[2][6, 6] = np.iinfo(dtype).max - 1 if excluded == np.iinfo(dtype).max else 7
    slow, fast = _both(strips, excluded)
    assert fast.result(0.0001) == slow.result(0.0001)
    assert fast.result(1.0).valid_pixels == slow.result(1.0).valid_pixels > 0


def test_nothing_included_gives_no_values() -> None:
    _, fast = _both([np.full((4, 4), 32767, np.int16)], 32767)
    stats = fast.result(1.0)
    assert stats.minimum is None and stats.maximum is None and stats.mean is None


def _output(path: Path, fmt: str) -> OutputFile:
    grid = Grid(64, 64, Affine(10, 0, 300000, 0, -10, 7800040), CRS_WKT)
    output = OutputFile(
        path, grid, kind="index", name="NDVI", mask_spec=None, dtype="int16", nodata=32767,
        output=OutputFormat(fmt=fmt, jp2_quality=25 if fmt == "jp2" else None), scale=0.0001,
    )  # fmt: skip
    values = np.arange(64 * 64, dtype=np.int16).reshape(64, 64)
    output.stats.add_excluding(values, excluded=32767, valid=values.size, masked=0, nodata=0)
    output.write(0, values)
    return output


@pytest.mark.parametrize("fmt", ["tif", "jp2"])
def test_the_record_is_written_from_the_encoded_file_before_the_rename(
    tmp_path: Path, fmt: str
) -> None:
    """What describes a file (its provenance record) is in place before the file is: a writer
    killed between the two never leaves a file under its final name without its record."""
    final = tmp_path / f"X_NDVI.{fmt}"
    seen: list[tuple[WrittenRaster, bytes, bool]] = []

    def record(written: WrittenRaster, encoded: Path) -> None:
        seen.append((written, encoded.read_bytes(), final.exists()))

    written = _output(final, fmt).publish("RdYlGn", record)
    ((described, content, final_existed),) = seen
    assert not final_existed
    assert described == written and written.path == final
    assert content == final.read_bytes() and written.size_bytes == len(content)


def test_a_writer_dying_in_the_record_leaves_no_file(tmp_path: Path) -> None:
    final = tmp_path / "X_NDVI.tif"

    def record(written: WrittenRaster, encoded: Path) -> None:
        raise OSError("disk full")

    output = _output(final, "tif")
    with pytest.raises(OSError):
        output.publish("RdYlGn", record)
    output.discard()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("block", [1, 7 * 50, 1 << 17])
def test_fast_statistics_in_blocks_of_any_size(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of one row, of seven rows (the last one short) and of the whole strip."""
    monkeypatch.setattr("s2_assets.raster.outputs.STATS_BLOCK_PIXELS", block)
    rng = np.random.default_rng(3)
    strips = [rng.integers(-32768, 32768, (45, 50)).astype(np.int16) for _ in range(2)]
    strips[0][44, 49] = 32766  # the largest included value, in the last row of the last block
    strips[1][:30] = 32767  # the first blocks hold nothing included
    slow, fast = _both(strips, 32767)
    assert fast.result(1.0) == slow.result(1.0)
    assert fast.result(1.0).maximum == 32766


def test_rows_too_wide_for_an_int32_sum_are_summed_in_int64() -> None:
    values = np.full((3, 70000), 32766, dtype=np.int16)  # a row sums to about 2.3e9
    values[1, ::3] = 32767
    slow, fast = _both([values], 32767)
    assert fast.result(1.0) == slow.result(1.0) and fast.result(1.0).mean == 32766
