"""The twelve spectral indices on numpy arrays of the 10 m grid. Pure, no I/O.

Formulas, bands and scaling are sen2chain's (reference section c.3), computed in float32
and truncated toward zero as sen2chain does, so valid values are the same as its own.
Where sen2chain's output is undefined we decide (DESIGN.md D12): the offset comes from
the product's BOA_ADD_OFFSET per band, a zero or negative denominator or a band without
data gives nodata (32767), and values are clipped, never wrapped: normalized differences
into [-10000, 10000], the rest into [-32768, 32766].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
# Pixels per block of the index formulas: a float32 temporary of 256 KB, so a formula's
# few temporaries stay in a core's L2 cache.
BLOCK_PIXELS = 1 << 16


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


class Scratch:
    """Reusable temporaries for :func:`index_values`, one set per strip shape.

    Fresh arrays of a strip's size are fresh pages the kernel zero-fills on first touch;
    the 12 indices of a strip (and the strips after it) reuse the same few buffers.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, NDArray[Any]] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
        """The buffer named ``key`` with that shape and dtype (contents undefined)."""
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._buffers[key] = np.empty(shape, dtype=dtype)
        return buffer


def _store(
    values: NDArray[np.floating[Any]], bad: NDArray[np.bool_], lo: int, hi: int, out: I16
) -> None:
    """Truncate toward zero, clip into [lo, hi], put nodata where ``bad``, into ``out``.

    Works in place on ``values`` (a temporary of the caller's formula).
    """
    # Clipping to integer bounds commutes with truncation, and the cast to int16
    # truncates toward zero: no separate np.trunc pass.
    np.clip(values, lo, hi, out=values)
    with np.errstate(invalid="ignore"):  # NaN casts to garbage, overwritten just below
        np.copyto(out, values, casting="unsafe")  # the cast ``astype(np.int16)`` does
    np.copyto(out, np.int16(INDEX_NODATA), where=bad)


def compute_index(name: str, reflectance: Mapping[str, F32], *, nodata: NDArray[np.bool_]) -> I16:
    """One index from offset-corrected bands on the 10 m grid.

    Args:
        name: an index name (``NDVI`` …).
        reflectance: band name -> float32 DN with the product's BOA offset added
            (reflectance x 10000), 20 m bands already upsampled: whole numbers, as DN
            and offsets are.
        nodata: pixels where any band the index reads has no data (DN 0).

    Returns:
        int16 values as stored (scaled, truncated, clipped), 32767 for nodata.
    """
    return index_values(name, reflectance, nodata=nodata)[0]


def index_values(
    name: str,
    reflectance: Mapping[str, F32],
    *,
    nodata: NDArray[np.bool_] | Sequence[NDArray[np.bool_]],
    scratch: Scratch | None = None,
) -> tuple[I16, NDArray[np.bool_]]:
    """:func:`compute_index`, and where it is nodata (exactly where the values are 32767;
    possibly ``nodata`` itself). Both live in buffers of ``scratch`` when one is given,
    overwritten by the next call with it.
    ``nodata`` may also be a list of arrays (one per band, say), combined block by block.

    The formulas are sen2chain's, each operation in the same order on the same float32
    values as a plain numpy expression would do it, only a few rows at a time
    (``BLOCK_PIXELS``) into reused buffers: element-wise, so the values are the same,
    while the temporaries stay in the CPU's cache instead of streaming a strip-sized
    array through memory for every operation.

    Non-finite values (NaN, infinities) become nodata. Only EVI needs a test for them:
    the bands hold whole numbers below 2**17 in magnitude, so a normalized difference's
    or IRECI's denominator (a sum of two of them, or B05) is either <= 0, already
    nodata, or >= 1, which leaves the quotient finite; a brightness is the square root
    of a finite non-negative number. EVI's denominator ``NIR + 6 R - 7.5 B + 1`` is a sum
    of rounded fractions and is tested as it was.
    """
    definition = index_def(name)
    bands = [reflectance[band] for band in definition.bands]
    work = scratch or Scratch()
    layers = [nodata] if isinstance(nodata, np.ndarray) else list(nodata)
    shape = bands[0].shape
    if any(array.shape != shape for array in (*bands, *layers)) or not shape or not layers:
        raise ValueError(f"{name}: bands and nodata must be arrays of one shape")
    dtype = np.result_type(*bands, np.float32)
    out = work.get("values", shape, np.int16)
    only_nodata = definition.kind == "bi" and len(layers) == 1
    bad = layers[0] if only_nodata else work.get("bad", shape, np.bool_)
    step = max(1, BLOCK_PIXELS // max(1, int(np.prod(shape[1:]))))
    block_shape = (min(step, shape[0]), *shape[1:])
    formula = _FORMULAS[definition.kind]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for first in range(0, shape[0], step):
            rows = slice(first, first + step)
            count = len(out[rows])

            def temp(key: str, kind: Any = dtype, count: int = count) -> NDArray[Any]:
                return work.get(f"block-{key}", block_shape, kind)[:count]

            blocks = [] if only_nodata else [layer[rows] for layer in layers]
            formula([band[rows] for band in bands], blocks, bad[rows], out[rows], temp)
    return out, bad


Temp = Callable[..., NDArray[Any]]  # (key, dtype=the formula's float type) -> block buffer
Layers = list[NDArray[np.bool_]]


def _flag(bad: NDArray[np.bool_], nodata: Layers) -> None:
    """``bad |=`` every no-data layer."""
    for layer in nodata:
        bad |= layer


def _nd(bands: list[F32], nodata: Layers, bad: NDArray[np.bool_], out: I16, temp: Temp) -> None:
    first, second = bands
    denominator, values = temp("a"), temp("b")
    np.add(first, second, out=denominator)
    np.subtract(first, second, out=values)
    np.divide(values, denominator, out=values)
    np.multiply(values, np.float32(ND_SCALE), out=values)
    np.less_equal(denominator, 0, out=bad)
    _flag(bad, nodata)
    _store(values, bad, *_ND, out)


def _ireci(bands: list[F32], nodata: Layers, bad: NDArray[np.bool_], out: I16, temp: Temp) -> None:
    b07, b05, b06, b04 = bands
    ireci = temp("a")
    np.subtract(b07, b04, out=ireci)
    np.multiply(b06, ireci, out=ireci)
    np.divide(ireci, b05, out=ireci)
    np.less_equal(b05, 0, out=bad)
    _flag(bad, nodata)
    _store(ireci, bad, INT16_MIN, INT16_MAX_VALID, out)


def _bi(bands: list[F32], nodata: Layers, bad: NDArray[np.bool_], out: I16, temp: Temp) -> None:
    first, second = bands
    brightness, square = temp("a"), temp("b")
    np.multiply(first, first, out=brightness)
    np.multiply(second, second, out=square)
    brightness += square
    np.divide(brightness, np.float32(2), out=brightness)
    np.sqrt(brightness, out=brightness)
    if nodata:  # else ``bad`` is the one no-data layer itself
        np.copyto(bad, nodata[0])
        _flag(bad, nodata[1:])
    _store(brightness, bad, INT16_MIN, INT16_MAX_VALID, out)


def _evi(bands: list[F32], nodata: Layers, bad: NDArray[np.bool_], out: I16, temp: Temp) -> None:
    red, nir, blue = (temp(key) for key in "abc")
    for band, scaled in zip(bands, (red, nir, blue), strict=True):
        np.divide(band, np.float32(ND_SCALE), out=scaled)
    denominator = temp("d")
    np.multiply(np.float32(6), red, out=denominator)
    np.add(nir, denominator, out=denominator)
    np.multiply(np.float32(7.5), blue, out=blue)
    np.subtract(denominator, blue, out=denominator)
    np.add(denominator, np.float32(1), out=denominator)
    evi = nir
    np.subtract(nir, red, out=evi)
    np.multiply(np.float32(2.5), evi, out=evi)
    np.divide(evi, denominator, out=evi)
    np.multiply(evi, np.float32(ND_SCALE), out=evi)
    np.less_equal(denominator, 0, out=bad)
    _flag(bad, nodata)
    finite = np.isfinite(evi, out=temp("finite", np.bool_))
    np.logical_not(finite, out=finite)
    bad |= finite
    _store(evi, bad, INT16_MIN, INT16_MAX_VALID, out)


_FORMULAS: dict[str, Callable[[list[F32], Layers, NDArray[np.bool_], I16, Temp], None]] = {
    "nd": _nd, "ireci": _ireci, "bi": _bi, "evi": _evi,
}  # fmt: skip


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


def apply_mask_fill(values: I16, fill: I16, out: I16 | None = None) -> I16:
    """:func:`apply_mask` with a prepared fill: nodata (32767) is the int16 maximum, so an
    element-wise maximum sets it where hidden and keeps every value elsewhere, branch-free."""
    return np.maximum(values, fill, out=out)


def to_jp2_values(values: I16) -> I16:
    """Stored values for sen2chain's 15-bit JPEG2000: clipped to [-16384, 16382] so no
    valid value collides with its nodata 16383 (sen2chain's D12), nodata -> 16383."""
    nodata = values == INDEX_NODATA
    out = np.clip(values, JP2_MIN, JP2_MAX_VALID)
    out[nodata] = JP2_INDEX_NODATA
    return out
