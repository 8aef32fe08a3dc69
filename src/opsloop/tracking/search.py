"""MLflow's search language, compiled into SQLAlchemy Core clauses.

A filter is one or more comparisons joined by ``and`` (case-insensitive; there is no
``or`` and there are no parentheses, as in MLflow)::

    metrics.accuracy > 0.9 and params.model = 'resnet' and tags."mlflow.user" LIKE 'a%'
    attributes.status IN ('FINISHED', 'FAILED') and attributes.start_time >= 1700000000000

A comparison is ``<identifier> <comparator> <value>``:

* identifiers are ``metrics.<key>``, ``params.<key>``, ``tags.<key>`` and
  ``attributes.<name>`` (singular forms and ``attr.``/``run.`` too); a bare name is an
  attribute. A key with spaces or odd characters is quoted: ``metrics.`my metric```,
  ``tags."mlflow.runName"`` (an unquoted key may contain dots: ``tags.mlflow.runName``);
* comparators are ``= != > >= < <=`` for numbers (metrics, times), ``= != LIKE ILIKE``
  for strings, ``IN (...)``/``NOT IN (...)`` for string attributes, and ``IS NULL`` /
  ``IS NOT NULL`` for params and tags;
* values are numbers (``3``, ``-0.5``, ``1e-3``) or strings in single or double quotes
  (a doubled quote stands for itself: ``'it''s'``). ``LIKE`` is case-sensitive on every
  backend, ``ILIKE`` is not; ``%`` and ``_`` are wildcards and ``\\`` escapes them.

A run that lacks the metric, param or tag does not match, whatever the comparator
(``!=`` included); a NaN metric matches no comparison. Metrics compare their latest
value.

An order-by item is ``<identifier> [ASC|DESC]`` (``metrics.acc DESC``, ``start_time``).
Runs lacking the key sort last in both directions (NaN metrics just before them), and
``start_time DESC, run_id ASC`` break ties, as in MLflow.

Every malformed filter or order-by raises :class:`opsloop.errors.InvalidInput` naming the
offending part and what was expected; nothing here lets a SQL error through.
The registry (``name``, ``tags.<k>``, ``run_id``, ``source_path``, ``version_number``)
and experiments (``name``, ``experiment_id``, ``creation_time``, ``last_update_time``,
``tags.<k>``) use the same language with their own identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Table
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from opsloop.errors import InvalidInput
from opsloop.store.tables import (
    experiment_tags,
    experiments,
    latest_metrics,
    model_version_tags,
    model_versions,
    params,
    registered_model_tags,
    registered_models,
    runs,
    tags,
)

__all__ = [
    "Comparison",
    "OrderKey",
    "experiment_filter",
    "experiment_order",
    "model_version_filter",
    "model_version_order",
    "parse_experiment_filter",
    "parse_filter",
    "parse_model_version_filter",
    "parse_registered_model_filter",
    "parse_run_order",
    "registered_model_filter",
    "registered_model_order",
    "run_filter",
    "run_order",
]

Value = str | int | float | tuple[str, ...] | tuple[int, ...] | None
EntityType = Literal["metric", "param", "tag", "attribute"]


@dataclass(frozen=True)
class Comparison:
    """One parsed comparison of a filter.

    ``entity_type`` is ``"metric"``, ``"param"``, ``"tag"`` or ``"attribute"``; for an
    attribute ``key`` is its canonical name (``created`` reads ``start_time``).
    ``comparator`` is upper-case (``"="``, ``"LIKE"``, ``"NOT IN"``, ``"IS NULL"``...).
    ``value`` is a ``str``, an ``int``/``float`` (metrics are always ``float``), a tuple
    for ``IN``/``NOT IN``, or ``None`` for ``IS [NOT] NULL``.
    """

    entity_type: EntityType
    key: str
    comparator: str
    value: Value


@dataclass(frozen=True)
class OrderKey:
    """One parsed order-by item."""

    entity_type: EntityType
    key: str
    ascending: bool


# ---------------------------------------------------------------------------------------
# What each search accepts.

_NUMERIC = frozenset({"=", "!=", ">", ">=", "<", "<="})
_STRING = frozenset({"=", "!=", "LIKE", "ILIKE"})
_STRING_LIST = _STRING | {"IN", "NOT IN"}
_ID = frozenset({"=", "!=", "IN", "NOT IN"})
_NULLS = frozenset({"IS NULL", "IS NOT NULL"})
_COMPARATOR_ORDER: tuple[str, ...] = (
    *("=", "!=", ">", ">=", "<", "<="),
    *("LIKE", "ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL"),
)

# How a value is read: "number" (int or float), "integer", "id" (an integer, quoted or
# not: experiment ids travel as strings), "string".
_Kind = Literal["number", "integer", "id", "string"]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class _Field:
    """An attribute: the column it reads, how its value is read, its comparators."""

    column: str
    kind: _Kind
    comparators: frozenset[str]
    int_range: tuple[int, int] = _INT64


@dataclass(frozen=True)
class _Scope:
    """The identifiers and comparators of one search (runs, experiments, ...)."""

    what: str  # "run", "experiment", ... for messages
    prefixes: Mapping[str, EntityType]  # lower-case prefix -> entity type
    entities: Mapping[EntityType, tuple[_Kind, frozenset[str]]]  # non-attributes
    aliases: Mapping[str, str]  # accepted attribute name -> canonical name
    fields: Mapping[str, _Field]  # canonical name -> field
    order_aliases: Mapping[str, str]  # accepted order-by attribute -> canonical name
    order_entities: frozenset[EntityType]  # non-attributes that order_by accepts

    def prefix_hint(self) -> str:
        plural = {"metric": "metrics", "param": "params", "tag": "tags"}
        kinds = [e for e in ("metric", "param", "tag") if e in self.entities]
        names = [f"'{plural[e]}.<key>'" for e in kinds] + ["'attributes.<name>'"]
        return ", ".join(names)


_ATTRIBUTE_PREFIXES: dict[str, EntityType] = {
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
}
_TAG_PREFIXES: dict[str, EntityType] = {"tag": "tag", "tags": "tag"}

_RUN_FIELDS = {
    "run_id": _Field("run_uuid", "string", _STRING_LIST),
    "run_name": _Field("name", "string", _STRING_LIST),
    "status": _Field("status", "string", _STRING_LIST),
    "user_id": _Field("user_id", "string", _STRING_LIST),
    "artifact_uri": _Field("artifact_uri", "string", _STRING_LIST),
    "lifecycle_stage": _Field("lifecycle_stage", "string", _STRING_LIST),
    "start_time": _Field("start_time", "number", _NUMERIC),
    "end_time": _Field("end_time", "number", _NUMERIC),
}
_RUN_ALIASES = {name: name for name in _RUN_FIELDS} | {
    "created": "start_time",
    "Created": "start_time",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}

_RUNS = _Scope(
    what="run",
    prefixes={
        "metric": "metric",
        "metrics": "metric",
        "param": "param",
        "params": "param",
        "parameter": "param",
        "parameters": "param",
        **_TAG_PREFIXES,
        **_ATTRIBUTE_PREFIXES,
        "run": "attribute",
    },
    entities={
        "metric": ("number", _NUMERIC),
        "param": ("string", _STRING | _NULLS),
        "tag": ("string", _STRING | _NULLS),
    },
    aliases=_RUN_ALIASES,
    fields=_RUN_FIELDS,
    order_aliases=_RUN_ALIASES,
    order_entities=frozenset({"metric", "param", "tag"}),
)

_EXPERIMENTS = _Scope(
    what="experiment",
    prefixes={**_TAG_PREFIXES, **_ATTRIBUTE_PREFIXES},
    entities={"tag": ("string", _STRING | _NULLS)},
    aliases={n: n for n in ("name", "experiment_id", "creation_time", "last_update_time")},
    fields={
        "name": _Field("name", "string", _STRING),
        "experiment_id": _Field("experiment_id", "id", _ID, _INT32),
        "creation_time": _Field("creation_time", "integer", _NUMERIC),
        "last_update_time": _Field("last_update_time", "integer", _NUMERIC),
    },
    order_aliases={n: n for n in ("name", "experiment_id", "creation_time", "last_update_time")},
    order_entities=frozenset(),
)

_REGISTERED_MODELS = _Scope(
    what="registered model",
    prefixes={**_TAG_PREFIXES, **_ATTRIBUTE_PREFIXES},
    entities={"tag": ("string", _STRING)},
    aliases={"name": "name"},
    fields={
        "name": _Field("name", "string", _STRING_LIST),
        # Order-by only (filters reject them through ``aliases``).
        "creation_timestamp": _Field("creation_time", "integer", _NUMERIC),
        "last_updated_timestamp": _Field("last_updated_time", "integer", _NUMERIC),
    },
    order_aliases={
        "name": "name",
        "creation_timestamp": "creation_timestamp",
        "last_updated_timestamp": "last_updated_timestamp",
        "timestamp": "last_updated_timestamp",  # MLflow's alias
    },
    order_entities=frozenset(),
)

_MODEL_VERSIONS = _Scope(
    what="model version",
    prefixes={**_TAG_PREFIXES, **_ATTRIBUTE_PREFIXES},
    entities={"tag": ("string", _STRING)},
    aliases={
        "name": "name",
        "run_id": "run_id",
        "source_path": "source_path",
        "source": "source_path",
        "version_number": "version_number",
    },
    fields={
        "name": _Field("name", "string", _STRING_LIST),
        "run_id": _Field("run_id", "string", _STRING_LIST),
        "source_path": _Field("source", "string", _STRING),
        "version_number": _Field("version", "integer", _NUMERIC, _INT32),
        # Order-by only.
        "creation_timestamp": _Field("creation_time", "integer", _NUMERIC),
        "last_updated_timestamp": _Field("last_updated_time", "integer", _NUMERIC),
    },
    order_aliases={
        "name": "name",
        "version_number": "version_number",
        "creation_timestamp": "creation_timestamp",
        "last_updated_timestamp": "last_updated_timestamp",
        "timestamp": "last_updated_timestamp",
    },
    order_entities=frozenset(),
)


# ---------------------------------------------------------------------------------------
# Tokenizer. The parser asks for the token it expects next (an identifier, a comparator,
# a value), so the same characters can mean different things in different places: a
# double-quoted key after ``tags.``, a double-quoted string after a comparator.

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"""[^\s=!<>(),'"`]+""")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATOR = re.compile(r"==|<>|>=|<=|!=|=|>|<|!")
_NUMBER_END = re.compile(r"[A-Za-z0-9_.]")


@dataclass(frozen=True)
class _Identifier:
    prefix: str | None  # as written, None for a bare name
    key: str
    text: str  # the source text, for messages
    pos: int


@dataclass(frozen=True)
class _ValueToken:
    kind: Literal["string", "number", "list", "word"]
    value: str | int | float | tuple[str | int | float, ...]
    text: str
    pos: int


class _Lexer:
    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what  # "filter" or "order_by clause"
        self.pos = 0

    # -- helpers -----------------------------------------------------------------------

    def error(self, message: str, pos: int | None = None) -> InvalidInput:
        where = self.pos if pos is None else pos
        return InvalidInput(f"Invalid {self.what} {self.text!r}: {message} (at position {where}).")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_ws()
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def rest(self, limit: int = 30) -> str:
        """The text from here, shortened, for messages."""
        chunk = self.text[self.pos : self.pos + limit]
        return chunk + ("..." if self.pos + limit < len(self.text) else "")

    def word(self) -> str | None:
        self.skip_ws()
        m = _WORD.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return m.group(0).upper()

    def quoted(self) -> str:
        """A quoted string at the cursor (``'``, ``"`` or a backtick); ``''`` escapes."""
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            end = self.text.find(quote, self.pos)
            if end < 0:
                raise self.error(
                    f"unterminated string {self.text[start:][:30]!r}; expected a closing {quote}",
                    start,
                )
            out.append(self.text[self.pos : end])
            self.pos = end + 1
            if self.peek() == quote:  # doubled quote: a literal one
                out.append(quote)
                self.pos += 1
                continue
            value = "".join(out)
            if "\x00" in value:
                raise self.error("strings may not contain NUL characters", start)
            return value

    # -- tokens ------------------------------------------------------------------------

    def identifier(self, scope: _Scope) -> _Identifier:
        self.skip_ws()
        start = self.pos
        ch = self.peek()
        if ch == "`":
            head = self.quoted()
            head_quoted = True
        else:
            m = _NAME.match(self.text, self.pos)
            if not m:
                found = repr(self.rest()) if ch else "the end"
                raise self.error(
                    f"expected an identifier ({scope.prefix_hint()} or an attribute name), "
                    f"found {found}"
                )
            head = m.group(0)
            head_quoted = False
            self.pos = m.end()
        if self.peek() != ".":
            if not head_quoted and head.upper() in ("AND", "OR"):
                raise self.error(
                    f"empty clause before {head!r}; expected a comparison such as "
                    "metrics.acc > 0.5",
                    start,
                )
            return _Identifier(None, head, self.text[start : self.pos], start)
        self.pos += 1
        ch = self.peek()
        if ch in ("`", '"'):
            key = self.quoted()
        else:
            m = _BARE_KEY.match(self.text, self.pos)
            if not m:
                found = repr(self.rest()) if ch else "the end"
                raise self.error(
                    f"expected a key after {self.text[start : self.pos]!r}, found {found}"
                )
            key = m.group(0)
            self.pos = m.end()
        text = self.text[start : self.pos]
        if not key:
            raise self.error(f"empty key in {text!r}", start)
        return _Identifier(head, key, text, start)

    def comparator(self, subject: str) -> str:
        self.skip_ws()
        start = self.pos
        expected = f"expected a comparator after {subject!r} ({', '.join(_COMPARATOR_ORDER)})"
        m = _OPERATOR.match(self.text, self.pos)
        if m:
            op = m.group(0)
            if op in ("==", "<>", "!"):
                raise self.error(f"{op!r} is not a comparator; {expected}", start)
            self.pos = m.end()
            return op
        word = self.word()
        if word in ("LIKE", "ILIKE", "IN"):
            return word
        if word == "NOT":
            if self.word() == "IN":
                return "NOT IN"
        elif word == "IS":
            second = self.word()
            if second == "NULL":
                return "IS NULL"
            if second == "NOT" and self.word() == "NULL":
                return "IS NOT NULL"
        self.pos = start
        found = repr(self.rest()) if self.pos < len(self.text) else "the end"
        raise self.error(f"{expected}, found {found}", start)

    def scalar(self) -> _ValueToken:
        self.skip_ws()
        start = self.pos
        ch = self.peek()
        if ch in ("'", '"'):
            value = self.quoted()
            return _ValueToken("string", value, self.text[start : self.pos], start)
        m = _NUMBER.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            if _NUMBER_END.match(self.peek()):
                tail = _BARE_KEY.match(self.text, start)
                bad = tail.group(0) if tail else self.text[start : self.pos + 1]
                raise self.error(f"malformed number {bad!r}", start)
            text = m.group(0)
            number = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
            return _ValueToken("number", number, text, start)
        if ch == "":
            raise self.error("expected a value, found the end")
        bare = _BARE_KEY.match(self.text, self.pos)
        if bare:
            self.pos = bare.end()
            return _ValueToken("word", bare.group(0), bare.group(0), start)
        raise self.error(f"expected a value, found {self.rest()!r}")

    def value(self) -> _ValueToken:
        self.skip_ws()
        if self.peek() != "(":
            return self.scalar()
        start = self.pos
        self.pos += 1
        items: list[str | int | float] = []
        if self.at_end() or self.peek() == ")":
            raise self.error(
                "empty list; expected one or more quoted values, e.g. ('a', 'b')", start
            )
        while True:
            item = self.scalar()
            if item.kind == "word":
                raise self.error(
                    f"expected a quoted value in the list, found {item.text!r} "
                    f"(quote it: '{item.text}')",
                    item.pos,
                )
            assert isinstance(item.value, str | int | float)
            items.append(item.value)
            self.skip_ws()
            ch = self.peek()
            if ch == ",":
                self.pos += 1
                continue
            if ch == ")":
                self.pos += 1
                break
            found = repr(self.rest()) if ch else "the end"
            raise self.error(f"expected ',' or ')' in the list, found {found}")
        return _ValueToken("list", tuple(items), self.text[start : self.pos], start)


# ---------------------------------------------------------------------------------------
# Parser.


def _resolve(
    ident: _Identifier, scope: _Scope, lexer: _Lexer, *, order: bool
) -> tuple[EntityType, str]:
    """The entity type and canonical key of an identifier, or InvalidInput."""
    aliases = scope.order_aliases if order else scope.aliases
    if ident.prefix is None:
        entity: EntityType = "attribute"
    else:
        prefix = ident.prefix.lower()
        if prefix in ("dataset", "datasets") and scope is _RUNS:
            raise lexer.error(f"dataset filters are not supported ({ident.text!r})", ident.pos)
        if prefix not in scope.prefixes:
            raise lexer.error(
                f"unknown entity type {ident.prefix!r} in {ident.text!r}; "
                f"expected {scope.prefix_hint()}",
                ident.pos,
            )
        entity = scope.prefixes[prefix]
    if entity == "attribute":
        if ident.key not in aliases:
            names = ", ".join(sorted(n for n in aliases if " " not in n and n[0].islower()))
            raise lexer.error(
                f"unknown {scope.what} attribute {ident.key!r}; expected one of {names}",
                ident.pos,
            )
        return entity, aliases[ident.key]
    if order and entity not in scope.order_entities:
        raise lexer.error(
            f"cannot order {scope.what}s by {ident.text!r}; expected an attribute name",
            ident.pos,
        )
    return entity, ident.key


def _check_int(value: int, field: _Field, subject: str, lexer: _Lexer, pos: int) -> int:
    low, high = field.int_range
    if not low <= value <= high:
        raise lexer.error(f"{value} is out of range after {subject!r}", pos)
    return value


def _convert(
    token: _ValueToken, kind: _Kind, field: _Field | None, subject: str, lexer: _Lexer
) -> str | int | float:
    """Check one scalar value against the kind its identifier expects."""
    value = token.value
    assert not isinstance(value, tuple)
    if token.kind == "word":
        hint = "a number" if kind in ("number", "integer") else f"a quoted string ('{value}')"
        raise lexer.error(
            f"expected {hint} after {subject!r}, found bare word {value!r}", token.pos
        )
    if kind == "string":
        if token.kind != "string":
            raise lexer.error(
                f"expected a quoted string after {subject!r}, found {token.text!r} "
                f"(quote it: '{token.text}')",
                token.pos,
            )
        return value
    if kind == "number":
        if token.kind != "number":
            raise lexer.error(
                f"expected a number after {subject!r}, found {token.text!r}", token.pos
            )
        if field is None:  # a metric: always a float
            return float(token.text)
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            return float(token.text)
        return value
    # "integer" and "id"
    assert field is not None
    if isinstance(value, int):
        return _check_int(value, field, subject, lexer, token.pos)
    if kind == "id" and isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return _check_int(int(value), field, subject, lexer, token.pos)
    raise lexer.error(f"expected an integer after {subject!r}, found {token.text!r}", token.pos)


def _parse(filter_string: str, scope: _Scope) -> list[Comparison]:
    lexer = _Lexer(filter_string, "filter")
    if lexer.at_end():
        return []
    out: list[Comparison] = []
    while True:
        ident = lexer.identifier(scope)
        entity, key = _resolve(ident, scope, lexer, order=False)
        field = scope.fields[key] if entity == "attribute" else None
        lexer.skip_ws()
        op_pos = lexer.pos
        comparator = lexer.comparator(ident.text)
        if field is not None:
            kind, allowed = field.kind, field.comparators
        else:
            kind, allowed = scope.entities[entity]
        if comparator not in allowed:
            ordered = ", ".join(c for c in _COMPARATOR_ORDER if c in allowed)
            raise lexer.error(
                f"comparator {comparator!r} is not valid for {ident.text!r}; "
                f"expected one of {ordered}",
                op_pos,
            )
        subject = f"{ident.text} {comparator}"
        value: Value
        if comparator in _NULLS:
            value = None
        elif comparator in ("IN", "NOT IN"):
            token = lexer.value()
            if token.kind != "list":
                raise lexer.error(
                    f"expected a parenthesized list after {subject!r}, e.g. ('a', 'b'); "
                    f"found {token.text!r}",
                    token.pos,
                )
            assert isinstance(token.value, tuple)
            converted = [
                _convert(
                    _ValueToken(
                        "string" if isinstance(item, str) else "number", item, repr(item), token.pos
                    ),
                    kind,
                    field,
                    subject,
                    lexer,
                )
                for item in token.value
            ]
            if kind == "id":
                value = tuple(int(v) for v in converted)
            else:
                value = tuple(str(v) for v in converted)
        else:
            token = lexer.value()
            if token.kind == "list":
                raise lexer.error(
                    f"a list is only valid after IN or NOT IN, not after {subject!r}", token.pos
                )
            value = _convert(token, kind, field, subject, lexer)
            if comparator in ("LIKE", "ILIKE"):
                assert isinstance(value, str)
                _check_like_pattern(value, subject, lexer, token.pos)
        out.append(Comparison(entity, key, comparator, value))
        clause_text = lexer.text[ident.pos : lexer.pos]
        if lexer.at_end():
            return out
        pos = lexer.pos
        word = lexer.word()
        if word == "AND":
            if lexer.at_end():
                raise lexer.error("expected a comparison after 'and', found the end")
            continue
        if word == "OR":
            raise lexer.error(
                "'or' is not supported (MLflow's search language only joins comparisons "
                "with 'and'); run one search per alternative instead",
                pos,
            )
        lexer.pos = pos
        raise lexer.error(
            f"unexpected {lexer.rest()!r} after {_short(clause_text)!r}; "
            "expected 'and' or the end of the filter",
        )


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _check_like_pattern(pattern: str, subject: str, lexer: _Lexer, pos: int) -> None:
    backslashes = len(pattern) - len(pattern.rstrip("\\"))
    if backslashes % 2:
        raise lexer.error(
            f"the pattern for {subject!r} ends with a lone '\\'; "
            "use '\\\\' for a literal backslash",
            pos,
        )


def _parse_order(order_by: str, scope: _Scope) -> OrderKey:
    if not isinstance(order_by, str):
        raise InvalidInput(f"Invalid order_by clause {order_by!r}: expected a string.")
    lexer = _Lexer(order_by, "order_by clause")
    ident = lexer.identifier(scope)
    entity, key = _resolve(ident, scope, lexer, order=True)
    ascending = True
    if not lexer.at_end():
        pos = lexer.pos
        word = lexer.word()
        if word in ("ASC", "DESC"):
            ascending = word == "ASC"
        else:
            lexer.pos = pos
            raise lexer.error(f"expected ASC, DESC or the end, found {lexer.rest()!r}")
        if not lexer.at_end():
            raise lexer.error(f"unexpected {lexer.rest()!r}; expected the end")
    return OrderKey(entity, key, ascending)


def _parse_orders(order_by: Sequence[str] | None, scope: _Scope) -> list[OrderKey]:
    if order_by is None:
        return []
    if isinstance(order_by, str):
        raise InvalidInput(f"order_by must be a list of strings, not the string {order_by!r}.")
    keys: list[OrderKey] = []
    seen: set[tuple[str, str]] = set()
    for item in order_by:
        key = _parse_order(item, scope)
        ident = (key.entity_type, key.key)
        if ident in seen:
            raise InvalidInput(
                f"Invalid order_by {list(order_by)!r}: {item!r} orders by a field already "
                "ordered by; list each field once."
            )
        seen.add(ident)
        keys.append(key)
    return keys


def parse_filter(filter_string: str) -> list[Comparison]:
    """Parse a runs filter into its comparisons (``[]`` for an empty filter)."""
    return _parse(_as_text(filter_string), _RUNS)


def parse_experiment_filter(filter_string: str) -> list[Comparison]:
    """Parse an experiments filter."""
    return _parse(_as_text(filter_string), _EXPERIMENTS)


def parse_registered_model_filter(filter_string: str) -> list[Comparison]:
    """Parse a registered-models filter."""
    return _parse(_as_text(filter_string), _REGISTERED_MODELS)


def parse_model_version_filter(filter_string: str) -> list[Comparison]:
    """Parse a model-versions filter."""
    return _parse(_as_text(filter_string), _MODEL_VERSIONS)


def parse_run_order(order_by: Sequence[str] | None) -> list[OrderKey]:
    """Parse a runs order_by list (duplicates are rejected, as in MLflow)."""
    return _parse_orders(order_by, _RUNS)


def _as_text(filter_string: object) -> str:
    if not isinstance(filter_string, str):
        raise InvalidInput(f"Invalid filter {filter_string!r}: expected a string.")
    return filter_string


# ---------------------------------------------------------------------------------------
# SQL. ``LIKE`` is case-sensitive in MLflow's language; SQLite's LIKE is not, so on
# SQLite it becomes GLOB with the pattern translated.


class _like_cs(FunctionElement[bool]):
    """``column LIKE pattern ESCAPE '\\'``, case-sensitive on every backend.

    Arguments: the column, the LIKE pattern, the same pattern as a SQLite GLOB.
    """

    type = sa.Boolean()
    name = "like_cs"
    inherit_cache = True


@compiles(_like_cs)
def _like_cs_default(element: _like_cs, compiler: SQLCompiler, **kw: Any) -> str:
    column, like, _glob = list(element.clauses)
    return compiler.process(column.like(like, escape="\\"), **kw)


@compiles(_like_cs, "sqlite")
def _like_cs_sqlite(element: _like_cs, compiler: SQLCompiler, **kw: Any) -> str:
    column, _like, glob = list(element.clauses)
    return compiler.process(column.op("GLOB", is_comparison=True)(glob), **kw)


class _infinity(ColumnElement[float]):
    """+inf or -inf as a SQL literal (not a bind parameter, so that statements compiled
    with ``literal_binds`` stay valid)."""

    type = sa.Float()
    inherit_cache = True
    _traverse_internals = [("negative", InternalTraversal.dp_boolean)]

    def __init__(self, negative: bool) -> None:
        self.negative = negative


@compiles(_infinity)
def _infinity_default(element: _infinity, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST('{'-' if element.negative else ''}Infinity' AS DOUBLE PRECISION)"


@compiles(_infinity, "sqlite")
def _infinity_sqlite(element: _infinity, compiler: SQLCompiler, **kw: Any) -> str:
    return "-9e999" if element.negative else "9e999"


def _like_to_glob(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            literal = pattern[i + 1]
            out.append(f"[{literal}]" if literal in "*?[" else literal)
            i += 2
            continue
        if ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        else:
            out.append(f"[{ch}]" if ch in "*?[" else ch)
        i += 1
    return "".join(out)


def _bind(value: str | int | float, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A bind parameter of the value's own type (a float compared with a BIGINT column
    must not be cast to BIGINT on PostgreSQL)."""
    if isinstance(value, float):
        return sa.literal(value, sa.Float())
    return sa.literal(value, column.type)


def _compare(column: ColumnElement[Any], comparator: str, value: Value) -> ColumnElement[bool]:
    if comparator in ("IN", "NOT IN"):
        assert isinstance(value, tuple)
        items = list(value)
        return column.in_(items) if comparator == "IN" else column.not_in(items)
    assert isinstance(value, str | int | float)
    if comparator == "LIKE":
        assert isinstance(value, str)
        return _like_cs(column, sa.literal(value, sa.String()), sa.literal(_like_to_glob(value)))
    if comparator == "ILIKE":
        assert isinstance(value, str)
        return column.ilike(sa.literal(value, sa.String()), escape="\\")
    bound = _bind(value, column)
    ops: dict[str, Callable[[ColumnElement[Any], ColumnElement[Any]], ColumnElement[bool]]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    return ops[comparator](column, bound)


def _and(clauses: list[ColumnElement[bool]]) -> ColumnElement[bool] | None:
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else sa.and_(*clauses)


# -- runs -------------------------------------------------------------------------------


def _run_clause(c: Comparison) -> tuple[int, ColumnElement[bool]]:
    """A run comparison's where-clause and its rank: cheap and selective ones first,
    since the database evaluates the conjuncts in order and stops at the first false."""
    if c.entity_type == "attribute":
        column = runs.c[_RUN_FIELDS[c.key].column]
        return 0, _compare(column, c.comparator, c.value)
    table: Table = {"metric": latest_metrics, "param": params, "tag": tags}[c.entity_type]
    owned = sa.and_(table.c.run_uuid == runs.c.run_uuid, table.c.key == c.key)
    if c.comparator in _NULLS:
        has = sa.exists().where(owned)
        return 2, (~has if c.comparator == "IS NULL" else has)
    condition = _compare(table.c.value, c.comparator, c.value)
    if table is latest_metrics:
        # NaN is stored as 0 with is_nan set, and matches nothing.
        condition = sa.and_(condition, latest_metrics.c.is_nan == sa.false())
    if c.comparator == "=" and table is not tags:
        # An equality is selective and the (key, value) index finds its runs directly:
        # build the set once instead of probing once per run.
        matching = sa.select(table.c.run_uuid).where(table.c.key == c.key, condition)
        return 1, runs.c.run_uuid.in_(matching)
    # Otherwise one primary-key probe, (run_uuid, key), per candidate run.
    return 2, sa.exists().where(owned, condition)


def run_filter(filter_string: str | None) -> ColumnElement[bool] | None:
    """The where-clause of a runs filter, against ``runs``; ``None`` if it is empty.

    Raises :class:`InvalidInput` if the filter is malformed.
    """
    if filter_string is None:
        return None
    ranked = [_run_clause(c) for c in parse_filter(filter_string)]
    ranked.sort(key=lambda item: item[0])  # stable: the user's order within a rank
    return _and([clause for _, clause in ranked])


def _nulls_last(expr: ColumnElement[Any], ascending: bool, nullable: bool) -> ColumnElement[Any]:
    ordered = expr.asc() if ascending else expr.desc()
    return ordered.nulls_last() if nullable else ordered


def run_order(order_by: list[str] | None) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for ``SELECT ... FROM runs``.

    Runs lacking an ordered metric, param or tag come last in both directions; a NaN
    metric comes after every number and before the runs lacking it. ``start_time DESC``
    (unless ordered already) and ``run_uuid ASC`` break ties, as in MLflow.
    """
    clauses: list[ColumnElement[Any]] = []
    ordered_start = ordered_id = False
    for key in parse_run_order(order_by):
        if key.entity_type == "attribute":
            column = runs.c[_RUN_FIELDS[key.key].column]
            ordered_start |= key.key == "start_time"
            ordered_id |= key.key == "run_id"
            clauses.append(_nulls_last(column, key.ascending, bool(column.nullable)))
            continue
        table: Table = {"metric": latest_metrics, "param": params, "tag": tags}[key.entity_type]
        value: ColumnElement[Any] = table.c.value
        if table is latest_metrics:
            # One probe per run: NaN reads as the far end of the order (+inf ascending,
            # -inf descending), after the real values; a missing metric is NULL, last.
            value = sa.case(
                (latest_metrics.c.is_nan == sa.true(), _infinity(negative=not key.ascending)),
                else_=latest_metrics.c.value,
            )
        sub = (
            sa.select(value)
            .where(table.c.run_uuid == runs.c.run_uuid, table.c.key == key.key)
            .correlate(runs)
            .scalar_subquery()
        )
        clauses.append(_nulls_last(sub, key.ascending, True))
    if not ordered_start:
        clauses.append(runs.c.start_time.desc())
    if not ordered_id:
        clauses.append(runs.c.run_uuid.asc())
    return clauses


# -- experiments ------------------------------------------------------------------------


def _tag_clause(
    c: Comparison,
    tag_table: Table,
    owner: list[tuple[ColumnElement[Any], ColumnElement[Any]]],
    absent_is_not_equal: bool = False,
) -> ColumnElement[bool]:
    owned = sa.and_(*(tag_col == main_col for tag_col, main_col in owner), tag_table.c.key == c.key)
    if c.comparator in _NULLS:
        has = sa.exists().where(owned)
        return ~has if c.comparator == "IS NULL" else has
    if absent_is_not_equal and c.comparator == "!=":
        # The registry's rule: a model without the tag is "not equal" too. MLflow's
        # client relies on it, adding ``tag.`mlflow.prompt.is_prompt` != 'true'`` to
        # every registry search to keep prompts out.
        return ~sa.exists().where(owned, tag_table.c.value == c.value)
    return sa.exists().where(owned, _compare(tag_table.c.value, c.comparator, c.value))


def _attribute_first(
    comparisons: list[Comparison],
    scope: _Scope,
    table: Table,
    tag_table: Table,
    owner: list[tuple[ColumnElement[Any], ColumnElement[Any]]],
    absent_is_not_equal: bool = False,
) -> ColumnElement[bool] | None:
    attributes: list[ColumnElement[bool]] = []
    tag_clauses: list[ColumnElement[bool]] = []
    for c in comparisons:
        if c.entity_type == "attribute":
            column = table.c[scope.fields[c.key].column]
            attributes.append(_compare(column, c.comparator, c.value))
        else:
            tag_clauses.append(_tag_clause(c, tag_table, owner, absent_is_not_equal))
    return _and(attributes + tag_clauses)


def experiment_filter(filter_string: str | None) -> ColumnElement[bool] | None:
    """The where-clause of an experiments filter, against ``experiments``."""
    if filter_string is None:
        return None
    return _attribute_first(
        parse_experiment_filter(filter_string),
        _EXPERIMENTS,
        experiments,
        experiment_tags,
        [(experiment_tags.c.experiment_id, experiments.c.experiment_id)],
    )


def _attribute_order(
    order_by: Sequence[str] | None,
    scope: _Scope,
    table: Table,
    default: list[OrderKey],
    tie_breakers: list[OrderKey],
) -> list[ColumnElement[Any]]:
    keys = _parse_orders(order_by, scope) or default
    seen = {k.key for k in keys}
    keys += [k for k in tie_breakers if k.key not in seen]
    out: list[ColumnElement[Any]] = []
    for k in keys:
        column = table.c[scope.fields[k.key].column]
        out.append(_nulls_last(column, k.ascending, bool(column.nullable)))
    return out


def experiment_order(order_by: list[str] | None) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for ``SELECT ... FROM experiments``.

    The default is ``creation_time DESC, experiment_id ASC``; an explicit order_by gets
    ``experiment_id DESC`` as tie-breaker unless it orders by it (MLflow's rule).
    """
    return _attribute_order(
        order_by,
        _EXPERIMENTS,
        experiments,
        default=[
            OrderKey("attribute", "creation_time", False),
            OrderKey("attribute", "experiment_id", True),
        ],
        tie_breakers=[OrderKey("attribute", "experiment_id", False)],
    )


# -- registry ---------------------------------------------------------------------------


def registered_model_filter(filter_string: str | None) -> ColumnElement[bool] | None:
    """The where-clause of a registered-models filter, against ``registered_models``."""
    if filter_string is None:
        return None
    return _attribute_first(
        parse_registered_model_filter(filter_string),
        _REGISTERED_MODELS,
        registered_models,
        registered_model_tags,
        [(registered_model_tags.c.name, registered_models.c.name)],
        absent_is_not_equal=True,
    )


def model_version_filter(filter_string: str | None) -> ColumnElement[bool] | None:
    """The where-clause of a model-versions filter, against ``model_versions``."""
    if filter_string is None:
        return None
    return _attribute_first(
        parse_model_version_filter(filter_string),
        _MODEL_VERSIONS,
        model_versions,
        model_version_tags,
        [
            (model_version_tags.c.name, model_versions.c.name),
            (model_version_tags.c.version, model_versions.c.version),
        ],
        absent_is_not_equal=True,
    )


def registered_model_order(order_by: list[str] | None) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for ``SELECT ... FROM registered_models``: the given keys
    (``name``, ``creation_timestamp``, ``last_updated_timestamp``/``timestamp``), then
    ``name ASC``."""
    return _attribute_order(
        order_by,
        _REGISTERED_MODELS,
        registered_models,
        default=[],
        tie_breakers=[OrderKey("attribute", "name", True)],
    )


def model_version_order(order_by: list[str] | None) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for ``SELECT ... FROM model_versions``.

    The default is MLflow's: ``last_updated_timestamp DESC, name ASC, version DESC``;
    any order_by gets ``name ASC, version DESC`` as tie-breakers unless it orders by them.
    """
    return _attribute_order(
        order_by,
        _MODEL_VERSIONS,
        model_versions,
        default=[OrderKey("attribute", "last_updated_timestamp", False)],
        tie_breakers=[
            OrderKey("attribute", "name", True),
            OrderKey("attribute", "version_number", False),
        ],
    )
