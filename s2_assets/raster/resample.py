"""20 m -> 10 m resampling on strips, exactly as GDAL does it for an ``out_shape`` read. Pure.

GDAL's bilinear ``out_shape`` read for a x2 upsampling places each 10 m pixel centre a
quarter of a 20 m pixel from its parent's centre, so its weights are 3/4 and 1/4 on each
axis (9, 3, 3 and 1 sixteenths in 2-D), edge pixels are clamped, and the result is
rounded half up into the band's integer type. In integers that is
``(9a + 3b + 3c + d + 8) >> 4``: exact, with no float rounding to disagree about.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

# 10 m pixels per block of the float32 upsampling: its temporaries stay in a core's cache.
BLOCK_PIXELS = 1 << 17


def _spread_columns(rows: NDArray[Any], out: NDArray[Any] | None = None) -> NDArray[Any]:
    """x2 along columns with 3/4-1/4 weights (times 4), edge columns clamped."""
    height, width = rows.shape
    if out is None:
        out = np.empty((height, 2 * width), dtype=rows.dtype)
    tripled = rows * rows.dtype.type(3)
    np.add(tripled[:, 1:], rows[:, :-1], out=out[:, 2::2])
    np.add(tripled[:, :-1], rows[:, 1:], out=out[:, 1:-1:2])
    np.add(tripled[:, :1], rows[:, :1], out=out[:, :1])
    np.add(tripled[:, -1:], rows[:, -1:], out=out[:, -1:])
    return out


def upsample2_bilinear(padded: NDArray[Any]) -> NDArray[Any]:
    """Bilinear x2 upsampling of a strip, identical to GDAL's ``out_shape`` read.

    Args:
        padded: the strip's rows plus one row of context above and below: the real
            neighbouring rows inside the image, a copy of the edge row at the image's top
            or bottom (GDAL clamps there). Unsigned integers up to 16 bits.

    Returns:
        ``2 * (rows - 2)`` by ``2 * columns`` pixels in the input's dtype.
    """
    source = padded.astype(np.uint32)
    centre = source[1:-1]
    tripled = centre * np.uint32(3)
    vertical = np.empty((2 * centre.shape[0], centre.shape[1]), dtype=np.uint32)
    np.add(tripled, source[:-2], out=vertical[0::2])
    np.add(tripled, source[2:], out=vertical[1::2])
    out = _spread_columns(vertical)
    out += np.uint32(8)
    out >>= np.uint32(4)
    return out.astype(padded.dtype)


def upsample2_bilinear_float32(
    padded: NDArray[Any], *, offset: int = 0, out: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """:func:`upsample2_bilinear` computed straight in float32, plus an integer ``offset``
    (the band's BOA offset), for the index formulas; into ``out`` if given.

    Exact, and the same values as the integer version plus ``offset``: each source value
    ``v`` (below 2**16, like ``|offset|``) becomes ``(v + offset + 1/2) / 16``, a multiple
    of 1/32 below 2**13 in magnitude (exact: float32 has a 24-bit mantissa and dividing by
    a power of two is exact). The weights sum to 16 on each 10 m pixel, so every partial
    weighted sum is a multiple of 1/32 below 2**17 (at most 22 significant bits: no
    rounding at any step) and the whole one is ``(9a + 3b + 3c + d + 8) / 16 + offset``;
    flooring it gives ``((9a + 3b + 3c + d + 8) >> 4) + offset`` (the offset is an
    integer). One pass over the 10 m pixels (the floor) beyond the weighted sums
    themselves, instead of four (+ 8, / 16, floor, + offset).

    The columns are spread before the rows (the same exact sums in another order), a few
    rows at a time, so the strided writes of the column spread touch half as many pixels
    and every temporary stays in the CPU's cache.
    """
    height, width = padded.shape[0] - 2, padded.shape[1]
    if out is None:
        out = np.empty((2 * height, 2 * width), dtype=np.float32)
    step = max(1, BLOCK_PIXELS // (4 * width))  # 20 m rows per block
    source = np.empty((step + 2, width), dtype=np.float32)
    spread = np.empty((step + 2, 2 * width), dtype=np.float32)
    tripled = np.empty((step, 2 * width), dtype=np.float32)
    for first in range(0, height, step):
        count = min(step, height - first)
        rows = source[: count + 2]
        # uint16 -> float32 and the addition in float32, as astype + add would do.
        np.add(
            padded[first : first + count + 2], np.float32(offset + 0.5), out=rows, dtype=np.float32
        )
        rows *= np.float32(1 / 16)
        columns = _spread_columns(rows, spread[: count + 2])
        centre = np.multiply(columns[1:-1], np.float32(3), out=tripled[:count])
        block = out[2 * first : 2 * (first + count)]
        np.add(centre, columns[:-2], out=block[0::2])
        np.add(centre, columns[2:], out=block[1::2])
        np.floor(block, out=block)
    return out


def upsample2_touched(
    padded: NDArray[np.bool_], out: NDArray[np.bool_] | None = None
) -> NDArray[np.bool_]:
    """For a boolean strip (padded like :func:`upsample2_bilinear`), whether any 20 m
    pixel with a non-zero bilinear weight in each 10 m pixel is True (into ``out`` if
    given).

    Used for no data: a 10 m value blended from a no-data (DN 0) 20 m pixel has no data.
    """
    # Columns first (OR is associative and commutative): the strided writes then touch
    # the 20 m rows only, and the row spread writes whole contiguous rows.
    height, width = padded.shape
    columns = np.empty((height, 2 * width), dtype=bool)
    np.logical_or(padded[:, 1:], padded[:, :-1], out=columns[:, 2::2])
    np.logical_or(padded[:, :-1], padded[:, 1:], out=columns[:, 1:-1:2])
    columns[:, :1] = padded[:, :1]
    columns[:, -1:] = padded[:, -1:]
    centre = columns[1:-1]
    if out is None:
        out = np.empty((2 * centre.shape[0], centre.shape[1]), dtype=bool)
    np.logical_or(centre, columns[:-2], out=out[0::2])
    np.logical_or(centre, columns[2:], out=out[1::2])
    return out


def upsample2_nearest(strip: NDArray[Any]) -> NDArray[Any]:
    """x2 nearest-neighbour upsampling: each 20 m pixel becomes 2 x 2 10 m pixels."""
    return np.repeat(np.repeat(strip, 2, axis=0), 2, axis=1)
