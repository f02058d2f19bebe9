"""Settings read when the code location loads (never at import): where things are.

Every setting is an environment variable with a default that works on a laptop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from s2_assets.library import default_root
from s2_assets.partitions import DEFAULT_DATE_START


@dataclass(frozen=True)
class Settings:
    """What the code location is built from.

    Attributes:
        data_home: Library root (``S2_DATA_HOME``, default ``~/sen2chain_data``).
        archive_root: Local archive of product zips (``S2_ARCHIVE_ROOT``); empty: none.
        date_start: First day of the ``date`` partitions (``S2_DATE_START``).
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
    """

    data_home: Path
    archive_root: str = ""
    date_start: str = DEFAULT_DATE_START
    default_provider: str = "archive"
    timezone: str = "UTC"
    eodc_root: str = "/eodc/products/copernicus.eu"
    chiller_url: str = ""
    cdse_credentials: bool = False
    sen2cor_paths: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> Settings:
        start = os.environ.get("S2_DATE_START", DEFAULT_DATE_START)
        try:
            date.fromisoformat(start)
        except ValueError as exc:
            raise ValueError(
                f"S2_DATE_START={start!r} is not a date (expected YYYY-MM-DD)"
            ) from exc
        return cls(
            data_home=default_root(),
            archive_root=os.environ.get("S2_ARCHIVE_ROOT", ""),
            date_start=start,
            default_provider=os.environ.get("S2_DEFAULT_PROVIDER", "archive"),
            timezone=os.environ.get("S2_TIMEZONE", "UTC"),
            eodc_root=os.environ.get("S2_EODC_ROOT", "/eodc/products/copernicus.eu"),
            chiller_url=os.environ.get("S2_CHILLER_URL", "").strip(),
            sen2cor_paths=tuple(
                part.strip()
                for part in os.environ.get(
                    "S2_SEN2COR_PATHS", os.environ.get("SEN2CHAIN_SEN2COR_BASHRC_PATHS", "")
                )
                .replace("\n", ":")
                .split(":")
                if part.strip()
            ),
            cdse_credentials=bool(
                os.environ.get("CDSE_USERNAME") and os.environ.get("CDSE_PASSWORD")
            ),
        )

    @property
    def first_day(self) -> date:
        return date.fromisoformat(self.date_start)
