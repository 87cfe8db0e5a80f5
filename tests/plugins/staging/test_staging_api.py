"""The ``/dataset-ops/staging`` API as Airflow's API server serves it (helpers.airflow_api), on a
local staging root and on a bucket of the session's S3 server (SeaweedFS), driven over the
protocol Uppy's AWS S3 plugin speaks (start, sign parts, PUT them, list, complete), then the
file validated by the DAG run the API started (``dag.test`` with the run's conf)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from helpers.airflow_api import airflow_api_client, bearer_headers, dag_runs, serialize_dag

pytestmark = pytest.mark.integration

DAG_ID = "staged_upload_validation"
BASE = "/dataset-ops/staging"
MiB = 1 << 20
SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
GSM8K = SHARED / "ml" / "gsm8k_train.jsonl"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(client, bearer headers by user)."""
    with airflow_api_client(tmp_path_factory.mktemp("staging-api"), [DAG_ID]) as client:
        yield client, bearer_headers(client)


@pytest.fixture(params=["local", "s3"])
def world(request, app, tmp_path, monkeypatch):
    """(client, headers, storage, kind): the staging root is a fresh local folder or bucket."""
    client, headers = app
    if request.param == "local":
        root = str(tmp_path / "staging")
    else:
        from helpers.s3 import new_bucket, use_s3

        endpoint = request.getfixturevalue("s3_endpoint")
        use_s3(monkeypatch, endpoint)
        root = f"s3://{new_bucket(endpoint, 'api')}/staging"
    monkeypatch.setenv("AIRFLOW_VAR_STAGING_ROOT", root)
    from dataset_ops.storage import open_storage

    return client, headers, open_storage(root), request.param


def start(client, headers, name, size, data_type="training_jsonl", **meta):
    return client.post(
        f"{BASE}/s3/multipart",
        json={
            "filename": name,
            "type": "application/jsonl",
            "metadata": {"data_type": data_type, "size": size, **meta},
        },
        headers=headers,
    )


def send_part(client, headers, upload, number, data: bytes) -> str:
    """Sign part ``number`` and PUT it where the API says (S3 presigned, or the API's own route)."""
    signed = client.get(
        f"{BASE}/s3/multipart/{upload['uploadId']}/{number}", params={"key": upload["key"]}, headers=headers
    )
    assert signed.status_code == 200, signed.text
    url = signed.json()["url"]
    if url.startswith("http://testserver"):
        answer = client.put(url, content=data, headers=headers)
    else:  # presigned S3: no Airflow credentials go to S3
        answer = requests.put(url, data=data, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.headers["ETag"]


def upload(client, headers, name: str, data: bytes, part_size: int = 5 * MiB, **meta) -> dict:
    """The whole protocol for ``data``; the complete answer."""
    started = start(client, headers, name, len(data), **meta)
    assert started.status_code == 200, started.text
    up = started.json()
    parts = [
        {"PartNumber": n, "ETag": send_part(client, headers, up, n, data[o : o + part_size])}
        for n, o in enumerate(range(0, len(data), part_size), 1)
    ]
    done = client.post(
        f"{BASE}/s3/multipart/{up['uploadId']}/complete",
        params={"key": up["key"]},
        json={"parts": parts},
        headers=headers,
    )
    assert done.status_code == 200, done.text
    return done.json()


def training_bytes(target: int) -> bytes:
    """Real GSM8K lines repeated to at least ``target`` bytes."""
    text = GSM8K.read_bytes()
    return text * (target // len(text) + 1)


def validate_now(conf: dict):
    """Run the validation DAG with ``conf`` (what the API's run carries) to its end."""
    dag = serialize_dag(DAG_ID)
    run = dag.test(run_conf=conf, logical_date=None)
    return run


# --- the upload protocol ---------------------------------------------------------------------------
def test_an_upload_in_parts_lands_whole_and_is_validated_at_once(world):
    client, headers, storage, kind = world
    data = training_bytes(11 * MiB)
    before = {r["dag_run_id"] for r in dag_runs(client, headers["admin"], DAG_ID)}
    done = upload(client, headers["editor"], "gsm8k/train.jsonl", data, description="GSM8K x3")
    assert (
        done["status"] == "uploaded"
        and done["size"] == len(data)
        and done["key"] == "uploads/gsm8k/train.jsonl"
    )
    with storage.open_read("uploads/gsm8k/train.jsonl") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == hashlib.sha256(data).hexdigest()
    run = done["validation_run"]
    assert run and run["conf"] == {"names": ["gsm8k/train.jsonl"]} and run["triggering_user_name"] == "editor"
    assert run["dag_run_id"] not in before

    assert validate_now(run["conf"]).state == "success"
    info = client.get(f"{BASE}/file-info/gsm8k/train.jsonl", headers=headers["viewer"]).json()
    assert info["status"] == "fresh" and info["key"] == "fresh/gsm8k/train.jsonl"
    assert info["description"] == "GSM8K x3" and info["records"] == data.count(b"\n")
    got = client.get(
        f"{BASE}/download-file/gsm8k/train.jsonl", headers=headers["viewer"], follow_redirects=False
    )
    if kind == "s3":
        assert got.status_code == 307
        got = requests.get(got.headers["location"], timeout=60)
        assert "attachment" in got.headers["Content-Disposition"]
    assert got.status_code == 200 and got.content == data


def test_a_resumed_upload_sends_only_the_missing_parts(world):
    client, headers, storage, _ = world
    data = training_bytes(12 * MiB)[: 12 * MiB + 123]
    up = start(client, headers["admin"], "resume.jsonl", len(data)).json()
    first = send_part(client, headers["admin"], up, 1, data[: 5 * MiB])
    progress = client.get(f"{BASE}/upload-progress/resume.jsonl", headers=headers["viewer"]).json()
    assert (
        progress["status"] == "uploading"
        and progress["bytes_uploaded"] == 5 * MiB
        and progress["parts_uploaded"] == 1
    )
    # "a page reload": the client asks what is there and sends only the rest
    listed = client.get(
        f"{BASE}/s3/multipart/{up['uploadId']}", params={"key": up["key"]}, headers=headers["admin"]
    )
    assert [(p["PartNumber"], p["ETag"].strip('"'), p["Size"]) for p in listed.json()] == [
        (1, first.strip('"'), 5 * MiB)
    ]
    second = send_part(client, headers["admin"], up, 2, data[5 * MiB : 10 * MiB])
    third = send_part(client, headers["admin"], up, 3, data[10 * MiB :])
    parts = [{"PartNumber": n, "ETag": e} for n, e in ((1, first), (2, second), (3, third))]
    done = client.post(
        f"{BASE}/s3/multipart/{up['uploadId']}/complete",
        params={"key": up["key"]},
        json={"parts": parts},
        headers=headers["admin"],
    )
    assert done.status_code == 200, done.text
    assert storage.stat("uploads/resume.jsonl").size == len(data)


def test_a_name_is_never_replaced_and_an_aborted_upload_leaves_nothing(world):
    client, headers, storage, _ = world
    data = training_bytes(1000)
    upload(client, headers["admin"], "x.jsonl", data)
    again = start(client, headers["admin"], "x.jsonl", len(data))
    assert again.status_code == 409 and "waiting for validation" in again.json()["detail"]

    up = start(client, headers["admin"], "y.jsonl", 6 * MiB).json()
    busy = start(client, headers["admin"], "y.jsonl", 6 * MiB)
    assert busy.status_code == 409 and up["uploadId"] in busy.json()["detail"]
    send_part(client, headers["admin"], up, 1, b"{}\n" * 100)
    gone = client.delete(
        f"{BASE}/s3/multipart/{up['uploadId']}", params={"key": up["key"]}, headers=headers["admin"]
    )
    assert gone.status_code == 200 and gone.json()["status"] is None
    assert client.get(f"{BASE}/file-info/y.jsonl", headers=headers["admin"]).status_code == 404
    assert not storage.exists("uploads/y.jsonl")
    assert start(client, headers["admin"], "y.jsonl", 10).status_code == 200  # the name is free again


@pytest.mark.parametrize(
    ("name", "meta", "status", "words"),
    [
        ("../x.jsonl", {"data_type": "training_jsonl", "size": 10}, 400, "unsafe upload name"),
        ("_manifest.json", {"data_type": "jsonl", "size": 10}, 400, "reserved upload name"),
        ("d/" + "a" * 201 + ".jsonl", {"data_type": "jsonl", "size": 10}, 400, "at most 200 bytes each"),
        ("x.jsonl", {"data_type": "no_such_rules", "size": 10}, 400, "no rule set"),
        ("x.jsonl", {"data_type": "custom", "size": 10}, 400, "custom needs its rules"),
        (
            "x.jsonl",
            {"data_type": "custom", "size": 10, "rules": {"allowed_formats": ["exe"]}},
            400,
            "unknown",
        ),
        ("x.jsonl", {"data_type": "training_jsonl", "size": 11 << 30}, 400, "max_file_size"),
        ("x.jsonl", {"data_type": "training_jsonl", "size": 0}, 422, "greater than or equal to 1"),
        ("x.jsonl", {"data_type": "training_jsonl", "size": "1e3"}, 422, "integer"),
        ("x.jsonl", {"data_type": "training_jsonl", "size": True}, 422, "integer"),
    ],
)
def test_bad_starts_are_refused_with_the_reason(world, name, meta, status, words):
    client, headers, storage, _ = world
    answer = client.post(
        f"{BASE}/s3/multipart", json={"filename": name, "metadata": meta}, headers=headers["admin"]
    )
    assert answer.status_code == status, answer.text
    assert words in answer.text
    assert list(storage.list("")) == []


def test_bad_completions_are_refused_and_the_upload_stays_resumable(world):
    client, headers, storage, kind = world
    data = training_bytes(7 * MiB)[: 7 * MiB]
    up = start(client, headers["admin"], "c.jsonl", len(data)).json()
    one = send_part(client, headers["admin"], up, 1, data[: 5 * MiB])
    url = f"{BASE}/s3/multipart/{up['uploadId']}/complete"
    for parts, words in (
        ([{"PartNumber": 2, "ETag": one}], "numbered 1..N"),
        (
            [{"PartNumber": 1, "ETag": one}, {"PartNumber": 2, "ETag": '"0123456789abcdef0123456789abcdef"'}],
            "",
        ),
        ([{"PartNumber": 1, "ETag": one}], ""),  # 5 MiB of a declared 7 MiB
    ):
        answer = client.post(url, params={"key": up["key"]}, json={"parts": parts}, headers=headers["admin"])
        assert answer.status_code == 400, answer.text
        assert words in answer.json()["detail"]
        assert not storage.exists("uploads/c.jsonl")
    two = send_part(client, headers["admin"], up, 2, data[5 * MiB :])
    parts = [{"PartNumber": 1, "ETag": one}, {"PartNumber": 2, "ETag": two}]
    assert (
        client.post(
            url, params={"key": up["key"]}, json={"parts": parts}, headers=headers["admin"]
        ).status_code
        == 200
    )
    wrong_id = client.get(
        f"{BASE}/s3/multipart/{up['uploadId']}", params={"key": up["key"]}, headers=headers["admin"]
    )
    assert wrong_id.status_code == 404  # completed: no longer in progress


def test_a_custom_upload_is_validated_with_its_own_rules_and_a_failure_is_reported_and_retried(world):
    client, headers, storage, _ = world
    rules = {
        "allowed_formats": ["jsonl"],
        "min_records": 5,
        "jsonl": {"schema": {"type": "object", "required": ["q"]}},
    }
    data = b'{"q": 1}\n{"q": 2}\nnot json\n{"r": 3}\n'
    done = upload(client, headers["editor"], "custom/a.jsonl", data, data_type="custom", rules=rules)
    assert validate_now(done["validation_run"]["conf"]).state == "success"
    listed = client.get(f"{BASE}/staged-files", params={"status": "failed"}, headers=headers["viewer"]).json()
    assert [f["name"] for f in listed["files"]] == ["custom/a.jsonl"] and listed["total_files"] == 1
    info = client.get(f"{BASE}/file-info/custom/a.jsonl", headers=headers["viewer"]).json()
    errors = info["report"]["errors"]
    assert (errors[0]["line"], errors[0]["offset"]) == (3, 18) and "JSON" in errors[0]["reason"]
    assert any(e["line"] == 4 and "'q'" in e["reason"] for e in errors), errors
    assert info["record"]["rules"] == rules

    bad = client.post(
        f"{BASE}/retry-failed-file/custom/a.jsonl",
        json={"rule_overrides": {"nope": 1}},
        headers=headers["editor"],
    )
    assert bad.status_code == 400 and "nope" in bad.json()["detail"]
    relaxed = {"min_records": 1, "jsonl": {"schema": {"type": "object"}}, "max_errors": 10}
    retry = client.post(
        f"{BASE}/retry-failed-file/custom/a.jsonl",
        json={"rule_overrides": relaxed},
        headers=headers["editor"],
    )
    assert retry.status_code == 200, retry.text
    assert retry.json()["conf"] == {"retry_failed": ["custom/a.jsonl"], "rule_overrides": relaxed}
    validate_now(retry.json()["conf"])
    assert (
        client.get(f"{BASE}/file-info/custom/a.jsonl", headers=headers["viewer"]).json()["status"] == "failed"
    )  # "not json" stays


def test_process_file_starts_a_run_for_a_waiting_file_with_overrides(world):
    client, headers, storage, _ = world
    upload(client, headers["admin"], "p.jsonl", training_bytes(100))
    answer = client.post(f"{BASE}/process-file/p.jsonl", json={"min_records": 100}, headers=headers["editor"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["conf"] == {"names": ["p.jsonl"], "rule_overrides": {"min_records": 100}}
    assert (
        client.post(f"{BASE}/process-file/p.jsonl", json={"bogus": 1}, headers=headers["editor"]).status_code
        == 400
    )
    assert client.post(f"{BASE}/process-file/none.jsonl", headers=headers["editor"]).status_code == 404


def test_listing_metrics_and_health(world):
    client, headers, storage, _ = world
    upload(client, headers["admin"], "m.jsonl", training_bytes(2000))
    start(client, headers["admin"], "n.jsonl", 6 * MiB)
    files = client.get(f"{BASE}/staged-files", headers=headers["viewer"]).json()
    assert {f["name"]: f["status"] for f in files["files"]} == {"m.jsonl": "uploaded", "n.jsonl": "uploading"}
    assert (
        client.get(f"{BASE}/staged-files", params={"status": "bogus"}, headers=headers["viewer"]).status_code
        == 422
    )

    figures = client.get(f"{BASE}/metrics", headers=headers["viewer"]).json()
    assert (
        figures["files_by_state"]["uploaded"]["count"] == 1
        and figures["files_by_state"]["uploading"]["count"] == 1
    )
    assert figures["uploads_last_hour"] == 1 and figures["total_uploads"] == 2
    text = client.get(f"{BASE}/metrics", params={"format": "prometheus"}, headers=headers["viewer"])
    assert text.headers["content-type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.text)
        for s in family.samples
    }
    assert samples[("dataset_ops_staging_files", (("state", "uploading"),))] == 1
    assert samples[("dataset_ops_staging_uploads_last_hour", ())] == 1
    health = client.get(f"{BASE}/health", headers=headers["viewer"]).json()
    assert health["status"] == "healthy" and health["active_uploads"] == 1 and health["total_files"] == 2


def test_cleanup_forgets_abandoned_uploads(world):
    client, headers, storage, _ = world
    up = start(client, headers["admin"], "old.jsonl", 6 * MiB).json()
    send_part(client, headers["admin"], up, 1, b"{}\n" * 10)
    from dataset_ops.staging.status import read_status, write_status

    record = read_status(storage, "old.jsonl")
    record.updated_at = (datetime.now(UTC) - timedelta(hours=30)).isoformat(timespec="seconds")
    write_status(storage, record)
    dry = client.delete(
        f"{BASE}/cleanup-failed-uploads", params={"hours_old": 24, "dry_run": True}, headers=headers["editor"]
    )
    assert dry.status_code == 200 and dry.json()["abandoned_records"] == ["old.jsonl"]
    assert read_status(storage, "old.jsonl") is not None
    done = client.delete(
        f"{BASE}/cleanup-failed-uploads", params={"hours_old": 24}, headers=headers["editor"]
    )
    assert done.json()["abandoned_records"] == ["old.jsonl"]
    assert read_status(storage, "old.jsonl") is None


# --- permissions ------------------------------------------------------------------------------------
def test_without_a_token_nothing_answers_and_a_viewer_cannot_upload(world):
    client, headers, storage, _ = world
    routes = [
        (
            "POST",
            f"{BASE}/s3/multipart",
            {"filename": "v.jsonl", "metadata": {"data_type": "jsonl", "size": 10}},
        ),
        ("GET", f"{BASE}/staged-files", None),
        ("GET", f"{BASE}/file-info/v.jsonl", None),
        ("GET", f"{BASE}/download-file/v.jsonl", None),
        ("GET", f"{BASE}/metrics", None),
        ("GET", f"{BASE}/health", None),
        ("DELETE", f"{BASE}/cleanup-failed-uploads", None),
        ("POST", f"{BASE}/retry-failed-file/v.jsonl", None),
    ]
    for method, url, body in routes:
        assert client.request(method, url, json=body).status_code == 401, (method, url)
    viewer = headers["viewer"]
    assert client.get(f"{BASE}/staged-files", headers=viewer).status_code == 200
    for method, url, body in [routes[0], routes[6], routes[7]]:
        assert client.request(method, url, json=body, headers=viewer).status_code == 403, (method, url)
    assert list(storage.list("")) == []


def test_the_page_is_served_and_listed_in_the_ui_menu(app):
    client, headers = app
    page = client.get(f"{BASE}/ui/")
    assert page.status_code in (200, 503)
    plugins = client.get("/api/v2/plugins", headers=headers["admin"]).json()["plugins"]
    views = [v for p in plugins if p["name"] == "dataset_ops" for v in p["external_views"]]
    wanted = {
        "name": "Uploads",
        "href": "/dataset-ops/staging/ui/",
        "destination": "nav",
        "category": "browse",
        "url_route": "uploads",
    }
    assert [{k: v.get(k) for k in wanted} for v in views] == [wanted], views


def test_local_part_larger_than_the_file_is_refused(app, tmp_path, monkeypatch):
    client, headers = app
    monkeypatch.setenv("AIRFLOW_VAR_STAGING_ROOT", str(tmp_path))
    up = start(client, headers["admin"], "small.jsonl", 10).json()
    url = f"{BASE}/parts/{up['uploadId']}/1"
    answer = client.put(url, params={"key": up["key"]}, content=b"x" * (2 * MiB), headers=headers["admin"])
    assert answer.status_code == 400 and "larger than the declared file size" in answer.json()["detail"]
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "part-" in p.name] == []
    assert os.listdir(tmp_path / "uploads") == [".small.jsonl." + up["uploadId"] + ".parts"]
    assert (
        json.loads(client.get(f"{BASE}/upload-progress/small.jsonl", headers=headers["admin"]).text)[
            "bytes_uploaded"
        ]
        == 0
    )


# --- fuzzing the staging routes against the app's own OpenAPI (schemathesis) ------------------------
import schemathesis  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from dataset_ops.api.app import create_app as _plugin_app  # noqa: E402

#: The staging routes of the plugin's OpenAPI (built at import: see tests/plugins/apify).
FUZZED = schemathesis.openapi.from_dict(_plugin_app().openapi()).include(path_regex="^/staging/")


@pytest.fixture(scope="module")
def served_staging(app, tmp_path_factory):
    """The app over real HTTP with a local staging root holding one fresh, one failed and one
    waiting file and one upload in progress, so that the 200 paths run too."""
    from helpers.airflow_api import served

    root = tmp_path_factory.mktemp("fuzz-staging")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_VAR_STAGING_ROOT", str(root))
        client, headers = app
        upload(client, headers["admin"], "gsm8k/train.jsonl", training_bytes(2000))
        start(client, headers["admin"], "busy.jsonl", 6 * MiB)
        with served(client.app) as url:
            yield url


@FUZZED.parametrize()
@settings(
    max_examples=15, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
def test_fuzzing_the_staging_routes_finds_no_server_error(case, served_staging, app):
    """Generated requests (valid and invalid, 15 per operation, derandomized) with an admin token:
    no 5xx, and every status code and body as documented."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    case.call_and_validate(
        base_url=f"{served_staging}/dataset-ops",
        headers=app[1]["admin"],
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )
