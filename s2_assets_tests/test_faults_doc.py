"""The fault table (docs/faults.md) names only tests that exist, and every fault switch of
the stand-ins appears in it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DOC = TESTS.parent / "docs" / "faults.md"
_NAMED = re.compile(r"`([\w/]+\.py)::(test_\w+)(?:\[([\w-]+)\])?`")


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_test_the_fault_table_names_exists() -> None:
    named = _NAMED.findall(DOC.read_text(encoding="utf-8"))
    assert len(named) > 60
    for file, name, case in named:
        path = TESTS / file
        assert path.is_file(), f"{file} does not exist"
        assert name in _test_functions(path), f"{file}::{name} does not exist"
        if case:
            assert f'"{case}"' in path.read_text(encoding="utf-8"), f"{file}::{name}[{case}]"


def test_every_stand_in_fault_is_in_the_table() -> None:
    from s2_assets_tests.cdse_standin import Faults
    from s2_assets_tests.sen2cor_standin import MODES

    text = DOC.read_text(encoding="utf-8")
    switches = [*Faults.__dataclass_fields__, *(m for m in MODES if m != "ok")]
    switches += ["reply_url", "polls_before_finished", "error", "not_staged", "finished_style",
                 "state_style", "staged_list_missing", "upload_reply", "job_reply", "inject",
                 "ColdArchive", "bad_checksums", "online"]  # fmt: skip
    assert [s for s in switches if f"`{s}" not in text] == []
