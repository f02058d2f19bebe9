"""Small PNG quicklooks of masks and indices, built strip by strip. Pure (zlib + struct).

An index quicklook uses sen2chain's colour ramp and linear stretch for that index
(reference c.4), masked pixels white and pixels without data mid-grey (not transparent:
on a light page that would look masked); a mask quicklook shows clear pixels dark blue,
masked pixels white and no data mid-grey. Images
are palette PNGs of at most ``MAX_SIDE`` pixels a side, so even noise stays under ~45 KB.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numpy.typing import NDArray

MAX_SIDE = 200
RAMP_COLOURS = 253  # palette: 0..252 ramp, 253 masked (white), 254 clear, 255 no data
MASKED, CLEAR, NODATA = 253, 254, 255

# Control colours of the ramps sen2chain uses (matplotlib's names; ColorBrewer for the
# diverging ones), evenly spaced from the low to the high end of the stretch.
_RAMPS: dict[str, tuple[str, ...]] = {
    "RdYlGn": ("a50026", "d73027", "f46d43", "fdae61", "fee08b", "ffffbf",
               "d9ef8b", "a6d96a", "66bd63", "1a9850", "006837"),
    "RdYlBu": ("a50026", "d73027", "f46d43", "fdae61", "fee090", "ffffbf",
               "e0f3f8", "abd9e9", "74add1", "4575b4", "313695"),
    "BrBG": ("543005", "8c510a", "bf812d", "dfc27d", "f6e8c3", "f5f5f5",
             "c7eae5", "80cdc1", "35978f", "01665e", "003c30"),
    "Spectral": ("9e0142", "d53e4f", "f46d43", "fdae61", "fee08b", "ffffbf",
                 "e6f598", "abdda4", "66c2a5", "3288bd", "5e4fa2"),
    "RdBu_r": ("053061", "2166ac", "4393c3", "92c5de", "d1e5f0", "f7f7f7",
               "fddbc7", "f4a582", "d6604d", "b2182b", "67001f"),
    "GnWtBu": ("008000", "ffffff", "0000ff"),
    "pink": ("1e0000", "754a4a", "a76969", "c08e81", "d3ad96", "e6c8aa",
             "f0deca", "f8f0e6", "ffffff"),
    "afmhot": ("000000", "800000", "ff8000", "ffff80", "ffffff"),
    "bone": ("000000", "2d2d3e", "545474", "7884a0", "a3b3c4", "d1dede", "ffffff"),
}  # fmt: skip


def ramp_palette(name: str) -> NDArray[np.uint8]:
    """``RAMP_COLOURS`` x 3 RGB values interpolated along a named ramp."""
    controls = np.array(
        [[int(c[i : i + 2], 16) for i in (0, 2, 4)] for c in _RAMPS[name]], dtype=np.float64
    )
    positions = np.linspace(0.0, 1.0, len(controls))
    samples = np.linspace(0.0, 1.0, RAMP_COLOURS)
    channels = [np.interp(samples, positions, controls[:, i]) for i in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(indices: NDArray[np.uint8], palette: NDArray[np.uint8]) -> bytes:
    """A palette PNG of ``indices`` (rows x columns of palette entries, 8 bits)."""
    height, width = indices.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    raw = np.zeros((height, width + 1), dtype=np.uint8)  # filter byte 0 on every row
    raw[:, 1:] = indices
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"PLTE", palette.astype(np.uint8).tobytes()),
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)),
            _chunk(b"IEND", b""),
        )
    )


class Sampler:
    """Picks a quicklook's pixels out of a raster that arrives in strips.

    The quicklook is at most ``MAX_SIDE`` a side; each of its pixels takes the value of
    the source pixel nearest its centre (nearest neighbour, as sen2chain's quicklooks).
    """

    def __init__(self, height: int, width: int, *, max_side: int = MAX_SIDE) -> None:
        factor = max(height, width) / max_side
        self.shape = (
            max(1, min(height, round(height / factor))),
            max(1, min(width, round(width / factor))),
        )
        rows = ((np.arange(self.shape[0]) + 0.5) * height / self.shape[0]).astype(np.int64)
        self._rows = rows
        self._cols = ((np.arange(self.shape[1]) + 0.5) * width / self.shape[1]).astype(np.int64)
        self.image = np.full(self.shape, NODATA, dtype=np.uint8)

    def _pick(self, start: int, strip_rows: int) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
        wanted = (self._rows >= start) & (self._rows < start + strip_rows)
        return wanted, self._rows[wanted] - start

    def take_mask(self, start: int, stored: NDArray[np.uint8], *, nodata: int) -> None:
        """Record a stored mask strip (rows ``start``..): 1 white, 0 dark, nodata grey."""
        wanted, local = self._pick(start, stored.shape[0])
        sample = stored[local][:, self._cols]
        codes = np.full(sample.shape, CLEAR, dtype=np.uint8)
        codes[sample == 1] = MASKED
        codes[sample == nodata] = NODATA
        self.image[wanted] = codes

    def take_index(
        self,
        start: int,
        values: NDArray[np.int16],
        *,
        masked: NDArray[np.bool_] | None,
        stretch: tuple[int, int],
        nodata: int,
    ) -> None:
        """Record an index strip: ramp codes from ``stretch``, ``masked`` pixels white,
        nodata grey."""
        wanted, local = self._pick(start, values.shape[0])
        sample = values[local][:, self._cols].astype(np.float64)
        low, high = stretch
        codes = np.clip((sample - low) / (high - low) * (RAMP_COLOURS - 1), 0, RAMP_COLOURS - 1)
        out = np.rint(codes).astype(np.uint8)
        out[sample == nodata] = NODATA
        if masked is not None:
            out[masked[local][:, self._cols]] = MASKED
        self.image[wanted] = out

    def png(self, ramp: str | None) -> bytes:
        """The PNG: ``ramp`` colours for index quicklooks, None for a mask quicklook."""
        palette = np.zeros((256, 3), dtype=np.uint8)
        if ramp is not None:
            palette[:RAMP_COLOURS] = ramp_palette(ramp)
        palette[MASKED] = (255, 255, 255)
        palette[CLEAR] = (40, 70, 120)
        palette[NODATA] = (128, 128, 128)
        return encode_png(self.image, palette)
