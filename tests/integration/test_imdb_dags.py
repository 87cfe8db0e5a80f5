"""Both IMDb DAGs end to end with ``dag.test()``: real IMDb files over HTTP, S3 (moto server) or a
local folder as storage, and the real PostgreSQL server as target."""

from __future__ import annotations

import gzip
import io
import shutil

import pytest
from helpers.dags import load_dag
from helpers.http_server import Fault
from helpers.imdb_data import FULL_RATINGS, FULL_RATINGS_ROWS, build_dump_folder

from dataset_ops.imdb.datasets import IMDB_FILE_NAMES

pytestmark = pytest.mark.integration


def _dag(dag_id: str):
    return load_dag(dag_id)


def _asset_events() -> dict[str, list[dict]]:
    """Asset events in the metadata DB: URI -> list of extras."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        ).all()
    events: dict[str, list[dict]] = {}
    for uri, extra in rows:
        if uri.startswith("x-dataset-ops://imdb/raw/"):
            events.setdefault(uri.rsplit("/", 1)[1], []).append(extra)
    return events


def _states(dag_run) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return states


@pytest.fixture(params=["s3", "local"])
def storage_root(request, monkeypatch, tmp_path):
    """The Variable ``dataset_ops_storage_root``: a bucket on the moto server, or a folder."""
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        root = f"s3://{bucket}/datasets"
    else:
        root = str(tmp_path / "storage")
    monkeypatch.setenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", root)
    return root


def test_download_then_load_all_seven_files(file_server, storage_root, imdb_conn_env, pg, monkeypatch):
    rows = build_dump_folder(file_server.root, IMDB_FILE_NAMES)
    monkeypatch.setenv("AIRFLOW_VAR_IMDB_BASE_URL", file_server.url)
    download_dag, load_dag = _dag("imdb_download"), _dag("imdb_load")
    events_before = {k: len(v) for k, v in _asset_events().items()}

    def new_events():
        return {
            k: len(v) - events_before.get(k, 0)
            for k, v in _asset_events().items()
            if len(v) > events_before.get(k, 0)
        }

    run = download_dag.test()
    assert _states(run)["download"] == ["success"] * 7, _states(run)
    assert all(file_server.count(f"{n}.tsv.gz", 200) == 1 for n in IMDB_FILE_NAMES)
    assert new_events() == {f"{n}.tsv.gz": 1 for n in IMDB_FILE_NAMES}
    extra = _asset_events()["title.ratings.tsv.gz"][-1]
    assert extra["rows"] == rows["title.ratings"] and extra["status"] == "downloaded"
    assert extra["uri"].endswith("imdb/raw/title.ratings.tsv.gz") and extra["etag"]
    # the seven mapped downloads each listed their dump in the one manifest of imdb/raw
    from dataset_ops.imdb.download import read_raw_manifest
    from dataset_ops.storage import open_storage

    raw = read_raw_manifest(open_storage(storage_root))
    assert raw.status == "complete" and not raw.legacy and raw.producer["dag_id"] == "imdb_download"
    assert {f.path: f.rows for f in raw.files} == {f"{n}.tsv.gz": rows[n] for n in IMDB_FILE_NAMES}

    run = load_dag.test()
    assert str(run.state) == "success", _states(run)
    assert _states(run)["stage"] == ["success"] * 7
    for name in IMDB_FILE_NAMES:
        table = name.replace(".", "_")
        assert pg.execute(f"SELECT count(*) FROM imdb.{table}").fetchone()[0] == rows[name], name
    # Spot checks of real rows, typed as the IMDb dataset page says.
    assert pg.execute(
        "SELECT titleType, primaryTitle, isAdult, startYear, runtimeMinutes, genres "
        "FROM imdb.title_basics WHERE tconst = 'tt0000001'"
    ).fetchone() == ("short", "Carmencita", False, 1894, 1, ["Documentary", "Short"])
    assert pg.execute(
        "SELECT primaryName, birthYear, primaryProfession FROM imdb.name_basics WHERE nconst = 'nm0000001'"
    ).fetchone() == ("Fred Astaire", 1899, ["actor", "miscellaneous", "producer"])
    assert pg.execute(
        "SELECT attributes FROM imdb.title_akas WHERE titleId = 'tt0007189' AND ordering = 5"
    ).fetchone() == (["reissue title", "recut version"],)
    assert pg.execute(
        "SELECT characters FROM imdb.title_principals WHERE tconst = 'tt0000001' AND ordering = 1"
    ).fetchone() == ('["Self"]',)
    history = pg.execute("SELECT file, status, rows FROM imdb.load_history ORDER BY file").fetchall()
    assert history == sorted((n, "published", rows[n]) for n in IMDB_FILE_NAMES)
    # read_indexes built the read API's word index of the published titles
    assert pg.execute("SELECT tconst FROM imdb.title_words WHERE word = 'carmencita'").fetchall() == [
        ("tt0000001",)
    ]

    # Second run, nothing changed: 304s, every download skipped, nothing loaded.
    run = download_dag.test()
    assert _states(run)["download"] == ["skipped"] * 7
    assert all(file_server.count(f"{n}.tsv.gz", 304) == 1 for n in IMDB_FILE_NAMES)
    assert new_events() == {f"{n}.tsv.gz": 1 for n in IMDB_FILE_NAMES}  # no new ones
    run = load_dag.test()
    assert str(run.state) == "success"
    assert "stage" not in _states(run) or set(_states(run)["stage"]) == {"skipped"}
    assert pg.execute("SELECT count(*) FROM imdb.load_history").fetchone()[0] == 7

    # The complete title.ratings dump replaces the slice: only that file moves.
    shutil.copyfile(FULL_RATINGS, file_server.root / "title.ratings.tsv.gz")
    run = download_dag.test()
    assert sorted(_states(run)["download"]) == ["skipped"] * 6 + ["success"]
    assert new_events()["title.ratings.tsv.gz"] == 2
    run = load_dag.test()
    assert _states(run)["stage"] == ["success"]
    assert pg.execute("SELECT count(*) FROM imdb.title_ratings").fetchone()[0] == FULL_RATINGS_ROWS
    assert pg.execute(
        "SELECT averageRating::text, numVotes FROM imdb.title_ratings WHERE tconst = 'tt0000001'"
    ).fetchone() == ("5.8", 1354)
    assert pg.execute("SELECT count(*) FROM imdb.title_basics").fetchone()[0] == rows["title.basics"]


def _without_retries(dag):
    for task in dag.tasks:
        task.retries = 0
    return dag


def test_bad_files_fail_their_task_and_leave_published_tables_intact(
    file_server, storage_root, imdb_conn_env, pg, monkeypatch
):
    from helpers.imdb_data import IMDB_DATA, gzip_file

    names = ["title.basics", "title.ratings"]
    rows = build_dump_folder(file_server.root, names)
    monkeypatch.setenv("AIRFLOW_VAR_IMDB_BASE_URL", file_server.url)
    download_dag = _without_retries(_dag("imdb_download"))
    load_dag = _without_retries(_dag("imdb_load"))
    conf = {"files": names}
    download_dag.test(run_conf=conf)
    assert str(load_dag.test(run_conf=conf).state) == "success"

    # A new title.basics whose last row is cut mid-line: complete gzip, so the download stores
    # it; the load fails on that line and publishes nothing, not even the good ratings file.
    gzip_file(
        IMDB_DATA / "variants" / "title.basics.truncated-2025-04.tsv",
        file_server.root / "title.basics.tsv.gz",
    )
    shutil.copyfile(FULL_RATINGS, file_server.root / "title.ratings.tsv.gz")
    assert sorted(_states(download_dag.test(run_conf=conf))["download"]) == ["success", "success"]
    run = load_dag.test(run_conf=conf)
    assert str(run.state) == "failed"
    assert sorted(_states(run)["stage"]) == ["failed", "success"]
    assert _states(run)["publish"] == ["upstream_failed"]
    assert pg.execute("SELECT count(*) FROM imdb.title_basics").fetchone()[0] == rows["title.basics"]
    assert pg.execute("SELECT count(*) FROM imdb.title_ratings").fetchone()[0] == rows["title.ratings"]
    (error,) = pg.execute("SELECT error FROM imdb.load_history WHERE status = 'failed'").fetchone()
    assert error.startswith("title.basics.tsv.gz: line 29887: missing data for column")

    # A truncated gzip never replaces the stored file: the download task fails.
    data = (file_server.root / "title.ratings.tsv.gz").read_bytes()
    (file_server.root / "title.ratings.tsv.gz").write_bytes(data[: len(data) // 2])
    run = download_dag.test(run_conf={"files": ["title.ratings"]})
    assert _states(run)["download"] == ["failed"]
    from dataset_ops.imdb.download import read_raw_manifest
    from dataset_ops.storage import open_storage
    from dataset_ops.storage.manifest import verify

    storage = open_storage(storage_root)
    manifest = read_raw_manifest(storage)  # imdb/raw/_manifest.json
    # the last complete download is kept
    assert manifest.file("title.ratings.tsv.gz").rows == FULL_RATINGS_ROWS
    assert verify(storage, manifest, checksums=True) == []
    assert pg.execute("SELECT count(*) FROM imdb.title_ratings").fetchone()[0] == rows["title.ratings"]


# -- hopeless inputs fail at once; transient failures keep their retries ------------------------
# The DAGs run with their real default_args (retries=2, retry_policy); dag.test() runs a real task
# runner and, like a scheduler, waits for the retry delay and runs the next try itself. The
# assertions read what a scheduler sees: TaskInstance state and try_number in the metadata DB, and
# task_instance_history, where Airflow archives a try only when it goes to up_for_retry.


def _tries(dag_run) -> dict[int, tuple[str, int]]:
    """map_index -> (state, try_number) of the run's mapped instances, from the metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(
                TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state, TaskInstance.try_number
            ).where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
    return {m: (str(s), t) for task_id, m, s, t in rows if m >= 0}


def _archived_tries(dag_run) -> dict[int, list[int]]:
    """map_index -> try numbers archived in task_instance_history (tries that went up_for_retry)."""
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstanceHistory.map_index, TaskInstanceHistory.try_number).where(
                TaskInstanceHistory.dag_id == dag_run.dag_id, TaskInstanceHistory.run_id == dag_run.run_id
            )
        ).all()
    out: dict[int, list[int]] = {}
    for m, t in sorted(rows):
        out.setdefault(m, []).append(t)
    return out


@pytest.fixture
def local_storage(monkeypatch, tmp_path) -> str:
    root = str(tmp_path / "storage")
    monkeypatch.setenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", root)
    return root


def test_hopeless_downloads_fail_at_once(file_server, local_storage, monkeypatch):
    """HTTP 404 and a wrong header line: state failed after try 1, one request each."""
    from helpers.imdb_data import gzip_file, slice_path

    gzip_file(slice_path("title.crew"), file_server.root / "title.basics.tsv.gz")  # wrong header
    gzip_file(slice_path("title.episode"), file_server.root / "title.episode.tsv.gz")
    file_server.faults["title.episode.tsv.gz"] = Fault(status=410)
    monkeypatch.setenv("AIRFLOW_VAR_IMDB_BASE_URL", file_server.url)
    dag = _dag("imdb_download")
    assert dag.get_task("download").retries == 2  # the real setting: retried if it were transient

    # title.ratings is not on the server: 404
    run = dag.test(run_conf={"files": ["title.basics", "title.ratings", "title.episode"]})
    assert str(run.state) == "failed"
    assert _tries(run) == {0: ("failed", 1), 1: ("failed", 1), 2: ("failed", 1)}
    assert _archived_tries(run) == {}  # no try went to up_for_retry
    assert file_server.count("title.basics.tsv.gz") == 1
    assert file_server.count("title.ratings.tsv.gz", 404) == 1
    assert file_server.count("title.episode.tsv.gz", 410) == 1


def test_transient_download_failures_keep_their_retries(file_server, local_storage, monkeypatch):
    """HTTP 500 then success: try 1 goes to up_for_retry, try 2 succeeds. A host that keeps
    answering 503: all three tries, then failed."""
    from datetime import timedelta

    from helpers.imdb_data import build_dump_folder

    from dataset_ops.dag_defaults import DEFAULT_ARGS
    from dataset_ops.imdb import tasks
    from dataset_ops.imdb.download import http_session

    build_dump_folder(file_server.root, ["title.basics", "title.ratings"])
    file_server.faults["title.basics.tsv.gz"] = Fault(status=500, times=2)  # one try's requests
    file_server.faults["title.ratings.tsv.gz"] = Fault(status=503)
    monkeypatch.setenv("AIRFLOW_VAR_IMDB_BASE_URL", file_server.url)
    # Keep retries=2 and the policy; only the waits shrink: 1 s between task tries (read by
    # dag.test's scheduling loop from the serialized DAG) and 2 requests per try without backoff.
    monkeypatch.setitem(DEFAULT_ARGS, "retry_delay", timedelta(seconds=1))
    monkeypatch.setitem(DEFAULT_ARGS, "retry_exponential_backoff", False)
    monkeypatch.setattr(tasks, "http_session", lambda retries, backoff_factor: http_session(1, 0))
    dag = _dag("imdb_download")
    retried: list[tuple[int, int]] = []
    dag.get_task("download").on_retry_callback = [
        lambda context: retried.append((context["ti"].map_index, context["ti"].try_number))
    ]

    run = dag.test(run_conf={"files": ["title.basics", "title.ratings"]})
    assert _tries(run) == {0: ("success", 2), 1: ("failed", 3)}
    assert _archived_tries(run) == {0: [1], 1: [1, 2]}
    assert sorted(retried) == [(0, 1), (1, 1), (1, 2)]  # the state was up_for_retry after these
    assert file_server.count("title.basics.tsv.gz", 500) == 2
    assert file_server.count("title.basics.tsv.gz", 200) == 1
    assert file_server.count("title.ratings.tsv.gz", 503) == 6  # 3 tries x 2 requests


def test_hopeless_loads_fail_at_once_with_one_failed_history_row(
    file_server, local_storage, imdb_conn_env, pg, monkeypatch
):
    """A row with an extra field (passes the download, fails COPY) and a stored file with a wrong
    header: each stage instance fails after try 1, one `failed` row each in imdb.load_history."""
    from helpers.imdb_data import build_dump_folder, slice_path

    from dataset_ops.storage import open_storage, read_json, write_json

    names = ["title.basics", "title.ratings"]
    build_dump_folder(file_server.root, names)
    monkeypatch.setenv("AIRFLOW_VAR_IMDB_BASE_URL", file_server.url)
    download_dag, load_dag = _dag("imdb_download"), _dag("imdb_load")
    assert load_dag.get_task("stage").retries == 2
    conf = {"files": names}
    assert str(download_dag.test(run_conf=conf).state) == "success"

    # a new title.basics whose row 100 has an extra field: complete gzip, right header
    lines = slice_path("title.basics").read_bytes().splitlines(keepends=True)
    lines[100] = lines[100].rstrip(b"\n") + b"\textra\n"
    (file_server.root / "title.basics.tsv.gz").write_bytes(gzip.compress(b"".join(lines)))
    assert str(download_dag.test(run_conf={"files": ["title.basics"]}).state) == "success"
    # title.ratings in storage replaced by a file with another header (the manifest says new)
    storage = open_storage(local_storage)
    storage.write_stream(
        "imdb/raw/title.ratings.tsv.gz", io.BytesIO(gzip.compress(slice_path("title.crew").read_bytes()))
    )
    manifest = read_json(storage, "imdb/raw/_manifest.json")
    for entry in manifest["files"]:
        if entry["path"] == "title.ratings.tsv.gz":
            entry["sha256"] = "0" * 64
    write_json(storage, "imdb/raw/_manifest.json", manifest)

    run = load_dag.test(run_conf=conf)
    assert str(run.state) == "failed"
    assert _states(run)["publish"] == ["upstream_failed"]
    assert _tries(run) == {0: ("failed", 1), 1: ("failed", 1)}
    assert _archived_tries(run) == {}
    history = pg.execute(
        "SELECT file, status, error FROM imdb.load_history WHERE dag_run_id = %s ORDER BY file", (run.run_id,)
    ).fetchall()
    assert [(f, s) for f, s, _ in history] == [("title.basics", "failed"), ("title.ratings", "failed")]
    assert history[0][2].startswith("title.basics.tsv.gz: line 101: extra data after last expected column")
    assert history[1][2].startswith("title.ratings.tsv.gz: line 1: wrong header")
    assert pg.execute("SELECT count(*) FROM imdb.load_history WHERE status = 'failed'").fetchone()[0] == 2
