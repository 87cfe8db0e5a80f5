"""gzip -> COPY -> staging -> publish on the real PostgreSQL server, with good and bad input."""

from __future__ import annotations

import gzip
import io

import pytest
from helpers.imdb_data import IMDB_DATA, data_rows, slice_path

from dataset_ops.imdb import load
from dataset_ops.imdb.datasets import imdb_file
from dataset_ops.imdb.tasks import stage
from dataset_ops.storage import open_storage, write_json
from dataset_ops.streams import StreamFormatError

BASICS = imdb_file("title.basics")
AKAS = imdb_file("title.akas")


def gz(data: bytes) -> io.BytesIO:
    return io.BytesIO(gzip.compress(data))


def stage_and_publish(pg, spec, data: bytes) -> load.StageResult:
    load.ensure_schemas(pg)
    result = load.stage_file(pg, spec, gz(data))
    load.publish(pg, [result.to_dict()])
    return result


@pytest.fixture
def published_basics(pg):
    """A published generation of imdb.title_basics (the real 50,001-row slice)."""
    data = slice_path("title.basics").read_bytes()
    stage_and_publish(pg, BASICS, data)
    return data_rows(slice_path("title.basics"))


def assert_still_published(pg, rows):
    assert pg.execute("SELECT count(*) FROM imdb.title_basics").fetchone()[0] == rows
    assert pg.execute("SELECT primaryTitle FROM imdb.title_basics WHERE tconst = 'tt0000001'").fetchone() == (
        "Carmencita",
    )


def test_unbalanced_quotes_and_array_separators_load_byte_exact(pg):
    path = IMDB_DATA / "variants" / "title.akas.filtered-2022.tsv"
    result = stage_and_publish(pg, AKAS, path.read_bytes())
    assert result.rows == 70_348
    loaded = dict(
        ((t, o), (title, region))
        for t, o, title, region in pg.execute("SELECT titleId, ordering, title, region FROM imdb.title_akas")
    )
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        f = line.split("\t")
        assert loaded[(f[0], int(f[1]))] == (f[2], None if f[3] == "\\N" else f[3])
    assert loaded[("tt10426110", 1)][0] == 'He Returns" or "Volvió'


def test_staging_is_replaced_and_publish_swaps_generations(pg, published_basics):
    head = b"".join(slice_path("title.basics").read_bytes().splitlines(keepends=True)[:101])
    stage_and_publish(pg, BASICS, head)
    assert pg.execute("SELECT count(*) FROM imdb.title_basics").fetchone()[0] == 100
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'imdb_staging'").fetchone()[0] == 0
    # The published table is keyed and analyzed, UNLOGGED by default.
    assert _persistence(pg, "imdb.title_basics") == "u"
    assert pg.execute(
        "SELECT reltuples FROM pg_class WHERE oid = 'imdb.title_basics'::regclass"
    ).fetchone() == (100,)
    assert (
        pg.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'imdb' AND indexname = 'title_basics_pkey'"
        ).fetchone()[0]
        == 1
    )


def _persistence(pg, table: str) -> str:
    return pg.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()[0]


def test_logged_tables_are_crash_safe_and_compacted(pg):
    load.ensure_schemas(pg)
    data = slice_path("title.basics").read_bytes()
    unlogged = load.stage_file(pg, BASICS, gz(data))
    unlogged_size = pg.execute("SELECT pg_table_size('imdb_staging.title_basics')").fetchone()[0]
    logged = load.stage_file(pg, BASICS, gz(data), logged=True)
    assert unlogged.rows == logged.rows == 50_001
    assert _persistence(pg, "imdb_staging.title_basics") == "p"
    # SET LOGGED rewrites the rows, dropping the bytes of the helper column genres_raw.
    assert pg.execute("SELECT pg_table_size('imdb_staging.title_basics')").fetchone()[0] < unlogged_size
    assert pg.execute(
        "SELECT genres FROM imdb_staging.title_basics WHERE tconst = 'tt0000001'"
    ).fetchone() == (["Documentary", "Short"],)


def test_row_cut_mid_line_fails_naming_file_and_line(pg, published_basics):
    data = (IMDB_DATA / "variants" / "title.basics.truncated-2025-04.tsv").read_bytes()
    load.ensure_schemas(pg)
    with pytest.raises(
        load.ImdbLoadError, match=r"title\.basics\.tsv\.gz: line 29887: missing data for column"
    ):
        load.stage_file(pg, BASICS, gz(data))
    assert_still_published(pg, published_basics)


def _with_line(data: bytes, lineno: int, new: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    lines[lineno - 1] = new
    return b"".join(lines)


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (
            b"tt9999999\tmovie\tA\tA\t0\t2000\t\\N\t90\tDrama\textra\n",
            "extra data after last expected column",
        ),
        (
            b"tt9999999\tmovie\tCaf\xe9\tA\t0\t2000\t\\N\t90\tDrama\n",
            'invalid byte sequence for encoding "UTF8"',
        ),
        (b"tt9999999\tmovie\tA\tA\tmaybe\t2000\t\\N\t90\tDrama\n", "invalid input syntax for type boolean"),
        (b"tt9999999\tmovie\tA\tA\t0\tMMXX\t\\N\t90\tDrama\n", "invalid input syntax for type integer"),
    ],
)
def test_bad_rows_fail_naming_file_line_and_reason(pg, published_basics, bad_line, reason):
    data = _with_line(slice_path("title.basics").read_bytes(), 1234, bad_line)
    with pytest.raises(load.ImdbLoadError) as exc:
        load.stage_file(pg, BASICS, gz(data))
    assert exc.value.args[0].startswith("title.basics.tsv.gz: line 1234: ")
    assert reason in str(exc.value)
    assert_still_published(pg, published_basics)


def test_duplicate_keys_fail_before_publishing(pg, published_basics):
    data = slice_path("title.basics").read_bytes()
    lines = data.splitlines(keepends=True)
    with pytest.raises(
        load.ImdbLoadError, match=r"title\.basics\.tsv\.gz: .*tconst\)=\(tt0000002\) is duplicated"
    ):
        load.stage_file(pg, BASICS, gz(b"".join(lines + [lines[2]])))
    assert_still_published(pg, published_basics)


def test_truncated_gzip_fails_and_leaves_published_table(pg, published_basics):
    data = gzip.compress(slice_path("title.basics").read_bytes())
    with pytest.raises(StreamFormatError, match=r"title\.basics\.tsv\.gz: line \d+: truncated gzip"):
        load.stage_file(pg, BASICS, io.BytesIO(data[: len(data) // 2]))
    assert_still_published(pg, published_basics)


def test_wrong_header_fails_on_line_1(pg, published_basics):
    with pytest.raises(StreamFormatError, match=r"title\.basics\.tsv\.gz: line 1: wrong header"):
        load.stage_file(pg, BASICS, gz(slice_path("title.crew").read_bytes()))
    assert_still_published(pg, published_basics)


def test_row_count_must_match_the_download_manifest(pg):
    load.ensure_schemas(pg)
    with pytest.raises(load.ImdbLoadError, match="the download counted 7; the file changed"):
        load.stage_file(pg, BASICS, gz(slice_path("title.basics").read_bytes()), expected_rows=7)


def test_publish_is_all_or_nothing(pg, published_basics):
    ratings = imdb_file("title.ratings")
    load.ensure_schemas(pg)
    staged = load.stage_file(pg, ratings, gz(slice_path("title.ratings").read_bytes())).to_dict()
    missing = {"file": "title.crew", "table": "title_crew"}
    with pytest.raises(load.ImdbLoadError, match="staged table imdb_staging.title_crew is missing"):
        load.publish(pg, [staged, missing])
    assert pg.execute("SELECT to_regclass('imdb.title_ratings')").fetchone() == (None,)
    assert pg.execute("SELECT count(*) FROM imdb.load_history").fetchone()[0] == 1  # basics only


def test_failed_stage_is_recorded_in_load_history(pg, tmp_path):
    storage = open_storage(str(tmp_path))
    data = (IMDB_DATA / "variants" / "title.basics.truncated-2025-04.tsv").read_bytes()
    storage.write_stream("imdb/raw/title.basics.tsv.gz", gz(data))
    load.ensure_schemas(pg)
    item = {"file": "title.basics", "key": "imdb/raw/title.basics.tsv.gz", "etag": '"e1"', "sha256": "ab"}
    with pytest.raises(load.ImdbLoadError):
        stage(pg, storage, item, dag_run_id="manual__1")
    status, etag, error, run_id = pg.execute(
        "SELECT status, etag, error, dag_run_id FROM imdb.load_history"
    ).fetchone()
    assert (status, etag, run_id) == ("failed", '"e1"', "manual__1")
    assert "line 29887" in error


def test_plan_reloads_a_published_table_that_a_crash_emptied(pg, tmp_path):
    from dataset_ops.imdb.tasks import plan_load, publish

    storage = open_storage(str(tmp_path))
    storage.write_stream("imdb/raw/title.ratings.tsv.gz", gz(slice_path("title.ratings").read_bytes()))
    write_json(storage, "imdb/raw/title.ratings.tsv.gz.json", {"sha256": "s1", "rows": 50_001})
    (item,) = plan_load(pg, storage, ["title.ratings"], force=False)
    publish(pg, [stage(pg, storage, item)])
    assert plan_load(pg, storage, ["title.ratings"], force=False) == []
    assert len(plan_load(pg, storage, ["title.ratings"], force=True)) == 1
    pg.execute("TRUNCATE imdb.title_ratings")  # what crash recovery does to an UNLOGGED table
    assert [p["file"] for p in plan_load(pg, storage, ["title.ratings"], force=False)] == ["title.ratings"]


def test_publish_gives_up_when_readers_hold_the_old_table(pg, postgres_url, published_basics, monkeypatch):
    import psycopg

    monkeypatch.setattr(load, "PUBLISH_LOCK_TIMEOUT", "500ms")
    head = b"".join(slice_path("title.basics").read_bytes().splitlines(keepends=True)[:201])
    staged = load.stage_file(pg, BASICS, gz(head)).to_dict()
    with psycopg.connect(postgres_url) as reader:  # a long report query on the old generation
        reader.execute("SELECT count(*) FROM imdb.title_basics").fetchone()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            load.publish(pg, [staged])
        assert reader.execute("SELECT count(*) FROM imdb.title_basics").fetchone()[0] == published_basics
    assert_still_published(pg, published_basics)
    load.publish(pg, [staged])  # once the reader is gone, the new generation goes in
    assert pg.execute("SELECT count(*) FROM imdb.title_basics").fetchone()[0] == staged["rows"]


# -- which failures are permanent (the task fails at once) and which are retried ---------------


@pytest.mark.parametrize(
    "bad_line",
    [
        b"tt9999999\tmovie\tA\tA\t0\t2000\t\\N\t90\tDrama\textra\n",  # a field too many
        b"tt9999999\tmovie\tA\tA\t0\t2000\t\\N\t90\n",  # a field too few
        b"tt9999999\tmovie\tCaf\xe9\tA\t0\t2000\t\\N\t90\tDrama\n",  # invalid UTF-8
        b"tt9999999\tmovie\t\xed\xa0\x80\tA\t0\t2000\t\\N\t90\tDrama\n",  # an encoded surrogate
        b"tt9999999\tmovie\tA\tA\tmaybe\t2000\t\\N\t90\tDrama\n",  # not a boolean
        b"tt9999999\tmovie\tA\tA\t0\t99999999999\t\\N\t90\tDrama\n",  # out of range
    ],
)
def test_bad_data_is_permanent(pg, bad_line):
    from dataset_ops.errors import InputError, is_permanent

    load.ensure_schemas(pg)
    data = _with_line(slice_path("title.basics").read_bytes(), 99, bad_line)
    with pytest.raises(load.BadDumpData, match=r"^title\.basics\.tsv\.gz: line 99: ") as exc:
        load.stage_file(pg, BASICS, gz(data))
    assert is_permanent(exc.value) and isinstance(exc.value, InputError | load.ImdbLoadError)


def test_bad_files_and_duplicates_are_permanent(pg):
    from dataset_ops.errors import is_permanent
    from dataset_ops.imdb.datasets import InvalidDump

    load.ensure_schemas(pg)
    lines = slice_path("title.basics").read_bytes().splitlines(keepends=True)
    with pytest.raises(load.BadDumpData, match=r"tconst\)=\(tt0000002\) is duplicated") as exc:
        load.stage_file(pg, BASICS, gz(b"".join(lines + [lines[2]])))
    assert is_permanent(exc.value)
    with pytest.raises(InvalidDump, match="line 1: wrong header") as exc:
        load.stage_file(pg, BASICS, gz(slice_path("title.crew").read_bytes()))
    assert is_permanent(exc.value)
    data = gzip.compress(b"".join(lines))
    with pytest.raises(InvalidDump, match="truncated gzip") as exc:
        load.stage_file(pg, BASICS, io.BytesIO(data[: len(data) // 2]))
    assert is_permanent(exc.value)
    with pytest.raises(load.BadDumpData, match="the download counted 7") as exc:
        load.stage_file(pg, BASICS, gz(b"".join(lines)), expected_rows=7)
    assert is_permanent(exc.value)


def test_a_server_side_failure_is_transient(pg):
    """A COPY cancelled by the server (statement_timeout, SQLSTATE 57014) is not the data's fault."""
    from dataset_ops.errors import is_permanent

    load.ensure_schemas(pg)
    pg.execute("SET statement_timeout = '1ms'")
    try:
        with pytest.raises(load.ImdbLoadError, match="statement timeout") as exc:
            load.stage_file(pg, BASICS, gz(slice_path("title.basics").read_bytes()))
    finally:
        pg.execute("RESET statement_timeout")
    assert not is_permanent(exc.value)


def _history(pg) -> list[tuple]:
    return pg.execute("SELECT file, status FROM imdb.load_history ORDER BY id").fetchall()


def test_one_failed_history_row_per_failed_load(pg, tmp_path):
    """A transient failure with retries left writes no row (the retry will); the last try
    writes one; a permanent failure writes one at once, as no retry follows."""
    storage = open_storage(str(tmp_path))
    storage.write_stream("imdb/raw/title.basics.tsv.gz", gz(slice_path("title.basics").read_bytes()))
    load.ensure_schemas(pg)
    item = {"file": "title.basics", "key": "imdb/raw/title.basics.tsv.gz", "sha256": "ab"}

    # transient: COPY of the 50,001 rows takes longer than this, the history INSERT does not
    pg.execute("SET statement_timeout = '25ms'")
    try:
        for final_try in (False, False, True):  # try 1 and 2 of 3 are retried, try 3 is the last
            with pytest.raises(load.ImdbLoadError):
                stage(pg, storage, item, dag_run_id="r1", final_try=final_try)
    finally:
        pg.execute("RESET statement_timeout")
    assert _history(pg) == [("title.basics", "failed")]

    data = _with_line(slice_path("title.basics").read_bytes(), 5, b"tt1\tx\n")  # permanent
    storage.write_stream("imdb/raw/title.basics.tsv.gz", gz(data))
    with pytest.raises(load.BadDumpData):
        stage(pg, storage, item, dag_run_id="r2", final_try=False)
    assert _history(pg) == [("title.basics", "failed")] * 2
    assert pg.execute("SELECT dag_run_id FROM imdb.load_history ORDER BY id").fetchall() == [("r1",), ("r2",)]
