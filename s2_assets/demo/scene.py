"""The synthetic scene behind a demo product: a land-cover class map (vegetation, bare soil,
water, snow) with spatially coherent clouds and their shadows, the SCL and cloud probability
derived from it, and each band's digital numbers per class.

``Scene.generate`` draws one from a seed; ``Scene.band`` gives a band's DN on the 10 m grid or
decimated to 20 m / 60 m. ``s2_assets.demo.safe_writer`` turns a scene into a SAFE folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Surface reflectance (x10000) per land-cover class and band: vegetation, bare soil, water,
# cloud, shadow, snow. Rough but in the right order so indices come out plausible.
_CLASSES = ("veg", "bare", "water", "cloud", "shadow", "snow")
_REFLECTANCE = {
    "B01": (300, 900, 400, 5200, 200, 8000), "B02": (400, 1000, 500, 5400, 250, 8500),
    "B03": (700, 1300, 600, 5600, 300, 8700), "B04": (500, 1700, 400, 5700, 280, 8600),
    "B05": (1300, 2000, 350, 5800, 400, 8400), "B06": (2800, 2200, 300, 5900, 600, 8200),
    "B07": (3300, 2300, 280, 6000, 700, 8000), "B08": (3600, 2400, 250, 6000, 750, 7800),
    "B8A": (3700, 2500, 230, 6000, 760, 7600), "B09": (1200, 800, 100, 3000, 300, 3000),
    "B10": (20, 30, 10, 900, 10, 500), "B11": (1800, 3000, 100, 4500, 500, 1000),
    "B12": (900, 2600, 60, 3800, 350, 800),
}  # fmt: skip


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Spatially coherent noise in [0, 1): a coarse random grid, bilinearly enlarged."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    field = ndimage.zoom(coarse, size / (cells + 1), order=1, grid_mode=True, mode="nearest")
    return field[:size, :size]


@dataclass(frozen=True)
class Scene:
    """Class map and cloud probability at 10 m; everything else is derived from them."""

    classes: np.ndarray  # uint8 index into _CLASSES
    cloud_probability: np.ndarray  # uint8 0..100
    scl: np.ndarray  # uint8 SCL classes 0..11
    nodata: np.ndarray  # bool: outside the swath
    cloud_fraction: float

    @classmethod
    def generate(cls, *, size: int, cloud_cover: float, seed: int) -> Scene:
        rng = np.random.default_rng(seed)
        land = _smooth_field(rng, size, 6)
        clouds = _smooth_field(rng, size, 5)
        cirrus = _smooth_field(rng, size, 3)
        rows, cols = np.indices((size, size))
        # A no-data wedge in the south-west corner, like the edge of a swath.
        nodata = rows - cols > size * 0.7
        classes = np.where(land < 0.25, 2, np.where(land < 0.6, 0, 1)).astype(np.uint8)
        classes[land > 0.97] = 5
        # Threshold at the quantile that gives the requested cloud share of the valid area.
        share = min(max(cloud_cover, 0.0), 100.0) / 100.0
        threshold = np.quantile(clouds[~nodata], 1 - share) if share > 0 else np.inf
        cloudy = clouds >= threshold
        # Shadows: the cloud field shifted down-right (sun from the north-west), on clear land.
        shift = max(1, size // 20)
        shadow = np.zeros_like(cloudy)
        shadow[shift:, shift:] = cloudy[:-shift, :-shift]
        shadow &= ~cloudy
        classes[shadow] = 4
        classes[cloudy] = 3
        probability = np.clip((clouds - threshold + 0.15) / 0.3 * 100, 0, 100).astype(np.uint8)
        probability[~cloudy] = np.minimum(probability[~cloudy], 20)
        scl = np.array([4, 5, 6, 9, 3, 11], dtype=np.uint8)[classes]
        scl[cloudy & (probability < 65)] = 8
        scl[(cirrus > 0.97) & ~cloudy] = 10
        scl[nodata] = 0
        probability[nodata] = 0
        valid = ~nodata
        fraction = float(np.isin(scl[valid], (8, 9, 10)).mean() * 100) if valid.any() else 0.0
        return cls(classes, probability, scl, nodata, round(fraction, 4))

    def band(self, band: str, *, level: str, offset: int, factor: int) -> np.ndarray:
        """DN of ``band`` at the 10 m grid, decimated by ``factor`` by block means."""
        base = np.asarray(_REFLECTANCE[band], dtype=np.float32)[self.classes]
        if level == "L1C":
            base = base * 0.9 + 300  # top of atmosphere: some haze
        dn = base + offset
        dn[self.nodata] = 0
        return decimate(dn, factor, mean=True).round().astype(np.uint16)


def decimate(array: np.ndarray, factor: int, *, mean: bool) -> np.ndarray:
    if factor == 1:
        return array
    if not mean:
        return array[factor // 2 :: factor, factor // 2 :: factor]
    h, w = array.shape[0] // factor, array.shape[1] // factor
    blocks = array[: h * factor, : w * factor].reshape(h, factor, w, factor)
    nodata = (blocks == 0).any(axis=(1, 3))
    out = blocks.mean(axis=(1, 3))
    out[nodata] = 0
    return out
