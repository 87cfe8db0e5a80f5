"""GunzipCounter / VerifyingReader on real IMDb bytes and on broken variants of them."""

from __future__ import annotations

import gzip
import io

import pytest
from helpers.imdb_data import FULL_RATINGS, FULL_RATINGS_ROWS, slice_path

from dataset_ops.imdb.datasets import imdb_file
from dataset_ops.streams import GunzipCounter, StreamFormatError, VerifyingReader, gunzip_blocks

RATINGS = imdb_file("title.ratings")


def _count(data: bytes, header: bytes | None, block: int = 64 << 10) -> GunzipCounter:
    counter = GunzipCounter("f.tsv.gz", header)
    for _ in gunzip_blocks(io.BytesIO(data), counter, block):
        pass
    return counter


def test_counts_rows_of_the_complete_ratings_dump():
    counter = _count(FULL_RATINGS.read_bytes(), RATINGS.header)
    assert counter.rows == FULL_RATINGS_ROWS
    assert counter.decompressed_bytes == 13_831_123


def test_last_line_without_newline_counts_as_a_row():
    raw = slice_path("title.ratings").read_bytes()  # 2025-08 slice ends with a newline
    no_newline = raw.rstrip(b"\n")
    assert (
        _count(gzip.compress(no_newline), RATINGS.header).rows
        == _count(gzip.compress(raw), RATINGS.header).rows
    )


def test_multi_member_gzip_is_read_whole():
    raw = slice_path("title.ratings").read_bytes()
    half = raw.index(b"\n", len(raw) // 2) + 1
    data = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    assert _count(data, RATINGS.header).rows == raw.count(b"\n") - 1


@pytest.mark.parametrize("cut", [10, 1000, 500_000])
def test_truncated_gzip_is_an_error_naming_the_line(cut):
    data = FULL_RATINGS.read_bytes()[:cut]
    with pytest.raises(StreamFormatError, match=r"f\.tsv\.gz: line \d+: truncated gzip") as exc:
        _count(data, RATINGS.header)
    assert exc.value.line >= 1


def test_wrong_header_is_an_error_on_line_1():
    data = gzip.compress(slice_path("title.basics").read_bytes())
    with pytest.raises(StreamFormatError, match=r"line 1: wrong header: expected 'tconst\\taverageRating"):
        _count(data, RATINGS.header)


def test_not_gzip_is_an_error():
    with pytest.raises(StreamFormatError, match="not a valid gzip stream"):
        _count(b"<html>503 Service Unavailable</html>", RATINGS.header)


def test_empty_input_is_an_error():
    with pytest.raises(StreamFormatError, match="empty file"):
        _count(b"", RATINGS.header)


def test_verifying_reader_passes_bytes_through_and_hashes_them():
    import hashlib

    data = FULL_RATINGS.read_bytes()
    reader = VerifyingReader(io.BytesIO(data), "u", RATINGS.header, expected_bytes=len(data))
    out = io.BytesIO()
    while block := reader.read(1 << 20):
        out.write(block)
    assert out.getvalue() == data
    assert reader.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert reader.gunzip.rows == FULL_RATINGS_ROWS


def test_verifying_reader_rejects_a_short_body_at_eof():
    data = FULL_RATINGS.read_bytes()
    reader = VerifyingReader(io.BytesIO(data[:-100]), "u", RATINGS.header, expected_bytes=len(data))
    with pytest.raises(StreamFormatError, match="incomplete body"):
        while reader.read(1 << 20):
            pass


def test_highly_compressible_input_is_yielded_in_bounded_pieces():
    from dataset_ops.streams import MAX_OUTPUT

    text = b"h\n" + b"x" * (200 << 20) + b"\n"  # 200 MiB that gzip turns into ~200 KiB
    counter = GunzipCounter("bomb.gz", b"h")
    pieces = list(len(p) for p in gunzip_blocks(io.BytesIO(gzip.compress(text, 1)), counter))
    assert max(pieces) <= MAX_OUTPUT and sum(pieces) == len(text)
    assert counter.rows == 1
