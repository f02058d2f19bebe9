"""Row streams: each band decoded once, in order, one read ahead, served to strips with halo.

A band is read in consecutive chunks of whole JPEG2000 tile rows, so no tile is ever
decoded twice. A strip that needs rows of context above or below (dilations, bilinear
upsampling) gets them from rows kept from the previous chunk or from the chunk read
ahead, never by reading them again. The next chunk of every band is decoded in a
background thread while the current strip is computed (GDAL releases the GIL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

ReadRows = Callable[[int, int], NDArray[Any]]


class RowSource(Protocol):
    """What a row stream reads from (``io.BandReader`` in production)."""

    def read_rows(self, start: int, stop: int) -> NDArray[Any]: ...


class RowStream:
    """Serves row ranges of one band from sequential, read-ahead chunk reads.

    Requests must not move backwards (``start`` never below an earlier ``start``); rows
    before the latest ``start`` are dropped.
    """

    def __init__(
        self,
        source: RowSource,
        *,
        height: int,
        chunk_rows: int,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self._source = source
        self.height = height
        self._chunk_rows = max(1, chunk_rows)
        self._executor = executor
        self._rows: list[NDArray[Any]] = []  # chunks held, first one starting at _first
        self._first = 0
        self._next = 0  # first row not yet requested from the source
        self._ahead: Future[NDArray[Any]] | None = None
        self._schedule()

    @property
    def _held_stop(self) -> int:
        return self._first + sum(len(chunk) for chunk in self._rows)

    def _schedule(self) -> None:
        if self._next >= self.height:
            return
        start, stop = self._next, min(self._next + self._chunk_rows, self.height)
        self._next = stop
        if self._executor is None:
            self._ahead = _done(self._source.read_rows(start, stop))
        else:
            self._ahead = self._executor.submit(self._source.read_rows, start, stop)

    def _take_ahead(self) -> None:
        assert self._ahead is not None
        chunk = self._ahead.result()
        self._ahead = None
        self._rows.append(chunk)
        self._schedule()

    def rows(self, start: int, stop: int) -> NDArray[Any]:
        """Rows ``start``..``stop`` clipped to the band (so possibly fewer rows)."""
        start, stop = max(start, 0), min(stop, self.height)
        if start < self._first:
            raise ValueError(f"row {start} was already dropped (stream at {self._first})")
        while self._held_stop < stop:
            self._take_ahead()
        self._drop_before(start)
        # Keep rows from ``start`` on only: requests never move backwards.
        self._rows[0] = self._rows[0][start - self._first :]
        self._first = start
        if stop - start <= len(self._rows[0]):
            return self._rows[0][: stop - start]  # within one chunk: a view, no copy
        # Across chunks: copy only the rows asked for (the chunks stay as they are, so a
        # strip's halo rows never make the whole held window be copied again).
        pieces, wanted = [], stop - start
        for chunk in self._rows:
            pieces.append(chunk[:wanted])
            wanted -= len(pieces[-1])
            if not wanted:
                break
        return np.concatenate(pieces)

    def rows_edge_padded(self, start: int, stop: int) -> NDArray[Any]:
        """Rows ``start``..``stop``; rows beyond the band repeat its first or last row."""
        inside = self.rows(start, stop)
        before, after = max(0, -start), max(0, stop - self.height)
        if before or after:
            inside = np.pad(inside, ((before, after), (0, 0)), mode="edge")
        return inside

    def _drop_before(self, start: int) -> None:
        while self._rows and self._first + len(self._rows[0]) <= start:
            self._first += len(self._rows.pop(0))

    def close(self) -> None:
        """Wait for a read in flight so its buffers are not released under GDAL."""
        if self._ahead is not None and not self._ahead.cancel():
            self._ahead.exception()
        self._ahead = None
        self._rows = []


def _done(value: NDArray[Any]) -> Future[NDArray[Any]]:
    future: Future[NDArray[Any]] = Future()
    future.set_result(value)
    return future


def strips(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``(start, stop)`` row ranges of at most ``rows`` covering ``height``."""
    for start in range(0, height, rows):
        yield start, min(start + rows, height)


def strip_height(block_rows: int, *, minimum: int = 512) -> int:
    """A strip height that is a whole number of tile rows and at least ``minimum``.

    Reads aligned to the JPEG2000 tile grid decode each tile exactly once.
    """
    block_rows = max(1, block_rows)
    return block_rows * max(1, -(-minimum // block_rows))
