"""What a newcomer sees when something is not set up: one or two lines saying what is wrong,
the value and what to do; the settings the demo leaves in ``demo_data/.env``; job files
written by ``jobs new``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s2_assets import cli
from s2_assets.cli import error_text, main
from s2_assets.demo.products import DEMO_PRODUCTS, build_archive
from s2_assets.demo.quickstart import DEMO_JOB, DemoPaths, prepare
from s2_assets.errors import ProviderError
from s2_assets.jobs.jobfile import load_job

SETTINGS = ("DAGSTER_HOME", "S2_DATA_HOME", "S2_ARCHIVE_ROOT", "S2_DATE_START", "S2_DATE_END")


@pytest.fixture
def newcomer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A shell with nothing set, in an empty folder, with an empty home; returns the folder."""
    for name in (*SETTINGS, "S2_DEFAULT_PROVIDER", "S2_EODC_ROOT", "CDSE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def short(err: str) -> list[str]:
    """The error's lines, checked to be an error message and not a traceback."""
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2 and "Traceback" not in err, err
    return lines


def library_with(root: Path, job: str = DEMO_JOB, jid: str = "demo") -> Path:
    jobs = root / "config" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / f"job_{jid}.cfg").write_text(job, encoding="utf-8")
    return root


def test_run_without_dagster_home(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S2_DATA_HOME", str(library_with(newcomer / "lib")))
    code, _, err = call(capsys, "run", "demo")
    assert code == 2
    first, second = short(err)
    assert (
        first == "s2-assets run: DAGSTER_HOME is not set: runs are recorded in a Dagster instance."
    )
    assert second.startswith("Set DAGSTER_HOME to a folder holding dagster.yaml")
    assert "run `s2-assets demo` from the checkout" in second
    monkeypatch.setenv("DAGSTER_HOME", str(newcomer / "nowhere"))
    code, _, err = call(capsys, "run", "demo")
    assert short(err)[0] == f"s2-assets run: DAGSTER_HOME={newcomer / 'nowhere'} does not exist."


def test_run_of_an_unknown_job(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    library = library_with(newcomer / "lib")
    monkeypatch.setenv("S2_DATA_HOME", str(library))
    code, _, err = call(capsys, "run", "nope")
    assert code == 2
    assert short(err) == [
        f"s2-assets run: unknown job 'nope': no job_nope.cfg in {library / 'config' / 'jobs'}; "
        "existing: demo.",
        "Create it with `s2-assets jobs new nope`.",
    ]


def test_run_names_the_unset_archive_root(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S2_DATA_HOME", str(library_with(newcomer / "lib")))
    monkeypatch.setenv("DAGSTER_HOME", str(newcomer))
    code, _, err = call(capsys, "run", "demo")
    assert code == 2
    (line,) = short(err)
    assert line.startswith(
        "s2-assets run: job 'demo': provider 'archive' needs S2_ARCHIVE_ROOT, which is not set: "
        "set it to the folder of product zips"
    )
    monkeypatch.setenv("S2_ARCHIVE_ROOT", str(newcomer / "zips"))
    code, _, err = call(capsys, "run", "demo")
    assert short(err) == [
        f"s2-assets run: job 'demo': provider 'archive': S2_ARCHIVE_ROOT={newcomer / 'zips'} "
        "does not exist; set it to the folder of product zips"
    ]


def test_a_tile_with_nothing_in_the_archive_gets_a_hint(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = newcomer / "archive"
    build_archive(archive, [p for p in DEMO_PRODUCTS if p.tile == "31UFS"], size=12)
    job = DEMO_JOB.replace("40KCB;", "33TWN;").replace("31UFS;", "!31UFS;")
    monkeypatch.setenv("S2_DATA_HOME", str(library_with(newcomer / "lib", job)))
    monkeypatch.setenv("S2_ARCHIVE_ROOT", str(archive))
    monkeypatch.setenv("DAGSTER_HOME", str(newcomer))
    code, out, _ = call(capsys, "run", "demo")
    assert code == 0
    assert "demo: 1 catalogue refresh run(s), 0 product run(s) over 0 partition(s)" in out
    line = next(n for n, text in enumerate(job.splitlines(), start=1) if "33TWN" in text)
    assert (
        f"33TWN: 0 products from provider 'archive' (line {line}): check the tile id, the "
        "task's window and that S2_ARCHIVE_ROOT holds its zips"
    ) in out


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "list"],
        ["jobs", "validate"],
        ["jobs", "new", "x1"],
        ["run", "demo"],
        ["clean"],
        ["ui"],
    ],
)
def test_every_command_says_the_library_does_not_exist(
    argv: list[str],
    newcomer: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = newcomer / "no" / "such" / "sen2chain_data"
    monkeypatch.setenv("S2_DATA_HOME", str(missing))
    code, _, err = call(capsys, *argv)
    assert code == 2
    first, second = short(err)
    assert (
        first == f"s2-assets {argv[0]}: library not found: S2_DATA_HOME={missing} does not exist."
    )
    assert second.startswith("Set S2_DATA_HOME to your sen2chain_data folder, create it (mkdir -p")
    assert not (newcomer / "no").exists()  # jobs new does not create the path


def test_without_settings_the_default_library_is_named(
    newcomer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = call(capsys, "jobs", "list")
    default = Path(os.environ["HOME"]) / "sen2chain_data"
    assert code == 2
    assert short(err)[0] == (
        f"s2-assets jobs: library not found: S2_DATA_HOME is not set and the default {default} "
        "does not exist."
    )


def test_every_command_warns_about_a_folder_without_a_sen2chain_tree(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = newcomer / "empty"
    empty.mkdir()
    monkeypatch.setenv("S2_DATA_HOME", str(empty))
    warning = (
        f"warning: S2_DATA_HOME={empty} holds no sen2chain tree (no data/ or config/ folder): "
        "nothing to work on yet; is it the sen2chain_data folder you meant?"
    )
    code, out, err = call(capsys, "jobs", "list")
    assert code == 0 and err.strip() == warning
    assert out.strip() == f"no job files (job_<jid>.cfg) in {empty / 'config' / 'jobs'}"
    code, _, err = call(capsys, "clean")
    assert err.strip() == warning
    code, out, err = call(capsys, "jobs", "new", "x1", "--provider", "archive")
    assert code == 0
    assert "config/jobs will be created in it" in err
    assert (empty / "config" / "jobs" / "job_x1.cfg").is_file()


def test_jobs_new_writes_the_provider_into_the_template_and_cleans_nothing(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    library = library_with(newcomer / "lib")
    monkeypatch.setenv("S2_DATA_HOME", str(library))
    assert call(capsys, "jobs", "new", "x1", "--provider", "archive")[0] == 0
    job = load_job(library / "config" / "jobs" / "job_x1.cfg")
    (task,) = job.tasks
    assert (job.settings.provider, task.provider, task.tile) == ("archive", "archive", "40KCB")
    assert job.settings.clean_before is False and job.settings.clean_after is False
    assert call(capsys, "jobs", "new", "x2")[0] == 0
    (task,) = load_job(library / "config" / "jobs" / "job_x2.cfg").tasks
    assert task.provider == "cop_dataspace"


def test_the_demo_settings_file_serves_later_commands(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in SETTINGS:  # prepare() sets them in os.environ: restore them afterwards
        monkeypatch.setenv(name, "unset-by-the-test")
    paths = DemoPaths(newcomer / "demo_data")
    prepare(paths, cli.REPO_ROOT / "dagster.yaml")
    for name in SETTINGS:
        monkeypatch.delenv(name)
    code, out, err = call(capsys, "jobs", "list")
    assert code == 0 and err == ""
    assert out.splitlines()[1].split()[:2] == ["demo", "True"]
    assert os.environ["S2_DATA_HOME"] == str(paths.library)
    assert os.environ["S2_DATE_END"] == "2022-02-10"
    # A variable already exported wins over the file.
    monkeypatch.setenv("S2_DATA_HOME", str(newcomer / "mine"))
    code, _, err = call(capsys, "jobs", "list")
    assert code == 2 and f"S2_DATA_HOME={newcomer / 'mine'} does not exist" in err


def test_ui_outside_the_checkout(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = call(capsys, "ui")
    assert code == 2
    assert "run `s2-assets demo` from the checkout" in short(err)[1]
    monkeypatch.setenv("S2_DATA_HOME", str(library_with(newcomer / "lib")))
    code, _, err = call(capsys, "ui")
    assert short(err)[0] == (
        "s2-assets ui: DAGSTER_HOME is not set: runs are recorded in a Dagster instance."
    )
    monkeypatch.setenv("DAGSTER_HOME", str(newcomer))
    monkeypatch.setattr(cli, "REPO_ROOT", newcomer / "site-packages")
    code, _, err = call(capsys, "ui")
    (line,) = short(err)
    assert line.startswith(
        f"s2-assets ui: no workspace.yaml beside the installed package ({newcomer / 'site-packages'})"
    )
    assert "run it from there" in line


def test_ui_starts_dagster_dev_quietly_from_dagster_home(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S2_DATA_HOME", str(library_with(newcomer / "lib")))
    home = newcomer / "home_of_dagster"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    started: dict[str, object] = {}

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        started.update(path=path, argv=argv, env=env, cwd=Path.cwd())

    monkeypatch.setattr(os, "execve", execve)
    call(capsys, "ui", "--port", "3001")
    argv = started["argv"]
    assert isinstance(argv, list) and argv[1:3] == ["dev", "-w"]
    assert argv[3] == str(cli.REPO_ROOT / "workspace.yaml") and argv[-2:] == ["-p", "3001"]
    # No "dagster.yaml in the current folder is ignored" warning: we start in DAGSTER_HOME.
    assert started["cwd"] == home
    env = started["env"]
    assert isinstance(env, dict)
    assert env["PYTHONWARNINGS"] == "ignore:Function `dev_command` is superseded"


def test_debug_shows_the_traceback(
    newcomer: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S2_DATA_HOME", str(library_with(newcomer / "lib")))
    with pytest.raises(cli.CliError, match="unknown job 'nope'"):
        main(["run", "nope", "--debug"])


def test_errors_wrapped_by_dagster_show_our_message() -> None:
    try:
        try:
            raise ProviderError("provider 'archive' has no archive root configured")
        except ProviderError as inner:
            raise RuntimeError("Error occurred while executing op 'acquisitions'") from inner
    except RuntimeError as outer:
        text = error_text("run", outer)
    assert text == "s2-assets run: provider 'archive' has no archive root configured"
    assert error_text("run", KeyError("x")).splitlines() == [
        "s2-assets run: KeyError: 'x'",
        "(run again with --debug for the traceback)",
    ]


def test_a_missing_env_file_is_named(newcomer: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = call(capsys, "--env-file", "elsewhere/.env", "jobs", "list")
    assert code == 2
    assert short(err) == ["s2-assets jobs: --env-file elsewhere/.env: no such file"]
