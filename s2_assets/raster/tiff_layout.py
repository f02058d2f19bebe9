"""Where a TIFF keeps its tile offsets and byte counts, and how to set them. Pure bytes.

The streaming COG writer (``cog_source.py``) takes the header GDAL's COG driver writes
for a raster (its ghost area and every IFD, up to the first tile) and puts in the
offsets and sizes of tiles it compressed itself. Only the two tile arrays of each IFD
change; every other byte of the header is GDAL's. Classic TIFF and BigTIFF, little- or
big-endian; the arrays may be SHORT, LONG or LONG8 (libtiff picks by tile size).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from s2_assets.raster.types import RasterError

TILE_OFFSETS, TILE_BYTE_COUNTS = 324, 325
_FORMATS = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8


@dataclass(frozen=True)
class TileArray:
    """One IFD's tile array: where its values start, how many, and their struct code."""

    position: int
    count: int
    code: str


@dataclass(frozen=True)
class TileArrays:
    """The tile offsets and byte counts of one IFD, and their current values."""

    offsets: TileArray
    byte_counts: TileArray
    offset_values: tuple[int, ...]


def tile_arrays(data: bytes | bytearray | memoryview) -> tuple[str, list[TileArrays]]:
    """The byte order (``<`` or ``>``) and, per IFD in file order, its tile arrays.

    Raises:
        RasterError: not a tiled TIFF.
    """
    view = memoryview(data)
    order = {b"II": "<", b"MM": ">"}.get(bytes(view[:2]))
    if order is None:
        raise RasterError("not a TIFF: no byte order mark")
    (magic,) = struct.unpack_from(order + "H", view, 2)
    big = magic == 43
    count_code, entry_code, size, inline = ("Q", "HHQ", 20, 8) if big else ("H", "HHI", 12, 4)
    (offset,) = struct.unpack_from(order + ("Q" if big else "I"), view, 8 if big else 4)
    found: list[TileArrays] = []
    while offset:
        (entries,) = struct.unpack_from(order + count_code, view, offset)
        first = offset + struct.calcsize(count_code)
        arrays: dict[int, TileArray] = {}
        for number in range(entries):
            entry = first + number * size
            tag, kind, count = struct.unpack_from(order + entry_code, view, entry)
            if tag in (TILE_OFFSETS, TILE_BYTE_COUNTS):
                if kind not in _FORMATS:
                    raise RasterError(f"tile array tag {tag} of unexpected type {kind}")
                code = _FORMATS[kind]
                value_at = entry + struct.calcsize(entry_code)
                if count * struct.calcsize(code) > inline:  # stored elsewhere: an offset
                    (value_at,) = struct.unpack_from(order + ("Q" if big else "I"), view, value_at)
                arrays[tag] = TileArray(value_at, count, code)
        if set(arrays) != {TILE_OFFSETS, TILE_BYTE_COUNTS}:
            raise RasterError("not a tiled TIFF: an IFD without tile offsets and byte counts")
        offsets = arrays[TILE_OFFSETS]
        values = struct.unpack_from(f"{order}{offsets.count}{offsets.code}", view, offsets.position)
        found.append(TileArrays(offsets, arrays[TILE_BYTE_COUNTS], tuple(values)))
        (offset,) = struct.unpack_from(order + ("Q" if big else "I"), view, first + entries * size)
    return order, found


def put_values(header: bytearray, order: str, array: TileArray, values: list[int]) -> None:
    """Write ``values`` into ``array`` of ``header``.

    Raises:
        RasterError: wrong number of values, or one too large for the array's type.
    """
    if len(values) != array.count:
        raise RasterError(f"{len(values)} tiles for a TIFF array of {array.count}")
    limit = 1 << (8 * struct.calcsize(array.code))
    if values and max(values) >= limit:
        raise RasterError(f"tile offset or size {max(values)} does not fit the TIFF array")
    struct.pack_into(f"{order}{array.count}{array.code}", header, array.position, *values)
