"""The README's commands run as written: the two commands, the tour, an existing library.

The ``s2-assets`` commands of the tour run in a fresh folder (as if it were a fresh checkout:
the demo writes ``demo_data/`` there and later commands find its settings from there);
``ui`` stops where it would replace itself with ``dagster dev``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from s2_assets import cli
from s2_assets.demo.quickstart import DEMO_JOB

README = cli.REPO_ROOT / "README.md"
SETTINGS = ("DAGSTER_HOME", "S2_DATA_HOME", "S2_ARCHIVE_ROOT", "S2_DATE_START", "S2_DATE_END")


def blocks(section: str) -> list[str]:
    """The ```bash blocks of one ``## `` section of the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end > 0 else len(text)]
    return re.findall(r"```bash\n(.*?)```", body, flags=re.DOTALL)


def command_lines(section: str) -> list[str]:
    return [
        line.strip() for block in blocks(section) for line in block.splitlines() if line.strip()
    ]


def test_readme_is_short_and_self_contained() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 220
    assert "DESIGN.md" not in text and "../" not in text
    assert not re.search(r"\bD\d{1,2}\b", text)
    for image in re.findall(r"\]\((docs/[^)]+\.png)\)", text):
        assert (cli.REPO_ROOT / image).is_file(), image


def test_ci_runs_exactly_the_readme_test_command() -> None:
    demo, tests = command_lines("Two commands")
    assert demo.endswith("&& .venv/bin/s2-assets demo")
    ci = (cli.REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci


@pytest.fixture
def fresh_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (*SETTINGS, "S2_DEFAULT_PROVIDER"):
        monkeypatch.setenv(name, "set-by-the-test")  # the demo sets them: restore afterwards
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_tour_runs_as_written(
    fresh_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_line = command_lines("Two commands")[0].split(" && ")[-1]
    tour = command_lines("A five-minute tour")
    assert tour[0] == ".venv/bin/s2-assets ui"
    assert len(tour) >= 6 and all(line.startswith(".venv/bin/s2-assets ") for line in tour)
    started: list[list[str]] = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.append(argv))

    for line in [demo_line, *tour]:
        # The settings a shell would have: none but what the demo wrote in demo_data/.env.
        for name in SETTINGS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.chdir(fresh_folder)  # `ui` moves to DAGSTER_HOME before its execve
        code = cli.main(shlex.split(line)[1:])
        out, err = capsys.readouterr()
        assert code == 0, f"{line}\n{out}\n{err}"
        if line == demo_line:
            # The demo names the command the README gives (relative to where it runs).
            assert out.splitlines()[-1] == f"  {cli._command_prefix()} ui"
        assert "Traceback" not in err and "warning" not in err, f"{line}\n{err}"
        if line.endswith("jobs list"):
            assert out.splitlines()[1].split()[:2] == ["demo", "True"]
        if line.endswith("run demo"):
            assert (
                "demo: 2 catalogue refresh run(s)" in out and "wanted outputs, all present" in out
            )
    assert len(started) == 1 and started[0][1] == "dev"
    assert (fresh_folder / "demo_data" / ".env").is_file()


def test_the_demo_prints_the_readme_command_from_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = Path(sys.executable).with_name("s2-assets")
    if script.parent != cli.REPO_ROOT / ".venv" / "bin":
        pytest.skip("the tests do not run from the checkout's .venv")
    monkeypatch.chdir(cli.REPO_ROOT)
    assert f"{cli._command_prefix()} ui" == command_lines("A five-minute tour")[0]


def test_pointing_at_an_existing_library_runs_as_written(tmp_path: Path) -> None:
    """The README's block for an existing library, in bash, from the checkout, with a home
    holding a sen2chain library (all but its last line, which starts the UI)."""
    if not (cli.REPO_ROOT / ".venv" / "bin" / "s2-assets").exists():
        pytest.skip("no .venv in the checkout")
    lines = command_lines("Using an existing sen2chain library")
    assert lines[-1] == ".venv/bin/s2-assets ui"
    jobs = tmp_path / "sen2chain_data" / "config" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "job_demo.cfg").write_text(DEMO_JOB, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | {"HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(lines[:-1])],
        cwd=cli.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"ok  {jobs / 'job_demo.cfg'}: 2 task(s)" in done.stdout
    assert (tmp_path / "s2_dagster_home" / "dagster.yaml").is_file()
