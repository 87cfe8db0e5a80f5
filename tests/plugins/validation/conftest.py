"""Fixtures for the validation tests: the real sample files (helpers: ``validation_samples``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from validation_samples import GSM8K, NEWSGROUPS_GZ, TWEETS


@pytest.fixture(scope="session")
def gsm8k() -> bytes:
    return GSM8K.read_bytes()


@pytest.fixture(scope="session")
def tweets() -> bytes:
    return TWEETS.read_bytes()


@pytest.fixture(scope="session")
def newsgroups_path(tmp_path_factory) -> Path:
    """The newsgroups JSONL decompressed to a temporary file."""
    path = tmp_path_factory.mktemp("newsgroups") / "newsgroups6_train.jsonl"
    with gzip.open(NEWSGROUPS_GZ, "rb") as src, open(path, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    return path
