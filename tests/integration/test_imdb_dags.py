"""Both IMDb DAGs end to end with ``dag.test()``: real IMDb files over HTTP, S3 (moto server) or a
local folder as storage, and the real PostgreSQL server as target."""

from __future__ import annotations

import shutil

import pytest
from helpers.dags import load_dag
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
    from dataset_ops.storage import open_storage, read_json

    stored = read_json(open_storage(storage_root), "imdb/raw/title.ratings.tsv.gz.json")
    assert stored["rows"] == FULL_RATINGS_ROWS  # the last complete download is kept
    assert pg.execute("SELECT count(*) FROM imdb.title_ratings").fetchone()[0] == rows["title.ratings"]
