"""Invalid UTF-8 is rejected by every rule set in include/validation/, anywhere in a record, on
every reader path: one process, JSONL worker processes (forced, and by the size threshold),
CSV with and without its parse threads, small blocks that split sequences, gzip.

The expected errors are computed from the bytes with ``bytes.decode`` (``invalid_utf8_offsets``),
never copied from the validator: every invalid sequence must be reported as ``invalid_utf8``
with its line, the content offset of its first byte and a reason naming the bytes.
"""

from __future__ import annotations

import gzip
import json

import pytest
from validation_samples import invalid_utf8_offsets, run

from dataset_ops.validation import available_rule_sets, load_rules
from dataset_ops.validation import jsonl as jsonl_module
from dataset_ops.validation import validator as validator_module

#: Invalid UTF-8 (RFC 3629) of each kind; each followed by ASCII, so it is one bad sequence.
BAD_BYTES = {
    "invalid start byte": b"\xff",
    "lone surrogate U+D800 encoded": b"\xed\xa0\x80",
    "overlong '/' in two bytes": b"\xc0\xaf",
    "overlong '/' in three bytes": b"\xe0\x80\xaf",
    "above U+10FFFF": b"\xf4\x90\x80\x80",
    "truncated three-byte sequence": b"\xe2\x82",
    "continuation byte alone": b"\x80",
}


def _jsonl(good: dict, declared: str) -> tuple[bytes, list[bytes]]:
    """A valid line and lines with one invalid sequence (``@@``) in: a declared string value,
    a key, an undeclared field, a string nested in an undeclared object/array."""
    line = json.dumps(good, ensure_ascii=False).encode()
    bad = [
        json.dumps({**good, declared: good[declared] + "@@x"}, ensure_ascii=False).encode(),
        json.dumps({**good, "k@@": 1}, ensure_ascii=False).encode(),
        json.dumps({**good, "undeclared": "v@@"}, ensure_ascii=False).encode(),
        json.dumps({**good, "meta": {"tags": ["a", "b@@c"]}}, ensure_ascii=False).encode(),
    ]
    return line, bad


TWEETS_HEADER = (
    b"tweet_id,airline_sentiment,airline_sentiment_confidence,negativereason,"
    b"negativereason_confidence,airline,airline_sentiment_gold,name,negativereason_gold,"
    b"retweet_count,text,tweet_coord,tweet_created,tweet_location,user_timezone"
)
TWEETS_ROW = (
    b'5.70306E+17,neutral,1,,,Virgin America,,cairdin,,0,"@VirginAmerica What @dhepburn said.",'
    b",24-02-2015 11.35,,Eastern Time (US & Canada)"
)

#: Per rule set: (file extension, header line or None, a valid record, records with ``@@``).
#: Every rule set in include/validation/ must be here (test_every_rule_set_has_a_sample).
SAMPLES: dict[str, tuple[str, bytes | None, bytes, list[bytes]]] = {
    "jsonl": ("jsonl", None, *_jsonl({"id": 1, "name": "ann"}, "name")),
    "training_jsonl": (
        "jsonl",
        None,
        *_jsonl({"question": "How many?", "answer": "Two.\n#### 2"}, "question"),
    ),
    "newsgroups_jsonl": ("jsonl", None, *_jsonl({"text": "Launch window", "label": "space"}, "text")),
    "csv": (
        "csv",
        b"id,name,text",
        b"1,ann,hello",
        [b"2,b@@b,hi", b'3,bob,"two\nlines @@ here"', b'4,"q@@",x'],
    ),
    "tweets_csv": (
        "csv",
        TWEETS_HEADER,
        TWEETS_ROW,
        [
            TWEETS_ROW.replace(b"What", b"Wh@@at"),  # a quoted string cell
            TWEETS_ROW.replace(b"cairdin", b"cair@@din"),  # an unquoted string cell
            TWEETS_ROW.replace(b"Eastern", b'"Multi\nline @@"'),  # a cell over two lines
            TWEETS_ROW.replace(b"Virgin America", b"Virgin America@@"),  # an enum cell
        ],
    ),
    "text": ("txt", None, b"plain text line", [b"caf@@ au lait", b"@@", b"end of line @@"]),
}


def _content(rule_set: str, bad: bytes, header_too: bool = False) -> bytes:
    """Valid records with the bad records spread between them; the bad bytes in the header too."""
    _, header, good, bad_records = SAMPLES[rule_set]
    lines = [] if header is None else [header.replace(b",", b",h" + bad if header_too else b",", 1)]
    for record in bad_records:
        lines += [good] * 5 + [record.replace(b"@@", bad)]
    lines += [good] * 5
    return b"\n".join(lines) + b"\n"


def _expected(content: bytes) -> list[tuple[int, int]]:
    """(line, offset) of every invalid sequence, from ``bytes.decode``."""
    return [(1 + content.count(b"\n", 0, at), at) for at in invalid_utf8_offsets(content)]


def _by_line(pairs: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for line, at in pairs:
        out.setdefault(line, []).append(at)
    return out


def _check(result, content: bytes) -> None:
    """Every line with invalid UTF-8 has an ``invalid_utf8`` error at its first bad byte (later
    ones on the same line may be listed too: CSV and text list each, JSONL stops at the first);
    the reason names the bytes found at that offset."""
    found = _by_line([(e.line, e.offset) for e in result.errors if e.code == "invalid_utf8"])
    expected = _by_line(_expected(content))
    assert not result.valid
    assert sorted(found) == sorted(expected)
    for line, offsets in found.items():
        assert offsets[0] == expected[line][0] and set(offsets) <= set(expected[line])
    for error in result.errors:
        if error.code == "invalid_utf8":
            assert error.reason.startswith("invalid UTF-8: byte(s) ")
            shown = bytes.fromhex(error.reason.split("byte(s) ", 1)[1].split(" (", 1)[0])
            assert shown and content[error.offset : error.offset + len(shown)] == shown


def test_every_rule_set_has_a_sample():
    """A new rule set must be added to SAMPLES, so that it is tested here too."""
    assert sorted(SAMPLES) == available_rule_sets()


@pytest.mark.parametrize("rule_set", sorted(SAMPLES))
def test_the_clean_samples_pass(rule_set):
    """The valid record and header pass: the invalid_utf8 errors below come from the bad bytes."""
    ext, header, good, _ = SAMPLES[rule_set]
    content = b"\n".join(([header] if header else []) + [good] * 3) + b"\n"
    result = run(content, load_rules(rule_set), f"x.{ext}", workers=1)
    assert result.valid and result.records == 3, result.errors


@pytest.mark.parametrize("kind", sorted(BAD_BYTES))
@pytest.mark.parametrize("rule_set", sorted(SAMPLES))
def test_invalid_utf8_anywhere_is_rejected(rule_set, kind):
    bad = BAD_BYTES[kind]
    ext = SAMPLES[rule_set][0]
    rules = load_rules(rule_set)
    content = _content(rule_set, bad)
    assert len(_by_line(_expected(content))) == len(SAMPLES[rule_set][3])
    _check(run(content, rules, f"x.{ext}", workers=1), content)
    # small blocks: sequences and records split across blocks, carried lines
    _check(run(content, rules, f"x.{ext}", workers=1, block_size=7), content)
    _check(run(gzip.compress(content), rules, f"x.{ext}.gz", workers=1, block_size=64), content)
    if ext == "csv":
        _check(run(content, rules, "x.csv", threaded=False), content)


@pytest.mark.parametrize("rule_set", [r for r in sorted(SAMPLES) if SAMPLES[r][1] is not None])
def test_invalid_utf8_in_a_csv_header(rule_set):
    bad = BAD_BYTES["lone surrogate U+D800 encoded"]
    content = _content(rule_set, bad, header_too=True)
    result = run(content, load_rules(rule_set), "x.csv")
    _check(result, content)
    assert result.errors[0].line == 1


@pytest.mark.parametrize("rule_set", sorted(SAMPLES))
def test_a_sequence_cut_off_by_the_end_of_the_file(rule_set):
    """The last record ends in the middle of a character (no final newline)."""
    ext, _, good, _ = SAMPLES[rule_set]
    content = _content(rule_set, b"ok")
    if ext == "jsonl":
        last = good[: good.rindex(b'"')] + b"\xe2\x82"  # the file stops inside a string
    else:
        last = good + b"\xe2\x82"
    content += last
    result = run(content, load_rules(rule_set), f"x.{ext}", workers=1, block_size=16)
    _check(result, content)
    assert "unexpected end of data" in next(e.reason for e in result.errors if e.code == "invalid_utf8")


JSONL_RULE_SETS = [r for r in sorted(SAMPLES) if SAMPLES[r][0] == "jsonl"]


@pytest.mark.parametrize("pool", ["threads", "processes"])
@pytest.mark.parametrize("rule_set", JSONL_RULE_SETS)
def test_jsonl_workers_reject_invalid_utf8(rule_set, pool, monkeypatch):
    """The parallel paths (threads where the schema is in Arrow's subset, else processes; the
    Arrow path turned off to force them): all kinds of bad bytes in one file, chunks of a few
    lines."""
    if pool == "processes":
        monkeypatch.setattr(jsonl_module, "compile_arrow_checker", lambda schema: None)
    rules = load_rules(rule_set)
    content = b"".join(_content(rule_set, bad) for bad in BAD_BYTES.values())
    one = run(content, rules, "x.jsonl", workers=1, block_size=200)
    two = run(content, rules, "x.jsonl", workers=2, block_size=200)
    assert two.workers == 2
    assert len(_by_line(_expected(content))) == len(BAD_BYTES) * len(SAMPLES[rule_set][3])
    _check(one, content)
    _check(two, content)
    assert one.errors == two.errors and one.errors_found == two.errors_found


def test_the_size_threshold_starts_workers_that_reject_invalid_utf8(monkeypatch):
    """A file at or over PARALLEL_MIN_BYTES (256 MiB, lowered here) goes to worker processes
    without anyone asking; they reject invalid UTF-8 like one process does."""
    content = _content("jsonl", BAD_BYTES["lone surrogate U+D800 encoded"]) * 20
    monkeypatch.setattr(validator_module, "PARALLEL_MIN_BYTES", len(content))
    result = run(content, load_rules("jsonl"), "x.jsonl", size=len(content), block_size=300)
    assert result.workers == validator_module.default_workers("jsonl", len(content)) > 1
    _check(result, content)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"name": {"type": "string"}}},  # msgspec, unknown fields skipped
        {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        {"type": "object", "properties": {"tags": {"type": "array"}}},  # orjson + fastjsonschema
        {},
    ],
)
def test_schemas_that_allow_undeclared_fields(schema):
    """Without ``additionalProperties: false`` undeclared fields are not checked by the schema;
    their bytes still must be UTF-8, in one process and in workers."""
    rules = load_rules("jsonl").with_overrides({"jsonl": {"schema": schema}})
    for bad in BAD_BYTES.values():
        content = _content("jsonl", bad)
        _check(run(content, rules, "x.jsonl", workers=1), content)
        _check(run(content, rules, "x.jsonl", workers=2, block_size=100), content)
