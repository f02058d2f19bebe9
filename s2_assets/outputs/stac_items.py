"""The STAC items of the library's products, read from their files.

``l2a``: one item per L2A SAFE, one asset per image its metadata lists (and the cloud
probability), plus the metadata file. ``cloudmasks``: one item per L2A with masks, one asset
per mask file and side product. One collection per index (``ndvi`` …): one item per L2A, the
raw index and one asset per masked variant. Items carry the acquisition time
(:func:`s2_assets.products.acquisition_time`), the MGRS tile (mgrs extension),
``eo:cloud_cover`` when the L2A metadata is readable, ``proj:code`` (projection v2.0.0), and
every raster asset its grid and ``raster:bands`` (:mod:`s2_assets.outputs.stac_raster`).
Composites' items are :mod:`s2_assets.outputs.stac_composites`'s; the catalogue that
gathers all of them into collections and writes it is :mod:`s2_assets.outputs.stac`.
Pure: no Dagster.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pystac
from pystac.extensions.eo import EOExtension
from pystac.extensions.mgrs import MgrsExtension
from pystac.extensions.projection import ProjectionExtension

from s2_assets.errors import ProductNameError, S2AssetsError
from s2_assets.library.tree import Library
from s2_assets.outputs.stac_raster import (
    MEDIA,
    RASTER_EXTENSION,
    BandValues,
    CatalogError,
    RasterInfo,
    footprint,
    index_values,
    raster_asset,
    read_raster_info,
    safe_values,
)
from s2_assets.products import (
    ProductMetadata,
    ProductName,
    acquisition_time,
    metadata_path,
    read_metadata,
)
from s2_assets.specs import parse_mask_spec

MASK_COLLECTION = "cloudmasks"
L2A_COLLECTION = "l2a"
SIDE_PRODUCTS = {"MSK_CLDPRB_20m.jp2": "cloud_probability"}
_SCL_SIDE_RE = re.compile(r"^T\d{2}[A-Z]{3}_\d{8}T\d{6}_SCL_20m\.jp2$")


def _bbox(geometry: dict[str, Any]) -> list[float]:
    xs = [p[0] for p in geometry["coordinates"][0]]
    ys = [p[1] for p in geometry["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


SuffixRule = Callable[[str, str], str | None]


class ItemBuilder:
    """Collects items per collection, reading each product's metadata once. A file or
    product that cannot be read is left out and named in ``skipped``, with the reason."""

    def __init__(self, library: Library, known: dict[str, Any]) -> None:
        self.library = library
        self.items: dict[str, list[pystac.Item]] = {}
        self.skipped: list[str] = []
        self.headers: dict[str, Any] = {}
        self._known = known
        self._metadata: dict[str, ProductMetadata | None] = {}

    def info(self, path: Path) -> RasterInfo | None:
        """The file's header, from the previous build when size and mtime are unchanged
        (opening a raster costs ~2 ms, which dominates a rebuild of a large library)."""
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        cached = self._known.get(str(path))
        try:
            info = RasterInfo.from_json(cached[1]) if cached and cached[0] == stamp else None
        except KeyError:
            info = None  # cached by an older build that read fewer fields
        if info is None:
            try:
                info = read_raster_info(path)
            except CatalogError as exc:
                self.skipped.append(str(exc))
                return None
        self.headers[str(path)] = [stamp, dataclasses.asdict(info)]
        return info

    def l2a_metadata(self, l2a: ProductName) -> ProductMetadata | None:
        """The L2A's metadata when its SAFE is in the library and readable."""
        if l2a.id not in self._metadata:
            try:
                self._metadata[l2a.id] = read_metadata(self.library.product_path(l2a))
            except S2AssetsError:
                self._metadata[l2a.id] = None
        return self._metadata[l2a.id]

    def new_item(
        self, item_id: str, l2a: ProductName, grid: RasterInfo, collection: str
    ) -> pystac.Item | None:
        try:
            geometry = footprint(grid)
        except CatalogError as exc:
            self.skipped.append(f"{item_id}: {exc}")
            return None
        metadata = self.l2a_metadata(l2a)
        tile = l2a.tile or ""
        item = pystac.Item(
            id=item_id,
            geometry=geometry,
            bbox=_bbox(geometry),
            # The one acquisition time of every output (the time series' dates too).
            datetime=acquisition_time(l2a),
            properties={
                "platform": f"sentinel-2{l2a.mission[2:].lower()}",
                "constellation": "sentinel-2",
                "instruments": ["msi"],
                "s2:product_id": l2a.id,
                "s2:mgrs_tile": tile,
                "s2:processing_baseline": l2a.baseline,
            },
        )
        MgrsExtension.ext(item, add_if_missing=True).apply(
            latitude_band=tile[2], grid_square=tile[3:], utm_zone=int(tile[:2])
        )
        ProjectionExtension.ext(item, add_if_missing=True).apply(epsg=grid.epsg)
        item.stac_extensions.append(RASTER_EXTENSION)
        if metadata is not None and metadata.cloud_cover is not None:
            EOExtension.ext(item, add_if_missing=True).cloud_cover = metadata.cloud_cover
        self.items.setdefault(collection, []).append(item)
        return item

    def add_l2a(self, tile: str) -> None:
        for product in self.library.products("L2A", tile):
            metadata = self.l2a_metadata(product.name)
            if metadata is None:
                self.skipped.append(f"{product.path}: metadata unreadable")
                continue
            images = [(_band_key(e), product.path / f"{e}.jp2") for e in metadata.image_files]
            cldprb = sorted(product.path.glob("GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2"))
            images += [("MSK_CLDPRB_20m", p) for p in cldprb[:1]]
            grids: dict[str, RasterInfo] = {}
            assets: dict[str, pystac.Asset] = {}
            for key, path in images:
                info = self.info(path) if path.is_file() else None
                if info is None:
                    continue
                grids[key] = info
                roles = ["visual"] if key.startswith("TCI") else ["data"]
                # The SAFE's JPEG2000 declare no nodata, scale or offset: its metadata says
                # 0 is no data (NODATA special value) for every image but the cloud
                # probability, where 0 is 0 %, and gives reflectances' scale and offset.
                values = safe_values(
                    key,
                    quantification=metadata.quantification,
                    add_offset=metadata.offset(key.split("_")[0]),
                )
                assets[key] = raster_asset(str(path), info, title=key, roles=roles, values=values)
            if not grids:
                self.skipped.append(f"{product.path}: no readable image")
                continue
            finest = min(grids.values(), key=lambda g: abs(g.transform[0]))
            item = self.new_item(product.id, product.name, finest, L2A_COLLECTION)
            if item is None:
                continue
            for key, asset in assets.items():
                item.add_asset(key, asset)
            item.add_asset(
                "metadata",
                pystac.Asset(
                    href=str(metadata_path(product.path)),
                    media_type=pystac.MediaType.XML,
                    title="MTD_MSIL2A.xml",
                    roles=["metadata"],
                ),
            )

    def add_derived(
        self, collection: str, tile_dir: Path, key_of: SuffixRule, *, index: bool
    ) -> None:
        """Items for the product folders under ``tile_dir`` (masks, or one index)."""
        for product_dir in sorted(p for p in tile_dir.iterdir() if p.is_dir()):
            try:
                l2a = ProductName.parse(product_dir.name)
            except ProductNameError:
                self.skipped.append(f"{product_dir}: not an L2A product folder")
                continue
            files = sorted(
                (key, path)
                for path in product_dir.iterdir()
                if path.is_file() and (key := key_of(l2a.id, path.name)) is not None
            )
            infos = {key: info for key, path in files if (info := self.info(path)) is not None}
            if not infos:
                continue
            item_id = f"{l2a.id}_{collection.upper()}"
            item = self.new_item(item_id, l2a, next(iter(infos.values())), collection)
            if item is None:
                continue
            for key, path in files:
                if key in infos:
                    info = infos[key]
                    values = index_values(info) if index else BandValues(unit=_unit(key))
                    asset = raster_asset(str(path), info, title=key, roles=["data"], values=values)
                    item.add_asset(key, asset)


def _band_key(image_entry: str) -> str:
    """``GRANULE/…/R10m/T40KCB_20240101T063511_B02_10m`` -> ``B02_10m``."""
    stem = Path(image_entry).name
    parts = stem.split("_")
    return "_".join(parts[2:]) if len(parts) > 2 else stem


def _unit(key: str) -> str | None:
    """The unit of a cloud-mask folder's file: the cloud probability is in %."""
    return "%" if key == SIDE_PRODUCTS["MSK_CLDPRB_20m.jp2"] else None


def mask_asset_key(l2a_id: str, filename: str) -> str | None:
    """The asset key of a file in a cloud-mask folder: the spec, a side product, or None."""
    if filename in SIDE_PRODUCTS:
        return SIDE_PRODUCTS[filename]
    if _SCL_SIDE_RE.match(filename):
        return "scl"
    return _spec_of(l2a_id, filename, prefix="")


def index_asset_key(index: str) -> SuffixRule:
    """The rule naming an index folder's files: ``NDVI`` (raw) or ``NDVI_<SPEC>``."""

    def rule(l2a_id: str, filename: str) -> str | None:
        stem, suffix = os.path.splitext(filename)
        if suffix not in MEDIA or filename.startswith("."):
            return None
        if stem == f"{l2a_id}_{index}":
            return index
        spec = _spec_of(l2a_id, filename, prefix=f"{index}_")
        return f"{index}_{spec}" if spec else None

    return rule


def _spec_of(l2a_id: str, filename: str, *, prefix: str) -> str | None:
    stem, suffix = os.path.splitext(filename)
    head = f"{l2a_id}_{prefix}"
    if suffix not in MEDIA or filename.startswith(".") or not stem.startswith(head):
        return None
    try:
        return str(parse_mask_spec(stem[len(head) :]))
    except S2AssetsError:
        return None  # a quicklook or a stray file: not a mask product
