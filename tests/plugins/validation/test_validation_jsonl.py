"""JSONL validation on the real GSM8K and newsgroups files and on broken variants of them."""

from __future__ import annotations

import gzip
import io
import json

import pytest
from validation_samples import GSM8K, NEWSGROUPS_GZ, TWEETS, codes, line_offset, run

from dataset_ops.validation import ValidationFailed, load_rules, validate_path, validate_stream


@pytest.fixture(scope="module")
def training():
    return load_rules("training_jsonl")


def _insert_line(data: bytes, line: int, new: bytes) -> bytes:
    lines = data.split(b"\n")
    return b"\n".join(lines[: line - 1] + [new] + lines[line - 1 :])


def test_gsm8k_passes_with_7473_records(gsm8k, training):
    result = validate_path(GSM8K, training)
    assert result.valid, result.errors
    expected_records = sum(1 for line in gsm8k.split(b"\n") if line.strip())
    assert expected_records == 7473
    assert result.records == expected_records
    assert result.lines == gsm8k.count(b"\n")
    assert result.bytes == result.content_bytes == len(gsm8k)
    assert result.errors == [] and result.errors_found == 0 and result.complete
    assert result.format == "jsonl" and result.compression is None
    json.dumps(result.to_dict())


@pytest.mark.parametrize("block_size", [997, 64 << 10])
def test_small_blocks_give_the_same_totals(gsm8k, training, block_size):
    result = run(gsm8k, training, "gsm8k.jsonl", block_size=block_size)
    assert (result.valid, result.records, result.lines) == (True, 7473, 7473)


def test_newsgroups_passes_with_3441_records(newsgroups_path):
    rules = load_rules("newsgroups_jsonl")
    result = validate_path(newsgroups_path, rules)
    assert result.valid, result.errors
    data = newsgroups_path.read_bytes()
    assert result.records == sum(1 for line in data.split(b"\n") if line.strip()) == 3441
    # the gzip file itself, decompressed while it is validated
    gz = validate_path(NEWSGROUPS_GZ, rules)
    assert gz.valid and gz.records == 3441 and gz.compression == "gzip"
    assert gz.bytes == NEWSGROUPS_GZ.stat().st_size
    assert gz.content_bytes == len(data)


def test_a_line_that_is_not_an_object(gsm8k, training):
    data = _insert_line(gsm8k, 100, b"[1,2]")
    result = run(data, training, "x.jsonl")
    assert not result.valid
    assert codes(result) == ["not_an_object"]
    err = result.errors[0]
    assert (err.line, err.offset) == (100, line_offset(data, 100))
    assert "array" in err.reason
    assert result.records == 7474


def test_an_empty_line(gsm8k, training):
    data = _insert_line(gsm8k, 50, b"")
    result = run(data, training, "x.jsonl")
    assert codes(result) == ["empty_line"]
    assert (result.errors[0].line, result.errors[0].offset) == (50, line_offset(data, 50))
    assert result.records == 7473 and result.lines == 7474


@pytest.mark.parametrize("block_size", [None, 64 << 10])
def test_one_object_per_line_even_when_the_values_add_up(gsm8k, training, block_size):
    """Two records on one line beside an empty line, and one record over two lines beside a
    line holding one and a half: as many JSON values as lines, yet none of them is valid JSONL."""
    lines = gsm8k.split(b"\n")
    two_on_one = _insert_line(_insert_line(gsm8k, 20, lines[0] + lines[1]), 21, b"")
    obj = json.loads(lines[2])
    split = json.dumps(obj).encode().replace(b", ", b",\n", 1)  # one object over lines 40-41
    over_two = _insert_line(gsm8k, 40, split)
    for data, expected in (
        (two_on_one, [(20, "invalid_json"), (21, "empty_line")]),
        (over_two, [(40, "invalid_json"), (41, "invalid_json")]),
    ):
        result = run(data, training, "x.jsonl", block_size=block_size)
        assert not result.valid
        assert [(e.line, e.code) for e in result.errors] == expected
        assert result.errors[0].offset == line_offset(data, expected[0][0])
        assert result.lines == data.count(b"\n") + (not data.endswith(b"\n"))


def test_invalid_json_and_schema_violations(gsm8k, training):
    lines = gsm8k.split(b"\n")
    broken = lines[:]
    broken[9] = lines[9][:-1]  # line 10 loses its closing brace
    obj = json.loads(lines[299])
    obj["answer"] = 42
    broken[299] = json.dumps(obj).encode()  # line 300: wrong type
    obj = json.loads(lines[499])
    del obj["question"]
    broken[499] = json.dumps(obj).encode()  # line 500: missing key
    obj = json.loads(lines[599])
    obj["extra"] = 1
    broken[599] = json.dumps(obj).encode()  # line 600: key not allowed
    obj = json.loads(lines[699])
    obj["answer"] = "no final result line"
    broken[699] = json.dumps(obj).encode()  # line 700: pattern
    data = b"\n".join(broken)
    result = run(data, training, "x.jsonl")
    found = [(e.line, e.code, e.column) for e in result.errors]
    assert found == [
        (10, "invalid_json", None),
        (300, "schema", "answer"),
        (500, "schema", None),
        (600, "schema", None),
        (700, "schema", "answer"),
    ]
    assert [e.offset for e in result.errors] == [line_offset(data, n) for n in (10, 300, 500, 600, 700)]
    assert "must be string" in result.errors[1].reason


def test_invalid_utf8_names_the_bad_byte(gsm8k, training):
    at = line_offset(gsm8k, 2000) + 20  # inside the question string of line 2000
    data = gsm8k[:at] + b"\xff\xfe" + gsm8k[at:]
    with pytest.raises(UnicodeDecodeError) as exc:
        data.decode("utf-8")
    result = run(data, training, "x.jsonl")
    assert codes(result) == ["invalid_utf8"]
    assert result.errors[0].offset == exc.value.start
    assert result.errors[0].line == data.count(b"\n", 0, exc.value.start) + 1 == 2000


def test_content_that_is_not_jsonl(training, tweets):
    result = run(tweets, training, "tweets.jsonl")
    assert codes(result) == ["format_mismatch"] and not result.complete
    assert "content does not look like JSONL" in result.errors[0].reason
    array = run(b'[{"question": "q", "answer": "a\\n#### 1"}]\n', training, "a.jsonl")
    assert codes(array) == ["format_mismatch"] and "JSON array" in array.errors[0].reason


def test_extension_and_compression_must_fit(gsm8k, training):
    wrong_ext = run(gsm8k, training, "gsm8k.csv")
    assert codes(wrong_ext) == ["format_not_allowed"] and wrong_ext.bytes == 0
    assert codes(run(gsm8k, training, "gsm8k.jsonl.gz")) == ["invalid_gzip"]
    assert codes(run(gzip.compress(gsm8k), training, "gsm8k.jsonl")) == ["format_mismatch"]
    assert codes(run(gsm8k, training, "README")) == ["format_not_allowed"]
    truncated = gzip.compress(gsm8k)[:-100]
    assert "truncated gzip" in run(truncated, training, "g.jsonl.gz").errors[-1].reason


def test_empty_file(training):
    assert codes(run(b"", training, "e.jsonl")) == ["empty_file"]
    assert codes(run(b"", training, "e.jsonl", size=0)) == ["empty_file"]
    assert codes(run(gzip.compress(b""), training, "e.jsonl.gz")) == ["empty_file"]


class _NoRead(io.RawIOBase):
    def readable(self):
        return True

    def read(self, n=-1):
        raise AssertionError("the stream was read")


def test_max_file_size_fails_fast_from_size_and_while_streaming(gsm8k, training):
    small = training.with_overrides({"max_file_size": 1_000_000})
    result = validate_stream(_NoRead(), small, name="big.jsonl", size=len(gsm8k))
    assert codes(result) == ["file_too_large"] and not result.complete
    streamed = run(gsm8k, small, "big.jsonl", block_size=64 << 10)
    assert codes(streamed) == ["file_too_large"] and not streamed.complete
    assert 1_000_000 < streamed.bytes <= 1_000_000 + (64 << 10) < len(gsm8k)


def test_record_count_bounds(gsm8k, training):
    few = run(gsm8k, training.with_overrides({"min_records": 10_000}), "g.jsonl")
    assert codes(few) == ["too_few_records"] and "7,473" in few.errors[0].reason
    many = run(gsm8k, training.with_overrides({"max_records": 7_000}), "g.jsonl")
    assert codes(many) == ["too_many_records"] and "7,473" in many.errors[0].reason
    assert run(gsm8k, training.with_overrides({"max_records": 7_473}), "g.jsonl").valid


def test_max_errors_caps_the_list_but_counting_goes_on(gsm8k, training):
    data = gsm8k
    for line in range(1000, 1010):
        data = _insert_line(data, line, b"[1,2]")
    capped = run(data, training.with_overrides({"max_errors": 3}), "x.jsonl")
    assert len(capped.errors) == 3 and capped.errors_found == 10 and capped.complete
    assert [e.line for e in capped.errors] == [1000, 1001, 1002]
    stopped = run(data, training.with_overrides({"max_errors": 3, "stop_at_max_errors": True}), "x.jsonl")
    assert stopped.errors_found == 3 and not stopped.complete and stopped.records < 7483


@pytest.mark.parametrize("block_size", [1 << 10, 4 << 20])
def test_a_line_over_max_line_bytes(gsm8k, training, block_size):
    assert max(len(line) for line in gsm8k.split(b"\n")) < 4096  # independent fact
    long_obj = {"question": "q" * 5000, "answer": "a\n#### 1"}
    data = _insert_line(gsm8k, 20, json.dumps(long_obj).encode())
    rules = training.with_overrides({"max_line_bytes": 4096})
    result = run(data, rules, "x.jsonl", block_size=block_size)
    assert codes(result) == ["line_too_long"]
    assert (result.errors[0].line, result.errors[0].offset) == (20, line_offset(data, 20))
    assert result.records == 7474 and result.lines == 7474
    # the same line last, without a newline
    tail = gsm8k + json.dumps(long_obj).encode()
    last = run(tail, rules, "x.jsonl", block_size=block_size)
    assert [(e.code, e.line) for e in last.errors] == [("line_too_long", 7474)]
    assert last.errors[0].offset == len(gsm8k)


def test_crlf_and_bom_are_accepted(gsm8k, training):
    crlf = run(b"\xef\xbb\xbf" + gsm8k.replace(b"\n", b"\r\n"), training, "x.jsonl")
    assert crlf.valid and crlf.records == 7473
    with_blank_crlf = _insert_line(gsm8k.replace(b"\n", b"\r\n"), 3, b"\r")
    assert codes(run(with_blank_crlf, training, "x.jsonl")) == ["empty_line"]


def test_the_result_serializes_and_raises(gsm8k, training):
    data = _insert_line(gsm8k, 7, b"[1,2]")
    result = run(data, training, "uploads/x.jsonl")
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["errors"][0] == {
        "code": "not_an_object",
        "reason": result.errors[0].reason,
        "line": 7,
        "offset": line_offset(data, 7),
        "column": None,
    }
    assert payload["valid"] is False and payload["records"] == 7474
    with pytest.raises(ValidationFailed, match=r"(?s)uploads/x.jsonl: 1 validation error.*line 7"):
        result.raise_for_errors()
    validate_path(GSM8K, training).raise_for_errors()


def test_tweets_file_is_no_training_set():
    assert not validate_path(TWEETS, load_rules("training_jsonl"), name="t.jsonl").valid
