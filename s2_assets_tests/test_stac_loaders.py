"""The loader examples of docs/outputs.md, run as written against a real catalogue.

The library holds demo L2A products of two tiles with CM001 masks and NDVI computed by the
real pipeline (the catalogue tests' library). Each example's result must equal, pixel by
pixel, the files' stored values x their header's scale, NaN where no data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from s2_assets.library.tree import Library
from s2_assets.outputs.stac import write_catalog
from s2_assets_tests.test_catalog_stac import _build

DOCS = Path(__file__).parents[1] / "docs" / "outputs.md"


def example(name: str) -> str:
    """The Python block that follows ``<!-- example: name -->`` in the docs page."""
    match = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```python\n(.*?)```", DOCS.read_text(), re.S
    )
    assert match, f"no example {name!r} in {DOCS}"
    return match[1]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    built = _build(tmp_path_factory.mktemp("loaders") / "library")
    write_catalog(built)
    write_catalog(built, absolute=True)
    return built


def expected(library: Library) -> np.ndarray:
    """40KCB's masked NDVI files by date: stored values x scale + offset, NaN for nodata."""
    layers = []
    for path in sorted(library.root.glob("data/INDICES/NDVI/40KCB/*/*_NDVI_CM001.tif")):
        with rasterio.open(path) as src:
            values = src.read(1).astype(np.float64)
            values[values == src.nodata] = np.nan
            layers.append(values * src.scales[0] + src.offsets[0])
    assert len(layers) == 2 and np.isfinite(layers[0]).sum() > 100
    return np.stack(layers)


def run(code: str, library: Library, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("S2_DATA_HOME", str(library.root))
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace


def test_odc_stac_example_gives_the_files_values_times_scale(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    ndvi = run(example("odc-stac"), library, monkeypatch)["ndvi"].load()
    assert ndvi.dims == ("time", "y", "x")
    assert [str(t)[:19] for t in ndvi.time.values] == ["2024-03-05T06:35:11", "2024-03-15T06:35:11"]
    np.testing.assert_allclose(ndvi.values, expected(library), rtol=0, atol=1e-7)
    assert float(ndvi.x[0]) == 300005.0 and float(ndvi.y[0]) == 7800035.0  # the file grid


def test_stackstac_example_reads_crs_grid_hrefs_and_scale_from_the_items(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackstac.prepare import prepare_items

    code = example("stackstac")
    loading, _, call = code.rpartition("ndvi = stackstac.stack(")
    assert call.startswith('items, assets=["NDVI_CM001"])')
    items = run(loading, library, monkeypatch)["items"]
    # stackstac's own metadata step, with no epsg=, resolution= or bounds= given.
    table, spec, asset_ids, _ = prepare_items(items, assets=["NDVI_CM001"], rescale=False)
    assert spec.epsg == 32740 and spec.resolutions_xy == (10.0, 10.0)
    assert spec.bounds == (300000.0, 7799920.0, 300120.0, 7800040.0)
    assert list(asset_ids) == ["NDVI_CM001"]
    layers = []
    for row in table:
        href, _, (scale, offset) = row[0]
        with rasterio.open(href) as src:  # an absolute path, as stackstac opens it
            values = src.read(1).astype(np.float64)
            values[values == src.nodata] = np.nan
        layers.append(values * scale + offset)
    np.testing.assert_allclose(np.stack(layers), expected(library), rtol=0, atol=1e-7)


@pytest.mark.xfail(
    raises=TypeError,
    strict=True,
    reason="stackstac 0.5 does not run beside numpy 2 and pandas 3 (see docs/outputs.md)",
)
def test_stackstac_example_runs_whole(library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    ndvi = run(example("stackstac"), library, monkeypatch)["ndvi"].compute()
    np.testing.assert_allclose(ndvi.values[:, 0], expected(library), rtol=0, atol=1e-7)
