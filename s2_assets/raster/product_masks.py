"""A product's cloud masks: ``compute_cloud_masks``, the entry point the cloudmask asset calls.

Reads SCL, the cloud probability and B11 (each only when a spec needs it) from the L2A, or
from the side products kept in the mask folder once the L2A is removed, and writes one
mask per spec. Each strip is read with ``mask_halo`` rows of context above and below, the
most any requested spec's dilations reach, so the masks are bit-identical to whole-array
ones (:mod:`s2_assets.raster.pipeline`). The algorithms are :mod:`s2_assets.raster.masks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s2_assets.products import ProductMetadata, band_path, qi_path, read_metadata
from s2_assets.raster import masks as mk
from s2_assets.raster.io import OutputFormat
from s2_assets.raster.outputs import OutputFile
from s2_assets.raster.pipeline import (
    check_format,
    input_streams,
    output_files,
    publish_all,
    same_grid,
)
from s2_assets.raster.strips import strip_height, strips
from s2_assets.raster.types import (
    MASK_NODATA,
    RasterError,
    Recorder,
    SideProducts,
    WrittenRaster,
)
from s2_assets.specs import MaskSpec, parse_mask_spec


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
    record: Recorder | None = None,
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
        record: writes each file's provenance before the file is renamed into place.

    Returns:
        One :class:`WrittenRaster` per distinct spec, in the order given.

    Raises:
        RasterError: inputs missing, unreadable or on different grids.
        MaskSpecError: a spec string that is not a valid mask spec.
        MetadataError: the SAFE lacks an input listed by its metadata.
    """
    check_format(fmt)
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
    with input_streams(paths, chunk_rows=strip_rows) as (readers, streams), output_files() as files:
        grid = same_grid(readers, sorted(paths))
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
        return publish_all(files, [None] * len(files), record)
