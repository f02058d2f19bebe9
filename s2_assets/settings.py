"""Settings read when the code location loads (never at import): where things are.

Every setting is an environment variable with a default that works on a laptop. Besides the
ones ``Settings`` holds, ``RESOURCE_ENV`` lists variables that set one resource field each;
``definitions.py`` binds those set in the environment with ``dg.EnvVar``, so their values are
read by each run, never shown in the UI, and a wrong one is refused here, when the code
location loads, naming the variable. ``docs/configuration.md`` describes them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from s2_assets.partitions import DEFAULT_DATE_START

DEFAULT_ROOT_ENV = "S2_DATA_HOME"


def default_root() -> Path:
    """``$S2_DATA_HOME`` if set, else ``~/sen2chain_data`` (sen2chain's default)."""
    configured = os.environ.get(DEFAULT_ROOT_ENV)
    return Path(configured).expanduser() if configured else Path.home() / "sen2chain_data"


@dataclass(frozen=True)
class ResourceEnv:
    """One environment variable that sets one field of one resource.

    Attributes:
        resource: The resource key in ``definitions.py`` (``cop_dataspace`` sits inside
            ``providers``).
        field: The resource's field.
        kind: ``url``, ``path`` (both strings) or ``int``, with ``minimum`` its least value.
    """

    resource: str
    field: str
    kind: str
    minimum: int = 0


RESOURCE_ENV: dict[str, ResourceEnv] = {
    "S2_CDSE_CATALOGUE_URL": ResourceEnv("cop_dataspace", "catalogue_url", "url"),
    "S2_CDSE_DOWNLOAD_URL": ResourceEnv("cop_dataspace", "download_url", "url"),
    "S2_CDSE_TOKEN_URL": ResourceEnv("cop_dataspace", "token_url", "url"),
    "S2_CDSE_LOGIN_COOLDOWN_S": ResourceEnv("cop_dataspace", "login_cooldown_seconds", "int"),
    "S2_STATE_DIR": ResourceEnv("cop_dataspace", "state_dir", "path"),
    "S2_CHILLER_CHUNK_SIZE": ResourceEnv("chiller", "chunk_size", "int", 1),
    "S2_CHILLER_MAX_OPEN_JOBS": ResourceEnv("chiller", "max_open_jobs", "int", 1),
    "S2_SEN2COR_TIMEOUT_S": ResourceEnv("sen2cor", "timeout_s", "int", 1),
    "S2_SEN2COR_MAX_PARALLEL": ResourceEnv("sen2cor", "max_parallel", "int"),
}
SEN2COR_PATHS_ENV = ("S2_SEN2COR_PATHS", "SEN2CHAIN_SEN2COR_BASHRC_PATHS")


def split_paths(text: str) -> tuple[str, ...]:
    """Installation paths separated by ``:`` or new lines, blanks dropped."""
    return tuple(part.strip() for part in text.replace("\n", ":").split(":") if part.strip())


def sen2cor_paths_from_env() -> tuple[str, ...]:
    """``$S2_SEN2COR_PATHS``, else sen2chain's ``$SEN2CHAIN_SEN2COR_BASHRC_PATHS``."""
    for name in SEN2COR_PATHS_ENV:
        if os.environ.get(name, "").strip():
            return split_paths(os.environ[name])
    return ()


def resource_env_set() -> frozenset[str]:
    """The ``RESOURCE_ENV`` variables set (non-empty) in the environment, each checked.

    Raises:
        ValueError: naming the variable, its value and what is valid.
    """
    found = set()
    for name, spec in RESOURCE_ENV.items():
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        if spec.kind == "int":
            try:
                number = int(value)
            except ValueError:
                number = None
            if number is None or number < spec.minimum:
                raise ValueError(
                    f"{name}={value!r} is not valid: expected a whole number >= {spec.minimum}"
                )
        elif spec.kind == "url" and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"{name}={value!r} is not valid: expected an http(s) URL")
        found.add(name)
    return frozenset(found)


@dataclass(frozen=True)
class Settings:
    """What the code location is built from.

    Attributes:
        data_home: Library root (``S2_DATA_HOME``, default ``~/sen2chain_data``).
        archive_root: Local archive of product zips (``S2_ARCHIVE_ROOT``); empty: none.
        date_start: First day of the ``date`` partitions (``S2_DATE_START``).
        date_end: Last day of the ``date`` partitions (``S2_DATE_END``); empty: today.
        default_provider: Provider for tasks that name none (``S2_DEFAULT_PROVIDER``).
        timezone: Time zone of the job files' ``timing`` crons (``S2_TIMEZONE``).
        eodc_root: EODC's product tree (``S2_EODC_ROOT``).
        chiller_url: EODC's Chiller staging service (``S2_CHILLER_URL``); empty: no staging,
            EODC products are read directly.
        cdse_credentials: Whether ``CDSE_USERNAME`` and ``CDSE_PASSWORD`` are set (their
            values are only read by the runs that need them).
        sen2cor_paths: Sen2Cor installs (``L2A_Bashrc`` or ``L2A_Process``), from
            ``S2_SEN2COR_PATHS`` separated by ``:`` or new lines (sen2chain's
            ``SEN2CHAIN_SEN2COR_BASHRC_PATHS`` is read too).
        cdse_trusted_hosts: Extra hosts a CDSE download may be redirected to with the token
            (``S2_CDSE_TRUSTED_HOSTS``, comma-separated), e.g. a mirror's byte server.
        resource_env: The ``RESOURCE_ENV`` variables that are set.
    """

    data_home: Path
    archive_root: str = ""
    date_start: str = DEFAULT_DATE_START
    date_end: str = ""
    default_provider: str = "archive"
    timezone: str = "UTC"
    eodc_root: str = "/eodc/products/copernicus.eu"
    chiller_url: str = ""
    cdse_credentials: bool = False
    sen2cor_paths: tuple[str, ...] = ()
    cdse_trusted_hosts: tuple[str, ...] = ()
    resource_env: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_env(cls) -> Settings:
        start = os.environ.get("S2_DATE_START", DEFAULT_DATE_START)
        end = os.environ.get("S2_DATE_END", "").strip()
        for name, value in (("S2_DATE_START", start), ("S2_DATE_END", end or start)):
            try:
                date.fromisoformat(value)
            except ValueError as exc:
                raise ValueError(f"{name}={value!r} is not a date (expected YYYY-MM-DD)") from exc
        if end and end < start:
            raise ValueError(f"S2_DATE_END={end} is before S2_DATE_START={start}")
        return cls(
            data_home=default_root(),
            archive_root=os.environ.get("S2_ARCHIVE_ROOT", ""),
            date_start=start,
            date_end=end,
            default_provider=os.environ.get("S2_DEFAULT_PROVIDER", "archive"),
            timezone=os.environ.get("S2_TIMEZONE", "UTC"),
            eodc_root=os.environ.get("S2_EODC_ROOT", "/eodc/products/copernicus.eu"),
            chiller_url=os.environ.get("S2_CHILLER_URL", "").strip(),
            sen2cor_paths=sen2cor_paths_from_env(),
            cdse_trusted_hosts=tuple(
                host.strip().lower()
                for host in os.environ.get("S2_CDSE_TRUSTED_HOSTS", "").split(",")
                if host.strip()
            ),
            resource_env=resource_env_set(),
            cdse_credentials=bool(
                os.environ.get("CDSE_USERNAME") and os.environ.get("CDSE_PASSWORD")
            ),
        )

    @property
    def first_day(self) -> date:
        return date.fromisoformat(self.date_start)
