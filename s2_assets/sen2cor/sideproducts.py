"""Sen2Cor side products beside the cloud masks (sen2chain's ``copy_L2A_sideproducts``).

Copies an L2A's cloud probability (``MSK_CLDPRB_20m.jp2``) and scene classification
(``T<tile>_<YYYYMMDDTHHMMSS>_SCL_20m.jp2``) into ``CLOUDMASKS/<tile>/<L2A id>/`` under the
names sen2chain uses. Pure: no Dagster.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from s2_assets.errors import MetadataError
from s2_assets.products import band_path, qi_path, read_metadata

CLOUD_PROBABILITY = "MSK_CLDPRB_20m.jp2"
_SCL_RE = re.compile(r"^T\d{2}[A-Z]{3}_\d{8}T\d{6}_SCL_20m\.jp2$")


def side_product_sources(l2a_safe: Path) -> list[Path]:
    """The two files to copy out of an L2A: cloud probability 20 m, then SCL 20 m.

    Raises:
        MetadataError: naming the product when either file is missing or the SCL file is not
            named ``T<tile>_<YYYYMMDDTHHMMSS>_SCL_20m.jp2``.
    """
    metadata = read_metadata(l2a_safe)
    probability = qi_path(l2a_safe, CLOUD_PROBABILITY)
    scl = band_path(l2a_safe, metadata, "SCL", 20)
    if not scl.is_file():
        raise MetadataError(f"{l2a_safe.name}: {scl.relative_to(l2a_safe)} is listed but missing")
    if not _SCL_RE.match(scl.name):
        raise MetadataError(
            f"{l2a_safe.name}: SCL file {scl.name!r} is not named "
            "T<tile>_<YYYYMMDDTHHMMSS>_SCL_20m.jp2"
        )
    return [probability, scl]


def copy_side_products(l2a_safe: Path, dest_dir: Path) -> list[Path]:
    """Copy ``MSK_CLDPRB_20m.jp2`` and the ``SCL_20m`` file of an L2A into ``dest_dir``.

    Each copy is written beside its final name and renamed into place, so a reader never sees
    half a file; an existing copy is replaced.

    Args:
        l2a_safe: The unpacked L2A SAFE folder.
        dest_dir: Usually the library's ``CLOUDMASKS/<tile>/<L2A id>/``; created if missing.

    Returns:
        The copied files, cloud probability first.

    Raises:
        MetadataError: when the L2A lacks either file (nothing is copied then).
    """
    sources = side_product_sources(l2a_safe)
    dest_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for source in sources:
        final = dest_dir / source.name
        handle, partial_name = tempfile.mkstemp(prefix=f".{source.name}.", dir=dest_dir)
        os.close(handle)
        partial = Path(partial_name)
        try:
            shutil.copyfile(source, partial)
            os.chmod(partial, 0o644)
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        copied.append(final)
    return copied
