"""Provenance records: where each product came from, written beside it and read back. Pure.

Every SAFE carries ``sen2chain_info.xml`` and every mask or index file a ``<stem>.xml`` beside
it, in sen2chain's shape (root ``Sen2Chain_Report_File``; ``SEN2CHAIN_VERSION``,
``SEN2CHAIN_PROCESSING_VERSION``, ``SEN2COR_VERSION``), so sen2chain's readers still find their
three values. We add what sen2chain never recorded: the provider, the product id, the
source product, a checksum, the mask spec, the index and our own version. As sen2chain does,
masks and indices inherit the Sen2Cor version (and here also the provider) from their L2A.

``SEN2CHAIN_VERSION`` holds ``s2_assets <version>``: the software that wrote the product, which
is what sen2chain meant by it; ``S2_ASSETS_VERSION`` holds the bare version.
"""

from __future__ import annotations

import configparser
import os
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import blake3

from s2_assets import __version__
from s2_assets.errors import MetadataError

SAFE_RECORD = "sen2chain_info.xml"
ROOT_TAG = "Sen2Chain_Report_File"
# sen2chain's default when its config names no processing version.
DEFAULT_PROCESSING_VERSION = "xx.xx"
KINDS = ("L1C", "L2A", "CLOUDMASK", "INDEX")
# Extra tag: the backfill (else run) that fetched or computed a SAFE; the -new remove rules
# remove only products of their own run.
RUN_TAG = "S2_ASSETS_RUN"

# Field -> XML tag, in the order written. The first three are sen2chain's own tags.
_TAGS = {
    "software": "SEN2CHAIN_VERSION",
    "processing_version": "SEN2CHAIN_PROCESSING_VERSION",
    "sen2cor_version": "SEN2COR_VERSION",
    "software_version": "S2_ASSETS_VERSION",
    "product_id": "PRODUCT_ID",
    "kind": "PRODUCT_KIND",
    "provider": "PROVIDER",
    "source_product": "SOURCE_PRODUCT",
    "checksum": "CHECKSUM",
    "source_checksum": "SOURCE_CHECKSUM",
    "mask_spec": "MASK_SPEC",
    "index": "INDEX",
    "processed": "PROCESSING_DATE",
}
# Tags other writers used for the same fields (the Sen2Cor runner's record of a computed L2A).
_ALIASES = {"L1C_PRODUCT": "source_product"}


@dataclass(frozen=True)
class Provenance:
    """Where one product came from.

    Attributes:
        product_id: The L1C/L2A id, or the mask/index file stem (``<L2A id>_NDVI_CM001``).
        kind: ``L1C``, ``L2A``, ``CLOUDMASK`` or ``INDEX``.
        provider: Who delivered the SAFE (``archive``, ``eodc``, ``cop_dataspace``), or
            ``sen2cor`` for an L2A computed here; masks and indices inherit their L2A's.
        source_product: The L1C a Sen2Cor L2A was made from; the L2A of a mask or index.
        checksum: ``ALG:hex`` of what the provider delivered (several joined by ``;``), or the
            BLAKE3 of the file itself for masks and indices.
        source_checksum: The source product's ``checksum``, when it has one.
        sen2cor_version: The Sen2Cor that made the L2A (``02.11.00``); empty when unknown
            (a downloaded L2A was made by ESA's processor, which the SAFE itself names).
        mask_spec: The cloud-mask spec of a mask or masked index.
        index: The index name of an index file.
        processing_version: sen2chain's ``sen2chain_processing_version`` from the library's
            config, ``xx.xx`` by default.
        software_version: The s2_assets version that wrote the product.
        processed: When the record was written, ISO 8601 UTC.
        extra: Tags of the file we do not know, kept as read.
    """

    product_id: str
    kind: str
    provider: str = ""
    source_product: str = ""
    checksum: str = ""
    source_checksum: str = ""
    sen2cor_version: str = ""
    mask_spec: str = ""
    index: str = ""
    processing_version: str = DEFAULT_PROCESSING_VERSION
    software_version: str = __version__
    processed: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def software(self) -> str:
        return f"s2_assets {self.software_version}"

    def as_metadata(self) -> dict[str, str]:
        """The non-empty fields as plain strings, for Dagster materialization metadata."""
        values = {name: getattr(self, name) for name in _TAGS if name != "software"}
        return {name: str(value) for name, value in values.items() if value}


class OutputLike(Protocol):
    """What :func:`record_outputs` needs of a written mask or index (``WrittenRaster``)."""

    @property
    def path(self) -> Path: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def mask_spec(self) -> str | None: ...


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_path(product: Path) -> Path:
    """Where the record of ``product`` lives: inside a SAFE folder, else ``<stem>.xml`` beside
    the file (``X_NDVI.tif`` -> ``X_NDVI.xml``, as sen2chain names it)."""
    if product.suffix.upper() == ".SAFE" or product.is_dir():
        return product / SAFE_RECORD
    return product.with_suffix(".xml")


def file_checksum(path: Path) -> str:
    """``BLAKE3:<hex>`` of a file, read in 1 MiB chunks."""
    hasher = blake3.blake3()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            hasher.update(chunk)
    return f"BLAKE3:{hasher.hexdigest()}"


def processing_version(library_root: Path) -> str:
    """``[SEN2CHAIN VERSIONS] sen2chain_processing_version`` of the library's
    ``config/config.cfg``; ``xx.xx`` (sen2chain's default) when absent or unreadable."""
    parser = configparser.ConfigParser()
    try:
        parser.read(library_root / "config" / "config.cfg")
    except configparser.Error:
        return DEFAULT_PROCESSING_VERSION
    value = parser.get("SEN2CHAIN VERSIONS", "sen2chain_processing_version", fallback="")
    return value.strip() or DEFAULT_PROCESSING_VERSION


def for_delivery(
    product_id: str,
    *,
    level: str,
    provider: str,
    checksums: Mapping[str, str],
    processing_version: str = DEFAULT_PROCESSING_VERSION,
) -> Provenance:
    """The record of a SAFE a provider delivered (``checksums``: algorithm -> hex)."""
    return Provenance(
        product_id=product_id,
        kind=level,
        provider=provider,
        checksum=";".join(f"{alg}:{value}" for alg, value in sorted(checksums.items())),
        processing_version=processing_version,
    )


def for_output(
    parent: Provenance | None, output: OutputLike, *, l2a_id: str, content: Path | None = None
) -> Provenance:
    """The record of a mask or index file made from an L2A whose record is ``parent``;
    ``content`` is where its bytes are when not yet at ``output.path``."""
    parent = parent or Provenance(product_id=l2a_id, kind="L2A")
    return Provenance(
        product_id=output.path.stem,
        kind="CLOUDMASK" if output.kind == "mask" else "INDEX",
        provider=parent.provider,
        source_product=l2a_id,
        checksum=file_checksum(content or output.path),
        source_checksum=parent.checksum,
        sen2cor_version=parent.sen2cor_version,
        mask_spec=(output.name if output.kind == "mask" else output.mask_spec) or "",
        index=output.name if output.kind == "index" else "",
        processing_version=parent.processing_version,
    )


def to_xml(record: Provenance) -> bytes:
    """The record as sen2chain-shaped XML bytes (UTF-8, with declaration)."""
    root = ET.Element(ROOT_TAG)
    stamped = record if record.processed else replace(record, processed=now_text())
    for name, tag in _TAGS.items():
        value = getattr(stamped, name)
        if value or name in ("software", "processing_version", "sen2cor_version"):
            # sen2chain's three tags are always present, even empty, for its readers.
            ET.SubElement(root, tag).text = str(value)
    for tag, value in stamped.extra.items():
        ET.SubElement(root, tag).text = value
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def from_xml(content: bytes, *, source: str) -> Provenance:
    """Parse record XML; ``source`` names the file in errors.

    Raises:
        MetadataError: not well-formed, not a ``Sen2Chain_Report_File``, or without a product.
    """
    try:
        root = ET.fromstring(content)
    except ET.ParseError as exc:
        raise MetadataError(f"{source}: not well-formed XML ({exc})") from exc
    if root.tag != ROOT_TAG:
        raise MetadataError(f"{source}: root element is {root.tag}, expected {ROOT_TAG}")
    by_tag = {tag: name for name, tag in _TAGS.items()}
    values: dict[str, str] = {}
    extra: dict[str, str] = {}
    for child in root:
        text = (child.text or "").strip()
        name = by_tag.get(child.tag) or _ALIASES.get(child.tag)
        if name is None:
            extra[child.tag] = text
        elif name == "software":
            continue  # derived from software_version; a sen2chain file's own is kept below
        else:
            values[name] = text
    if "S2_ASSETS_VERSION" not in {child.tag for child in root}:
        # Written by sen2chain itself: keep its version rather than claim it as ours.
        extra["SEN2CHAIN_VERSION"] = (root.findtext("SEN2CHAIN_VERSION") or "").strip()
        values.setdefault("software_version", "")
    return Provenance(
        product_id=values.pop("product_id", ""),
        kind=values.pop("kind", ""),
        extra=extra,
        **values,
    )


def write_record(product: Path, record: Provenance) -> Path:
    """Write ``record`` beside (or inside) ``product``: to a hidden ``.part`` name, then one
    rename, so a reader sees the old record or the new one, never half of one."""
    path = record_path(product)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        partial.write_bytes(to_xml(record))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_record(product: Path) -> Provenance | None:
    """The record of ``product``, or None when it has none.

    Raises:
        MetadataError: the record exists but cannot be read.
    """
    path = record_path(product)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read provenance ({exc})") from exc
    record = from_xml(content, source=str(path))
    if not record.product_id:
        # sen2chain's records name no product: the file's place does.
        name = product.name.removesuffix(".SAFE") if path.name == SAFE_RECORD else product.stem
        record = replace(record, product_id=name)
    return record


class OutputRecorder:
    """Writes the record of each mask or index file made from ``l2a_safe`` while the file is
    still under its hidden name, before it is renamed into place (the raster writers call it
    then): the record is in place whenever the file is, so a writer killed between the two
    writes leaves at most a record whose file is missing, which the next run writes again,
    never a file without its record that every later run would take as complete.

    The L2A's record (read once) gives what the outputs inherit, as in :func:`record_outputs`.
    """

    def __init__(self, l2a_safe: Path) -> None:
        self.l2a_id = l2a_safe.name.removesuffix(".SAFE")
        try:
            self.parent = read_record(l2a_safe)
        except MetadataError:
            self.parent = None  # an unreadable parent record must not stop its outputs' records

    def __call__(self, output: OutputLike, content: Path) -> None:
        write_record(
            output.path, for_output(self.parent, output, l2a_id=self.l2a_id, content=content)
        )


def record_outputs(l2a_safe: Path, outputs: Iterable[OutputLike]) -> list[Path]:
    """Write the record of every mask or index file in ``outputs``, made from ``l2a_safe``
    and already in place (new files get theirs before, from :class:`OutputRecorder`).

    The L2A's own record (when it has one) gives the provider, Sen2Cor version and
    checksum the outputs inherit. Returns the record files written.
    """
    recorder = OutputRecorder(l2a_safe)
    written = []
    for output in outputs:
        recorder(output, output.path)
        written.append(record_path(output.path))
    return written


def metadata_for(products: Iterable[Path]) -> list[dict[str, str]]:
    """The records of ``products`` as metadata rows; a product without a readable record
    gets a row saying so, so the UI shows the gap."""
    rows = []
    for product in products:
        try:
            record = read_record(product)
        except MetadataError as exc:
            rows.append({"product": product.name, "problem": str(exc)})
            continue
        if record is None:
            rows.append({"product": product.name, "problem": "no provenance record"})
        else:
            rows.append(record.as_metadata())
    return rows
