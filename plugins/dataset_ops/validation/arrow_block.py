"""The fastest path for JSONL blocks: Apache Arrow's JSON reader and vectorized checks.

``pyarrow.json.read_json`` parses a block of JSON Lines in C++ (RapidJSON) into typed columns
with an explicit schema, refusing a value of another JSON type (``"changed from string to
number"``), an undeclared field (``unexpected_field_behavior="error"``) and a key given twice;
then ``pyarrow.compute`` checks the column rules on whole columns (Arrow docs: "Reading JSON
files", "Compute Functions"). It needs no worker processes: both release the GIL, so blocks are
checked in threads. :func:`compile_arrow_checker` builds an :class:`ArrowBlockChecker` only for
the schemas it can decide soundly; the caller still checks UTF-8 (Arrow's reader does not: it
stores invalid bytes in string columns) and the line structure (one object per line), as for
:mod:`dataset_ops.validation.block_decoder`.

Soundness: the checker may say a valid block is not valid (the caller then checks it line by
line with orjson and fastjsonschema, which decide), never the reverse. Where Arrow cannot tell
two JSON inputs apart, the block goes to the exact path:

* a null in a column is a missing key or an explicit ``null``: refused for a required
  property; for an optional one accepted when its type (and enum) allow null, or when the block
  does not hold the text ``null`` anywhere (then every null is a missing key);
* ``number`` columns are float64: a bound checked on a value of 2**53 or more, or a value that
  is not finite, sends the block on;
* ``pattern`` is run by RE2 (``match_substring_regex``, a search like fastjsonschema's
  ``re.search``), used only for patterns whose every RE2 match is a Python ``re`` match: RE2's
  ``\\d \\w \\s`` are the ASCII subsets of Python's and its ``$`` matches only at the very end, so
  these are fine; the complements ``\\D \\W \\S``, word boundaries ``\\b \\B``, inline flags
  ``(?i)``, ``{,n}`` and negated classes holding a class escape are not, and such a pattern
  leaves the schema to msgspec. A pattern RE2 cannot compile (lookaround, backreference) too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dataset_ops.validation.block_decoder import ANNOTATIONS, flat_object

_STRING_KEYS = {"minLength", "maxLength", "pattern", "enum"}
_NUMBER_KEYS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
_EXACT_FLOAT = 2**53
_PARSE_BLOCK = 1 << 20
_KINDS = ("string", "integer", "number", "boolean")
#: escapes and constructs where an RE2 match need not be a Python ``re`` match
_UNSOUND = re.compile(r"\\[DWSbB]|\(\?[^:]|\{,|\[\^[^\]]*\\[dwsDWS]")


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # "string", "integer", "number", "boolean"
    required: bool
    nulls_ok: bool  # an explicit null is valid
    spec: dict


class ArrowBlockChecker:
    """Decides whether a block of whole JSON Lines certainly matches the schema.

    :param columns: the properties with their single JSON type (see :func:`compile_arrow_checker`).
    :param closed: ``additionalProperties: false``.
    """

    def __init__(self, columns: list[_Column], closed: bool):
        import pyarrow as pa

        types = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}
        self.columns = columns
        self.schema = pa.schema([(c.name, types[c.kind]) for c in columns])
        import pyarrow.json as pj

        self._parse = pj.ParseOptions(
            explicit_schema=self.schema, unexpected_field_behavior="error" if closed else "ignore"
        )
        self._enums = {c.name: pa.array(c.spec["enum"], pa.string()) for c in columns if "enum" in c.spec}

    def rows_if_valid(self, region: bytes | memoryview) -> int | None:
        """The number of JSON values in ``region`` (whole lines, UTF-8 already checked) if every
        one is an object matching the schema; None when Arrow refuses the block or a check fails
        or cannot decide (then the exact path must check it)."""
        import pyarrow as pa
        import pyarrow.json as pj

        # 1 MiB parse blocks are cheaper than one big one (cache); a longer line needs one block
        for block_size in (_PARSE_BLOCK, len(region)):
            try:
                table = pj.read_json(
                    pa.BufferReader(pa.py_buffer(region)),  # no copy of the block
                    read_options=pj.ReadOptions(use_threads=False, block_size=max(block_size, 1)),
                    parse_options=self._parse,
                )
                break
            except Exception as exc:  # ArrowInvalid and friends: the exact path says which line
                if block_size >= len(region) or "straddling" not in str(exc):
                    return None
        if not table.num_rows:
            return 0
        columns = [table.column(c.name) for c in self.columns]
        # Arrow has a null for a missing key and for an explicit null; without the text null
        # anywhere in the block, every null is a missing key (searched only when there are nulls)
        missing_only = not any(v.null_count for v in columns) or b"null" not in region
        for column, values in zip(self.columns, columns, strict=True):
            if not self._column_ok(column, values, missing_only):
                return None
        return table.num_rows

    def _column_ok(self, column: _Column, values, missing_only: bool) -> bool:
        import pyarrow.compute as pc

        if values.null_count:
            # an optional property may be missing, and may be null only if its type and enum allow it
            if column.required or not (column.nulls_ok or missing_only):
                return False
            values = values.drop_null()
            if not len(values):
                return True
        spec = column.spec
        if column.kind == "string":
            if "minLength" in spec or "maxLength" in spec:
                # a character is 1 to 4 bytes: the byte lengths (no pass over the text) often decide
                low, high = spec.get("minLength", 0), spec.get("maxLength")
                size = pc.min_max(pc.binary_length(values)).as_py()
                if size["min"] < 4 * low or (high is not None and size["max"] > high):
                    lengths = pc.min_max(pc.utf8_length(values)).as_py()
                    if lengths["min"] < low or (high is not None and lengths["max"] > high):
                        return False
            if "pattern" in spec and not pc.all(pc.match_substring_regex(values, spec["pattern"])).as_py():
                return False
            if "enum" in spec and not pc.all(pc.is_in(values, value_set=self._enums[column.name])).as_py():
                return False
            return True
        if column.kind in ("integer", "number") and set(spec) & _NUMBER_KEYS:
            bounds = pc.min_max(values).as_py()
            low, high = bounds["min"], bounds["max"]
            if column.kind == "number":
                if not pc.all(pc.is_finite(values)).as_py():
                    return False
                if max(abs(low), abs(high)) >= _EXACT_FLOAT:
                    return False
            if "minimum" in spec and low < spec["minimum"]:
                return False
            if "maximum" in spec and high > spec["maximum"]:
                return False
            if "exclusiveMinimum" in spec and low <= spec["exclusiveMinimum"]:
                return False
            if "exclusiveMaximum" in spec and high >= spec["exclusiveMaximum"]:
                return False
        elif column.kind == "number" and not pc.all(pc.is_finite(values)).as_py():
            return False
        return True


def compile_arrow_checker(schema: dict | None) -> ArrowBlockChecker | None:
    """An :class:`ArrowBlockChecker` for ``schema`` (a JSON Schema of one JSONL record), or None
    when it uses anything this path cannot decide soundly: a top level other than an object with
    ``properties``, ``required`` and ``additionalProperties`` (true or false); a property other
    than one of ``string``, ``integer``, ``number``, ``boolean`` (optionally with ``null``) with
    ``minLength``, ``maxLength``, ``pattern`` (see the module docstring), ``enum`` of strings,
    ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``."""
    flat = flat_object(schema)
    if flat is None or not flat[0]:
        return None
    properties, required = flat
    columns = []
    for name, spec in properties.items():
        column = _column(name, spec, name in required)
        if column is None:
            return None
        columns.append(column)
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        checker = ArrowBlockChecker(columns, closed=schema.get("additionalProperties") is False)
        for c in columns:  # RE2 must compile every pattern; a pattern it refuses: no fast path
            if "pattern" in c.spec:
                pc.match_substring_regex(pa.array([""]), c.spec["pattern"])
    except Exception:
        return None
    return checker


def _column(name: str, spec: Any, required: bool) -> _Column | None:
    if not isinstance(spec, dict) or set(spec) - ANNOTATIONS - {"type"} - _STRING_KEYS - _NUMBER_KEYS:
        return None
    types = spec.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    kinds = [n for n in names if n != "null"]
    if len(kinds) != 1 or len(set(names)) != len(names) or kinds[0] not in _KINDS:
        return None
    kind = kinds[0]
    keys = set(spec) - ANNOTATIONS - {"type"}
    if kind == "string":
        if keys - _STRING_KEYS:
            return None
        if "enum" in spec and (not spec["enum"] or not all(isinstance(v, str) for v in spec["enum"])):
            return None
        if "pattern" in spec and (not isinstance(spec["pattern"], str) or _UNSOUND.search(spec["pattern"])):
            return None
        for key in ("minLength", "maxLength"):
            if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool)):
                return None
    elif kind in ("integer", "number"):
        if keys - _NUMBER_KEYS:
            return None
        if any(not isinstance(spec[k], int | float) or isinstance(spec[k], bool) for k in keys):
            return None
    elif keys:
        return None
    # an explicit null is fine where the type allows it, unless an enum leaves null out
    nulls_ok = "null" in names and "enum" not in spec
    return _Column(name, kind, required=required, nulls_ok=nulls_ok, spec=spec)
