"""Files written front to back and read back around the page cache (``O_DIRECT``).

The index step of a full tile streams about 3 GB of compressed tiles into scratch files
and then about 4 GB of finished COGs out of them. Through the page cache every one of
those bytes is first copied into a freshly allocated cache page, which is the dearest
part of writing them (on the 2-vCPU virtual machines this project is measured on, about
2.3 CPU-seconds per GB while the guest's free memory is still to be backed by the host,
five times a plain memory copy), and the scratch evicts what is worth caching, such as
the JPEG2000 inputs. Written with ``O_DIRECT``, the bytes go from our buffer to the
device and no cache page is touched.

``O_DIRECT`` wants the buffer, the file offset and the length aligned to the device's
blocks, so appends are gathered in page-aligned 8 MB buffers taken from a small
process-wide pool (a hundred and more scratch files are open at once: they cannot each
hold one), whole blocks are written by background threads while the caller goes on, and
the few bytes after the last whole block wait in the file's ``tail`` until the next
append; closing writes the last block padded with zeros and truncates the file to its
length. Where the file system refuses ``O_DIRECT`` (tmpfs before Linux 6.6, some network
file systems) or the platform lacks it, the same code writes through the page cache.
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

ALIGN = 4096  # a multiple of every device's logical block size in use (512 or 4096)
CHUNK = 8 << 20  # bytes gathered per write: large writes, bounded memory
BUFFERS = 10  # chunks in flight at most, process-wide: 80 MB
WRITERS = 2  # background writing threads: the device takes more than one write at a time

_DIRECT = getattr(os, "O_DIRECT", 0)
_lock = threading.Lock()
_writer: ThreadPoolExecutor | None = None
_free: queue.Queue[memoryview] = queue.Queue()
_made = 0
_read_buffer = threading.local()


def _aligned() -> memoryview:
    """A page-aligned buffer of ``CHUNK`` bytes (an anonymous mapping)."""
    return memoryview(mmap.mmap(-1, CHUNK))


def _take_buffer() -> memoryview:
    """A free chunk buffer from the process's pool, waiting while all are in flight."""
    global _made
    with _lock:
        if _free.empty() and _made < BUFFERS:
            _made += 1
            return _aligned()
    return _free.get()


def _background() -> ThreadPoolExecutor:
    """The threads that write whole blocks while the caller goes on computing."""
    global _writer
    with _lock:
        if _writer is None:
            _writer = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="direct-write")
        return _writer


def open_direct(path: Path, flags: int) -> tuple[int, bool]:
    """``os.open`` with ``O_DIRECT`` where the file system takes it; (fd, direct)."""
    if _DIRECT:
        try:
            return os.open(path, flags | _DIRECT | os.O_CLOEXEC, 0o644), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags | os.O_CLOEXEC, 0o644), False


def _write_at(fd: int, data: memoryview, offset: int, path: Path) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        if written % ALIGN and written != len(data):
            raise OSError(errno.EIO, f"short unaligned write to {path}")
        data, offset = data[written:], offset + written


class AppendFile:
    """A new file written front to back, around the page cache where possible.

    Whole blocks are written by background threads (the device does the copying, so
    they mostly wait); :meth:`close` waits for them and reports their errors.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd, self.direct = open_direct(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self._tail = b""  # bytes after the last whole block handed to the writer
        self._offset = 0  # where that block ends
        self._pending: list[Future[None]] = []
        self.size = 0  # bytes appended so far

    def append(self, pieces: Iterable[Any]) -> int:
        """Append the bytes of ``pieces`` (bytes-like objects) in order; returns how many."""
        self._raise_failed()
        buffer, filled, added = _take_buffer(), len(self._tail), 0
        try:
            buffer[:filled] = self._tail
            for piece in pieces:
                view = memoryview(piece).cast("B")
                added += len(view)
                while view:
                    take = min(CHUNK - filled, len(view))
                    buffer[filled : filled + take] = view[:take]
                    filled += take
                    view = view[take:]
                    if filled == CHUNK:
                        self._submit(buffer, CHUNK)
                        buffer, filled = _take_buffer(), 0
        except BaseException:
            _free.put(buffer)
            raise
        whole = filled - filled % ALIGN
        self._tail = bytes(buffer[whole:filled])
        self._submit(buffer, whole)
        self.size += added
        return added

    def _submit(self, buffer: memoryview, length: int) -> None:
        """Write ``buffer[:length]`` at the end in the background, then free the buffer."""
        if not length:
            _free.put(buffer)
            return

        def write() -> None:
            try:
                _write_at(self._fd, buffer[:length], offset, self.path)
            finally:
                _free.put(buffer)

        offset = self._offset
        self._offset += length
        self._pending = [future for future in self._pending if not future.done()] + [
            _background().submit(write)
        ]

    def _raise_failed(self) -> None:
        for future in self._pending:
            if future.done():
                future.result()

    def close(self) -> None:
        """Write what is left and close; the file then holds exactly ``size`` bytes.
        Safe to call twice.

        Raises:
            OSError: a write failed (the device is full, say).
        """
        if self._fd < 0:
            return
        try:
            for future in self._pending:
                future.result()
            if self._tail:
                block = _take_buffer()
                try:
                    block[: len(self._tail)] = self._tail
                    block[len(self._tail) : ALIGN] = bytes(ALIGN - len(self._tail))
                    # The last block whole, then the file cut to its length.
                    _write_at(self._fd, block[:ALIGN], self._offset, self.path)
                finally:
                    _free.put(block)
                os.ftruncate(self._fd, self.size)
        finally:
            for future in self._pending:
                future.cancel() or future.exception()
            self._pending, self._tail = [], b""
            os.close(self._fd)
            self._fd = -1


def copy_ranges(ranges: Iterable[tuple[Path, int, int]], out: AppendFile) -> None:
    """Append byte ranges ``(file, offset, length)`` of existing files to ``out``, read
    around the page cache where possible, adjacent ranges of one file merged.

    Raises:
        OSError: a file shorter than a range says.
    """
    merged: list[tuple[Path, int, int]] = []
    for path, start, length in ranges:
        if merged and merged[-1][0] == path and sum(merged[-1][1:]) == start:
            merged[-1] = (path, merged[-1][1], merged[-1][2] + length)
        else:
            merged.append((path, start, length))
    buffer: memoryview | None = getattr(_read_buffer, "view", None)
    if buffer is None:  # one per thread: assemblies run side by side
        buffer = _read_buffer.view = _aligned()
    for path, start, length in merged:
        fd, _ = open_direct(path, os.O_RDONLY)
        try:
            position = start - start % ALIGN  # direct reads start on a block
            skip, left = start - position, length
            while left:
                got = os.preadv(fd, [buffer], position)
                usable = min(got - skip, left)
                if usable <= 0:
                    raise OSError(errno.EIO, f"{path.name} ended before byte {start + length}")
                out.append([buffer[skip : skip + usable]])
                position += got
                left -= usable
                skip = 0
        finally:
            os.close(fd)
