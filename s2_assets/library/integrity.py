"""Is a product's every image whole? Structure walks over the bytes, no decoding. Pure.

A product zip can unpack cleanly (every CRC right) and still hold a band cut short: the zip
was built from a damaged file, or a file was damaged on disk later. Decoding every band
would take minutes per product, so this module walks the file structures instead, reading a
few bytes per box, marker or tile-part with ``os.pread``:

- JPEG 2000 (``.jp2``): the box chain from the signature box to the end of the file, every
  box inside the file, a ``jp2h`` header and exactly one ``jp2c`` codestream box; inside the
  codestream the start marker, the main header's marker segments, every tile-part (``SOT``
  markers) whose lengths (``Psot``) must chain exactly to the end-of-codestream marker
  (``EOC``, FFD9), and every tile of the ``SIZ`` grid present with all its tile-parts.
- GeoTIFF (``.tif``, what Sen2Cor writes with ``--tif``): the header, the chain of IFDs,
  every tag value and every strip or tile (offset + byte count) inside the file, and the
  GeoTIFF keys on the first image.

Cost: a few thousand small reads per product, well under a second on a full-size tile (the
measured figure is in ``docs/faults.md``). :func:`product_problems` is what the library runs
before publishing a product and what ``s2-assets clean`` runs on products already there.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

from s2_assets.errors import MetadataError
from s2_assets.products import read_metadata

_JP2_SIGNATURE = b"\r\n\x87\n"
_SOC, _SOT, _SIZ, _EOC = 0xFF4F, 0xFF90, 0xFF51, 0xFFD9
_MAX_TIFF_IFDS = 64  # a GeoTIFF has its image and a handful of overviews and masks
# TIFF field type -> bytes per value (BYTE, ASCII, SHORT, LONG, RATIONAL, ..., LONG8, IFD8).
_TIFF_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
                   13: 4, 16: 8, 17: 8, 18: 8}  # fmt: skip
_TIFF_INT = {3: "H", 4: "I", 16: "Q", 8: "h", 9: "i", 17: "q"}
_STRIP_OFFSETS, _STRIP_COUNTS, _TILE_OFFSETS, _TILE_COUNTS = 273, 279, 324, 325
_GEO_KEYS, _PIXEL_SCALE, _TIEPOINT, _TRANSFORMATION = 34735, 33550, 33922, 34264
IMAGE_SUFFIXES = (".jp2", ".tif")


class _Broken(Exception):
    """Internal: the reason a structure walk stopped."""


class _Reader:
    """Positional reads of exact lengths from one open file."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or offset + length > self.size:
            raise _Broken(
                f"truncated ({self.size} bytes, {what} at byte {offset} runs past the end)"
            )
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise _Broken(f"truncated ({self.size} bytes, short read of {what} at byte {offset})")
        return data


def _open(path: Path) -> tuple[int, int] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    return fd, os.fstat(fd).st_size


def jp2_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete JPEG 2000 file (or raw codestream), or None.

    Never decodes pixels: reads the box headers, the codestream main header and one
    12-byte ``SOT`` segment per tile-part.
    """
    opened = _open(path)
    if opened is None:
        return "missing"
    fd, size = opened
    try:
        reader = _Reader(fd, size)
        if size >= 2 and reader.read(0, 2, "start") == b"\xff\x4f":
            return _codestream_problem(reader, 0, size)
        return _jp2_boxes_problem(reader)
    except _Broken as exc:
        return str(exc)
    finally:
        os.close(fd)


def _jp2_boxes_problem(reader: _Reader) -> str | None:
    size = reader.size
    position, seen, codestreams = 0, [], 0
    while position < size:
        if size - position < 8:
            return f"truncated ({size} bytes, a box header at byte {position} is cut)"
        length, kind = struct.unpack(">I4s", reader.read(position, 8, "box header"))
        header_length = 8
        if length == 1:
            length = struct.unpack(">Q", reader.read(position + 8, 8, "box length"))[0]
            header_length = 16
        elif length == 0:
            length = size - position  # the last box runs to the end of the file
        if position == 0 and kind != b"jP  ":
            return "not a JPEG 2000 file"
        if length < header_length or position + length > size:
            return f"truncated ({size} bytes, box {kind!r} runs past the end)"
        if kind == b"jP  " and reader.read(position + 8, 4, "signature") != _JP2_SIGNATURE:
            return "not a JPEG 2000 file (bad signature box)"
        if kind == b"jp2c":
            codestreams += 1
            if b"jp2h" not in seen:
                return "codestream box before the jp2h header box"
            problem = _codestream_problem(reader, position + header_length, position + length)
            if problem is not None:
                return problem
        seen.append(kind)
        position += length
    if not codestreams:
        return "no codestream"
    if seen[1:2] != [b"ftyp"]:
        return "no file type box after the signature"
    return None if codestreams == 1 else f"{codestreams} codestream boxes, expected 1"


def _codestream_problem(reader: _Reader, start: int, end: int) -> str | None:
    """Walk a codestream from ``start`` to ``end`` (exclusive): SOC, main header, every
    tile-part by its ``Psot`` length, EOC as the last two bytes."""
    if end - start < 4 or reader.read(start, 2, "codestream start") != b"\xff\x4f":
        return "incomplete codestream (no start marker)"
    if reader.read(end - 2, 2, "codestream end") != b"\xff\xd9":
        return "incomplete codestream (no end marker)"
    position, tiles = start + 2, 0
    while True:
        marker, seg_length = struct.unpack(">HH", reader.read(position, 4, "main header marker"))
        if marker == _SOT:
            break
        if marker >> 8 != 0xFF or seg_length < 2:
            return f"corrupt codestream main header (marker {marker:04X} at byte {position})"
        if marker == _SIZ:
            tiles = _tile_count(reader.read(position + 4, 36, "SIZ segment"))
        position += 2 + seg_length
        if position >= end - 2:
            return "incomplete codestream (no tile-part)"
    if tiles <= 0:
        return "corrupt codestream (no SIZ segment before the first tile-part)"
    parts: dict[int, int] = {}
    declared: dict[int, int] = {}
    last = end - 2  # where EOC sits
    while position != last:
        head = reader.read(position, 12, "tile-part header")
        marker, lsot, isot, psot, _tpsot, tnsot = struct.unpack(">HHHIBB", head)
        if marker != _SOT:
            return (
                f"corrupt codestream: expected a tile-part (SOT) at byte {position}, "
                f"found marker {marker:04X}"
            )
        if lsot != 10:
            return (
                f"corrupt codestream: tile-part header at byte {position} has Lsot={lsot}, not 10"
            )
        if isot >= tiles:
            return f"corrupt codestream: tile-part of tile {isot}, the grid has {tiles} tiles"
        after = last if psot == 0 else position + psot
        if psot != 0 and psot < 14:
            return f"corrupt codestream: tile-part at byte {position} declares {psot} bytes"
        if after > last:
            return (
                f"truncated codestream: tile-part of tile {isot} at byte {position} needs "
                f"{psot} bytes, {last - position} remain before the end marker"
            )
        parts[isot] = parts.get(isot, 0) + 1
        if tnsot:
            declared[isot] = tnsot
        position = after
    missing = tiles - len(parts)
    if missing:
        first = next(i for i in range(tiles) if i not in parts)
        return f"incomplete codestream: {missing} of {tiles} tiles missing (first: tile {first})"
    short = [i for i, count in declared.items() if parts[i] != count]
    if short:
        i = short[0]
        return f"incomplete codestream: tile {i} has {parts[i]} of {declared[i]} tile-parts"
    return None


def _tile_count(siz: bytes) -> int:
    """Tiles in the grid a SIZ segment describes (after its Rsiz field)."""
    _rsiz, xsiz, ysiz, _xo, _yo, xt, yt, xto, yto = struct.unpack(">HIIIIIIII", siz[:34])
    if xt == 0 or yt == 0 or xsiz <= xto or ysiz <= yto:
        return 0
    return -(-(xsiz - xto) // xt) * -(-(ysiz - yto) // yt)


def tiff_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete (Geo)TIFF, or None: header, IFD chain, tag values and
    every strip or tile inside the file; GeoTIFF keys on the first image."""
    opened = _open(path)
    if opened is None:
        return "missing"
    fd, size = opened
    try:
        return _tiff_walk(_Reader(fd, size))
    except _Broken as exc:
        return str(exc)
    finally:
        os.close(fd)


def _tiff_walk(reader: _Reader) -> str | None:
    if reader.size < 8:
        return "not a TIFF file"
    head = reader.read(0, 8, "header")
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        return "not a TIFF file"
    magic = struct.unpack(f"{order}H", head[2:4])[0]
    if magic == 42:
        big, offset = False, struct.unpack(f"{order}I", head[4:8])[0]
    elif magic == 43:
        big, offset = True, struct.unpack(f"{order}Q", reader.read(8, 8, "header"))[0]
    else:
        return "not a TIFF file"
    seen: set[int] = set()
    index = 0
    while offset:
        if offset in seen or index >= _MAX_TIFF_IFDS:
            return f"IFD chain loops or is too long (IFD {index} at byte {offset})"
        seen.add(offset)
        tags, offset = _tiff_ifd(reader, order, big, offset, index)
        if index == 0 and _GEO_KEYS not in tags:
            return "no GeoTIFF keys (GeoKeyDirectory) on the first image"
        if (
            index == 0
            and _TRANSFORMATION not in tags
            and not (_PIXEL_SCALE in tags and _TIEPOINT in tags)
        ):
            return "no georeferencing (pixel scale and tie point, or transformation)"
        for data_tag, count_tag, what in (
            (_STRIP_OFFSETS, _STRIP_COUNTS, "strip"),
            (_TILE_OFFSETS, _TILE_COUNTS, "tile"),
        ):
            if data_tag in tags or count_tag in tags:
                problem = _blocks_problem(tags.get(data_tag), tags.get(count_tag), reader, what)
                if problem is not None:
                    return f"IFD {index}: {problem}"
        index += 1
    return None if index else "no image (empty IFD chain)"


def _tiff_ifd(
    reader: _Reader, order: str, big: bool, offset: int, index: int
) -> tuple[dict[int, list[int]], int]:
    """The integer tags of one IFD (others as empty lists) and the next IFD's offset."""
    count_fmt, entry_size, inline, next_fmt = ("Q", 20, 8, "Q") if big else ("H", 12, 4, "I")
    count_size = struct.calcsize(count_fmt)
    count = struct.unpack(f"{order}{count_fmt}", reader.read(offset, count_size, f"IFD {index}"))[0]
    if count == 0:
        raise _Broken(f"IFD {index} has no entries")
    body = reader.read(offset + count_size, count * entry_size, f"IFD {index} entries")
    next_size = struct.calcsize(next_fmt)
    after = offset + count_size + count * entry_size
    next_offset = struct.unpack(f"{order}{next_fmt}", reader.read(after, next_size, "IFD link"))[0]
    tags: dict[int, list[int]] = {}
    entry_fmt = f"{order}HH{'Q' if big else 'I'}"
    for start in range(0, len(body), entry_size):
        tag, kind, n = struct.unpack(entry_fmt, body[start : start + 4 + (8 if big else 4)])
        value_field = body[start + entry_size - inline : start + entry_size]
        total = _TIFF_TYPE_SIZE.get(kind, 1) * n
        if total <= inline:
            raw = value_field[:total]
        else:
            where = struct.unpack(f"{order}{'Q' if big else 'I'}", value_field)[0]
            raw = reader.read(where, total, f"IFD {index} tag {tag} values")
        fmt = _TIFF_INT.get(kind)
        tags[tag] = list(struct.unpack(f"{order}{n}{fmt}", raw)) if fmt else []
    return tags, next_offset


def _blocks_problem(
    offsets: list[int] | None, counts: list[int] | None, reader: _Reader, what: str
) -> str | None:
    if offsets is None or counts is None or len(offsets) != len(counts):
        return f"{what} offsets and byte counts do not match"
    for number, (offset, count) in enumerate(zip(offsets, counts, strict=True)):
        if count and offset + count > reader.size:
            return (
                f"truncated ({reader.size} bytes, {what} {number} needs bytes "
                f"{offset}..{offset + count})"
            )
    return None


def image_problem(path: Path) -> str | None:
    """Why an image file is not complete, by its suffix (JPEG 2000 or GeoTIFF), or None."""
    return tiff_problem(path) if path.suffix.lower() in (".tif", ".tiff") else jp2_problem(path)


def _listed_image(safe: Path, entry: str) -> Path | None:
    """The file of an ``IMAGE_FILE`` entry (listed without suffix): ``.jp2`` or ``.tif``."""
    for suffix in IMAGE_SUFFIXES:
        candidate = safe / f"{entry}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _other_images(safe: Path, listed: set[Path]) -> Iterator[Path]:
    """Images the metadata does not list (QI masks, previews): checked all the same."""
    for root, _dirs, files in os.walk(safe):
        for name in files:
            if name.lower().endswith((".jp2", ".tif")):
                path = Path(root) / name
                if path not in listed:
                    yield path


def product_problems(safe: Path, expected_id: str | None = None) -> list[str]:
    """What is wrong with an unpacked SAFE; empty when it may be published.

    The product metadata must read (and name ``expected_id`` when given); every image it
    lists must exist, as ``.jp2`` or ``.tif``, and be structurally whole; so must every
    other image in the SAFE. Each problem names the file, relative to the SAFE.
    """
    try:
        metadata = read_metadata(safe)
    except MetadataError as exc:
        return [str(exc)]
    problems = []
    if expected_id is not None and metadata.product_uri.upper() != expected_id.upper():
        problems.append(f"metadata names {metadata.product_uri}, not {expected_id}")
    listed: set[Path] = set()
    missing = []
    for entry in metadata.image_files:
        path = _listed_image(safe, entry)
        if path is None:
            missing.append(entry)
            continue
        listed.add(path)
        if (problem := image_problem(path)) is not None:
            problems.append(f"{path.relative_to(safe)}: {problem}")
    if missing:
        problems.append(f"{len(missing)} listed images missing, e.g. {missing[0]}.jp2")
    for path in sorted(_other_images(safe, listed)):
        if (problem := image_problem(path)) is not None:
            problems.append(f"{path.relative_to(safe)}: {problem}")
    return problems
