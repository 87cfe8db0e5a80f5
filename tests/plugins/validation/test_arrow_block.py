"""The Arrow fast path never accepts a record the exact path (orjson + fastjsonschema) rejects,
and refuses the schemas and patterns where it could."""

from __future__ import annotations

import fastjsonschema
import orjson
import pytest

from dataset_ops.validation.arrow_block import compile_arrow_checker

SCHEMAS = {
    "strings": {
        "type": "object",
        "required": ["question", "answer"],
        "additionalProperties": False,
        "properties": {
            "question": {"type": "string", "minLength": 2, "maxLength": 6},
            "answer": {"type": "string", "minLength": 1, "pattern": "\n#### -?[0-9][0-9,.]*$"},
        },
    },
    "mixed": {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "score": {"type": ["number", "null"], "exclusiveMaximum": 1},
            "big": {"type": "number", "maximum": 9007199254740992},
            "label": {"type": ["string", "null"], "enum": ["cat", "dog"]},
            "ok": {"type": "boolean"},
            "word": {"type": "string", "pattern": "^[a-z]+$"},
        },
    },
}
RECORDS = [
    b'{"question": "qq", "answer": "a\\n#### 5"}',
    b'{"question": "\xc3\xa9\xc3\xa9", "answer": "a\\n#### 5"}',  # 2 characters in 4 bytes
    b'{"question": "\xc3\xa9", "answer": "a\\n#### 5"}',  # 1 character in 2 bytes: too short
    b'{"question": "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", "answer": "a\\n#### 5"}',
    b'{"question": "q", "answer": "a\\n#### 5"}',
    b'{"question": "qq", "answer": "no result"}',
    b'{"question": "qq", "answer": "a\\n#### 5\\n"}',  # Python's $ matches before a final newline
    b'{"question": "qq"}',
    b'{"question": null, "answer": "a\\n#### 5"}',
    b'{"question": "qq", "answer": "a\\n#### 5", "extra": 1}',
    b'{"question": 12, "answer": "a\\n#### 5"}',
    b'{"question": "qq", "question": "", "answer": "a\\n#### 5"}',
    b'{"question": "q\xff", "answer": "a\\n#### 5"}',
    b'{"question": "\\ud83d", "answer": "a\\n#### 5"}',
    b'{"id": 3, "score": 0.5, "label": "cat", "ok": true, "word": "abc"}',
    b'{"id": 3, "score": null}',
    b'{"id": 3, "score": 1}',
    b'{"id": 0}',
    b'{"id": 1.0}',
    b'{"id": true}',
    b'{"id": 9223372036854775808}',
    b'{"id": 2, "label": "cow"}',
    b'{"id": 2, "label": null}',
    b'{"id": 2, "ok": 1}',
    b'{"id": 2, "big": 9007199254740993}',
    b'{"id": 2, "big": 1e400}',
    b'{"id": 2, "word": "abc\\n"}',
    b'{"id": 2, "word": "ab1"}',
    b'{"id": 2, "unknown": [1, 2]}',
    b'{"id": 2, "unknown": "\xff"}',
    b"[1, 2]",
    b'"text"',
]


def exact_accepts(schema: dict, line: bytes) -> bool:
    try:
        obj = orjson.loads(line)
        if not isinstance(obj, dict):
            return False
        fastjsonschema.compile(schema)(obj)
        return True
    except Exception:
        return False


def arrow_accepts(schema: dict, line: bytes) -> bool:
    checker = compile_arrow_checker(schema)
    assert checker is not None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:  # the caller's UTF-8 pass (Arrow stores invalid bytes unchecked)
        return False
    return checker.rows_if_valid(line + b"\n") == 1


@pytest.mark.parametrize("schema_name", SCHEMAS)
@pytest.mark.parametrize("line", RECORDS, ids=range(len(RECORDS)))
def test_fast_path_is_never_more_lenient(schema_name, line):
    schema = SCHEMAS[schema_name]
    if arrow_accepts(schema, line):
        assert exact_accepts(schema, line), line


@pytest.mark.parametrize(
    ("schema_name", "line"),
    [
        ("strings", RECORDS[0]),
        ("strings", RECORDS[1]),
        ("mixed", RECORDS[14]),
        ("mixed", b'{"id": 3, "score": 0.1, "big": 1.5, "label": "dog", "ok": false, "word": "x"}'),
        ("mixed", b'{"id": 3, "unknown": {"deep": [1]}}'),
    ],
)
def test_valid_records_pass_the_fast_path(schema_name, line):
    assert exact_accepts(SCHEMAS[schema_name], line)
    assert arrow_accepts(SCHEMAS[schema_name], line), line


def test_a_block_counts_its_values_and_one_bad_record_fails_it():
    checker = compile_arrow_checker(SCHEMAS["strings"])
    good = RECORDS[0] + b"\n"
    assert checker.rows_if_valid(good * 3) == 3
    assert checker.rows_if_valid(good + RECORDS[4] + b"\n" + good) is None


def test_arrow_does_not_check_utf8_so_the_caller_must():
    """Why the caller decodes each block strictly first: Arrow keeps invalid bytes in a string."""
    checker = compile_arrow_checker(SCHEMAS["strings"])
    assert checker.rows_if_valid(b'{"question": "q\xffq", "answer": "a\\n#### 5"}\n') == 1


def test_a_missing_optional_key_passes_and_an_explicit_null_is_sent_on():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    checker = compile_arrow_checker(schema)
    assert checker.rows_if_valid(b'{"a": 1}\n{"b": "x"}\n') == 2
    assert checker.rows_if_valid(b'{"a": 1}\n{"b": null}\n') is None
    # the text null inside a string makes the nulls ambiguous: sent on, never accepted wrongly
    assert checker.rows_if_valid(b'{"a": 1}\n{"b": "null"}\n') is None
    nullable = {"type": "object", "properties": {"a": {"type": ["integer", "null"]}}}
    assert compile_arrow_checker(nullable).rows_if_valid(b'{"a": null}\n{}\n{"a": 2}\n') == 3


@pytest.mark.parametrize(
    "pattern",
    [r"\S+", r"\bcat\b", r"\Bx", r"(?i)cat", r"a{,3}", r"[^\d]", r"\D", r"\W", r"(?=a)a", r"(a)\1", r"\Z"],
)
def test_patterns_where_re2_may_be_more_lenient_get_no_fast_path(pattern):
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": pattern}}}
    assert compile_arrow_checker(schema) is None


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "array"}}},
        {"type": "object", "properties": {"a": {"type": "object"}}},
        {"type": "object", "properties": {"a": {"type": ["string", "integer"]}}},
        {"type": "object", "properties": {"a": {"type": "string", "format": "date"}}},
        {"type": "object", "properties": {"a": {"type": "integer", "exclusiveMinimum": True}}},
        {"type": "object", "properties": {"a": {"type": "integer", "minLength": 1}}},
        {"type": "object", "oneOf": [{"required": ["a"]}]},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "object", "properties": {}},
    ],
)
def test_schemas_outside_the_subset_get_no_fast_path(schema):
    assert compile_arrow_checker(schema) is None
