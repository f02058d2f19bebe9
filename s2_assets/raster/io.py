"""Raster reading and writing: with ``cog_encode.py``, the only modules that touch
rasterio (and so GDAL).

Reads are whole-width row ranges at native resolution (never through overviews or
JPEG2000 resolution levels, which invent SCL classes and probabilities above 100).
A COG with nearest-neighbour overviews is compressed while its strips arrive, one row of
512 px tiles at a time, as GDAL's GeoTIFF writer compresses them, and assembled from the
compressed tiles under the header GDAL's COG driver writes for it (``cog_source.py``,
``cog_encode.py``): the driver's file, byte for byte, each pixel compressed once. Other outputs go to a hidden uncompressed tiled GeoTIFF
beside the final file, written strip by strip, then converted once into the final COG
(or JPEG2000). Either way the file is written under a temporary name that is renamed
into place: nothing half-written ever carries the final name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.errors import RasterioError
from rasterio.shutil import copy as gdal_copy
from rasterio.windows import Window

from s2_assets.raster.cog_encode import cog_header, tile_encoder
from s2_assets.raster.cog_source import CogTiles
from s2_assets.raster.overviews import cog_levels
from s2_assets.raster.types import Grid, RasterError

# GDAL's block cache, in bytes (rasterio hands GDAL_CACHEMAX to GDALSetCacheMax64): next to
# none. Reads come in whole JPEG2000 tile rows, each decoded once, and COGs are written by
# our own writer, so a cache would mostly hold memory: a 256 MB one saved 1.5 % of a full
# tile's decoding CPU and added 250 MB to its peak (docs/performance.md).
GDAL_CACHE_BYTES = 256
COG_BLOCK = 512


@contextlib.contextmanager
def gdal_env(*, cache_bytes: int = GDAL_CACHE_BYTES) -> Iterator[None]:
    """GDAL settings for our reads and writes: all cores for JPEG2000 decoding and
    compression, a bounded block cache, and no directory listing on open."""
    with rasterio.Env(
        GDAL_NUM_THREADS="ALL_CPUS",
        GDAL_CACHEMAX=cache_bytes,
        GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
    ):
        yield


def _grid(dataset: Any) -> Grid:
    crs = dataset.crs.to_wkt() if dataset.crs is not None else ""
    return Grid(
        width=int(dataset.width),
        height=int(dataset.height),
        transform=dataset.transform,
        crs_wkt=crs,
    )


class BandReader:
    """One single-band raster open for sequential row reads at native resolution."""

    def __init__(self, path: Path) -> None:
        try:
            # OVERVIEW_LEVEL=NONE: never serve a read from a reduced resolution level.
            self._dataset = rasterio.open(path, OVERVIEW_LEVEL="NONE")
        except RasterioError as exc:
            raise RasterError(f"cannot open raster {path}: {exc}") from exc
        self.path = path
        self.grid = _grid(self._dataset)
        self.dtype = np.dtype(self._dataset.dtypes[0])
        self.block_rows = int(self._dataset.block_shapes[0][0])

    def read_rows(self, start: int, stop: int) -> NDArray[Any]:
        """Rows ``start``..``stop`` (exclusive), full width, native resolution."""
        window = Window(0, start, self.grid.width, stop - start)
        try:
            return np.asarray(self._dataset.read(1, window=window))
        except RasterioError as exc:
            raise RasterError(f"cannot read rows {start}..{stop} of {self.path}: {exc}") from exc

    def close(self) -> None:
        self._dataset.close()

    def __enter__(self) -> BandReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_grid(path: Path) -> Grid:
    """The grid of a raster file, without reading pixels."""
    with BandReader(path) as reader:
        return reader.grid


@dataclass(frozen=True)
class OutputFormat:
    """How a product file is encoded.

    ``fmt`` "tif": COG, ZSTD with a predictor (lossless), 512 px tiles, overviews made
    with ``overview_resampling``. ``fmt`` "jp2": sen2chain's JPEG2000, lossless for masks
    (``jp2_quality`` None) or lossy 15-bit at ``jp2_quality`` for indices.
    """

    fmt: str
    overview_resampling: str = "NEAREST"
    jp2_quality: int | None = None

    @property
    def suffix(self) -> str:
        return ".tif" if self.fmt == "tif" else ".jp2"

    def creation_options(self) -> dict[str, str]:
        if self.fmt == "tif":
            return {
                "COMPRESS": "ZSTD",
                "LEVEL": "1",  # measured: 5x cheaper than DEFLATE's default, same size
                "PREDICTOR": "YES",
                "BLOCKSIZE": str(COG_BLOCK),
                "OVERVIEW_RESAMPLING": self.overview_resampling,
                # One thread per file: outputs are published two at a time (one per
                # core), and GDAL's worker threads only add hand-over CPU time on top
                # (measured: 0.54 vs 0.40 CPU-s per 5490 px COG). Same bytes either way.
                "NUM_THREADS": "1",
                "BIGTIFF": "IF_SAFER",
            }
        if self.jp2_quality is None:
            return {"CODEC": "JP2", "QUALITY": "100", "REVERSIBLE": "YES", "YCBCR420": "NO"}
        return {
            "CODEC": "JP2",
            "NBITS": "15",
            "QUALITY": str(self.jp2_quality),
            "REVERSIBLE": "NO",
            "YCBCR420": "NO",
        }


class RasterWriter:
    """Writes one single-band raster strip by strip and publishes it atomically.

    Use as a context manager: leaving the block without :meth:`publish` (say, on an
    exception) removes every temporary file.
    """

    def __init__(
        self,
        path: Path,
        grid: Grid,
        *,
        dtype: str,
        nodata: float,
        output: OutputFormat,
        scale: float | None = None,
    ) -> None:
        if path.suffix != output.suffix:
            raise RasterError(f"output {path} does not end in {output.suffix} ({output.fmt})")
        self.path = path
        self.output = output
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._scratch = path.with_name(f".{path.name}.{token}.scratch.tif")
        self._part = path.with_name(f".{path.name}.{token}.part{path.suffix}")
        self._width, self._height = grid.width, grid.height
        path.parent.mkdir(parents=True, exist_ok=True)
        levels = (
            cog_levels(grid.width, grid.height, block=COG_BLOCK)
            if output.fmt == "tif" and output.overview_resampling.upper() == "NEAREST"
            else None
        )
        self._dataset: Any = None
        self._source: CogTiles | None = None
        if levels is not None:
            self._source = CogTiles(
                path.with_name(f".{path.name}.{token}"), grid, levels, dtype=dtype,
                nodata=nodata, scale=scale, block=COG_BLOCK,
                encode=tile_encoder(output.creation_options(), dtype=dtype, nodata=nodata, block=COG_BLOCK),
            )  # fmt: skip
            return
        self._dataset = rasterio.open(
            self._scratch,
            "w",
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=1,
            dtype=dtype,
            crs=grid.crs_wkt or None,
            transform=grid.transform,
            nodata=nodata,
            tiled=True,
            blockxsize=COG_BLOCK,
            blockysize=COG_BLOCK,
            BIGTIFF="IF_SAFER",
        )
        if scale is not None:
            self._dataset.scales = (scale,)
            self._dataset.offsets = (0.0,)

    def write_rows(
        self,
        start: int,
        rows: NDArray[Any],
        variants: Sequence[tuple[RasterWriter, NDArray[Any]]] = (),
    ) -> None:
        """Write ``rows`` (full width) starting at row ``start``; ``variants`` are other
        writers of the same grid and their rows for the same strip (masked variants of
        this raster), compressed together where both stream COGs. No reference to the
        arrays is kept once this returns: callers may reuse them for the next strip.

        Raises:
            RasterError: when a strip does not fit the grid (GDAL would crash on an
                empty window rather than report it).
        """
        for writer, values in [(self, rows), *variants]:
            height, width = values.shape
            if height < 1 or width != writer._width or not 0 <= start <= writer._height - height:
                raise RasterError(
                    f"strip of {height}x{width} at row {start} does not fit "
                    f"{writer.path.name} ({writer._width}x{writer._height})"
                )
        sources = [(writer._source, values) for writer, values in variants if writer._source]
        if self._source is not None and len(sources) == len(variants):
            self._source.write_rows(start, rows, sources)
            return
        for writer, values in [(self, rows), *variants]:
            writer._write_one(start, values)

    def _write_one(self, start: int, rows: NDArray[Any]) -> None:
        if self._source is not None:
            self._source.write_rows(start, rows)
            return
        # A one-band 3-D view: given a 2-D array and a band number, rasterio stacks it
        # into a new 3-D array first, a copy of every strip.
        window = Window(0, start, rows.shape[1], rows.shape[0])
        self._dataset.write(rows[np.newaxis], [1], window=window)

    def publish(self, before_rename: Callable[[Path], None] | None = None) -> int:
        """Encode the final file and rename it into place; returns its size in bytes.

        ``before_rename`` gets the encoded file, still under its hidden name, before the
        rename: what must exist whenever the final name does is written there.
        """
        try:
            if self._source is not None:
                header = cog_header(self._source, self.output.creation_options(), self._part)
                self._source.assemble(header, self._part)
            else:
                self._dataset.close()
                gdal_copy(
                    str(self._scratch),
                    str(self._part),
                    driver="COG" if self.output.fmt == "tif" else "JP2OpenJPEG",
                    **self.output.creation_options(),
                )
        except RasterioError as exc:
            raise RasterError(f"cannot encode {self.path}: {exc}") from exc
        finally:
            for scratch in self._scratch_files():
                scratch.unlink(missing_ok=True)
        sidecar = self._part.with_name(self._part.name + ".aux.xml")
        if sidecar.exists():
            # JPEG2000 keeps nodata and scale in a PAM sidecar: publish it first so the
            # final file never appears without it.
            os.replace(sidecar, self.path.with_name(self.path.name + ".aux.xml"))
        if before_rename is not None:
            before_rename(self._part)
        os.replace(self._part, self.path)
        return self.path.stat().st_size

    def _scratch_files(self) -> list[Path]:
        return [self._scratch, *(self._source.paths if self._source is not None else [])]

    def discard(self) -> None:
        """Close and remove every temporary file; the final name is left untouched."""
        if self._source is not None:
            self._source.close()
        if self._dataset is not None and not self._dataset.closed:
            self._dataset.close()
        for leftover in (
            *self._scratch_files(),
            self._part,
            self._part.with_name(self._part.name + ".aux.xml"),
        ):
            leftover.unlink(missing_ok=True)

    def __enter__(self) -> RasterWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        # After publish() the temporaries are gone and this removes nothing.
        self.discard()
