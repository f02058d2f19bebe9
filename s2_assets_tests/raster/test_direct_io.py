"""Files written and read around the page cache: exactly the bytes appended, whatever the
block alignment, with or without ``O_DIRECT``, and write failures reported, not lost."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from s2_assets.raster import direct_io
from s2_assets.raster.direct_io import ALIGN, CHUNK, AppendFile, copy_ranges

# Piece sizes around the block size and the chunk size: empty, odd, exact, just over.
SIZES = [0, 1, 3, ALIGN - 1, ALIGN, ALIGN + 5, 3 * ALIGN + 17, CHUNK - 2, CHUNK, CHUNK + 4099]


def _pieces(seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in rng.permutation(SIZES)]


@pytest.fixture(params=["direct", "page cache"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of writing: O_DIRECT where the file system takes it, and the fallback."""
    if request.param == "page cache":
        monkeypatch.setattr(direct_io, "_DIRECT", 0)
    return str(request.param)


def test_appended_bytes_are_the_file(tmp_path: Path, mode: str) -> None:
    pieces = _pieces(1)
    out = AppendFile(tmp_path / "out.bin")
    for start in range(0, len(pieces), 3):  # several appends, tails carried between them
        out.append(pieces[start : start + 3])
    out.close()
    out.close()  # twice is harmless
    assert out.size == sum(map(len, pieces))
    assert (tmp_path / "out.bin").read_bytes() == b"".join(pieces)
    if mode == "page cache":
        assert not out.direct


def test_the_direct_path_is_taken_where_the_file_system_allows_it(tmp_path: Path) -> None:
    if not direct_io._DIRECT:
        pytest.skip("no O_DIRECT on this platform")
    try:
        probe = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | direct_io._DIRECT)
    except OSError:
        pytest.skip("this file system refuses O_DIRECT")
    os.close(probe)
    out = AppendFile(tmp_path / "out.bin")
    out.close()
    assert out.direct


def test_ranges_of_several_files_are_copied_in_order(tmp_path: Path, mode: str) -> None:
    sources = []
    for number in range(2):
        path = tmp_path / f"source{number}.bin"
        path.write_bytes(b"".join(_pieces(10 + number)))
        sources.append((path, path.read_bytes()))
    (first, first_bytes), (second, second_bytes) = sources
    ranges = [
        (second, 5, ALIGN),  # unaligned start
        (second, 5 + ALIGN, 3 * CHUNK // 2),  # adjacent: merged with the one before
        (first, 0, 1),
        (first, len(first_bytes) - 7, 7),  # up to the last byte
        (second, ALIGN * 3 - 1, 2),  # across a block boundary
    ]
    out = AppendFile(tmp_path / "out.bin")
    copy_ranges(ranges, out)
    out.close()
    contents = {first: first_bytes, second: second_bytes}
    expected = b"".join(contents[path][start : start + size] for path, start, size in ranges)
    assert (tmp_path / "out.bin").read_bytes() == expected


def test_a_range_beyond_the_end_of_its_file_is_an_error(tmp_path: Path, mode: str) -> None:
    source = tmp_path / "short.bin"
    source.write_bytes(b"x" * 100)
    out = AppendFile(tmp_path / "out.bin")
    with pytest.raises(OSError, match=r"short\.bin ended before byte 120"):
        copy_ranges([(source, 90, 30)], out)
    out.close()


def test_a_failed_write_is_reported_and_frees_its_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_io.os, "pwrite", full)
    # More failing files than the pool has buffers: a lost buffer would hang the last.
    for number in range(direct_io.BUFFERS + 2):
        out = AppendFile(tmp_path / f"full{number}.bin")
        out.append([b"y" * (CHUNK + ALIGN)])
        with pytest.raises(OSError, match="No space left"):
            out.close()
    monkeypatch.undo()
    out = AppendFile(tmp_path / "fine.bin")
    out.append([b"z" * (2 * CHUNK + 1)])
    out.close()
    assert (tmp_path / "fine.bin").stat().st_size == 2 * CHUNK + 1
