"""``cloudmask`` and the twelve index assets: thin glue over ``s2_assets.raster``.

Both work on the L2A product(s) of each (tile, date) the run covers; which mask specs and
indices a partition gets comes from run config, else its governing job task, else the
defaults. Existing masks are kept unless ``reprocess`` is set. Each partition's metadata
describes every file it holds, kept or written now (``files``, ``count``, ``provenance``,
``quicklook``); ``written_now`` counts the files this run wrote for that partition.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path

import dagster as dg

from s2_assets.assets import run_metadata
from s2_assets.assets.product_failures import product_failed
from s2_assets.assets.run_options import RunOptions
from s2_assets.errors import S2AssetsError
from s2_assets.library.failures import clear_failure
from s2_assets.library.provenance import OutputRecorder, metadata_for
from s2_assets.library.tree import LibraryProduct
from s2_assets.partitions import TileDate
from s2_assets.products import read_metadata
from s2_assets.raster.describe import describe_mask
from s2_assets.raster.pipeline import PendingOutputs, publish_behind
from s2_assets.raster.product_indices import stream_indices
from s2_assets.raster.product_masks import compute_cloud_masks
from s2_assets.raster.types import SideProducts, WrittenRaster
from s2_assets.resources.library import LibraryResource
from s2_assets.specs import DEFAULT_MASK_SPEC, INDEX_NAMES, parse_mask_spec


class CloudMaskConfig(dg.Config):
    """Attributes:
    specs: Mask specs to compute; empty takes the governing task's (default CM004...ITER0).
    fmt: ``tif`` (COG) or ``jp2`` (sen2chain's JPEG2000).
    reprocess: Recompute masks that already exist.
    """

    specs: list[str] = []
    fmt: str = "tif"
    reprocess: bool = False


class IndicesConfig(dg.Config):
    """Attributes:
    masks: Mask specs for the masked variants; empty takes the governing task's.
    fmt: ``tif`` (COG) or ``jp2`` (sen2chain's lossy JPEG2000).
    """

    masks: list[str] = []
    fmt: str = "tif"


def _specs(requested: Sequence[str]) -> list[str]:
    try:
        return [str(parse_mask_spec(spec)) for spec in requested]
    except S2AssetsError as exc:
        raise dg.Failure(str(exc)) from exc


# What a day without an L2A records: the run-level metadata every partition of the run gets,
# which the days with products override. Metadata for one partition costs Dagster a lookup of
# every key of the run's range, so a ten-year run adding it for each empty day is quadratic.
EMPTY_DAY: dict[str, dg.MetadataValue] = {
    "count": dg.MetadataValue.int(0),
    "files": dg.MetadataValue.json([]),
    "provenance": dg.MetadataValue.json([]),
}


def _index_stems(product_id: str, index: str, masks: Iterable[str]) -> list[str]:
    """File stems of an index of one L2A: raw, then one per mask."""
    return [f"{product_id}_{index}", *(f"{product_id}_{index}_{spec}" for spec in masks)]


def _written_metadata(written: list[WrittenRaster]) -> dict[str, object]:
    metadata: dict[str, object] = {
        "files": dg.MetadataValue.json([w.summary() for w in written]),
        "count": len(written),
        "provenance": dg.MetadataValue.json(metadata_for([w.path for w in written])),
    }
    if written:
        metadata["quicklook"] = dg.MetadataValue.md(written[0].quicklook_markdown())
    return metadata


def build_cloudmask_asset(
    partitions_def: dg.MultiPartitionsDefinition, l2a: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    """The ``cloudmask`` asset."""

    @dg.asset(
        partitions_def=partitions_def,
        deps=[l2a],
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="raster",
        group_name="cloudmasks",
        kinds={"geotiff"},
    )
    def cloudmask(
        context: dg.AssetExecutionContext, config: CloudMaskConfig, library: LibraryResource
    ) -> dg.MaterializeResult:
        """One cloud-mask file per requested spec for each L2A of the tile and day."""
        lib = library.library()
        options_of = RunOptions(context, lib)
        failures: list[str] = []
        for raw_key in context.partition_keys:
            key = TileDate.parse(raw_key)
            specs = _specs(config.specs or list(options_of(key).cloudmasks) or [DEFAULT_MASK_SPEC])
            held: list[WrittenRaster] = []
            written_now = 0
            products = lib.products("L2A", key.tile, key.date)
            if not products:
                continue  # an empty day takes the run-level metadata (EMPTY_DAY)
            for product in products:
                out_dir = lib.mask_dir(key.tile, product.id)
                existing = {
                    s: out_dir / f"{product.id}_{s}.{config.fmt}"
                    for s in specs
                    if not config.reprocess
                    and (out_dir / f"{product.id}_{s}.{config.fmt}").exists()
                }
                todo = [s for s in specs if s not in existing]
                new: list[WrittenRaster] = []
                if todo:
                    try:
                        new = compute_cloud_masks(
                            product_id=product.id,
                            safe_dir=product.path,
                            side_products=SideProducts.find(out_dir),
                            metadata=read_metadata(product.path),
                            specs=todo,
                            out_dir=out_dir,
                            fmt=config.fmt,
                            # Each mask's record goes in before the mask: a mask under
                            # its final name is complete, so the existence test above holds.
                            record=OutputRecorder(product.path),
                        )
                    except S2AssetsError as exc:
                        # One bad product must not stop the others; the planner retries it.
                        product_failed(
                            context,
                            lib.logs_dir,
                            failures,
                            tile=key.tile,
                            stage="cloudmask",
                            product_id=product.id,
                            error=exc,
                            doing="cloud masks of ",
                        )
                        continue
                    clear_failure(lib.logs_dir, key.tile, "cloudmask", product.id)
                written_now += len(new)
                # Kept files are described too: metadata says what the partition holds.
                by_spec = {w.name: w for w in new}
                by_spec |= {s: describe_mask(path, spec=s) for s, path in existing.items()}
                held += [by_spec[s] for s in specs if s in by_spec]
            run_metadata.add(
                context,
                {
                    "specs": dg.MetadataValue.json(specs),
                    **_written_metadata(held),
                    "written_now": written_now,
                },
                partition_key=raw_key,
            )
        if failures:
            raise dg.Failure(
                description=f"cloud masks of {len(failures)} product(s) failed",
                metadata={"failures": dg.MetadataValue.json(failures)},
            )
        return dg.MaterializeResult(metadata={**EMPTY_DAY, "written_now": dg.MetadataValue.int(0)})

    return cloudmask


def build_indices_asset(
    partitions_def: dg.MultiPartitionsDefinition,
    l2a: dg.AssetsDefinition,
    cloudmask: dg.AssetsDefinition,
) -> dg.AssetsDefinition:
    """One asset per index from one multi_asset: a run asking for several reads bands once."""
    specs = [
        dg.AssetSpec(
            name.lower(),
            partitions_def=partitions_def,
            deps=[l2a, cloudmask],
            skippable=True,
            group_name="indices",
            kinds={"geotiff"},
            description=f"{name} of each L2A (raw and one masked variant per mask spec).",
        )
        for name in INDEX_NAMES
    ]

    @dg.multi_asset(
        specs=specs,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="raster",
        name="indices",
    )
    def indices(context: dg.AssetExecutionContext, config: IndicesConfig, library: LibraryResource):
        lib = library.library()
        options_of = RunOptions(context, lib)
        wanted = sorted(key.path[-1].upper() for key in context.selected_asset_keys)
        failures: list[str] = []
        # Per partition with an L2A, per index, what this run published for it.
        by_partition: dict[str, dict[str, list[WrittenRaster]]] = {}

        def jobs() -> Iterator[tuple[tuple[str, str, str], Callable[[], PendingOutputs]]]:
            """One job per L2A with an index file missing, decided just before it streams."""
            for raw_key in context.partition_keys:
                key = TileDate.parse(raw_key)
                mask_specs = _specs(config.masks or list(options_of(key).cloudmasks))
                products = lib.products("L2A", key.tile, key.date)
                if products:
                    by_partition[raw_key] = {name: [] for name in wanted}
                for product in products:
                    mask_dir = lib.mask_dir(key.tile, product.id)
                    masks = {
                        s: mask_dir / f"{product.id}_{s}.tif"
                        for s in mask_specs
                        if (mask_dir / f"{product.id}_{s}.tif").exists()
                    }
                    # Only indices with a file missing: a ranged run spans days already
                    # done. A file under its final name has its record (written first).
                    todo = [
                        name
                        for name in wanted
                        if any(
                            not (
                                lib.index_dir(name, key.tile, product.id) / f"{stem}.{config.fmt}"
                            ).exists()
                            for stem in _index_stems(product.id, name, masks)
                        )
                    ]
                    if todo:
                        yield (raw_key, key.tile, product.id), partial(
                            _stream_product_indices, product, todo, masks,
                            partial(lib.index_dir, tile=key.tile, l2a_id=product.id), config.fmt,
                        )  # fmt: skip

        # Each product's files are published while the next product streams.
        for (raw_key, tile, product_id), outcome in publish_behind(jobs()):
            if isinstance(outcome, S2AssetsError):
                product_failed(
                    context,
                    lib.logs_dir,
                    failures,
                    tile=tile,
                    stage="indices",
                    product_id=product_id,
                    error=outcome,
                    doing="indices of ",
                )
                continue
            clear_failure(lib.logs_dir, tile, "indices", product_id)
            for item in outcome:
                by_partition[raw_key][item.name].append(item)
        for raw_key, by_index in by_partition.items():
            for name, written in by_index.items():
                run_metadata.add(
                    context,
                    _written_metadata(written),
                    asset_key=name.lower(),
                    partition_key=raw_key,
                )
        if failures:
            raise dg.Failure(
                description=f"indices of {len(failures)} product(s) failed",
                metadata={"failures": dg.MetadataValue.json(failures)},
            )
        for name in wanted:
            yield dg.MaterializeResult(asset_key=name.lower(), metadata=EMPTY_DAY)

    return indices


def _stream_product_indices(
    product: LibraryProduct,
    todo: Sequence[str],
    masks: Mapping[str, Path],
    out_dir_for: Callable[[str], Path],
    fmt: str,
) -> PendingOutputs:
    """The indices ``todo`` of one L2A written, to be published (:func:`stream_indices`)."""
    return stream_indices(
        product_id=product.id, safe_dir=product.path, metadata=read_metadata(product.path),
        indices=todo, masks=masks, out_dir_for=out_dir_for, fmt=fmt,
        record=OutputRecorder(product.path),
    )  # fmt: skip
