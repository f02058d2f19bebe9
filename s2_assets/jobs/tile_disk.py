"""What one tile has on disk, for the planner: products, masks and indices by acquisition.

An acquisition (mission, sensing time, relative orbit, tile) is what an L1C and its L2A,
downloaded or computed, have in common; masks and indices count for their acquisition
whatever L2A id they were made from. Pure (no Dagster): it lists folders, never opens a
raster, and hidden (half-written) files do not count.
"""

from __future__ import annotations

import os

from s2_assets.library.tree import Library
from s2_assets.products import ProductName
from s2_assets.providers.base import ProductRecord

OUTPUT_FORMATS = (".tif", ".jp2")
Acquisition = tuple[str, str, str, str | None]


def acquisition_of(name: ProductName) -> Acquisition:
    """What an L1C and its L2A (downloaded or computed) have in common."""
    stamp = name.sensing.strftime("%Y%m%dT%H%M%S")
    return (name.mission, stamp, f"R{name.relative_orbit:03d}", name.tile)


def acquisition_key(product_id: str) -> Acquisition:
    """:func:`acquisition_of` a product id, read from its fields without a full parse (the
    planner meets hundreds of thousands of names); legacy names take the full parse."""
    parts = product_id.split("_")
    if (
        len(parts) == 7
        and parts[1].startswith("MSI")
        and parts[4].startswith("R")
        and parts[5].startswith("T")
        and len(parts[2]) == 15
    ):
        return (parts[0], parts[2], parts[4], parts[5][1:])
    return acquisition_of(ProductName.parse(product_id))


class TileDisk:
    """What one tile has on disk, listed once: products by acquisition, mask and index files
    by acquisition (whatever L2A id they were made from)."""

    def __init__(self, lib: Library, tile: str) -> None:
        self.lib = lib
        self.tile = tile
        self.ids: dict[str, set[str]] = {"L1C": set(), "L2A": set()}
        self.acquisitions: dict[str, set[Acquisition]] = {"L1C": set(), "L2A": set()}
        self.l2a_ids: dict[Acquisition, str] = {}
        for level in ("L1C", "L2A"):
            for product_id in _products_in(lib.level_dir(level, tile), level):
                self.ids[level].add(product_id)
                acquisition = acquisition_key(product_id)
                self.acquisitions[level].add(acquisition)
                if level == "L2A":
                    self.l2a_ids.setdefault(acquisition, product_id)
        self._masks: dict[Acquisition, set[str]] | None = None
        self._indices: dict[str, dict[Acquisition, set[str]]] = {}

    def has(self, record: ProductRecord) -> bool:
        return record.product_id in self.ids.get(record.level, set())

    def masks(self) -> dict[Acquisition, set[str]]:
        if self._masks is None:
            self._masks = _outputs_below(self.lib.mask_dir(self.tile, "_").parent, "")
        return self._masks

    def index(self, index: str) -> dict[Acquisition, set[str]]:
        if index not in self._indices:
            folder = self.lib.index_dir(index, self.tile, "_").parent
            self._indices[index] = _outputs_below(folder, index)
        return self._indices[index]


def _products_in(folder: os.PathLike[str], level: str) -> list[str]:
    """Product ids of the ``<id>.SAFE`` folders (or links to them) of one level and tile."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        name = entry.name
        if name.endswith(".SAFE") and f"MSI{level}" in name and entry.is_dir():
            found.append(name.removesuffix(".SAFE"))
    return sorted(found)


def _outputs_below(folder: str | os.PathLike[str], index: str) -> dict[Acquisition, set[str]]:
    """``<folder>/<L2A id>/<L2A id>_<suffix>.tif|jp2`` -> suffixes by acquisition.

    For masks (``index`` empty) the suffix is the spec; for an index it is ``NDVI`` or
    ``NDVI_<spec>``. Hidden files (half-written outputs) do not count.
    """
    found: dict[Acquisition, set[str]] = {}
    try:
        products = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in products:
        try:
            acquisition = acquisition_key(entry.name)
        except ValueError:
            continue
        prefix = f"{entry.name}_"
        try:
            files = os.listdir(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        labels = found.setdefault(acquisition, set())
        for file in files:
            stem, ext = os.path.splitext(file)
            if ext in OUTPUT_FORMATS and stem.startswith(prefix):
                labels.add(stem[len(prefix) :])
    return found
