"""Sen2Cor as a Dagster resource: which installations, which options, how long to wait."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from s2_assets.errors import Sen2CorError
from s2_assets.sen2cor.runner import (
    Sen2CorInstall,
    Sen2CorSettings,
    check_extra_args,
    choose_install,
    discover_install,
    run_sen2cor,
)
from s2_assets.sen2cor.slots import default_sen2cor_slots
from s2_assets.settings import SEN2COR_PATHS_ENV, sen2cor_paths_from_env


class Sen2CorInstallation(dg.Config):
    """One Sen2Cor installation.

    Attributes:
        path: ``L2A_Bashrc`` of an ESA bundle install (sourced before ``L2A_Process``), an
            ``L2A_Process`` executable, a command name on ``PATH``, or the install folder.
        version: ``XX.YY.ZZ``; empty means read ``Sen2Cor-XX.YY.ZZ`` from the path, as
            ESA's installer names its folder.
    """

    path: str
    version: str | None = None


class Sen2CorResource(dg.ConfigurableResource):
    """ESA's Sen2Cor, which makes L2A from L1C; the version is chosen per product.

    Sen2Cor is memory hungry (several GB per product): ``max_parallel`` bounds how many run
    at once on the machine (see ``s2_assets.sen2cor.slots``).

    Attributes:
        installations: Every usable install. For an L1C of baseline >= 04.00 the newest
            >= 02.10.01 runs; 02.06 to 04.00 the newest; older the newest < 02.10.01.
            Empty: read ``S2_SEN2COR_PATHS`` (or ``SEN2CHAIN_SEN2COR_BASHRC_PATHS``) when a
            run needs Sen2Cor, so run config that sets only ``timeout_s`` need not repeat
            them (Dagster replaces a resource's whole config with the run's).
        gipp: An ``L2A_GIPP.xml`` passed as ``--GIP_L2A``; empty for Sen2Cor's own.
        resolution: 10 or 20 (``--resolution``); empty processes 20 m and 10 m.
        extra_args: More ``L2A_Process`` arguments, e.g. ``["--debug"]``. The ones set
            from the fields above, and ``--mode``/``--tile``/``--datastrip``, are refused.
        timeout_s: Whole seconds one product may take before Sen2Cor and all its children
            are killed (sen2chain waits 2 h).
        kill_grace_s: Seconds between SIGTERM and SIGKILL on timeout.
        max_parallel: Sen2Cor processes at once on this machine, across runs (a job's
            ``nb_proc`` lowers it further); 0 means one per 4 GB of memory.
    """

    installations: list[Sen2CorInstallation] = []
    max_parallel: int = 0
    gipp: str | None = None
    resolution: int | None = None
    extra_args: list[str] = []
    timeout_s: int = 7200
    kill_grace_s: float = 30.0

    def slots(self) -> int:
        """How many Sen2Cor processes may run at once."""
        return self.max_parallel if self.max_parallel > 0 else default_sen2cor_slots()

    def installs(self) -> list[Sen2CorInstall]:
        """The configured installations, checked (exist, executable, known version).

        Raises:
            Sen2CorError: naming the installation at fault, or when none is configured.
        """
        if self.installations:
            return [discover_install(i.path, i.version) for i in self.installations]
        paths = sen2cor_paths_from_env()
        if not paths:
            raise Sen2CorError(
                f"no Sen2Cor installation configured: set {SEN2COR_PATHS_ENV[0]} (or "
                "Sen2CorResource.installations) to the path of an L2A_Bashrc or L2A_Process"
            )
        return [discover_install(path) for path in paths]

    def settings(self) -> Sen2CorSettings:
        """The per-run options, checked.

        Raises:
            Sen2CorError: on a reserved extra argument or a non-positive timeout.
        """
        check_extra_args(self.extra_args)
        if self.timeout_s <= 0 or self.kill_grace_s < 0:
            raise Sen2CorError(
                f"Sen2Cor timeout_s={self.timeout_s} and kill_grace_s={self.kill_grace_s}: "
                "timeout_s must be > 0 and kill_grace_s >= 0"
            )
        return Sen2CorSettings(
            resolution=self.resolution,
            gipp=Path(self.gipp).expanduser() if self.gipp else None,
            extra_args=tuple(self.extra_args),
            timeout_s=float(self.timeout_s),
            kill_grace_s=self.kill_grace_s,
        )

    def install_for(self, baseline: str) -> Sen2CorInstall:
        """The installation that will process an L1C of processing ``baseline``."""
        return choose_install(self.installs(), baseline)

    def run(self, l1c_safe: Path, scratch_root: Path, *, hold_fds: Sequence[int] = ()) -> Path:
        """Make the L2A of one unpacked L1C; return the finished SAFE inside ``scratch_root``.

        The SAFE carries sen2chain's local L2A name and ``sen2chain_info.xml``; publish it
        with one rename (``scratch_root`` must be on the library's filesystem, e.g. a
        ``Library.scratch()`` folder) and remove ``scratch_root`` afterwards. ``hold_fds``
        (the Sen2Cor slot's lock) are inherited by Sen2Cor and held until it is gone.

        Raises:
            Sen2CorError: the run failed, timed out or its product is incomplete; the
                message ends with Sen2Cor's last log lines. Nothing is left behind.
        """
        return run_sen2cor(
            l1c_safe,
            scratch_root,
            self.installs(),
            self.settings(),
            logger=dg.get_dagster_logger(),
            hold_fds=hold_fds,
        )
