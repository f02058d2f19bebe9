"""What the asset checks look for, as pure functions over files: SAFEs complete, masks and
indices sound. No Dagster: ``s2_assets.assets.checks`` turns findings into asset checks.

- A SAFE is complete when its metadata is readable and of the right level, every band it lists
  is present (L2A: SCL and the 20 m cloud probability too), and every JPEG2000 in it is
  structurally complete and decodes a small window in its last tile (where a file cut short
  breaks first).
- A mask or index file is sound when it lies on the L2A's grid and CRS (masks: 20 m, indices:
  10 m), has one band of the right type, declares nodata as we write it, holds values in range
  (every pixel of a COG; JPEG2000 outputs only a decoded window, a full decode costing ~20 s
  per file), and has a valid COG layout.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from s2_assets.errors import MetadataError, S2AssetsError
from s2_assets.library.integrity import jp2_problem
from s2_assets.library.tree import Library
from s2_assets.products import (
    BANDS,
    NATIVE_RESOLUTION,
    ProductName,
    band_path,
    qi_path,
    read_metadata,
)
from s2_assets.raster.indices import INDICES
from s2_assets.raster.types import INDEX_NODATA, JP2_INDEX_NODATA, MASK_NODATA

"""Asset checks on the products: SAFEs complete, masks and indices sound.

- ``l1c`` / ``l2a`` ``safe_complete`` (blocking): metadata readable and of the right level,
  every band listed and present (L2A: SCL and the 20 m cloud probability too), and every
  JPEG2000 in the SAFE structurally complete (box walk to the end marker) and decoding a
  small window in its last tile (where a file cut short breaks first).
- ``cloudmask`` ``masks_valid`` and each index's ``index_valid`` (blocking): on the L2A's
  grid and CRS (masks: the 20 m grid, indices: the 10 m grid), one band of the right type,
  nodata declared as we write it, values in range (every pixel of a COG; JPEG2000 outputs
  only a decoded window, a full decode costing ~20 s per file), and COG layout valid.

The assets are partitioned and run ranged, so each check covers every (tile, date) of its
run and reports one result naming each file at fault and why. Run alone (the UI's "Execute
checks"), a check covers the partition of its asset's latest materialization. Blocking
checks stop what follows in the same run: a bad L2A never reaches the masks, a bad mask
never reaches the indices.
"""


SAMPLE_PX = 16  # side of the window every JPEG2000 must decode
SCAN_ROWS = 512  # rows per read when scanning a COG's values (one block row)
MAX_LISTED = 200  # failures listed in a check's metadata; the count is always exact
MASK_VALUES = (0, 1, MASK_NODATA)
INDEX_RANGES = {
    "nd": (-10000, 10000),
    "evi": (-32768, 32766),
    "ireci": (-32768, 32766),
    "bi": (0, 32766),
}
GridRef = tuple[CRS, Any, int, int]  # crs, transform, width, height
# All cores for JPEG2000 decoding, a bounded block cache. Not raster.io's gdal_env: it stops
# GDAL listing folders, and then a JPEG2000's .aux.xml (where its nodata lives) is not found.
READ_ENV = {"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_CACHEMAX": 256}
L2A_BANDS = tuple(b for b in BANDS if b != "B10")  # Sen2Cor drops the cirrus band


# ----------------------------------------------------------------------------- SAFEs


def jp2_decode_problem(path: Path) -> str | None:
    """Why a JPEG2000 is broken (structure, or a window of its last tile fails to decode)."""
    if (problem := jp2_problem(path)) is not None:
        return problem
    try:
        with rasterio.open(path, OVERVIEW_LEVEL="NONE") as dataset:
            width, height = min(SAMPLE_PX, dataset.width), min(SAMPLE_PX, dataset.height)
            window = Window(dataset.width - width, dataset.height - height, width, height)
            dataset.read(1, window=window)
    except RasterioError as exc:
        return f"does not decode ({exc})"
    return None


def safe_problems(safe: Path, level: str) -> list[str]:
    """What is wrong with the SAFE of a ``level`` product; empty when it is complete."""
    try:
        metadata = read_metadata(safe)
    except MetadataError as exc:
        return [str(exc)]
    problems = []
    if metadata.level != level:
        problems.append(f"{safe.name}: metadata says level {metadata.level}, expected {level}")
    layers = (
        [(b, None) for b in BANDS]
        if level == "L1C"
        else [(b, NATIVE_RESOLUTION[b]) for b in L2A_BANDS]
    )
    for band, resolution in layers + ([("SCL", 20)] if level == "L2A" else []):
        try:
            path = band_path(safe, metadata, band, resolution)
        except MetadataError as exc:
            problems.append(str(exc))
            continue
        if not path.is_file():
            problems.append(f"{safe.name}/{path.relative_to(safe)}: listed but missing")
    missing = [f for f in metadata.image_files if not (safe / f"{f}.jp2").is_file()]
    problems += [f"{safe.name}/{f}.jp2: listed but missing" for f in missing]
    if level == "L2A":
        try:
            qi_path(safe, "MSK_CLDPRB_20m.jp2")
        except MetadataError as exc:
            problems.append(str(exc))
    for path in sorted(safe.rglob("*.jp2")):
        if (problem := jp2_decode_problem(path)) is not None:
            problems.append(f"{safe.name}/{path.relative_to(safe)}: {problem}")
    return list(dict.fromkeys(problems))  # a missing band is listed once


# ------------------------------------------------------------------- masks and indices


def cog_problems(dataset: Any, path: Path) -> list[str]:
    """Why an open GeoTIFF is not a valid Cloud-Optimized GeoTIFF: tiled, internal overviews
    when larger than a block, GDAL's COG header intact, IFDs before the data, and the data
    of the smallest overview first (so a client reads an overview without the full image)."""
    if dataset.driver != "GTiff":
        return [f"{path.name}: driver {dataset.driver}, not a GeoTIFF"]
    block_rows, block_cols = dataset.block_shapes[0]
    # As GDAL's validator: below 512 px tiling does not matter (one block is the image).
    if max(dataset.width, dataset.height) > 512 and (
        block_cols >= dataset.width or block_rows != block_cols
    ):
        return [f"{path.name}: not tiled ({block_cols}x{block_rows} blocks)"]
    problems = []
    overviews = dataset.overviews(1)
    if max(dataset.width, dataset.height) > block_cols and not overviews:
        problems.append(f"{path.name}: no internal overviews ({dataset.width}x{dataset.height})")
    with path.open("rb") as handle:
        head = handle.read(1024)
    if b"LAYOUT=IFDS_BEFORE_DATA" not in head:
        problems.append(f"{path.name}: no COG layout header (not written by GDAL's COG driver)")
    elif b"KNOWN_INCOMPATIBLE_EDITION=YES" in head:
        problems.append(f"{path.name}: edited after writing; the COG layout is broken")

    def offset(item: str, level: int | None) -> int:
        return int(dataset.get_tag_item(item, "TIFF", bidx=1, ovr=level) or 0)

    ifds = [offset("IFD_OFFSET", None)] + [offset("IFD_OFFSET", i) for i in range(len(overviews))]
    data = [offset("BLOCK_OFFSET_0_0", None)]
    data += [offset("BLOCK_OFFSET_0_0", i) for i in range(len(overviews))]
    first_data = min((d for d in data if d), default=0)  # 0: a block left empty (sparse)
    if ifds != sorted(ifds) or (first_data and max(ifds) > first_data):
        problems.append(f"{path.name}: IFDs not all before the image data ({ifds})")
    if data != sorted(data, reverse=True):
        problems.append(f"{path.name}: image data not ordered smallest overview first")
    return problems


def _strips(dataset: Any, rows: int) -> Iterator[np.ndarray]:
    for start in range(0, dataset.height, rows):
        height = min(rows, dataset.height - start)
        yield dataset.read(1, window=Window(0, start, dataset.width, height))


def value_problem(
    dataset: Any,
    path: Path,
    *,
    allowed: tuple[int, ...] | None,
    bounds: tuple[int, int] | None,
    nodata: int,
) -> str | None:
    """Why the stored values are out of range: not in ``allowed``, or outside ``bounds``
    (nodata aside). COGs are scanned whole, strip by strip; JPEG2000 only in a sample."""
    if path.suffix == ".tif":
        strips: Iterable[np.ndarray] = _strips(dataset, SCAN_ROWS)
    else:
        size = min(SAMPLE_PX * 8, dataset.width), min(SAMPLE_PX * 8, dataset.height)
        strips = [dataset.read(1, window=Window(0, 0, *size))]
    bad, low, high = 0, None, None
    for values in strips:
        if allowed is not None:
            outside = ~np.isin(values, allowed)
        else:
            assert bounds is not None
            outside = ((values < bounds[0]) | (values > bounds[1])) & (values != nodata)
        if outside.any():  # index into the strip only when something is wrong: cheaper
            wrong = values[outside]
            bad += int(wrong.size)
            low = int(wrong.min()) if low is None else min(low, int(wrong.min()))
            high = int(wrong.max()) if high is None else max(high, int(wrong.max()))
    if not bad:
        return None
    expected = f"one of {allowed}" if allowed is not None else f"in {list(bounds or ())}"
    return f"{path.name}: {bad} pixel(s) not {expected} (from {low} to {high})"


@dataclass
class FileFindings:
    """What is wrong with one file: ``errors`` make a check fail and block what follows;
    ``warnings`` make it fail with WARN severity, blocking nothing."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __iadd__(self, other: FileFindings) -> FileFindings:
        self.errors += other.errors
        self.warnings += other.warnings
        return self


def raster_problems(
    path: Path, *, kind: str, index: str | None, grid: GridRef | None
) -> FileFindings:
    """What is wrong with one mask (``kind`` "mask") or index file.

    ``grid`` is the L2A's (crs, transform, width, height) the file must be on, or None when
    the L2A is gone and there is nothing to compare with. Values out of range in a lossy
    JPEG2000 index (sen2chain's format) are warnings: lossy coding moves values, nodata
    included, so the option cannot promise exact values.
    """
    jp2 = path.suffix == ".jp2"
    if jp2 and (problem := jp2_decode_problem(path)) is not None:
        return FileFindings([f"{path.name}: {problem}"])
    try:
        dataset = rasterio.open(path, OVERVIEW_LEVEL="NONE") if jp2 else rasterio.open(path)
    except RasterioError as exc:
        return FileFindings([f"{path.name}: cannot open ({exc})"])
    with dataset:
        dtype = "uint8" if kind == "mask" else "int16"
        nodata = MASK_NODATA if kind == "mask" else JP2_INDEX_NODATA if jp2 else INDEX_NODATA
        if dataset.count != 1 or dataset.dtypes[0] != dtype:
            found = f"{dataset.count} band(s) of {dataset.dtypes[0]}"
            # Values of the wrong type say nothing more.
            return FileFindings([f"{path.name}: {found}, expected 1 of {dtype}"])
        result = FileFindings()
        if dataset.nodata is None:
            result.errors.append(f"{path.name}: no nodata declared (expected {nodata})")
        elif dataset.nodata != nodata:
            result.errors.append(f"{path.name}: nodata {dataset.nodata:g}, expected {nodata}")
        if grid is not None:
            result.errors += grid_problems(dataset, path, grid)
        if not jp2:
            result.errors += cog_problems(dataset, path)
        if kind == "mask":
            problem = value_problem(dataset, path, allowed=MASK_VALUES, bounds=None, nodata=nodata)
        else:
            bounds = INDEX_RANGES[INDICES[str(index)].kind]
            problem = value_problem(dataset, path, allowed=None, bounds=bounds, nodata=nodata)
        if problem and jp2 and kind == "index":
            result.warnings.append(
                f"{problem}; lossy JPEG2000 keeps neither values nor nodata exact"
            )
        elif problem:
            result.errors.append(problem)
        return result


def grid_problems(dataset: Any, path: Path, grid: GridRef) -> list[str]:
    """Why an open raster is not on ``grid``: another CRS, size or transform."""
    crs, transform, width, height = grid
    if dataset.crs is None or dataset.crs != crs:
        found = dataset.crs.to_string() if dataset.crs else "none"
        return [f"{path.name}: CRS {found}, the L2A's is {crs.to_string()}"]
    size = (dataset.width, dataset.height)
    if size != (width, height) or not dataset.transform.almost_equals(transform):
        return [
            f"{path.name}: grid {size[0]}x{size[1]} at {tuple(dataset.transform)[:6]}, "
            f"not the L2A's {width}x{height} at {tuple(transform)[:6]}"
        ]
    return []


def l2a_grid(lib: Library, tile: str, l2a_id: str, resolution: int) -> GridRef | None:
    """The (crs, transform, width, height) of an L2A's ``resolution`` grid, from its SAFE, or
    from the SCL side product when the SAFE was removed; None when neither is there."""
    safe = lib.level_dir("L2A", tile) / f"{l2a_id}.SAFE"
    if safe.is_dir():
        try:
            source = band_path(
                safe, read_metadata(safe), "B04" if resolution == 10 else "SCL", resolution
            )
        except MetadataError:
            return None
    else:
        scl = sorted(lib.mask_dir(tile, l2a_id).glob("T*_SCL_20m.jp2"))
        if not scl:
            return None
        source = scl[0]
    try:
        with rasterio.open(source) as dataset:
            crs, transform, width, height = (
                dataset.crs,
                dataset.transform,
                dataset.width,
                dataset.height,
            )
    except RasterioError:
        return None  # the SAFE check reports the broken band
    if resolution == 10 and transform.a == 20:
        transform, width, height = transform * transform.scale(0.5), width * 2, height * 2
    return crs, transform, width, height


# ------------------------------------------------------------------- what a run covers


def l2a_ids(lib: Library, tile: str, day: Any) -> list[str]:
    """The L2A ids of (tile, day): in the library, or only in the mask/index folders."""
    ids = {p.id for p in lib.products("L2A", tile, day)}
    tile_dir = lib.mask_dir(tile, "_").parent
    for folder in [tile_dir, *(lib.index_dir(n, tile, "_").parent for n in INDICES)]:
        for entry in folder.iterdir() if folder.is_dir() else ():
            try:
                if ProductName.parse(entry.name).date == day:
                    ids.add(entry.name)
            except S2AssetsError:
                continue
    return sorted(ids)


def mask_files(lib: Library, tile: str, l2a_id: str) -> list[Path]:
    pattern = re.compile(rf"^{re.escape(l2a_id)}_CM\d{{3}}[\w-]*\.(tif|jp2)$")
    folder = lib.mask_dir(tile, l2a_id)
    return sorted(p for p in folder.iterdir() if pattern.match(p.name)) if folder.is_dir() else []


def index_files(lib: Library, index: str, tile: str, l2a_id: str) -> list[Path]:
    pattern = re.compile(rf"^{re.escape(l2a_id)}_{index}(_CM\d{{3}}[\w-]*)?\.(tif|jp2)$")
    folder = lib.index_dir(index, tile, l2a_id)
    return sorted(p for p in folder.iterdir() if pattern.match(p.name)) if folder.is_dir() else []
