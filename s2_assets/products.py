"""Sentinel-2 product names, MGRS tile ids and product metadata XML. Pure: no Dagster, no I/O
beyond reading the XML files it is pointed at.

Names follow ESA's compact convention
``S2A_MSIL1C_20240101T063511_N0510_R120_T40KCB_20240101T083400`` (mission, level, sensing
start, baseline, relative orbit, tile, discriminator) and the legacy multi-tile form
``S2A_OPER_PRD_MSIL1C_PDMC_<generation>_R<orbit>_V<sensing>_<sensing stop>`` that still sits
in old archives.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

from s2_assets.errors import MetadataError, ProductNameError, TileIdError

MISSIONS = ("S2A", "S2B", "S2C", "S2D")
LEVELS = ("L1C", "L2A")

# MGRS: UTM zone 01-60, latitude band C..X without I and O (Sentinel-2 covers -56..84 deg).
LATITUDE_BANDS = "CDEFGHJKLMNPQRSTUVWX"
# 100 km square column letters repeat every three zones; row letters A..V without I and O.
_COLUMN_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
_TILE_RE = re.compile(r"^(\d{2})([A-Z])([A-Z])([A-Z])$")

# Band order of the MTD's band_id attributes (0..12): B8A sits between B08 and B09.
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
BAND_IDS = {band: index for index, band in enumerate(BANDS)}
NATIVE_RESOLUTION = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
}  # fmt: skip

# L2A layers that are not bands: the finest resolution Sen2Cor writes them at.
_LAYER_RESOLUTION = {"TCI": 10, "AOT": 10, "WVP": 10, "SCL": 20}

_MODERN_RE = re.compile(
    r"^(?P<mission>S2[A-D])_MSI(?P<level>L1C|L2A)_(?P<sensing>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_(?P<discriminator>\d{8}T\d{6})$"
)
_LEGACY_RE = re.compile(
    r"^(?P<mission>S2[A-D])_(?P<centre>OPER|USER)_PRD_MSI(?P<level>L1C|L2A)_(?P<site>[A-Z0-9]{4})"
    r"_(?P<discriminator>\d{8}T\d{6})_R(?P<orbit>\d{3})_V(?P<sensing>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})$"
)
_STAMP = "%Y%m%dT%H%M%S"


def validate_tile_id(value: str) -> str:
    """Return ``value`` if it is a valid Sentinel-2 MGRS tile id such as ``40KCB``.

    Raises:
        TileIdError: naming the value and what a tile id looks like.
    """
    text = str(value).strip()
    hint = ""
    if len(text) == 6 and text[:1] in "Tt":
        hint = f" (drop the leading 'T': {text[1:].upper()!r})"
    elif text != text.upper():
        hint = f" (tile ids are upper case: {text.upper()!r})"
    match = _TILE_RE.match(text)
    problem = ""
    if not match:
        problem = "expected two digits and three letters, like 40KCB"
    else:
        zone, band, column, row = int(match[1]), match[2], match[3], match[4]
        columns = _COLUMN_SETS[(zone - 1) % 3] if 1 <= zone <= 60 else ""
        if not 1 <= zone <= 60:
            problem = "UTM zone must be 01..60"
        elif band not in LATITUDE_BANDS:
            problem = f"latitude band must be one of {LATITUDE_BANDS}"
        elif column not in columns:
            problem = f"in zone {zone:02d} the 100 km column letter must be one of {columns}"
        elif row not in _ROW_LETTERS:
            problem = f"the 100 km row letter must be one of {_ROW_LETTERS}"
    if problem:
        raise TileIdError(f"invalid tile id {value!r}: {problem}{hint}")
    return text


def tile_epsg(tile: str) -> int:
    """EPSG code of the UTM zone a tile is projected in (326zz north, 327zz south)."""
    tile = validate_tile_id(tile)
    zone = int(tile[:2])
    return (32600 if tile[2] >= "N" else 32700) + zone


def format_baseline(digits: str) -> str:
    """``'0509'`` -> ``'05.09'``."""
    return f"{digits[:2]}.{digits[2:]}"


def baseline_number(baseline: str) -> float:
    """``'05.09'`` -> ``5.09``, for comparisons."""
    return float(baseline)


@dataclass(frozen=True, order=True)
class ProductName:
    """A parsed Sentinel-2 product name.

    ``tile`` and ``baseline`` are ``None`` only for legacy multi-tile names, which carry
    neither.
    """

    sensing: datetime
    mission: str
    level: str
    baseline: str | None
    relative_orbit: int
    tile: str | None
    discriminator: str
    legacy_name: str | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, name: str) -> ProductName:
        """Parse a product name, with or without ``.SAFE`` / ``.zip`` and a folder.

        Raises:
            ProductNameError: naming the value and the expected form.
        """
        stem = Path(str(name).strip().rstrip("/")).name
        for suffix in (".zip", ".SAFE", ".safe"):
            stem = stem.removesuffix(suffix)
        stem = stem.upper()
        if match := _MODERN_RE.match(stem):
            try:
                tile = validate_tile_id(match["tile"])
            except TileIdError as exc:
                # Name the product, not only its tile: the tile alone does not say which file.
                raise ProductNameError(f"invalid Sentinel-2 product name {name!r}: {exc}") from exc
            return cls(
                sensing=_parse_stamp(match["sensing"], name),
                mission=match["mission"],
                level=match["level"],
                baseline=format_baseline(match["baseline"]),
                relative_orbit=int(match["orbit"]),
                tile=tile,
                discriminator=match["discriminator"],
            )
        if match := _LEGACY_RE.match(stem):
            return cls(
                sensing=_parse_stamp(match["sensing"], name),
                mission=match["mission"],
                level=match["level"],
                baseline=None,
                relative_orbit=int(match["orbit"]),
                tile=None,
                discriminator=match["discriminator"],
                legacy_name=stem,
            )
        raise ProductNameError(
            f"invalid Sentinel-2 product name {name!r}: expected "
            "S2x_MSIL1C|MSIL2A_<YYYYMMDDTHHMMSS>_N<bbbb>_R<ooo>_T<tile>_<YYYYMMDDTHHMMSS>, "
            "e.g. S2A_MSIL1C_20240101T063511_N0510_R120_T40KCB_20240101T083400, "
            "or the legacy S2x_OPER_PRD_MSIL1C_... form"
        )

    @property
    def id(self) -> str:
        """The product identifier: the name without ``.SAFE``."""
        if self.legacy_name is not None:
            return self.legacy_name
        assert self.baseline is not None and self.tile is not None
        return (
            f"{self.mission}_MSI{self.level}_{self.sensing.strftime(_STAMP)}"
            f"_N{self.baseline.replace('.', '')}_R{self.relative_orbit:03d}_T{self.tile}"
            f"_{self.discriminator}"
        )

    @property
    def safe_name(self) -> str:
        return f"{self.id}.SAFE"

    @property
    def date(self) -> date:
        """UTC sensing day: the ``date`` partition this product belongs to."""
        return self.sensing.date()

    @property
    def family(self) -> str:
        """What an L1C shares with the L2A made from it (sen2chain's product family)."""
        return self.id.split("_MSI", 1)[1][4:]

    def as_level(self, level: str) -> ProductName:
        """The name sen2chain gives the product of another level made from this one
        (``L1C_`` -> ``L2A_``, ``_OPER_`` -> ``_USER_``; baseline and discriminator kept)."""
        if level not in LEVELS:
            raise ProductNameError(f"unknown level {level!r}; valid: {', '.join(LEVELS)}")
        legacy = self.legacy_name
        if legacy is not None:
            legacy = legacy.replace(f"MSI{self.level}", f"MSI{level}").replace("_OPER_", "_USER_")
        return replace(self, level=level, legacy_name=legacy)


def acquisition_time(name: ProductName) -> datetime:
    """THE time of an acquisition in every output (STAC ``datetime``, time-series ``date``,
    NetCDF ``time``): the sensing start in the product name, UTC, whole seconds.

    Chosen over the metadata's millisecond ``PRODUCT_START_TIME`` because the name is there
    even after a remove rule deleted the SAFE, and is the same for the L1C, the L2A and
    everything derived from them, so outputs join on it without flooring.
    """
    return name.sensing


def _parse_stamp(stamp: str, name: str) -> datetime:
    try:
        return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ProductNameError(f"invalid date {stamp!r} in product name {name!r}") from exc


# --------------------------------------------------------------------------- metadata XML


@dataclass(frozen=True)
class ProductMetadata:
    """What we read from ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``.

    ``offsets`` maps band name -> additive DN offset (``BOA_ADD_OFFSET`` for L2A,
    ``RADIO_ADD_OFFSET`` for L1C; empty before baseline 04.00, i.e. offset 0).
    ``image_files`` are the IMAGE_FILE entries, relative to the SAFE, without ``.jp2``.
    """

    product_uri: str
    level: str
    processing_baseline: str
    cloud_cover: float | None
    quantification: int
    offsets: dict[str, int]
    image_files: tuple[str, ...]
    sensing_start: datetime | None
    spacecraft: str | None

    def offset(self, band: str) -> int:
        return self.offsets.get(band, 0)

    def image_file(self, band: str, resolution: int | None = None) -> str:
        """The IMAGE_FILE entry of ``band`` (``B04``, ``SCL``, ``TCI`` …) at ``resolution``.

        L1C files have no resolution suffix; for L2A the native resolution is the default.

        Raises:
            MetadataError: when the product lists no such image.
        """
        if self.level == "L1C":
            suffix = f"_{band}"
        else:
            res = resolution or NATIVE_RESOLUTION.get(band, _LAYER_RESOLUTION.get(band, 20))
            suffix = f"_{band}_{res}m"
        for entry in self.image_files:
            if entry.endswith(suffix):
                return entry
        raise MetadataError(
            f"{self.product_uri}: no image {band}"
            + (f" at {resolution} m" if resolution else "")
            + f" listed in MTD_MSI{self.level}.xml"
        )


def metadata_path(safe_dir: Path) -> Path:
    """The product metadata XML of a SAFE folder (``MTD_MSIL1C.xml`` or ``MTD_MSIL2A.xml``)."""
    for candidate in ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml"):
        path = safe_dir / candidate
        if path.is_file():
            return path
    raise MetadataError(f"{safe_dir.name}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml in {safe_dir}")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _iter_named(root: ET.Element, name: str) -> Iterator[ET.Element]:
    return (element for element in root.iter() if _local(element.tag) == name)


def _text(root: ET.Element, name: str) -> str | None:
    element = next(_iter_named(root, name), None)
    return element.text.strip() if element is not None and element.text else None


def parse_metadata_xml(content: bytes, *, source: str) -> ProductMetadata:
    """Parse the bytes of a product metadata XML; ``source`` names it in errors."""
    try:
        root = ET.fromstring(content)
    except ET.ParseError as exc:
        raise MetadataError(f"{source}: not well-formed XML ({exc})") from exc
    level_text = _text(root, "PROCESSING_LEVEL") or _local(root.tag)
    level = "L2A" if "2A" in level_text else "L1C" if "1C" in level_text else ""
    baseline = _text(root, "PROCESSING_BASELINE")
    uri = _text(root, "PRODUCT_URI")
    if not level or not baseline or not uri:
        missing = [
            name
            for name, value in (("PROCESSING_LEVEL", level), ("PROCESSING_BASELINE", baseline))
            if not value
        ] + ([] if uri else ["PRODUCT_URI"])
        raise MetadataError(f"{source}: missing {', '.join(missing)}")
    cloud_text = _text(root, "Cloud_Coverage_Assessment")
    quant_name = "BOA_QUANTIFICATION_VALUE" if level == "L2A" else "QUANTIFICATION_VALUE"
    offset_name = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    try:
        offsets = {
            BANDS[int(element.attrib["band_id"])]: int(float(element.text or "0"))
            for element in _iter_named(root, offset_name)
        }
        cloud = float(cloud_text) if cloud_text not in (None, "") else None
        quantification = int(float(_text(root, quant_name) or 10000))
        start_text = _text(root, "PRODUCT_START_TIME")
        sensing = datetime.fromisoformat(start_text.replace("Z", "+00:00")) if start_text else None
    except (KeyError, IndexError, ValueError) as exc:
        raise MetadataError(f"{source}: unreadable value ({exc})") from exc
    images = tuple(
        element.text.strip() for element in _iter_named(root, "IMAGE_FILE") if element.text
    )
    return ProductMetadata(
        product_uri=uri.removesuffix(".SAFE"),
        level=level,
        processing_baseline=baseline,
        cloud_cover=cloud,
        quantification=quantification,
        offsets=offsets,
        image_files=images,
        sensing_start=sensing,
        spacecraft=_text(root, "SPACECRAFT_NAME"),
    )


def read_metadata(safe_dir: Path) -> ProductMetadata:
    """Read the product metadata XML of an unpacked SAFE folder.

    Raises:
        MetadataError: naming the product and what is wrong.
    """
    path = metadata_path(safe_dir)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"{safe_dir.name}: cannot read {path.name} ({exc})") from exc
    return parse_metadata_xml(content, source=f"{safe_dir.name}/{path.name}")


def band_path(
    safe_dir: Path, metadata: ProductMetadata, band: str, resolution: int | None = None
) -> Path:
    """Absolute path of a band JPEG2000 inside an unpacked SAFE."""
    return safe_dir / f"{metadata.image_file(band, resolution)}.jp2"


def qi_path(safe_dir: Path, name: str) -> Path:
    """A granule QI_DATA file such as ``MSK_CLDPRB_20m.jp2``.

    Raises:
        MetadataError: when the product has no such file.
    """
    matches = sorted(safe_dir.glob(f"GRANULE/*/QI_DATA/{name}"))
    if not matches:
        raise MetadataError(f"{safe_dir.name}: no GRANULE/*/QI_DATA/{name}")
    return matches[0]
