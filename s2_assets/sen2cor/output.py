"""What a Sen2Cor run left behind: is it one complete L2A, and its provenance record.

Pure: no Dagster, no decoding of pixels. The checks are cheap (XML, and JPEG 2000 structure
walks from ``s2_assets.library.integrity``) so they can run on every product; a product that fails
them is never published.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from s2_assets import __version__
from s2_assets.errors import MetadataError, ProductNameError
from s2_assets.library.integrity import jp2_problem
from s2_assets.products import ProductMetadata, ProductName, read_metadata

# Bands the rest of the platform reads, per resolution folder (SCL and masks feed CM004/CM001).
_REQUIRED_LAYERS: dict[int, tuple[str, ...]] = {
    10: ("B02", "B03", "B04", "B08"),
    20: ("B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12", "SCL"),
    60: ("B01", "B09", "SCL"),
}
PROVENANCE_FILE = "sen2chain_info.xml"


def validate_l2a(
    safe: Path, l1c: ProductName, baseline: str, *, resolution: int | None = None
) -> list[str]:
    """What is wrong with an L2A Sen2Cor made from ``l1c``; empty when it is complete.

    Checks the name matches the L1C (mission, orbit, tile, sensing time), ``MTD_MSIL2A.xml``
    is readable with level L2A and ``baseline``, and every band the platform reads, SCL and
    ``MSK_CLDPRB_20m`` are complete JPEG 2000 files.
    """
    try:
        name = ProductName.parse(safe.name)
    except ProductNameError as exc:
        return [str(exc)]
    problems = []
    expected = (l1c.mission, l1c.relative_orbit, l1c.tile or name.tile)
    if (name.level, name.mission, name.relative_orbit, name.tile) != ("L2A", *expected):
        problems.append(f"{safe.name} does not match L1C {l1c.id}")
    if l1c.tile is not None and name.sensing != l1c.sensing:
        problems.append(f"{safe.name} has sensing time {name.sensing:%Y%m%dT%H%M%S}")
    if not (safe / "MTD_MSIL2A.xml").is_file():
        return [*problems, "no MTD_MSIL2A.xml"]
    try:
        metadata = read_metadata(safe)
    except MetadataError as exc:
        return [*problems, str(exc)]
    if metadata.level != "L2A":
        problems.append(f"MTD_MSIL2A.xml says level {metadata.level}")
    if metadata.processing_baseline != baseline:
        problems.append(
            f"processing baseline {metadata.processing_baseline}, expected the L1C's {baseline}"
        )
    for path in _required_files(safe, metadata, resolution, problems):
        if (problem := jp2_problem(path)) is not None:
            problems.append(f"{path.relative_to(safe)}: {problem}")
    return problems


def _required_files(
    safe: Path, metadata: ProductMetadata, resolution: int | None, problems: list[str]
) -> list[Path]:
    folders = (20, 60) if resolution == 20 else (10, 20, 60)
    files = []
    for res in folders:
        for band in _REQUIRED_LAYERS[res]:
            try:
                files.append(safe / f"{metadata.image_file(band, res)}.jp2")
            except MetadataError:
                problems.append(f"{band}_{res}m not listed in MTD_MSIL2A.xml")
    masks = sorted(safe.glob("GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2"))
    if masks:
        files.append(masks[0])
    else:
        problems.append("no GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2")
    return files


def write_provenance(safe: Path, *, sen2cor_version: str, l1c_id: str, sen2cor_id: str) -> Path:
    """Write ``sen2chain_info.xml`` (root ``Sen2Chain_Report_File``) into ``safe``, atomically."""
    root = ET.Element("Sen2Chain_Report_File")
    for tag, value in (
        ("SEN2COR_VERSION", sen2cor_version),
        ("S2_ASSETS_VERSION", __version__),
        ("L1C_PRODUCT", l1c_id),
        ("SEN2COR_PRODUCT", sen2cor_id.removesuffix(".SAFE")),
        ("PROCESSING_DATE", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    ):
        ET.SubElement(root, tag).text = value
    ET.indent(root)
    path = safe / PROVENANCE_FILE
    partial = safe / f".{PROVENANCE_FILE}.part"
    partial.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
    os.replace(partial, path)
    return path


def read_provenance(safe: Path) -> dict[str, str]:
    """The fields of a product's ``sen2chain_info.xml``; empty when it has none.

    Raises:
        MetadataError: when the file exists but is not well-formed XML.
    """
    path = safe / PROVENANCE_FILE
    if not path.is_file():
        return {}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise MetadataError(f"{safe.name}/{PROVENANCE_FILE}: not well-formed XML ({exc})") from exc
    return {child.tag: (child.text or "").strip() for child in root}
