"""The product library as a Dagster resource."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from s2_assets.library.tree import Library
from s2_assets.settings import default_root


class LibraryResource(dg.ConfigurableResource):
    """The sen2chain-style product library every asset reads and writes.

    Attributes:
        root: Library root; empty means ``$S2_DATA_HOME``, else ``~/sen2chain_data``.
    """

    root: str = ""

    def library(self) -> Library:
        return Library(Path(self.root) if self.root else default_root())
