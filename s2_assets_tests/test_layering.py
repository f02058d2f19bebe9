"""The package's layering stays true: pure domains import no Dagster, nothing imports upward.

Layers, bottom to top (a module may import its own layer and the ones below):

0. the vocabulary at the package root: ``products``, ``specs``, ``errors``, ``settings``,
   ``partitions``;
1. the pure domains: ``library``, ``providers``, ``raster``, ``sen2cor``;
2. what is made from them: ``outputs`` (STAC, time series, composites' cube);
3. the Dagster and command-line faces: ``jobs``, ``assets``, ``resources``;
4. ``definitions``, ``cli`` (with ``cli_env``, its settings file) and ``demo``, which put it
   all together (the demo builds synthetic products and runs the whole graph on them).

Layers 0-2 import no Dagster, except ``partitions``, which is where the partitions
definitions live (their ``TileDate`` parsing is pure and tested on its own).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "s2_assets"

LAYER = {
    "__init__": 0,
    "products": 0,
    "specs": 0,
    "errors": 0,
    "settings": 0,
    "partitions": 0,
    "library": 1,
    "providers": 1,
    "raster": 1,
    "sen2cor": 1,
    "outputs": 2,
    "jobs": 3,
    "assets": 3,
    "resources": 3,
    "definitions": 4,
    "cli": 4,
    "cli_env": 4,
    "demo": 4,
}
DAGSTER_ALLOWED_BELOW_FACES = {"partitions"}
FACES = 3


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def room(path: Path) -> str:
    """The top-level name under ``s2_assets`` a file belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported(path: Path) -> set[str]:
    """Every absolute module a file imports (module-level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "s2_assets":
                names.update(f"s2_assets.{alias.name}" for alias in node.names)
    return names


def test_every_room_has_a_layer() -> None:
    rooms = {room(path) for path in modules()}
    assert rooms <= set(LAYER), f"give these a layer: {sorted(rooms - set(LAYER))}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_import(path: Path) -> None:
    own = LAYER[room(path)]
    upward = sorted(
        name
        for name in imported(path)
        if name.startswith("s2_assets.")
        and name.split(".")[1] in LAYER
        and LAYER[name.split(".")[1]] > own
    )
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {own}) imports upward: {upward}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_layers_import_no_dagster(path: Path) -> None:
    name = room(path)
    if LAYER[name] >= FACES or name in DAGSTER_ALLOWED_BELOW_FACES:
        return
    dagster = sorted(n for n in imported(path) if n.split(".")[0].startswith("dagster"))
    assert not dagster, f"{path.relative_to(PACKAGE)} is pure but imports {dagster}"
