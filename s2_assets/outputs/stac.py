"""A static STAC catalogue of the library, so QGIS, odc-stac and stackstac open it.

Layout (pystac's default, relative links, asset hrefs relative to each item)::

    <root>/data/STAC/catalog.json
    <root>/data/STAC/<collection>/collection.json
    <root>/data/STAC/<collection>/<item id>/<item id>.json

Collections: ``l2a``, ``cloudmasks`` and one per index (``ndvi`` …), their items built by
:mod:`s2_assets.outputs.stac_items`. Monthly composites, when there are any, get a
collection per index (:mod:`s2_assets.outputs.stac_composites`). A second catalogue,
``data/STAC_ABSOLUTE``, has absolute asset hrefs and ``proj:epsg`` for loaders that need
them (stackstac 0.5).

The whole catalogue is written into a hidden sibling folder and renamed into place: readers
see the previous catalogue or the new one, never a mix. Pure: no Dagster.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac

from s2_assets.library.tree import Library
from s2_assets.outputs.stac_composites import composite_collection, composite_items
from s2_assets.outputs.stac_items import (
    L2A_COLLECTION,
    MASK_COLLECTION,
    ItemBuilder,
    index_asset_key,
    mask_asset_key,
)
from s2_assets.outputs.stac_raster import CatalogError, RasterInfo
from s2_assets.specs import INDEX_NAMES

__all__ = ["CatalogError", "RasterInfo", "catalog_dir", "write_catalog"]

CATALOG_ID = "s2_assets"
# Headers of the files catalogued, by path, with their size and mtime: not a STAC document.
HEADER_CACHE = "headers.cache"


def _read_headers(path: Path) -> dict[str, Any]:
    """The previous build's headers; anything unreadable just means reading them again."""
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


@dataclass
class CatalogSummary:
    """What :func:`write_catalog` wrote: the root file and the item count per collection."""

    path: Path
    items: dict[str, int] = field(default_factory=dict)
    assets: int = 0
    skipped: list[str] = field(default_factory=list)


def catalog_dir(library: Library, *, absolute: bool = False) -> Path:
    """``<root>/data/STAC`` (relative hrefs), or ``<root>/data/STAC_ABSOLUTE``."""
    return library.root / "data" / ("STAC_ABSOLUTE" if absolute else "STAC")


def _index_root(library: Library, index: str) -> Path:
    # INDICES/<INDEX>/<tile>/<L2A id>: the index folder is two levels above a product's.
    return library.index_dir(index, "_", "_").parent.parent


def build_catalog(
    library: Library, known_headers: dict[str, Any] | None = None
) -> tuple[pystac.Catalog, ItemBuilder]:
    """The catalogue of everything in ``library`` (absolute asset hrefs), and its builder:
    what was skipped (unreadable or misnamed products, with the reason) and the headers read.

    ``known_headers`` are the headers of a previous build, reused for unchanged files.
    """
    builder = ItemBuilder(library, known_headers or {})
    mask_root = library.mask_dir("_", "_").parent.parent
    for tile in library.tiles("L2A"):
        builder.add_l2a(tile)
    for tile in _subdirs(mask_root):
        builder.add_derived(MASK_COLLECTION, mask_root / tile, mask_asset_key, index=False)
    for index in INDEX_NAMES:
        root = _index_root(library, index)
        for tile in _subdirs(root):
            builder.add_derived(index.lower(), root / tile, index_asset_key(index), index=True)
    composites = library.root / "data" / "COMPOSITES"
    for index in INDEX_NAMES:
        items = composite_items(composites / index, index, builder.info, builder.skipped)
        if items:
            builder.items[composite_collection(index)] = items
    catalog = pystac.Catalog(
        id=CATALOG_ID,
        # No machine path here: the catalogue moves with the library.
        description="Sentinel-2 L2A products, cloud masks and spectral indices of one library",
        catalog_type=pystac.CatalogType.SELF_CONTAINED,
    )
    for collection_id, items in builder.items.items():
        collection = pystac.Collection(
            id=collection_id,
            description=_DESCRIPTIONS.get(collection_id, _description(collection_id)),
            extent=pystac.Extent.from_items(items),
            license="other",
        )
        collection.add_items(items)
        catalog.add_child(collection)
    return catalog, builder


_DESCRIPTIONS = {
    L2A_COLLECTION: "Sentinel-2 L2A products (SAFE), one asset per image",
    MASK_COLLECTION: "Cloud masks (1 masked, 0 clear, 255 no data), one asset per mask spec",
}


def _description(collection_id: str) -> str:
    if collection_id.startswith("composites-"):
        index = collection_id.removeprefix("composites-").upper()
        return f"Monthly {index} composites (median, mean, max, count of valid observations)"
    return f"{collection_id.upper()} index"


def _subdirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _objects(catalog: pystac.Catalog) -> Iterator[pystac.STACObject]:
    yield catalog
    for child in catalog.get_children():
        yield child
        yield from child.get_items()


PROJECTION_V2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
PROJECTION_V1_1 = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"


def with_epsg(document: dict[str, Any]) -> dict[str, Any]:
    """An item for loaders that read ``proj:epsg`` (stackstac 0.5): projection v1.1.0's
    ``proj:epsg`` in place of v2.0.0's ``proj:code``. Neither schema allows both in one
    document: each rejects a ``proj:`` field it does not define (v1.1.0 has no
    ``proj:code``, v2.0.0 removed ``proj:epsg``)."""
    document["stac_extensions"] = [
        PROJECTION_V1_1 if uri == PROJECTION_V2 else uri for uri in document["stac_extensions"]
    ]
    for fields in (document["properties"], *document["assets"].values()):
        code = fields.pop("proj:code", None)
        if code is not None:
            authority, _, number = str(code).partition(":")
            if authority != "EPSG":
                raise CatalogError(f"{document['id']}: CRS {code} has no EPSG code")
            fields["proj:epsg"] = int(number)
    return document


def write_catalog(library: Library, *, absolute: bool = False) -> CatalogSummary:
    """Build the library's catalogue and publish it in one rename.

    By default as ``<root>/data/STAC``: asset hrefs relative to each item, so the catalogue
    moves with the library, and ``proj:code`` (projection v2.0.0). With ``absolute`` as
    ``<root>/data/STAC_ABSOLUTE`` for loaders that need absolute asset hrefs and
    ``proj:epsg`` (stackstac): absolute hrefs, ``proj:epsg`` (projection v1.1.0).

    Raises:
        CatalogError: a raster header is unreadable; the previous catalogue is kept.
    """
    final = catalog_dir(library, absolute=absolute)
    catalog, builder = build_catalog(library, _read_headers(final / HEADER_CACHE))
    catalog.normalize_hrefs(str(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".STAC-", dir=final.parent))
    summary = CatalogSummary(path=final / "catalog.json", skipped=builder.skipped)
    try:
        (staged / HEADER_CACHE).write_text(json.dumps(builder.headers))
        for obj in _objects(catalog):
            self_href = obj.get_self_href()
            assert self_href is not None  # set by normalize_hrefs
            here = Path(self_href).parent
            if isinstance(obj, pystac.Item):
                if not absolute:
                    for asset in obj.assets.values():
                        asset.href = os.path.relpath(asset.href, here)
                summary.assets += len(obj.assets)
                collection_id = obj.collection_id or ""
                summary.items[collection_id] = summary.items.get(collection_id, 0) + 1
            target = staged / Path(self_href).relative_to(final)
            target.parent.mkdir(parents=True, exist_ok=True)
            document = obj.to_dict(include_self_link=False)
            if absolute and isinstance(obj, pystac.Item):
                document = with_epsg(document)
            target.write_text(json.dumps(document))
        os.chmod(staged, 0o755)
        library.publish(staged, final)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    return summary
