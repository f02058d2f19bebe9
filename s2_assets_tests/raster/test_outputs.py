"""Running statistics: the unmasked fast path agrees with the masked reductions."""

from __future__ import annotations

import numpy as np
import pytest

from s2_assets.raster.outputs import StatsAccumulator


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
