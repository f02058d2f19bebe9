"""Fixtures for the CDSE tests: real synthetic product zips (built once), a stand-in started
and stopped per test, and a client pointed at it with tiny waits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from s2_assets.demo.products import build_safe, zip_safe
from s2_assets.providers.cdse import CdseProvider, CdseSettings, Credentials
from s2_assets_tests.cdse_standin import CdseStandin, StandinProduct

SENSING = datetime(2024, 1, 1, 6, 35, 11, tzinfo=UTC)
# Seven L1C acquisitions five days apart, for paging and window splitting.
SERIES = [SENSING + timedelta(days=5 * i) for i in range(1, 8)]


class SleepRecorder:
    """Records the waits the client asks for and waits a capped, tiny time for real."""

    def __init__(self, cap: float = 0.01) -> None:
        self.calls: list[float] = []
        self.cap = cap

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        time.sleep(min(seconds, self.cap))


@pytest.fixture(scope="session")
def cdse_zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Product zips by role: ``l1c``, ``l2a``, ``l1c_n0509`` (older baseline, same datatake),
    ``other_tile`` and ``series0..6`` (small L1Cs)."""
    base = tmp_path_factory.mktemp("cdse_zips")
    specs: dict[str, dict[str, object]] = {
        "l1c": {"level": "L1C", "sensing": SENSING, "size": 60},
        "l2a": {"level": "L2A", "sensing": SENSING, "size": 60},
        "l1c_n0509": {"level": "L1C", "sensing": SENSING, "baseline": "05.09", "size": 12},
        "other_tile": {"level": "L1C", "sensing": SENSING, "tile": "40KCA", "size": 12},
    }
    for index, sensing in enumerate(SERIES):
        specs[f"series{index}"] = {"level": "L1C", "sensing": sensing, "size": 12, "seed": index}
    zips = {}
    for role, spec in specs.items():
        safe = build_safe(base / "safe", **spec)  # type: ignore[arg-type]
        zips[role] = zip_safe(safe, base / "zip" / f"{safe.stem}.zip")
    return zips


@pytest.fixture
def cdse(cdse_zips: dict[str, Path]) -> Iterator[CdseStandin]:
    """A running stand-in serving every product of ``cdse_zips``; cloud cover 10 % per
    series step so cloud filters have something to cut."""
    standin = CdseStandin()
    for role, path in cdse_zips.items():
        cloud = 10.0 * (int(role[-1]) + 1) if role.startswith("series") else 20.0
        standin.add(StandinProduct.from_zip(path, cloud_cover=cloud))
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def make_settings(standin: CdseStandin, **overrides: object) -> CdseSettings:
    """Client settings aimed at the stand-in, with waits in milliseconds."""
    values: dict[str, object] = {
        "catalogue_url": standin.catalogue_url,
        "download_url": standin.download_url,
        "token_url": standin.token_url,
        "trusted_hosts": ("localhost",),
        "backoff": 0.001,
        "max_backoff": 0.01,
        "chunk_size": 8192,
        "read_timeout": 5.0,
        "connect_timeout": 2.0,
    }
    values.update(overrides)
    return CdseSettings(**values)  # type: ignore[arg-type]


def make_provider(
    standin: CdseStandin,
    sleeps: SleepRecorder,
    *,
    password: str | None = None,
    **overrides: object,
) -> CdseProvider:
    credentials = Credentials(standin.username, standin.password if password is None else password)
    return CdseProvider(make_settings(standin, **overrides), credentials, sleep=sleeps)
