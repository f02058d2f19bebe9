"""What the ``s2-assets`` command checks before it works: settings files and paths.

Settings come from the environment, completed by a ``.env`` file: ``./.env`` if the
working directory has one (the file ``dagster dev`` reads), else ``./demo_data/.env``
(written by ``s2-assets demo``), or the file named by ``--env-file``. A variable already
set in the environment wins over the file. Every check raises :class:`CliError` with one
or two lines: what is wrong, the value, and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

from s2_assets.errors import S2AssetsError
from s2_assets.settings import DEFAULT_ROOT_ENV, default_root

ENV_FILES = (Path(".env"), Path("demo_data") / ".env")
DEMO_HINT = (
    "run `s2-assets demo` from the checkout, then run commands from there (it reads the "
    "demo's settings from demo_data/.env)"
)


class CliError(S2AssetsError):
    """A problem the user fixes by setting a variable or running a command."""


def load_env_file(explicit: Path | None = None, cwd: Path | None = None) -> Path | None:
    """Set the variables of the first settings file found that are not set yet.

    Returns:
        The file read, or None when there is none.

    Raises:
        CliError: ``explicit`` names a file that does not exist.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise CliError(f"--env-file {explicit}: no such file")
        candidates: tuple[Path, ...] = (explicit,)
    else:
        base = cwd or Path.cwd()
        candidates = tuple(base / name for name in ENV_FILES)
    for path in candidates:
        if path.is_file():
            for name, value in dotenv_values(path).items():
                if value is not None and name not in os.environ:
                    os.environ[name] = value
            return path
    return None


def library_root(*, create: bool = False) -> tuple[Path, str | None]:
    """The library root, and a warning when it holds no sen2chain tree yet.

    Args:
        create: the command will create folders in the library (``jobs new``); an existing
            but empty root is then fine.

    Raises:
        CliError: the root does not exist (nothing creates it implicitly).
    """
    root = default_root()
    source = (
        f"{DEFAULT_ROOT_ENV}={root}"
        if os.environ.get(DEFAULT_ROOT_ENV)
        else f"{DEFAULT_ROOT_ENV} is not set and the default {root}"
    )
    if not root.is_dir():
        raise CliError(
            f"library not found: {source} does not exist.\n"
            f"Set {DEFAULT_ROOT_ENV} to your sen2chain_data folder, create it "
            f"(mkdir -p {root}) for a new library, or {DEMO_HINT}."
        )
    if (root / "data").is_dir() or (root / "config").is_dir():
        return root, None
    what = "config/jobs will be created in it" if create else "nothing to work on yet"
    return root, (
        f"warning: {DEFAULT_ROOT_ENV}={root} holds no sen2chain tree (no data/ or config/ "
        f"folder): {what}; is it the sen2chain_data folder you meant?"
    )


def dagster_home() -> Path:
    """``$DAGSTER_HOME``, which must exist: runs and schedules are recorded there.

    Raises:
        CliError: unset, or not a folder.
    """
    value = os.environ.get("DAGSTER_HOME", "")
    if not value:
        raise CliError(
            "DAGSTER_HOME is not set: runs are recorded in a Dagster instance.\n"
            f"Set DAGSTER_HOME to a folder holding dagster.yaml (see docs/operations.md), or "
            f"{DEMO_HINT}."
        )
    home = Path(value).expanduser()
    if not home.is_dir():
        raise CliError(
            f"DAGSTER_HOME={home} does not exist.\n"
            f"Create it with the checkout's dagster.yaml (mkdir -p {home} && cp dagster.yaml "
            f"{home}/), or {DEMO_HINT}."
        )
    return home


# Provider names a job can use, and the variable that configures each (None: nothing to set).
_PROVIDER_ROOTS = {"archive": "S2_ARCHIVE_ROOT", "local": "S2_ARCHIVE_ROOT", "eodc": "S2_EODC_ROOT"}
_DEFAULT_ROOTS = {"S2_EODC_ROOT": "/eodc/products/copernicus.eu"}


def provider_problem(provider: str) -> str | None:
    """Why ``provider`` cannot search from this machine's settings, or None."""
    variable = _PROVIDER_ROOTS.get(provider)
    if variable is None:
        return None
    value = os.environ.get(variable, _DEFAULT_ROOTS.get(variable, "")).strip()
    if not value:
        return (
            f"provider {provider!r} needs {variable}, which is not set: set it to the folder "
            f"of product zips (the demo's: {DEMO_HINT})"
        )
    if not Path(value).is_dir():
        return f"provider {provider!r}: {variable}={value} does not exist; set it to the folder of product zips"
    return None
