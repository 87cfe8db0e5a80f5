"""Real sample files for the validation tests (see ../shared/data/PROVENANCE.md) and helpers.

Expected values in the tests are computed from the bytes with independent means (``str.split``,
``bytes.decode`` exceptions, Python's ``csv`` module), never copied from the validator.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from helpers.imdb_data import SHARED_DATA

from dataset_ops.validation import RuleSet, ValidationResult, validate_stream

REPO = Path(__file__).resolve().parents[3]
DATA = SHARED_DATA  # ../shared/data or $DATASET_OPS_SHARED_DATA
GSM8K = DATA / "ml" / "gsm8k_train.jsonl"
NEWSGROUPS_GZ = DATA / "ml" / "newsgroups6_train.jsonl.gz"
TWEETS = DATA / "messy_csv" / "Tweets.airline-sentiment.csv"
TWEETS_INVALID_UTF8 = DATA / "messy_csv" / "Tweets.airline-sentiment.invalid-utf8.csv"
PROVENANCE = DATA / "PROVENANCE.md"


def run(data: bytes, rules: RuleSet, name: str, **kwargs) -> ValidationResult:
    """Validate in-memory bytes as a stream (no ``size`` unless given)."""
    return validate_stream(io.BytesIO(data), rules, name=name, **kwargs)


def line_offset(data: bytes, line: int) -> int:
    """0-based byte offset of the start of 1-based ``line`` (by splitting on ``\\n``)."""
    return sum(len(piece) + 1 for piece in data.split(b"\n")[: line - 1])


def csv_records(data: bytes) -> int:
    """Records after the header, by Python's csv module (RFC 4180 quoting)."""
    return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8"), newline=""))) - 1


def codes(result: ValidationResult) -> list[str]:
    return [e.code for e in result.errors]


def invalid_utf8_offsets(data: bytes) -> list[int]:
    """Offsets of the first byte of every invalid UTF-8 sequence, found with ``bytes.decode``."""
    bad, pos = [], 0
    while True:
        try:
            data[pos:].decode("utf-8")
            return bad
        except UnicodeDecodeError as exc:
            bad.append(pos + exc.start)
            pos += exc.end
