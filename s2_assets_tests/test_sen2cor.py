"""Sen2Cor: installation discovery, version choice, argv, runs through the L2A_Process
stand-in (success and every failure switch), output checks and side products."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from s2_assets import __version__
from s2_assets.demo.products import build_safe
from s2_assets.errors import MetadataError, Sen2CorError
from s2_assets.products import ProductName, read_metadata
from s2_assets.resources.sen2cor import Sen2CorInstallation, Sen2CorResource
from s2_assets.sen2cor.output import jp2_problem, read_provenance, validate_l2a
from s2_assets.sen2cor.runner import (
    Sen2CorInstall,
    Sen2CorSettings,
    build_command,
    check_extra_args,
    choose_install,
    discover_install,
    run_sen2cor,
)
from s2_assets.sen2cor.sideproducts import copy_side_products
from s2_assets_tests.sen2cor_standin import MODE_VAR, PIDFILE_VAR, write_launcher

SENSING = datetime(2024, 1, 1, 6, 35, 11, tzinfo=UTC)
SIZE = 12


@pytest.fixture(scope="module")
def l1c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small L1C, shared: Sen2Cor only reads its input."""
    return build_safe(tmp_path_factory.mktemp("lib"), level="L1C", sensing=SENSING, size=SIZE)


@pytest.fixture(scope="module")
def l2a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_safe(tmp_path_factory.mktemp("l2a"), level="L2A", sensing=SENSING, size=SIZE)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_launcher(tmp_path_factory.mktemp("sen2cor") / "bin")


@pytest.fixture
def standin(launcher: Path) -> Sen2CorInstall:
    return discover_install(launcher, "02.12.03")


@pytest.fixture
def pidfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the stand-in records its pids; any still running afterwards are killed, so a
    failing test does not leave sleepers behind."""
    path = tmp_path / "pids"
    monkeypatch.setenv(PIDFILE_VAR, str(path))
    yield path
    for pid in _pids(path) if path.exists() else []:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _all_dead(pids: list[int], within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _pids(pidfile: Path) -> list[int]:
    return [int(line) for line in pidfile.read_text().split()]


def _install(version: str) -> Sen2CorInstall:
    parts = tuple(int(p) for p in version.split("."))
    assert len(parts) == 3
    return Sen2CorInstall(Path(f"/opt/Sen2Cor-{version}/L2A_Bashrc"), parts, True)


# ---------------------------------------------------------------- installations and versions


def test_discover_reads_version_from_the_install_path(tmp_path: Path) -> None:
    bashrc = tmp_path / "Sen2Cor-02.11.00-Linux64" / "L2A_Bashrc"
    bashrc.parent.mkdir()
    bashrc.write_text("export SEN2COR_HOME=/nowhere\n")
    found = discover_install(bashrc)
    assert (found.version, found.via_bashrc, found.path) == ((2, 11, 0), True, bashrc)
    assert discover_install(bashrc.parent).path == bashrc  # the install folder works too
    assert discover_install(bashrc, "02.12.03").version == (2, 12, 3)  # explicit wins


def test_discover_finds_a_command_on_path(launcher: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{launcher.parent}{os.pathsep}{os.environ['PATH']}")
    found = discover_install("L2A_Process", "02.10.01")
    assert (found.path, found.via_bashrc, found.version_text) == (launcher, False, "02.10.01")


@pytest.mark.parametrize(
    ("setup", "version", "message"),
    [
        ("nothing", None, "not found"),
        ("unversioned", None, "set its version explicitly"),
        ("unversioned", "2.12", "not of the form XX.YY.ZZ"),
        ("unversioned", "02.05.05", "valid: 02.08.00 or newer"),
        ("not-executable", "02.12.03", "is not executable"),
        ("empty-folder", "02.12.03", "neither L2A_Bashrc nor bin/L2A_Process"),
    ],
)
def test_discover_refuses_unusable_installs(
    tmp_path: Path, setup: str, version: str | None, message: str
) -> None:
    path = tmp_path / "L2A_Process"
    if setup == "unversioned":
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    elif setup == "not-executable":
        path.write_text("#!/bin/sh\n")
    elif setup == "empty-folder":
        path = tmp_path
    with pytest.raises(Sen2CorError, match=message):
        discover_install(path, version)


INSTALLED = [_install(v) for v in ("02.08.00", "02.09.00", "02.12.03", "02.10.01", "02.11.00")]


@pytest.mark.parametrize(
    ("baseline", "expected"),
    [
        ("05.11", "02.12.03"),  # >= 04.00: newest >= 02.10.01
        ("04.00", "02.12.03"),
        ("03.01", "02.12.03"),  # 02.06 .. 04.00: newest
        ("02.06", "02.12.03"),
        ("02.05", "02.09.00"),  # < 02.06: newest < 02.10.01
        ("02.04", "02.09.00"),
    ],
)
def test_version_choice_follows_sen2chain(baseline: str, expected: str) -> None:
    assert choose_install(INSTALLED, baseline).version_text == expected


def test_version_choice_without_a_fitting_install_names_rule_and_installs() -> None:
    old = [_install("02.08.00"), _install("02.09.00")]
    with pytest.raises(Sen2CorError, match=r"baseline 05.10.*>= 02.10.01; installed: 02.08.00, 02"):
        choose_install(old, "05.10")
    with pytest.raises(Sen2CorError, match=r"baseline 02.04.*< 02.10.01; installed: 02.12.03"):
        choose_install([_install("02.12.03")], "02.04")
    with pytest.raises(Sen2CorError, match=r"not of the form NN\.NN"):
        choose_install(old, "5.1")


def test_version_choice_tie_takes_the_first_configured() -> None:
    first, second = _install("02.12.03"), Sen2CorInstall(Path("/other"), (2, 12, 3), False)
    assert choose_install([first, second], "05.10") is first


# ---------------------------------------------------------------- argument lists


def test_command_direct(tmp_path: Path) -> None:
    install = Sen2CorInstall(Path("/opt/s2/bin/L2A_Process"), (2, 12, 3), False)
    argv = build_command(
        install, Path("/lib/X.SAFE"), Path("/tmp/out"), processing_baseline="05.10",
        resolution=20, gipp=Path("/cfg/L2A_GIPP.xml"), extra_args=("--debug",),
    )  # fmt: skip
    assert argv == [
        "/opt/s2/bin/L2A_Process", "--resolution", "20", "--GIP_L2A", "/cfg/L2A_GIPP.xml",
        "--processing_baseline", "05.10", "--output_dir", "/tmp/out", "--debug", "/lib/X.SAFE",
    ]  # fmt: skip


def test_command_via_bashrc_passes_arguments_as_argv() -> None:
    install = _install("02.11.00")
    argv = build_command(install, Path("/lib/X.SAFE"), Path("/o"), processing_baseline="04.00")
    assert argv[:2] == ["bash", "-c"]
    assert argv[3:] == [
        "sen2cor", "/opt/Sen2Cor-02.11.00/L2A_Bashrc",
        "--processing_baseline", "04.00", "--output_dir", "/o", "/lib/X.SAFE",
    ]  # fmt: skip
    assert "/lib" not in argv[2] and "L2A_Bashrc" not in argv[2]


def test_bashrc_script_hands_hostile_arguments_over_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real bash, real sourcing: nothing in the arguments is ever evaluated."""
    monkeypatch.setenv("HOME", str(tmp_path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    echo = bin_dir / "L2A_Process"
    echo.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\necho "bashrc_saw=$BASHRC_SAW"\n')
    echo.chmod(0o755)
    bashrc = tmp_path / "Sen2Cor-02.12.03-Linux64" / "L2A_Bashrc"
    bashrc.parent.mkdir()
    bashrc.write_text(f'export PATH="{bin_dir}:$PATH"\nexport BASHRC_SAW="$#"\n')
    hostile = Path(tmp_path / "lib $(touch $HOME/pwned); `touch $HOME/pwned2` 'q\"" / "X.SAFE")
    argv = build_command(discover_install(bashrc), hostile, Path("/o"), processing_baseline="05.10")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
    # bashrc_saw=0: the bashrc was sourced without our arguments.
    assert out == [
        "--processing_baseline", "05.10", "--output_dir", "/o", str(hostile), "bashrc_saw=0"
    ]  # fmt: skip
    assert not list(tmp_path.glob("pwned*"))


@pytest.mark.parametrize(
    "extra", [["--output_dir", "/x"], ["--output=/x"], ["--processing_baseline=99.99"], ["--tile"]]
)
def test_reserved_extra_arguments_are_refused(extra: list[str]) -> None:
    with pytest.raises(Sen2CorError, match="is reserved"):
        check_extra_args(extra)


def test_allowed_extra_arguments_and_resolutions() -> None:
    check_extra_args(["--debug", "--GIP_L2A_SC", "/cfg/sc.xml", "--sc_only"])
    with pytest.raises(Sen2CorError, match=r"resolution 60 is not valid: valid are \(10, 20\)"):
        build_command(_install("02.12.03"), Path("/X.SAFE"), Path("/o"),
                      processing_baseline="05.10", resolution=60)  # fmt: skip


# ---------------------------------------------------------------- runs through the stand-in


def test_resource_makes_a_checked_l2a_in_a_dagster_run(
    l1c: Path, launcher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODE_VAR, "ok")
    scratch = tmp_path / "TEMP"
    made: list[Path] = []

    @dg.asset
    def l2a_product(sen2cor: Sen2CorResource) -> None:
        made.append(sen2cor.run(l1c, scratch))

    resource = Sen2CorResource(
        installations=[Sen2CorInstallation(path=str(launcher), version="02.12.03")], timeout_s=60
    )
    assert dg.materialize([l2a_product], resources={"sen2cor": resource}).success
    (result,) = made
    expected = ProductName.parse(l1c.name).as_level("L2A")
    assert result.name == expected.safe_name  # sen2chain's name: L1C_ -> L2A_, L1C discriminator
    metadata = read_metadata(result)
    assert (metadata.level, metadata.processing_baseline) == ("L2A", "05.10")
    assert metadata.offset("B04") == -1000
    provenance = read_provenance(result)
    assert provenance["SEN2COR_VERSION"] == "02.12.03"
    assert provenance["S2_ASSETS_VERSION"] == __version__
    assert provenance["L1C_PRODUCT"] == ProductName.parse(l1c.name).id
    assert provenance["SEN2COR_PRODUCT"].startswith("S2A_MSIL2A_20240101T063511_N0510_R120_T40KCB_")
    # Only the finished product is left: Sen2Cor's output folder, work folder and log are gone.
    assert [
        p.name for p in scratch.rglob("*") if p.parent != result and result not in p.parents
    ] == [
        result.parent.name,
        result.name,
    ]


def test_bashrc_install_with_a_hostile_library_path(
    l1c: Path, launcher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODE_VAR, "ok")
    monkeypatch.setenv("HOME", str(tmp_path))
    bashrc = tmp_path / "Sen2Cor-02.11.00-Linux64" / "L2A_Bashrc"
    bashrc.parent.mkdir()
    bashrc.write_text(f'export PATH="{launcher.parent}:$PATH"\n')
    library = tmp_path / "lib $(touch $HOME/pwned)"
    shutil.copytree(l1c, library / l1c.name)
    monkeypatch.chdir(tmp_path)  # and a relative scratch folder: Sen2Cor works elsewhere
    result = run_sen2cor(library / l1c.name, Path("TEMP"), [discover_install(bashrc)])
    assert result.parent.parent == tmp_path / "TEMP"
    assert read_provenance(result)["SEN2COR_VERSION"] == "02.11.00"
    assert read_metadata(result).level == "L2A"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("fail", r"(?s)exited with code 1\..*L2A processing failed"),
        ("empty", r"exited 0 but wrote no L2A product, expected exactly one"),
        ("already", r"(?s)wrote no L2A product.*already processed"),
        ("crash", r"(?s)exited with code 1\..*MemoryError"),
        ("truncated", r"incomplete: .*B08_10m\.jp2: missing; .*B11_20m\.jp2: truncated"),
        ("two", r"wrote 2 L2A products, expected exactly one"),
    ],
)
def test_each_failure_is_a_clear_error_and_leaves_nothing(
    l1c: Path, standin: Sen2CorInstall, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    mode: str, message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv(MODE_VAR, mode)
    scratch = tmp_path / "TEMP"
    with pytest.raises(Sen2CorError, match=message) as caught:
        run_sen2cor(l1c, scratch, [standin], Sen2CorSettings(timeout_s=60))
    text = str(caught.value)
    assert "Sen2Cor 02.12.03" in text and "Last lines of its log:\nProgress[%]:" in text
    assert list(scratch.iterdir()) == []


def test_timeout_kills_the_whole_process_group(
    l1c: Path, standin: Sen2CorInstall, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    pidfile: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv(MODE_VAR, "hang")
    scratch = tmp_path / "TEMP"
    started = time.monotonic()
    with pytest.raises(Sen2CorError, match="no result within 2 s; its process group was killed"):
        run_sen2cor(l1c, scratch, [standin], Sen2CorSettings(timeout_s=2, kill_grace_s=120))
    # SIGTERM was enough: no wait for the grace period (a bound far from both, so a loaded
    # machine cannot fail it).
    assert time.monotonic() - started < 60
    pids = _pids(pidfile)
    assert len(pids) == 2  # Sen2Cor and the child it started
    assert _all_dead(pids)
    assert list(scratch.iterdir()) == []


def test_timeout_escalates_to_sigkill(
    l1c: Path, standin: Sen2CorInstall, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    pidfile: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv(MODE_VAR, "stubborn")
    with pytest.raises(Sen2CorError, match=r"no result within 1\.5 s"):
        run_sen2cor(l1c, tmp_path, [standin], Sen2CorSettings(timeout_s=1.5, kill_grace_s=0.3))
    pids = _pids(pidfile)
    assert len(pids) == 2 and _all_dead(pids)


def test_children_left_by_a_successful_run_are_stopped(
    l1c: Path, standin: Sen2CorInstall, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    pidfile: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv(MODE_VAR, "orphan")
    result = run_sen2cor(l1c, tmp_path, [standin], Sen2CorSettings(timeout_s=60))
    assert result.is_dir()
    (child,) = _pids(pidfile)
    assert _all_dead([child])


def test_bad_inputs_are_refused_before_running(
    l1c: Path, l2a: Path, standin: Sen2CorInstall, tmp_path: Path
) -> None:
    scratch = tmp_path / "TEMP"
    with pytest.raises(Sen2CorError, match="is L2A; it takes L1C only"):
        run_sen2cor(l2a, scratch, [standin])
    renamed = tmp_path / "copy"
    shutil.copytree(l1c, renamed)
    with pytest.raises(Sen2CorError, match=r"must be named <L1C id>\.SAFE"):
        run_sen2cor(renamed, scratch, [standin])
    with pytest.raises(Sen2CorError, match=r"GIPP file .*nope\.xml does not exist"):
        run_sen2cor(l1c, scratch, [standin], Sen2CorSettings(gipp=tmp_path / "nope.xml"))
    with pytest.raises(Sen2CorError, match=r"needs a version >= 02.10.01; installed: 02.09.00"):
        run_sen2cor(l1c, scratch, [_install("02.09.00")])
    gone = Sen2CorInstall(tmp_path / "uninstalled" / "L2A_Process", (2, 12, 3), False)
    with pytest.raises(Sen2CorError, match=r"cannot start .*uninstalled/L2A_Process"):
        run_sen2cor(l1c, scratch, [gone])
    assert not scratch.exists() or list(scratch.iterdir()) == []


def test_resource_config_errors(launcher: Path) -> None:
    with pytest.raises(Sen2CorError, match="no Sen2Cor installation configured"):
        Sen2CorResource(installations=[]).installs()
    resource = Sen2CorResource(
        installations=[Sen2CorInstallation(path=str(launcher), version="02.12.03")],
        extra_args=["--output_dir", "/x"],
    )
    assert resource.install_for("05.10").version_text == "02.12.03"
    with pytest.raises(Sen2CorError, match="'--output_dir' is reserved"):
        resource.settings()


# ---------------------------------------------------------------- output checks


def test_validate_l2a_names_every_problem(l1c: Path, tmp_path: Path) -> None:
    l1c_name = ProductName.parse(l1c.name)
    other = build_safe(tmp_path, level="L2A", tile="40KCB", sensing=SENSING, baseline="05.11",
                       relative_orbit=121, size=SIZE)  # fmt: skip
    problems = validate_l2a(other, l1c_name, "05.10")
    assert problems == [
        f"{other.name} does not match L1C {l1c_name.id}",
        "processing baseline 05.11, expected the L1C's 05.10",
    ]
    next(other.glob("GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2")).unlink()
    assert validate_l2a(other, l1c_name, "05.11")[-1] == "no GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2"


def test_jp2_problem(l2a: Path, tmp_path: Path) -> None:
    good = next(l2a.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))
    assert jp2_problem(good) is None
    data = good.read_bytes()
    cut = tmp_path / "cut.jp2"
    cut.write_bytes(data[:-1])
    assert jp2_problem(cut) == f"truncated ({len(data) - 1} bytes, box b'jp2c' runs past the end)"
    (tmp_path / "empty.jp2").write_bytes(b"")
    assert jp2_problem(tmp_path / "empty.jp2") == "no codestream"
    (tmp_path / "text.jp2").write_bytes(b"<html>not found</html>")
    assert jp2_problem(tmp_path / "text.jp2") == "not a JPEG 2000 file"
    assert jp2_problem(tmp_path / "absent.jp2") == "missing"


# ---------------------------------------------------------------- side products


def test_side_products_are_copied_under_sen2chain_names(l2a: Path, tmp_path: Path) -> None:
    dest = tmp_path / "CLOUDMASKS" / "40KCB" / "S2A_MSIL2A_x"
    copied = copy_side_products(l2a, dest)
    assert [p.name for p in copied] == [
        "MSK_CLDPRB_20m.jp2",
        "T40KCB_20240101T063511_SCL_20m.jp2",
    ]
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in copied)
    assert (
        copied[1].read_bytes()
        == next(l2a.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2")).read_bytes()
    )
    assert (
        copied[0].read_bytes()
        == next(l2a.glob("GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2")).read_bytes()
    )
    assert copy_side_products(l2a, dest) == copied  # again: replaced in place


def test_side_products_missing_copies_nothing(l2a: Path, tmp_path: Path) -> None:
    broken = tmp_path / l2a.name
    shutil.copytree(l2a, broken)
    next(broken.glob("GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2")).unlink()
    dest = tmp_path / "dest"
    with pytest.raises(MetadataError, match=r"MSK_CLDPRB_20m\.jp2"):
        copy_side_products(broken, dest)
    assert not dest.exists()
