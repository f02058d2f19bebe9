"""How a product's cloud masks and indices are computed: strip by strip, in bounded memory.

Both entry points the assets call (``compute_cloud_masks`` in
:mod:`s2_assets.raster.product_masks`, ``compute_indices`` in
:mod:`s2_assets.raster.product_indices`) stream their inputs strip by strip (each band
decoded once, in whole JPEG2000 tile rows, the next chunk decoded while the current strip
is computed) and write every output strip by strip, so memory depends on the strip size,
not on the tile size. Strips carry enough context rows for dilations and bilinear
upsampling that the result is bit-identical to a whole-array computation.

Here, what both share: inputs opened as read-ahead row streams, outputs discarded unless
published, publishing four at a time (each output's record first, then its rename), and the
format and grid checks; and, for runs over many products, publishing one product's outputs
in the background while the next product streams (:func:`publish_behind`).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from s2_assets.errors import S2AssetsError
from s2_assets.raster.io import BandReader, gdal_env
from s2_assets.raster.outputs import OutputFile
from s2_assets.raster.strips import RowStream, strip_height
from s2_assets.raster.types import Grid, RasterError, Recorder, WrittenRaster

FORMATS = ("tif", "jp2")
PUBLISH_WORKERS = 4  # assembling a COG mostly waits for the device: four at a time


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise RasterError(f"unknown output format {fmt!r}; valid: {', '.join(FORMATS)}")


@contextlib.contextmanager
def input_streams(
    paths: Mapping[str, Path], *, chunk_rows: int | None
) -> Iterator[tuple[dict[str, BandReader], dict[str, RowStream]]]:
    """Open every input and a read-ahead row stream over each, closed on exit."""
    with gdal_env(), ThreadPoolExecutor(max_workers=1) as executor, contextlib.ExitStack() as stack:
        readers = {name: stack.enter_context(BandReader(path)) for name, path in paths.items()}
        streams: dict[str, RowStream] = {}
        try:
            for name, reader in readers.items():
                streams[name] = RowStream(
                    reader,
                    height=reader.grid.height,
                    chunk_rows=chunk_rows or strip_height(reader.block_rows),
                    executor=executor,
                )
            yield readers, streams
        finally:
            for stream in streams.values():
                stream.close()


K = TypeVar("K")  # what a caller names its jobs by
P = ParamSpec("P")


@contextlib.contextmanager
def output_files() -> Iterator[list[OutputFile]]:
    """Outputs opened inside the block; every unpublished one still in the list is
    discarded on exit (:func:`hand_over` empties it)."""
    files: list[OutputFile] = []
    try:
        yield files
    finally:
        for output in files:
            output.discard()


def publish_all(
    files: Sequence[OutputFile], ramps: Sequence[str | None], record: Recorder | None = None
) -> list[WrittenRaster]:
    """Encode and publish every output, four at a time, in order; ``record`` writes what
    describes each one before its rename (:data:`~s2_assets.raster.types.Recorder`)."""
    with ThreadPoolExecutor(max_workers=PUBLISH_WORKERS) as pool:
        return list(
            pool.map(lambda pair: pair[0].publish(pair[1], record), zip(files, ramps, strict=True))
        )


class PendingOutputs:
    """A product's outputs with every strip written, to be published once, now or later.

    Publishing is the device-bound end of a product (a full tile's COGs are gigabytes,
    written after their last strip because a COG's overviews come first), so a run over
    many products publishes one while the next one streams (:func:`publish_behind`).
    """

    def __init__(
        self, files: Sequence[OutputFile], ramps: Sequence[str | None], record: Recorder | None
    ) -> None:
        self._files, self._ramps, self._record = list(files), list(ramps), record

    def publish(self) -> list[WrittenRaster]:
        """Publish every output (:func:`publish_all`); whatever fails, none is left behind
        half-written and the temporaries of all are removed. Call it inside
        :func:`~s2_assets.raster.io.gdal_env`, in the thread that entered it or a thread
        started meanwhile (see :func:`publish_behind`)."""
        try:
            return publish_all(self._files, self._ramps, self._record)
        finally:
            for output in self._files:
                output.discard()  # nothing left to remove for the published ones
            self._files = []  # what the writers hold is freed with them


def hand_over(
    files: list[OutputFile], ramps: Sequence[str | None], record: Recorder | None
) -> PendingOutputs:
    """The outputs of an :func:`output_files` block, to be published after it: the block
    no longer discards them, :meth:`PendingOutputs.publish` does."""
    pending = PendingOutputs(files, ramps, record)
    files.clear()
    return pending


def published(stream: Callable[P, PendingOutputs]) -> Callable[P, list[WrittenRaster]]:
    """``stream`` followed by publishing what it wrote at once, with GDAL's settings: the
    same arguments, and what was published instead of what is ready to be."""

    def stream_and_publish(*args: P.args, **kwargs: P.kwargs) -> list[WrittenRaster]:
        with gdal_env():
            return stream(*args, **kwargs).publish()

    stream_and_publish.__doc__ = (
        f"``{stream.__name__}``, then its outputs published at once; returns the published "
        f"files.\n\n{stream.__doc__ or ''}"
    )
    # help() and the docs show the arguments of ``stream``, not ``*args, **kwargs``.
    stream_and_publish.__signature__ = inspect.signature(stream).replace(  # type: ignore[attr-defined]
        return_annotation=list[WrittenRaster]
    )
    return stream_and_publish


def publish_behind(
    jobs: Iterable[tuple[K, Callable[[], PendingOutputs]]],
) -> Iterator[tuple[K, list[WrittenRaster] | S2AssetsError]]:
    """Run each job (stream one product's outputs) in turn while the previous job's
    outputs are published in a background thread; yield each job's key with what it
    published, or the S2AssetsError that stopped it (streaming or publishing), in order.

    Publishing a full tile's outputs mostly waits for the device, so it costs the next
    product's streaming almost nothing. At most one product is publishing at a time, so
    scratch space holds at most two products. Any other exception propagates once the
    publishing in flight has finished (what it renamed into place has its record).
    """
    behind: tuple[K, Future[list[WrittenRaster]]] | None = None
    # GDAL's settings for the whole run, entered here: rasterio's Env in the publishing
    # thread would, on leaving, put back the settings it found when it started, GDAL's
    # default block cache (5 % of the memory) among them, under the next product's decoding.
    with (
        gdal_env(),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish-behind") as publisher,
    ):
        for key, stream in jobs:
            try:
                streamed: PendingOutputs | S2AssetsError = stream()
            except S2AssetsError as exc:
                streamed = exc
            if behind is not None:
                yield behind[0], _outcome(behind[1])
                behind = None
            if isinstance(streamed, S2AssetsError):
                yield key, streamed
            else:
                behind = key, publisher.submit(streamed.publish)
            del streamed  # not held while the next product streams
        if behind is not None:
            yield behind[0], _outcome(behind[1])


def _outcome(publishing: Future[list[WrittenRaster]]) -> list[WrittenRaster] | S2AssetsError:
    try:
        return publishing.result()
    except S2AssetsError as exc:
        return exc


def same_grid(readers: Mapping[str, BandReader], names: Sequence[str]) -> Grid:
    grids = {name: readers[name].grid for name in names}
    first_name, first = next(iter(grids.items()))
    for name, grid in grids.items():
        if grid != first:
            raise RasterError(
                f"{readers[name].path.name} ({grid.width}x{grid.height}) is not on the grid of "
                f"{readers[first_name].path.name} ({first.width}x{first.height})"
            )
    return first
