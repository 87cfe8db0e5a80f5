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


# -- parallel COPY: one file cut at line boundaries into several streams ----------------------

RATINGS = imdb_file("title.ratings")


@pytest.fixture
def small_chunks(monkeypatch):
    """4 KiB chunks, so the real slices (0.5-4 MiB) make hundreds of chunks for the streams."""
    monkeypatch.setattr(load, "CHUNK_BYTES", 4096)


def _columns(pg, table: str) -> list[tuple]:
    return pg.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull, attgenerated FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    ).fetchall()


def _keys_and_indexes(pg, table: str) -> list[tuple]:
    schema, name = table.split(".")
    return pg.execute(
        "SELECT indexname, regexp_replace(indexdef, ' ON [a-z_]+\\.', ' ON ') FROM pg_indexes "
        "WHERE schemaname = %s AND tablename = %s ORDER BY indexname",
        (schema, name),
    ).fetchall()


def _snapshot(pg, table: str, key: str) -> dict:
    """Everything a reader can see of ``table``: rows in key order, columns, keys, persistence."""
    return {
        "rows": pg.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall(),
        "columns": _columns(pg, table),
        "indexes": _keys_and_indexes(pg, table),
        "persistence": _persistence(pg, table),
        "pkey": pg.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'p'",
            (table,),
        ).fetchall(),
    }


def _transactions(pg, table: str) -> int:
    """Distinct inserting transactions of the rows: one per COPY stream that loaded any."""
    return pg.execute(f"SELECT count(DISTINCT xmin::text) FROM {table}").fetchone()[0]


@pytest.mark.parametrize(
    ("name", "key", "logged"),
    [
        ("title.basics", "tconst", False),  # array column, 50,001 rows
        ("title.basics", "tconst", True),  # array column: lands UNLOGGED, SET LOGGED rewrites it
        ("title.ratings", "tconst", True),  # no array column: COPY straight into a LOGGED table
        ("title.principals", "tconst, ordering", False),  # composite key and a secondary index
    ],
)
def test_parallel_load_is_identical_to_serial(pg, small_chunks, name, key, logged):
    spec = imdb_file(name)
    data = slice_path(name).read_bytes()
    load.ensure_schemas(pg)
    staged = f"imdb_staging.{spec.table}"
    serial = load.stage_file(pg, spec, gz(data), logged=logged, streams=1)
    assert _transactions(pg, staged) == 1
    assert pg.execute(
        "SELECT last_vacuum FROM pg_stat_user_tables WHERE relid = %s::regclass", (staged,)
    ).fetchone() == (None,)
    expected = _snapshot(pg, staged, key)
    parallel = load.stage_file(pg, spec, gz(data), logged=logged, streams=3)
    assert (serial.streams, parallel.streams) == (1, 3)
    assert parallel.rows == serial.rows == data_rows(slice_path(name))
    if not (logged and spec.array_columns):  # SET LOGGED's rewrite keeps no trace of the streams
        assert _transactions(pg, staged) == 3  # all three streams loaded rows
    assert _snapshot(pg, staged, key) == expected
    # no COPY FREEZE across connections: VACUUM (FREEZE) instead (all-visible unless an older
    # snapshot elsewhere on the server holds the horizon back, so that is not asserted)
    assert pg.execute(
        "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relid = %s::regclass", (staged,)
    ).fetchone() == (True,)
    assert expected["persistence"] == ("p" if logged else "u") and expected["pkey"]
    load.publish(pg, [parallel.to_dict()])
    assert _snapshot(pg, f"imdb.{spec.table}", key)["rows"] == expected["rows"]
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'imdb_staging'").fetchone() == (0,)


@pytest.mark.parametrize("streams", [1, 3])
def test_unclosed_quotes_load_byte_exact_at_any_cut(pg, small_chunks, streams):
    """title.akas has fields that open a double quote and never close it; with 4 KiB chunks
    hundreds of cuts fall between such lines and the rows still load exactly as in the file."""
    path = IMDB_DATA / "variants" / "title.akas.filtered-2022.tsv"
    load.ensure_schemas(pg)
    result = load.stage_file(pg, AKAS, gz(path.read_bytes()), streams=streams)
    assert result.rows == 70_348
    loaded = dict(
        ((t, o), (title, types))
        for t, o, title, types in pg.execute(
            "SELECT titleId, ordering, title, types FROM imdb_staging.title_akas"
        )
    )
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        f = line.split("\t")
        assert loaded[(f[0], int(f[1]))] == (f[2], None if f[5] == "\\N" else f[5].split("\x02"))
    assert loaded[("tt10426110", 1)][0] == 'He Returns" or "Volvió'


def test_quotes_that_never_close_on_every_line_and_at_every_cut(pg, small_chunks):
    """The IMDb quirk at every chunk edge: every title opens a double quote that never closes
    (and one field of each line starts with a lone quote), so every cut between two streams
    falls between two such lines."""
    lines = slice_path("title.basics").read_bytes().splitlines(keepends=True)
    for i in range(1, len(lines)):
        f = lines[i].split(b"\t")
        f[2], f[3] = b'"' + f[2], b'"' + f[3] + b' "or'
        lines[i] = b"\t".join(f)
    data = b"".join(lines)
    load.ensure_schemas(pg)
    result = load.stage_file(pg, BASICS, gz(data), streams=3)
    assert result.rows == 50_001 and _transactions(pg, "imdb_staging.title_basics") == 3
    loaded = dict(
        pg.execute("SELECT tconst, primaryTitle || '|' || originalTitle FROM imdb_staging.title_basics")
    )
    for line in data.decode().splitlines()[1:]:
        f = line.split("\t")
        assert loaded[f[0]] == f"{f[2]}|{f[3]}"
    assert loaded["tt0000001"] == '"Carmencita|"Carmencita "or'


def test_bad_line_in_a_later_stream_is_reported_at_its_file_line(pg, small_chunks, published_basics):
    bad = b"tt9999999\tmovie\tA\tA\t0\tMMXX\t\\N\t90\tDrama\n"
    data = _with_line(slice_path("title.basics").read_bytes(), 45_678, bad)
    with pytest.raises(load.BadDumpData) as exc:
        load.stage_file(pg, BASICS, gz(data), streams=3)
    message = str(exc.value)
    assert message.startswith("title.basics.tsv.gz: line 45678: invalid input syntax for type integer")
    # the detail PostgreSQL gave names the same line and the table, not a stream's own numbering
    assert '(COPY title_basics, line 45678, column startyear: "MMXX")' in message
    assert_still_published(pg, published_basics)
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'imdb_staging'").fetchone() == (0,)


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (
            b"tt9999999\tmovie\tA\tA\t0\t2000\t\\N\t90\tDrama\textra\n",
            "extra data after last expected column",
        ),
        (b"tt9999999\tmovie\tA\tA\t0\t2000\t\\N\t90\n", "missing data for column"),
        (
            b"tt9999999\tmovie\tCaf\xe9\tA\t0\t2000\t\\N\t90\tDrama\n",
            'invalid byte sequence for encoding "UTF8"',
        ),
    ],
)
@pytest.mark.parametrize("lineno", [2, 20_001, 50_002])  # first data line, a middle one, the last
def test_bad_lines_anywhere_name_their_file_line_in_parallel(pg, small_chunks, bad_line, reason, lineno):
    load.ensure_schemas(pg)
    data = _with_line(slice_path("title.basics").read_bytes(), lineno, bad_line)
    with pytest.raises(load.BadDumpData, match=rf"^title\.basics\.tsv\.gz: line {lineno}: ") as exc:
        load.stage_file(pg, BASICS, gz(data), streams=4)
    assert reason in str(exc.value)


def test_two_bad_lines_in_different_streams_report_the_earlier(pg, small_chunks):
    """Chunk i goes to stream i mod 2: a bad first line in chunk 101 (stream 2) and in chunk
    102 (stream 1); the error names the earlier line, whichever stream failed first."""
    load.ensure_schemas(pg)
    lines = slice_path("title.basics").read_bytes().splitlines(keepends=True)
    chunks = list(load.line_chunks(iter([b"".join(lines)]), "x", chunk_bytes=load.CHUNK_BYTES))
    first, second = chunks[101].first_line, chunks[102].first_line
    for lineno in (first, second):  # isAdult "0" -> "x": same length, so the same cuts
        fields = lines[lineno - 1].split(b"\t")
        assert fields[4] == b"0"
        lines[lineno - 1] = b"\t".join([*fields[:4], b"x", *fields[5:]])
    with pytest.raises(load.BadDumpData, match=rf"^title\.basics\.tsv\.gz: line {first}: .*boolean: \"x\""):
        load.stage_file(pg, BASICS, gz(b"".join(lines)), streams=2)


def test_parallel_row_count_mismatches_are_caught(pg, published_basics):
    lines = slice_path("title.basics").read_bytes().splitlines(keepends=True)
    # A field opened by the COPY quote byte (\b, which IMDb never uses) and closed on the next
    # line joins two lines into one row: COPY loads one row fewer than the file has lines.
    lines[10] = b"tt9999990\tmovie\t\bA\n"
    lines[11] = b"B\b\tA\t0\t2000\t\\N\t90\tDrama\n"
    with pytest.raises(load.BadDumpData, match=r"COPY loaded 50,000 rows but the file has 50,001"):
        load.stage_file(pg, BASICS, gz(b"".join(lines)), streams=3)
    with pytest.raises(load.BadDumpData, match="50,001 rows loaded, but the download counted 7"):
        load.stage_file(pg, BASICS, gz(slice_path("title.basics").read_bytes()), expected_rows=7, streams=3)
    assert_still_published(pg, published_basics)
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'imdb_staging'").fetchone() == (0,)


def test_more_streams_than_lines(pg):
    data = b"tconst\taverageRating\tnumVotes\ntt0000001\t5.8\t1354\ntt0000002\t6.5\t157\n"
    load.ensure_schemas(pg)
    result = load.stage_file(pg, RATINGS, gz(data), streams=8)
    assert (result.rows, result.streams) == (2, 8)
    assert pg.execute(
        "SELECT tconst, averageRating::text, numVotes FROM imdb_staging.title_ratings ORDER BY 1"
    ).fetchall() == [
        ("tt0000001", "5.8", 1354),
        ("tt0000002", "6.5", 157),
    ]


@pytest.mark.parametrize("streams", [1, 4])
def test_a_file_with_only_its_header_loads_an_empty_keyed_table(pg, streams):
    load.ensure_schemas(pg)
    result = load.stage_file(pg, RATINGS, gz(b"tconst\taverageRating\tnumVotes\n"), streams=streams)
    assert result.rows == 0
    load.publish(pg, [result.to_dict()])
    assert pg.execute("SELECT count(*) FROM imdb.title_ratings").fetchone() == (0,)
    assert _keys_and_indexes(pg, "imdb.title_ratings")[0][0] == "title_ratings_pkey"


@pytest.mark.parametrize("streams", [1, 4])
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", r"line 1: the file ends before the header line does"),  # a gzip of nothing
        (None, r"empty file \(0 bytes\)"),  # not even a gzip header
    ],
)
def test_empty_files_fail_and_leave_the_published_table(pg, published_basics, streams, raw, reason):
    from dataset_ops.imdb.datasets import InvalidDump

    fileobj = gz(raw) if raw is not None else io.BytesIO(b"")
    with pytest.raises(InvalidDump, match=rf"^title\.basics\.tsv\.gz: {reason}"):
        load.stage_file(pg, BASICS, fileobj, streams=streams)
    assert_still_published(pg, published_basics)
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'imdb_staging'").fetchone() == (0,)


@pytest.mark.parametrize("streams", [1, 3])
def test_last_line_without_newline(pg, small_chunks, streams):
    data = slice_path("title.basics").read_bytes().rstrip(b"\n")
    last = data.rsplit(b"\n", 1)[1].decode()
    load.ensure_schemas(pg)
    result = load.stage_file(pg, BASICS, gz(data), streams=streams)
    assert result.rows == 50_001
    tconst, title = last.split("\t")[0], last.split("\t")[2]
    assert pg.execute(
        "SELECT primaryTitle FROM imdb_staging.title_basics WHERE tconst = %s", (tconst,)
    ).fetchone() == (title,)


def test_parallel_truncated_gzip_and_duplicates_fail_and_leave_nothing_staged(
    pg, small_chunks, published_basics
):
    from dataset_ops.imdb.datasets import InvalidDump

    raw = slice_path("title.basics").read_bytes()
    data = gzip.compress(raw)
    with pytest.raises(InvalidDump, match=r"title\.basics\.tsv\.gz: line \d+: truncated gzip"):
        load.stage_file(pg, BASICS, io.BytesIO(data[: len(data) // 2]), streams=3)
    lines = raw.splitlines(keepends=True)
    with pytest.raises(load.BadDumpData, match=r"tconst\)=\(tt0000002\) is duplicated"):
        load.stage_file(pg, BASICS, gz(b"".join(lines + [lines[2]])), streams=3)
    assert_still_published(pg, published_basics)
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'imdb_staging'").fetchone() == (0,)


def test_a_stream_that_cannot_connect_is_a_transient_failure(pg, postgres_url, published_basics):
    import psycopg

    from dataset_ops.errors import is_permanent

    missing_db = postgres_url.rsplit("/", 1)[0] + "/dataset_ops_no_such_database"
    with pytest.raises(load.ImdbLoadError, match=r"^title\.basics\.tsv\.gz: .*does not exist") as exc:
        load.stage_file(
            pg,
            BASICS,
            gz(slice_path("title.basics").read_bytes()),
            streams=2,
            connect=lambda: psycopg.connect(missing_db, autocommit=True),
        )
    assert not is_permanent(exc.value)
    assert_still_published(pg, published_basics)
    assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'imdb_staging'").fetchone() == (0,)


def test_a_loading_table_left_by_a_killed_worker_is_replaced(pg):
    load.ensure_schemas(pg)
    pg.execute("CREATE TABLE imdb_staging.title_ratings__loading (junk int)")
    pg.execute("INSERT INTO imdb_staging.title_ratings__loading VALUES (1)")
    result = load.stage_file(pg, RATINGS, gz(slice_path("title.ratings").read_bytes()), streams=2)
    assert result.rows == data_rows(slice_path("title.ratings"))
    assert pg.execute("SELECT to_regclass('imdb_staging.title_ratings__loading')").fetchone() == (None,)


def test_parallel_progress_is_logged_with_rows(pg, monkeypatch, caplog):
    import functools

    from dataset_ops.progress import ProgressLog

    monkeypatch.setattr(load, "ProgressLog", functools.partial(ProgressLog, every=1e-6))
    monkeypatch.setattr(load, "CHUNK_BYTES", 64 << 10)
    load.ensure_schemas(pg)
    data = gzip.compress(slice_path("title.basics").read_bytes())
    with caplog.at_level("INFO", logger="dataset_ops.progress"):
        load.stage_file(pg, BASICS, io.BytesIO(data), total_bytes=len(data), streams=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "dataset_ops.progress"]
    assert len(lines) >= 2 and all(
        line.startswith("COPY title.basics.tsv.gz (2 streams): ") for line in lines
    )
    assert "100.0% " in lines[-1] and "50,001 rows" in lines[-1]


def test_streams_out_of_range_are_refused(pg):
    for streams in (0, load.MAX_STREAMS + 1):
        with pytest.raises(ValueError, match="streams must be 1 to"):
            load.stage_file(pg, BASICS, gz(b""), streams=streams)


def test_auto_streams_use_half_the_cpus_for_big_files():
    big = load.AUTO_MIN_BYTES
    assert load.auto_streams(None, cpus=8) == 1
    assert load.auto_streams(big - 1, cpus=8) == 1
    assert load.auto_streams(big, cpus=2) == 1  # measured: one stream is fastest on 2 cores
    assert load.auto_streams(big, cpus=3) == 1
    assert load.auto_streams(big, cpus=4) == 2
    assert load.auto_streams(100 * big, cpus=64) == load.AUTO_MAX_STREAMS
    assert load.auto_streams(big, cpus=1) == 1
    assert 1 <= load.auto_streams(big) <= max(load.usable_cpus() // 2, 1)


def test_stage_task_streams_over_the_hooks_connections(pg, imdb_conn_env, small_chunks, tmp_path):
    """The task body with the Airflow Connection's psycopg connection (PostgresHook): the extra
    streams open connections like it (``sibling_connector``)."""
    from dataset_ops.imdb.tasks import connect

    storage = open_storage(str(tmp_path))
    storage.write_stream("imdb/raw/title.ratings.tsv.gz", gz(slice_path("title.ratings").read_bytes()))
    item = {"file": "title.ratings", "key": "imdb/raw/title.ratings.tsv.gz", "sha256": "ab"}
    with connect() as conn:
        load.ensure_schemas(conn)
        staged = stage(conn, storage, item, streams=2)
        assert (staged["streams"], staged["rows"]) == (2, data_rows(slice_path("title.ratings")))
        assert _transactions(pg, "imdb_staging.title_ratings") == 2
        assert stage(conn, storage, item)["streams"] == 1  # auto: the manifest gave no size


# -- cutting the text into chunks ----------------------------------------------------------------


def _chunks(pieces, **kwargs):
    return [(c.first_line, c.lines, c.data) for c in load.line_chunks(iter(pieces), "f.tsv.gz", **kwargs)]


def test_line_chunks_cut_after_newlines_and_number_file_lines():
    text = b"h1\th2\n" + b"".join(b"row%d\tx\n" % i for i in range(10))
    pieces = [text[i : i + 7] for i in range(0, len(text), 7)]  # header and rows split anywhere
    chunks = _chunks(pieces, chunk_bytes=20)
    assert b"".join(c[2] for c in chunks) == text[len(b"h1\th2\n") :]
    assert all(c[2].endswith(b"\n") and c[1] == c[2].count(b"\n") for c in chunks)
    assert [c[0] for c in chunks] == [2 + sum(c[1] for c in chunks[:i]) for i in range(len(chunks))]
    assert all(len(c[2]) <= 20 for c in chunks)


def test_line_chunks_keep_long_lines_whole_and_the_unterminated_last_line():
    chunks = _chunks([b"h\n", b"a" * 50 + b"\nb\nlast"], chunk_bytes=8)
    assert chunks == [(2, 1, b"a" * 50 + b"\n"), (3, 1, b"b\n"), (4, 1, b"last")]
    assert _chunks([b"h\r\n", b"x\r\ny\r\n"]) == [(2, 2, b"x\r\ny\r\n")]
    assert _chunks([b"header only\n"]) == [] and _chunks([b"no newline"]) == []


def test_line_chunks_refuse_a_line_longer_than_the_limit():
    with pytest.raises(StreamFormatError, match=r"f\.tsv\.gz: line 3: line longer than 100 bytes"):
        _chunks([b"h\nok\n", b"z" * 60, b"z" * 60, b"\n"], max_line_bytes=100)
