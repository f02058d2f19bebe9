"""Where every product lives on disk: sen2chain's tree, atomic publish, safe unzip, listing.

The tree is sen2chain's, so existing sen2chain libraries keep working::

    <root>/data/L1C/<tile>/<L1C id>.SAFE
    <root>/data/L2A/<tile>/<L2A id>.SAFE
    <root>/data/CLOUDMASKS/<tile>/<L2A id>/<L2A id>_<SPEC>.tif
    <root>/data/INDICES/<INDEX>/<tile>/<L2A id>/<L2A id>_<INDEX>[_<SPEC>].tif
    <root>/data/ACQUISITIONS/<tile>.parquet      (ours: the provider catalogue per tile)
    <root>/data/TEMP/                           scratch, on the same filesystem as the tree
    <root>/data/TEMP/QUARANTINE/<id>/           a product that failed verification, and why
    <root>/config/jobs/   <root>/logs/

A sen2chain ``config/config.cfg`` whose ``[DATA PATHS]`` point at existing folders is honoured,
as sen2chain itself does. Nothing is ever visible under a final name before it is complete:
everything is built in ``data/TEMP`` and moved into place with one rename, and a product is
only renamed into place after ``s2_assets.library.integrity`` found its metadata and every image whole
(:meth:`Library.publish_product`). One that is not goes to ``data/TEMP/QUARANTINE`` with a
``REASON.txt``; nothing of it is under a final name, so whatever asks "is it there?" still
sees it missing and fetches it again.
"""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath

from s2_assets.errors import ArchiveError, CorruptProductError, LibraryError
from s2_assets.library.integrity import product_problems
from s2_assets.library.provenance import Provenance, write_record
from s2_assets.products import ProductName

# A real L2A zip is about 1.2 GB; anything claiming far more is broken or hostile.
MAX_UNPACKED_BYTES = 8 * 1024**3
MAX_ENTRIES = 20_000
QUARANTINE = "QUARANTINE"
REASON_FILE = "REASON.txt"

_PATH_KEYS = {
    "l1c_path": "L1C",
    "l2a_path": "L2A",
    "cloudmasks_path": "CLOUDMASKS",
    "indices_path": "INDICES",
    "temp_path": "TEMP",
}


@dataclass(frozen=True)
class LibraryProduct:
    """A SAFE product found in the library."""

    name: ProductName
    path: Path

    @property
    def id(self) -> str:
        return self.name.id


class Library:
    """One product library rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self._dirs = {folder: self.root / "data" / folder for folder in _PATH_KEYS.values()}
        self._dirs["ACQUISITIONS"] = self.root / "data" / "ACQUISITIONS"
        self._read_sen2chain_config()

    def _read_sen2chain_config(self) -> None:
        config_file = self.root / "config" / "config.cfg"
        if not config_file.is_file():
            return
        parser = configparser.ConfigParser()
        try:
            parser.read(config_file)
        except configparser.Error as exc:
            raise LibraryError(f"{config_file}: unreadable sen2chain config ({exc})") from exc
        paths = parser["DATA PATHS"] if parser.has_section("DATA PATHS") else {}
        for key, folder in _PATH_KEYS.items():
            value = paths.get(key, "").strip()
            # sen2chain silently falls back to data/<KEY> for empty or missing paths; so do we.
            if value and Path(value).is_dir():
                self._dirs[folder] = Path(value)

    # ------------------------------------------------------------------ locations

    @property
    def jobs_dir(self) -> Path:
        return self.root / "config" / "jobs"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def temp_dir(self) -> Path:
        return self._dirs["TEMP"]

    @property
    def quarantine_dir(self) -> Path:
        """``data/TEMP/QUARANTINE``: products that failed verification, one folder each."""
        return self.temp_dir / QUARANTINE

    def level_dir(self, level: str, tile: str) -> Path:
        """``data/L1C/<tile>`` or ``data/L2A/<tile>``."""
        return self._dirs[level] / tile

    def product_path(self, name: ProductName) -> Path:
        if name.tile is None:
            raise LibraryError(f"{name.id}: legacy multi-tile products have no place in the tree")
        return self.level_dir(name.level, name.tile) / name.safe_name

    def mask_dir(self, tile: str, l2a_id: str) -> Path:
        return self._dirs["CLOUDMASKS"] / tile / l2a_id

    def index_dir(self, index: str, tile: str, l2a_id: str) -> Path:
        return self._dirs["INDICES"] / index.upper() / tile / l2a_id

    def acquisitions_path(self, tile: str) -> Path:
        return self._dirs["ACQUISITIONS"] / f"{tile}.parquet"

    # ------------------------------------------------------------------ listing

    def products(self, level: str, tile: str, day: date | None = None) -> list[LibraryProduct]:
        """The SAFE products of ``tile`` at ``level`` (on ``day`` if given), sorted by time.

        Follows symlinks (sen2chain archives products as links into an archive folder) and
        ignores anything that is not a product name (leftovers are the clean job's business).
        """
        folder = self.level_dir(level, tile)
        if not folder.is_dir():
            return []
        found = []
        for entry in folder.iterdir():
            if not entry.name.endswith(".SAFE") or not entry.is_dir():
                continue
            try:
                name = ProductName.parse(entry.name)
            except ValueError:
                continue
            if name.level == level and (day is None or name.date == day):
                found.append(LibraryProduct(name, entry))
        return sorted(found, key=lambda p: (p.name.sensing, p.id))

    def tiles(self, level: str) -> list[str]:
        folder = self._dirs[level]
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def has_product(self, name: ProductName) -> bool:
        return self.product_path(name).is_dir()

    # ------------------------------------------------------------------ writing

    @contextmanager
    def scratch(self, prefix: str = "work") -> Iterator[Path]:
        """A private folder in ``data/TEMP``, removed afterwards whatever happens."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.temp_dir))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish(self, staged: Path, final: Path) -> Path:
        """Move a complete file or folder into place with one rename.

        An existing product under ``final`` is replaced: it is first renamed aside, so at
        every moment ``final`` is either the old complete product or the new one.
        """
        final.parent.mkdir(parents=True, exist_ok=True)
        if staged.stat().st_dev != final.parent.stat().st_dev:
            raise LibraryError(
                f"cannot publish {staged} atomically: not on the filesystem of {final}"
            )
        if final.exists() or final.is_symlink():
            aside = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, aside)
            try:
                os.replace(staged, final)
            except OSError:
                os.replace(aside, final)  # put the old product back: never leave the name empty
                raise
            if aside.is_dir() and not aside.is_symlink():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                aside.unlink(missing_ok=True)
        else:
            os.replace(staged, final)
        return final

    def publish_product(
        self,
        staged: Path,
        name: ProductName,
        *,
        expected_id: str | None = None,
        where: str | None = None,
    ) -> Path:
        """Verify the unpacked SAFE ``staged`` and publish it as ``name``, or quarantine it.

        Args:
            staged: The complete SAFE folder, on the library's filesystem.
            name: The name it is published under.
            expected_id: The product its metadata must name (None: not checked, as for a
                Sen2Cor output, which sen2chain renames).
            where: What to call it in errors (default: the product id).

        Raises:
            CorruptProductError: its metadata or an image is damaged; it was moved to
                ``data/TEMP/QUARANTINE/<id>`` with ``REASON.txt``, nothing was published.
        """
        problems = product_problems(staged, expected_id)
        if problems:
            label = where or name.id
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            folder = self.quarantine(staged, name, [f"{label}: {p}" for p in problems])
            raise CorruptProductError(
                f"{label}: {'; '.join(problems[:5])}{more}; not published, quarantined in {folder}",
                product_id=name.id,
                problems=problems,
                quarantine=folder,
            )
        return self.publish(staged, self.product_path(name))

    def quarantine(self, staged: Path, name: ProductName, problems: list[str]) -> Path:
        """Move ``staged`` to ``data/TEMP/QUARANTINE/<id>/`` beside a ``REASON.txt``.

        One folder per product: a newer failure of the same product replaces the older one,
        so a product that keeps failing does not fill the disk.
        """
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        incoming = Path(tempfile.mkdtemp(prefix=f".{name.id}.", dir=self.quarantine_dir))
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        reason = [f"{name.id} was not published ({stamp}):", *problems, ""]
        (incoming / REASON_FILE).write_text("\n".join(reason), encoding="utf-8")
        os.replace(staged, incoming / staged.name)
        final = self.quarantine_dir / name.id
        if final.exists():
            aside = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.replace(incoming, final)
        return final

    def install_zip(
        self, zip_path: Path, expected: ProductName, record: Provenance | None = None
    ) -> Path:
        """Unpack a product zip safely, verify it and publish it as ``<level>/<tile>/<id>.SAFE``.

        ``record`` (its provenance) is written into the unpacked SAFE before the one rename
        that publishes it: a SAFE under its final name always carries its record.

        Raises:
            ArchiveError: the zip is malformed, unsafe or not the expected product; nothing
                is left in the library.
            CorruptProductError: (an ``ArchiveError``) it unpacked but its metadata or an
                image is damaged; it is in quarantine, nothing is in the library.
        """
        with self.scratch("unzip") as work:
            safe = safe_unzip(zip_path, work, expected)
            if record is not None:
                write_record(safe, record)
            expected_id = expected.id if expected.legacy_name is None else None
            return self.publish_product(
                safe, expected, expected_id=expected_id, where=f"product zip {zip_path.name}"
            )


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def safe_unzip(zip_path: Path, work: Path, expected: ProductName) -> Path:
    """Extract ``<id>.SAFE`` from ``zip_path`` into ``work``, refusing unsafe or wrong zips.

    Rejects entries that escape the target, links, absurd sizes and zips of another
    product. What is inside (metadata, images) is :meth:`Library.publish_product`'s to check.
    """
    where = f"product zip {zip_path.name}"
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{where}: not a readable zip ({exc})") from exc
    with archive:
        infos = archive.infolist()
        if not infos or len(infos) > MAX_ENTRIES:
            raise ArchiveError(f"{where}: {len(infos)} entries (expected 1..{MAX_ENTRIES})")
        total = sum(info.file_size for info in infos)
        if total > MAX_UNPACKED_BYTES:
            raise ArchiveError(f"{where}: unpacks to {total} bytes, over {MAX_UNPACKED_BYTES}")
        prefix = _safe_prefix(infos, expected, where)
        target = work / expected.safe_name
        for info in infos:
            pure = PurePosixPath(info.filename)
            if pure.is_absolute() or ".." in pure.parts or "\\" in info.filename:
                raise ArchiveError(f"{where}: entry {info.filename!r} escapes the product folder")
            if _is_link(info):
                raise ArchiveError(f"{where}: entry {info.filename!r} is a link")
            if pure != prefix and prefix not in pure.parents:
                continue  # beside the SAFE (e.g. a checksum file): not part of the product
            relative = pure.relative_to(prefix)
            destination = target.joinpath(*relative.parts)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1024 * 1024)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ArchiveError(f"{where}: entry {info.filename!r} is corrupt ({exc})") from exc
    return target


def _safe_prefix(infos: list[zipfile.ZipInfo], expected: ProductName, where: str) -> PurePosixPath:
    """The folder inside the zip that is the SAFE: ``<id>.SAFE`` at the top, or nested once
    (``<id>/<id>.SAFE``, a packaging quirk sen2chain also repairs)."""
    for info in infos:
        parts = PurePosixPath(info.filename).parts
        for depth in (0, 1):
            if len(parts) > depth and parts[depth] == expected.safe_name:
                return PurePosixPath(*parts[: depth + 1])
    names = sorted({PurePosixPath(i.filename).parts[0] for i in infos if i.filename})[:3]
    raise ArchiveError(f"{where}: does not contain {expected.safe_name} (top level: {names})")


def directory_bytes(path: Path) -> int:
    """Total size of the files below ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
