"""The two entry points the assets call: cloud masks and spectral indices of one L2A.

Both stream their inputs strip by strip (each band decoded once, in whole JPEG2000 tile
rows, the next chunk decoded while the current strip is computed) and write every output
strip by strip, so memory depends on the strip size, not on the tile size. Strips carry
enough context rows for dilations and bilinear upsampling that the result is
bit-identical to a whole-array computation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from s2_assets.products import NATIVE_RESOLUTION, ProductMetadata, band_path, qi_path, read_metadata
from s2_assets.raster import indices as ix
from s2_assets.raster import masks as mk
from s2_assets.raster.io import BandReader, OutputFormat, gdal_env
from s2_assets.raster.outputs import OutputFile
from s2_assets.raster.resample import (
    upsample2_bilinear_float32,
    upsample2_nearest,
    upsample2_touched,
)
from s2_assets.raster.strips import RowStream, strip_height, strips
from s2_assets.raster.types import (
    INDEX_NODATA,
    JP2_INDEX_NODATA,
    MASK_NODATA,
    Grid,
    RasterError,
    SideProducts,
    WrittenRaster,
)
from s2_assets.specs import MaskSpec, parse_index_name, parse_mask_spec

FORMATS = ("tif", "jp2")
PUBLISH_WORKERS = 2  # COG encoding is mostly single-threaded: two at a time fill both cores
COMPUTE_ROWS = 512  # 10 m rows computed at once: about 45 MB per float32 band strip


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise RasterError(f"unknown output format {fmt!r}; valid: {', '.join(FORMATS)}")


@contextlib.contextmanager
def _streams(
    paths: Mapping[str, Path], *, chunk_rows: int | None
) -> Iterator[tuple[dict[str, BandReader], dict[str, RowStream]]]:
    """Open every input and a read-ahead row stream over each, closed on exit."""
    with gdal_env(), ThreadPoolExecutor(max_workers=1) as executor, contextlib.ExitStack() as stack:
        readers = {name: stack.enter_context(BandReader(path)) for name, path in paths.items()}
        streams: dict[str, RowStream] = {}
        try:
            for name, reader in readers.items():
                streams[name] = RowStream(
                    reader,
                    height=reader.grid.height,
                    chunk_rows=chunk_rows or strip_height(reader.block_rows),
                    executor=executor,
                )
            yield readers, streams
        finally:
            for stream in streams.values():
                stream.close()


@contextlib.contextmanager
def _outputs() -> Iterator[list[OutputFile]]:
    """Outputs opened inside the block; every unpublished one is discarded on exit."""
    files: list[OutputFile] = []
    try:
        yield files
    finally:
        for output in files:
            output.discard()


def _publish_all(files: Sequence[OutputFile], ramps: Sequence[str | None]) -> list[WrittenRaster]:
    """Encode and publish every output, two at a time, in order."""
    with ThreadPoolExecutor(max_workers=PUBLISH_WORKERS) as pool:
        return list(pool.map(lambda pair: pair[0].publish(pair[1]), zip(files, ramps, strict=True)))


def _same_grid(readers: Mapping[str, BandReader], names: Sequence[str]) -> Grid:
    grids = {name: readers[name].grid for name in names}
    first_name, first = next(iter(grids.items()))
    for name, grid in grids.items():
        if grid != first:
            raise RasterError(
                f"{readers[name].path.name} ({grid.width}x{grid.height}) is not on the grid of "
                f"{readers[first_name].path.name} ({first.width}x{first.height})"
            )
    return first


# ---------------------------------------------------------------------------------- masks


def _mask_inputs(
    needed: set[str],
    *,
    product_id: str,
    safe_dir: Path | None,
    side_products: SideProducts | None,
    metadata: ProductMetadata | None,
) -> tuple[dict[str, Path], int]:
    """Paths of the mask inputs and the B11 offset, from the L2A or its side products."""
    if safe_dir is not None and safe_dir.is_dir():
        metadata = metadata or read_metadata(safe_dir)
        paths = {
            "SCL": band_path(safe_dir, metadata, "SCL", 20),
            "CLDPRB": qi_path(safe_dir, "MSK_CLDPRB_20m.jp2"),
            "B11": band_path(safe_dir, metadata, "B11", 20),
        }
        return {name: paths[name] for name in sorted(needed)}, metadata.offset("B11")
    if side_products is None:
        raise RasterError(
            f"{product_id}: no L2A SAFE ({safe_dir}) and no side products "
            "(MSK_CLDPRB_20m.jp2, T<tile>_<datetime>_SCL_20m.jp2) to compute cloud masks from"
        )
    if "B11" in needed:
        raise RasterError(
            f"{product_id}: CM002-B11 needs band B11 of the L2A, which was removed; the side "
            "products only allow CM001, CM003 and CM004"
        )
    paths = {"SCL": side_products.scl, "CLDPRB": side_products.cldprb}
    return {name: paths[name] for name in sorted(needed)}, 0


def compute_cloud_masks(
    *,
    product_id: str,
    safe_dir: Path | None,
    side_products: SideProducts | None,
    metadata: ProductMetadata | None,
    specs: Sequence[MaskSpec | str],
    out_dir: Path,
    fmt: str = "tif",
    strip_rows: int | None = None,
) -> list[WrittenRaster]:
    """Compute and write one cloud mask per spec for one L2A product.

    Inputs come from the L2A SAFE when ``safe_dir`` exists, else from ``side_products``.
    Each mask is written to ``<out_dir>/<product_id>_<SPEC>.tif`` (uint8 COG: 1 masked,
    0 clear, 255 no data; the source's CRS and transform), or ``.jp2`` (lossless
    JPEG2000) when ``fmt`` is "jp2". CM002 is computed with its CM001 even when CM001
    itself is not requested.

    Args:
        product_id: the L2A id, for file names and messages.
        safe_dir: the unpacked L2A, or None when it was removed.
        side_products: the copies of SCL and cloud probability in the mask folder.
        metadata: the L2A's parsed metadata (read from ``safe_dir`` when None).
        specs: mask specs (parsed or as strings); duplicates are computed once.
        out_dir: the folder to write into (created if missing).
        fmt: "tif" or "jp2".
        strip_rows: 20 m rows per strip; by default whole JPEG2000 tile rows.

    Returns:
        One :class:`WrittenRaster` per distinct spec, in the order given.

    Raises:
        RasterError: inputs missing, unreadable or on different grids.
        MaskSpecError: a spec string that is not a valid mask spec.
        MetadataError: the SAFE lacks an input listed by its metadata.
    """
    _check_format(fmt)
    parsed = tuple(
        dict.fromkeys(s if isinstance(s, MaskSpec) else parse_mask_spec(s) for s in specs)
    )
    if not parsed:
        return []
    needed = {name for spec in parsed for name in mk.INPUTS[spec.version]}
    paths, b11_offset = _mask_inputs(
        needed, product_id=product_id, safe_dir=safe_dir, side_products=side_products,
        metadata=metadata,
    )  # fmt: skip
    halo = max(mk.mask_halo(spec) for spec in parsed)
    output = OutputFormat(fmt=fmt, overview_resampling="NEAREST")
    with _streams(paths, chunk_rows=strip_rows) as (readers, streams), _outputs() as files:
        grid = _same_grid(readers, sorted(paths))
        rows = strip_rows or strip_height(readers["SCL"].block_rows)
        for spec in parsed:
            files.append(
                OutputFile(
                    out_dir / f"{product_id}_{spec}{output.suffix}", grid, kind="mask",
                    name=str(spec), mask_spec=None, dtype="uint8", nodata=MASK_NODATA,
                    output=output,
                )
            )  # fmt: skip
        for start, stop in strips(grid.height, rows):
            window = {
                name: stream.rows(start - halo, stop + halo) for name, stream in streams.items()
            }
            inner = slice(start - max(start - halo, 0), stop - max(start - halo, 0))
            computed = mk.compute_masks(parsed, window, b11_offset=b11_offset)
            inputs = {name: array[inner] for name, array in window.items()}
            for spec, file in zip(parsed, files, strict=True):
                stored = mk.encode_mask(computed[spec][inner], mk.mask_nodata(inputs, spec))
                file.write(start, stored)
                # Mask statistics: values over pixels with data (so the mean is the masked
                # share), counts split into clear (valid), masked and no data.
                has_data = stored != MASK_NODATA
                masked = int(np.count_nonzero(stored == 1))
                with_data = int(np.count_nonzero(has_data))
                file.stats.add(
                    stored, include=has_data, valid=with_data - masked, masked=masked,
                    nodata=stored.size - with_data,
                )  # fmt: skip
                file.sampler.take_mask(start, stored, nodata=MASK_NODATA)
        return _publish_all(files, [None] * len(files))


# -------------------------------------------------------------------------------- indices


class _IndexStrip:
    """The inputs of one 10 m strip: offset-corrected bands and where they have no data."""

    def __init__(self) -> None:
        self.reflectance: dict[str, NDArray[np.float32]] = {}
        self.nodata: dict[str, NDArray[np.bool_]] = {}

    def add(self, band: str, dn: NDArray[Any], *, offset: int, nodata: NDArray[np.bool_]) -> None:
        values = dn if dn.dtype == np.float32 else dn.astype(np.float32)
        if offset:
            values += np.float32(offset)
        self.reflectance[band] = values
        self.nodata[band] = nodata

    def nodata_of(self, bands: Sequence[str]) -> NDArray[np.bool_]:
        combined = self.nodata[bands[0]].copy()
        for band in bands[1:]:
            combined |= self.nodata[band]
        return combined


def _read_index_strip(
    bands: Sequence[str],
    streams: Mapping[str, RowStream],
    metadata: ProductMetadata,
    start: int,
    stop: int,
) -> _IndexStrip:
    strip = _IndexStrip()
    for band in bands:
        if NATIVE_RESOLUTION[band] == 10:
            dn = streams[band].rows(start, stop)
            strip.add(band, dn, offset=metadata.offset(band), nodata=dn == 0)
        else:
            # One 20 m row of context each side: the 10 m pixels on the strip's first and
            # last rows blend with it, exactly as a whole-band bilinear read does.
            padded = streams[band].rows_edge_padded(start // 2 - 1, stop // 2 + 1)
            strip.add(
                band, upsample2_bilinear_float32(padded), offset=metadata.offset(band),
                nodata=upsample2_touched(padded == 0),
            )  # fmt: skip
    return strip


def _check_index_grids(
    readers: Mapping[str, BandReader], bands: Sequence[str], masks: Sequence[str]
) -> Grid:
    fine = [b for b in bands if NATIVE_RESOLUTION[b] == 10]
    grid = _same_grid(readers, fine)
    for name in [b for b in bands if NATIVE_RESOLUTION[b] != 10] + list(masks):
        coarse = readers[name].grid
        if coarse != grid and not grid.is_double_of(coarse):
            raise RasterError(
                f"{readers[name].path.name} ({coarse.width}x{coarse.height}) is neither on the "
                f"10 m grid ({grid.width}x{grid.height}) nor on the 20 m grid that halves it"
            )
    return grid


def compute_indices(
    *,
    product_id: str,
    safe_dir: Path,
    metadata: ProductMetadata,
    indices: Sequence[str],
    masks: Mapping[str, Path],
    out_dir_for: Callable[[str], Path],
    fmt: str = "tif",
    strip_rows: int | None = None,
) -> list[WrittenRaster]:
    """Compute and write the requested indices of one L2A, raw and once per mask.

    Every band the indices need is decoded once. For each index, writes
    ``<id>_<INDEX>.tif`` and ``<id>_<INDEX>_<SPEC>.tif`` per entry of ``masks`` into
    ``out_dir_for(INDEX)``: int16 COG, nodata 32767, scale 0.0001 recorded. ``fmt`` "jp2"
    writes sen2chain's lossy 15-bit JPEG2000 instead (nodata 16383).

    Args:
        product_id: the L2A id, for file names.
        safe_dir: the unpacked L2A.
        metadata: its parsed metadata (image paths, BOA offsets, quantification).
        indices: index names (case-insensitive); duplicates are computed once.
        masks: mask spec -> mask file (20 m or 10 m; any non-zero pixel hides the index).
        out_dir_for: the folder for an index name (created if missing).
        fmt: "tif" or "jp2".
        strip_rows: 10 m rows per strip (even); by default 512.

    Returns:
        Per index, the raw file then one per mask, in the order given.

    Raises:
        IndexNameError / MaskSpecError: an unknown index name or mask spec.
        RasterError: a band or mask unreadable or on an unexpected grid.
        MetadataError: a band missing from the product's metadata.
    """
    _check_format(fmt)
    names = tuple(dict.fromkeys(parse_index_name(name) for name in indices))
    if not names:
        return []
    mask_paths = {str(parse_mask_spec(spec)): Path(path) for spec, path in masks.items()}
    bands = ix.bands_needed(names)
    rows = strip_rows or COMPUTE_ROWS
    if rows % 2:
        raise RasterError(f"strip_rows must be even (20 m rows cover two 10 m rows), not {rows}")
    paths = {band: band_path(safe_dir, metadata, band, NATIVE_RESOLUTION[band]) for band in bands}
    paths.update({f"mask:{spec}": path for spec, path in mask_paths.items()})
    with _streams(paths, chunk_rows=strip_rows) as (readers, streams), _outputs() as files:
        grid = _check_index_grids(readers, bands, [f"mask:{spec}" for spec in mask_paths])
        plan = _plan_index_outputs(names, mask_paths, grid, product_id, out_dir_for, fmt, metadata)
        files.extend(file for _, file in plan)
        for start, stop in strips(grid.height, rows):
            strip = _read_index_strip(bands, streams, metadata, start, stop)
            mask_strips = {
                spec: _mask_rows(streams[f"mask:{spec}"], grid, start, stop) for spec in mask_paths
            }
            _write_index_strip(names, plan, strip, mask_strips, start, fmt)
        return _publish_all([f for _, f in plan], [ix.INDICES[f.name].ramp for _, f in plan])


def _mask_rows(stream: RowStream, grid: Grid, start: int, stop: int) -> NDArray[np.bool_]:
    """Where a mask hides the 10 m strip: 20 m masks map to 2 x 2 pixels (nearest)."""
    if stream.height == grid.height:
        return np.asarray(stream.rows(start, stop) != 0)
    return upsample2_nearest(np.asarray(stream.rows(start // 2, stop // 2) != 0))


def _plan_index_outputs(
    names: Sequence[str],
    mask_paths: Mapping[str, Path],
    grid: Grid,
    product_id: str,
    out_dir_for: Callable[[str], Path],
    fmt: str,
    metadata: ProductMetadata,
) -> list[tuple[str | None, OutputFile]]:
    """(mask spec or None for raw, output file) for every index, raw first."""
    plan: list[tuple[str | None, OutputFile]] = []
    for name in names:
        definition = ix.INDICES[name]
        output = OutputFormat(
            fmt=fmt,
            overview_resampling="NEAREST",
            jp2_quality=definition.jp2_quality if fmt == "jp2" else None,
        )
        scale = 1 / ix.ND_SCALE if definition.scaled else 1 / metadata.quantification
        nodata = JP2_INDEX_NODATA if fmt == "jp2" else INDEX_NODATA
        folder = out_dir_for(name)
        for spec in (None, *mask_paths):
            stem = f"{product_id}_{name}" + (f"_{spec}" if spec else "")
            plan.append(
                (spec, OutputFile(
                    folder / f"{stem}{output.suffix}", grid, kind="index", name=name,
                    mask_spec=spec, dtype="int16", nodata=nodata, output=output, scale=scale,
                ))
            )  # fmt: skip
    return plan


def _write_index_strip(
    names: Sequence[str],
    plan: Sequence[tuple[str | None, OutputFile]],
    strip: _IndexStrip,
    mask_strips: Mapping[str, NDArray[np.bool_]],
    start: int,
    fmt: str,
) -> None:
    by_index: dict[str, list[tuple[str | None, OutputFile]]] = {}
    for spec, file in plan:
        by_index.setdefault(file.name, []).append((spec, file))
    # One fill per mask for the whole strip, shared by every index it masks.
    fills = {spec: ix.mask_fill(hidden) for spec, hidden in mask_strips.items()}
    for name in names:
        definition = ix.INDICES[name]
        values = ix.compute_index(name, strip.reflectance, nodata=strip.nodata_of(definition.bands))
        valid = values != INDEX_NODATA
        valid_count = int(np.count_nonzero(valid))
        for spec, file in by_index[name]:
            if spec is None:
                stored, hidden, kept_count = values, None, valid_count
            else:
                stored = ix.apply_mask_fill(values, fills[spec])
                # Hidden by the mask where the index had a value: valid & mask.
                hidden = valid & mask_strips[spec]
                kept_count = valid_count - int(np.count_nonzero(hidden))
            file.stats.add_excluding(
                stored, excluded=INDEX_NODATA, valid=kept_count,
                masked=valid_count - kept_count, nodata=values.size - valid_count,
                included=kept_count,
            )  # fmt: skip
            file.sampler.take_index(
                start, stored, masked=hidden, stretch=definition.stretch, nodata=INDEX_NODATA
            )
            file.write(start, ix.to_jp2_values(stored) if fmt == "jp2" else stored)
