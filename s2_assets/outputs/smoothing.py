"""Savitzky-Golay smoothing of time series per polygon, as sen2chain's extraction offers it.

For one polygon's rows (sen2chain's behaviour, re-implemented from its description):

1. valid rows are those whose ``nodata / max(count)`` (max over the polygon's rows) is
   below ``cover_limit`` (0.75): mostly cloudy or cut observations are left out;
2. the valid means, in physical units (stored value x 0.0001), go on a regular grid of
   ``step_days`` (5) days from the first valid day to the last: each observation to its
   nearest grid day, several on one grid day averaged;
3. empty grid days are filled with the centred rolling mean of a 3-day window, the window
   doubled (3, 6, 12, …) until nothing is empty;
4. ``scipy.signal.savgol_filter`` with ``window`` (11) and polynomial ``order`` (3) smooths
   the grid; a series shorter than the window uses the longest odd window it holds, and
   one too short for any window above ``order`` is not smoothed (NaN).

Every row of the polygon (valid or not) gets the smoothed value of its grid day; rows before
the first or after the last valid day get NaN. sen2chain's option of first filling gaps
with the same position of other years (3+ years of data) is not offered. Pure: no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import savgol_filter

STORED_SCALE = 1e-4


@dataclass(frozen=True)
class Smoothing:
    """sen2chain's defaults: window 11, polynomial order 3, 75 % cover limit, 5-day grid."""

    window: int = 11
    order: int = 3
    cover_limit: float = 0.75
    step_days: int = 5

    def __post_init__(self) -> None:
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"smoothing window {self.window}: valid: an odd number >= 3")
        if not 0 <= self.order < self.window:
            raise ValueError(
                f"smoothing order {self.order}: valid: 0 .. window - 1 ({self.window - 1})"
            )


def _fill_gaps(values: pd.Series) -> pd.Series:
    window = 3
    filled = values.copy()
    while filled.isna().any():
        means = filled.rolling(window, center=True, min_periods=1).mean()
        filled = filled.fillna(means)
        window *= 2
    return filled


def smooth_polygon(rows: pd.DataFrame, options: Smoothing) -> pd.Series:
    """The smoothed value (physical units) for each of one polygon's rows (same index)."""
    result = pd.Series(np.nan, index=rows.index, dtype=np.float64)
    days = pd.to_datetime(rows["date"]).dt.normalize()
    most = rows["count"].max()
    if not most or pd.isna(most):
        return result
    valid = (rows["nodata"] / most < options.cover_limit) & rows["mean"].notna()
    if not valid.any():
        return result
    first = days[valid].min()
    slots = ((days - first).dt.days / options.step_days).round().astype(int)
    last_slot = int(slots[valid].max())
    grid = pd.Series(np.nan, index=range(last_slot + 1), dtype=np.float64)
    means = (rows.loc[valid, "mean"] * STORED_SCALE).groupby(slots[valid]).mean()
    grid.loc[means.index] = means.to_numpy()
    filled = _fill_gaps(grid).to_numpy()
    window = min(options.window, len(filled) if len(filled) % 2 else len(filled) - 1)
    if window <= options.order:
        return result
    smoothed = savgol_filter(filled, window_length=window, polyorder=options.order)
    inside = (slots >= 0) & (slots <= last_slot)
    result[inside] = smoothed[slots[inside].to_numpy()]
    return result


def smooth(frame: pd.DataFrame, options: Smoothing) -> pd.Series:
    """The ``smoothed`` column of a time-series table (every polygon on its own)."""
    out = pd.Series(np.nan, index=frame.index, dtype=np.float64)
    for _, rows in frame.groupby("fid", sort=False):
        out[rows.index] = smooth_polygon(rows.sort_values("date"), options)
    return out
