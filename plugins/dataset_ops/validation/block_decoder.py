"""A fast path for JSONL blocks: a flat JSON Schema compiled into a msgspec decoder.

``msgspec.json.Decoder(...).decode_lines(block)`` parses and type-checks a whole block of JSON
Lines in C (msgspec docs, "Constraints" and "Structs"). :func:`compile_block_decoder` builds such
a decoder only when it can enforce the schema at least as strictly as the JSON Schema validator
would: an object with ``properties`` of the types ``string``, ``integer``, ``number`` and
``boolean`` (or a list of them, with ``null``), the keywords ``minLength``, ``maxLength``,
``pattern`` (``re.search``, as fastjsonschema does), ``enum`` of strings, ``minimum``,
``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``required`` and
``additionalProperties: false``. Anything else returns None and the exact path
(orjson + fastjsonschema) runs alone.

Where msgspec is stricter (``1.0`` for an ``integer``), a block simply fails the fast path and
is checked again line by line by the exact path, which decides. ``decode_lines`` counts values,
not lines (it skips blank lines and takes ``{..}{..}`` as two), so the caller also checks the
line structure (:meth:`dataset_ops.validation.jsonl.JsonlValidator._fast_region`). The fast
path never accepts a block the exact path would reject.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}
#: JSON Schema keywords that only annotate (ignored by the fast paths)
ANNOTATIONS = {"title", "description", "$comment", "examples", "default", "$schema", "$id"}
_STRING_KEYS = {"minLength": "min_length", "maxLength": "max_length", "pattern": "pattern"}
_NUMBER_KEYS = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt"}


def flat_object(schema: dict | None) -> tuple[dict, set[str]] | None:
    """``(properties, required names)`` of a JSON Schema whose top level is an object with only
    ``properties``, ``required`` (all of them declared) and ``additionalProperties`` true or
    false (annotations aside), or None. The shape both fast paths start from."""
    if not schema or set(schema) - ANNOTATIONS - {"type", "properties", "required", "additionalProperties"}:
        return None
    if schema.get("type") != "object" or schema.get("additionalProperties", True) not in (True, False):
        return None
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    if not isinstance(properties, dict) or not required <= set(properties):
        return None
    return properties, required


def compile_block_decoder(schema: dict | None) -> Any | None:
    """A ``msgspec.json.Decoder`` whose ``decode_lines(block)`` enforces ``schema``, or None.

    :param schema: a JSON Schema for one JSONL record (the top level an object).
    :returns: the decoder, or None when the schema uses anything outside the supported subset.
    """
    import msgspec

    flat = flat_object(schema)
    if flat is None:
        return None
    properties, required = flat
    fields, rename = [], {}
    for i, (name, spec) in enumerate(properties.items()):
        annotation = _property_type(spec)
        if annotation is None:
            return None
        attr = f"f{i}"
        rename[attr] = name
        if name in required:
            fields.append((attr, annotation))
        else:  # absent is fine, an explicit null only if the schema allows it
            fields.append((attr, annotation | msgspec.UnsetType, msgspec.UNSET))
    record = msgspec.defstruct(
        "JsonlRecord",
        fields,
        rename=rename,
        forbid_unknown_fields=schema.get("additionalProperties") is False,
    )
    return msgspec.json.Decoder(record)


def _property_type(spec: Any) -> Any | None:
    import msgspec

    if not isinstance(spec, dict) or set(spec) - ANNOTATIONS - {"type", "enum"} - set(_STRING_KEYS) - set(
        _NUMBER_KEYS
    ):
        return None
    types = spec.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    if not names or any(n not in _TYPES for n in names):
        return None
    if "enum" in spec:
        values = spec["enum"]
        if names != ["string"] or not values or not all(isinstance(v, str) for v in values):
            return None
        if set(spec) & (set(_STRING_KEYS) | set(_NUMBER_KEYS)):
            return None
        return Literal[tuple(values)]
    string_meta = {_STRING_KEYS[k]: spec[k] for k in _STRING_KEYS if k in spec}
    number_meta = {_NUMBER_KEYS[k]: spec[k] for k in _NUMBER_KEYS if k in spec}
    if any(isinstance(v, bool) for v in number_meta.values()):  # draft-04 boolean exclusive*
        return None
    parts = []
    for n in names:
        t = _TYPES[n]
        if n == "string" and string_meta:
            t = Annotated[str, msgspec.Meta(**string_meta)]
        elif n in ("integer", "number") and number_meta:
            t = Annotated[t, msgspec.Meta(**number_meta)]
        parts.append(t)
    if string_meta and "string" not in names or number_meta and not {"integer", "number"} & set(names):
        return None  # constraints for a type that is not allowed: leave it to the exact path
    annotation = parts[0]
    for t in parts[1:]:
        annotation = annotation | t
    return annotation
