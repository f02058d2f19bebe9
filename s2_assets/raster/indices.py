"""The twelve spectral indices on numpy arrays of the 10 m grid. Pure, no I/O.

Formulas, bands and scaling are sen2chain's (reference section c.3), computed in float32
and truncated toward zero as sen2chain does, so valid values are the same as its own.
Where sen2chain's output is undefined we decide (DESIGN.md D12): the offset comes from
the product's BOA_ADD_OFFSET per band, a zero or negative denominator or a band without
data gives nodata (32767), and values are clipped, never wrapped: normalized differences
into [-10000, 10000], the rest into [-32768, 32766].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from s2_assets.raster.types import INDEX_NODATA, JP2_INDEX_NODATA
from s2_assets.specs import parse_index_name

F32 = NDArray[np.float32]
I16 = NDArray[np.int16]

ND_SCALE = 10000.0  # normalized differences and EVI are stored x 10000
INT16_MIN, INT16_MAX_VALID = -32768, INDEX_NODATA - 1  # nodata is the int16 maximum
JP2_MIN, JP2_MAX_VALID = -16384, JP2_INDEX_NODATA - 1  # signed 15 bits, top value = nodata


@dataclass(frozen=True)
class IndexDef:
    """One index: its bands (first band first), formula family and presentation.

    ``kind`` is ``nd`` (normalized difference of ``bands[0]`` and ``bands[1]``),
    ``ireci``, ``bi`` (brightness of two bands) or ``evi``. ``stretch`` is the quicklook's
    value range in stored units and ``ramp`` its colour ramp name.
    """

    name: str
    kind: str
    bands: tuple[str, ...]
    jp2_quality: int
    ramp: str
    stretch: tuple[int, int]

    @property
    def scaled(self) -> bool:
        """True when values are ratios x 10000 (else reflectance DN units, also /10000)."""
        return self.kind in ("nd", "evi")


_ND = (-10000, 10000)
_BRIGHT = (0, 2500)
INDICES: dict[str, IndexDef] = {
    d.name: d
    for d in (
        IndexDef("NDVI", "nd", ("B08", "B04"), 20, "RdYlGn", _ND),
        IndexDef("NDWIMCF", "nd", ("B03", "B08"), 20, "GnWtBu", _ND),
        IndexDef("NDWIGAO", "nd", ("B08", "B11"), 20, "RdYlBu", _ND),
        IndexDef("MNDWI", "nd", ("B03", "B11"), 20, "BrBG", _ND),
        IndexDef("NDRE", "nd", ("B08", "B05"), 30, "Spectral", _ND),
        IndexDef("IRECI", "ireci", ("B07", "B05", "B06", "B04"), 30, "Spectral", _ND),
        IndexDef("BIGR", "bi", ("B04", "B03"), 20, "pink", _BRIGHT),
        IndexDef("BIRNIR", "bi", ("B04", "B08"), 20, "afmhot", _BRIGHT),
        IndexDef("BIBG", "bi", ("B02", "B03"), 20, "bone", _BRIGHT),
        IndexDef("EVI", "evi", ("B04", "B08", "B02"), 20, "bone", _BRIGHT),
        IndexDef("NBR", "nd", ("B08", "B12"), 20, "RdYlBu", _ND),
        # sen2chain draws no quicklook for NDBI; a diverging ramp reads well for it.
        IndexDef("NDBI", "nd", ("B11", "B08"), 20, "RdBu_r", _ND),
    )
}


def index_def(name: str) -> IndexDef:
    """The definition of an index by (case-insensitive) name.

    Raises:
        IndexNameError: listing the twelve valid names.
    """
    return INDICES[parse_index_name(name)]


def bands_needed(names: tuple[str, ...]) -> tuple[str, ...]:
    """The bands a set of indices reads, each once, in a stable order."""
    seen: dict[str, None] = {}
    for name in names:
        for band in index_def(name).bands:
            seen.setdefault(band, None)
    return tuple(sorted(seen))


def _truncate_clip(
    values: NDArray[np.floating[Any]], undefined: NDArray[np.bool_], lo: int, hi: int
) -> I16:
    """Truncate toward zero, clip into [lo, hi], put nodata where ``undefined``.

    Works in place on ``values`` (a temporary of the caller's formula).
    """
    bad = np.isfinite(values)
    np.logical_not(bad, out=bad)
    bad |= undefined
    # Clipping to integer bounds commutes with truncation, and the cast to int16
    # truncates toward zero: no separate np.trunc pass.
    np.clip(values, lo, hi, out=values)
    with np.errstate(invalid="ignore"):  # NaN casts to garbage, overwritten just below
        out = values.astype(np.int16)
    np.copyto(out, np.int16(INDEX_NODATA), where=bad)
    return out


def compute_index(name: str, reflectance: Mapping[str, F32], *, nodata: NDArray[np.bool_]) -> I16:
    """One index from offset-corrected bands on the 10 m grid.

    Args:
        name: an index name (``NDVI`` …).
        reflectance: band name -> float32 DN with the product's BOA offset added
            (reflectance x 10000), 20 m bands already upsampled.
        nodata: pixels where any band the index reads has no data (DN 0).

    Returns:
        int16 values as stored (scaled, truncated, clipped), 32767 for nodata.
    """
    definition = index_def(name)
    bands = [reflectance[band] for band in definition.bands]
    if definition.kind == "nd":
        first, second = bands
        denominator = first + second
        values = first - second
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(values, denominator, out=values)
        values *= np.float32(ND_SCALE)
        return _truncate_clip(values, nodata | (denominator <= 0), *_ND)
    if definition.kind == "ireci":
        b07, b05, b06, b04 = bands
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ireci = b06 * (b07 - b04) / b05
        return _truncate_clip(ireci, nodata | (b05 <= 0), INT16_MIN, INT16_MAX_VALID)
    if definition.kind == "bi":
        first, second = bands
        with np.errstate(over="ignore"):
            brightness = np.sqrt((first * first + second * second) / np.float32(2))
        return _truncate_clip(brightness, nodata, INT16_MIN, INT16_MAX_VALID)
    red, nir, blue = (band / np.float32(ND_SCALE) for band in bands)
    denominator = nir + np.float32(6) * red - np.float32(7.5) * blue + np.float32(1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        evi = np.float32(2.5) * (nir - red) / denominator * np.float32(ND_SCALE)
    return _truncate_clip(evi, nodata | (denominator <= 0), INT16_MIN, INT16_MAX_VALID)


def apply_mask(values: I16, mask: NDArray[Any]) -> I16:
    """The masked variant: every pixel whose (10 m) mask value is not 0 becomes nodata."""
    return apply_mask_fill(values, mask_fill(mask != 0))


def mask_fill(hidden: NDArray[np.bool_]) -> I16:
    """For :func:`apply_mask_fill`: nodata where ``hidden``, the int16 minimum elsewhere.

    Built once per mask and strip, shared by every index masked with it.
    """
    fill = hidden.astype(np.int16)
    np.negative(fill, out=fill)  # 0 or -1 (all bits set)
    fill ^= np.int16(INT16_MIN)  # -32768 (int16 min) or 32767 (nodata)
    return fill


def apply_mask_fill(values: I16, fill: I16) -> I16:
    """:func:`apply_mask` with a prepared fill: nodata (32767) is the int16 maximum, so an
    element-wise maximum sets it where hidden and keeps every value elsewhere, branch-free."""
    return np.maximum(values, fill)


def to_jp2_values(values: I16) -> I16:
    """Stored values for sen2chain's 15-bit JPEG2000: clipped to [-16384, 16382] so no
    valid value collides with its nodata 16383 (sen2chain's D12), nodata -> 16383."""
    nodata = values == INDEX_NODATA
    out = np.clip(values, JP2_MIN, JP2_MAX_VALID)
    out[nodata] = JP2_INDEX_NODATA
    return out
