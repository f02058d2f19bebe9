"""SHA-256 of every file a representative mask + index run writes, to prove a change exact.

    python -m benchmarks.checksums --manifest before.json            # record
    python -m benchmarks.checksums --manifest before.json --check    # compare, exit 1 on change

Runs ``compute_cloud_masks`` (CM001, CM002-B11, CM003, CM004; COG and JPEG2000) and
``compute_indices`` (all 12 indices, raw and masked by two masks; COG, plus JPEG2000 on a
small product) on demo products: one of ``--size`` pixels a side (overviews at 10 and 20 m),
one of 60 (a single tile), and, with ``--safe``, any L2A (say the benchmark's textured
one). The manifest maps each output (relative path) to the SHA-256 of its bytes, of its
quicklook PNG and of its statistics, so a faster writer that changes a single byte, a
statistic or a quicklook pixel shows up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from s2_assets.demo.products import build_safe
from s2_assets.products import read_metadata
from s2_assets.raster.product_indices import compute_indices
from s2_assets.raster.product_masks import compute_cloud_masks
from s2_assets.raster.types import WrittenRaster
from s2_assets.specs import INDEX_NAMES

SPECS = ("CM001", "CM002-B11", "CM003-PRB60-ITER3", "CM004-CSH1-CMP1-CHP1-TCI1-ITER2")
_SENSING = datetime(2024, 3, 5, 6, 35, 11, tzinfo=UTC)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record(written: list[WrittenRaster], root: Path, manifest: dict[str, dict[str, str]]) -> None:
    for raster in written:
        key = str(raster.path.relative_to(root))
        manifest[key] = {
            "file": _sha(raster.path.read_bytes()),
            "quicklook": _sha(raster.quicklook_png),
            "statistics": _sha(json.dumps(asdict(raster.statistics), sort_keys=True).encode()),
        }
        sidecar = raster.path.with_name(raster.path.name + ".aux.xml")
        if sidecar.exists():
            manifest[key + ".aux.xml"] = {"file": _sha(sidecar.read_bytes())}


def run_product(safe: Path, root: Path, *, formats: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Every mask and index of one L2A in each format; the manifest of what was written."""
    metadata = read_metadata(safe)
    manifest: dict[str, dict[str, str]] = {}
    product = metadata.product_uri
    for fmt in formats:
        out = root / fmt
        masks = compute_cloud_masks(
            product_id=product, safe_dir=safe, side_products=None, metadata=metadata,
            specs=SPECS, out_dir=out / "CLOUDMASKS", fmt=fmt,
        )  # fmt: skip
        _record(masks, root, manifest)
        chosen = {m.name: m.path for m in masks if m.name in (SPECS[0], SPECS[3])}
        indices = compute_indices(
            product_id=product, safe_dir=safe, metadata=metadata, indices=INDEX_NAMES,
            masks=chosen, out_dir_for=lambda name, out=out: out / "INDICES" / name, fmt=fmt,
        )  # fmt: skip
        _record(indices, root, manifest)
    return manifest


def run(size: int, safe: Path | None, scratch: Path) -> dict[str, dict[str, str]]:
    """The manifest of the whole representative run, keys prefixed by product."""
    products: list[tuple[str, Path, tuple[str, ...]]] = [
        ("demo_60", build_safe(scratch / "p60", level="L2A", sensing=_SENSING, size=60), ("tif", "jp2")),
        ("demo_big", build_safe(scratch / "pbig", level="L2A", sensing=_SENSING, size=size, seed=5), ("tif",)),
    ]  # fmt: skip
    if safe is not None:
        products.append(("given", safe, ("tif",)))
    manifest: dict[str, dict[str, str]] = {}
    for label, product, formats in products:
        out = scratch / f"out_{label}"
        for key, value in run_product(product, out, formats=formats).items():
            manifest[f"{label}/{key}"] = value
    return dict(sorted(manifest.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--manifest", type=Path, required=True, help="JSON manifest to write or check"
    )
    parser.add_argument("--check", action="store_true", help="compare with the manifest instead")
    parser.add_argument(
        "--size", type=int, default=1236, help="pixels a side of the big demo product"
    )
    parser.add_argument("--safe", type=Path, help="also run this L2A (e.g. the benchmark's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="s2sums-") as scratch:
        manifest = run(args.size, args.safe, Path(scratch))
    if not args.check:
        args.manifest.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        print(f"{len(manifest)} outputs recorded in {args.manifest}")
        return 0
    expected = json.loads(args.manifest.read_text(encoding="utf-8"))
    changed = sorted(
        k for k in expected.keys() | manifest.keys() if expected.get(k) != manifest.get(k)
    )
    for key in changed:
        print(f"changed: {key}: {expected.get(key)} -> {manifest.get(key)}", file=sys.stderr)
    print(f"{len(manifest)} outputs, {len(changed)} changed")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
