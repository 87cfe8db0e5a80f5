"""CSV validation on the real airline-tweets files (Excel output: CRLF, quoted multi-line
fields, doubled quotes, emoji) and on broken variants of them."""

from __future__ import annotations

import csv
import gzip
import io
import re

import pytest
from validation_samples import (
    GSM8K,
    TWEETS,
    TWEETS_INVALID_UTF8,
    codes,
    csv_records,
    invalid_utf8_offsets,
    line_offset,
    run,
)

from dataset_ops.validation import BLOCK_SIZE, CSV_BLOCK_SIZE, load_rules, validate_path
from dataset_ops.validation.csvfile import CsvValidator


@pytest.fixture(scope="module")
def rules():
    return load_rules("tweets_csv")


def _simple_lines(data: bytes) -> list[int]:
    """1-based numbers of lines that hold a whole record with no quotes (15 plain fields)."""
    lines = data.split(b"\n")
    out = []
    for i in range(1, len(lines) - 1):
        line, prev = lines[i], lines[i - 1]
        if prev.endswith(b"\r") and line.endswith(b"\r") and b'"' not in line and line.count(b",") == 14:
            out.append(i + 1)
    return out


def _set_field(data: bytes, line: int, field: int, value: bytes) -> bytes:
    lines = data.split(b"\n")
    fields = lines[line - 1].rstrip(b"\r").split(b",")
    fields[field] = value
    lines[line - 1] = b",".join(fields) + b"\r"
    return b"\n".join(lines)


def test_clean_tweets_pass_with_14640_records(tweets, rules):
    result = validate_path(TWEETS, rules)
    assert result.valid, result.errors
    assert result.records == csv_records(tweets) == 14640
    assert result.lines == tweets.count(b"\n")
    assert tweets.count(b"\r\n") == 14641  # CRLF record ends (header + records)
    assert result.bytes == result.content_bytes == len(tweets)


@pytest.mark.parametrize("block_size", [4096, 65536, CSV_BLOCK_SIZE, BLOCK_SIZE])
@pytest.mark.parametrize("threaded", [True, False])
def test_chunking_does_not_change_the_outcome(tweets, rules, block_size, threaded):
    result = run(tweets, rules, "t.csv", block_size=block_size, threaded=threaded)
    assert (result.valid, result.records, result.lines) == (True, 14640, tweets.count(b"\n"))


def test_lf_line_ends_gzip_and_bom_pass(tweets, rules):
    lf = tweets.replace(b"\r\n", b"\n")
    assert run(lf, rules, "t.csv").valid
    gz = run(gzip.compress(tweets), rules, "t.csv.gz")
    assert gz.valid and gz.records == 14640 and gz.compression == "gzip"
    assert run(b"\xef\xbb\xbf" + tweets, rules, "t.csv").valid


def test_invalid_utf8_file_names_its_first_bad_byte(rules):
    data = TWEETS_INVALID_UTF8.read_bytes()
    bad = invalid_utf8_offsets(data)
    with pytest.raises(UnicodeDecodeError) as first:
        data.decode("utf-8")
    assert bad[0] == first.value.start
    result = validate_path(TWEETS_INVALID_UTF8, rules)
    assert not result.valid
    utf8 = [e for e in result.errors if e.code == "invalid_utf8"]
    assert utf8[0].offset == first.value.start
    assert utf8[0].line == data.count(b"\n", 0, first.value.start) + 1
    assert [e.offset for e in utf8] == bad
    # its columns are in another order: reported, and the structure is still checked
    assert codes(result) == ["header"] + ["invalid_utf8"] * len(bad)
    assert result.records == 14640
    structure_only = validate_path(TWEETS_INVALID_UTF8, rules.with_overrides({"csv": {"columns": []}}))
    assert codes(structure_only) == ["invalid_utf8"] * len(bad)


def test_file_cut_inside_a_quoted_field(tweets, rules):
    m = re.search(rb',"[^"]*\n', tweets)  # the first quoted field with an embedded newline
    quote = m.start() + 1
    cut = tweets.index(b"\n", quote) + 1
    data = tweets[:cut]
    expected_line = data.count(b"\n", 0, quote) + 1
    record_start = data.rfind(b"\n", 0, quote) + 1
    result = run(data, rules, "t.csv")
    assert codes(result) == ["unclosed_quote"]
    err = result.errors[0]
    assert (err.line, err.offset) == (expected_line, line_offset(data, expected_line))
    assert f"byte {quote:,}" in err.reason
    assert result.records == csv_records(tweets[:record_start])
    assert run(data, rules, "t.csv", block_size=4096).errors == result.errors


def test_dropped_closing_quote_is_reported_where_the_field_opened(tweets, rules):
    m = re.search(rb',"([^"\n]*)",', tweets)  # a quoted field on one line
    data = tweets[: m.end() - 2] + tweets[m.end() - 1 :]  # drop its closing quote
    line = data.count(b"\n", 0, m.start()) + 1
    result = run(data, rules, "t.csv")
    # the field now ends at the next quote in the file, which is followed by text
    assert (result.errors[0].code, result.errors[0].line) == ("field_count", line)
    assert "bare_quote" in codes(result)
    assert run(data, rules, "t.csv", block_size=4096).errors == result.errors


def test_quote_that_never_closes_stops_at_max_line_bytes(tweets, rules):
    header = tweets.split(b"\n", 1)[0] + b"\n"
    plain = [tweets.split(b"\n")[n - 1] + b"\n" for n in _simple_lines(tweets)[:2000]]  # no quotes
    k = 50  # data line k is file line k + 1
    fields = plain[k - 1].split(b",")
    fields[7] = b'"' + fields[7]
    plain[k - 1] = b",".join(fields)
    data = header + b"".join(plain)
    assert len(data) - len(header) - sum(map(len, plain[: k - 1])) > 300_000
    result = run(data, rules.with_overrides({"max_line_bytes": 256 << 10}), "t.csv", block_size=16 << 10)
    assert codes(result) == ["unclosed_quote"] and not result.complete
    assert (result.errors[0].line, result.errors[0].offset) == (k + 1, line_offset(data, k + 1))
    # with room to read to the end, the file ends inside the field: same line, and complete
    at_end = run(data, rules, "t.csv")
    assert codes(at_end) == ["unclosed_quote"] and at_end.complete
    assert at_end.errors[0].line == k + 1 and at_end.records == k - 1


def test_bare_quotes_in_unquoted_fields(tweets, rules):
    lines = _simple_lines(tweets)
    one = _set_field(tweets, lines[300], 7, b'jnar"dino')
    result = run(one, rules, "t.csv")
    assert [(e.code, e.line, e.offset) for e in result.errors] == [
        ("bare_quote", lines[300], line_offset(one, lines[300]))
    ]
    assert result.records == 14640
    two = _set_field(one, lines[-50], 7, b'x"y')
    assert [(e.code, e.line) for e in run(two, rules, "t.csv").errors] == [
        ("bare_quote", lines[300]),
        ("bare_quote", lines[-50]),
    ]
    inches = _set_field(tweets, lines[700], 13, b"5'10\"")  # a quote at the end of an unquoted field
    found = run(inches, rules, "t.csv", block_size=8192)
    assert [(e.code, e.line) for e in found.errors] == [("bare_quote", lines[700])]
    assert found.records == 14640


def test_wrong_field_count_and_blank_line(tweets, rules):
    lines = _simple_lines(tweets)
    target = lines[100]
    parts = tweets.split(b"\n")
    parts[target - 1] = parts[target - 1].rsplit(b",", 1)[0] + b"\r"  # 14 fields
    blank_at = lines[200]
    parts.insert(blank_at - 1, b"\r")  # a blank CRLF line before that record
    data = b"\n".join(parts)
    result = run(data, rules, "t.csv")
    assert [(e.code, e.line, e.offset) for e in result.errors] == [
        ("field_count", target, line_offset(data, target)),
        ("empty_line", blank_at, line_offset(data, blank_at)),
    ]
    assert result.records == 14640
    skipping = run(
        data, rules.with_overrides({"csv": {**rules.csv.to_dict(), "skip_blank_lines": True}}), "t.csv"
    )
    assert codes(skipping) == ["field_count"]


def _typed_mutations(tweets: bytes) -> tuple[bytes, list[tuple[int, str, str]]]:
    lines = _simple_lines(tweets)
    changes = [
        (lines[10], 0, b"abc", "tweet_id"),  # not a number
        (lines[20], 9, b"1.5", "retweet_count"),  # not an integer
        (lines[30], 1, b"angry", "airline_sentiment"),  # not in the enum
        (lines[40], 12, b"2015-02-24 11:35", "tweet_created"),  # other date format
        (lines[50], 2, b"1.5", "airline_sentiment_confidence"),  # over the maximum
        (lines[60], 7, b"", "name"),  # empty, not nullable
        (lines[70], 11, b"[1.0; 2.0]", "tweet_coord"),  # pattern
        (lines[80], 12, b"24-02-15 11.35", "tweet_created"),  # 2-digit year: strptime takes it, pattern not
        (lines[90], 12, b"31-02-2015 11.35", "tweet_created"),  # no such day (Arrow would roll it over)
        (lines[100], 12, b"31-04-2015 23.59", "tweet_created"),  # no such day either
        (lines[7000], 9, b"-1", "retweet_count"),  # under the minimum
    ]
    data = tweets
    expected = []
    for line, field, value, column in changes:
        data = _set_field(data, line, field, value)
        expected.append((line, "null_value" if value == b"" else "invalid_value", column))
    return data, expected


def test_type_enum_format_bounds_and_null_errors(tweets, rules):
    data, expected = _typed_mutations(tweets)
    result = run(data, rules, "t.csv")
    assert [(e.line, e.code, e.column) for e in result.errors] == expected
    assert [e.offset for e in result.errors] == [line_offset(data, line) for line, _, _ in expected]
    reasons = "\n".join(e.reason for e in result.errors)
    assert "column 'tweet_id': 'abc' is not a number" in reasons
    assert "column 'airline_sentiment_confidence': '1.5' is more than 1" in reasons
    assert "'2015-02-24 11:35' does not match the datetime format '%d-%m-%Y %H.%M'" in reasons
    assert "'24-02-15 11.35' does not match '[0-9]{2}-" in reasons
    assert "'31-02-2015 11.35' does not match the datetime format" in reasons
    assert result.records == 14640


def test_real_month_ends_and_leap_days_pass_and_impossible_days_fail():
    """Arrow's strptime rolls 31-02 over to 3 March; the validator decides as Python's strptime."""
    import pyarrow as pa

    from dataset_ops.validation.csvfile import strptime_strict

    good = ["28-02-2015 10.00", "29-02-2016 00.00", "31-03-2015 23.59", "30-04-2015 10.30", "1-3-2031 1.31"]
    bad = ["29-02-2015 10.00", "30-02-2016 00.00", "31-04-2015 10.00", "31-06-2029 10.30", "31-11-2015 00.00"]
    parsed = strptime_strict(pa.chunked_array([pa.array(good + bad + [None])]), "%d-%m-%Y %H.%M")
    assert [v is not None for v in parsed.to_pylist()] == [True] * 5 + [False] * 6


@pytest.mark.parametrize("block_size", [4096, 65536])
def test_errors_do_not_depend_on_chunking_or_threads(tweets, rules, block_size):
    data, _ = _typed_mutations(tweets)
    lines = _simple_lines(tweets)
    data = _set_field(data, lines[5000], 7, b'a"b')
    reference = run(data, rules, "t.csv")
    other = run(data, rules, "t.csv", block_size=block_size, threaded=False)
    assert other.errors == reference.errors
    assert (other.records, other.lines) == (reference.records, reference.lines)


def test_precise_path_agrees_with_the_fast_path(tweets, rules, monkeypatch):
    data, expected = _typed_mutations(tweets)
    fast = run(data, rules, "t.csv")
    monkeypatch.setattr(CsvValidator, "_fast", lambda self, view: None)  # every chunk the slow way
    assert run(tweets, rules, "t.csv").valid
    slow = run(data, rules, "t.csv", block_size=65536)
    assert slow.errors == fast.errors and slow.records == fast.records == 14640


def test_header_must_match(tweets, rules):
    header, rest = tweets.split(b"\r\n", 1)
    names = header.split(b",")
    names[3], names[4] = names[4], names[3]
    swapped = run(b",".join(names) + b"\r\n" + rest, rules, "t.csv")
    assert codes(swapped) == ["header"] and "column 4" in swapped.errors[0].reason
    assert swapped.records == 14640
    short = run(b",".join(names[:-1]) + b"\r\n" + rest, rules, "t.csv")
    assert codes(short)[0] == "header" and "user_timezone" in short.errors[0].reason
    assert short.errors_found == 1 + 14640  # every record has 15 fields, the header found 14


def test_columns_by_name_in_any_order(tweets, rules):
    rows = list(csv.reader(io.StringIO(tweets.decode("utf-8"), newline="")))
    order = list(reversed(range(15)))
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows([[row[i] for i in order] for row in rows])
    reordered = out.getvalue().encode("utf-8")
    by_name = rules.with_overrides({"csv": {**rules.csv.to_dict(), "header": "by_name"}})
    assert run(reordered, by_name, "t.csv").valid
    assert codes(run(reordered, rules, "t.csv")) == ["header"]
    dropped = io.StringIO(newline="")
    csv.writer(dropped, lineterminator="\r\n").writerows([row[:-1] for row in rows])
    missing = run(dropped.getvalue().encode(), by_name, "t.csv")
    assert codes(missing) == ["header"] and "user_timezone" in missing.errors[0].reason


def test_content_that_is_not_csv(rules):
    result = validate_path(GSM8K, rules, name="gsm8k.csv")
    assert codes(result) == ["format_mismatch"] and "does not look like CSV" in result.errors[0].reason
    assert codes(run(b"a,b\x00c\r\n", rules, "x.csv")) == ["format_mismatch"]
    assert codes(run(b'[{"a": 1}]\n', rules, "x.csv")) == ["format_mismatch"]
    bracketed = run(b"[id],name\r\n1,x\r\n", rules.with_overrides({"csv": {}}), "x.csv")
    assert bracketed.valid and bracketed.records == 1  # a header may start with '['


def test_header_only_and_empty(tweets, rules):
    header_only = run(tweets.split(b"\n", 1)[0] + b"\n", rules, "t.csv")
    assert codes(header_only) == ["too_few_records"] and header_only.records == 0
    assert codes(run(b"", rules, "t.csv")) == ["empty_file"]


@pytest.mark.parametrize("threaded", [True, False])
def test_records_longer_than_a_block(tweets, rules, threaded):
    lines = _simple_lines(tweets)
    long_text = b'"' + b'said ""hi""\n' * 3000 + b'"'  # 40 KB, 3000 embedded newlines
    data = _set_field(tweets, lines[1001], 7, b'bare"quote')  # and a bare quote in the next record
    data = _set_field(data, lines[1000], 10, long_text)
    result = run(data, rules, "t.csv", block_size=4096, threaded=threaded)
    assert [(e.code, e.line) for e in result.errors] == [("bare_quote", lines[1001] + 3000)]
    assert result.records == 14640 and result.lines == data.count(b"\n")
    valid = _set_field(tweets, lines[1000], 10, long_text)
    assert run(valid, rules, "t.csv", block_size=4096, threaded=threaded).valid


def test_a_record_over_max_line_bytes(tweets, rules):
    lines = _simple_lines(tweets)
    data = _set_field(tweets, lines[1000], 13, b"x" * 50_000)
    small = rules.with_overrides({"max_line_bytes": 20_000})
    where = (lines[1000], line_offset(data, lines[1000]))
    # longer than the blocks: found while streaming, and reading cannot go on
    streamed = run(data, small, "t.csv", block_size=4096)
    assert codes(streamed) == ["line_too_long"] and not streamed.complete
    assert (streamed.errors[0].line, streamed.errors[0].offset) == where
    # inside one block: reported, the record is not checked further, reading goes on
    for threaded in (True, False):
        inside = run(data, small, "t.csv", threaded=threaded)
        assert codes(inside) == ["line_too_long"] and inside.complete and inside.records == 14640
        assert (inside.errors[0].line, inside.errors[0].offset) == where
    short_lines = (b"y" * 99 + b"\n") * 300  # 30 KB in lines of 100 bytes
    multi_line = _set_field(tweets, lines[1000], 10, b'"' + short_lines + b'"')
    result = run(multi_line, small, "t.csv")
    assert [(e.code, e.line) for e in result.errors] == [("line_too_long", lines[1000])]
    assert run(multi_line, rules, "t.csv").valid
