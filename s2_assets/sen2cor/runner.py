"""Sen2Cor (ESA's ``L2A_Process``): pick an installation, build its command, run it, check it.

Pure: no Dagster. The flow for one L1C is :func:`run_sen2cor`: choose the installation from
the L1C's processing baseline (sen2chain's rule), run Sen2Cor as an argument list in a fresh
scratch folder, in its own process group that dies with the run whatever ends it
(``s2_assets.sen2cor.procgroup``: timeout, parent-death signal, watchdog), then
check what it wrote instead of trusting its exit code, rename the product as sen2chain names
locally made L2A and add a provenance record. The caller publishes the returned SAFE.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from s2_assets.errors import ProductNameError, Sen2CorError
from s2_assets.products import ProductName, read_metadata
from s2_assets.sen2cor.output import validate_l2a, write_provenance
from s2_assets.sen2cor.procgroup import ProcessStartError, run_in_own_group

Version = tuple[int, int, int]

_VERSION_RE = re.compile(r"Sen2Cor-(\d{2}\.\d{2}\.\d{2})")
_BASELINE_RE = re.compile(r"^\d{2}\.\d{2}$")
# 02.08 is the oldest version sen2chain runs with one call and --processing_baseline; 02.05.05
# needed two calls (20 m then 10 m) as a crash workaround, which we do not reproduce.
MIN_VERSION: Version = (2, 8, 0)
# From baseline 04.00 on, L1C carry a radiometric offset that only Sen2Cor >= 02.10.01 handles.
OFFSET_VERSION: Version = (2, 10, 1)
RESOLUTIONS = (10, 20)
# Arguments we set ourselves, or that switch Sen2Cor out of single-product mode.
RESERVED_ARGS = (
    "--output_dir",
    "--processing_baseline",
    "--resolution",
    "--GIP_L2A",
    "--mode",
    "--tile",
    "--datastrip",
)
# Sourcing the bashrc must not see our arguments, and none of them is ever parsed by the shell:
# they arrive as "$@" and are handed to L2A_Process untouched.
_BASHRC_SCRIPT = (
    'bashrc="$1"; shift; args=("$@"); set --; source "$bashrc" && exec L2A_Process "${args[@]}"'
)
SCRATCH_PREFIX = "sen2cor-"
_LOG_TAIL_LINES = 30
_L2A_RE = re.compile(r"MSIL2A.*\.SAFE$")


def parse_version(text: str, *, source: str) -> Version:
    """``'02.12.03'`` -> ``(2, 12, 3)``; ``source`` names where the text came from.

    Raises:
        Sen2CorError: when the text is not ``XX.YY.ZZ``.
    """
    parts = text.strip().split(".")
    if len(parts) != 3 or not all(len(p) == 2 and p.isdigit() for p in parts):
        raise Sen2CorError(f"{source}: Sen2Cor version {text!r} is not of the form XX.YY.ZZ")
    return int(parts[0]), int(parts[1]), int(parts[2])


def format_version(version: Version) -> str:
    """``(2, 12, 3)`` -> ``'02.12.03'``."""
    return ".".join(f"{part:02d}" for part in version)


@dataclass(frozen=True)
class Sen2CorInstall:
    """One usable Sen2Cor: an ``L2A_Process`` executable, or an ``L2A_Bashrc`` to source."""

    path: Path
    version: Version
    via_bashrc: bool

    @property
    def version_text(self) -> str:
        return format_version(self.version)

    def describe(self) -> str:
        return f"Sen2Cor {self.version_text} at {self.path}"


def discover_install(path: str | Path, version: str | None = None) -> Sen2CorInstall:
    """Resolve a configured installation: an ``L2A_Bashrc``, an ``L2A_Process`` executable,
    a command name on ``PATH``, or an install folder holding ``L2A_Bashrc`` or ``bin/L2A_Process``.

    The version is ``version`` when given, else read from ``Sen2Cor-XX.YY.ZZ`` in the path
    (as ESA's installer names its folder), also after following symlinks.

    Raises:
        Sen2CorError: naming the path when it is missing, not executable, of unknown version,
            or older than the oldest supported version.
    """
    text = str(path).strip()
    candidate = Path(text).expanduser()
    if "/" not in text and not candidate.exists():
        found = shutil.which(text)
        if found is None:
            raise Sen2CorError(f"Sen2Cor installation {text!r}: no such command on PATH")
        candidate = Path(found)
    if candidate.is_dir():
        options = (candidate / "L2A_Bashrc", candidate / "bin" / "L2A_Process")
        chosen = next((p for p in options if p.is_file()), None)
        if chosen is None:
            raise Sen2CorError(
                f"Sen2Cor installation {text!r}: folder has neither L2A_Bashrc nor bin/L2A_Process"
            )
        candidate = chosen
    if not candidate.is_file():
        raise Sen2CorError(
            f"Sen2Cor installation {text!r}: not found; give the path of L2A_Bashrc, of "
            "L2A_Process, or of the install folder"
        )
    via_bashrc = candidate.name == "L2A_Bashrc"
    if not via_bashrc and not os.access(candidate, os.X_OK):
        raise Sen2CorError(f"Sen2Cor installation {text!r}: {candidate} is not executable")
    if version is not None:
        parsed = parse_version(version, source=f"Sen2Cor installation {text!r}")
    else:
        match = _VERSION_RE.search(str(candidate)) or _VERSION_RE.search(str(candidate.resolve()))
        if match is None:
            raise Sen2CorError(
                f"Sen2Cor installation {text!r}: no 'Sen2Cor-XX.YY.ZZ' in its path; "
                "set its version explicitly"
            )
        parsed = parse_version(match[1], source=f"Sen2Cor installation {text!r}")
    if parsed < MIN_VERSION:
        raise Sen2CorError(
            f"Sen2Cor installation {text!r}: version {format_version(parsed)} is not supported; "
            f"valid: {format_version(MIN_VERSION)} or newer"
        )
    return Sen2CorInstall(path=candidate.absolute(), version=parsed, via_bashrc=via_bashrc)


def _baseline_tuple(baseline: str) -> tuple[int, int]:
    if not _BASELINE_RE.match(baseline):
        raise Sen2CorError(f"processing baseline {baseline!r} is not of the form NN.NN")
    major, minor = baseline.split(".")
    return int(major), int(minor)


def choose_install(installs: Sequence[Sen2CorInstall], baseline: str) -> Sen2CorInstall:
    """The installation sen2chain intends for an L1C of processing ``baseline`` (``'05.10'``).

    Baseline >= 04.00: the newest installed >= 02.10.01 (older ones ignore the offset);
    02.06 <= baseline < 04.00: the newest installed; below 02.06: the newest < 02.10.01.
    Among equal versions the first configured wins.

    Raises:
        Sen2CorError: when no installation fits, naming the baseline, the rule and the
            installed versions.
    """
    pb = _baseline_tuple(baseline)
    if pb >= (4, 0):
        rule = f">= {format_version(OFFSET_VERSION)}"
        fits = [i for i in installs if i.version >= OFFSET_VERSION]
    elif pb >= (2, 6):
        rule = "any"
        fits = list(installs)
    else:
        rule = f"< {format_version(OFFSET_VERSION)}"
        fits = [i for i in installs if i.version < OFFSET_VERSION]
    if not fits:
        have = ", ".join(i.version_text for i in installs) or "none"
        raise Sen2CorError(
            f"no Sen2Cor installation fits processing baseline {baseline}: it needs a version "
            f"{rule}; installed: {have}"
        )
    best = max(i.version for i in fits)
    return next(i for i in fits if i.version == best)


def check_extra_args(extra_args: Sequence[str]) -> None:
    """Refuse extra arguments that would override ours or leave single-product mode.

    argparse accepts unambiguous abbreviations (``--output`` = ``--output_dir``), so those are
    refused as well.

    Raises:
        Sen2CorError: naming the argument and the reserved ones.
    """
    for arg in extra_args:
        name = arg.split("=", 1)[0]
        if (
            len(name) > 2
            and name.startswith("--")
            and any(r.startswith(name) for r in RESERVED_ARGS)
        ):
            raise Sen2CorError(
                f"Sen2Cor extra argument {arg!r} is reserved; set resolution and gipp in the "
                f"resource instead. Reserved: {', '.join(RESERVED_ARGS)}"
            )


def build_command(
    install: Sen2CorInstall,
    l1c_safe: Path,
    output_dir: Path,
    *,
    processing_baseline: str,
    resolution: int | None = None,
    gipp: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argument list that runs ``install`` on one L1C (never a shell string).

    Raises:
        Sen2CorError: on an invalid resolution or a reserved extra argument.
    """
    if resolution is not None and resolution not in RESOLUTIONS:
        raise Sen2CorError(
            f"Sen2Cor resolution {resolution} is not valid: valid are {RESOLUTIONS} or none "
            "(10 and 20 m); 60 m alone has no SCL_20m or MSK_CLDPRB_20m for the cloud masks"
        )
    check_extra_args(extra_args)
    args: list[str] = []
    if resolution is not None:
        args += ["--resolution", str(resolution)]
    if gipp is not None:
        args += ["--GIP_L2A", str(gipp)]
    args += ["--processing_baseline", processing_baseline, "--output_dir", str(output_dir)]
    args += [*extra_args, str(l1c_safe)]
    if install.via_bashrc:
        return ["bash", "-c", _BASHRC_SCRIPT, "sen2cor", str(install.path), *args]
    return [str(install.path), *args]


@dataclass(frozen=True)
class Sen2CorSettings:
    """How to run Sen2Cor: options passed on, and limits (seconds)."""

    resolution: int | None = None
    gipp: Path | None = None
    extra_args: tuple[str, ...] = ()
    timeout_s: float = 7200.0
    kill_grace_s: float = 30.0


def run_sen2cor(
    l1c_safe: Path,
    scratch_root: Path,
    installs: Sequence[Sen2CorInstall],
    settings: Sen2CorSettings | None = None,
    *,
    logger: logging.Logger | None = None,
    hold_fds: Sequence[int] = (),
) -> Path:
    """Make the L2A of one unpacked L1C SAFE with Sen2Cor; return the finished SAFE.

    The result is ``<scratch_root>/sen2cor-<...>/<L2A id>.SAFE`` (sen2chain's local L2A
    name: the L1C name with ``L1C_`` -> ``L2A_``), with ``sen2chain_info.xml`` inside; the
    folder around it holds nothing else. ``scratch_root`` must be on the library's filesystem
    so the caller can publish it with one rename, and is the caller's to remove.
    ``hold_fds`` (a Sen2Cor slot lock) are inherited by Sen2Cor, so an orphaned Sen2Cor
    still holds its slot (``s2_assets.sen2cor.procgroup``).

    Raises:
        Sen2CorError: the input is not an L1C, no installation fits, Sen2Cor failed or timed
            out, or its output is not one complete L2A. Nothing is left in ``scratch_root``.
        MetadataError: the L1C's metadata is unreadable.
    """
    settings = settings or Sen2CorSettings()
    log = logger or logging.getLogger(__name__)
    # Sen2Cor runs in its own work folder: every path it gets must be absolute.
    l1c_safe, scratch_root = l1c_safe.absolute(), scratch_root.absolute()
    l1c_name, baseline = _check_input(l1c_safe)
    install = choose_install(installs, baseline)
    if settings.gipp is not None and not settings.gipp.is_file():
        raise Sen2CorError(f"Sen2Cor GIPP file {settings.gipp} does not exist")
    target = l1c_name.as_level("L2A")
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{l1c_name.id}-", dir=scratch_root))
    try:
        out, work, log_path = scratch / "out", scratch / "work", scratch / "sen2cor.log"
        out.mkdir()
        work.mkdir()
        argv = build_command(
            install,
            l1c_safe,
            out,
            processing_baseline=baseline,
            resolution=settings.resolution,
            gipp=settings.gipp.absolute() if settings.gipp else None,
            extra_args=settings.extra_args,
        )
        log.info("%s on %s: %s", install.describe(), l1c_name.id, shlex.join(argv))
        started = time.monotonic()
        try:
            code = run_in_own_group(
                argv, cwd=work, log_path=log_path, timeout_s=settings.timeout_s,
                kill_grace_s=settings.kill_grace_s, hold_fds=hold_fds,
            )  # fmt: skip
        except ProcessStartError as exc:
            raise Sen2CorError(str(exc)) from exc

        def failure(problem: str) -> Sen2CorError:
            return Sen2CorError(
                f"{install.describe()} on {l1c_name.id}: {problem}.\nCommand: {shlex.join(argv)}"
                f"\nLast lines of its log:\n{_tail(log_path)}"
            )

        if code is None:
            raise failure(
                f"no result within {settings.timeout_s:g} s; its process group was killed"
            )
        if code != 0:
            raise failure(f"exited with code {code}")
        products = sorted(p for p in out.iterdir() if p.is_dir() and _L2A_RE.search(p.name))
        if len(products) != 1:
            raise failure(_count_problem(out, len(products)))
        produced = products[0]
        problems = validate_l2a(produced, l1c_name, baseline, resolution=settings.resolution)
        if problems:
            raise failure("its product is incomplete: " + "; ".join(problems[:10]))
        final = scratch / target.safe_name
        os.replace(produced, final)
        write_provenance(
            final,
            sen2cor_version=install.version_text,
            l1c_id=l1c_name.id,
            sen2cor_id=produced.name,
        )
        log.info(
            "%s made %s in %.0f s (renamed %s)",
            install.describe(), target.id, time.monotonic() - started, produced.name,
        )  # fmt: skip
        log.debug("Sen2Cor log tail:\n%s", _tail(log_path))
        for leftover in (out, work, log_path):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink(missing_ok=True)
        return final
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _check_input(l1c_safe: Path) -> tuple[ProductName, str]:
    """Name and processing baseline of the L1C; Sen2Cor only accepts ``S2?_MSIL1C*.SAFE``."""
    if not l1c_safe.is_dir():
        raise Sen2CorError(f"Sen2Cor input {l1c_safe} is not an unpacked SAFE folder")
    if not l1c_safe.name.endswith(".SAFE"):
        raise Sen2CorError(f"Sen2Cor input {l1c_safe.name!r} must be named <L1C id>.SAFE")
    try:
        name = ProductName.parse(l1c_safe.name)
    except ProductNameError as exc:
        raise Sen2CorError(f"Sen2Cor input: {exc}") from exc
    if name.level != "L1C":
        raise Sen2CorError(f"Sen2Cor input {l1c_safe.name} is {name.level}; it takes L1C only")
    metadata = read_metadata(l1c_safe)
    if metadata.level != "L1C":
        raise Sen2CorError(f"Sen2Cor input {l1c_safe.name}: its metadata says {metadata.level}")
    _baseline_tuple(metadata.processing_baseline)
    return name, metadata.processing_baseline


def _tail(log_path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with log_path.open("rb") as handle:
            handle.seek(max(0, log_path.stat().st_size - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty log)"


def _count_problem(out: Path, count: int) -> str:
    problem = "exited 0 but wrote no L2A product" if not count else f"wrote {count} L2A products"
    listing = ", ".join(sorted(p.name for p in out.iterdir())[:10]) or "nothing"
    return f"{problem}, expected exactly one (output folder holds: {listing})"
