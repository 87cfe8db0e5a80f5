"""Plain text validation on a real UTF-8 document and broken variants of it."""

from __future__ import annotations

import gzip

import pytest
from validation_samples import (
    PROVENANCE,
    TWEETS,
    TWEETS_INVALID_UTF8,
    codes,
    invalid_utf8_offsets,
    line_offset,
    run,
)

from dataset_ops.validation import load_rules


@pytest.fixture(scope="module")
def text_rules():
    return load_rules("text")


@pytest.fixture(scope="module")
def doc() -> bytes:
    return PROVENANCE.read_bytes()


@pytest.mark.parametrize("block_size", [3, 4096, 4 << 20])
def test_real_text_passes(doc, text_rules, block_size):
    result = run(doc, text_rules, "provenance.txt", block_size=block_size)
    assert result.valid, result.errors
    expected_lines = doc.count(b"\n") + (0 if doc.endswith(b"\n") else 1)
    assert result.lines == result.records == expected_lines
    assert result.content_bytes == len(doc)


def test_multibyte_characters_split_across_blocks_are_fine(text_rules):
    data = TWEETS.read_bytes()  # 846 emoji, many non-ASCII characters
    assert any(b >= 0x80 for b in data)
    assert run(data, text_rules, "tweets.txt", block_size=7).valid


@pytest.mark.parametrize("block_size", [5, 4096, 4 << 20])
def test_invalid_utf8_offsets(text_rules, block_size):
    data = TWEETS_INVALID_UTF8.read_bytes()
    bad = invalid_utf8_offsets(data)
    result = run(data, text_rules, "t.txt", block_size=block_size)
    assert [e.offset for e in result.errors] == bad
    assert [e.line for e in result.errors] == [data.count(b"\n", 0, b) + 1 for b in bad]
    assert set(codes(result)) == {"invalid_utf8"}


def test_truncated_sequence_at_the_end(doc, text_rules):
    data = doc + "é".encode()[:1]
    result = run(data, text_rules, "t.txt", block_size=1000)
    assert [(e.code, e.offset) for e in result.errors] == [("invalid_utf8", len(doc))]


def test_nul_bytes(doc, text_rules):
    binary = run(b"\x00\x01\x02" + doc, text_rules, "b.txt")
    assert codes(binary) == ["format_mismatch"] and "NUL" in binary.errors[0].reason
    late = doc + b"abc\x00def\n"
    result = run(late, text_rules, "t.txt", block_size=4096)
    assert [(e.code, e.offset) for e in result.errors] == [("nul_byte", len(doc) + 3)]
    assert run(late, text_rules.with_overrides({"text": {"allow_nul": True}}), "t.txt").valid


@pytest.mark.parametrize("block_size", [64, 4096, 4 << 20])
def test_long_lines(doc, text_rules, block_size):
    lines = doc.split(b"\n")
    lines.insert(99, b"y" * 3000)
    lines.append(b"z" * 2500)  # last line, no newline
    data = b"\n".join(lines)
    rules = text_rules.with_overrides({"max_line_bytes": 2048})
    assert max(len(line) for line in doc.split(b"\n")) <= 2048  # independent fact
    result = run(data, rules, "t.txt", block_size=block_size)
    assert [(e.code, e.line, e.offset) for e in result.errors] == [
        ("line_too_long", 100, line_offset(data, 100)),
        ("line_too_long", len(lines), line_offset(data, len(lines))),
    ]


def test_gzip_text_and_wrong_extension(doc, text_rules):
    assert run(gzip.compress(doc), text_rules, "t.txt.gz").valid
    assert codes(run(doc, text_rules, "t.md")) == ["format_not_allowed"]
    assert codes(run(b"", text_rules, "t.txt")) == ["empty_file"]
