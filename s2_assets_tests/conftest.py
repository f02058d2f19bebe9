"""Shared fixtures: one small demo archive per session, a fresh library per test, and helpers
to find a demo product's zip and to rewrite zips member by member (for the bad-zip tests).

Demo products are built at ``size=12`` (12 px at 10 m, 6 at 20 m, 2 at 60 m): every layer and
name is real, and the whole archive of 16 products builds in about two seconds.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster._core.storage.defs_state.base import _current_storage

from s2_assets.demo.products import (
    DEMO_PRODUCTS,
    DemoProduct,
    build_archive,
    build_safe,
    product_name,
)
from s2_assets.library.tree import Library
from s2_assets.products import ProductName

DEMO_SIZE = 12


@dataclass(frozen=True)
class DemoArchive:
    """The session's demo archive: its root and the zip of every demo product by id."""

    root: Path
    zips: dict[str, Path]

    def zip_of(self, product: DemoProduct) -> Path:
        return self.zips[product_name(product).id]

    def find(self, *, level: str, tile: str, day: str, baseline: str | None = None) -> DemoProduct:
        """The one demo product matching level, tile, sensing day (and baseline)."""
        matches = [
            p
            for p in DEMO_PRODUCTS
            if p.level == level
            and p.tile == tile
            and p.sensing.date().isoformat() == day
            and (baseline is None or p.baseline == baseline)
        ]
        assert len(matches) == 1, f"{len(matches)} demo products match {level} {tile} {day}"
        return matches[0]


@pytest.fixture(autouse=True)
def _no_leftover_defs_state_storage() -> Iterator[None]:
    """Each test starts without Dagster's process-wide "current defs-state storage".

    A schedule or sensor context that a test evaluates and does not close leaves that
    storage pointing at the test's instance; once the instance is gone, any later test that
    loads definitions fails with "Attempted to resolve undefined DagsterInstance weakref".
    The variable is private to Dagster, so it is reset here, in the tests only.
    """
    yield
    _current_storage.set(None)


@pytest.fixture(scope="session")
def demo_archive(tmp_path_factory: pytest.TempPathFactory) -> DemoArchive:
    """Every demo product zipped in EODC's layout. Read-only: tests copy before changing."""
    root = tmp_path_factory.mktemp("archive")
    zips = build_archive(root, DEMO_PRODUCTS, size=DEMO_SIZE)
    return DemoArchive(root=root, zips={ProductName.parse(z.name).id: z for z in zips})


@dataclass(frozen=True)
class DemoSafes:
    """Unpacked SAFEs of both levels, before (03.01) and after (05.09) baseline 04.00."""

    l1c_old: Path
    l1c_new: Path
    l2a_old: Path
    l2a_new: Path


SENSING = datetime(2022, 1, 30, 6, 35, 11, tzinfo=UTC)


@pytest.fixture(scope="session")
def demo_safes(tmp_path_factory: pytest.TempPathFactory) -> DemoSafes:
    """Four unpacked SAFEs of 40KCB, 2022-01-30; 35 % cloud. Read-only."""
    root = tmp_path_factory.mktemp("safes")

    def build(level: str, baseline: str) -> Path:
        return build_safe(
            root / f"{level}-{baseline}",
            level=level,
            sensing=SENSING,
            baseline=baseline,
            size=DEMO_SIZE,
            cloud_cover=35.0,
        )

    return DemoSafes(
        l1c_old=build("L1C", "03.01"),
        l1c_new=build("L1C", "05.09"),
        l2a_old=build("L2A", "03.01"),
        l2a_new=build("L2A", "05.09"),
    )


@pytest.fixture
def library(tmp_path: Path) -> Library:
    """An empty library below the test's own folder."""
    return Library(tmp_path / "library")


@pytest.fixture
def copy_safe(tmp_path: Path) -> Callable[[Path], Path]:
    """Copy a read-only session SAFE into the test's folder so a test may break it."""
    counter = iter(range(1000))

    def copy(safe: Path) -> Path:
        target = tmp_path / f"copy{next(counter)}" / safe.name
        shutil.copytree(safe, target)
        return target

    return copy


def rewrite_zip(
    source: Path,
    target: Path,
    *,
    keep: Callable[[zipfile.ZipInfo], bool] = lambda info: True,
    rename: Callable[[str], str] = lambda name: name,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Copy ``source`` to ``target`` member by member, dropping, renaming or adding members."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            if keep(info):
                dst.writestr(rename(info.filename), src.read(info))
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return target


def corrupt_member(source: Path, target: Path, suffix: str) -> str:
    """Copy ``source`` and flip one byte in the stored data of the first member ending
    with ``suffix``; the zip's directory stays valid, the member's CRC does not."""
    shutil.copyfile(source, target)
    with zipfile.ZipFile(target) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    assert info.compress_type == zipfile.ZIP_STORED and info.file_size > 20
    with open(target, "r+b") as handle:
        handle.seek(info.header_offset + 26)
        name_len = int.from_bytes(handle.read(2), "little")
        extra_len = int.from_bytes(handle.read(2), "little")
        position = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        handle.seek(position)
        byte = handle.read(1)
        handle.seek(position)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return info.filename
