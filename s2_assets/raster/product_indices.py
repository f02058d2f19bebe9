"""A product's spectral indices: ``compute_indices``, and ``stream_indices`` for runs that
publish one product while the next one streams (the indices asset).

Every band the requested indices need is decoded once; each 10 m strip gets its 20 m bands
upsampled bilinearly with one 20 m row of context each side, and its masks upsampled by
nearest neighbour, so the indices are bit-identical to whole-array ones
(:mod:`s2_assets.raster.pipeline`). Each index is written raw and once per mask. The
formulas are :mod:`s2_assets.raster.indices`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from s2_assets.products import NATIVE_RESOLUTION, ProductMetadata, band_path
from s2_assets.raster import indices as ix
from s2_assets.raster.io import BandReader, OutputFormat
from s2_assets.raster.outputs import OutputFile
from s2_assets.raster.pipeline import (
    PendingOutputs,
    check_format,
    hand_over,
    input_streams,
    output_files,
    published,
    same_grid,
)
from s2_assets.raster.resample import (
    upsample2_bilinear_float32,
    upsample2_nearest,
    upsample2_touched,
)
from s2_assets.raster.strips import RowStream, strips
from s2_assets.raster.types import (
    INDEX_NODATA,
    JP2_INDEX_NODATA,
    Grid,
    RasterError,
    Recorder,
)
from s2_assets.specs import parse_index_name, parse_mask_spec

COMPUTE_ROWS = 512  # 10 m rows computed at once: about 45 MB per float32 band strip


class _IndexStrip:
    """The inputs of one 10 m strip: offset-corrected bands and where they have no data.

    Its arrays are buffers of ``scratch``, reused by the next strip (which is read only
    once this one's outputs are computed): no fresh pages to fault in on every strip.
    """

    def __init__(self, scratch: ix.Scratch) -> None:
        self.scratch = scratch
        self.reflectance: dict[str, NDArray[np.float32]] = {}
        self.nodata: dict[str, NDArray[np.bool_]] = {}

    def buffers(
        self, band: str, shape: tuple[int, ...]
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """The buffers for a band's values and no-data pixels, registered as the band's."""
        values = self.scratch.get(f"band-{band}", shape, np.float32)
        nodata = self.scratch.get(f"nodata-{band}", shape, np.bool_)
        self.reflectance[band], self.nodata[band] = values, nodata
        return values, nodata


def _read_index_strip(
    bands: Sequence[str],
    streams: Mapping[str, RowStream],
    metadata: ProductMetadata,
    start: int,
    stop: int,
    scratch: ix.Scratch | None = None,
) -> _IndexStrip:
    strip = _IndexStrip(scratch or ix.Scratch())
    for band in bands:
        offset = metadata.offset(band)
        if NATIVE_RESOLUTION[band] == 10:
            dn = streams[band].rows(start, stop)
            values, nodata = strip.buffers(band, dn.shape)
            # One pass: each DN cast to float32 and the offset added in float32, as
            # ``dn.astype(np.float32) + np.float32(offset)`` does in two.
            np.add(dn, np.float32(offset), out=values, dtype=np.float32)
            np.equal(dn, 0, out=nodata)
        else:
            # One 20 m row of context each side: the 10 m pixels on the strip's first and
            # last rows blend with it, exactly as a whole-band bilinear read does.
            padded = streams[band].rows_edge_padded(start // 2 - 1, stop // 2 + 1)
            shape = (2 * (padded.shape[0] - 2), 2 * padded.shape[1])
            values, nodata = strip.buffers(band, shape)
            upsample2_bilinear_float32(padded, offset=offset, out=values)
            upsample2_touched(padded == 0, out=nodata)
    return strip


def _check_index_grids(
    readers: Mapping[str, BandReader], bands: Sequence[str], masks: Sequence[str]
) -> Grid:
    fine = [b for b in bands if NATIVE_RESOLUTION[b] == 10]
    grid = same_grid(readers, fine)
    for name in [b for b in bands if NATIVE_RESOLUTION[b] != 10] + list(masks):
        coarse = readers[name].grid
        if coarse != grid and not grid.is_double_of(coarse):
            raise RasterError(
                f"{readers[name].path.name} ({coarse.width}x{coarse.height}) is neither on the "
                f"10 m grid ({grid.width}x{grid.height}) nor on the 20 m grid that halves it"
            )
    return grid


def stream_indices(
    *,
    product_id: str,
    safe_dir: Path,
    metadata: ProductMetadata,
    indices: Sequence[str],
    masks: Mapping[str, Path],
    out_dir_for: Callable[[str], Path],
    fmt: str = "tif",
    strip_rows: int | None = None,
    record: Recorder | None = None,
) -> PendingOutputs:
    """Compute and write the requested indices of one L2A, raw and once per mask, ready
    to be published (nothing is under a final name until then).

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
        record: writes each file's provenance before the file is renamed into place.

    Returns:
        What publishes, per index, the raw file then one per mask, in the order given;
        no outputs at all when ``indices`` is empty.

    Raises:
        IndexNameError / MaskSpecError: an unknown index name or mask spec.
        RasterError: a band or mask unreadable or on an unexpected grid.
        MetadataError: a band missing from the product's metadata.
    """
    check_format(fmt)
    names = tuple(dict.fromkeys(parse_index_name(name) for name in indices))
    if not names:
        return PendingOutputs([], [], record)
    mask_paths = {str(parse_mask_spec(spec)): Path(path) for spec, path in masks.items()}
    bands = ix.bands_needed(names)
    rows = strip_rows or COMPUTE_ROWS
    if rows % 2:
        raise RasterError(f"strip_rows must be even (20 m rows cover two 10 m rows), not {rows}")
    paths = {band: band_path(safe_dir, metadata, band, NATIVE_RESOLUTION[band]) for band in bands}
    paths.update({f"mask:{spec}": path for spec, path in mask_paths.items()})
    with input_streams(paths, chunk_rows=strip_rows) as (readers, streams), output_files() as files:
        grid = _check_index_grids(readers, bands, [f"mask:{spec}" for spec in mask_paths])
        plan = _plan_index_outputs(names, mask_paths, grid, product_id, out_dir_for, fmt, metadata)
        files.extend(file for _, file in plan)
        _compute_strips(names, bands, plan, streams, metadata, grid, rows, list(mask_paths), fmt)
        return hand_over(files, [ix.INDICES[f.name].ramp for _, f in plan], record)


# The same, published at once: per index, the raw file then one per mask, in the order given.
compute_indices = published(stream_indices)


def _compute_strips(
    names: Sequence[str],
    bands: Sequence[str],
    plan: Sequence[tuple[str | None, OutputFile]],
    streams: Mapping[str, RowStream],
    metadata: ProductMetadata,
    grid: Grid,
    rows: int,
    specs: Sequence[str],
    fmt: str,
) -> None:
    """Every strip, computed and written in order. A function of its own so that the
    strip buffers are released before the outputs are published."""
    scratch = ix.Scratch()  # the strips' inputs and the formulas' temporaries, reused
    for start, stop in strips(grid.height, rows):
        strip = _read_index_strip(bands, streams, metadata, start, stop, scratch)
        mask_strips = {
            spec: _mask_rows(streams[f"mask:{spec}"], grid, start, stop) for spec in specs
        }
        _write_index_strip(names, plan, strip, mask_strips, start, fmt, scratch)


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
    scratch: ix.Scratch | None = None,
) -> None:
    by_index: dict[str, list[tuple[str | None, OutputFile]]] = {}
    for spec, file in plan:
        by_index.setdefault(file.name, []).append((spec, file))
    work = scratch or ix.Scratch()
    # One fill per mask for the whole strip, shared by every index it masks.
    fills = {spec: ix.mask_fill(hidden) for spec, hidden in mask_strips.items()}
    for name in names:
        definition = ix.INDICES[name]
        values, nodata = ix.index_values(
            name,
            strip.reflectance,
            nodata=[strip.nodata[b] for b in definition.bands],
            scratch=work,
        )
        # ``nodata`` is exactly where ``values`` is 32767 (valid values are clipped below).
        valid_count = values.size - int(np.count_nonzero(nodata))
        written: list[tuple[OutputFile, NDArray[np.int16]]] = []
        for spec, file in by_index[name]:
            if spec is None:
                stored, hidden, kept_count = values, None, valid_count
            else:
                stored = ix.apply_mask_fill(
                    values, fills[spec], out=work.get(f"masked:{spec}", values.shape, np.int16)
                )
                # Hidden by the mask where the index had a value: mask & ~nodata, which
                # for booleans is mask > nodata.
                hidden = np.greater(
                    mask_strips[spec], nodata, out=work.get("hidden", values.shape, np.bool_)
                )
                kept_count = valid_count - int(np.count_nonzero(hidden))
            file.stats.add_excluding(
                stored, excluded=INDEX_NODATA, valid=kept_count,
                masked=valid_count - kept_count, nodata=values.size - valid_count,
                included=kept_count,
            )  # fmt: skip
            file.sampler.take_index(
                start, stored, masked=hidden, stretch=definition.stretch, nodata=INDEX_NODATA
            )
            written.append((file, ix.to_jp2_values(stored) if fmt == "jp2" else stored))
        # Raw and masked together: tiles the masks leave untouched are compressed once.
        (first, first_values), *variants = written
        first.write(start, first_values, variants)
