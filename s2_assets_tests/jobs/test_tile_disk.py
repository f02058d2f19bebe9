"""What a tile holds on disk for the planner (s2_assets.jobs.tile_disk): a mask or index
file counts under its final name only, in either output format, for its acquisition
whatever L2A id it was made from."""

from __future__ import annotations

import os
from pathlib import Path

from s2_assets.jobs.tile_disk import TileDisk, acquisition_key
from s2_assets.library.tree import Library

TILE = "40KCB"
MASK = "CM001"
L2A = "S2A_MSIL2A_20220120T063511_N0400_R120_T40KCB_20220120T083511"
# The same acquisition computed here with Sen2Cor: another processing time, same sensing.
COMPUTED = "S2A_MSIL2A_20220120T063511_N9999_R120_T40KCB_20220301T101010"
OTHER = "S2B_MSIL2A_20220125T063511_N0400_R120_T40KCB_20220125T083511"


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_outputs_count_under_their_final_name_in_either_format(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    touch(lib.mask_dir(TILE, L2A) / f"{L2A}_{MASK}.tif")
    touch(lib.index_dir("NDVI", TILE, L2A) / f"{L2A}_NDVI.jp2")
    # Half-written (hidden, or not yet renamed) and foreign files do not count.
    touch(lib.index_dir("NDVI", TILE, L2A) / f".{L2A}_NDVI_{MASK}.tif")
    touch(lib.index_dir("NDVI", TILE, L2A) / f"{L2A}_NDVI_{MASK}.tif.part")
    touch(lib.index_dir("NDVI", TILE, L2A) / f"{L2A}_NDVI_{MASK}.png")
    touch(lib.index_dir("NDWI", TILE, L2A) / f"{L2A}_NDVI.tif")  # another index's folder
    disk = TileDisk(lib, TILE)
    here = acquisition_key(L2A)
    assert disk.has_mask(here, MASK)
    assert not disk.has_mask(here, "CM002")
    assert disk.has_index("NDVI", here, "NDVI")
    assert not disk.has_index("NDVI", here, f"NDVI_{MASK}")
    assert not disk.has_index("NDWI", here, "NDWI")
    assert not disk.has_index("NDVI", acquisition_key(OTHER), "NDVI")


def test_outputs_count_for_the_acquisition_whatever_l2a_they_came_from(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    touch(lib.mask_dir(TILE, COMPUTED) / f"{COMPUTED}_{MASK}.tif")
    touch(lib.index_dir("NDVI", TILE, L2A) / f"{L2A}_NDVI.tif")
    touch(lib.index_dir("NDVI", TILE, COMPUTED) / f"{COMPUTED}_NDVI_{MASK}.tif")
    disk = TileDisk(lib, TILE)
    here = acquisition_key(L2A)
    assert acquisition_key(COMPUTED) == here
    assert disk.has_mask(here, MASK)
    assert disk.has_index("NDVI", here, "NDVI")
    assert disk.has_index("NDVI", here, f"NDVI_{MASK}")
    # A file's name must carry its own folder's id.
    touch(lib.mask_dir(TILE, L2A) / f"{COMPUTED}_CM002.tif")
    assert not TileDisk(lib, TILE).has_mask(here, "CM002")


def test_what_is_no_product_folder_is_ignored(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    masks = lib.mask_dir(TILE, L2A).parent
    touch(masks / L2A)  # a file where the product's folder should be
    touch(masks / "notes" / f"{L2A}_{MASK}.tif")
    elsewhere = tmp_path / "elsewhere" / OTHER
    touch(elsewhere / f"{OTHER}_{MASK}.tif")
    os.symlink(elsewhere, masks / OTHER)  # a linked product folder counts
    disk = TileDisk(lib, TILE)
    assert not disk.has_mask(acquisition_key(L2A), MASK)
    assert disk.has_mask(acquisition_key(OTHER), MASK)
    # Nothing on disk for the tile at all.
    assert not TileDisk(Library(tmp_path / "empty"), TILE).has_index("NDVI", ("", "", "", ""), "X")
