"""The shared vocabulary of what to produce: cloud-mask specs and index names. Pure.

Mask specs are written exactly as sen2chain writes them (``CM001``, ``CM002-B11``,
``CM003-PRB<p>-ITER<n>``, ``CM004-CSH<0|1>-CMP<0|1>-CHP<0|1>-TCI<0|1>-ITER<n>``), with
sen2chain's defaults for missing parameters (probability 1, 5 iterations, every SCL flag on).
Unlike sen2chain, an unknown spec is an error, never a silent CM001 (its defect D5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from s2_assets.errors import IndexNameError, MaskSpecError

INDEX_NAMES = (
    "NDVI", "NDWIMCF", "NDWIGAO", "MNDWI", "NDRE", "IRECI",
    "BIGR", "BIRNIR", "BIBG", "EVI", "NBR", "NDBI",
)  # fmt: skip

VALID_MASK_FORMS = (
    "CM001",
    "CM002-B11",
    "CM003-PRB<p>-ITER<n>",
    "CM004-CSH<0|1>-CMP<0|1>-CHP<0|1>-TCI<0|1>-ITER<n>",
)
DEFAULT_MASK_SPEC = "CM004-CSH1-CMP1-CHP1-TCI1-ITER0"

_DEFAULT_PROBABILITY = 1
_DEFAULT_ITERATIONS = 5
_FLAG_NAMES = ("CSH", "CMP", "CHP", "TCI")
_PARAM_RE = re.compile(r"^(PRB|ITER|CSH|CMP|CHP|TCI)(\d+|TRUE|FALSE)$")
_ALLOWED_PARAMS = {"CM003": {"PRB", "ITER"}, "CM004": {"ITER", *_FLAG_NAMES}}


@dataclass(frozen=True)
class MaskSpec:
    """A parsed cloud-mask spec. ``str(spec)`` is its canonical sen2chain suffix."""

    version: str
    probability: int = _DEFAULT_PROBABILITY
    iterations: int = _DEFAULT_ITERATIONS
    cloud_shadow: bool = True
    cloud_medium: bool = True
    cloud_high: bool = True
    thin_cirrus: bool = True

    def __str__(self) -> str:
        if self.version == "CM001":
            return "CM001"
        if self.version == "CM002":
            return "CM002-B11"
        if self.version == "CM003":
            return f"CM003-PRB{self.probability}-ITER{self.iterations}"
        flags = (self.cloud_shadow, self.cloud_medium, self.cloud_high, self.thin_cirrus)
        parts = "-".join(f"{n}{int(f)}" for n, f in zip(_FLAG_NAMES, flags, strict=True))
        return f"CM004-{parts}-ITER{self.iterations}"

    @property
    def scl_classes(self) -> tuple[int, ...]:
        """CM004: the SCL classes this spec masks (3 shadow, 8/9 cloud, 10 cirrus)."""
        chosen = (
            (self.cloud_shadow, 3),
            (self.cloud_medium, 8),
            (self.cloud_high, 9),
            (self.thin_cirrus, 10),
        )
        return tuple(cls for on, cls in chosen if on)


def _mask_error(value: str, why: str) -> MaskSpecError:
    return MaskSpecError(
        f"invalid cloud-mask spec {value!r}: {why}; valid forms: {', '.join(VALID_MASK_FORMS)}"
    )


def parse_mask_spec(value: str) -> MaskSpec:
    """Parse a mask spec such as ``CM003-PRB20-ITER3``.

    Raises:
        MaskSpecError: naming the value and listing the valid forms.
    """
    text = str(value).strip().upper()
    version, *params = text.split("-")
    if version in ("CM001", "CM002"):
        expected = [] if version == "CM001" else [["B11"], []]
        if (version == "CM001" and params) or (version == "CM002" and params not in expected):
            raise _mask_error(value, f"{version} takes no parameters but {'-'.join(params)!r}")
        return MaskSpec(version=version)
    if version not in _ALLOWED_PARAMS:
        raise _mask_error(value, f"unknown mask version {version!r}")
    fields: dict[str, int | bool] = {}
    seen: set[str] = set()
    for param in params:
        match = _PARAM_RE.match(param)
        if not match or match[1] not in _ALLOWED_PARAMS[version] or match[1] in seen:
            raise _mask_error(value, f"unexpected parameter {param!r} for {version}")
        name, raw = match[1], match[2]
        seen.add(name)
        if name in _FLAG_NAMES:
            if raw not in ("0", "1", "TRUE", "FALSE"):
                raise _mask_error(value, f"{name} must be 0 or 1, not {raw!r}")
            fields[name] = raw in ("1", "TRUE")
        elif raw in ("TRUE", "FALSE"):
            raise _mask_error(value, f"{name} takes a whole number, not {raw!r}")
        elif name == "PRB" and not 0 <= int(raw) <= 100:
            raise _mask_error(value, f"PRB is a probability 0..100, not {raw}")
        else:
            fields[name] = int(raw)
    return MaskSpec(
        version=version,
        probability=int(fields.get("PRB", _DEFAULT_PROBABILITY)),
        iterations=int(fields.get("ITER", _DEFAULT_ITERATIONS)),
        cloud_shadow=bool(fields.get("CSH", True)),
        cloud_medium=bool(fields.get("CMP", True)),
        cloud_high=bool(fields.get("CHP", True)),
        thin_cirrus=bool(fields.get("TCI", True)),
    )


def parse_index_name(value: str) -> str:
    """Canonical (upper-case) index name.

    Raises:
        IndexNameError: naming the value and listing the twelve valid names.
    """
    name = str(value).strip().upper()
    if name not in INDEX_NAMES:
        raise IndexNameError(f"unknown index {value!r}; valid: {', '.join(INDEX_NAMES)} (or All)")
    return name


@dataclass(frozen=True)
class RemoveRule:
    """Delete products of ``level`` after the task ran, if cloud cover >= ``min_cloud_cover``.

    ``scope`` ``new`` means products this run downloaded (L1C) or computed (L2A); ``all``
    means every product of the tile, whatever the task's date window. A product whose cloud
    cover is unknown is never removed.
    """

    level: Literal["l1c", "l2a"]
    scope: Literal["new", "all"] = "new"
    min_cloud_cover: int = 0

    def matches(self, cloud_cover: float | None) -> bool:
        """True when a product with this cloud cover falls under the rule."""
        return cloud_cover is not None and cloud_cover >= self.min_cloud_cover

    def __str__(self) -> str:
        suffix = f"-cc{self.min_cloud_cover}" if self.min_cloud_cover else ""
        return f"{self.level}-{self.scope}{suffix}"
