"""Synthetic Sentinel-2 products with the real shape: SAFE layout, file names, lossless
JPEG2000 bands on the tile's UTM grid, SCL and cloud probability with coherent clouds and
shadows, and metadata XML with cloud cover, baseline and offsets (before and after 04.00).

Used by the tests, the stand-ins and the demo. ``size`` is the number of 10 m pixels per side
(a multiple of 6 so the 20 m and 60 m grids line up); a real tile is 10980. Pixels stay 10 m:
a small product is a crop of the tile's north-west corner, not a coarser tile.

This module holds what a demo product is (``DemoProduct``, its ESA name), the entry points
(``build_safe``, ``zip_safe``, ``build_archive``) and the demo's product list. The scene
is drawn in ``s2_assets.demo.scene`` and written as a SAFE in ``s2_assets.demo.safe_writer``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from s2_assets.demo.safe_writer import SafeWriter
from s2_assets.demo.scene import Scene
from s2_assets.products import ProductName


@dataclass(frozen=True)
class DemoProduct:
    """What to build: one product of one tile and sensing time."""

    level: str
    tile: str
    sensing: datetime
    baseline: str = "05.10"
    relative_orbit: int = 120
    mission: str = "S2A"
    cloud_cover: float = 20.0


def product_name(product: DemoProduct) -> ProductName:
    """The ESA name of a demo product (discriminator: sensing time + 2 h)."""
    return ProductName(
        sensing=product.sensing,
        mission=product.mission,
        level=product.level,
        baseline=product.baseline,
        relative_orbit=product.relative_orbit,
        tile=product.tile,
        discriminator=(product.sensing + timedelta(hours=2)).strftime("%Y%m%dT%H%M%S"),
    )


def build_safe(
    out_dir: Path,
    *,
    level: str,
    tile: str = "40KCB",
    sensing: datetime,
    baseline: str = "05.10",
    relative_orbit: int = 120,
    mission: str = "S2A",
    size: int = 60,
    cloud_cover: float = 20.0,
    seed: int = 0,
) -> Path:
    """Write ``<out_dir>/<product id>.SAFE`` and return its path."""
    if size % 6:
        raise ValueError(f"size must be a multiple of 6 (10/20/60 m grids), not {size}")
    product = DemoProduct(level, tile, sensing, baseline, relative_orbit, mission, cloud_cover)
    name = product_name(product)
    scene = Scene.generate(size=size, cloud_cover=cloud_cover, seed=_seed(name, seed))
    writer = SafeWriter(out_dir / name.safe_name, name, scene)
    writer.write()
    return writer.root


def zip_safe(safe_dir: Path, zip_path: Path) -> Path:
    """Zip a SAFE as the archives ship it (``<id>.SAFE/...`` entries); atomic."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_name(f".{zip_path.name}.part")
    # JPEG2000 is already compressed: deflating it again costs time for nothing.
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(safe_dir.rglob("*")):
            if path.is_file():
                archive.write(path, f"{safe_dir.name}/{path.relative_to(safe_dir).as_posix()}")
    os.replace(partial, zip_path)
    return zip_path


def _seed(name: ProductName, seed: int) -> int:
    # Same acquisition -> same scene for L1C and L2A, so an L2A "is" its L1C corrected.
    digest = hashlib.sha256(f"{name.tile}{name.sensing.isoformat()}{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _demo_products() -> list[DemoProduct]:
    """Two tiles, a handful of dates around the switch to baseline 04.00 (January 2022),
    mixed cloud cover, and one acquisition reprocessed under a newer baseline."""

    def at(day: str, hour: str) -> datetime:
        return datetime.fromisoformat(f"{day}T{hour}+00:00")

    acquisitions = [
        ("40KCB", at("2022-01-20", "06:35:11"), "03.01", 120, 12.0),
        ("40KCB", at("2022-01-25", "06:35:09"), "04.00", 120, 55.0),
        ("40KCB", at("2022-01-30", "06:35:11"), "04.00", 120, 5.0),
        ("40KCB", at("2022-01-30", "06:35:11"), "05.09", 120, 5.0),
        ("40KCB", at("2022-02-04", "06:35:09"), "04.00", 120, 90.0),
        ("31UFS", at("2022-01-22", "10:43:21"), "03.01", 8, 30.0),
        ("31UFS", at("2022-01-27", "10:43:19"), "04.00", 8, 70.0),
        ("31UFS", at("2022-02-01", "10:43:21"), "04.00", 8, 3.0),
    ]
    return [
        DemoProduct(level, tile, sensing, baseline, orbit, "S2A" if i % 2 == 0 else "S2B", cloud)
        for i, (tile, sensing, baseline, orbit, cloud) in enumerate(acquisitions)
        for level in ("L1C", "L2A")
    ]


DEMO_PRODUCTS = _demo_products()
DEMO_TILES = ("40KCB", "31UFS")


def build_archive(
    root: Path, products: list[DemoProduct] = DEMO_PRODUCTS, *, size: int = 120
) -> list[Path]:
    """Zip each product into an archive tree laid out as EODC's (see providers.archive);
    products already there are kept."""
    from s2_assets.providers.archive import ArchiveProvider  # demo-only dependency

    archive = ArchiveProvider(root)
    zips = []
    for product in products:
        target = archive.path_for(product_name(product))
        if not target.is_file():
            with _scratch(root) as work:
                safe = build_safe(
                    Path(work),
                    level=product.level,
                    tile=product.tile,
                    sensing=product.sensing,
                    baseline=product.baseline,
                    relative_orbit=product.relative_orbit,
                    mission=product.mission,
                    size=size,
                    cloud_cover=product.cloud_cover,
                )
                zip_safe(safe, target)
        zips.append(target)
    return zips


def _scratch(root: Path) -> tempfile.TemporaryDirectory[str]:
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=".build-", dir=root)
