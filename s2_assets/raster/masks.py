"""Cloud-mask algorithms CM001..CM004 on numpy arrays of the 20 m grid. Pure, no I/O.

Thresholds and structuring elements follow sen2chain (reference section b); where we keep
the intent and not the defect (DESIGN.md D7, D8) it says so. Pixels outside the array
count as 0 for erosions and dilations, as in sen2chain. Every function works on a strip
plus ``mask_halo(spec)`` rows of context above and below and is exact on the interior.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from s2_assets.raster.types import MASK_NODATA, RasterError
from s2_assets.specs import MaskSpec

BoolArray = NDArray[np.bool_]


def _disc(widths: tuple[int, ...]) -> BoolArray:
    """A symmetric structuring element from its row widths (all odd, centred)."""
    size = len(widths)
    kernel = np.zeros((size, size), dtype=bool)
    for row, width in enumerate(widths):
        start = (size - width) // 2
        kernel[row, start : start + width] = True
    return kernel


K5 = _disc((3, 5, 5, 5, 3))  # 5x5 square without its corners, 21 cells
K11 = _disc((3, 7, 9, 9, 11, 11, 11, 9, 9, 7, 3))  # 89 cells
K13 = _disc((3, 7, 9, 11, 11, 13, 13, 13, 11, 11, 9, 7, 3))  # 121 cells
CROSS = ndimage.generate_binary_structure(2, 1)

CM001_THRESHOLD = 25  # cloud probability strictly above this, in %
CM002_DARK_B11 = 1500  # B11 reflectance x 10000 below this is "dark"

# What each mask version reads from the L2A (SCL is always read too: it says where data is).
INPUTS = {
    "CM001": ("CLDPRB", "SCL"),
    "CM002": ("CLDPRB", "SCL", "B11"),
    "CM003": ("CLDPRB", "SCL"),
    "CM004": ("SCL",),
}


def dilate(mask: BoolArray, *, kernel: BoolArray, iterations: int = 1) -> BoolArray:
    """Binary dilation, outside pixels 0; ``iterations`` <= 0 returns the mask unchanged.

    scipy repeats until nothing changes when ``iterations`` < 1, which floods the image
    (sen2chain's CM003 ITER0 defect, D8); we treat 0 as "no dilation" instead. The
    iterations run one scipy call each: scipy's own multi-iteration path corrupts the heap
    when the array is smaller than the kernel (scipy/scipy#11400, numpy/numpy#15376),
    which edge strips and tiny rasters are.
    """
    result = mask.copy()
    for _ in range(max(iterations, 0)):
        if not result.any():
            break
        result = np.asarray(
            ndimage.binary_dilation(result, structure=kernel, iterations=1, border_value=0),
            dtype=bool,
        )
    return result


def erode(mask: BoolArray, *, kernel: BoolArray) -> BoolArray:
    """One binary erosion with pixels outside the array counted as 0."""
    return np.asarray(ndimage.binary_erosion(mask, structure=kernel, border_value=0), dtype=bool)


def _reach(kernel: BoolArray) -> int:
    return kernel.shape[0] // 2


def mask_halo(spec: MaskSpec) -> int:
    """Rows of context a strip needs above and below for an exact result of ``spec``."""
    cm001 = _reach(CROSS) + _reach(K11)
    if spec.version == "CM001":
        return cm001
    if spec.version == "CM002":
        # keep = CM001 and not dilate(dark, K11), then dilate(keep, K13).
        return _reach(K13) + max(cm001, _reach(K11))
    return _reach(K5) * max(spec.iterations, 0)


def cm001(probability: NDArray[np.integer]) -> BoolArray:
    """CM001: probability > 25 %, eroded once with the 3x3 cross, dilated with K11."""
    cloud = probability > CM001_THRESHOLD
    return dilate(erode(cloud, kernel=CROSS), kernel=K11)


def cm002(cm001_mask: BoolArray, b11_reflectance: NDArray[np.integer]) -> BoolArray:
    """CM002-B11: CM001 minus the K11-dilated dark-B11 areas, then dilated with K13.

    ``b11_reflectance`` is B11 with the product's BOA offset already added (reflectance x
    10000); for baselines before 04.00 that is the raw DN, as sen2chain uses.
    """
    dark = dilate(b11_reflectance < CM002_DARK_B11, kernel=K11)
    return dilate(cm001_mask & ~dark, kernel=K13)


def cm003(probability: NDArray[np.integer], *, threshold: int, iterations: int) -> BoolArray:
    """CM003: probability >= ``threshold`` %, then ``iterations`` K5 dilations (0: none)."""
    return dilate(probability >= threshold, kernel=K5, iterations=iterations)


def cm004(scl: NDArray[np.integer], *, classes: tuple[int, ...], iterations: int) -> BoolArray:
    """CM004: SCL in ``classes`` (from 3, 8, 9, 10; snow 11 never), then K5 dilations."""
    return dilate(np.isin(scl, classes), kernel=K5, iterations=iterations)


def compute_masks(
    specs: tuple[MaskSpec, ...],
    inputs: Mapping[str, NDArray[np.integer]],
    *,
    b11_offset: int = 0,
) -> dict[MaskSpec, BoolArray]:
    """Every mask in ``specs`` from one set of input arrays (same shape, 20 m grid).

    ``inputs`` maps ``CLDPRB``, ``SCL`` and ``B11`` (raw DN) to arrays; only the ones the
    specs need must be present. ``b11_offset`` is the product's BOA_ADD_OFFSET for B11
    (0 before baseline 04.00). CM001 is computed once and shared with CM002.

    Raises:
        RasterError: when an input a spec needs is missing.
    """
    results: dict[MaskSpec, BoolArray] = {}
    shared_cm001: BoolArray | None = None
    for spec in specs:
        missing = [name for name in INPUTS[spec.version] if name not in inputs]
        if missing:
            raise RasterError(f"mask {spec} needs {', '.join(missing)}, which was not read")
        if spec.version in ("CM001", "CM002") and shared_cm001 is None:
            shared_cm001 = cm001(inputs["CLDPRB"])
        if spec.version == "CM001":
            assert shared_cm001 is not None
            results[spec] = shared_cm001
        elif spec.version == "CM002":
            assert shared_cm001 is not None
            reflectance = inputs["B11"].astype(np.int32) + b11_offset
            results[spec] = cm002(shared_cm001, reflectance)
        elif spec.version == "CM003":
            results[spec] = cm003(
                inputs["CLDPRB"], threshold=spec.probability, iterations=spec.iterations
            )
        else:
            results[spec] = cm004(
                inputs["SCL"], classes=spec.scl_classes, iterations=spec.iterations
            )
    return results


def encode_mask(mask: BoolArray, nodata: BoolArray) -> NDArray[np.uint8]:
    """The stored mask: 1 masked, 0 clear, 255 where the input has no data."""
    out = mask.astype(np.uint8)
    out[nodata] = MASK_NODATA
    return out


def mask_nodata(inputs: Mapping[str, NDArray[np.integer]], spec: MaskSpec) -> BoolArray:
    """Where ``spec``'s mask has no input: SCL class 0 (NO_DATA), and B11 DN 0 for CM002.

    The cloud probability has no no-data value of its own (0 % and no data look alike),
    so SCL, from the same Sen2Cor run, says where the product has data.
    """
    nodata = np.asarray(inputs["SCL"] == 0)
    if spec.version == "CM002":
        nodata = nodata | (inputs["B11"] == 0)
    return nodata
