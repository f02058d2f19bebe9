"""COG tiles compressed as libtiff compresses them, without a GeoTIFF in between.

GDAL's GeoTIFF writer (libtiff) compresses a 512 px tile of integers by taking the full
tile (rows and columns beyond the raster's edge are zeros), differencing each row
horizontally (``PREDICTOR=2``, wrapping integer arithmetic) and feeding the result to
libzstd's streaming API: ``ZSTD_initCStream(level)``, one ``ZSTD_compressStream`` with
the whole tile, then ``ZSTD_endStream``. This module does
the same with numpy and the very libzstd GDAL loaded (found among the process's mapped
libraries), so the bytes are the same; :mod:`s2_assets.raster.io` checks that on a probe
before trusting it, and otherwise compresses through GDAL itself. Creating a GeoTIFF in
memory per row of tiles costs about a third more CPU (block cache and in-memory file
copies) than the compression alone.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from s2_assets.raster.cog_source import TileSink

DTYPES = ("uint8", "int16", "uint16")


class _Buffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


def _gdal_zstd() -> ctypes.CDLL | None:
    """The libzstd mapped into this process (GDAL's), or None when there is not exactly one."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "libzstd" in line.split()[-1]}
    if len(paths) != 1:
        return None
    library = ctypes.CDLL(paths.pop())
    library.ZSTD_createCStream.restype = ctypes.c_void_p
    library.ZSTD_initCStream.argtypes = [ctypes.c_void_p, ctypes.c_int]
    library.ZSTD_initCStream.restype = ctypes.c_size_t
    library.ZSTD_compressStream.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(_Buffer), ctypes.POINTER(_Buffer),
    ]  # fmt: skip
    library.ZSTD_compressStream.restype = ctypes.c_size_t
    library.ZSTD_endStream.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Buffer)]
    library.ZSTD_endStream.restype = ctypes.c_size_t
    library.ZSTD_isError.argtypes = [ctypes.c_size_t]
    library.ZSTD_isError.restype = ctypes.c_uint
    library.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
    library.ZSTD_compressBound.restype = ctypes.c_size_t
    return library


class TileCompressor:
    """Compresses bands of rows into ZSTD + predictor tiles, one stream per thread."""

    def __init__(self, library: ctypes.CDLL, *, level: int, block: int) -> None:
        self._library, self._level, self._block = library, level, block
        self._local = threading.local()

    @classmethod
    def load(cls, *, level: int, block: int) -> TileCompressor | None:
        library = _gdal_zstd()
        return None if library is None else cls(library, level=level, block=block)

    def _stream(self) -> int:
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._library.ZSTD_createCStream()
            self._local.stream = stream
        return int(stream)

    def _scratch(self, name: str, size: int) -> NDArray[np.uint8]:
        """A byte buffer of at least ``size`` kept per thread, grown but never shrunk:
        the image and its levels take turns, and fresh pages cost more than the work."""
        held: NDArray[np.uint8] | None = getattr(self._local, name, None)
        if held is None or held.size < size:
            held = np.empty(size, dtype=np.uint8)
            setattr(self._local, name, held)
        return held

    def encode(self, values: NDArray[Any], sink: TileSink) -> None:
        """Compress the tiles of a band of rows (at most one block high) into the sink."""
        self.encode_group([values], [sink])

    def encode_group(self, bands: Sequence[NDArray[Any]], sinks: Sequence[TileSink]) -> None:
        """Compress the same band of rows of several rasters, each into its sink.

        A raw index and its masked variants differ only where a mask hides a value, so
        where a tile's pixels equal the first band's, its bytes are the first band's
        tile again (same pixels, same geometry: same bytes), compressed once.
        """
        first = bands[0]
        compressed = [self._compress_band(first, "out0", reuse=None)]
        for number, values in enumerate(bands[1:], start=1):
            if values.shape != first.shape:
                raise ValueError(f"band of {values.shape} grouped with one of {first.shape}")
            reuse = [
                tile if same else None
                for tile, same in zip(compressed[0], self._same_tiles(values, first), strict=True)
            ]
            compressed.append(self._compress_band(values, f"out{number}", reuse=reuse))
        for sink, tiles in zip(sinks, compressed, strict=True):
            sink(tiles)

    def _same_tiles(self, values: NDArray[Any], first: NDArray[Any]) -> list[bool]:
        """Per tile of the band: whether ``values`` equals ``first`` there."""
        # Compared as the widest integers that pack whole pixels and keep tile edges
        # (8 bytes: four int16 pixels at once), a quarter of the work of a pixel compare.
        row_bytes, tile_bytes = values.shape[1] * values.itemsize, self._block * values.itemsize
        word = next(size for size in (8, 4, 2, 1) if row_bytes % size == tile_bytes % size == 0)
        packed = np.dtype(f"u{word}")
        columns_differ = np.not_equal(
            np.ascontiguousarray(values).view(packed), np.ascontiguousarray(first).view(packed)
        ).any(axis=0)
        starts = np.arange(0, row_bytes // word, tile_bytes // word)
        return [not differs for differs in np.logical_or.reduceat(columns_differ, starts)]

    def _compress_band(
        self, values: NDArray[Any], out_name: str, *, reuse: list[memoryview | None] | None
    ) -> list[memoryview]:
        """The band's tiles compressed into this thread's ``out_name`` buffer; a tile
        whose ``reuse`` entry is given is that entry instead."""
        height, width = values.shape
        block, library, dtype = self._block, self._library, values.dtype
        count, full = -(-width // block), width // block
        tile_bytes = block * block * dtype.itemsize
        differenced = (
            self._scratch("differenced", count * tile_bytes)[: count * tile_bytes]
            .view(dtype)
            .reshape(count, block, block)
        )
        # Each tile's rows differenced, the first pixel kept. Beyond the raster's right
        # and bottom edges the tile holds zeros: the first padding column is then minus
        # the last value, the rest zeros.
        if full:
            tiled = values[:, : full * block].reshape(height, full, block).swapaxes(0, 1)
            differenced[:full, :height, 0] = tiled[..., 0]
            np.subtract(tiled[..., 1:], tiled[..., :-1], out=differenced[:full, :height, 1:])
        rest = width - full * block
        if rest:
            right = values[:, full * block :]
            edge = differenced[full, :height]
            edge[:, 0] = right[:, 0]
            np.subtract(right[:, 1:], right[:, :-1], out=edge[:, 1:rest])
            np.subtract(dtype.type(0), right[:, -1], out=edge[:, rest])
            edge[:, rest + 1 :] = 0
        if height < block:
            differenced[:, height:] = 0
        bound = int(library.ZSTD_compressBound(tile_bytes))
        out = self._scratch(out_name, count * bound)
        stream = self._stream()
        source = _Buffer()
        target = _Buffer()
        views: list[memoryview] = []
        whole = out.data
        for index in range(count):
            reused = reuse[index] if reuse is not None else None
            if reused is not None:
                views.append(reused)
                continue
            start = index * bound
            self._check(library.ZSTD_initCStream(stream, self._level))
            source.data, source.size, source.pos = differenced[index].ctypes.data, tile_bytes, 0
            target.data, target.size, target.pos = out.ctypes.data + start, bound, 0
            while source.pos < source.size:
                self._check(library.ZSTD_compressStream(stream, target, source))
            # The output has room for the whole frame, so one call ends it. (The count
            # this libzstd returns afterwards is not zero, yet the frame is complete:
            # a second call would start a new one.)
            self._check(library.ZSTD_endStream(stream, target))
            views.append(whole[start : start + target.pos])
        return views

    def _check(self, code: int) -> int:
        if self._library.ZSTD_isError(code):
            raise RuntimeError(f"libzstd error code {code}")
        return code
