"""A stand-in for ESA's Sen2Cor ``L2A_Process``, as reference/external-systems.md section 5
describes it: the same command line, the input-name mask, and a synthetic L2A SAFE derived
from the given L1C (same tile, sensing time, orbit and scene; baseline from
``--processing_baseline``, else ``99.99``; generation time now) written into ``--output_dir``.

``s2_assets_tests/bin/L2A_Process`` runs :func:`main`; tests reach it through a launcher that
uses the venv's Python (:func:`write_launcher`). Faults are switched by ``$S2_SEN2COR_MODE``:

- ``ok``: one good product, exit 0 (the default);
- ``fail``: exit 1, no output;
- ``empty``: exit 0 and the success line, no output;
- ``already``: exit 0, "already processed", no output (Sen2Cor maps ALREADY_PROCESSED to 0);
- ``crash``: a partial product (no R10m, cut MTD), a traceback, exit 1;
- ``truncated``: a product with a band cut short and one missing, exit 0;
- ``two``: two products, exit 0;
- ``hang``: starts a child, then both sleep far past any test timeout;
- ``stubborn``: as ``hang`` but both ignore SIGTERM;
- ``orphan``: a good product, exit 0, leaving a sleeping child behind.

Child and own pids go to ``$S2_SEN2COR_PIDFILE`` (one per line) so tests can check they died.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

MODE_VAR = "S2_SEN2COR_MODE"
PIDFILE_VAR = "S2_SEN2COR_PIDFILE"
MODES = (
    "ok", "fail", "empty", "already", "crash", "truncated", "two", "hang", "stubborn", "orphan",
)  # fmt: skip
STANDIN = Path(__file__).resolve().parent / "bin" / "L2A_Process"
_INPUT_MASK = re.compile(r"^S2[A-D]_(MSIL1C|OPER_PRD_MSIL1C).*\.SAFE$")
_SLEEPER = "import signal, time\n{ignore}time.sleep(600)\n"


def write_launcher(folder: Path) -> Path:
    """Write ``<folder>/L2A_Process``, a launcher running the stand-in with this Python."""
    folder.mkdir(parents=True, exist_ok=True)
    launcher = folder / "L2A_Process"
    launcher.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(STANDIN))} "$@"\n'
    )
    launcher.chmod(0o755)
    return launcher


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="L2A_Process", description="Sen2Cor stand-in")
    parser.add_argument("--mode", choices=("generate_datastrip", "process_tile"))
    parser.add_argument("--resolution", type=int, choices=(10, 20, 60))
    for name in ("--datastrip", "--tile", "--output_dir", "--work_dir"):
        parser.add_argument(name)
    for name in ("--img_database_dir", "--res_database_dir"):
        parser.add_argument(name)
    for name in ("--processing_centre", "--archiving_centre", "--processing_baseline"):
        parser.add_argument(name)
    for flag in ("--raw", "--tif", "--sc_only", "--cr_only", "--debug"):
        parser.add_argument(flag, action="store_true")
    for name in ("--GIP_L2A", "--GIP_L2A_SC", "--GIP_L2A_AC", "--GIP_L2A_PB"):
        parser.add_argument(name)
    parser.add_argument("input_dir")
    return parser


def _say(percent: float, text: str) -> None:
    print(f"Progress[%]: {percent:6.2f} : {text}", flush=True)


def _record_pids(*pids: int) -> None:
    if path := os.environ.get(PIDFILE_VAR):
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("".join(f"{pid}\n" for pid in pids))


def _sleeper(*, ignore_term: bool) -> int:
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else ""
    # Same process group as us: exactly what a Sen2Cor worker pool looks like.
    child = subprocess.Popen([sys.executable, "-c", _SLEEPER.format(ignore=ignore)])
    return child.pid


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in; the return value is the exit code."""
    args = _parser().parse_args(argv)
    mode = os.environ.get(MODE_VAR, "ok")
    if mode not in MODES:
        print(f"stand-in: {MODE_VAR}={mode!r} is not one of {', '.join(MODES)}", file=sys.stderr)
        return 1
    input_dir = Path(args.input_dir.rstrip("/"))
    if not _INPUT_MASK.match(input_dir.name) or not input_dir.is_dir():
        print(f"Product {input_dir.name} does not match S2?_MSIL1C*.SAFE", flush=True)
        return 1
    for gipp in (args.GIP_L2A, args.GIP_L2A_SC, args.GIP_L2A_AC, args.GIP_L2A_PB):
        if gipp and not Path(gipp).is_file():
            print(f"GIPP file {gipp} not found", flush=True)
            return 1
    _say(0, f"Sen2Cor stand-in ({mode}) on {input_dir.name}")
    if mode == "fail":
        print("ERROR: L2A processing failed", flush=True)
        _say(100, "Application terminated with at least one error.")
        return 1
    if mode in ("hang", "stubborn"):
        if mode == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _record_pids(os.getpid(), _sleeper(ignore_term=mode == "stubborn"))
        _say(5, "processing")
        time.sleep(600)
        return 0
    if mode in ("empty", "already"):
        if mode == "already":
            print("L2A product already processed.", flush=True)
        _say(100, "Application terminated successfully.")
        return 0
    output_dir = Path(args.output_dir) if args.output_dir else input_dir.parent
    baseline = args.processing_baseline or "99.99"
    now = datetime.now(UTC).replace(microsecond=0)
    product = _write_l2a(input_dir, output_dir, baseline, now)
    _say(60, "L2A product written")
    if mode == "two":
        _write_l2a(input_dir, output_dir, baseline, now + timedelta(seconds=1))
    elif mode == "crash":
        shutil.rmtree(next(product.glob("GRANULE/*/IMG_DATA/R10m")))
        mtd = product / "MTD_MSIL2A.xml"
        mtd.write_bytes(mtd.read_bytes()[:200])
        print("Traceback (most recent call last):\nMemoryError", flush=True)
        return 1
    elif mode == "truncated":
        band = next(product.glob("GRANULE/*/IMG_DATA/R20m/*_B11_20m.jp2"))
        band.write_bytes(band.read_bytes()[: band.stat().st_size // 2])
        next(product.glob("GRANULE/*/IMG_DATA/R10m/*_B08_10m.jp2")).unlink()
    elif mode == "orphan":
        _record_pids(_sleeper(ignore_term=False))
    _say(100, "Application terminated successfully.")
    return 0


def _write_l2a(input_dir: Path, output_dir: Path, baseline: str, generated: datetime) -> Path:
    """Build the L2A of ``input_dir`` under Sen2Cor's name for it; return its path."""
    import rasterio

    from s2_assets.demo.products import build_safe
    from s2_assets.products import ProductName, band_path, read_metadata

    metadata = read_metadata(input_dir)
    l1c = ProductName.parse(metadata.product_uri)
    if l1c.tile is None:
        raise SystemExit("stand-in: legacy multi-tile L1C are not supported")
    with rasterio.open(band_path(input_dir, metadata, "B02")) as band:
        size = band.width
    # Build aside (the demo names products after their sensing time), then take Sen2Cor's name.
    building = output_dir / f".standin-{generated:%Y%m%dT%H%M%S}"
    built = build_safe(
        building,
        level="L2A",
        tile=l1c.tile,
        sensing=l1c.sensing,
        baseline=baseline,
        relative_orbit=l1c.relative_orbit,
        mission=l1c.mission,
        size=size,
        cloud_cover=metadata.cloud_cover if metadata.cloud_cover is not None else 20.0,
    )
    name = ProductName.parse(built.name)
    final_id = name.id.rsplit("_", 1)[0] + f"_{generated:%Y%m%dT%H%M%S}"
    _rename_in_metadata(built, old_id=name.id, new_id=final_id, generated=generated)
    final = output_dir / f"{final_id}.SAFE"
    os.replace(built, final)
    shutil.rmtree(building)
    return final


def _rename_in_metadata(safe: Path, *, old_id: str, new_id: str, generated: datetime) -> None:
    """Point PRODUCT_URI and GENERATION_TIME at the new name, and keep the manifest true."""
    mtd = safe / "MTD_MSIL2A.xml"
    text = mtd.read_text(encoding="utf-8").replace(old_id, new_id)
    text = re.sub(
        r"<GENERATION_TIME>[^<]*</GENERATION_TIME>",
        f"<GENERATION_TIME>{generated:%Y-%m-%dT%H:%M:%S}.000000Z</GENERATION_TIME>",
        text,
    )
    mtd.write_text(text, encoding="utf-8")
    content = mtd.read_bytes()
    manifest = safe / "manifest.safe"
    entry = re.compile(
        r'size="\d+"(><fileLocation locatorType="URL" href="\./MTD_MSIL2A\.xml"/>'
        r'<checksum checksumName="SHA3-256">)[0-9a-f]+<'
    )
    replacement = rf'size="{len(content)}"\g<1>{hashlib.sha3_256(content).hexdigest()}<'
    manifest.write_text(entry.sub(replacement, manifest.read_text(encoding="utf-8")), "utf-8")
