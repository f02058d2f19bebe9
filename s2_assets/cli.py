"""The ``s2-assets`` command: the demo, the UI on it, and job files (``s2-assets jobs``).

Errors print as one or two lines (what is wrong, the value, what to do); ``--debug``
anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Container, Mapping, Sequence
from pathlib import Path

from s2_assets.cli_env import CliError, dagster_home, library_root, load_env_file, provider_problem
from s2_assets.demo.quickstart import DemoPaths, run_demo
from s2_assets.errors import S2AssetsError
from s2_assets.jobs.commands import add_jobs_parser
from s2_assets.jobs.jobfile import job_path, load_job
from s2_assets.jobs.model import JobFile, JobFileProblems
from s2_assets.jobs.run_now import run_job_now, submit_job
from s2_assets.library import acquisitions as catalogue
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.settings import default_root

REPO_ROOT = Path(__file__).resolve().parent.parent
SUPERSEDED_WARNING = "ignore:Function `dev_command` is superseded"


def _command_prefix() -> str:
    """How to call this command again from the working directory (``.venv/bin/s2-assets``)."""
    script = Path(sys.executable).with_name("s2-assets")
    if not script.exists():
        return f"{sys.executable} -m s2_assets.cli"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _demo(args: argparse.Namespace) -> int:
    base = Path(args.dir)
    paths = DemoPaths(base.resolve())
    counts = run_demo(paths, REPO_ROOT / "dagster.yaml", size=args.size)
    print(f"Demo library: {paths.library}  ({counts['L1C']} L1C, {counts['L2A']} L2A products)")
    print(f"Dagster instance: {paths.dagster_home}")
    default = base == Path("demo_data")
    env_file = paths.env_file
    where = f"s2-assets reads it when run from {Path.cwd()}" if default else "pass --env-file"
    print(f"Settings: {env_file} ({where}; no exports needed)")
    option = "" if default else f" --env-file {env_file}"
    print("Open the UI (assets, partitions, runs; Ctrl-C stops it) with:")
    print(f"  {_command_prefix()}{option} ui")
    return 0


def _ui(args: argparse.Namespace) -> int:
    """Replace this process with ``dagster dev`` on the configured instance and library."""
    home = dagster_home()
    workspace = REPO_ROOT / "workspace.yaml"
    if not workspace.is_file():
        raise CliError(
            f"no workspace.yaml beside the installed package ({REPO_ROOT}): `s2-assets ui` "
            "needs a checkout installed with `pip install -e .`; clone the repository and "
            "run it from there."
        )
    dagster = Path(sys.executable).with_name("dagster")
    argv = [str(dagster), "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    # `dagster dev` is superseded by the `dg` tool, which this project does not use: the
    # warning asks for nothing a user of this command can do.
    warnings = [os.environ.get("PYTHONWARNINGS", ""), SUPERSEDED_WARNING]
    env = {**os.environ, "PYTHONWARNINGS": ",".join(w for w in warnings if w)}
    print(
        f"Dagster UI on http://{args.host}:{args.port} (instance {home}, library "
        f"{default_root()}); Ctrl-C stops it",
        file=sys.stderr,
    )
    # From DAGSTER_HOME: a dagster.yaml in the working directory that is not the
    # instance's makes Dagster warn that it is ignored.
    os.chdir(home)
    os.execve(argv[0], argv, env)
    return 0  # not reached: execve replaces this process


def _existing_job(lib: Library, jid: str) -> JobFile:
    path = job_path(lib.jobs_dir, jid)
    if not path.is_file():
        known = sorted(p.stem.removeprefix("job_") for p in lib.jobs_dir.glob("job_*.cfg"))
        raise CliError(
            f"unknown job {jid!r}: no {path.name} in {lib.jobs_dir}; existing: "
            f"{', '.join(known) or 'none'}.\nCreate it with `s2-assets jobs new {jid}`."
        )
    return load_job(path)


def _run(args: argparse.Namespace) -> int:
    """sen2chain's ``Job.run()``: in this process, or through a running webserver."""
    lib = Library(default_root())
    job = _existing_job(lib, args.jid)
    if args.webserver:
        try:
            run_ids = submit_job(args.webserver, lib, args.jid, args.location)
        except S2AssetsError as exc:
            print(f"s2-assets run: {exc}", file=sys.stderr)
            return 1
        print(f"submitted {len(run_ids)} catalogue refresh run(s): {', '.join(run_ids)}")
        print(
            "new_acquisitions_sensor (dagster-daemon) plans the job once they have finished and "
            f"launches what is missing; see `s2-assets jobs status {args.jid}`"
        )
        return 0
    dagster_home()
    problems = sorted(
        {p for t in job.tasks if t.enabled for p in [provider_problem(t.provider)] if p}
    )
    if problems:
        raise CliError(f"job {args.jid!r}: " + "; ".join(problems))
    import dagster as dg

    from s2_assets.definitions import build_definitions
    from s2_assets.settings import Settings

    try:
        with dg.DagsterInstance.get() as instance:
            defs = build_definitions(Settings.from_env())
            summary = run_job_now(defs, instance, lib, args.jid)
    except (S2AssetsError, RuntimeError) as exc:
        print(f"s2-assets run {args.jid}: {exc}", file=sys.stderr)
        return 1
    print(summary.plan.summary())
    if summary.not_staged:
        print(f"{len(summary.not_staged)} file(s) not staged: {', '.join(summary.not_staged)}")
    print(
        f"{args.jid}: {summary.discovery_runs} catalogue refresh run(s), {summary.product_runs} "
        f"product run(s) over {summary.partitions} partition(s)"
    )
    for line in empty_tiles(lib, job):
        print(line)
    return 0


def _status(args: argparse.Namespace) -> int:
    """``s2-assets jobs status <jid>``: wanted / present / missing / in progress / failing."""
    from datetime import UTC, datetime

    from s2_assets.jobs.jobfile import job_path, load_job
    from s2_assets.jobs.planner import plan_job
    from s2_assets.providers.base import PROVIDER_NAMES

    lib = Library(default_root())
    try:
        job = load_job(job_path(lib.jobs_dir, args.jid), providers=PROVIDER_NAMES)
    except S2AssetsError as exc:
        print(exc)
        return 1
    covered: Mapping[str, Container[TileDate]] = {}
    if os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        from s2_assets.jobs.reconcile import in_progress

        with dg.DagsterInstance.get() as instance:
            covered = in_progress(instance)
    now = datetime.now(UTC)
    plan = plan_job(job, lib, today=now.date(), now=now, in_progress=covered)
    print(plan.summary())
    by_asset: dict[str, int] = {}
    for _, output in plan.missing:
        by_asset[output.asset] = by_asset.get(output.asset, 0) + 1
    if by_asset:
        print("missing by asset: " + ", ".join(f"{a} {n}" for a, n in sorted(by_asset.items())))
    if not os.environ.get("DAGSTER_HOME"):
        print("(DAGSTER_HOME is not set: work in progress is not known)")
    return 0


def _clean(args: argparse.Namespace) -> int:
    """sen2chain's ``clean_lib``: list the library's debris; remove it with ``--remove``.

    Listing is the default, as in sen2chain's library clean, so a look at a library never
    deletes anything by surprise."""
    from datetime import timedelta

    from s2_assets.errors import S2AssetsError
    from s2_assets.library.clean import WOULD_REMOVE, clean_library

    try:
        report = clean_library(
            Library(default_root()),
            args.tile or None,
            remove=args.remove,
            min_age=timedelta(hours=args.min_age_hours),
        )
    except S2AssetsError as exc:
        print(f"s2-assets clean: {exc}", file=sys.stderr)
        return 2
    for finding in report.findings:
        print(f"{finding.action:14} {finding.rule:18} {finding.path}  ({finding.detail})")
    print(report.summary())
    if not args.remove and any(f.action == WOULD_REMOVE for f in report.findings):
        print("add --remove to remove what is listed as 'would remove'")
    return 1 if report.failed else 0


def empty_tiles(lib: Library, job: JobFile) -> list[str]:
    """A hint for each enabled tile of ``job`` whose catalogue holds no product."""
    lines = []
    for task in job.tasks:
        if not task.enabled or catalogue.read_table(lib.acquisitions_path(task.tile)):
            continue
        where = {
            "archive": "S2_ARCHIVE_ROOT",
            "local": "S2_ARCHIVE_ROOT",
            "eodc": "S2_EODC_ROOT",
        }.get(task.provider)
        hint = f"that {where} holds its zips" if where else "the provider's credentials"
        lines.append(
            f"{task.tile}: 0 products from provider {task.provider!r} (line {task.line}): "
            f"check the tile id, the task's window and {hint}"
        )
    return lines


def schedule_status(name: str) -> str | None:
    """``running``/``stopped`` for a schedule in the ``$DAGSTER_HOME`` instance; None if
    there is no instance to ask. A schedule never started is stopped (its default)."""
    if not Path(os.environ.get("DAGSTER_HOME") or "/nonexistent").is_dir():
        return None
    import dagster as dg  # the rest of the CLI should not pay for importing Dagster

    with dg.DagsterInstance.get() as instance:
        for state in instance.all_instigator_state():
            if state.name == name:
                return state.status.value.lower()
    return "stopped"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2-assets", description=__doc__)
    parser.add_argument(
        "--env-file",
        type=Path,
        help="settings file to read (default: ./.env, else ./demo_data/.env)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="build a demo archive and run the pipeline on it")
    demo.add_argument(
        "--dir", default="demo_data", help="where the demo writes (default: demo_data)"
    )
    demo.add_argument(
        "--size", type=int, default=120, help="pixels per side at 10 m (multiple of 6)"
    )
    demo.set_defaults(handler=_demo)
    ui = commands.add_parser("ui", help="start the Dagster UI (dagster dev) on DAGSTER_HOME")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(handler=_ui)
    jobs = add_jobs_parser(commands, lambda: Library(default_root()).jobs_dir, schedule_status)
    job_commands = next(a for a in jobs._actions if isinstance(a, argparse._SubParsersAction))
    status = job_commands.add_parser(
        "status", help="what a job wants: present, missing, in progress, failing (last errors)"
    )
    status.add_argument("jid")
    status.set_defaults(handler=_status)
    run = commands.add_parser("run", help="run a job now (sen2chain's Job.run())")
    run.add_argument("jid")
    run.add_argument("--webserver", help="URL of a running webserver, e.g. http://127.0.0.1:3000")
    run.add_argument("--location", default="s2_assets", help="code location name (webserver)")
    run.set_defaults(handler=_run)
    clean = commands.add_parser(
        "clean", help="list debris and damaged products in the library (sen2chain's clean)"
    )
    clean.add_argument(
        "--remove", action="store_true", help="remove what is found (default: only list it)"
    )
    clean.add_argument("--tile", action="append", help="a tile to clean (repeatable; default all)")
    clean.add_argument(
        "--min-age-hours", type=float, default=3.0, help="keep entries modified more recently"
    )
    clean.set_defaults(handler=_clean)
    return parser


# Commands that work on the library at S2_DATA_HOME (checked before they start).
_LIBRARY_COMMANDS = ("jobs", "run", "clean", "ui")


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost of our own errors behind ``exc`` (Dagster wraps what a step raised)."""
    found: BaseException = exc
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, S2AssetsError):
            found = current
        current = current.__cause__ or current.__context__
    return found


def error_text(command: str, exc: BaseException) -> str:
    """One or two lines for ``exc``: ours as they are, anything else with its type."""
    cause = _root_cause(exc)
    if isinstance(cause, JobFileProblems):
        return str(cause)
    if isinstance(cause, S2AssetsError):
        return f"s2-assets {command}: {cause}"
    first = (str(cause).strip().splitlines() or [""])[0]
    return (
        f"s2-assets {command}: {type(cause).__name__}: {first}\n"
        "(run again with --debug for the traceback)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere, so it can be added to a command as it was typed.
    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        load_env_file(args.env_file)
        if args.command in _LIBRARY_COMMANDS:
            creating = args.command == "jobs" and args.jobs_command in ("new", "add-task")
            _root, warning = library_root(create=creating)
            if warning:
                print(warning, file=sys.stderr)
        return int(args.handler(args))
    except Exception as exc:
        if debug:
            raise
        print(error_text(args.command, exc), file=sys.stderr)
        return 2 if isinstance(exc, CliError) else 1


if __name__ == "__main__":
    sys.exit(main())
