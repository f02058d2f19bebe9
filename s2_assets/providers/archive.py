"""A folder of product zips: a local archive, or EODC's ``/eodc/products/copernicus.eu``.

Layout (EODC's, the default template)::

    {root}/{platform}_prd_msi{level}/{yyyy}/{mm}/{dd}/{name}.zip
    e.g. s2a_prd_msil1c/2024/01/01/S2A_MSIL1C_20240101T063511_N0510_R120_T40KCB_20240101T083511.zip

Searching a tile over a window lists only the day folders of that window. Products are
delivered in place (no copy): the library unpacks the zip where it lies.
"""

from __future__ import annotations

import logging
import zipfile
from datetime import date, timedelta
from pathlib import Path

from s2_assets.errors import MetadataError, ProviderError
from s2_assets.products import MISSIONS, ProductName, parse_metadata_xml
from s2_assets.providers.base import ProductRecord

DEFAULT_TEMPLATE = "{platform}_prd_msi{level}/{yyyy}/{mm}/{dd}/{name}.zip"
_log = logging.getLogger(__name__)
TEMPLATE_FIELDS = ("platform", "level", "yyyy", "mm", "dd", "name")


def validate_template(template: str) -> str:
    """Check a folder template names a zip and uses only known fields.

    Raises:
        ProviderError: naming the template and the valid fields.
    """
    try:
        template.format(**{field: "x" for field in TEMPLATE_FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise ProviderError(
            f"archive template {template!r} is invalid ({exc}); "
            f"fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        ) from exc
    if not template.endswith("{name}.zip"):
        raise ProviderError(f"archive template {template!r} must end with '{{name}}.zip'")
    return template


class ArchiveProvider:
    """Products as zips in a dated folder tree.

    ``read_metadata`` opens each zip's MTD XML during search to learn its cloud cover. Turn
    it off for tape-backed trees (EODC): reading a cold file recalls it from tape, which is
    what staging through Chiller is for; cloud cover is then read after staging.
    """

    def __init__(
        self,
        root: Path,
        *,
        name: str = "archive",
        template: str = DEFAULT_TEMPLATE,
        read_metadata: bool = True,
        missions: tuple[str, ...] = MISSIONS,
    ) -> None:
        self.root = Path(root)
        self.name = name
        self.template = validate_template(template)
        self.read_metadata = read_metadata
        self.missions = missions

    def path_for(self, product: ProductName) -> Path:
        """Where ``product``'s zip lies (or would lie) in this archive."""
        day = product.date
        return self.root / self.template.format(
            platform=product.mission.lower(),
            level=product.level.lower(),
            yyyy=f"{day.year:04d}",
            mm=f"{day.month:02d}",
            dd=f"{day.day:02d}",
            name=product.id,
        )

    def _day_folders(self, level: str, day: date) -> list[Path]:
        folders = []
        for mission in self.missions:
            pattern = self.template.format(
                platform=mission.lower(),
                level=level.lower(),
                yyyy=f"{day.year:04d}",
                mm=f"{day.month:02d}",
                dd=f"{day.day:02d}",
                name="X",
            )
            folder = self.root / Path(pattern).parent
            # A template without {platform} gives one folder for every mission: list it once.
            if folder not in folders:
                folders.append(folder)
        return folders

    def search(self, tile: str, level: str, start: date, end: date) -> list[ProductRecord]:
        """Every zip of ``tile`` at ``level`` sensed on a day in ``[start, end]``."""
        if not self.root.is_dir():
            raise ProviderError(f"archive root {self.root} does not exist")
        records = []
        day = start
        while day <= end:
            for folder in self._day_folders(level, day):
                if not folder.is_dir():
                    continue
                for path in sorted(folder.glob(f"*_T{tile}_*.zip")):
                    try:
                        name = ProductName.parse(path.name)
                    except ValueError:
                        continue  # not a product: leave it alone
                    if name.level == level and name.tile == tile and name.date == day:
                        records.append(self._record(path, name))
            day += timedelta(days=1)
        return records

    def _record(self, path: Path, name: ProductName) -> ProductRecord:
        cloud = None
        if self.read_metadata:
            try:
                cloud = read_zip_cloud_cover(path, name)
            except MetadataError as exc:
                # One unreadable zip must not hide the rest of the tile: it is listed with
                # unknown cloud cover, and installing it will fail with the zip's own error.
                _log.warning(str(exc))
        return ProductRecord(
            product_id=name.id,
            level=name.level,
            tile=name.tile or "",
            sensing_time=name.sensing,
            cloud_cover=cloud,
            baseline=name.baseline or "00.00",
            provider=self.name,
            location=str(path),
            size=path.stat().st_size,
        )

    def fetch(self, record: ProductRecord, workdir: Path) -> Path:
        """The zip itself, read in place."""
        path = Path(record.location)
        if not path.is_file():
            raise ProviderError(
                f"{record.product_id}: {path} is no longer in the {self.name} archive"
            )
        return path


def read_zip_cloud_cover(path: Path, name: ProductName) -> float | None:
    """Cloud cover from the MTD XML inside a product zip, without unpacking the rest."""
    member = f"{name.safe_name}/MTD_MSI{name.level}.xml"
    try:
        with zipfile.ZipFile(path) as archive:
            content = archive.read(member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise MetadataError(f"product zip {path.name}: cannot read {member} ({exc})") from exc
    return parse_metadata_xml(content, source=f"{path.name}!{member}").cloud_cover
