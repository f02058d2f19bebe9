"""The one place that turns a set of (asset, partition) pairs into a sensor-launched backfill.

Dagster 1.13 launches a backfill from a sensor only through the private
``RunRequest.for_asset_graph_subset``; the sensor must be declared with ``asset_selection=``.
``s2_assets_tests/jobs/test_backfill.py`` fails loudly if an upgrade changes this.
"""

from collections.abc import Iterable, Mapping, Set

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.events import AssetKeyPartitionKey


def backfill_request(
    partitions_by_asset: Mapping[dg.AssetKey, Set[str]],
    asset_graph: BaseAssetGraph,
    tags: Mapping[str, str],
) -> dg.RunRequest:
    """A RunRequest that the sensor daemon submits as ONE backfill of these partitions."""
    pairs = {
        AssetKeyPartitionKey(asset_key, partition)
        for asset_key, partitions in partitions_by_asset.items()
        for partition in partitions
    }
    subset = AssetGraphSubset.from_asset_partition_set(pairs, asset_graph)
    return dg.RunRequest.for_asset_graph_subset(subset, tags=dict(tags))


def sensor_backfill(
    context: dg.SensorEvaluationContext,
    partitions_by_asset: Mapping[str, Iterable[object]],
    tags: Mapping[str, str],
) -> dg.RunRequest:
    """One backfill, launched by the sensor of ``context``, of these partitions (asset name ->
    partition keys, any object whose ``str`` is the key, e.g. a ``TileDate``)."""
    repository = context.repository_def
    assert repository is not None, "sensor evaluated without its definitions"
    partitions = {dg.AssetKey(n): {str(k) for k in ks} for n, ks in partitions_by_asset.items()}
    return backfill_request(partitions, repository.asset_graph, tags)


def requested_partitions(request: dg.RunRequest) -> dict[dg.AssetKey, set[str]]:
    """What a backfill request covers, for tests and logs."""
    subset = request.asset_graph_subset
    if subset is None:
        return {}
    found: dict[dg.AssetKey, set[str]] = {}
    for pair in subset.iterate_asset_partitions():
        found.setdefault(pair.asset_key, set()).add(str(pair.partition_key))
    return found
