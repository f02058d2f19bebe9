"""A tile's index files through time as lazy xarray cubes, and where composites live.

:func:`open_cube` is the public entry point: every masked (or raw) index file of a tile,
or every monthly composite of it, as one ``xarray.Dataset`` with ``time``, ``y``, ``x``
coordinates and the CRS attached, read only when values are asked for::

    from s2_assets.outputs.cube import open_cube

    cube = open_cube("40KCB", "NDVI")                       # masked by the default mask
    point = cube.NDVI.sel(x=305000, y=7795000, method="nearest")   # one pixel, every date
    monthly = cube.NDVI.isel(x=slice(0, 500), y=slice(0, 500)).resample(time="1MS").mean()

Files are found in the library's tree (``data/INDICES/<INDEX>/<tile>/<L2A id>/`` and
``data/COMPOSITES/<INDEX>/<tile>/<YYYY-MM>/``); the time of an index file is its L2A's
sensing time, that of a composite the first day of its month. Pure: no Dagster.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import xarray as xr

from s2_assets.errors import S2AssetsError
from s2_assets.library.tree import Library
from s2_assets.products import ProductName, validate_tile_id
from s2_assets.raster.composite import STATISTICS
from s2_assets.raster.stack import StackFile, open_stack
from s2_assets.settings import default_root
from s2_assets.specs import DEFAULT_MASK_SPEC, INDEX_NAMES, parse_index_name, parse_mask_spec

SUFFIXES = (".tif", ".jp2")  # a COG is preferred over sen2chain's JPEG2000 of the same name


class CubeError(S2AssetsError, ValueError):
    """No file to build a cube from, or a request we cannot serve."""


def month_key(day: date) -> str:
    """``YYYY-MM`` of a day (the composites' partition key and folder name)."""
    return f"{day.year:04d}-{day.month:02d}"


def composites_root(lib: Library) -> Path:
    """``<root>/data/COMPOSITES``: beside sen2chain's ``INDICES`` (a folder of ours)."""
    return lib.root / "data" / "COMPOSITES"


def composite_dir(lib: Library, index: str, tile: str, month: str) -> Path:
    """``data/COMPOSITES/<INDEX>/<tile>/<YYYY-MM>``."""
    return composites_root(lib) / index.upper() / tile / month


def composite_stem(tile: str, month: str, index: str, mask_spec: str) -> str:
    """``<tile>_<YYYY-MM>_<INDEX>_<SPEC>``: composite names add ``_<STAT>.tif``."""
    return f"{tile}_{month}_{index.upper()}_{mask_spec}"


def index_files(
    lib: Library,
    tile: str,
    index: str,
    mask_spec: str | None,
    *,
    first: date | None = None,
    last: date | None = None,
) -> list[StackFile]:
    """The index files of ``tile`` masked by ``mask_spec`` (None: the raw index) whose L2A
    was sensed from ``first`` to ``last`` (inclusive), sorted by time.

    Folders that are not L2A ids are ignored (leftovers are the clean job's business).
    """
    name = parse_index_name(index)
    folder = lib.index_dir(name, tile, "x").parent
    if not folder.is_dir():
        return []
    suffix = f"_{name}" + (f"_{mask_spec}" if mask_spec else "")
    found = []
    for entry in folder.iterdir():
        try:
            product = ProductName.parse(entry.name)
        except ValueError:
            continue
        day = product.sensing.date()
        if (first and day < first) or (last and day > last) or not entry.is_dir():
            continue
        for extension in SUFFIXES:
            path = entry / f"{entry.name}{suffix}{extension}"
            if path.is_file():
                found.append(StackFile(product.sensing, path, entry.name))
                break
    return sorted(found, key=lambda f: (f.time, str(f.path)))


def masked_pairs(lib: Library, tile: str, first: date, last: date) -> set[tuple[str, str]]:
    """(index, mask spec) of every masked index file of ``tile`` sensed ``first``..``last``."""
    pairs: set[tuple[str, str]] = set()
    for name in INDEX_NAMES:
        folder = lib.index_dir(name, tile, "x").parent
        for entry in folder.iterdir() if folder.is_dir() else []:
            try:
                day = ProductName.parse(entry.name).sensing.date()
            except ValueError:
                continue
            if not first <= day <= last:
                continue
            prefix = f"{entry.name}_{name}_"
            for path in entry.iterdir():
                if path.suffix in SUFFIXES and path.name.startswith(prefix):
                    try:
                        pairs.add((name, str(parse_mask_spec(path.stem[len(prefix) :]))))
                    except S2AssetsError:
                        continue  # not a mask spec: someone else's file
    return pairs


def composite_files(
    lib: Library, tile: str, index: str, mask_spec: str, statistic: str
) -> list[StackFile]:
    """Every monthly composite of one statistic, sorted by month."""
    name = parse_index_name(index)
    folder = composites_root(lib) / name / tile
    found = []
    for month_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            start = datetime.strptime(month_dir.name, "%Y-%m")
        except ValueError:
            continue
        stem = composite_stem(tile, month_dir.name, name, mask_spec)
        path = month_dir / f"{stem}_{statistic.upper()}.tif"
        if path.is_file():
            found.append(StackFile(start, path, month_dir.name))
    return found


def open_cube(
    tile: str,
    index: str,
    *,
    mask: str | None = DEFAULT_MASK_SPEC,
    composites: bool = False,
    statistics: tuple[str, ...] = ("median", "mean", "max", "count"),
    first: date | None = None,
    last: date | None = None,
    library: Library | Path | str | None = None,
) -> xr.Dataset:
    """A tile's index files, or its monthly composites, as one lazy ``xarray.Dataset``.

    Values are float32 in physical units (stored value x the files' scale: NDVI in
    [-1, 1]), NaN where a pixel has no data or was masked; counts stay whole numbers.
    Coordinates: ``time`` (sensing time, or the first day of a composite's month), ``y``
    and ``x`` (pixel centres, metres of the tile's UTM zone), ``spatial_ref`` (the CRS as
    WKT, CF-style, as rioxarray reads it); per time ``product`` (the L2A id or month) and
    ``path`` (``path_<stat>`` for composites). Nothing is read until values are used: narrow with ``.sel``/``.isel`` first,
    as a whole tile is 10980 x 10980 pixels per date.

    Args:
        tile: MGRS tile id (``40KCB``).
        index: index name (``NDVI`` …), case-insensitive.
        mask: mask spec of the masked variant; None opens the raw index.
        composites: open ``data/COMPOSITES`` (one variable per statistic) instead of the
            per-acquisition files (one variable named after the index).
        statistics: the composite statistics to open (only with ``composites``).
        first, last: only sensing days (composite months) from ``first`` to ``last``.
        library: the library (or its root); default ``$S2_DATA_HOME``, else
            ``~/sen2chain_data``.

    Raises:
        CubeError: no file matches (naming where it looked).
        RasterError: files on different grids, unreadable files.
        IndexNameError, MaskSpecError: an unknown index or mask.
    """
    lib = library if isinstance(library, Library) else Library(Path(library or default_root()))
    tile = validate_tile_id(tile)
    name = parse_index_name(index)
    spec = str(parse_mask_spec(mask)) if mask else None
    attrs = {"tile": tile, "index": name, "mask": spec or "", "composites": int(composites)}
    if not composites:
        files = index_files(lib, tile, name, spec, first=first, last=last)
        if not files:
            raise CubeError(
                f"no {name}{'_' + spec if spec else ''} file of {tile} under "
                f"{lib.index_dir(name, tile, 'x').parent}"
            )
        stack = open_stack(files, decode=True, name=name)
        return xr.Dataset({name: stack}, attrs={**attrs, "crs_wkt": _wkt(stack)})
    if spec is None:
        raise CubeError("composites are made of masked indices: give a mask spec")
    unknown = sorted(set(statistics) - set(STATISTICS))
    if unknown:
        raise CubeError(f"unknown statistic {unknown[0]!r}; valid: {', '.join(STATISTICS)}")
    per_stat = {s: composite_files(lib, tile, name, spec, s) for s in statistics}
    # Only months that hold every statistic asked for, so the variables share one time axis.
    months = set.intersection(*(set(f.product for f in files) for files in per_stat.values()))
    months = {
        m
        for m in months
        if (first is None or m >= month_key(first)) and (last is None or m <= month_key(last))
    }
    if not months:
        raise CubeError(
            f"no {name} {spec} composite of {tile} with {', '.join(statistics)} under "
            f"{composites_root(lib) / name / tile}"
        )
    # Each statistic has its own files: their paths are ``path_<stat>`` coordinates.
    variables = {
        s: open_stack([f for f in files if f.product in months], decode=True, name=s).rename(
            {"path": f"path_{s}"}
        )
        for s, files in per_stat.items()
    }
    first_var = next(iter(variables.values()))
    return xr.Dataset(variables, attrs={**attrs, "crs_wkt": _wkt(first_var)})


def _wkt(stack: xr.DataArray) -> str:
    return str(stack["spatial_ref"].attrs["crs_wkt"])
