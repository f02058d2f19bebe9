"""The ``s2-assets`` command: the demo, the UI on it, and job files (``s2-assets jobs``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Container, Mapping, Sequence
from pathlib import Path

from s2_assets.errors import S2AssetsError
from s2_assets.jobs.commands import add_jobs_parser
from s2_assets.jobs.run_now import run_job_now, submit_job
from s2_assets.library import Library, default_root
from s2_assets.partitions import TileDate
from s2_assets.quickstart import DemoPaths, run_demo

REPO_ROOT = Path(__file__).resolve().parent.parent


def _demo(args: argparse.Namespace) -> int:
    paths = DemoPaths(Path(args.dir).resolve())
    counts = run_demo(paths, REPO_ROOT / "dagster.yaml", size=args.size)
    print(f"Demo library: {paths.library}  ({counts['L1C']} L1C, {counts['L2A']} L2A products)")
    print(f"Dagster instance: {paths.dagster_home}")
    print("Open the UI (assets, partitions, runs) with:")
    print(f"  {sys.executable} -m s2_assets.cli ui --dir {args.dir}")
    return 0


def _ui(args: argparse.Namespace) -> int:
    """Replace this process with ``dagster dev`` on the demo's instance and library."""
    paths = DemoPaths(Path(args.dir).resolve())
    env = {**os.environ, **paths.environment()}
    dagster = Path(sys.executable).with_name("dagster")
    argv = [
        str(dagster),
        "dev",
        "-w",
        str(REPO_ROOT / "workspace.yaml"),
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    os.chdir(REPO_ROOT)
    os.execve(argv[0], argv, env)


def _run(args: argparse.Namespace) -> int:
    """sen2chain's ``Job.run()``: in this process, or through a running webserver."""
    lib = Library(default_root())
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
    """sen2chain's ``clean_lib``: remove debris from the library (or only list it)."""
    from datetime import timedelta

    from s2_assets.clean import clean_library
    from s2_assets.errors import S2AssetsError

    try:
        report = clean_library(
            Library(default_root()),
            args.tile or None,
            remove=not args.dry_run,
            min_age=timedelta(hours=args.min_age_hours),
        )
    except S2AssetsError as exc:
        print(f"s2-assets clean: {exc}", file=sys.stderr)
        return 2
    for finding in report.findings:
        print(f"{finding.action:14} {finding.rule:18} {finding.path}  ({finding.detail})")
    print(report.summary())
    return 1 if report.failed else 0


def schedule_status(name: str) -> str | None:
    """``running``/``stopped`` for a schedule in the ``$DAGSTER_HOME`` instance; None if
    there is no instance to ask. A schedule never started is stopped (its default)."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    import dagster as dg  # the rest of the CLI should not pay for importing Dagster

    with dg.DagsterInstance.get() as instance:
        for state in instance.all_instigator_state():
            if state.name == name:
                return state.status.value.lower()
    return "stopped"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="build a demo archive and run the pipeline on it")
    demo.add_argument(
        "--dir", default="demo_data", help="where the demo writes (default: demo_data)"
    )
    demo.add_argument(
        "--size", type=int, default=120, help="pixels per side at 10 m (multiple of 6)"
    )
    demo.set_defaults(handler=_demo)
    ui = commands.add_parser("ui", help="start the Dagster UI on the demo's instance")
    ui.add_argument("--dir", default="demo_data")
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
    clean = commands.add_parser("clean", help="remove debris from the library (sen2chain's clean)")
    clean.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    clean.add_argument("--tile", action="append", help="a tile to clean (repeatable; default all)")
    clean.add_argument(
        "--min-age-hours", type=float, default=3.0, help="keep entries modified more recently"
    )
    clean.set_defaults(handler=_clean)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
