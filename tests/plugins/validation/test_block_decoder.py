"""The msgspec fast path never accepts a record the exact path (orjson + fastjsonschema) rejects."""

from __future__ import annotations

import fastjsonschema
import orjson
import pytest

from dataset_ops.validation.block_decoder import compile_block_decoder

SCHEMAS = {
    "strings": {
        "type": "object",
        "required": ["question", "answer"],
        "additionalProperties": False,
        "properties": {
            "question": {"type": "string", "minLength": 1},
            "answer": {"type": "string", "minLength": 1, "pattern": "\n#### -?[0-9][0-9,.]*$"},
        },
    },
    "mixed": {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "score": {"type": ["number", "null"], "exclusiveMaximum": 1},
            "label": {"type": "string", "enum": ["cat", "dog"]},
            "ok": {"type": "boolean"},
            "odd-name": {"type": "string", "maxLength": 3},
        },
    },
}
RECORDS = [
    b'{"question": "q", "answer": "a\\n#### 5"}',
    b'{"question": "", "answer": "a\\n#### 5"}',
    b'{"question": "q", "answer": "no result"}',
    b'{"question": "q"}',
    b'{"question": "q", "answer": "a\\n#### 5", "extra": 1}',
    b'{"question": 1, "answer": "a\\n#### 5"}',
    b'{"id": 3, "score": 0.5, "label": "cat", "ok": true, "odd-name": "abc"}',
    b'{"id": 3, "score": null}',
    b'{"id": 3, "score": 1}',
    b'{"id": 0}',
    b'{"id": 1.0}',
    b'{"id": true}',
    b'{"id": 2, "label": "cow"}',
    b'{"id": 2, "label": null}',
    b'{"id": 2, "ok": 1}',
    b'{"id": 2, "odd-name": "abcd"}',
    b'{"id": 2, "unknown": [1, 2]}',
    b"[1, 2]",
    b'"text"',
]


def exact_accepts(validate, line: bytes) -> bool:
    try:
        obj = orjson.loads(line)
        if not isinstance(obj, dict):
            return False
        validate(obj)
        return True
    except Exception:
        return False


@pytest.mark.parametrize("schema_name", SCHEMAS)
@pytest.mark.parametrize("line", RECORDS, ids=range(len(RECORDS)))
def test_fast_path_is_never_more_lenient(schema_name, line):
    schema = SCHEMAS[schema_name]
    decoder = compile_block_decoder(schema)
    assert decoder is not None
    try:
        fast_accepts = len(decoder.decode_lines(line)) == 1
    except Exception:
        fast_accepts = False
    if fast_accepts:
        assert exact_accepts(fastjsonschema.compile(schema), line), line


def test_the_valid_records_pass_the_fast_path_too():
    decoder = compile_block_decoder(SCHEMAS["strings"])
    assert len(decoder.decode_lines(RECORDS[0] + b"\n" + RECORDS[0])) == 2


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "array"}}},
        {"type": "object", "properties": {"a": {"type": "object"}}},
        {"type": "object", "properties": {"a": {"type": "string", "format": "date"}}},
        {"type": "object", "oneOf": [{"required": ["a"]}]},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "object", "properties": {"a": {"type": "integer", "exclusiveMinimum": True}}},
    ],
)
def test_schemas_outside_the_subset_get_no_fast_path(schema):
    assert compile_block_decoder(schema) is None
