"""Frozen value types shared by the raster modules: grids, inputs, statistics, written files.

No rasterio here: a grid carries its CRS as WKT text and its transform as an ``Affine``, so
the pure modules and the assets can hold them without touching the I/O layer.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from affine import Affine

from s2_assets.errors import S2AssetsError

MASK_NODATA = 255
INDEX_NODATA = 32767
JP2_INDEX_NODATA = 16383


class RasterError(S2AssetsError):
    """A raster input is missing, unreadable or on a grid we cannot work with."""


@dataclass(frozen=True)
class Grid:
    """Size and georeferencing of a raster: ``width`` x ``height`` pixels."""

    width: int
    height: int
    transform: Affine
    crs_wkt: str

    @property
    def resolution(self) -> float:
        """Pixel size in CRS units (metres for Sentinel-2's UTM grids)."""
        return float(self.transform.a)

    def is_double_of(self, coarse: Grid) -> bool:
        """True when this grid is ``coarse`` with every pixel split into 2 x 2.

        That is the only 20 m -> 10 m relation we resample over: same origin, same CRS,
        half the pixel size, twice the pixels on each axis.
        """
        return (
            self.width == 2 * coarse.width
            and self.height == 2 * coarse.height
            and self.crs_wkt == coarse.crs_wkt
            and self.transform.almost_equals(coarse.transform * Affine.scale(0.5))
        )


@dataclass(frozen=True)
class SideProducts:
    """Copies of an L2A's mask inputs kept in the cloud-mask folder (sen2chain's side products).

    ``scl`` is ``T<tile>_<YYYYMMDDTHHMMSS>_SCL_20m.jp2``, ``cldprb`` is ``MSK_CLDPRB_20m.jp2``.
    """

    scl: Path
    cldprb: Path

    @classmethod
    def find(cls, folder: Path) -> SideProducts | None:
        """The side products in ``folder``, or None when either file is missing."""
        cldprb = folder / "MSK_CLDPRB_20m.jp2"
        scl = sorted(folder.glob("T*_SCL_20m.jp2"))
        if not cldprb.is_file() or not scl:
            return None
        return cls(scl=scl[0], cldprb=cldprb)


@dataclass(frozen=True)
class RasterStats:
    """Value statistics of one written raster.

    ``minimum``/``maximum``/``mean`` are physical values (stored value x scale) over the
    valid pixels, None when there are none. ``masked_pixels`` counts pixels the input had
    but a cloud mask hid (for a mask file: pixels marked 1); ``nodata_pixels`` counts
    pixels without input data. ``masked_share`` is masked / (valid + masked).
    """

    valid_pixels: int
    masked_pixels: int
    nodata_pixels: int
    minimum: float | None
    maximum: float | None
    mean: float | None

    @property
    def masked_share(self) -> float:
        seen = self.valid_pixels + self.masked_pixels
        return self.masked_pixels / seen if seen else 0.0


@dataclass(frozen=True)
class WrittenRaster:
    """One raster file written by :mod:`s2_assets.raster.pipeline`, with what to show about it.

    ``kind`` is ``"mask"`` or ``"index"``; ``name`` the mask spec (``CM001`` …) or the index
    name (``NDVI`` …); ``mask_spec`` the spec of a masked index, None for raw indices and
    for mask files. ``quicklook_png`` is a small PNG (at most a few tens of KB).
    """

    path: Path
    kind: str
    name: str
    mask_spec: str | None
    size_bytes: int
    statistics: RasterStats
    quicklook_png: bytes

    def quicklook_markdown(self) -> str:
        """Markdown that shows the quicklook inline (for ``MetadataValue.md``)."""
        encoded = base64.b64encode(self.quicklook_png).decode("ascii")
        return f"![ql](data:image/png;base64,{encoded})"

    def summary(self) -> dict[str, str | int | float | None]:
        """Plain values for asset metadata: path, size, pixel counts and value statistics."""
        stats = self.statistics
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "valid_pixels": stats.valid_pixels,
            "masked_pixels": stats.masked_pixels,
            "nodata_pixels": stats.nodata_pixels,
            "masked_share": round(stats.masked_share, 6),
            "min": stats.minimum,
            "max": stats.maximum,
            "mean": stats.mean,
        }


# Called for each finished output with the file holding its bytes, still under a hidden name,
# just before the rename that publishes it: what describes the output (its provenance
# record) is in place before the output is, so a writer killed between the two never leaves
# an output under its final name without its record.
Recorder = Callable[[WrittenRaster, Path], None]
