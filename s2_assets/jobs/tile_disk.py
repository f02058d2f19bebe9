"""What one tile has on disk, for the planner: products, masks and indices by acquisition.

An acquisition (mission, sensing time, relative orbit, tile) is what an L1C and its L2A,
downloaded or computed, have in common; masks and indices count for their acquisition
whatever L2A id they were made from. Pure (no Dagster): it lists a tile's folders, looks
each wanted mask or index file up by its final name, never opens a raster; hidden
(half-written) files do not count.
"""

from __future__ import annotations

import os
from pathlib import Path

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
        # Product id -> acquisition: an L2A id names its folder, its mask and index folders
        # and its catalogue row; parsed once.
        self._keys: dict[str, Acquisition] = {}
        for level in ("L1C", "L2A"):
            for product_id in _products_in(lib.level_dir(level, tile), level):
                self.ids[level].add(product_id)
                acquisition = self.acquisition(product_id)
                self.acquisitions[level].add(acquisition)
                if level == "L2A":
                    self.l2a_ids.setdefault(acquisition, product_id)
        # Per index name ('' for the masks): its tile folder and product folders.
        self._folders: dict[str, tuple[str, dict[Acquisition, list[str]]]] = {}

    def acquisition(self, product_id: str) -> Acquisition:
        """:func:`acquisition_key` of a product id of this tile (remembered).

        Raises:
            ValueError: ``product_id`` is no product name.
        """
        key = self._keys.get(product_id)
        if key is None:
            key = self._keys[product_id] = acquisition_key(product_id)
        return key

    def has(self, record: ProductRecord) -> bool:
        return record.product_id in self.ids.get(record.level, set())

    def has_mask(self, acquisition: Acquisition, spec: str) -> bool:
        """A cloud mask of ``spec`` for ``acquisition`` (from any of its L2A ids)."""
        return self._has("", acquisition, spec)

    def has_index(self, index: str, acquisition: Acquisition, label: str) -> bool:
        """``label`` (``NDVI`` or ``NDVI_<mask spec>``) of ``index`` for ``acquisition``."""
        return self._has(index, acquisition, label)

    def _has(self, index: str, acquisition: Acquisition, label: str) -> bool:
        """``<folder>/<L2A id>/<L2A id>_<label>.tif|jp2`` for one of the acquisition's ids,
        in the tile's mask folder (``index`` empty) or that index's.

        One look-up per wanted file rather than a listing of every product folder: a tile's
        ten years are 730 folders per output kind, each listing four system calls where a
        look-up is one. A hidden (half-written) file never has the final name.
        """
        if index not in self._folders:
            tile_dir = (
                self.lib.index_dir(index, self.tile, "_") if index else
                self.lib.mask_dir(self.tile, "_")
            ).parent  # fmt: skip
            self._folders[index] = (str(tile_dir), self._folders_below(tile_dir))
        base, by_acquisition = self._folders[index]
        for name in by_acquisition.get(acquisition, ()):
            for ext in OUTPUT_FORMATS:
                # Existence only (the entry itself, as a listing shows it): no stat result
                # to build, no exception when absent or when the entry is no folder.
                if os.access(f"{base}/{name}/{name}_{label}{ext}", os.F_OK, follow_symlinks=False):
                    return True
        return False

    def _folders_below(self, folder: Path) -> dict[Acquisition, list[str]]:
        """The per-product folders (named by L2A id) of one tile's masks or one index, by
        acquisition; entries that are no product name are ignored."""
        found: dict[Acquisition, list[str]] = {}
        try:
            names = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return found
        for name in names:
            try:
                acquisition = self.acquisition(name)
            except ValueError:
                continue
            found.setdefault(acquisition, []).append(name)
        return found


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
