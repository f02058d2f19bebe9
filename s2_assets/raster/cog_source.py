"""A COG compressed while its strips stream, assembled from the compressed tiles.

GDAL's COG driver only copies a finished dataset, so the writer used to stream strips
into an uncompressed scratch source and let the driver read it all back. Here every
512-row band of 512 px tiles is compressed as soon as all its rows have arrived, by
GDAL's own GeoTIFF writer (``encode``, run by :mod:`s2_assets.raster.io`), so the tiles
are the driver's bytes; the compressed tiles go to a scratch file, written around the
page cache (``direct_io.py``). The same happens for each nearest-neighbour overview level
(``overviews.py``), decimated from the same strips. A raw index and its masked variants
are written as one group, so a tile the masks leave untouched is compressed once for
all of them.
Publishing then writes the COG's header as the driver writes it for this raster (its
ghost area and IFDs, taken from a driver run on a pixel-less source of the same size
and metadata, cached) with the real tile offsets and sizes put in (``tiff_layout.py``),
then the tiles in the driver's order: smallest level first, rows of tiles top down, each
tile preceded by its size and followed by its last four bytes repeated.

So each pixel is compressed once; only rows of bands that a strip covers in part (the
overview levels, strips not on 512-row boundaries) pass through a raw scratch file.
``s2_assets_tests/raster/test_cog_source.py`` checks the bytes against the driver's own.
Pure file writing: no rasterio here.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree

import numpy as np
from numpy.typing import NDArray

from s2_assets.raster.direct_io import AppendFile, copy_ranges
from s2_assets.raster.overviews import Level
from s2_assets.raster.tiff_layout import put_values, tile_arrays
from s2_assets.raster.types import Grid, RasterError

_GDAL_TYPES = {"uint8": "Byte", "int16": "Int16", "uint16": "UInt16", "float32": "Float32"}

# Takes the compressed bytes of a band's tiles, left to right (valid during the call only).
TileSink = Callable[[list[memoryview]], None]
# Compresses the same band of full-width rows of one or more rasters of one geometry
# into their tiles, handing each raster's tiles to its sink.
Encode = Callable[[Sequence[NDArray[Any]], Sequence[TileSink]], None]


class TileLayer:
    """One resolution of the COG (the image or a level): rows in, compressed tiles out.

    Rows may arrive in any order; a band whose rows all arrived at once is compressed
    from them directly, other rows wait in a raw scratch file until their band is
    complete.
    """

    def __init__(self, stem: Path, width: int, height: int, *, dtype: np.dtype[Any],
                 block: int) -> None:  # fmt: skip
        self.width, self.height = width, height
        self._dtype, self._block = dtype, block
        self._raw_path = stem.with_name(stem.name + ".scratch.raw")
        self._tiles_path = stem.with_name(stem.name + ".scratch.tiles")
        self._raw: BinaryIO | None = None
        self._tiles: AppendFile | None = None
        self._arrived = np.zeros(height, dtype=bool)
        self._pending = [0] * -(-height // block)  # rows waiting in the raw file, per band
        # Band -> slot of the raw file its waiting rows occupy. Slots are reused once their
        # band is compressed, so the raw file stays a band or two long (in-order strips
        # need one slot per layer) and rewrites page-cache pages it already has instead of
        # claiming fresh ones, which on a virtual machine cost more than the copy itself.
        self._slots: dict[int, int] = {}
        # band -> (position in the tiles file, size of each tile)
        self.bands: dict[int, tuple[int, list[int]]] = {}
        self._tiles_size = 0

    @property
    def paths(self) -> list[Path]:
        return [self._raw_path, self._tiles_path]

    @property
    def tiles_path(self) -> Path:
        return self._tiles_path

    def arrive(self, start: int, rows: NDArray[Any]) -> list[tuple[int, NDArray[Any]]]:
        """Take full-width ``rows`` starting at row ``start``; returns the bands they
        complete, each with all its rows, to be compressed into :meth:`sink`."""
        stop = start + rows.shape[0]
        if self._arrived[start:stop].any():
            raise RasterError(f"rows {start}..{stop} written twice")
        self._arrived[start:stop] = True
        block = self._block
        complete: list[tuple[int, NDArray[Any]]] = []
        for band in range(start // block, -(-stop // block)):
            top, bottom = band * block, min((band + 1) * block, self.height)
            first, last = max(start, top), min(stop, bottom)
            part = rows[first - start : last - start]
            if (first, last) == (top, bottom):
                complete.append((band, np.ascontiguousarray(part, dtype=self._dtype)))
                continue
            self._put_raw(band, first - top, part)
            self._pending[band] += last - first
            if self._pending[band] == bottom - top:
                complete.append((band, self._read_raw(band, bottom - top)))
        return complete

    def _put_raw(self, band: int, row: int, values: NDArray[Any]) -> None:
        """Keep ``values``, rows ``row``.. of ``band``, until the band is complete."""
        if self._raw is None:
            self._raw = open(self._raw_path, "w+b", buffering=0)  # noqa: SIM115 (closed in close())
        if band not in self._slots:
            taken = set(self._slots.values())
            self._slots[band] = next(slot for slot in range(len(taken) + 1) if slot not in taken)
        row_bytes = self.width * self._dtype.itemsize
        self._raw.seek((self._slots[band] * self._block + row) * row_bytes)
        # Unbuffered: the write hands the array's own buffer to the kernel, no copy.
        self._raw.write(np.ascontiguousarray(values, dtype=self._dtype).data)

    def _read_raw(self, band: int, rows: int) -> NDArray[Any]:
        """The ``rows`` waiting rows of ``band``, which frees its slot."""
        assert self._raw is not None
        row_bytes = self.width * self._dtype.itemsize
        offset = self._slots.pop(band) * self._block * row_bytes
        data = os.pread(self._raw.fileno(), rows * row_bytes, offset)
        return np.frombuffer(data, dtype=self._dtype).reshape(rows, self.width)

    def sink(self, band: int) -> TileSink:
        """Where the compressed tiles of ``band`` go: the tiles scratch file."""

        def append(tiles: list[memoryview]) -> None:
            expected = -(-self.width // self._block)
            if len(tiles) != expected:
                raise RasterError(f"{len(tiles)} tiles encoded for a row of {expected}")
            if self._tiles is None:
                self._tiles = AppendFile(self._tiles_path)
            # GDAL's COG block leader (the tile's size) and trailer (its last 4 bytes
            # again) around each tile.
            length = self._tiles.append(
                piece for tile in tiles for piece in (struct.pack("<I", len(tile)), tile, tile[-4:])
            )
            self.bands[band] = (self._tiles_size, [len(tile) for tile in tiles])
            self._tiles_size += length

        return append

    def check_complete(self) -> None:
        if len(self.bands) != len(self._pending):
            missing = int(np.count_nonzero(~self._arrived))
            raise RasterError(f"{missing} of {self.height} rows were never written")

    def close(self) -> None:
        """Close the scratch files (safe to call twice)."""
        for file in (self._raw, self._tiles):
            if file is not None:
                file.close()


class CogTiles:
    """The image and its overview levels, compressed while strips stream.

    ``stem`` is the hidden prefix of every scratch file (``.<name>.<token>``).
    """

    def __init__(
        self,
        stem: Path,
        grid: Grid,
        levels: list[Level],
        *,
        dtype: str,
        nodata: float,
        scale: float | None,
        block: int,
        encode: Encode,
    ) -> None:
        if dtype not in _GDAL_TYPES:
            raise RasterError(
                f"no streaming COG for dtype {dtype}; valid: {', '.join(_GDAL_TYPES)}"
            )
        self._grid, self._levels = grid, levels
        self._dtype = np.dtype(dtype)
        self._nodata, self._scale = nodata, scale
        self._stem = stem
        self._encode = encode
        sizes = [(grid.width, grid.height)] + [(level.width, level.height) for level in levels]
        names = [stem.name + (f"-ovr{number}" if number else "") for number in range(len(sizes))]
        layer = functools.partial(TileLayer, dtype=self._dtype, block=block)
        self.layers = [
            layer(stem.with_name(name), width, height)
            for name, (width, height) in zip(names, sizes, strict=True)
        ]

    @property
    def paths(self) -> list[Path]:
        """Every scratch file, for removal."""
        return [path for layer in self.layers for path in layer.paths]

    def write_rows(
        self, start: int, rows: NDArray[Any], variants: Sequence[tuple[CogTiles, NDArray[Any]]] = ()
    ) -> None:
        """Take full-width ``rows`` from row ``start`` into the image and every level.

        ``variants`` are other rasters of the same geometry and their rows for the same
        strip (the masked variants of a raw index): compressed together, so the tiles
        where they equal ``rows`` are compressed once.
        """
        group = [self, *(tiles for tiles, _ in variants)]
        for other in group[1:]:
            if [(layer.width, layer.height) for layer in other.layers] != [
                (layer.width, layer.height) for layer in self.layers
            ]:
                raise RasterError("rasters of different sizes written as variants")
        strips = [rows, *(values for _, values in variants)]
        self._write_group([tiles.layers[0] for tiles in group], start, strips)
        for number, level in enumerate(self._levels, start=1):
            picks = [level.take(start, values) for values in strips]
            if picks[0][1].shape[0]:
                layers = [tiles.layers[number] for tiles in group]
                self._write_group(layers, picks[0][0], [picked for _, picked in picks])

    def _write_group(
        self, layers: Sequence[TileLayer], start: int, strips: Sequence[NDArray[Any]]
    ) -> None:
        # Every layer of a group gets the same rows at once, so its bands complete together.
        completed = [
            layer.arrive(start, values) for layer, values in zip(layers, strips, strict=True)
        ]
        for bands in zip(*completed, strict=True):
            self._encode(
                [values for _, values in bands],
                [layer.sink(band) for layer, (band, _) in zip(layers, bands, strict=True)],
            )

    def close(self) -> None:
        for layer in self.layers:
            layer.close()

    def template_key(self) -> tuple[Any, ...]:
        """What the driver's header depends on besides tile offsets and sizes."""
        grid = self._grid
        return (
            grid.width, grid.height, tuple(grid.transform.to_gdal()), grid.crs_wkt,
            self._dtype.name, self._nodata, self._scale,
            tuple((level.width, level.height) for level in self._levels),
        )  # fmt: skip

    def template_vrts(self) -> list[Path]:
        """VRTs of this raster without pixels (the driver reads them as zeros), for the
        driver to write the header from; the main one first. The caller removes them."""
        grid, stem = self._grid, self._stem
        level_vrts = [
            stem.with_name(f"{stem.name}-ovr{number + 1}.template.vrt")
            for number in range(len(self._levels))
        ]
        for level, path in zip(self._levels, level_vrts, strict=True):
            root = ElementTree.Element(
                "VRTDataset", rasterXSize=str(level.width), rasterYSize=str(level.height)
            )
            ElementTree.SubElement(root, "VRTRasterBand", dataType=self._gdal_type, band="1")
            ElementTree.ElementTree(root).write(path, encoding="utf-8")
        root = ElementTree.Element(
            "VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height)
        )
        if grid.crs_wkt:
            ElementTree.SubElement(root, "SRS").text = grid.crs_wkt
        ElementTree.SubElement(root, "GeoTransform").text = ", ".join(
            repr(float(v)) for v in grid.transform.to_gdal()
        )
        # What GDAL's GeoTIFF writer puts in the default domain, so the COG carries it too.
        metadata = ElementTree.SubElement(root, "Metadata")
        ElementTree.SubElement(metadata, "MDI", key="AREA_OR_POINT").text = "Area"
        band = ElementTree.SubElement(root, "VRTRasterBand", dataType=self._gdal_type, band="1")
        ElementTree.SubElement(band, "NoDataValue").text = repr(float(self._nodata))
        if self._scale is not None:
            ElementTree.SubElement(band, "Offset").text = "0"
            ElementTree.SubElement(band, "Scale").text = repr(float(self._scale))
        for path in level_vrts:
            overview = ElementTree.SubElement(band, "Overview")
            ElementTree.SubElement(overview, "SourceFilename", relativeToVRT="0").text = str(path)
            ElementTree.SubElement(overview, "SourceBand").text = "1"
        main = stem.with_name(stem.name + ".template.vrt")
        ElementTree.ElementTree(root).write(main, encoding="utf-8")
        return [main, *level_vrts]

    @property
    def _gdal_type(self) -> str:
        return _GDAL_TYPES[self._dtype.name]

    def assemble(self, header: bytes, part: Path) -> None:
        """Write the COG to ``part``: ``header`` (the driver's, up to its first tile)
        with this raster's tile offsets and sizes, then the tiles in the driver's order.

        Raises:
            RasterError: rows never written, or a header of another layout.
        """
        self.close()
        for layer in self.layers:
            layer.check_complete()
        order, ifds = tile_arrays(header)
        if len(ifds) != len(self.layers):
            raise RasterError(f"COG header with {len(ifds)} IFDs for {len(self.layers)} levels")
        patched = bytearray(header)
        position = len(header)
        pieces: list[tuple[Path, int, int]] = []  # (tiles file, offset, length) in file order
        for layer, arrays in reversed(list(zip(self.layers, ifds, strict=True))):
            offsets: list[int] = []
            sizes: list[int] = []
            for band in range(len(layer.bands)):
                start, tile_sizes = layer.bands[band]
                length = sum(tile_sizes) + 8 * len(tile_sizes)
                pieces.append((layer.tiles_path, start, length))
                for size in tile_sizes:
                    offsets.append(position + 4)
                    sizes.append(size)
                    position += size + 8
            put_values(patched, order, arrays.offsets, offsets)
            put_values(patched, order, arrays.byte_counts, sizes)
        out = AppendFile(part)
        try:
            out.append([patched])
            copy_ranges(pieces, out)
        finally:
            out.close()


def header_of(template: bytes) -> bytes:
    """The header of a COG the driver wrote: every byte before its first tile's leader."""
    _, ifds = tile_arrays(template)
    first = min(value for arrays in ifds for value in arrays.offset_values)
    return template[: first - 4]
