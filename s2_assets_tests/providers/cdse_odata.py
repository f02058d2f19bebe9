"""The OData ``$filter`` subset of the CDSE catalogue, parsed for real, for the stand-in.

Grammar: ``or``/``and``/``not`` and parentheses over comparisons (``eq ne lt le gt ge``) of
properties (``Name``, ``ContentDate/Start``, ``Collection/Name``, ``Online`` …) with string,
number, datetime and boolean literals; ``contains``/``startswith``/``endswith``; and
``Attributes/OData.CSC.<Type>Attribute/any(att:...)`` over the product's typed attributes.
Anything else is an ``ODataError``, which the stand-in answers with 400 as CDSE does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any


class ODataError(ValueError):
    """A query the stand-in (like the real catalogue) rejects with 400."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z)"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>[(),:])|(?P<word>[A-Za-z_][A-Za-z0-9_./]*))"
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a is not None and a < b,
    "le": lambda a, b: a is not None and a <= b,
    "gt": lambda a, b: a is not None and a > b,
    "ge": lambda a, b: a is not None and a >= b,
}
_FUNCTIONS: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda a, b: b in a,
    "startswith": lambda a, b: a.startswith(b),
    "endswith": lambda a, b: a.endswith(b),
}
_ANY = re.compile(r"^Attributes/OData\.CSC\.(String|Double|Integer|DateTimeOffset)Attribute/any$")
Env = dict[str, Any]
Predicate = Callable[[Env], bool]
Operand = Callable[[Env], Any]


def _parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class FilterParser:
    """Recursive-descent parser of an OData ``$filter`` into a predicate over an entity."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if text[position:].strip() == "":
                    break
                raise ODataError(f"Invalid filter near {text[position : position + 30]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match[kind]))
            position = match.end()
        self.index = 0

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.index != len(self.tokens):
            raise ODataError(f"Invalid filter: unexpected {self.tokens[self.index][1]!r}")
        return predicate

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.index] if self.index < len(self.tokens) else ("end", "")

    def _take(self, value: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token[0] == "end" or (value is not None and token[1] != value):
            raise ODataError(f"Invalid filter: expected {value or 'more'}, got {token[1]!r}")
        self.index += 1
        return token

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._peek() == ("word", "or"):
            self._take()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else lambda env: any(p(env) for p in parts)

    def _and(self) -> Predicate:
        parts = [self._unary()]
        while self._peek() == ("word", "and"):
            self._take()
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else lambda env: all(p(env) for p in parts)

    def _unary(self) -> Predicate:
        if self._peek() == ("word", "not"):
            self._take()
            inner = self._unary()
            return lambda env: not inner(env)
        if self._peek() == ("punct", "("):
            self._take()
            inner = self._or()
            self._take(")")
            return inner
        kind, word = self._peek()
        if kind == "word" and word in _FUNCTIONS:
            self._take()
            self._take("(")
            left = self._operand()
            self._take(",")
            right = self._operand()
            self._take(")")
            function = _FUNCTIONS[word]
            return lambda env: function(str(left(env) or ""), str(right(env)))
        if kind == "word" and (match := _ANY.match(word)):
            return self._any(match[1])
        left = self._operand()
        operator = self._take()[1]
        if operator not in _COMPARE:
            raise ODataError(f"Invalid filter: unknown operator {operator!r}")
        right = self._operand()
        compare = _COMPARE[operator]
        return lambda env: compare(*_coerce(left(env), right(env)))

    def _any(self, kind: str) -> Predicate:
        self._take()
        self._take("(")
        variable = self._take()[1]
        self._take(":")
        inner = self._or()
        self._take(")")

        def predicate(env: Env) -> bool:
            attributes = env["entity"].get("Attributes") or []
            return any(
                inner({**env, variable: a}) for a in attributes if a.get("ValueType") == kind
            )

        return predicate

    def _operand(self) -> Operand:
        kind, text = self._take()
        if kind == "str":
            value: Any = text[1:-1].replace("''", "'")
            return lambda env: value
        if kind == "dt":
            moment = _parse_datetime(text)
            return lambda env: moment
        if kind == "num":
            number = float(text)
            return lambda env: number
        if kind == "word" and text in ("true", "false", "null"):
            constant = {"true": True, "false": False, "null": None}[text]
            return lambda env: constant
        if kind == "word":
            return lambda env: resolve(env, text)
        raise ODataError(f"Invalid filter: unexpected {text!r}")


def resolve(env: Env, path: str) -> Any:
    head, _, rest = path.partition("/")
    if head in env and head != "entity":
        attribute = env[head]
        if rest == "Name":
            return attribute.get("Name")
        if re.fullmatch(r"OData\.CSC\.\w+Attribute/Value", rest):
            return attribute.get("Value")
        raise ODataError(f"Invalid filter: unknown attribute path {path!r}")
    if path == "Collection/Name":
        return "SENTINEL-2"
    value: Any = env["entity"]
    for part in path.split("/"):
        if not isinstance(value, dict) or part not in value:
            raise ODataError(f"Invalid filter: unknown property {path!r}")
        value = value[part]
    return value


def _coerce(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(right, datetime) and isinstance(left, str):
        return _parse_datetime(left), right
    if isinstance(right, float) and isinstance(left, int | float):
        return float(left), right
    return left, right


def parse_filter(text: str) -> Predicate:
    """The predicate of an OData ``$filter`` expression.

    Raises:
        ODataError: for syntax the catalogue would reject.
    """
    return FilterParser(text).parse()
