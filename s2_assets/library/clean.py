"""Library clean: find debris in the product tree and remove it, or only report it. Pure.

sen2chain's clean rules (reference e.4, 1-5), per tile:

1. ``*L2A*.SAFE`` / ``*L2A*.tmp`` folders in the L1C tile folder (Sen2Cor leftovers);
2. ``*L1C*.zip`` in the L1C tile folder (we also take ``*L2A*.zip`` in the L2A folder);
3. ``*L1C*`` entries without a suffix, and L1C SAFEs whose metadata cannot be read;
4. ``*L2A*`` entries without a suffix in the L2A folder (we also take unreadable L2A SAFEs);
5. L2A SAFEs with fewer than 7 JPEG2000 files in ``GRANULE/*/IMG_DATA/R10m``.

Plus products damaged on disk: a SAFE whose metadata reads but one of whose images is cut
short or corrupt, found by the same structure walk the library runs before publishing
(``s2_assets.library.integrity``, well under a second per product). Removed, they are missing again,
so the next planning round fetches them anew.

Plus our own debris: hidden ``.part``/``.scratch`` files of interrupted writes and downloads,
``.old-*`` entries a replacing publish did not finish removing, entries of ``data/TEMP`` left
by runs that ended, products quarantined in ``data/TEMP/QUARANTINE`` (reported with their
reason), and ``*.tif.aux.xml`` whose ``.tif`` is gone (sen2chain's D10). The Sen2Cor slot
locks in ``data/TEMP/sen2cor-slots`` are never touched: a Sen2Cor may hold one.

Anything modified more recently than ``min_age`` is reported as recent and kept: it may
belong to a run still going (a Sen2Cor run may take 2 h). Only the given tiles are scanned
(plus the one listing of ``data/TEMP``), so a job's ``clean_before`` stays cheap on a large
library. Removal first renames an entry to a hidden ``.old-clean`` name, so a removal that
is interrupted never leaves half a product under its final name, and the next clean takes
the rest.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from s2_assets.errors import MetadataError
from s2_assets.library.integrity import product_problems
from s2_assets.library.tree import QUARANTINE, REASON_FILE, Library
from s2_assets.products import read_metadata, validate_tile_id

DEFAULT_MIN_AGE = timedelta(hours=3)
MIN_R10M_JP2 = 7  # B02, B03, B04, B08, TCI, AOT and WVP at 10 m

RULES: dict[str, str] = {
    "sen2cor_leftover": "L2A .SAFE/.tmp folder left in the L1C tile folder by Sen2Cor (e.4 rule 1)",
    "stray_zip": "product zip left in a tile folder (e.4 rule 2)",
    "partial_product": "product entry without a suffix: a partial extraction (e.4 rules 3-4)",
    "unreadable_product": "SAFE whose product metadata cannot be read (e.4 rule 3)",
    "incomplete_l2a": f"L2A with fewer than {MIN_R10M_JP2} JPEG2000 files in R10m (e.4 rule 5)",
    "damaged_product": "SAFE with an image cut short or corrupt (the check run before publishing)",
    "quarantined": "product that failed verification, kept in data/TEMP/QUARANTINE with its reason",
    "partial_file": "hidden .part/.scratch file of an interrupted write or download",
    "old_entry": ".old-* entry left when replacing a product was interrupted",
    "dead_temp": "entry of data/TEMP left by a run that ended",
    "orphan_aux_xml": "*.tif.aux.xml whose .tif is gone (sen2chain D10)",
}

REMOVED, WOULD_REMOVE, KEPT_RECENT = "removed", "would remove", "kept (recent)"

# Hidden names our writers use before the final rename: RasterWriter's
# ".<name>.<token>.part.tif" / ".scratch.tif", provenance's ".<name>.<token>.part", the side
# product copies' ".<name>.<random>"; and a CDSE download's "<id>.zip.part".
_PARTIAL_RE = re.compile(
    r"(^\..+\.(part|scratch)(\.[A-Za-z0-9]+)?$)"
    r"|(^\.(MSK_CLDPRB_20m|T\d{2}[A-Z]{3}_\d{8}T\d{6}_SCL_20m)\.jp2\.\w+$)"
    r"|(\.zip\.part$)"
)
_OLD_RE = re.compile(r"^\..+\.old-[\w-]+$")
SLOTS_DIR = "sen2cor-slots"  # s2_assets.sen2cor.slots' lock files: held by running Sen2Cors


@dataclass(frozen=True)
class Finding:
    """One piece of debris: where, which rule, what was done and why it is debris."""

    path: Path
    rule: str
    action: str
    detail: str

    def row(self) -> dict[str, str]:
        return {"path": str(self.path), "rule": self.rule, "action": self.action,
                "detail": self.detail}  # fmt: skip


@dataclass
class CleanReport:
    """What a clean found (sorted by path) and did; ``remove`` False means a dry run."""

    remove: bool
    tiles: list[str]
    findings: list[Finding] = field(default_factory=list)

    @property
    def removed(self) -> list[Finding]:
        return [f for f in self.findings if f.action == REMOVED]

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.action.startswith("failed")]

    def counts(self) -> dict[str, int]:
        """Findings per rule."""
        return dict(sorted(Counter(f.rule for f in self.findings).items()))

    def rows(self) -> list[dict[str, str]]:
        return [f.row() for f in self.findings]

    def summary(self) -> str:
        mode = "removed" if self.remove else "dry run, nothing removed"
        return (
            f"{len(self.findings)} finding(s) in {len(self.tiles)} tile(s) ({mode}): "
            f"{len(self.removed)} removed, {len(self.failed)} failed"
        )

    def markdown(self) -> str:
        """A table of every finding, for the Dagster UI."""
        lines = [self.summary(), "", "| action | rule | path | why |", "|---|---|---|---|"]
        for f in self.findings:
            cells = (f.action, f.rule, str(f.path), f.detail)
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines)


def clean_library(
    lib: Library,
    tiles: Sequence[str] | None,
    *,
    remove: bool,
    min_age: timedelta = DEFAULT_MIN_AGE,
    now: float | None = None,
) -> CleanReport:
    """Find debris in ``tiles`` of ``lib`` (every tile when None) and in ``data/TEMP``.

    Args:
        lib: The library.
        tiles: Tile ids to scan; None scans every tile of every product family.
        remove: Remove what is found; False only reports (a dry run).
        min_age: Entries modified more recently are kept and reported as recent.
        now: The current time (epoch seconds), for tests; default the clock.

    Returns:
        The report, one finding per entry, sorted by path.

    Raises:
        TileIdError: a tile id is invalid (before anything is scanned).
    """
    chosen = sorted({validate_tile_id(t) for t in tiles}) if tiles is not None else _all_tiles(lib)
    cutoff = (time.time() if now is None else now) - min_age.total_seconds()
    report = CleanReport(remove=remove, tiles=chosen)
    candidates: list[tuple[Path, str, str, bool]] = []
    for tile in chosen:
        candidates += _l1c_debris(lib.level_dir("L1C", tile))
        candidates += _l2a_debris(lib.level_dir("L2A", tile))
        for folder in _derived_dirs(lib, tile):
            candidates += _file_debris(folder)
    candidates += _temp_debris(lib.temp_dir)
    for path, rule, detail, deep in sorted(candidates):
        if _newest_mtime(path, deep=deep) > cutoff:
            action = KEPT_RECENT
        elif not remove:
            action = WOULD_REMOVE
        else:
            action = _remove(path, aside=rule != "dead_temp")
        report.findings.append(Finding(path=path, rule=rule, action=action, detail=detail))
    return report


def _all_tiles(lib: Library) -> list[str]:
    found = set(lib.tiles("L1C")) | set(lib.tiles("L2A")) | _subdirs(_masks_root(lib))
    indices = _indices_root(lib)
    for index_dir in _subdirs(indices):
        found |= _subdirs(indices / index_dir)
    valid = set()
    for name in found:
        try:
            valid.add(validate_tile_id(name))
        except ValueError:
            continue  # not a tile folder (QL folders, user files): not ours to judge
    return sorted(valid)


def _masks_root(lib: Library) -> Path:
    # The Library names only per-product folders (honouring config.cfg): go up from one.
    return lib.mask_dir("_", "_").parent.parent


def _indices_root(lib: Library) -> Path:
    return lib.index_dir("_", "_", "_").parent.parent.parent


def _subdirs(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()


def _entries(folder: Path) -> Iterator[Path]:
    return iter(sorted(folder.iterdir())) if folder.is_dir() else iter(())


def _common(entry: Path) -> tuple[Path, str, str, bool] | None:
    """Our hidden leftovers, found the same way in every folder."""
    if _OLD_RE.match(entry.name):
        return entry, "old_entry", "replaced or removed entry not yet deleted", True
    if _PARTIAL_RE.search(entry.name):
        return entry, "partial_file", "unfinished write (never renamed into place)", True
    return None


def _l1c_debris(folder: Path) -> list[tuple[Path, str, str, bool]]:
    found: list[tuple[Path, str, str, bool]] = []
    for entry in _entries(folder):
        name = entry.name
        if (common := _common(entry)) is not None:
            found.append(common)
        elif "L2A" in name and name.endswith((".SAFE", ".tmp")) and entry.is_dir():
            found.append((entry, "sen2cor_leftover", "Sen2Cor output outside the L2A folder", True))
        elif "L1C" in name and name.endswith(".zip"):
            found.append((entry, "stray_zip", "zip beside the unpacked products", False))
        elif "L1C" in name and not Path(name).suffix:
            found.append((entry, "partial_product", "no .SAFE suffix", True))
        elif "L1C" in name and name.endswith(".SAFE") and (why := _unreadable(entry)):
            found.append((entry, "unreadable_product", why, False))
        elif "L1C" in name and name.endswith(".SAFE") and (why := _damaged(entry)):
            found.append((entry, "damaged_product", why, False))
    return found


def _l2a_debris(folder: Path) -> list[tuple[Path, str, str, bool]]:
    found: list[tuple[Path, str, str, bool]] = []
    for entry in _entries(folder):
        name = entry.name
        if (common := _common(entry)) is not None:
            found.append(common)
        elif "L2A" in name and name.endswith(".zip"):
            found.append((entry, "stray_zip", "zip beside the unpacked products", False))
        elif "L2A" in name and not Path(name).suffix:
            found.append((entry, "partial_product", "no .SAFE suffix", True))
        elif "L2A" in name and name.endswith(".SAFE"):
            if why := _unreadable(entry):
                found.append((entry, "unreadable_product", why, False))
                continue
            count = len(list(entry.glob("GRANULE/*/IMG_DATA/R10m/*.jp2")))
            if count < MIN_R10M_JP2:
                detail = f"{count} JPEG2000 file(s) in R10m, expected at least {MIN_R10M_JP2}"
                found.append((entry, "incomplete_l2a", detail, False))
            elif why := _damaged(entry):
                found.append((entry, "damaged_product", why, False))
    return found


def _unreadable(safe: Path) -> str | None:
    """Why a SAFE's metadata cannot be read (cloud cover included, as sen2chain asks), or
    None. A broken archive symlink is unreadable too."""
    if not safe.exists():
        return "broken link" if safe.is_symlink() else "missing"
    try:
        read_metadata(safe)
    except MetadataError as exc:
        return str(exc)
    return None


def _damaged(safe: Path) -> str | None:
    """What the pre-publish verification finds wrong with a readable SAFE, or None. The
    product name is not compared: a Sen2Cor-made L2A keeps Sen2Cor's name in its metadata."""
    problems = product_problems(safe)
    if not problems:
        return None
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def _derived_dirs(lib: Library, tile: str) -> list[Path]:
    """The per-L2A folders of masks and indices of ``tile``, and the tile folders above them
    (where an interrupted replace of a whole product folder leaves its ``.old-*``)."""
    tile_dirs = [_masks_root(lib) / tile]
    indices = _indices_root(lib)
    tile_dirs += [indices / name / tile for name in sorted(_subdirs(indices))]
    folders: list[Path] = []
    for tile_dir in tile_dirs:
        if tile_dir.is_dir():
            folders.append(tile_dir)
            folders += [p for p in sorted(tile_dir.iterdir()) if p.is_dir() and not p.is_symlink()]
    return folders


def _file_debris(folder: Path) -> list[tuple[Path, str, str, bool]]:
    found: list[tuple[Path, str, str, bool]] = []
    for entry in _entries(folder):
        if (common := _common(entry)) is not None:
            found.append(common)
        elif entry.name.endswith(".tif.aux.xml") and not entry.with_name(entry.name[:-8]).exists():
            found.append((entry, "orphan_aux_xml", f"{entry.name[:-8]} does not exist", False))
    return found


def _temp_debris(temp: Path) -> list[tuple[Path, str, str, bool]]:
    found: list[tuple[Path, str, str, bool]] = []
    for entry in _entries(temp):
        if entry.name == QUARANTINE and entry.is_dir():
            found += [(e, "quarantined", _reason(e), True) for e in _entries(entry)]
        elif entry.name != SLOTS_DIR:
            found.append((entry, "dead_temp", "scratch of a run that ended", True))
    return found


def _reason(quarantined: Path) -> str:
    """The first problem its REASON.txt names (the line after the heading)."""
    try:
        lines = (quarantined / REASON_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return "no REASON.txt"
    return lines[1] if len(lines) > 1 else (lines[0] if lines else "empty REASON.txt")


def _newest_mtime(path: Path, *, deep: bool) -> float:
    """Last modification of ``path`` (not following links), or of anything below it when
    ``deep``: a run still writing deep inside a folder keeps the folder's own mtime old."""
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
    if deep and path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
                except FileNotFoundError:
                    continue
    return newest


def _remove(path: Path, *, aside: bool) -> str:
    """Remove a file, link or folder; a folder under a product name is first renamed to a
    hidden ``.old-clean`` name so no half-removed product is ever visible."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return REMOVED
        target = path
        if aside and not _OLD_RE.match(path.name):
            target = path.with_name(f".{path.name}.old-clean-{secrets.token_hex(4)}")
            os.replace(path, target)
        shutil.rmtree(target)
    except OSError as exc:
        return f"failed: {exc.strerror or exc}"
    return REMOVED
