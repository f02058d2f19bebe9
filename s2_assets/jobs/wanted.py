"""What a job row wants of one (tile, day), and whether each output is present. Pure (no Dagster).

- **Wanted**: for each acquisition of the day's catalogue products passing the row's filters
  (cloud cover, provider, baselines), the outputs the row asks for: the product level
  (``download``, ``compute_l2a``), each cloud-mask spec, each index raw and once per mask.
  ``download = l2a`` with ``compute_l2a``: the L2A is downloaded; Sen2Cor runs only for
  acquisitions with no L2A in the catalogue whose L1C is already in the library.
- **Present**: on disk under its final name (:class:`s2_assets.jobs.tile_disk.TileDisk`).
  Masks and indices count for the acquisition whatever L2A id they were made from.
  sen2chain's "ref" logic, by intent: when every wanted mask and index of an acquisition
  exists and a remove rule of the row would remove its L2A (or L1C), that product counts as
  present and is not fetched again. An L1C counts as present when the acquisition's L2A is
  (sen2chain never downloads an L1C whose L2A it has).

The planner (:mod:`s2_assets.jobs.planner`) sums these over a job; the ``l1c``/``l2a`` assets
ask the same question of the day they materialize.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from s2_assets.jobs.options import TaskOptions
from s2_assets.jobs.tile_disk import Acquisition, TileDisk
from s2_assets.providers.base import ProductRecord


@dataclass(frozen=True)
class Output:
    """One wanted output of one acquisition.

    Attributes:
        asset: The Dagster asset that makes it (``l1c``, ``l2a``, ``cloudmask``, ``ndvi``...).
        label: ``L1C``, ``L2A``, a mask spec, ``NDVI`` or ``NDVI_<mask spec>``.
        product: The product the work acts on (the failure ledger's key).
        stage: The failure ledger's stage: ``l1c``, ``l2a``, ``cloudmask`` or ``indices``.
        location: For a fetched product, where the provider has it; else empty.
        tape: Fetched from a provider whose files must be staged first.
    """

    asset: str
    label: str
    product: str
    stage: str
    location: str = ""
    tape: bool = False


def day_outputs(
    options: TaskOptions,
    records: Sequence[ProductRecord],
    disk: TileDisk,
    staged_providers: Collection[str] = (),
) -> list[tuple[Output, bool]]:
    """The outputs ``options`` wants from one (tile, day)'s catalogue ``records``, each with
    whether it is present (the rules: this module's docstring)."""
    l1c = options.select([r for r in records if r.level == "L1C"])
    l2a = options.select([r for r in records if r.level == "L2A"])
    return selected_outputs(options, l1c, l2a, disk, staged_providers)


def selected_outputs(
    options: TaskOptions,
    l1c: Sequence[ProductRecord],
    l2a: Sequence[ProductRecord],
    disk: TileDisk,
    staged_providers: Collection[str] = (),
) -> list[tuple[Output, bool]]:
    """:func:`day_outputs` of one day's L1C and L2A rows that ``options.select`` kept (the
    planner selects a tile's whole table once: selection is row by row but for the highest
    baseline of each level and sensing time, which never spans two days)."""
    by_acquisition: dict[Acquisition, tuple[list[ProductRecord], list[ProductRecord]]] = {}
    for record in l1c:
        by_acquisition.setdefault(disk.acquisition(record.product_id), ([], []))[0].append(record)
    for record in l2a:
        by_acquisition.setdefault(disk.acquisition(record.product_id), ([], []))[1].append(record)
    found: list[tuple[Output, bool]] = []
    for acquisition, (l1c_records, l2a_records) in sorted(by_acquisition.items()):
        found += _acquisition_outputs(
            options, acquisition, l1c_records, l2a_records, disk, staged_providers
        )
    return found


def _fetch(record: ProductRecord, staged: Collection[str]) -> Output:
    level = record.level.lower()
    return Output(
        level, record.level, record.product_id, level, record.location, record.provider in staged
    )


def _acquisition_outputs(
    options: TaskOptions,
    acquisition: Acquisition,
    l1c: list[ProductRecord],
    l2a: list[ProductRecord],
    disk: TileDisk,
    staged: Collection[str],
) -> list[tuple[Output, bool]]:
    l2a_on_disk = acquisition in disk.acquisitions["L2A"]
    l1c_on_disk = [r for r in l1c if disk.has(r)]
    levels: list[tuple[Output, bool]] = []
    # What sen2chain's ref logic is for: the L2A (L1C) may go once the outputs exist.
    removable: set[str] = set()
    if options.remove:
        cloud = next((r.cloud_cover for r in [*l2a, *l1c] if r.cloud_cover is not None), None)
        removable = {rule.level for rule in options.remove if rule.matches(cloud)}
    derived = _derived(options, acquisition, disk, l2a, l1c)
    refs_done = bool(removable) and bool(derived) and all(present for _, present in derived)
    l2a_ok = l2a_on_disk or (refs_done and "l2a" in removable)
    if options.download == "l2a":
        levels += [(_fetch(r, staged), disk.has(r) or l2a_ok) for r in l2a]
        if options.compute_l2a and not l2a:
            levels += [(_sen2cor(r), l2a_ok) for r in l1c_on_disk[:1]]
    elif options.download == "l1c":
        l1c_ok = l2a_ok or (refs_done and "l1c" in removable)
        levels += [(_fetch(r, staged), disk.has(r) or l1c_ok) for r in l1c]
        if options.compute_l2a and l1c:
            levels.append((_sen2cor(l1c[0]), l2a_ok))
    elif options.compute_l2a:
        levels += [(_sen2cor(r), l2a_ok) for r in l1c_on_disk[:1]]
    makes_l2a = any(out.asset == "l2a" for out, _ in levels)
    if not (makes_l2a or l2a_on_disk):
        return levels
    return levels + derived


def _sen2cor(l1c: ProductRecord) -> Output:
    return Output("l2a", "L2A", l1c.product_id, "l2a")


def _derived(
    options: TaskOptions,
    acquisition: Acquisition,
    disk: TileDisk,
    l2a: list[ProductRecord],
    l1c: list[ProductRecord],
) -> list[tuple[Output, bool]]:
    """Masks and indices of the acquisition; their failure key is the L2A they are made from."""
    if not options.cloudmasks and not options.indices:
        return []
    source = disk.l2a_ids.get(acquisition)
    if source is None:
        source = (
            l2a[0].product_id
            if l2a
            else l1c[0].product_id.replace("MSIL1C", "MSIL2A")
            if l1c
            else ""
        )
    found: list[tuple[Output, bool]] = []
    for spec in options.cloudmasks:
        present = disk.has_mask(acquisition, spec)
        found.append((Output("cloudmask", spec, source, "cloudmask"), present))
    for index, asset, labels in _index_labels(options.indices, options.cloudmasks):
        for label in labels:
            present = disk.has_index(index, acquisition, label)
            found.append((Output(asset, label, source, "indices"), present))
    return found


@functools.cache
def _index_labels(
    indices: tuple[str, ...], masks: tuple[str, ...]
) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """Per index: its asset name and labels, raw and once per mask (asked per acquisition)."""
    return tuple(
        (index, index.lower(), (index, *(f"{index}_{spec}" for spec in masks))) for index in indices
    )
