"""Every DAG as its users run it: on a running Airflow (``acceptance``: api-server, scheduler,
dag-processor, triggerer; LocalExecutor; schedules and Asset triggers on; DAGs paused at
creation), through the REST API with the official client ``apache-airflow-client``.

Each DAG is unpaused (a scheduled DAG then gets a run from its own schedule at once: with
``catchup`` off the scheduler creates the latest due run), then triggered without a logical date
(``"logical_date": null``: no data interval) and with one, with its Params' defaults (and the
required Params only where a DAG has some), and each run's final state and effect are checked:
tables in PostgreSQL, files under the roots, the inventory API, XComs. ``imdb_load`` runs only
when the scheduler starts it from ``imdb_download``'s Asset events.
"""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from helpers.s3 import use_s3

from dataset_ops.storage import open_storage

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]

LOGICAL_DATE = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
IMDB_FILES = (
    "name.basics",
    "title.akas",
    "title.basics",
    "title.crew",
    "title.episode",
    "title.principals",
    "title.ratings",
)


def _ok(acc, dag_id: str, run_id: str, state: str, allowed=frozenset({"success", "skipped"})) -> dict:
    """Assert the run succeeded and every task ended success or skipped; the task states."""
    states = acc.states(dag_id, run_id)
    assert state == "success", f"{dag_id} {run_id}: {states}"
    assert set(states.values()) <= allowed, f"{dag_id} {run_id}: {states}"
    return states


@pytest.fixture
def s3(acceptance, monkeypatch):
    """The test process reads the acceptance world's S3 (aws_default -> the SeaweedFS server)."""
    use_s3(monkeypatch, acceptance.s3_endpoint)
    return acceptance


# --- IMDb: a scheduled download, an Asset-triggered load --------------------------------------------
def test_imdb_download_from_its_schedule_starts_imdb_load_by_its_assets(s3):
    import psycopg

    acc = s3
    acc.set_paused("imdb_load", False)
    acc.set_paused("imdb_download", False)  # @daily, catchup off: today's run at once
    scheduled = acc.wait_for_new_run("imdb_download", set(), run_type="scheduled")
    _ok(acc, "imdb_download", scheduled.dag_run_id, acc.wait("imdb_download", scheduled.dag_run_id))
    load = acc.wait_for_new_run("imdb_load", set(), run_type="asset_triggered")
    _ok(acc, "imdb_load", load.dag_run_id, acc.wait("imdb_load", load.dag_run_id))

    sample = acc.imdb_server.root
    with psycopg.connect(acc.imdb_postgres_url) as conn:
        for name in IMDB_FILES:
            with gzip.open(sample / f"{name}.tsv.gz", "rt", encoding="utf-8") as f:
                rows = sum(1 for _ in f) - 1
            table = name.replace(".", "_")
            assert conn.execute(f"SELECT count(*) FROM imdb.{table}").fetchone()[0] == rows, table

    # by hand, without and with a logical date: nothing changed, nothing downloaded or loaded again
    manual = [acc.trigger("imdb_download"), acc.trigger("imdb_download", logical_date=LOGICAL_DATE)]
    manual += [acc.trigger("imdb_load"), acc.trigger("imdb_load", logical_date=LOGICAL_DATE)]
    for dag_id, run_id in zip(["imdb_download"] * 2 + ["imdb_load"] * 2, manual, strict=True):
        states = _ok(acc, dag_id, run_id, acc.wait(dag_id, run_id))
        if dag_id == "imdb_download":
            assert [s for t, s in states.items() if t.startswith("download[")] == ["skipped"] * 7, states
    assert acc.run("imdb_download", manual[0]).logical_date is None
    # the scheduled download's events may start a second asset-triggered load (events that came
    # after the first was queued); every load run succeeds and each file is published once
    for run in acc.runs("imdb_load"):
        _ok(acc, "imdb_load", run.dag_run_id, acc.wait("imdb_load", run.dag_run_id))
    with psycopg.connect(acc.imdb_postgres_url) as conn:
        again = conn.execute("SELECT status, count(*) FROM imdb.load_history GROUP BY status").fetchall()
    assert again == [("published", len(IMDB_FILES))], again


# --- staged uploads ------------------------------------------------------------------------------------
def _put(storage, name: str, body: bytes) -> None:
    storage.write_stream(f"uploads/{name}", io.BytesIO(body))


def test_staged_upload_validation_promotes_and_quarantines_with_and_without_a_logical_date(s3):
    acc = s3
    storage = open_storage(acc.root("staging"))
    good = b"".join(json.dumps({"text": f"row {i}", "label": i % 3}).encode() + b"\n" for i in range(50))
    bad = good + b'{"text": "broken\n'
    _put(storage, "accept/good-1.jsonl", good)
    _put(storage, "accept/bad-1.jsonl", bad)
    acc.set_paused("staged_upload_validation", False)
    run_id, state = acc.run_to_end("staged_upload_validation")
    _ok(acc, "staged_upload_validation", run_id, state)

    _put(storage, "accept/good-2.jsonl", good.replace(b"row", b"line"))
    # optional fields a form leaves empty arrive as null
    nulls = {"retry_failed": None, "rule_overrides": None}
    run_id, state = acc.run_to_end("staged_upload_validation", nulls, logical_date=LOGICAL_DATE)
    _ok(acc, "staged_upload_validation", run_id, state)

    fresh = set(storage.list("fresh/accept"))
    failed = set(storage.list("failed/accept"))
    assert {"fresh/accept/good-1.jsonl", "fresh/accept/good-2.jsonl"} <= fresh, fresh
    assert "failed/accept/bad-1.jsonl" in failed and "failed/accept/bad-1.jsonl.report.json" in failed, failed
    assert not list(storage.list("uploads/accept"))


# --- microservice ingest ---------------------------------------------------------------------------------
def _lake_keys(storage, entity: str) -> set[str]:
    return {k for k in storage.list(entity) if k.endswith(".csv")}


def test_microservice_ingest_from_its_schedule_and_by_hand_with_and_without_a_logical_date(s3):
    acc = s3
    lake = open_storage(acc.root("lake"))
    acc.set_paused("microservice_ingest", False)  # daily 02:00, catchup off: today's run at once
    scheduled = acc.wait_for_new_run("microservice_ingest", set(), run_type="scheduled")
    manual = acc.trigger("microservice_ingest")
    dated = acc.trigger("microservice_ingest", logical_date=LOGICAL_DATE)
    for run_id in (scheduled.dag_run_id, manual, dated):
        _ok(acc, "microservice_ingest", run_id, acc.wait("microservice_ingest", run_id))

    run = acc.run("microservice_ingest", manual)
    assert run.logical_date is None and run.data_interval_start is None
    # a run without a logical date ingests the last complete day before it was triggered
    day = (run.run_after.astimezone(UTC) - timedelta(hours=2)).date() - timedelta(days=1)
    keys = _lake_keys(lake, "ordenes")
    assert any(f"ordenes/dt={day:%Y-%m-%d}/" in k for k in keys), (day, sorted(keys))
    assert any(f"ordenes/dt={LOGICAL_DATE - timedelta(days=1):%Y-%m-%d}/" in k for k in keys), sorted(keys)


# --- Apify download and retention ----------------------------------------------------------------------
def test_apify_download_and_retention_with_and_without_a_logical_date(s3):
    from helpers.apify_server import RUN_ID

    acc = s3
    for dag_id in ("apify_dataset_download", "dataset_retention"):
        acc.set_paused(dag_id, False)  # dataset_retention: weekly, its latest run at once
    scheduled = acc.wait_for_new_run("dataset_retention", set(), run_type="scheduled")
    _ok(acc, "dataset_retention", scheduled.dag_run_id, acc.wait("dataset_retention", scheduled.dag_run_id))

    first = acc.trigger("apify_dataset_download", {"run_id": RUN_ID})
    _ok(acc, "apify_dataset_download", first, acc.wait("apify_dataset_download", first))
    again = acc.trigger("apify_dataset_download", {"run_id": RUN_ID}, logical_date=LOGICAL_DATE)
    _ok(acc, "apify_dataset_download", again, acc.wait("apify_dataset_download", again))
    details = acc.stack.get(f"/dataset-ops/apify/facebook/runs/{RUN_ID}")
    assert details["completeness"] == "complete", details
    assert details["files"]["jsonl"]["lines"] == len(acc.apify.items)

    for logical_date in (None, LOGICAL_DATE):
        run_id, state = acc.run_to_end("dataset_retention", logical_date=logical_date)
        _ok(acc, "dataset_retention", run_id, state)
    # a dry run (the manual default) deletes nothing: the download is still listed
    listing = acc.stack.get("/dataset-ops/apify/facebook/runs/list")
    assert RUN_ID in {r["run_id"] for r in listing["runs"]}


# --- inference: report -> review -> dataset -> merge -------------------------------------------------------
def test_inference_chain_with_and_without_a_logical_date(s3):
    acc = s3
    world = acc.inference.world
    for dag_id in ("inference_report", "inference_review", "inference_dataset", "inference_merge"):
        acc.set_paused(dag_id, False)
    from helpers.inference_data import NOW

    conf = {"deployment_id": world.deployment_id}
    dated = acc.trigger("inference_report", conf, logical_date=NOW)
    undated = acc.trigger("inference_report", {**conf, "process_name": None})  # a field left empty
    processes = []
    for run_id in (dated, undated):
        _ok(acc, "inference_report", run_id, acc.wait("inference_report", run_id))
        processes.append(acc.xcom("inference_report", run_id, "start")["process_name"])
    assert len(set(processes)) == 2, processes

    refs, devices = list(world.review_references), list(world.review_devices)
    known = {r.dag_run_id for r in acc.runs("inference_dataset")}
    reviews = []
    for process, logical_date in zip(processes, (NOW, None), strict=True):
        review_conf = {"process_name": process, "selection": "params", "references": refs, "devices": devices}
        reviews.append(acc.trigger("inference_review", review_conf, logical_date=logical_date))
    for run_id in reviews:
        _ok(acc, "inference_review", run_id, acc.wait("inference_review", run_id))
    datasets = []
    for _ in reviews:
        run = acc.wait_for_new_run("inference_dataset", known)
        known.add(run.dag_run_id)
        datasets.append(run.dag_run_id)
    for run_id in datasets:
        _ok(acc, "inference_dataset", run_id, acc.wait("inference_dataset", run_id))
    # the review's TriggerDagRunOperator gives these a logical date; by hand, one without
    assert all(acc.run("inference_dataset", run_id).logical_date is not None for run_id in datasets)
    # (the name is registered already: registering it again fails at once, so not asked here)
    again = acc.trigger("inference_dataset", {"process_name": processes[0], "register": False})
    _ok(acc, "inference_dataset", again, acc.wait("inference_dataset", again))

    merges = [
        acc.trigger("inference_merge", {"process_names": processes, "target_process_name": "accept_merge_a"}),
        acc.trigger(
            "inference_merge",
            {"process_names": processes[::-1], "target_process_name": "accept_merge_b"},
            logical_date=NOW,
        ),
    ]
    for run_id in merges:
        _ok(acc, "inference_merge", run_id, acc.wait("inference_merge", run_id))
    storage = open_storage(acc.root("storage"))
    for target in ("accept_merge_a", "accept_merge_b"):
        assert any(k.endswith(".jpg") for k in storage.list(f"processes/{target}/dataset")), target


# --- inputs that can never succeed fail at once, once --------------------------------------------------
def test_a_hopeless_input_fails_its_task_at_once_on_the_running_airflow(acceptance):
    """A 404 for the dump (a base URL with nothing there): the task runner's retry policy fails
    the download after its first try, where a transient error would be retried twice."""
    acc = acceptance
    acc.set_paused("imdb_download", False)
    conf = {"base_url": f"{acc.imdb_server.url}nothing-here/", "files": ["title.ratings"]}
    run_id, state = acc.run_to_end("imdb_download", conf, timeout=300)
    assert state == "failed"
    (download,) = [ti for ti in acc.task_instances("imdb_download", run_id) if ti.task_id == "download"]
    assert (download.state.value, download.try_number) == ("failed", 1)
    assert "404" in acc.log("imdb_download", run_id, "download", map_index=0)
