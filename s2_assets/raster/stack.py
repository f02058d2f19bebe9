"""Index files of one tile as a lazy xarray time stack: ``(time, y, x)``, read window by window.

Nothing is read when a stack is opened: the ``DataArray`` wraps a backend array that xarray
indexes lazily (``.isel``/``.sel`` only narrow the window), and pixels are read from each
file, through rasterio windows at native resolution, when values are asked for (``.values``,
``.load()``, a reduction, a plot). A strip of rows therefore reads that strip of every file
and nothing else, which is what the monthly composite reduces, strip by strip.

Two views of the same files:

- ``decode=False``: the stored int16 values, every file's nodata (32767 for COGs, 16383 for
  sen2chain's JPEG2000) replaced by 32767, so "not 32767" means "valid" for all times.
- ``decode=True``: float32 physical values (stored value x the file's scale), NaN where no
  data; what ``.resample(time="1MS").mean()`` and ``.plot`` want.

The CRS is attached the CF way rioxarray reads: a scalar ``spatial_ref`` coordinate whose
``crs_wkt`` holds the WKT, named by the variable's ``grid_mapping`` attribute. Coordinates
are pixel centres. This module (with ``io``) touches rasterio; it knows nothing of Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from numpy.typing import NDArray
from rasterio.errors import RasterioError
from rasterio.windows import Window
from xarray.backends import BackendArray
from xarray.core import indexing

from s2_assets.raster.io import gdal_env
from s2_assets.raster.types import INDEX_NODATA, Grid, RasterError

# Index files and composites are int16; composite counts uint8 or uint16.
STACKABLE = ("int16", "uint8", "uint16")


@dataclass(frozen=True)
class StackFile:
    """One observation of a stack: its time, its file, and what it was made from."""

    time: datetime
    path: Path
    product: str = ""


@dataclass(frozen=True)
class _FileInfo:
    nodata: float | None
    scale: float
    dtype: str


def _describe(path: Path) -> tuple[Grid, _FileInfo]:
    try:
        with rasterio.open(path) as dataset:
            grid = Grid(
                width=int(dataset.width),
                height=int(dataset.height),
                transform=dataset.transform,
                crs_wkt=dataset.crs.to_wkt() if dataset.crs is not None else "",
            )
            dtype = str(dataset.dtypes[0])
            if dtype not in STACKABLE:
                raise RasterError(f"{path}: {dtype} pixels; expected one of {', '.join(STACKABLE)}")
            scale = float(dataset.scales[0]) if dataset.scales else 1.0
            return grid, _FileInfo(nodata=dataset.nodata, scale=scale, dtype=dtype)
    except RasterioError as exc:
        raise RasterError(f"cannot open raster {path}: {exc}") from exc


class _StackArray(BackendArray):
    """The (time, y, x) array xarray indexes lazily; reads happen in ``_read``."""

    def __init__(
        self, paths: Sequence[Path], infos: Sequence[_FileInfo], grid: Grid, *, decode: bool
    ) -> None:
        self.paths = list(paths)
        self.infos = list(infos)
        self.decode = decode
        self.shape = (len(self.paths), grid.height, grid.width)
        self.dtype = np.dtype(np.float32 if decode else infos[0].dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> Any:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple[int | slice, ...]) -> NDArray[Any]:
        picked, row_range, col_range = (
            range(size)[k] if isinstance(k, slice) else range(size)[k : k + 1 or None]
            for size, k in zip(self.shape, key, strict=True)
        )
        out = np.empty((len(picked), len(row_range), len(col_range)), dtype=self.dtype)
        if out.size:
            with gdal_env():
                for slot, t in enumerate(picked):
                    self._read_file(t, row_range, col_range, out[slot])
        # Integer keys drop their axis, as numpy does.
        drop = tuple(i for i, k in enumerate(key) if not isinstance(k, slice))
        return out.squeeze(axis=drop) if drop else out

    def _read_file(self, t: int, rows: range, cols: range, out: NDArray[Any]) -> None:
        """Read file ``t``'s ``rows`` x ``cols`` into ``out``: one window covering them,
        then their step (if any)."""
        top, left = min(rows), min(cols)
        window = Window(left, top, max(cols) - left + 1, max(rows) - top + 1)
        path, info = self.paths[t], self.infos[t]
        plain = rows.step == 1 and cols.step == 1 and not self.decode
        try:
            with rasterio.open(path, OVERVIEW_LEVEL="NONE") as dataset:
                # The common case (a strip of stored values) is read in place, no copy.
                values = dataset.read(1, window=window, out=out if plain else None)
        except RasterioError as exc:
            raise RasterError(f"cannot read {window} of {path}: {exc}") from exc
        values = values[:: abs(rows.step), :: abs(cols.step)]
        if rows.step < 0:
            values = values[::-1]
        if cols.step < 0:
            values = values[:, ::-1]
        nodata = INDEX_NODATA if info.nodata is None and info.dtype == "int16" else info.nodata
        if self.decode:
            decoded = values.astype(np.float32) * np.float32(info.scale)
            if nodata is not None:
                decoded[values == nodata] = np.nan
            out[...] = decoded
            return
        if not plain:
            out[...] = values
        if info.dtype == "int16" and nodata is not None and nodata != INDEX_NODATA:
            out[out == nodata] = INDEX_NODATA


def open_stack(files: Sequence[StackFile], *, decode: bool = False, name: str = "") -> xr.DataArray:
    """The files as one lazy ``(time, y, x)`` DataArray, sorted by time.

    Args:
        files: the observations; all on one grid (same size, transform and CRS).
        decode: float32 physical values with NaN for no data, instead of stored int16
            values with 32767 for no data.
        name: the DataArray's name (the index, say).

    Raises:
        RasterError: no file, a file unreadable or not int16, or files on different grids
            or with different scales (naming both files).
    """
    ordered = sorted(files, key=lambda f: (f.time, str(f.path)))
    if not ordered:
        raise RasterError("no file to stack")
    described = [_describe(f.path) for f in ordered]
    grid, first = described[0]
    for item, (other, info) in zip(ordered, described, strict=True):
        if other != grid:
            raise RasterError(
                f"{item.path} ({other.width}x{other.height}) is not on the grid of "
                f"{ordered[0].path} ({grid.width}x{grid.height})"
            )
        if info.dtype != first.dtype:
            raise RasterError(f"{item.path} is {info.dtype}, {ordered[0].path} is {first.dtype}")
        if info.scale != first.scale:
            raise RasterError(
                f"{item.path} has scale {info.scale}, {ordered[0].path} has {first.scale}"
            )
    array = _StackArray([f.path for f in ordered], [d[1] for d in described], grid, decode=decode)
    transform = grid.transform
    x = transform.c + (np.arange(grid.width) + 0.5) * transform.a
    y = transform.f + (np.arange(grid.height) + 0.5) * transform.e
    attrs: dict[str, Any] = {"scale_factor_stored": first.scale, "grid_mapping": "spatial_ref"}
    if not decode and first.nodata is not None:
        attrs["nodata"] = INDEX_NODATA if first.dtype == "int16" else first.nodata
    variable = xr.Variable(("time", "y", "x"), indexing.LazilyIndexedArray(array), attrs=attrs)
    return xr.DataArray(
        variable,
        coords={
            # Naive UTC datetimes: numpy's datetime64 has no time zone.
            "time": np.array([f.time.replace(tzinfo=None) for f in ordered], "datetime64[ns]"),
            "y": ("y", y, {"units": "m", "axis": "Y"}),
            "x": ("x", x, {"units": "m", "axis": "X"}),
            "product": ("time", [f.product for f in ordered]),
            "path": ("time", [str(f.path) for f in ordered]),
            "spatial_ref": ((), 0, spatial_ref_attrs(grid)),
        },
        name=name or None,
    )


def spatial_ref_attrs(grid: Grid) -> dict[str, str]:
    """CF grid-mapping attributes of ``grid`` (the ones rioxarray and GDAL read)."""
    t = grid.transform
    return {
        "crs_wkt": grid.crs_wkt,
        "spatial_ref": grid.crs_wkt,
        "GeoTransform": f"{t.c} {t.a} {t.b} {t.f} {t.d} {t.e}",
    }


def stack_grid(stack: xr.DataArray) -> Grid:
    """The grid of a stack opened by :func:`open_stack` (read from its first file)."""
    return _describe(Path(str(stack["path"].values[0])))[0]
