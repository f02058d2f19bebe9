"""Provenance records: sen2chain's shape, round trips, inheritance by masks and indices,
atomic writes, and reading records other writers left."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import blake3
import pytest

from s2_assets import __version__
from s2_assets.demo.products import product_name
from s2_assets.errors import MetadataError
from s2_assets.library.provenance import (
    Provenance,
    file_checksum,
    for_delivery,
    metadata_for,
    processing_version,
    read_record,
    record_outputs,
    record_path,
    write_record,
)
from s2_assets.library.tree import Library
from s2_assets_tests.conftest import DemoArchive

L2A_ID = "S2A_MSIL2A_20220130T063511_N0509_R120_T40KCB_20220130T091000"


@dataclass(frozen=True)
class Output:
    """The fields of a WrittenRaster that records need."""

    path: Path
    kind: str
    name: str
    mask_spec: str | None


def test_record_paths() -> None:
    assert record_path(Path(f"/l/{L2A_ID}.SAFE")) == Path(f"/l/{L2A_ID}.SAFE/sen2chain_info.xml")
    assert record_path(Path("/m/X_NDVI_CM001.tif")) == Path("/m/X_NDVI_CM001.xml")
    assert record_path(Path("/m/X_CM001.jp2")) == Path("/m/X_CM001.xml")


def test_delivered_l2a_round_trip_in_sen2chain_shape(tmp_path: Path) -> None:
    safe = tmp_path / f"{L2A_ID}.SAFE"
    safe.mkdir()
    record = for_delivery(
        L2A_ID, level="L2A", provider="cop_dataspace",
        checksums={"MD5": "ab12", "BLAKE3": "cd34"}, processing_version="01.02",
    )  # fmt: skip
    path = write_record(safe, record)
    assert path == safe / "sen2chain_info.xml"
    assert [p.name for p in safe.iterdir()] == ["sen2chain_info.xml"]  # no .part left

    root = ET.parse(path).getroot()
    assert root.tag == "Sen2Chain_Report_File"
    tags = [child.tag for child in root]
    assert tags[:3] == ["SEN2CHAIN_VERSION", "SEN2CHAIN_PROCESSING_VERSION", "SEN2COR_VERSION"]
    assert root.findtext("SEN2CHAIN_VERSION") == f"s2_assets {__version__}"
    assert root.findtext("SEN2CHAIN_PROCESSING_VERSION") == "01.02"
    assert root.findtext("SEN2COR_VERSION") == ""
    assert root.findtext("CHECKSUM") == "BLAKE3:cd34;MD5:ab12"

    back = read_record(safe)
    assert back is not None
    assert back.product_id == L2A_ID and back.kind == "L2A"
    assert back.provider == "cop_dataspace"
    assert back.checksum == "BLAKE3:cd34;MD5:ab12"
    assert back.processed.endswith("Z")
    assert back.as_metadata()["provider"] == "cop_dataspace"
    assert "sen2cor_version" not in back.as_metadata()  # empty fields are left out


def test_outputs_inherit_from_their_l2a_and_carry_their_own_checksum(tmp_path: Path) -> None:
    safe = tmp_path / f"{L2A_ID}.SAFE"
    safe.mkdir()
    write_record(
        safe,
        Provenance(product_id=L2A_ID, kind="L2A", provider="sen2cor", sen2cor_version="02.11.00",
                   source_product=L2A_ID.replace("L2A", "L1C"), checksum="MD5:ff"),
    )  # fmt: skip
    folder = tmp_path / "INDICES" / "NDVI"
    folder.mkdir(parents=True)
    mask = tmp_path / f"{L2A_ID}_CM001.tif"
    masked = folder / f"{L2A_ID}_NDVI_CM001.tif"
    mask.write_bytes(b"mask bytes")
    masked.write_bytes(b"index bytes")

    written = record_outputs(
        safe, [Output(mask, "mask", "CM001", None), Output(masked, "index", "NDVI", "CM001")]
    )
    assert written == [mask.with_suffix(".xml"), masked.with_suffix(".xml")]

    mask_record = read_record(mask)
    index_record = read_record(masked)
    assert mask_record is not None and index_record is not None
    assert (mask_record.kind, mask_record.mask_spec, mask_record.index) == (
        "CLOUDMASK",
        "CM001",
        "",
    )
    assert (index_record.kind, index_record.mask_spec, index_record.index) == (
        "INDEX", "CM001", "NDVI"
    )  # fmt: skip
    for record, path in ((mask_record, mask), (index_record, masked)):
        assert record.product_id == path.stem
        assert record.source_product == L2A_ID
        assert record.provider == "sen2cor"
        assert record.sen2cor_version == "02.11.00"
        assert record.source_checksum == "MD5:ff"
        assert record.checksum == f"BLAKE3:{blake3.blake3(path.read_bytes()).hexdigest()}"


def test_outputs_of_an_l2a_without_record_still_get_one(tmp_path: Path) -> None:
    safe = tmp_path / f"{L2A_ID}.SAFE"
    safe.mkdir()
    raw = tmp_path / f"{L2A_ID}_NDVI.tif"
    raw.write_bytes(b"x")
    record_outputs(safe, [Output(raw, "index", "NDVI", None)])
    record = read_record(raw)
    assert record is not None
    assert (record.source_product, record.provider, record.mask_spec) == (L2A_ID, "", "")
    assert record.checksum == file_checksum(raw)


def test_reads_sen2chain_and_sen2cor_runner_records(tmp_path: Path) -> None:
    """A record sen2chain wrote names no product and carries its own version; the Sen2Cor
    runner's names the L1C under another tag."""
    old = tmp_path / f"{L2A_ID}.SAFE"
    old.mkdir()
    (old / "sen2chain_info.xml").write_text(
        "<Sen2Chain_Report_File><SEN2CHAIN_VERSION>1.4.1</SEN2CHAIN_VERSION>"
        "<SEN2CHAIN_PROCESSING_VERSION>xx.xx</SEN2CHAIN_PROCESSING_VERSION>"
        "<SEN2COR_VERSION>02.10.01</SEN2COR_VERSION></Sen2Chain_Report_File>"
    )
    record = read_record(old)
    assert record is not None
    assert record.product_id == L2A_ID
    assert record.sen2cor_version == "02.10.01"
    assert record.software_version == ""
    assert record.extra["SEN2CHAIN_VERSION"] == "1.4.1"

    runner = tmp_path / "runner" / f"{L2A_ID}.SAFE"
    runner.mkdir(parents=True)
    (runner / "sen2chain_info.xml").write_text(
        "<Sen2Chain_Report_File><SEN2COR_VERSION>02.11.00</SEN2COR_VERSION>"
        "<S2_ASSETS_VERSION>0.1.0</S2_ASSETS_VERSION><L1C_PRODUCT>L1CID</L1C_PRODUCT>"
        "<SEN2COR_PRODUCT>S2A_X</SEN2COR_PRODUCT></Sen2Chain_Report_File>"
    )
    record = read_record(runner)
    assert record is not None
    assert (record.source_product, record.sen2cor_version) == ("L1CID", "02.11.00")
    assert record.extra == {"SEN2COR_PRODUCT": "S2A_X"}


def test_missing_and_broken_records(tmp_path: Path) -> None:
    product = tmp_path / "X_NDVI.tif"
    product.write_bytes(b"x")
    assert read_record(product) is None
    product.with_suffix(".xml").write_text("<Sen2Chain_Report_File>")
    with pytest.raises(MetadataError, match=r"X_NDVI\.xml: not well-formed"):
        read_record(product)
    product.with_suffix(".xml").write_text("<Other/>")
    with pytest.raises(MetadataError, match="root element is Other"):
        read_record(product)
    rows = metadata_for([product, tmp_path / "none.tif"])
    assert rows[0]["product"] == "X_NDVI.tif" and "root element" in rows[0]["problem"]
    assert rows[1] == {"product": "none.tif", "problem": "no provenance record"}


def test_processing_version_from_the_library_config(tmp_path: Path) -> None:
    assert processing_version(tmp_path) == "xx.xx"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.cfg").write_text(
        "[SEN2CHAIN VERSIONS]\nsen2chain_processing_version = 02.00\n"
    )
    assert processing_version(tmp_path) == "02.00"


def test_a_fetched_product_carries_its_record_in_the_library_and_metadata(
    demo_archive: DemoArchive, library: Library
) -> None:
    """``l1c``/``l2a`` write the record beside each product they fetch (here through their
    ``acquire`` step on the archive provider) and list it in the partition's metadata."""
    from s2_assets.assets.product_fetch import acquire
    from s2_assets.assets.products import partition_metadata
    from s2_assets.providers.archive import ArchiveProvider
    from s2_assets.resources.cdse import CdseResource
    from s2_assets.resources.providers import ArchiveResource, ProvidersResource

    demo = demo_archive.find(level="L2A", tile="40KCB", day="2022-01-20")
    (record,) = [
        r
        for r in ArchiveProvider(demo_archive.root, name="archive").search(
            "40KCB", "L2A", date(2022, 1, 20), date(2022, 1, 20)
        )
        if r.product_id == product_name(demo).id
    ]
    record = replace(record, checksums={"MD5": "00ff"})
    archive = ArchiveResource(root=str(demo_archive.root))
    providers = ProvidersResource(archive=archive, eodc=archive, cop_dataspace=CdseResource())
    assert acquire(record, library, providers)

    held = library.products("L2A", "40KCB", date(2022, 1, 20))
    saved = read_record(held[0].path)
    assert saved is not None
    assert (saved.product_id, saved.kind, saved.provider, saved.checksum) == (
        record.product_id, "L2A", "archive", "MD5:00ff"
    )  # fmt: skip
    rows = partition_metadata(held, [record.product_id], [], [])["provenance"].value  # type: ignore[attr-defined]
    assert rows == [saved.as_metadata()]
