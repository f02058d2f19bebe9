"""Domain errors: one base class, one subclass per kind of bad input or failure.

Every message names the thing at fault (file, line, value, product) and, where it helps,
lists what would have been valid. Messages never contain secrets.
"""

from pathlib import Path


class S2AssetsError(Exception):
    """Base of every error raised by s2_assets."""


class TileIdError(S2AssetsError, ValueError):
    """A string is not a valid Sentinel-2 MGRS tile id."""


class ProductNameError(S2AssetsError, ValueError):
    """A string is not a valid Sentinel-2 product name."""


class MetadataError(S2AssetsError):
    """A product's metadata XML is missing or unreadable."""


class ArchiveError(S2AssetsError):
    """A product zip is malformed, unsafe or incomplete."""


class LibraryError(S2AssetsError):
    """The product library is in a state we cannot work with."""


class ProviderError(S2AssetsError):
    """A provider (archive, CDSE, EODC) could not search or deliver a product."""


class ProductOfflineError(ProviderError):
    """The product exists but is not online now; try again on a later round."""


class MaskSpecError(S2AssetsError, ValueError):
    """A cloud-mask spec string is not one of the valid forms."""


class IndexNameError(S2AssetsError, ValueError):
    """An index name is not one of the twelve known indices."""


class JobFileError(S2AssetsError, ValueError):
    """A sen2chain job file is malformed."""


class StagingError(S2AssetsError):
    """A Chiller staging job failed, timed out or returned something unreadable."""


class Sen2CorError(S2AssetsError):
    """Sen2Cor failed or produced an invalid product."""


class CorruptProductError(ArchiveError):
    """A product unpacked but its metadata or an image is damaged: it was quarantined.

    Attributes:
        product_id: The product.
        problems: Each damaged file and why.
        quarantine: The folder it was moved to (with its ``REASON.txt``).
    """

    def __init__(
        self, message: str, *, product_id: str, problems: list[str], quarantine: Path
    ) -> None:
        super().__init__(message)
        self.product_id = product_id
        self.problems = problems
        self.quarantine = quarantine
