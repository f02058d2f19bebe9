"""Draw docs/cube-ndvi.png: the demo tile 40KCB as an xarray cube and its monthly composites.

    .venv/bin/python docs/make_cube_figure.py [docs/cube-ndvi.png]

Runs the demo (``s2_assets.demo.quickstart.run_demo``: a synthetic archive, a SQLite instance,
real runs) in a temporary folder at 240 x 240 pixels, materializes the ``composite`` months
of 40KCB, then opens both cubes with ``open_cube`` and plots them. Takes about a minute;
run by hand when the figure should change, never by CI.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import dagster as dg
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from s2_assets.definitions import build_definitions
from s2_assets.demo.quickstart import DemoPaths, run_demo
from s2_assets.outputs.cube import open_cube
from s2_assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TILE = "40KCB"


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="s2-cube-figure-") as base:
        paths = DemoPaths(Path(base))
        run_demo(paths, REPO / "dagster.yaml", size=240)
        defs = build_definitions(Settings.from_env())
        job = defs.resolve_implicit_global_asset_job_def()
        with dg.DagsterInstance.get() as instance:
            for month in ("2022-01", "2022-02"):
                result = job.execute_in_process(
                    instance=instance,
                    asset_selection=[dg.AssetKey("composite")],
                    partition_key=f"{month}|{TILE}",
                )
                assert result.success, month
        cube = open_cube(TILE, "NDVI", library=paths.library)
        months = open_cube(TILE, "NDVI", composites=True, library=paths.library)
        draw(cube, months, target)


def draw(cube: object, months: object, target: Path) -> None:
    import xarray as xr

    assert isinstance(cube, xr.Dataset) and isinstance(months, xr.Dataset)
    ndvi = cube["NDVI"]
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.8), width_ratios=[1.6, 1, 1, 1])
    # Tile means: NaN (masked) pixels are skipped, as xarray does for floats.
    series = ndvi.mean(("x", "y"))
    axes[0].plot(series["time"].values, series.values, "o", label="each acquisition (masked)")
    monthly = months["median"].mean(("x", "y"))
    starts = monthly["time"].values
    ends = [*starts[1:], starts[-1] + np.timedelta64(28, "D")]
    axes[0].hlines(monthly.values, starts, ends, colors="tab:orange", label="monthly median")
    axes[0].set_title(f"{TILE} NDVI, tile mean of valid pixels")
    axes[0].legend(loc="lower left", fontsize=8)
    axes[0].tick_params(axis="x", labelrotation=30)
    ndvi.isel(time=0).plot(ax=axes[1], cmap="RdYlGn", vmin=-1, vmax=1, add_colorbar=False)
    axes[1].set_title(f"{str(ndvi['time'].values[0])[:10]} (masked: white)")
    jan = months.sel(time="2022-01-01")
    jan["median"].plot(ax=axes[2], cmap="RdYlGn", vmin=-1, vmax=1, add_colorbar=False)
    axes[2].set_title("2022-01 median composite")
    jan["count"].plot(ax=axes[3], cmap="viridis", cbar_kwargs={"label": "observations"})
    axes[3].set_title("2022-01 count of valid observations")
    for axis in axes[1:]:
        axis.set_aspect("equal")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel("")
        axis.set_ylabel("")
    figure.tight_layout()
    figure.savefig(target, dpi=80)
    print(f"wrote {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "cube-ndvi.png")
