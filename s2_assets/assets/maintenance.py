"""``library_clean_job``: sen2chain's library clean as a Dagster job whose run shows what it did.

Thin glue over :func:`s2_assets.library.clean.clean_library`: the op's output metadata holds the
counts per rule and a table of every finding (path, rule, action, why), and each removal is
also a log line. Launch it from the UI's *Jobs* page with, for example::

    ops:
      library_clean:
        config: {tiles: ["40KCB"], dry_run: true}
"""

from datetime import timedelta

import dagster as dg

from s2_assets.errors import S2AssetsError
from s2_assets.library.clean import DEFAULT_MIN_AGE, clean_library
from s2_assets.resources.library import LibraryResource


class CleanConfig(dg.Config):
    """Attributes:
    tiles: Tile ids to clean; empty cleans every tile of the library.
    dry_run: Only report what would be removed.
    min_age_hours: Keep (and report) entries modified more recently: they may belong to a
        run still going.
    """

    tiles: list[str] = []
    dry_run: bool = False
    min_age_hours: float = DEFAULT_MIN_AGE.total_seconds() / 3600


@dg.op(name="library_clean")
def library_clean(
    context: dg.OpExecutionContext, config: CleanConfig, library: LibraryResource
) -> dg.Output[None]:
    """Find Sen2Cor leftovers, stray zips, partial or unreadable products, incomplete L2A
    and leftover temporary files, and remove them (or only report them in a dry run)."""
    try:
        report = clean_library(
            library.library(),
            config.tiles or None,
            remove=not config.dry_run,
            min_age=timedelta(hours=config.min_age_hours),
        )
    except S2AssetsError as exc:
        raise dg.Failure(str(exc)) from exc
    for finding in report.findings:
        context.log.info(f"{finding.action}: {finding.path} ({finding.rule}: {finding.detail})")
    metadata: dict[str, dg.RawMetadataValue] = {
        "summary": report.summary(),
        "dry_run": config.dry_run,
        "removed": len(report.removed),
        "failed": len(report.failed),
        "per_rule": dg.MetadataValue.json(report.counts()),
        "findings": dg.MetadataValue.md(report.markdown()),
    }
    if report.failed:
        raise dg.Failure(
            description=f"{len(report.failed)} removal(s) failed; the rest were done",
            metadata=metadata,
        )
    return dg.Output(None, metadata=metadata)


@dg.job(
    name="library_clean_job",
    description="Remove debris from the product library (sen2chain's clean, plus ours).",
    tags={"s2/kind": "maintenance"},
)
def library_clean_job() -> None:
    library_clean()
