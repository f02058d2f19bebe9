"""Row streams: every row decoded once, in order, with context rows served from memory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from s2_assets.raster.strips import RowStream, strip_height, strips


class _Recorder:
    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.reads: list[tuple[int, int]] = []

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        self.reads.append((start, stop))
        return self.array[start:stop].copy()


@pytest.mark.parametrize("threaded", [False, True])
def test_serves_overlapping_windows_reading_each_row_once(threaded: bool) -> None:
    array = np.arange(23 * 3).reshape(23, 3)
    source = _Recorder(array)
    executor = ThreadPoolExecutor(1) if threaded else None
    stream = RowStream(source, height=23, chunk_rows=4, executor=executor)
    for start, stop in strips(23, 5):
        np.testing.assert_array_equal(
            stream.rows(start - 3, stop + 3), array[max(start - 3, 0) : stop + 3]
        )
    stream.close()
    if executor:
        executor.shutdown()
    assert source.reads == [(s, min(s + 4, 23)) for s in range(0, 23, 4)]


def test_edge_padding_repeats_first_and_last_rows() -> None:
    array = np.arange(12).reshape(4, 3)
    stream = RowStream(_Recorder(array), height=4, chunk_rows=2)
    padded = stream.rows_edge_padded(-1, 5)
    assert padded[0].tolist() == array[0].tolist() and padded[-1].tolist() == array[-1].tolist()
    assert padded.shape == (6, 3)


def test_refuses_to_go_back() -> None:
    stream = RowStream(_Recorder(np.zeros((10, 2))), height=10, chunk_rows=3)
    stream.rows(5, 7)
    with pytest.raises(ValueError, match="already dropped"):
        stream.rows(2, 4)


def test_memory_is_bounded_by_the_window() -> None:
    stream = RowStream(_Recorder(np.zeros((1000, 2))), height=1000, chunk_rows=10)
    for start, stop in strips(1000, 10):
        stream.rows(start - 2, stop + 2)
        assert sum(len(chunk) for chunk in stream._rows) <= 10 + 2 + 10


def test_strip_height_is_whole_tiles_of_at_least_the_minimum() -> None:
    assert strip_height(1024) == 1024
    assert strip_height(640) == 640
    assert strip_height(200) == 600
    assert strip_height(64, minimum=512) == 512


def test_rows_within_a_chunk_are_views_and_across_chunks_only_the_rows_asked_for() -> None:
    array = np.arange(40 * 3).reshape(40, 3)
    source = _Recorder(array)
    stream = RowStream(source, height=40, chunk_rows=10)
    inside = stream.rows(2, 8)
    first_chunk = stream._rows[0]
    assert np.shares_memory(inside, first_chunk)
    across = stream.rows(7, 13)  # the halo of a strip crossing the first chunk boundary
    np.testing.assert_array_equal(across, array[7:13])
    assert across.shape == (6, 3) and not np.shares_memory(across, first_chunk)
    # The chunks stay as read (not concatenated into a new held window).
    assert [len(chunk) for chunk in stream._rows] == [3, 10]
    np.testing.assert_array_equal(stream.rows(12, 20), array[12:20])
    assert source.reads == [(0, 10), (10, 20), (20, 30)]
