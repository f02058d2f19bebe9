"""How the streaming COG writer compresses tiles and gets the COG driver's header.

Tiles: with libzstd called the way libtiff calls it (``zstd_tiles.py``) when a probe
shows that gives GDAL's very bytes for the dtype, else with GDAL's GeoTIFF writer on a
one-row-of-tiles GeoTIFF in memory whose compressed tiles are then read back. Header:
the COG driver run once on pixel-less VRTs of the same size, levels and metadata, cut at
its first tile, cached per process.
"""

from __future__ import annotations

import struct
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.shutil import copy as gdal_copy

from s2_assets.raster.cog_source import CogTiles, Encode, TileSink, header_of
from s2_assets.raster.tiff_layout import tile_arrays
from s2_assets.raster.zstd_tiles import DTYPES, TileCompressor

# Compresses one band of rows into its sink.
EncodeBand = Callable[[NDArray[Any], TileSink], None]

_LOCK = threading.Lock()
_HEADERS: dict[tuple[Any, ...], bytes] = {}
_FAST: dict[tuple[Any, ...], TileCompressor | None] = {}


def gdal_encoder(options: Mapping[str, str], *, nodata: float, block: int) -> EncodeBand:
    """Compress a band of rows with GDAL's GeoTIFF writer, as the COG driver would (the
    COG's compression, level and predictor), in a GeoTIFF in memory."""

    def encode(values: NDArray[Any], sink: TileSink) -> None:
        height, width = values.shape
        with MemoryFile() as memory, warnings.catch_warnings():
            # The band has no georeferencing: only its tiles are kept.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with memory.open(
                driver="GTiff", width=width, height=height, count=1, dtype=values.dtype.name,
                nodata=nodata, tiled=True, blockxsize=block, blockysize=block,
                COMPRESS=options["COMPRESS"], ZSTD_LEVEL=options["LEVEL"],
                # The COG driver's PREDICTOR=YES: horizontal differencing for integers.
                PREDICTOR="3" if values.dtype.kind == "f" else "2",
                NUM_THREADS=options["NUM_THREADS"], BIGTIFF="NO",
            ) as band:  # fmt: skip
                band.write(values[np.newaxis])
            data = memoryview(memory.getbuffer())
            try:
                order, (arrays,) = tile_arrays(data)
                counts = arrays.byte_counts
                sizes = struct.unpack_from(
                    f"{order}{counts.count}{counts.code}", data, counts.position
                )
                # Views into GDAL's in-memory file, handed on without a copy.
                sink([
                    data[offset : offset + size]
                    for offset, size in zip(arrays.offset_values, sizes, strict=True)
                ])  # fmt: skip
            finally:
                data.release()

    return encode


def _collect(encode: EncodeBand, values: NDArray[Any]) -> list[bytes]:
    tiles: list[bytes] = []
    encode(values, lambda views: tiles.extend(bytes(view) for view in views))
    return tiles


def _probe(dtype: np.dtype[Any], block: int) -> list[NDArray[Any]]:
    """Bands that exercise what could differ: noise (incompressible runs), flat areas,
    the dtype's extremes, partial tiles at the right and bottom edges."""
    rng = np.random.default_rng(18)
    info = np.iinfo(dtype)
    noise = rng.integers(info.min, info.max, (block, block + 37), dtype=dtype, endpoint=True)
    smooth = np.add.outer(np.arange(block // 3), np.arange(2 * block + 5)).astype(dtype)
    smooth[:20] = info.max
    return [noise, smooth]


def _fast_compressor(options: Mapping[str, str], dtype: np.dtype[Any], nodata: float,
                     block: int) -> TileCompressor | None:  # fmt: skip
    """The direct libzstd compressor if it gives GDAL's bytes for this dtype, else None."""
    if options.get("COMPRESS") != "ZSTD" or dtype.name not in DTYPES:
        return None
    key = (dtype.name, options["LEVEL"], block)
    with _LOCK:
        if key not in _FAST:
            compressor = TileCompressor.load(level=int(options["LEVEL"]), block=block)
            gdal = gdal_encoder(options, nodata=nodata, block=block)
            same = compressor is not None and all(
                _collect(compressor.encode, band) == _collect(gdal, band)
                for band in _probe(dtype, block)
            )
            _FAST[key] = compressor if same else None
        return _FAST[key]


def tile_encoder(options: Mapping[str, str], *, dtype: str, nodata: float, block: int) -> Encode:
    """The cheapest way to compress bands of rows into the COG's own tile bytes."""
    fast = _fast_compressor(options, np.dtype(dtype), nodata, block)
    if fast is not None:
        return fast.encode_group
    one = gdal_encoder(options, nodata=nodata, block=block)

    def each(bands: Sequence[NDArray[Any]], sinks: Sequence[TileSink]) -> None:
        for values, sink in zip(bands, sinks, strict=True):
            one(values, sink)

    return each


def cog_header(tiles: CogTiles, options: Mapping[str, str], part: Path) -> bytes:
    """The header the COG driver writes for this raster, up to its first tile (cached by
    what it depends on): the driver run on pixel-less VRTs of the same size, levels and
    metadata, ``part`` naming its temporary files."""
    key = (tiles.template_key(), tuple(sorted(options.items())))
    with _LOCK:
        header = _HEADERS.get(key)
        if header is not None:
            return header
        vrts = tiles.template_vrts()
        template = part.with_name(part.name + ".template.tif")
        try:
            gdal_copy(str(vrts[0]), str(template), driver="COG", **options)
            header = header_of(template.read_bytes())
        finally:
            for path in (*vrts, template):
                path.unlink(missing_ok=True)
        if len(_HEADERS) >= 16:  # a process meets few grids; keep memory bounded anyway
            _HEADERS.clear()
        _HEADERS[key] = header
        return header
