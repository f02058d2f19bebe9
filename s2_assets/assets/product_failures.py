"""One product of a partition failed: the asset goes on with the others, says why in the
run's log and the partition's metadata, and records it in the failure ledger, from which
the planner retries it (with its back-off)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from s2_assets.library.failures import record_failure


def product_failed(
    context: dg.AssetExecutionContext,
    logs_dir: Path,
    failures: list[str],
    *,
    tile: str,
    stage: str,
    product_id: str,
    error: Exception,
    doing: str = "",
) -> None:
    """Record ``error`` of ``product_id`` at ``stage``; ``doing`` prefixes the log line
    (e.g. ``"indices of "``)."""
    failures.append(f"{product_id}: {error}")
    context.log.error(f"{doing}{product_id}: {error}")
    record_failure(logs_dir, tile, stage, product_id, str(error))
