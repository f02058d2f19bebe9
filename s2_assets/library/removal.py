"""sen2chain's ``remove`` rules, applied after the products that need the inputs exist. Pure.

- ``l1c-new[-ccX]``: L1C of the partition downloaded in this run (its provenance names the
  run) that already have their L2A, cloud cover >= X;
- ``l1c-all[-ccX]``: every L1C of the tile with cloud cover >= X, whatever the task's window;
- ``l2a-new[-ccX]``: L2A of the partition that Sen2Cor computed in this run (its provenance
  says ``sen2cor`` and names the run; a downloaded L2A never matches), cloud cover >= X;
- ``l2a-all[-ccX]``: every L2A of the tile with cloud cover >= X.

"This run" is the backfill (else the run) that fetched or computed the product, recorded in
its provenance when it was published.

A product whose cloud cover is unknown is never removed. Removing renames the product into
the library's scratch area first, so it disappears in one step, then deletes it; a product
archived as a symlink loses only its link.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from s2_assets.errors import MetadataError
from s2_assets.library.provenance import RUN_TAG, read_record
from s2_assets.library.tree import Library, LibraryProduct
from s2_assets.products import ProductName, read_metadata
from s2_assets.specs import RemoveRule

COMPUTED_PROVIDER = "sen2cor"  # the provenance provider of an L2A Sen2Cor made here


@dataclass(frozen=True)
class Removal:
    """One product to remove, and the rule that removes it."""

    product: LibraryProduct
    rule: str


def _cloud_cover(product: LibraryProduct) -> float | None:
    try:
        return read_metadata(product.path).cloud_cover
    except MetadataError:
        return None


def _acquisition(name: ProductName) -> tuple[str, object, int]:
    return (name.mission, name.sensing, name.relative_orbit)


def made_in_run(product: LibraryProduct, run: str | None, *, computed: bool) -> bool:
    """Whether ``product``'s provenance names ``run`` (and, if ``computed``, Sen2Cor)."""
    try:
        record = read_record(product.path)
    except MetadataError:
        return False
    if record is None or run is None or record.extra.get(RUN_TAG) != run:
        return False
    return record.provider == COMPUTED_PROVIDER if computed else True


def plan_removals(
    lib: Library, tile: str, day: date, rules: Sequence[RemoveRule], run: str | None = None
) -> list[Removal]:
    """What ``rules`` remove for the partition ``(tile, day)``, each product once; ``run`` is
    the backfill (else run) id the ``-new`` rules compare with the products' provenance."""
    chosen: dict[str, Removal] = {}
    for rule in rules:
        level = rule.level.upper()
        if rule.scope == "all":
            candidates = lib.products(level, tile)
        else:
            candidates = lib.products(level, tile, day)
            if level == "L1C":
                converted = {_acquisition(p.name) for p in lib.products("L2A", tile, day)}
                candidates = [
                    p
                    for p in candidates
                    if _acquisition(p.name) in converted and made_in_run(p, run, computed=False)
                ]
            else:
                candidates = [p for p in candidates if made_in_run(p, run, computed=True)]
        for product in candidates:
            if product.id not in chosen and rule.matches(_cloud_cover(product)):
                chosen[product.id] = Removal(product, str(rule))
    return sorted(chosen.values(), key=lambda r: r.product.id)


def remove_product(lib: Library, product: LibraryProduct) -> None:
    """Delete a product so that it vanishes from its final name in one step."""
    if product.path.is_symlink():
        product.path.unlink()
        return
    lib.temp_dir.mkdir(parents=True, exist_ok=True)
    aside = lib.temp_dir / f".removed-{os.getpid()}-{product.path.name}"
    os.replace(product.path, aside)
    shutil.rmtree(aside, ignore_errors=True)
