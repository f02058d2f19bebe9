"""Product providers as one Dagster resource, looked up by the name a job file uses."""

from pathlib import Path

import dagster as dg

from s2_assets.errors import ProviderError
from s2_assets.providers.archive import DEFAULT_TEMPLATE, ArchiveProvider
from s2_assets.providers.base import Provider
from s2_assets.resources.cdse import CdseResource


class ArchiveResource(dg.ConfigurableResource):
    """A folder tree of product zips (a local archive, or EODC's).

    Attributes:
        root: The tree's root; empty means this provider is not configured.
        template: Where a zip lies below the root.
        read_metadata: Read cloud cover from each zip while searching (off for tape).
    """

    root: str = ""
    template: str = DEFAULT_TEMPLATE
    read_metadata: bool = True

    def provider(self, name: str) -> ArchiveProvider:
        if not self.root:
            variable = "S2_EODC_ROOT" if name == "eodc" else "S2_ARCHIVE_ROOT"
            raise ProviderError(
                f"provider {name!r} has no archive root configured: set {variable} to the "
                "folder of product zips"
            )
        return ArchiveProvider(
            Path(self.root), name=name, template=self.template, read_metadata=self.read_metadata
        )


class ProvidersResource(dg.ConfigurableResource):
    """Every configured provider, by the names job files use in their ``provider`` column.

    Attributes:
        default: Provider for manual runs of tiles no job lists.
        archive: The local archive (names ``archive`` and ``local``).
        eodc: EODC's tape-backed tree (name ``eodc``); cloud cover is read after staging.
        cop_dataspace: The Copernicus Data Space (name ``cop_dataspace``).
    """

    default: str = "archive"
    archive: ArchiveResource
    eodc: ArchiveResource
    cop_dataspace: CdseResource

    def names(self) -> list[str]:
        return ["archive", "local", "eodc", "cop_dataspace"]

    def get(self, name: str | None = None) -> Provider:
        """The provider called ``name`` (the default when empty).

        Raises:
            ProviderError: naming the provider and listing the configured ones.
        """
        chosen = (name or self.default).strip().lower()
        if chosen in ("archive", "local"):
            return self.archive.provider("archive")
        if chosen == "eodc":
            return self.eodc.provider("eodc")
        if chosen == "cop_dataspace":
            return self.cop_dataspace.provider()
        raise ProviderError(f"unknown provider {chosen!r}; valid: {', '.join(self.names())}")
