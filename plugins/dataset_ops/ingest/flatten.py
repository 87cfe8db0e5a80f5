"""Nested JSON documents (e.g. MongoDB records) flattened into rows with a stable column set.

The columns come from the entity's JSON Schema, not from the data, so every run writes the same
columns in the same order whatever the records hold:

* an object with ``properties`` becomes one column per property, named with dots
  (``contacto.email``), recursively;
* the one list of objects named by ``explode`` becomes one row per item, its item properties as
  ``<list>.<property>`` columns (a record with an empty or missing list keeps one row with
  those columns null);
* every other list, and objects without ``properties``, become one column holding the value as
  JSON text;
* scalars keep their JSON type (``integer``, ``number``, ``boolean``, ``string``; a string with
  ``format: date-time`` is marked ``datetime``). A missing value is null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

_SCALARS = {"integer", "number", "boolean", "string"}


@dataclass(frozen=True)
class Column:
    """One output column.

    :param name: dotted name. :param path: keys from the record (or, when ``exploded``, from the
        list item) to the value. :param kind: ``integer``, ``number``, ``boolean``, ``string``,
        ``datetime`` or ``json``.
    """

    name: str
    path: tuple[str, ...]
    kind: str
    exploded: bool = False


def _kind(spec: dict) -> str:
    types = spec.get("type")
    names = [types] if isinstance(types, str) else [t for t in (types or []) if t != "null"]
    if len(names) != 1:
        return "json"
    name = names[0]
    if name == "string" and spec.get("format") == "date-time":
        return "datetime"
    return name if name in _SCALARS else "json"


def columns_for(schema: dict, explode: str | None = None) -> list[Column]:
    """The columns of ``schema`` (an object schema with ``properties``), in property order."""
    out: list[Column] = []

    def walk(properties: dict, prefix: tuple[str, ...], exploded: bool) -> None:
        for key, spec in properties.items():
            path = (*prefix, key)
            spec = spec or {}
            if spec.get("type") == "object" and isinstance(spec.get("properties"), dict):
                walk(spec["properties"], path, exploded)
            elif not exploded and not prefix and key == explode:
                item = spec.get("items") or {}
                walk(item.get("properties") or {}, (), True)
                # item columns are named <list>.<prop>; rename below
            else:
                out.append(Column(".".join(path), path, _kind(spec), exploded))

    walk(schema.get("properties") or {}, (), False)
    if explode:
        out = [Column(f"{explode}.{c.name}", c.path, c.kind, True) if c.exploded else c for c in out]
    return out


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
        if obj is None:
            return None
    return obj


def flatten(record: dict, columns: list[Column], explode: str | None = None) -> list[tuple]:
    """The rows of ``record``: one tuple of values per row, in ``columns`` order.

    JSON-kind values are encoded as JSON text; others are passed through as parsed.
    """

    def value(obj: Any, column: Column) -> Any:
        v = _get(obj, column.path)
        if column.kind == "json" and v is not None:
            return orjson.dumps(v).decode()
        return v

    if not explode:
        return [tuple(value(record, c) for c in columns)]
    items = record.get(explode)
    if not isinstance(items, list) or not items:
        items = [None]
    rows = []
    for item in items:
        rows.append(tuple(value(item if c.exploded else record, c) for c in columns))
    return rows


def row_maker(columns: list[Column], explode: str | None = None):
    """A function ``record -> rows`` equal to ``flatten(record, columns, explode)``, with a fast
    path for flat records (top-level scalar columns only: one ``dict.get`` per column)."""
    if explode is None and all(len(c.path) == 1 and c.kind != "json" for c in columns):
        keys = [c.path[0] for c in columns]

        def flat(record: dict) -> list[tuple]:
            return [tuple(map(record.get, keys))]

        return flat
    return lambda record: flatten(record, columns, explode)
