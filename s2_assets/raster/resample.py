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


def _spread_columns(rows: NDArray[Any]) -> NDArray[Any]:
    """x2 along columns with 3/4-1/4 weights (times 4), edge columns clamped."""
    height, width = rows.shape
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


def upsample2_bilinear_float32(padded: NDArray[Any], *, offset: int = 0) -> NDArray[np.float32]:
    """:func:`upsample2_bilinear` computed straight in float32, plus an integer ``offset``
    (the band's BOA offset), for the index formulas.

    Exact, and the same values as the integer version plus ``offset``: each source value
    ``v`` (below 2**16, like ``|offset|``) becomes ``(v + offset + 1/2) / 16``, a multiple
    of 1/32 below 2**13 in magnitude (exact: float32 has a 24-bit mantissa and dividing by
    a power of two is exact). The weights sum to 16 on each 10 m pixel, so every partial
    weighted sum is a multiple of 1/32 below 2**17 (at most 22 significant bits: no
    rounding at any step) and the whole one is ``(9a + 3b + 3c + d + 8) / 16 + offset``;
    flooring it gives ``((9a + 3b + 3c + d + 8) >> 4) + offset`` (the offset is an integer). One pass over the 10 m pixels
    (the floor) beyond the weighted sums themselves, instead of four (+ 8, / 16, floor,
    + offset).
    """
    source = padded.astype(np.float32)
    source += np.float32(offset + 0.5)
    source *= np.float32(1 / 16)
    centre = source[1:-1]
    tripled = centre * np.float32(3)
    vertical = np.empty((2 * centre.shape[0], centre.shape[1]), dtype=np.float32)
    np.add(tripled, source[:-2], out=vertical[0::2])
    np.add(tripled, source[2:], out=vertical[1::2])
    out = _spread_columns(vertical)
    np.floor(out, out=out)
    return out


def upsample2_touched(padded: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """For a boolean strip (padded like :func:`upsample2_bilinear`), whether any 20 m
    pixel with a non-zero bilinear weight in each 10 m pixel is True.

    Used for no data: a 10 m value blended from a no-data (DN 0) 20 m pixel has no data.
    """
    centre = padded[1:-1]
    vertical = np.empty((2 * centre.shape[0], centre.shape[1]), dtype=bool)
    np.logical_or(centre, padded[:-2], out=vertical[0::2])
    np.logical_or(centre, padded[2:], out=vertical[1::2])
    height, width = vertical.shape
    out = np.empty((height, 2 * width), dtype=bool)
    np.logical_or(vertical[:, 1:], vertical[:, :-1], out=out[:, 2::2])
    np.logical_or(vertical[:, :-1], vertical[:, 1:], out=out[:, 1:-1:2])
    out[:, :1] = vertical[:, :1]
    out[:, -1:] = vertical[:, -1:]
    return out


def upsample2_nearest(strip: NDArray[Any]) -> NDArray[Any]:
    """x2 nearest-neighbour upsampling: each 20 m pixel becomes 2 x 2 10 m pixels."""
    return np.repeat(np.repeat(strip, 2, axis=0), 2, axis=1)
