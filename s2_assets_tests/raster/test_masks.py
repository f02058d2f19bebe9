"""Cloud-mask algorithms: structuring elements, thresholds, dilation counts, edges, nodata."""

from __future__ import annotations

import numpy as np
import pytest

from s2_assets.raster import masks as mk
from s2_assets.specs import parse_mask_spec


def _offsets(kernel: np.ndarray) -> set[tuple[int, int]]:
    centre = kernel.shape[0] // 2
    return {(int(r) - centre, int(c) - centre) for r, c in zip(*np.nonzero(kernel), strict=True)}


def _minkowski_count(kernel: np.ndarray, times: int) -> int:
    """Cells a single pixel grows to after ``times`` dilations, far from any edge."""
    cells = {(0, 0)}
    step = _offsets(kernel)
    for _ in range(times):
        cells = {(r + dr, c + dc) for r, c in cells for dr, dc in step}
    return len(cells)


def test_structuring_elements_have_sen2chain_sizes() -> None:
    assert (mk.K5.sum(), mk.K11.sum(), mk.K13.sum(), mk.CROSS.sum()) == (21, 89, 121, 5)
    assert not mk.K5[0, 0] and mk.K5[0, 1] and mk.K5[2].all()
    assert [int(r.sum()) for r in mk.K11] == [3, 7, 9, 9, 11, 11, 11, 9, 9, 7, 3]
    assert [int(r.sum()) for r in mk.K13] == [3, 7, 9, 11, 11, 13, 13, 13, 11, 11, 9, 7, 3]
    for kernel in (mk.K5, mk.K11, mk.K13):
        assert (kernel == kernel.T).all() and (kernel == kernel[::-1]).all()


@pytest.mark.parametrize("iterations", [0, 1, 2, 3, 4, 5])
def test_cm003_single_pixel_grows_by_k5_per_iteration(iterations: int) -> None:
    probability = np.zeros((41, 41), dtype=np.uint8)
    probability[20, 20] = 30
    mask = mk.cm003(probability, threshold=30, iterations=iterations)
    assert int(mask.sum()) == _minkowski_count(mk.K5, iterations)
    assert [1, 21, 69, 145, 249, 381][iterations] == int(mask.sum())


def test_cm003_threshold_is_inclusive_and_iter0_does_not_flood() -> None:
    probability = np.zeros((21, 21), dtype=np.uint8)
    probability[5, 5], probability[15, 15] = 20, 19
    mask = mk.cm003(probability, threshold=20, iterations=0)
    assert int(mask.sum()) == 1 and mask[5, 5]  # sen2chain would mask all 441 pixels (D8)


def test_cm001_removes_single_pixels_and_dilates_cores_with_k11() -> None:
    probability = np.zeros((40, 40), dtype=np.uint8)
    probability[5, 5] = 100  # isolated: eroded away
    probability[19:22, 19:22] = 26  # 3x3 block: erosion leaves its centre
    mask = mk.cm001(probability)
    assert int(mask.sum()) == 89 and mask[20, 20] and not mask[5, 5]
    probability[19:22, 19:22] = 25  # threshold is strict
    assert not mk.cm001(probability).any()


def test_cm001_erosion_counts_outside_as_clear() -> None:
    probability = np.zeros((30, 30), dtype=np.uint8)
    probability[0:3, 10:13] = 90  # touches the top edge: only row 1 survives erosion
    mask = mk.cm001(probability)
    eroded = mk.erode(probability > 25, kernel=mk.CROSS)
    assert np.argwhere(eroded).tolist() == [[1, 11]]
    # K11 centred on (1, 11) loses its rows above the image: 89 - 3 (row -4) - 7 (row -3)
    # - 9 (row -2) - 9 (row -1) = 61 cells remain.
    assert int(mask.sum()) == 61


def test_cm002_drops_clouds_near_dark_b11_then_dilates_with_k13() -> None:
    probability = np.zeros((60, 60), dtype=np.uint8)
    probability[9:12, 9:12] = 90  # cloud core at (10, 10)
    probability[44:47, 44:47] = 90  # cloud core at (45, 45), over dark B11
    cm001 = mk.cm001(probability)
    b11 = np.full((60, 60), 2000, dtype=np.int32)
    b11[45, 45] = 1499  # dark: strictly below 1500
    result = mk.cm002(cm001, b11)
    assert result[10, 10] and not result[45, 45]
    core = mk.cm001(probability[:30, :30])
    assert int(result.sum()) == int(mk.dilate(core, kernel=mk.K13).sum())


def test_cm002_threshold_applies_to_offset_corrected_b11() -> None:
    specs = (parse_mask_spec("CM002-B11"),)
    probability = np.zeros((40, 40), dtype=np.uint8)
    probability[18:23, 18:23] = 90
    b11 = np.full((40, 40), 2400, dtype=np.uint16)  # reflectance 1400 after a -1000 offset
    scl = np.full((40, 40), 4, dtype=np.uint8)
    inputs = {"CLDPRB": probability, "SCL": scl, "B11": b11}
    before_04 = mk.compute_masks(specs, inputs, b11_offset=0)[specs[0]]
    after_04 = mk.compute_masks(specs, inputs, b11_offset=-1000)[specs[0]]
    assert before_04.any() and not after_04.any()


def test_cm004_flags_select_classes_and_snow_is_never_masked() -> None:
    scl = np.arange(12, dtype=np.uint8).reshape(3, 4)
    everything = parse_mask_spec("CM004-CSH1-CMP1-CHP1-TCI1-ITER0")
    mask = mk.cm004(scl, classes=everything.scl_classes, iterations=0)
    assert sorted(scl[mask].tolist()) == [3, 8, 9, 10]
    no_shadow = parse_mask_spec("CM004-CSH0-CMP1-CHP1-TCI0-ITER0")
    mask = mk.cm004(scl, classes=no_shadow.scl_classes, iterations=0)
    assert sorted(scl[mask].tolist()) == [8, 9]


def test_cm004_dilation_at_the_corner() -> None:
    scl = np.full((20, 20), 4, dtype=np.uint8)
    scl[0, 0] = 9
    mask = mk.cm004(scl, classes=(9,), iterations=1)
    assert int(mask.sum()) == 8  # the quarter of K5 inside the image: rows of 3, 3, 2


def test_encode_mask_marks_nodata_255() -> None:
    scl = np.array([[0, 9, 4]], dtype=np.uint8)
    spec = parse_mask_spec("CM004")
    computed = mk.compute_masks((spec,), {"SCL": scl})[spec]
    stored = mk.encode_mask(computed, mk.mask_nodata({"SCL": scl}, spec))
    assert stored.tolist() == [[255, 1, 1]]  # ITER5 default dilates over the row


def test_compute_masks_shares_cm001_and_names_missing_inputs() -> None:
    specs = (parse_mask_spec("CM002-B11"),)
    with pytest.raises(mk.RasterError, match="CM002-B11 needs B11"):
        mk.compute_masks(specs, {"CLDPRB": np.zeros((3, 3)), "SCL": np.zeros((3, 3))})


@pytest.mark.parametrize(
    ("spec", "halo"),
    [("CM001", 6), ("CM002-B11", 12), ("CM003-PRB5-ITER3", 6), ("CM004-ITER0", 0)],
)
def test_halo_covers_every_operation(spec: str, halo: int) -> None:
    assert mk.mask_halo(parse_mask_spec(spec)) == halo


def test_repeated_dilation_of_arrays_smaller_than_the_kernel() -> None:
    # scipy's multi-iteration dilation corrupts the heap on arrays smaller than the kernel
    # (the process crashes within a few hundred calls); edge strips are that small.
    rng = np.random.default_rng(5)
    for _ in range(400):
        rows, cols = int(rng.integers(1, 5)), int(rng.integers(1, 9))
        mask = rng.random((rows, cols)) < 0.2
        grown = mk.dilate(mask, kernel=mk.K5, iterations=2)
        padded = np.zeros((rows + 8, cols + 8), dtype=bool)
        padded[4:-4, 4:-4] = mask
        expected = mk.dilate(padded, kernel=mk.K5, iterations=2)[4:-4, 4:-4]
        assert (grown == expected).all()
