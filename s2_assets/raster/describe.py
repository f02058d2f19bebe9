"""Describe a mask file already in the library as if it had just been written.

A partition's metadata must list every file it holds, so a mask kept from an earlier run
gets the same statistics and quicklook as a new one. The file is read strip by strip (one
pass, bounded memory); the statistics are those :func:`compute_cloud_masks` records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s2_assets.raster.io import BandReader, gdal_env
from s2_assets.raster.outputs import StatsAccumulator
from s2_assets.raster.quicklook import Sampler
from s2_assets.raster.strips import strip_height, strips
from s2_assets.raster.types import MASK_NODATA, WrittenRaster


def describe_mask(path: Path, *, spec: str) -> WrittenRaster:
    """Statistics and quicklook of an existing mask file (1 masked, 0 clear, 255 no data).

    Raises:
        RasterError: the file cannot be opened or read.
    """
    stats = StatsAccumulator()
    with gdal_env(), BandReader(path) as reader:
        sampler = Sampler(reader.grid.height, reader.grid.width)
        for start, stop in strips(reader.grid.height, strip_height(reader.block_rows)):
            stored = reader.read_rows(start, stop)
            has_data = stored != MASK_NODATA
            masked = int(np.count_nonzero(stored == 1))
            with_data = int(np.count_nonzero(has_data))
            stats.add(
                stored,
                include=has_data,
                valid=with_data - masked,
                masked=masked,
                nodata=stored.size - with_data,
            )
            sampler.take_mask(start, stored, nodata=MASK_NODATA)
    return WrittenRaster(
        path=path,
        kind="mask",
        name=spec,
        mask_spec=None,
        size_bytes=path.stat().st_size,
        statistics=stats.result(1.0),
        quicklook_png=sampler.png(None),
    )
