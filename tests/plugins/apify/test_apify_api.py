"""The ``/dataset-ops/apify/facebook`` API as Airflow's API server serves it.

Airflow's own FastAPI app (``airflow.api_fastapi.app.create_app``) is built in this process with
the simple auth manager, so the plugin is mounted by Airflow's plugin manager from
``plugins/dataset_ops_plugin.py``, tokens come from ``POST /auth/token`` and the DAG
``apify_dataset_download`` is serialized into the session's metadata DB (tests/conftest.py).
The storage root (Variable ``dataset_ops_storage_root``, from the environment) is a temporary
folder holding datasets written here in the layout the DAG produces.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers.airflow_api import airflow_api_client, bearer_headers, serialize_dag, served

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
DAG_ID = "apify_dataset_download"
BASE = "/dataset-ops/apify/facebook"
RUN_A, RUN_B, RUN_C = "HG7ML7M8z78YcAPEB", "aaaaaaaaaaaaaaaa1", "ZZZZZZZZZZZZZZZZ9"
BAD_IDS = [
    "..%2F..%2Fetc",
    "..%2F..%2F..%2Foutside",  # (a literal ../ is resolved by the HTTP client before sending)
    "%2E%2E%2Fsecret.txt",
    "a%2Fb",
    "short",
    f"{RUN_A}x",
    f"{RUN_A[:16]}%00",
    "9" * 400,
]


# --- the Airflow API app ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory):
    """(TestClient of Airflow's API app, storage root, the parsed DAG)."""
    tmp = tmp_path_factory.mktemp("api")
    root = tmp / "storage"
    root.mkdir()
    with airflow_api_client(tmp, [DAG_ID], {"AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT": str(root)}) as client:
        yield client, root, serialize_dag(DAG_ID)


@pytest.fixture(scope="module")
def tokens(airflow_api) -> dict[str, dict[str, str]]:
    """user -> Authorization header, from ``POST /auth/token``."""
    return bearer_headers(airflow_api[0])


@pytest.fixture
def api(airflow_api, tokens):
    """(client, storage root, headers by user) with an empty ``datasets/`` folder."""
    import shutil

    client, root, _ = airflow_api
    shutil.rmtree(root / "datasets", ignore_errors=True)
    return client, root, tokens


# --- datasets in the DAG's layout --------------------------------------------------------------
FILES = {  # relative path -> size in bytes
    "{run}.csv": 300,
    "{run}.jsonl": 700,
    "media/ad1_a1b2.jpg": 1000,
    "media/ad1_c3d4.png": 500,
    "media/ad2_e5f6.mp4": 4000,
    "video_frames/ad2_e5f6_000000000ms.jpg": 120,
    "video_frames/ad2_e5f6_000001000ms.jpg": 130,
    "reports/download_report.json": 50,
}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def write_dataset(
    root: Path, run: str, *, created: datetime | None = None, files=FILES, manifest=True, **extra
):
    """A dataset of ``run`` with files of the given sizes and (optionally) its manifest;
    returns {relative path: size} of everything written."""
    folder = root / "datasets" / "facebook" / run
    written = {}
    for rel, size in files.items():
        path = folder / rel.format(run=run)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        written[str(path.relative_to(folder))] = size
    if manifest:
        created = created or datetime.now(UTC) - timedelta(hours=1)
        body = {
            "run_id": run,
            "dataset_id": f"ds{run[:15]}",
            "created_at": _iso(created),
            "last_modified": _iso(created + timedelta(minutes=5)),
            "completeness": "complete",
            "counts": {"csv_rows": 61, "jsonl_lines": 61, "media_failed": 1, "videos_failed": 0},
            **extra,
        }
        data = json.dumps(body).encode()
        (folder / "manifest.json").write_bytes(data)
        written["manifest.json"] = len(data)
        stamp = (created + timedelta(minutes=5)).timestamp()
        for path in folder.rglob("*"):  # files as old as the manifest says
            os.utime(path, (stamp, stamp))
    return written


def tree(root: Path) -> dict[str, int]:
    """{relative path: bytes} of every file below ``root`` but the deletion ledger's records."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and "_deletions" not in p.parts
    }


def ledger(root: Path) -> list[dict]:
    """The deletion ledger's records (``datasets/_deletions/facebook/{day}/*.json``)."""
    return [json.loads(p.read_text()) for p in sorted((root / "datasets" / "_deletions").rglob("*.json"))]


# --- tests -------------------------------------------------------------------------------------
ROUTES = [
    ("GET", f"{BASE}/runs/list", None),
    ("GET", f"{BASE}/runs/{RUN_A}", None),
    ("DELETE", f"{BASE}/runs/{RUN_A}", None),
    ("POST", f"{BASE}/runs/cleanup", {"dry_run": True}),
    ("POST", f"{BASE}/download-dataset-from-run", {"run_id": RUN_A}),
]


def test_every_route_needs_a_token(api):
    client, root, headers = api
    write_dataset(root, RUN_A)
    before, runs = tree(root), _dag_run_ids(client, headers["admin"])
    for method, url, body in ROUTES:
        resp = client.request(method, url, json=body)
        assert resp.status_code == 401, (method, url, resp.text)
        bad = client.request(method, url, json=body, headers={"Authorization": "Bearer not-a-jwt"})
        assert bad.status_code in (401, 403), (method, url, bad.text)
    assert tree(root) == before
    assert _dag_run_ids(client, headers["admin"]) == runs


def test_a_viewer_reads_but_cannot_delete_clean_up_or_trigger(api):
    client, root, headers = api
    write_dataset(root, RUN_A, created=datetime.now(UTC) - timedelta(days=400))
    before, runs = tree(root), _dag_run_ids(client, headers["admin"])
    viewer = headers["viewer"]
    assert client.get(f"{BASE}/runs/list", headers=viewer).status_code == 200
    assert client.get(f"{BASE}/runs/{RUN_A}", headers=viewer).status_code == 200
    for method, url, body in ROUTES[2:]:
        body = body and {**body, "dry_run": False} if "cleanup" in url else body
        resp = client.request(method, url, json=body, headers=viewer)
        assert resp.status_code == 403, (method, url, resp.text)
    assert tree(root) == before
    assert _dag_run_ids(client, headers["admin"]) == runs


def test_list_and_details(api):
    client, root, headers = api
    created = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    full = write_dataset(root, RUN_A, created=created)
    bare = write_dataset(root, RUN_B, files={"{run}.csv": 42}, manifest=False)
    (root / "datasets" / "facebook" / "not-a-run" / "x.txt").parent.mkdir(parents=True)
    (root / "datasets" / "facebook" / "not-a-run" / "x.txt").write_text("ignored")

    resp = client.get(f"{BASE}/runs/list", headers=headers["viewer"])
    assert resp.status_code == 200, resp.text
    listing = resp.json()
    assert listing["total_runs"] == 2
    assert listing["total_size_bytes"] == sum(full.values()) + sum(bare.values())
    by_id = {r["run_id"]: r for r in listing["runs"]}
    assert [r["run_id"] for r in listing["runs"]] == [RUN_B, RUN_A]  # newest first
    assert listing["status"] == "success"
    folder = str(root / "datasets" / "facebook")
    assert by_id[RUN_A] == {
        "run_id": RUN_A,
        "path": f"{folder}/{RUN_A}",
        "has_csv": True,
        "has_jsonl": True,
        "has_media": True,
        "media_count": 3,
        "created_at": "2026-03-01T12:30:00+00:00",
        "last_modified": "2026-03-01T12:35:00+00:00",
        "size_bytes": sum(full.values()),
        "completeness": "complete",
    }
    assert by_id[RUN_B] | {"created_at": None, "last_modified": None} == {
        "run_id": RUN_B,
        "path": f"{folder}/{RUN_B}",
        "has_csv": True,
        "has_jsonl": False,
        "has_media": False,
        "media_count": 0,
        "created_at": None,
        "last_modified": None,
        "size_bytes": 42,
        "completeness": "unknown",
    }

    resp = client.get(f"{BASE}/runs/{RUN_A}", headers=headers["viewer"])
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "status": "success",
        "run_id": RUN_A,
        "exists": True,
        "path": f"{folder}/{RUN_A}",
        "dataset_id": f"ds{RUN_A[:15]}",
        "created_at": "2026-03-01T12:30:00+00:00",
        "last_modified": "2026-03-01T12:35:00+00:00",
        "completeness": "complete",
        "files": {
            "csv": {"exists": True, "path": f"{RUN_A}.csv", "size_bytes": 300, "rows": 61},
            "jsonl": {"exists": True, "path": f"{RUN_A}.jsonl", "size_bytes": 700, "lines": 61},
            "media": {
                "exists": True,
                "path": "media/",
                "count": 3,
                "size_bytes": 5500,
                "images": 2,
                "videos": 1,
                "failed": 1,
            },
            "video_frames": {
                "exists": True,
                "path": "video_frames/",
                "count": 2,
                "size_bytes": 250,
                "videos_failed": 0,
            },
            "reports": {"exists": True, "path": "reports/", "files": ["download_report.json"]},
        },
        "total_size_bytes": sum(full.values()),
    }
    details = client.get(f"{BASE}/runs/{RUN_B}", headers=headers["viewer"]).json()
    assert details["files"]["csv"] == {"exists": True, "path": f"{RUN_B}.csv", "size_bytes": 42, "rows": 0}
    assert details["files"]["jsonl"] == {
        "exists": False,
        "path": f"{RUN_B}.jsonl",
        "size_bytes": 0,
        "lines": None,
    }
    assert not any(details["files"][k]["exists"] for k in ("media", "video_frames", "reports"))
    assert details["total_size_bytes"] == 42 and details["completeness"] == "unknown"


def test_unknown_and_malformed_run_ids(api):
    client, root, headers = api
    write_dataset(root, RUN_A)
    (root / "secret.txt").write_text("keep")  # what ../ from a dataset folder would reach
    (root.parent / "outside").mkdir(exist_ok=True)
    (root.parent / "outside" / "keep.txt").write_text("keep")
    before = tree(root.parent)

    for method, user in (("GET", "viewer"), ("DELETE", "admin")):
        resp = client.request(method, f"{BASE}/runs/{RUN_C}", headers=headers[user])
        assert resp.status_code == 404, resp.text
        assert RUN_C in resp.json()["detail"]
        for bad in BAD_IDS:
            resp = client.request(method, f"{BASE}/runs/{bad}", headers=headers[user])
            assert resp.status_code == 422, (method, bad, resp.text)
            [error] = resp.json()["detail"]
            assert error["loc"] == ["path", "run_id"] and error["msg"], resp.text
        # Starlette's path patterns never match a newline: no route, 404 (not the dataset)
        resp = client.request(method, f"{BASE}/runs/{RUN_A}%0A", headers=headers[user])
        assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}, resp.text
    assert tree(root.parent) == before


def test_delete_removes_exactly_that_dataset(api):
    client, root, headers = api
    written = sum(write_dataset(root, RUN_A).values())
    write_dataset(root, RUN_B)
    before = tree(root)

    resp = client.delete(f"{BASE}/runs/{RUN_A}", headers=headers["editor"])
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "status": "success",
        "message": f"Run {RUN_A} deleted",
        "deleted_path": str(root / "datasets" / "facebook" / RUN_A),
        "freed_space_bytes": written,
        "run_id": RUN_A,
        "deleted": True,
        "files_deleted": len(FILES) + 1,
    }
    assert tree(root) == {k: v for k, v in before.items() if RUN_A not in k}
    [record] = ledger(root)
    assert record | {"deleted_at": None, "created_at": None} == {
        "run_id": RUN_A,
        "reason": "delete",
        "created_at": None,
        "deleted_at": None,
        "files_deleted": len(FILES) + 1,
        "freed_space_bytes": written,
    }
    assert client.delete(f"{BASE}/runs/{RUN_A}", headers=headers["editor"]).status_code == 404
    assert client.get(f"{BASE}/runs/{RUN_A}", headers=headers["viewer"]).status_code == 404
    assert [
        r["run_id"] for r in client.get(f"{BASE}/runs/list", headers=headers["viewer"]).json()["runs"]
    ] == [RUN_B]
    events = _audit_log(client, headers["admin"], "dataset_ops.delete_dataset")
    assert {
        "owner": "editor",
        "run_id": None,
        "extra": {"apify_run_id": RUN_A, "files_deleted": len(FILES) + 1, "freed_space_bytes": written},
    } in [{"owner": e["owner"], "run_id": e["run_id"], "extra": json.loads(e["extra"])} for e in events]


def test_delete_refuses_a_dataset_being_downloaded(api):
    client, root, headers = api
    now = datetime.now(UTC)
    write_dataset(root, RUN_A, created=now - timedelta(minutes=10), completeness="in_progress")
    manifest = root / "datasets" / "facebook" / RUN_A / "manifest.json"
    os.utime(manifest, (now.timestamp(), now.timestamp()))
    before = tree(root)
    resp = client.delete(f"{BASE}/runs/{RUN_A}", headers=headers["editor"])
    assert resp.status_code == 409, resp.text
    assert "in progress" in resp.json()["detail"]
    assert tree(root) == before


def test_cleanup_dry_run_then_for_real(api):
    client, root, headers = api
    now = datetime.now(UTC)
    ages = {RUN_A: 100, RUN_B: 60, RUN_C: 45, "recent00000000001": 2, "recent00000000002": 1}
    sizes = {
        run: sum(write_dataset(root, run, created=now - timedelta(days=d)).values())
        for run, d in ages.items()
    }
    before = tree(root)
    url = f"{BASE}/runs/cleanup"

    resp = client.post(url, headers=headers["editor"])  # no body: the defaults, a dry run
    assert resp.status_code == 200, resp.text
    assert resp.json()["dry_run"] is True and resp.json()["keep_recent"] == 10
    assert resp.json()["runs_to_delete"] == 0

    resp = client.post(
        url, json={"days_old": 30, "keep_recent": 3, "dry_run": True}, headers=headers["editor"]
    )
    assert resp.status_code == 200, resp.text
    report = resp.json()
    doomed = [RUN_B, RUN_A]  # older than 30 days and beyond the 3 newest, newest first
    assert report | {"deleted_runs": None} == {
        "status": "success",
        "criteria": {"days_old": 30, "keep_recent": 3},
        "runs_checked": 5,
        "runs_to_delete": 2,
        "runs_deleted": 0,
        "runs_kept": 3,
        "freed_space_bytes": 0,
        "space_to_free_bytes": sizes[RUN_A] + sizes[RUN_B],
        "deleted_runs": None,
        "in_progress": [],
        "dry_run": True,
        "days_old": 30,
        "keep_recent": 3,
    }
    assert [(r["run_id"], r["days_old"], r["size_bytes"]) for r in report["deleted_runs"]] == [
        (run, ages[run], sizes[run]) for run in doomed
    ]
    assert report["deleted_runs"][0]["created_at"] == _iso(now - timedelta(days=ages[RUN_B]))
    assert tree(root) == before

    for bad in (
        {"days_old": -1},
        {"keep_recent": -1},
        {"dry_run": False, "bogus": 1},
        {"keep_recent": "many"},
    ):
        resp = client.post(url, json=bad, headers=headers["editor"])
        assert resp.status_code == 422, (bad, resp.text)
    assert tree(root) == before

    resp = client.post(
        url, json={"days_old": 30, "keep_recent": 3, "dry_run": False}, headers=headers["editor"]
    )
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert (report["runs_deleted"], report["freed_space_bytes"]) == (2, sizes[RUN_A] + sizes[RUN_B])
    remaining = client.get(f"{BASE}/runs/list", headers=headers["viewer"]).json()
    assert [r["run_id"] for r in remaining["runs"]] == ["recent00000000002", "recent00000000001", RUN_C]
    assert tree(root) == {k: v for k, v in before.items() if not any(run in k for run in doomed)}
    events = _audit_log(client, headers["admin"], "dataset_ops.cleanup_datasets")
    assert any(sorted(json.loads(e["extra"])["deleted"]) == sorted(doomed) for e in events)


def test_download_request_defaults_are_the_dag_params(airflow_api):
    from dataset_ops.apify.api import DownloadRequest

    dag = airflow_api[2]
    defaults = {name: f.default for name, f in DownloadRequest.model_fields.items() if name != "run_id"}
    assert defaults == {name: dag.params[name] for name in defaults}
    assert set(DownloadRequest.model_fields) == set(dag.params)


def test_download_triggers_a_dag_run_with_the_conf(api):
    client, _, headers = api
    runs = _dag_run_ids(client, headers["admin"])  # dag.test() runs of other test modules
    url = f"{BASE}/download-dataset-from-run"
    body = {"run_id": RUN_A, "download_media": False, "frame_interval_seconds": 2.5}
    resp = client.post(url, json=body, headers=headers["editor"])
    assert resp.status_code == 200, resp.text
    run = resp.json()
    conf = {
        "run_id": RUN_A,
        "download_media": False,
        "force_download": False,
        "extract_video_frames": True,
        "frame_interval_seconds": 2.5,
    }
    assert run["dag_id"] == DAG_ID and run["state"] == "queued" and run["conf"] == conf
    assert run["logical_date"] is None and run["run_type"] == "manual"
    assert run["dag_run_id"].startswith("manual__")
    try:
        stored = client.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", headers=headers["viewer"])
        assert stored.status_code == 200, stored.text
        stored = stored.json()
        assert stored["conf"] == conf and stored["state"] == "queued"
        assert (stored["triggered_by"], stored["triggering_user_name"]) == ("rest_api", "editor")
        assert _dag_run_ids(client, headers["admin"]) == runs | {run["dag_run_id"]}
        events = _audit_log(client, headers["admin"], "dataset_ops.trigger_download")
        assert [
            (e["owner"], json.loads(e["extra"])["conf"]) for e in events if e["run_id"] == run["dag_run_id"]
        ] == [("editor", conf)]
    finally:
        _delete_dag_runs(client, headers["admin"], keep=runs)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"run_id": "../../etc"}, 422, "run_id"),
        ({"run_id": f"{RUN_A}\n"}, 422, "run_id"),
        ({"run_id": RUN_A[:16]}, 422, "run_id"),
        ({"run_id": 12345678901234567}, 422, "run_id"),
        ({"run_id": RUN_A, "frame_interval_seconds": 0}, 422, "frame_interval_seconds"),
        ({"run_id": RUN_A, "frame_interval_seconds": 7200}, 422, "frame_interval_seconds"),
        ({"run_id": RUN_A, "frame_interval_seconds": "1"}, 422, "frame_interval_seconds"),
        ({"run_id": RUN_A, "download_media": 1}, 422, "download_media"),
        ({}, 422, "run_id"),
        (None, 422, "body"),
        ([RUN_A], 422, "body"),
        ({"run_id": RUN_A, "unknown": 1}, 422, "unknown"),
        ({"run_id": RUN_A, "download_media": "maybe"}, 422, "download_media"),
    ],
)
def test_a_bad_download_request_creates_no_dag_run(api, body, status, reason):
    client, _, headers = api
    runs = _dag_run_ids(client, headers["admin"])
    resp = client.post(f"{BASE}/download-dataset-from-run", json=body, headers=headers["editor"])
    assert resp.status_code == status, resp.text
    assert reason in resp.text
    assert _dag_run_ids(client, headers["admin"]) == runs


def test_openapi_docs_describe_the_routes(api):
    client = api[0]
    spec = client.get("/dataset-ops/openapi.json").json()
    assert {p for p in spec["paths"] if p.startswith("/apify/")} == {
        "/apify/facebook/runs/list",
        "/apify/facebook/storage/metrics",
        "/apify/facebook/runs/{run_id}",
        "/apify/facebook/runs/cleanup",
        "/apify/facebook/download-dataset-from-run",
    }
    assert "bytes" in spec["paths"]["/apify/facebook/runs/list"]["get"]["description"]
    from dataset_ops.apify.api import create_app

    assert spec["paths"] == create_app().openapi()["paths"]  # what the fuzzing test reads


# --- helpers over Airflow's own REST API ---------------------------------------------------------
def _dag_run_ids(client, headers) -> set[str]:
    resp = client.get(f"/api/v2/dags/{DAG_ID}/dagRuns", params={"limit": 1000}, headers=headers)
    assert resp.status_code == 200, resp.text
    return {r["dag_run_id"] for r in resp.json()["dag_runs"]}


def _delete_dag_runs(client, headers, keep: set[str]) -> None:
    for run_id in _dag_run_ids(client, headers) - keep:
        resp = client.delete(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", headers=headers)
        assert resp.status_code == 204, resp.text


def _audit_log(client, headers, event: str) -> list[dict]:
    resp = client.get("/api/v2/eventLogs", params={"event": event, "dag_id": DAG_ID}, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["event_logs"]


# --- bad input is a 4xx with a message; a server fault stays a 500 -----------------------------
#: Raw bodies of ``POST /runs/cleanup`` (with ``dry_run`` false where they parse): Python's json
#: module, which the API server uses, reads ``NaN``, ``Infinity`` and ``1e309`` (inf).
BAD_CLEANUP_BODIES = [
    '{"days_old": 1000000, "dry_run": false}',  # timedelta OverflowError -> 500 before
    '{"days_old": 1e309, "dry_run": false}',
    '{"days_old": -1e309, "dry_run": false}',
    '{"days_old": NaN, "dry_run": false}',
    '{"days_old": Infinity, "dry_run": false}',
    '{"days_old": 99999999999999999999999999999999, "dry_run": false}',
    '{"days_old": 36501, "dry_run": false}',
    '{"keep_recent": 1000001, "dry_run": false}',
    '{"keep_recent": NaN, "dry_run": false}',
    '{"days_old": 30.5, "dry_run": false}',
    '{"days_old": "30", "dry_run": false}',
    '{"days_old": true, "dry_run": false}',
    '{"days_old": null, "dry_run": false}',
    '{"days_old": [30], "dry_run": false}',
    '{"dry_run": "false"}',
    '{"dry_run": 0}',
    '{"dry_run": false, "days": 30}',
    "[30, 10, false]",
    '"cleanup"',
    '{"days_old": 30',  # not JSON
    '{"days_old": ' + "9" * 5000 + "}",  # beyond Python's int-to-text limit
    '{"days_old": ' + "[" * 5000 + "]" * 5000 + "}",  # deeper than the JSON parser goes
]


@pytest.mark.parametrize("body", BAD_CLEANUP_BODIES, ids=lambda b: b[:40])
def test_bad_cleanup_bodies_are_4xx_with_a_message(api, body):
    client, root, headers = api
    old = datetime.now(UTC) - timedelta(days=400)
    write_dataset(root, RUN_A, created=old)
    write_dataset(root, RUN_B, created=old)
    before = tree(root)
    resp = client.post(
        f"{BASE}/runs/cleanup",
        content=body.encode(),
        headers={**headers["editor"], "Content-Type": "application/json"},
    )
    assert resp.status_code in (400, 422), resp.text
    detail = resp.json()["detail"]
    assert detail and (isinstance(detail, str) or all(e["msg"] and e["loc"] for e in detail)), resp.text
    assert tree(root) == before


def test_the_seeds_cleanup_clients_keep_working(api):
    """The old service's clients (seed 000, "Flujo 2" and its curl examples) send integers and
    ``dry_run``; ``30.0`` is the JSON integer 30 as well."""
    client, root, headers = api
    write_dataset(root, RUN_A, created=datetime.now(UTC) - timedelta(days=90))
    url = f"{BASE}/runs/cleanup"
    for body in ({"days_old": 30, "keep_recent": 10, "dry_run": True}, {"days_old": 30.0, "keep_recent": 0}):
        resp = client.post(url, json=body, headers=headers["editor"])
        assert resp.status_code == 200, resp.text
        assert resp.json()["runs_to_delete"] == (0 if body["keep_recent"] else 1), resp.text
    resp = client.post(
        url, json={"days_old": 30, "keep_recent": 0, "dry_run": False}, headers=headers["editor"]
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["runs_deleted"] == 1 and resp.json()["freed_space_bytes"] > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days_old": 10**6},
        {"days_old": float("inf")},
        {"days_old": float("nan")},
        {"days_old": -1},
        {"days_old": True},
        {"days_old": "30"},
        {"keep_recent": 1.5},
        {"keep_recent": -1},
        {"keep_recent": 10**7},
    ],
    ids=repr,
)
def test_cleanup_datasets_refuses_bad_arguments_before_listing(tmp_path, kwargs):
    """The retention rule's own guard (the ``dataset_retention`` DAG calls it too): an
    ``InvalidArgument`` naming the value, never an ``OverflowError``, nothing deleted."""
    from dataset_ops.apify.inventory import InvalidArgument, cleanup_datasets
    from dataset_ops.storage import open_storage

    write_dataset(tmp_path, RUN_A, created=datetime.now(UTC) - timedelta(days=400))
    before = tree(tmp_path)
    with pytest.raises(InvalidArgument, match=next(iter(kwargs))):
        cleanup_datasets(open_storage(str(tmp_path)), **{"keep_recent": 0, "dry_run": False, **kwargs})
    assert tree(tmp_path) == before


def test_a_server_fault_is_a_500_not_blamed_on_the_request(api, served_api):
    """A corrupt manifest is the server's problem: 500, not 400 (a ``ValueError`` from the JSON
    parser used to be answered 400 as if the run id were wrong)."""
    import requests

    _, root, headers = api
    write_dataset(root, RUN_A)
    (root / "datasets" / "facebook" / RUN_A / "manifest.json").write_text('{"completeness": "compl')
    resp = requests.get(f"{served_api}{BASE}/runs/{RUN_A}", headers=headers["viewer"], timeout=30)
    assert resp.status_code == 500, resp.text
    resp = requests.get(f"{served_api}{BASE}/runs/{RUN_B}", headers=headers["viewer"], timeout=30)
    assert resp.status_code == 404, resp.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/runs/cleanup", "POST"),
        ("GET", "/runs/cleanup", "POST"),
        ("POST", "/runs/list", "GET"),
        ("DELETE", "/runs/list", "GET"),
        ("OPTIONS", f"/runs/{RUN_A}", "DELETE, GET"),
        ("PUT", f"/runs/{RUN_A}", "DELETE, GET"),
        ("GET", "/download-dataset-from-run", "POST"),
    ],
)
def test_a_method_the_path_does_not_have_is_405_with_its_methods(api, method, path, allow):
    """A fixed path (``list``, ``cleanup``) is never taken for a run id; ``Allow`` names every
    method of the path, not only those of the first route that matched."""
    client, root, headers = api
    write_dataset(root, RUN_A)
    before = tree(root)
    resp = client.request(method, BASE + path, headers=headers["admin"])
    assert resp.status_code == 405, resp.text
    assert resp.headers["Allow"] == allow
    assert tree(root) == before


def test_download_request_rules_are_the_dag_params(airflow_api):
    """The body model checks what the DAG's Params check (pattern, lengths, bounds, types)."""
    from dataset_ops.apify.api import DownloadRequest

    dag = airflow_api[2]
    fields = DownloadRequest.model_json_schema()["properties"]
    rules = ("type", "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum")
    for name in dag.params:
        param = dag.params.get_param(name).schema
        assert {k: fields[name].get(k) for k in rules} == {k: param.get(k) for k in rules}, name


# --- fuzzing against the app's own OpenAPI (schemathesis) ---------------------------------------
import schemathesis  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from dataset_ops.apify.api import create_app as _plugin_app  # noqa: E402

#: The plugin's OpenAPI (the same document the API server serves at /dataset-ops/openapi.json,
#: see test_openapi_docs_describe_the_routes); schemathesis' pytest loader from a fixture does
#: not work with pytest 9 (it sets ``Function._nodeid``), so the schema is built at import.
FUZZED = schemathesis.openapi.from_dict(_plugin_app().openapi()).include(path_regex="^/apify/")


@pytest.fixture(scope="module")
def served_api(airflow_api):
    """Airflow's API app (the plugin mounted) served by uvicorn on 127.0.0.1: real HTTP."""
    with served(airflow_api[0].app) as url:
        yield url


@pytest.fixture(scope="module")
def fuzz_dag_runs(airflow_api, tokens):
    """The DAG runs the fuzzed download route creates are deleted afterwards."""
    client = airflow_api[0]
    before = _dag_run_ids(client, tokens["admin"])
    yield
    _delete_dag_runs(client, tokens["admin"], keep=before)


@FUZZED.parametrize()
@settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzing_the_openapi_finds_no_fault(case, served_api, tokens, airflow_api, fuzz_dag_runs):
    """schemathesis' generated requests (valid and invalid, every operation, 50 examples each,
    derandomized) with an admin token, checked by all its default checks: no 5xx, every status
    code and response body as documented, valid data accepted, invalid data refused with a 4xx,
    405 with a correct ``Allow``. The example run id has a dataset, so the 200 paths run too."""
    root = airflow_api[1]
    if not (root / "datasets" / "facebook" / RUN_A / "manifest.json").exists():
        write_dataset(root, RUN_A)  # the id the schema gives as its example
    _short_wait(case.query)
    case.call_and_validate(base_url=f"{served_api}/dataset-ops", headers=tokens["admin"])


def _short_wait(query: dict | None) -> None:
    """A generated ``wait_seconds`` that the download route accepts becomes at most 1 s (no
    scheduler runs here, so a valid wait is always waited out); invalid ones stay as generated."""
    try:
        wait = float((query or {}).get("wait_seconds", "nan"))
    except (TypeError, ValueError):
        return
    if 1 < wait <= 1800:
        query["wait_seconds"] = 1


# --- the old service's folders, paths, defaults and metrics ------------------------------------
SEED = "/api/v1/apify/facebook"


def write_old_service_dataset(root: Path, run: str, *, days_ago: int = 45) -> dict[str, int]:
    """A folder as the old service wrote it (seed 000's layout): no manifest, its own media
    names, a CSV whose quoted text holds a newline, a JSONL with a blank last line, reports in
    PDF and JSON; every file dated ``days_ago``. {relative path: bytes}."""
    folder = root / "datasets" / "facebook" / run
    files = {
        f"{run}.csv": (
            'ad_archive_id,page_name,body\n1,"Tienda, S.A.","Oferta\nsolo hoy"\n2,Otra,hola\n3,X,""\n'
        ),
        f"{run}.jsonl": '{"ad_archive_id": "1"}\n{"ad_archive_id": "2"}\n{"ad_archive_id": "3"}\n\n',
        "media/imagen1.jpg": "j" * 900,
        "media/imagen2.png": "p" * 400,
        "media/video1.mp4": "v" * 3000,
        "video_frames/video1_frame_0001.jpg": "f" * 100,
        f"reports/Reporte_Analisis_Completo_{run}.pdf": "%PDF-1.4",
        f"reports/{run}_analysis_complete.json": "{}",
    }
    stamp = (datetime.now(UTC) - timedelta(days=days_ago)).timestamp()
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        os.utime(path, (stamp, stamp))
    return {rel: len(text.encode()) for rel, text in files.items()}


def test_a_folder_of_the_old_service_is_listed_inspected_and_deleted(api):
    client, root, headers = api
    written = write_old_service_dataset(root, RUN_C)
    listing = client.get(f"{BASE}/runs/list", headers=headers["viewer"]).json()
    [entry] = listing["runs"]
    assert (entry["run_id"], entry["has_csv"], entry["has_jsonl"], entry["has_media"]) == (
        RUN_C,
        True,
        True,
        True,
    )
    assert (entry["media_count"], entry["size_bytes"], entry["completeness"]) == (
        3,
        sum(written.values()),
        "unknown",
    )
    details = client.get(f"{BASE}/runs/{RUN_C}", headers=headers["viewer"]).json()
    files = details["files"]
    assert files["csv"]["rows"] == 3 and files["jsonl"]["lines"] == 3  # counted in the files
    assert (files["media"]["images"], files["media"]["videos"], files["media"]["failed"]) == (2, 1, 0)
    assert files["video_frames"]["count"] == 1
    assert sorted(files["reports"]["files"]) == sorted(
        [f"Reporte_Analisis_Completo_{RUN_C}.pdf", f"{RUN_C}_analysis_complete.json"]
    )
    created = datetime.fromisoformat(details["created_at"])
    assert abs((datetime.now(UTC) - created) - timedelta(days=45)) < timedelta(minutes=5)

    report = client.post(
        f"{BASE}/runs/cleanup",
        json={"days_old": 30, "keep_recent": 0, "dry_run": True},
        headers=headers["editor"],
    ).json()
    assert [(r["run_id"], r["days_old"]) for r in report["deleted_runs"]] == [(RUN_C, 45)]
    resp = client.delete(f"{BASE}/runs/{RUN_C}", headers=headers["editor"])
    assert resp.status_code == 200 and resp.json()["freed_space_bytes"] == sum(written.values()), resp.text
    assert not (root / "datasets" / "facebook" / RUN_C).exists()


def test_the_old_paths_answer_with_the_old_defaults(api):
    """``/api/v1/apify/facebook/...`` on the API server: the same routes behind the same
    permissions; dates without an offset; a cleanup without ``dry_run`` deletes."""
    client, root, headers = api
    write_dataset(root, RUN_A, created=datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
    write_dataset(root, RUN_B, created=datetime.now(UTC) - timedelta(days=90))
    assert client.get(f"{SEED}/runs/list").status_code == 401
    assert client.delete(f"{SEED}/runs/{RUN_A}", headers=headers["viewer"]).status_code == 403
    listing = client.get(f"{SEED}/runs/list", headers=headers["viewer"]).json()
    assert [r["created_at"] for r in listing["runs"]][-1] == "2026-03-01T12:30:00"
    details = client.get(f"{SEED}/runs/{RUN_A}", headers=headers["viewer"]).json()
    assert (details["created_at"], details["last_modified"]) == ("2026-03-01T12:30:00", "2026-03-01T12:35:00")
    assert details["files"] == client.get(f"{BASE}/runs/{RUN_A}", headers=headers["viewer"]).json()["files"]
    assert client.get(f"{SEED}/runs/bad", headers=headers["viewer"]).status_code == 422

    report = client.post(
        f"{SEED}/runs/cleanup", json={"days_old": 30, "keep_recent": 0}, headers=headers["editor"]
    )
    assert report.status_code == 200, report.text
    assert report.json()["dry_run"] is False and report.json()["runs_deleted"] == 2
    assert report.json()["deleted_runs"][0]["created_at"].count("+") == 0
    assert client.get(f"{SEED}/runs/list", headers=headers["viewer"]).json()["total_runs"] == 0
    spec = client.get(f"{SEED}/openapi.json").json()
    assert set(spec["paths"]) == {
        "/runs/list",
        "/runs/{run_id}",
        "/runs/cleanup",
        "/storage/metrics",
        "/download-dataset-from-run",
    }


def test_storage_metrics_count_datasets_space_growth_and_what_was_freed(api):
    client, root, headers = api
    now = datetime.now(UTC)
    recent = sum(write_dataset(root, RUN_A, created=now - timedelta(days=2)).values())
    old = sum(write_dataset(root, RUN_B, created=now - timedelta(days=20)).values())
    older = sum(write_dataset(root, RUN_C, created=now - timedelta(days=100)).values())
    empty = client.get(f"{BASE}/storage/metrics", headers=headers["viewer"]).json()
    assert (empty["total_runs"], empty["total_size_bytes"]) == (3, recent + old + older)
    assert (empty["oldest_run_days"], empty["newest_run_days"]) == (100, 2)
    assert empty["growth_bytes_per_day"] == {"7d": round(recent / 7), "30d": round((recent + old) / 30)}
    assert empty["freed_space_bytes"] == {"7d": 0, "30d": 0} and empty["ledger_since"] is None
    assert empty["space_available_bytes"] > 0 and empty["space_total_bytes"] >= empty["space_available_bytes"]

    assert client.delete(f"{BASE}/runs/{RUN_B}", headers=headers["editor"]).status_code == 200
    body = {"days_old": 30, "keep_recent": 0, "dry_run": False}
    assert (
        client.post(f"{BASE}/runs/cleanup", json=body, headers=headers["editor"]).json()["runs_deleted"] == 1
    )
    after = client.get(f"{BASE}/storage/metrics", headers=headers["viewer"]).json()
    assert (after["total_runs"], after["total_size_bytes"]) == (1, recent)
    assert after["freed_space_bytes"] == {"7d": old + older, "30d": old + older}
    assert after["freed_space_bytes_total"] == old + older
    assert (after["deletions"], after["cleanups"]) == ({"7d": 2, "30d": 2}, {"7d": 1, "30d": 1})
    # growth counts what was created in the window even if deleted since
    assert after["growth_bytes_per_day"] == empty["growth_bytes_per_day"]
    assert client.get(f"{BASE}/storage/metrics").status_code == 401


# --- the download that answers when the dataset is there ----------------------------------------
PARAMS = {"download_media": True, "extract_video_frames": True, "frame_interval_seconds": 1.0}


def _wait_in_thread(url: str, body: dict, headers: dict, wait: float):
    """POST the download with ``wait_seconds`` in a thread; returns (thread, answer holder)."""
    import threading

    import requests

    answer: dict = {}

    def call():
        resp = requests.post(
            url, params={"wait_seconds": wait}, json=body, headers=headers, timeout=wait + 30
        )
        answer.update(status=resp.status_code, json=resp.json(), headers=resp.headers)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, answer


def _new_run(client, headers, known: set[str], timeout: float = 20) -> str:
    import time

    deadline = time.monotonic() + timeout
    while not (new := _dag_run_ids(client, headers) - known):
        assert time.monotonic() < deadline, "no DAG run was created"
        time.sleep(0.2)
    [run_id] = new
    return run_id


def test_a_stored_dataset_is_answered_at_once_without_a_dag_run(api, served_api):
    import requests

    client, root, headers = api
    sizes = write_dataset(root, RUN_A, params=PARAMS)
    runs = _dag_run_ids(client, headers["admin"])
    for base in (f"{served_api}{SEED}", f"{served_api}{BASE}"):
        resp = requests.post(
            f"{base}/download-dataset-from-run",
            params={} if SEED in base else {"wait_seconds": 5},
            json={"run_id": RUN_A},
            headers=headers["editor"],
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json() == {
            "status": "success",
            "run_id": RUN_A,
            "message": "Dataset already stored; nothing downloaded",
            "downloaded": {"csv": True, "jsonl": True, "media": True, "media_count": 3},
            "path": str(root / "datasets" / "facebook" / RUN_A),
            "size_bytes": sum(sizes.values()),
            "completeness": "complete",
            "dag_run_id": None,
            "dag_run_state": None,
        }
    assert _dag_run_ids(client, headers["admin"]) == runs


@pytest.mark.parametrize("outcome", ["success", "failed"])
def test_the_waiting_download_answers_with_the_dag_runs_outcome(api, served_api, outcome):
    """The DAG run is ended through the core API while the request waits (no scheduler here):
    success answers the stored dataset (the old service's answer), failure a 502 naming it."""
    client, root, headers = api
    sizes = write_dataset(root, RUN_A, params=PARAMS)
    runs = _dag_run_ids(client, headers["admin"])
    body = {"run_id": RUN_A, "force_download": True}
    try:
        thread, answer = _wait_in_thread(
            f"{served_api}{SEED}/download-dataset-from-run", body, headers["editor"], wait=60
        )
        run_id = _new_run(client, headers["admin"], runs)
        resp = client.patch(
            f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": outcome}, headers=headers["admin"]
        )
        assert resp.status_code == 200, resp.text
        thread.join(timeout=30)
        assert not thread.is_alive()
        if outcome == "success":
            assert answer["status"] == 200, answer
            assert answer["json"] | {"downloaded": None} == {
                "status": "success",
                "run_id": RUN_A,
                "message": "Dataset downloaded",
                "downloaded": None,
                "path": str(root / "datasets" / "facebook" / RUN_A),
                "size_bytes": sum(sizes.values()),
                "completeness": "complete",
                "dag_run_id": run_id,
                "dag_run_state": "success",
            }
        else:
            assert answer["status"] == 502, answer
            assert run_id in answer["json"]["detail"] and "failed" in answer["json"]["detail"]
    finally:
        _delete_dag_runs(client, headers["admin"], keep=runs)


def test_a_download_still_running_after_the_wait_is_a_202_to_follow(api, served_api):
    import requests

    client, root, headers = api
    runs = _dag_run_ids(client, headers["admin"])
    try:
        resp = requests.post(
            f"{served_api}{BASE}/download-dataset-from-run",
            params={"wait_seconds": 1.5},
            json={"run_id": RUN_A},
            headers=headers["editor"],
            timeout=30,
        )
        assert resp.status_code == 202, resp.text
        run = resp.json()
        assert run["state"] == "queued" and "still queued after 1.5 s" in run["detail"]
        from urllib.parse import quote

        assert (
            resp.headers["Location"] == f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}"
        )
        followed = client.get(resp.headers["Location"], headers=headers["viewer"])
        assert followed.status_code == 200 and followed.json()["conf"]["run_id"] == RUN_A
        for bad in (-1, 1801, "soon", "nan"):
            resp = requests.post(
                f"{served_api}{BASE}/download-dataset-from-run",
                params={"wait_seconds": bad},
                json={"run_id": RUN_A},
                headers=headers["editor"],
                timeout=30,
            )
            assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["query", "wait_seconds"], (
                bad
            )
        assert len(_dag_run_ids(client, headers["admin"]) - runs) == 1
    finally:
        _delete_dag_runs(client, headers["admin"], keep=runs)


def test_a_download_on_a_paused_dag_is_not_waited_for(api, served_api):
    import time

    import requests

    client, _, headers = api
    runs = _dag_run_ids(client, headers["admin"])
    assert (
        client.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": True}, headers=headers["admin"]).status_code
        == 200
    )
    try:
        started = time.monotonic()
        resp = requests.post(
            f"{served_api}{SEED}/download-dataset-from-run",
            json={"run_id": RUN_A},
            headers=headers["editor"],
            timeout=60,
        )
        assert resp.status_code == 202, resp.text
        assert "is paused" in resp.json()["detail"] and resp.json()["state"] == "queued"
        assert time.monotonic() - started < 30  # not the 600 s of the old path's default wait
    finally:
        client.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}, headers=headers["admin"])
        _delete_dag_runs(client, headers["admin"], keep=runs)
