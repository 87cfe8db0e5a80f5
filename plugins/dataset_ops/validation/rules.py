"""Rule sets: what a valid file of one data type looks like, loaded from commented YAML.

A rule set lives in ``include/validation/<data_type>.yaml`` (format: ``include/validation/README.md``).
Top-level keys and their units:

* ``allowed_formats``: file kinds accepted, by name extension: ``jsonl``, ``csv``, ``txt`` and
  their gzip variants ``jsonl.gz``, ``csv.gz``, ``txt.gz``.
* ``max_file_size``: bytes as stored (compressed bytes for ``.gz``); ``null`` = no limit.
  Sizes may be written as integers or as strings with a unit (``"64 MiB"``, ``"2 GB"``).
* ``min_records`` / ``max_records``: bounds on the record count (``null`` = no bound).
* ``max_line_bytes``: the longest line (JSONL, text) or record (CSV) in bytes, terminator excluded;
  default 64 MiB.
* ``max_errors``: how many errors the result lists (default 100); ``stop_at_max_errors``: stop
  reading when that many were found (default false: keep counting to the end of the file).
* ``jsonl.schema``: a JSON Schema (draft 4/6/7, compiled by fastjsonschema) every line must match.
* ``csv``: ``columns`` (name, type, required, nullable, format, enum, pattern, minimum, maximum),
  ``header`` (``exact`` or ``by_name``), ``delimiter``, ``null_values``, ``true_values``,
  ``false_values``, ``allow_extra_columns``, ``skip_blank_lines``.
* ``text.allow_nul``: whether NUL bytes may occur in a text file (default false).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dataset_ops.errors import InputError, NotFound

#: Folder of the YAML rule sets: ``<repo>/include/validation``.
RULES_DIR = Path(__file__).resolve().parents[3] / "include" / "validation"
#: Base formats, by name extension.
BASE_FORMATS = ("jsonl", "csv", "txt")
#: Every value ``allowed_formats`` may hold.
FORMATS = BASE_FORMATS + tuple(f"{f}.gz" for f in BASE_FORMATS)
#: Default longest line or record (bytes).
DEFAULT_MAX_LINE_BYTES = 64 << 20
#: Default number of errors a result lists.
DEFAULT_MAX_ERRORS = 100
#: CSV column types.
COLUMN_TYPES = ("string", "integer", "number", "boolean", "date", "datetime")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RuleError(InputError):
    """A rule set or an override is malformed (unknown key, wrong type, bad schema, a bad Param
    value); the message names it. A ``ValueError``, and permanent
    (:class:`dataset_ops.errors.PermanentError`): a task fails on it without retries."""


class UnknownRuleSet(RuleError, NotFound):
    """No rule set (data type) of that name; the message lists the known ones. Permanent."""


def parse_size(value: Any, key: str = "size") -> int | None:
    """Bytes from an integer or a string with a unit (``"64 MiB"``, ``"2GB"``, ``"1024"``).

    :param value: the YAML/Param value; ``None`` stays ``None`` (no limit).
    :param key: name used in error messages.
    :raises RuleError: not a non-negative size.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise RuleError(f"{key}: expected a size in bytes, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise RuleError(f"{key}: must not be negative, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value.replace("_", ""))
        if m and m.group(2).lower() in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise RuleError(f"{key}: expected bytes as an integer or a string like '64 MiB', got {value!r}")


def _opt_int(data: dict, key: str, default: int | None, minimum: int = 0) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RuleError(f"{key}: expected an integer >= {minimum} or null, got {value!r}")
    return value


def _bool(data: dict, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise RuleError(f"{key}: expected true or false, got {value!r}")
    return value


def _str_list(data: dict, key: str, default: tuple[str, ...] | None) -> tuple[str, ...] | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _check_keys(data: Any, allowed: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise RuleError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


@dataclass(frozen=True)
class ColumnRule:
    """One CSV column.

    :param name: header name.
    :param type: ``string``, ``integer`` (64-bit, digits with optional ``-``), ``number`` (float:
        ``1``, ``-2.5``, ``5.70306E+17``, ``inf``, ``nan``), ``boolean`` (``true_values`` /
        ``false_values``), ``date`` (ISO ``YYYY-MM-DD`` or ``format``), ``datetime`` (ISO 8601
        with optional zone offset, or ``format``).
    :param required: the header must contain the column (``header: by_name``; with ``exact``
        every listed column is required).
    :param nullable: whether an empty field (a ``null_values`` entry) is allowed.
    :param format: strptime format for ``date``/``datetime`` (e.g. ``"%d-%m-%Y %H.%M"``).
    :param enum: the only values allowed (non-empty fields).
    :param pattern: RE2 regular expression every non-empty value must match as a whole.
    :param minimum: smallest allowed value (``integer``/``number``).
    :param maximum: largest allowed value (``integer``/``number``).
    """

    name: str
    type: str = "string"
    required: bool = True
    nullable: bool = True
    format: str | None = None
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None

    _KEYS = {"name", "type", "required", "nullable", "format", "enum", "pattern", "minimum", "maximum"}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> ColumnRule:
        """Build from one ``columns`` entry. :raises RuleError: malformed entry."""
        _check_keys(data, cls._KEYS, where)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise RuleError(f"{where}: 'name' must be a non-empty string")
        where = f"{where} ({name})"
        ctype = data.get("type", "string")
        if ctype not in COLUMN_TYPES:
            raise RuleError(f"{where}: type {ctype!r} is not one of {list(COLUMN_TYPES)}")
        fmt = data.get("format")
        if fmt is not None and (ctype not in ("date", "datetime") or not isinstance(fmt, str)):
            raise RuleError(f"{where}: 'format' is a strptime string, only for date/datetime columns")
        pattern = data.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise RuleError(f"{where}: 'pattern' must be a string")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise RuleError(f"{where}: bad pattern {pattern!r}: {exc}") from None
        bounds = {}
        for key in ("minimum", "maximum"):
            value = data.get(key)
            if value is not None:
                if ctype not in ("integer", "number"):
                    raise RuleError(f"{where}: '{key}' only applies to integer/number columns")
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise RuleError(f"{where}: '{key}' must be a number, got {value!r}")
            bounds[key] = value
        return cls(
            name=name,
            type=ctype,
            required=_bool(data, "required", True),
            nullable=_bool(data, "nullable", True),
            format=fmt,
            enum=_str_list(data, "enum", None),
            pattern=pattern,
            **bounds,
        )

    def to_dict(self) -> dict:
        """Plain YAML/JSON form (defaults omitted)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("name", "type") and value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class CsvRules:
    """CSV rules (RFC 4180: ``"``-quoted fields, ``""`` escapes, CRLF or LF, newlines in quotes).

    :param columns: the expected columns; empty = check structure and UTF-8 only.
    :param header: ``exact``: the header line equals the column names, in order;
        ``by_name``: every ``required`` column is present, in any order.
    :param delimiter: one character.
    :param null_values: field values that count as empty (null).
    :param true_values: spellings of true for ``boolean`` columns.
    :param false_values: spellings of false.
    :param allow_extra_columns: with ``by_name``, columns not listed are allowed (unchecked).
    :param skip_blank_lines: ignore empty lines instead of reporting them.
    """

    columns: tuple[ColumnRule, ...] = ()
    header: str = "exact"
    delimiter: str = ","
    null_values: tuple[str, ...] = ("",)
    true_values: tuple[str, ...] = ("true", "True", "TRUE", "1")
    false_values: tuple[str, ...] = ("false", "False", "FALSE", "0")
    allow_extra_columns: bool = False
    skip_blank_lines: bool = False

    _KEYS = {
        "columns",
        "header",
        "delimiter",
        "null_values",
        "true_values",
        "false_values",
        "allow_extra_columns",
        "skip_blank_lines",
    }

    @classmethod
    def from_dict(cls, data: dict | None) -> CsvRules:
        """Build from the ``csv`` section. :raises RuleError: malformed section."""
        data = data or {}
        _check_keys(data, cls._KEYS, "csv")
        raw_columns = data.get("columns") or []
        if not isinstance(raw_columns, list):
            raise RuleError("csv.columns: expected a list of column mappings")
        columns = tuple(ColumnRule.from_dict(c, f"csv.columns[{i}]") for i, c in enumerate(raw_columns))
        names = [c.name for c in columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise RuleError(f"csv.columns: duplicate column names {dupes}")
        header = data.get("header", "exact")
        if header not in ("exact", "by_name"):
            raise RuleError(f"csv.header: expected 'exact' or 'by_name', got {header!r}")
        delimiter = data.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise RuleError(
                f"csv.delimiter: expected one character other than quote/CR/LF, got {delimiter!r}"
            )
        return cls(
            columns=columns,
            header=header,
            delimiter=delimiter,
            null_values=_str_list(data, "null_values", cls.null_values),
            true_values=_str_list(data, "true_values", cls.true_values),
            false_values=_str_list(data, "false_values", cls.false_values),
            allow_extra_columns=_bool(data, "allow_extra_columns", False),
            skip_blank_lines=_bool(data, "skip_blank_lines", False),
        )

    def to_dict(self) -> dict:
        """Plain YAML/JSON form."""
        return {
            "columns": [c.to_dict() for c in self.columns],
            "header": self.header,
            "delimiter": self.delimiter,
            "null_values": list(self.null_values),
            "true_values": list(self.true_values),
            "false_values": list(self.false_values),
            "allow_extra_columns": self.allow_extra_columns,
            "skip_blank_lines": self.skip_blank_lines,
        }


def _require_object(obj: Any) -> Any:
    if obj.__class__ is not dict:
        raise TypeError("not an object")
    return obj


@dataclass(frozen=True)
class JsonlRules:
    """JSONL rules: every line is one JSON object matching ``schema``.

    :param schema: JSON Schema (the top level must describe an object; ``type: object`` is
        added when missing), compiled once with fastjsonschema.
    """

    schema: dict | None = None
    validator: Any = field(default=_require_object, compare=False, repr=False)
    #: msgspec decoder checking whole blocks in C when the schema allows it (see block_decoder).
    block_decoder: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: dict | None) -> JsonlRules:
        """Build from the ``jsonl`` section and compile the schema. :raises RuleError: bad schema."""
        import fastjsonschema

        data = data or {}
        _check_keys(data, {"schema"}, "jsonl")
        schema = data.get("schema")
        if schema is None:
            return cls()
        if not isinstance(schema, dict):
            raise RuleError("jsonl.schema: expected a JSON Schema mapping")
        if schema.get("type", "object") != "object":
            raise RuleError("jsonl.schema: the top level must be 'type: object' (one object per line)")
        schema = {**schema, "type": "object"}
        try:
            validator = fastjsonschema.compile(schema, use_default=False)
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            raise RuleError(f"jsonl.schema: not a valid JSON Schema: {exc}") from None
        from dataset_ops.validation.block_decoder import compile_block_decoder

        return cls(schema=schema, validator=validator, block_decoder=compile_block_decoder(schema))

    def to_dict(self) -> dict:
        """Plain YAML/JSON form."""
        return {"schema": self.schema}


@dataclass(frozen=True)
class TextRules:
    """Plain text rules: UTF-8, lines up to ``max_line_bytes``.

    :param allow_nul: whether NUL bytes may occur (off: a NUL marks binary data).
    """

    allow_nul: bool = False

    @classmethod
    def from_dict(cls, data: dict | None) -> TextRules:
        """Build from the ``text`` section. :raises RuleError: malformed section."""
        data = data or {}
        _check_keys(data, {"allow_nul"}, "text")
        return cls(allow_nul=_bool(data, "allow_nul", False))

    def to_dict(self) -> dict:
        """Plain YAML/JSON form."""
        return {"allow_nul": self.allow_nul}


@dataclass(frozen=True)
class RuleSet:
    """Everything a file of one data type is checked against. Build with :func:`load_rules`.

    :param name: the data type (YAML file stem).
    :param allowed_formats: values of :data:`FORMATS`.
    :param max_file_size: bytes as stored, or None.
    :param min_records: fewest records (0 = no bound).
    :param max_records: most records, or None.
    :param max_line_bytes: longest line (JSONL, text) or record (CSV), bytes without terminator.
    :param max_errors: errors listed in a result (more are counted, not listed).
    :param stop_at_max_errors: stop reading once ``max_errors`` errors were found.
    :param jsonl: JSONL rules (used for ``.jsonl`` files).
    :param csv: CSV rules (used for ``.csv`` files).
    :param text: text rules (used for ``.txt`` files).
    :param description: free text.
    :param source: the YAML file the rules came from, if any.
    """

    name: str
    allowed_formats: tuple[str, ...]
    max_file_size: int | None = None
    min_records: int = 0
    max_records: int | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_errors: int = DEFAULT_MAX_ERRORS
    stop_at_max_errors: bool = False
    jsonl: JsonlRules = field(default_factory=JsonlRules)
    csv: CsvRules = field(default_factory=CsvRules)
    text: TextRules = field(default_factory=TextRules)
    description: str = ""
    source: str | None = None

    KEYS = frozenset(
        {
            "description",
            "allowed_formats",
            "max_file_size",
            "min_records",
            "max_records",
            "max_line_bytes",
            "max_errors",
            "stop_at_max_errors",
            "jsonl",
            "csv",
            "text",
        }
    )

    @classmethod
    def from_dict(cls, name: str, data: dict, source: str | None = None) -> RuleSet:
        """Build a rule set from its YAML mapping.

        :param name: the data type, used in messages.
        :param data: the mapping (top-level keys: :attr:`KEYS`).
        :param source: where it came from, for messages.
        :raises RuleError: unknown keys, wrong types, an invalid schema or column list.
        """
        where = source or name
        try:
            _check_keys(data, set(cls.KEYS), "rule set")
            formats = data.get("allowed_formats")
            if isinstance(formats, str):
                formats = [formats]
            if not formats or not all(isinstance(f, str) for f in formats):
                raise RuleError("allowed_formats: expected a non-empty list, e.g. [jsonl, jsonl.gz]")
            formats = tuple(f.lower().lstrip(".") for f in formats)
            bad = [f for f in formats if f not in FORMATS]
            if bad:
                raise RuleError(f"allowed_formats: unknown {bad}; known: {list(FORMATS)}")
            max_line = parse_size(data.get("max_line_bytes", DEFAULT_MAX_LINE_BYTES), "max_line_bytes")
            if not max_line:
                raise RuleError("max_line_bytes: must be a positive size")
            rules = cls(
                name=name,
                allowed_formats=formats,
                max_file_size=parse_size(data.get("max_file_size"), "max_file_size"),
                min_records=_opt_int(data, "min_records", 0) or 0,
                max_records=_opt_int(data, "max_records", None),
                max_line_bytes=max_line,
                max_errors=_opt_int(data, "max_errors", DEFAULT_MAX_ERRORS, minimum=1) or DEFAULT_MAX_ERRORS,
                stop_at_max_errors=_bool(data, "stop_at_max_errors", False),
                jsonl=JsonlRules.from_dict(data.get("jsonl")),
                csv=CsvRules.from_dict(data.get("csv")),
                text=TextRules.from_dict(data.get("text")),
                description=str(data.get("description") or "").strip(),
                source=source,
            )
        except RuleError as exc:
            raise RuleError(f"rules {where}: {exc}") from None
        if rules.max_records is not None and rules.max_records < rules.min_records:
            raise RuleError(
                f"rules {where}: max_records ({rules.max_records}) < min_records ({rules.min_records})"
            )
        return rules

    def to_dict(self) -> dict:
        """Plain YAML/JSON form (what :meth:`from_dict` accepts); JSON-serializable."""
        return {
            "description": self.description,
            "allowed_formats": list(self.allowed_formats),
            "max_file_size": self.max_file_size,
            "min_records": self.min_records,
            "max_records": self.max_records,
            "max_line_bytes": self.max_line_bytes,
            "max_errors": self.max_errors,
            "stop_at_max_errors": self.stop_at_max_errors,
            "jsonl": self.jsonl.to_dict(),
            "csv": self.csv.to_dict(),
            "text": self.text.to_dict(),
        }

    def with_overrides(self, overrides: dict | None) -> RuleSet:
        """A copy with top-level keys replaced (e.g. from Airflow Params).

        A key present in ``overrides`` replaces the whole value, ``None`` included (so
        ``{"max_records": None}`` removes the bound). Sections (``csv``, ...) are replaced whole.

        :raises RuleError: an unknown key or an invalid value.
        """
        if not overrides:
            return self
        unknown = sorted(set(overrides) - self.KEYS)
        if unknown:
            raise RuleError(
                f"rules {self.name}: unknown override key(s) {unknown}; allowed: {sorted(self.KEYS)}"
            )
        return RuleSet.from_dict(self.name, {**self.to_dict(), **overrides}, source=self.source)


def available_rule_sets(rules_dir: Path | None = None) -> list[str]:
    """Names of the rule sets in ``rules_dir`` (default :data:`RULES_DIR`), sorted."""
    folder = rules_dir or RULES_DIR
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_rules(data_type: str, overrides: dict | None = None, *, rules_dir: Path | None = None) -> RuleSet:
    """Load ``<rules_dir>/<data_type>.yaml`` and apply ``overrides`` to its top-level keys.

    :param data_type: rule set name, e.g. ``"training_jsonl"``.
    :param overrides: top-level keys to replace (see :meth:`RuleSet.with_overrides`).
    :param rules_dir: folder of YAML files (default :data:`RULES_DIR`, ``<repo>/include/validation``).
    :raises UnknownRuleSet: unknown data type (a :class:`RuleError`; the message lists the known
        ones).
    :raises RuleError: a malformed file or override.
    """
    import yaml

    folder = rules_dir or RULES_DIR
    if not isinstance(data_type, str) or not _NAME_RE.fullmatch(data_type):
        raise UnknownRuleSet(f"invalid data type name {data_type!r}")
    path = folder / f"{data_type}.yaml"
    if not path.is_file():
        raise UnknownRuleSet(f"no rule set {data_type!r} in {folder}; known: {available_rule_sets(folder)}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RuleError(f"rules {path}: not valid YAML: {exc}") from None
    return RuleSet.from_dict(data_type, data or {}, source=str(path)).with_overrides(overrides)
