"""How a product's cloud masks and indices are computed: strip by strip, in bounded memory.

Both entry points the assets call (``compute_cloud_masks`` in
:mod:`s2_assets.raster.product_masks`, ``compute_indices`` in
:mod:`s2_assets.raster.product_indices`) stream their inputs strip by strip (each band
decoded once, in whole JPEG2000 tile rows, the next chunk decoded while the current strip
is computed) and write every output strip by strip, so memory depends on the strip size,
not on the tile size. Strips carry enough context rows for dilations and bilinear
upsampling that the result is bit-identical to a whole-array computation.

Here, what both share: inputs opened as read-ahead row streams, outputs discarded unless
published, publishing two at a time (each output's record first, then its rename), and the
format and grid checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from s2_assets.raster.io import BandReader, gdal_env
from s2_assets.raster.outputs import OutputFile
from s2_assets.raster.strips import RowStream, strip_height
from s2_assets.raster.types import Grid, RasterError, Recorder, WrittenRaster

FORMATS = ("tif", "jp2")
PUBLISH_WORKERS = 4  # assembling a COG mostly waits for the device: four at a time


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise RasterError(f"unknown output format {fmt!r}; valid: {', '.join(FORMATS)}")


@contextlib.contextmanager
def input_streams(
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
def output_files() -> Iterator[list[OutputFile]]:
    """Outputs opened inside the block; every unpublished one is discarded on exit."""
    files: list[OutputFile] = []
    try:
        yield files
    finally:
        for output in files:
            output.discard()


def publish_all(
    files: Sequence[OutputFile], ramps: Sequence[str | None], record: Recorder | None = None
) -> list[WrittenRaster]:
    """Encode and publish every output, two at a time, in order; ``record`` writes what
    describes each one before its rename (:data:`~s2_assets.raster.types.Recorder`)."""
    with ThreadPoolExecutor(max_workers=PUBLISH_WORKERS) as pool:
        return list(
            pool.map(lambda pair: pair[0].publish(pair[1], record), zip(files, ramps, strict=True))
        )


def same_grid(readers: Mapping[str, BandReader], names: Sequence[str]) -> Grid:
    grids = {name: readers[name].grid for name in names}
    first_name, first = next(iter(grids.items()))
    for name, grid in grids.items():
        if grid != first:
            raise RasterError(
                f"{readers[name].path.name} ({grid.width}x{grid.height}) is not on the grid of "
                f"{readers[first_name].path.name} ({first.width}x{first.height})"
            )
    return first
