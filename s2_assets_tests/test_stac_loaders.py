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


def test_stackstac_example_gives_the_files_values_times_scale(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    ndvi = run(example("stackstac"), library, monkeypatch)["ndvi"].compute()
    # No epsg=, resolution= or bounds= in the call: stackstac read them from the items.
    assert ndvi.dims == ("time", "band", "y", "x") and list(ndvi.band.values) == ["NDVI_CM001"]
    assert [str(t)[:19] for t in ndvi.time.values] == ["2024-03-05T06:35:11", "2024-03-15T06:35:11"]
    first = next(library.root.glob("data/INDICES/NDVI/40KCB/*/*_NDVI_CM001.tif"))
    with rasterio.open(first) as src:
        assert ndvi.attrs["spec"].epsg == src.crs.to_epsg() == 32740
        assert ndvi.attrs["transform"] == src.transform and ndvi.shape[2:] == src.shape
    np.testing.assert_allclose(ndvi.values[:, 0], expected(library), rtol=0, atol=1e-7)


def test_stackstac_cannot_open_the_relative_catalogue(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the absolute catalogue exists: the same example on ``data/STAC`` (proj:code only,
    relative hrefs) fails in stackstac. If this starts passing, stackstac reads proj:code
    and docs/outputs.md should say so."""
    code = example("stackstac").replace('"STAC_ABSOLUTE"', '"STAC"')
    with pytest.raises(ValueError, match="Cannot pick a common CRS"):
        run(code, library, monkeypatch)
