"""Quicklook PNGs: valid files, small even for noise, colours where they should be."""

from __future__ import annotations

import warnings

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from s2_assets.raster.quicklook import MASKED, NODATA, Sampler, encode_png, ramp_palette


def _decode(png: bytes) -> np.ndarray:
    """RGBA bands of a palette PNG, through GDAL's own PNG reader."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(png) as memory, memory.open() as image:
            codes = image.read(1)
            colours = image.colormap(1)
    lookup = np.array([colours.get(i, (0, 0, 0, 0)) for i in range(256)], dtype=np.uint8)
    return np.moveaxis(lookup[codes], -1, 0)


def test_png_decodes_with_palette() -> None:
    codes = np.array([[0, 252], [MASKED, NODATA]], dtype=np.uint8)
    sampler = Sampler(2, 2)
    sampler.image = codes
    rgba = _decode(sampler.png("RdYlGn"))
    assert rgba.shape == (4, 2, 2)
    assert rgba[:3, 1, 0].tolist() == [255, 255, 255]  # masked is white
    assert rgba[:3, 1, 1].tolist() == [128, 128, 128]  # no data is grey, not "masked" white
    assert rgba[:3, 0, 0].tolist() == [165, 0, 38]  # low end of RdYlGn


def test_noise_stays_small() -> None:
    rng = np.random.default_rng(0)
    sampler = Sampler(10980, 10980)
    noise = rng.integers(-10000, 10001, (10980, 16)).astype(np.int16)
    for start in range(0, 10980, 10980 // 20):
        strip = np.tile(noise[: min(549, 10980 - start)], (1, 687))[:, :10980]
        sampler.take_index(start, strip, masked=None, stretch=(-10000, 10000), nodata=32767)
    png = sampler.png("Spectral")
    assert sampler.shape == (200, 200)
    assert len(png) < 48_000
    assert _decode(png).shape == (4, 200, 200)


def test_strip_sampling_equals_whole_sampling() -> None:
    values = np.arange(37 * 23, dtype=np.int16).reshape(37, 23) % 5000
    whole, parts = Sampler(37, 23, max_side=10), Sampler(37, 23, max_side=10)
    whole.take_index(0, values, masked=None, stretch=(0, 5000), nodata=32767)
    for start in range(0, 37, 6):
        parts.take_index(
            start, values[start : start + 6], masked=None, stretch=(0, 5000), nodata=32767
        )
    assert (whole.image == parts.image).all() and whole.shape == (10, 6)


def test_mask_quicklook_codes() -> None:
    sampler = Sampler(2, 3)
    sampler.take_mask(0, np.array([[0, 1, 255], [1, 1, 0]], dtype=np.uint8), nodata=255)
    rgba = _decode(sampler.png(None))
    assert rgba[:3, 0, 2].tolist() == [128, 128, 128]
    assert rgba[:3, 0, 1].tolist() == [255, 255, 255] and rgba[:3, 0, 0].tolist() == [40, 70, 120]


def test_ramps_have_253_colours() -> None:
    for name in ("RdYlGn", "GnWtBu", "pink", "afmhot", "bone"):
        assert ramp_palette(name).shape == (253, 3)
    png = encode_png(np.zeros((1, 1), np.uint8), np.zeros((256, 3), np.uint8))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
