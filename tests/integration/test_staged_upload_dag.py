"""``staged_upload_validation`` end to end with ``dag.test()`` on the tests' S3 server (and a local
root): one run over a mixed batch of real files promotes the valid ones (listed in
``fresh/_manifest.json`` with the run as producer) and quarantines the rest; a manual run
re-validates a quarantined file with relaxed rules."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.dags import load_dag
from helpers.imdb_data import SHARED_DATA

from dataset_ops.staging.status import UploadState, UploadStatus, list_statuses, write_status
from dataset_ops.staging.tasks import read_fresh_manifest
from dataset_ops.storage import file_sha256, open_storage, read_json
from dataset_ops.storage.manifest import verify

pytestmark = pytest.mark.integration

ML = SHARED_DATA / "ml"
REPO = Path(__file__).resolve().parents[2]
CSV = SHARED_DATA / "messy_csv"


def _dag():
    return load_dag("staged_upload_validation", retries=0)


def _states(run) -> dict[str, str]:
    return {ti.rendered_map_index or ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _fresh_events() -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count())
            .select_from(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "x-dataset-ops://staging/fresh")
        )


def test_mixed_batch_is_promoted_or_quarantined_then_a_retry_passes(s3_bucket, monkeypatch, tmp_path):
    root = f"s3://{s3_bucket}/training-data"
    monkeypatch.setenv("AIRFLOW_VAR_STAGING_ROOT", root)
    area = open_storage(root)
    newsgroups = gzip.decompress((ML / "newsgroups6_train.jsonl.gz").read_bytes())
    gsm8k = (ML / "gsm8k_train.jsonl").read_bytes()
    batch = {  # name: (content, data type, expected state)
        "gsm8k/train.jsonl": (gsm8k, "training_jsonl", "fresh"),
        "newsgroups/train.jsonl": (newsgroups, "newsgroups_jsonl", "fresh"),
        "tweets/airline.csv": ((CSV / "Tweets.airline-sentiment.csv").read_bytes(), "tweets_csv", "fresh"),
        "tweets/airline-mangled.csv": (
            (CSV / "Tweets.airline-sentiment.invalid-utf8.csv").read_bytes(),
            "tweets_csv",
            "failed",
        ),
        "empty.jsonl": (b"", "training_jsonl", "failed"),
        "not-objects.jsonl": (gsm8k.split(b"\n", 3)[0] + b"\n[1, 2]\n", "training_jsonl", "failed"),
        "few.jsonl": (b"".join(gsm8k.splitlines(keepends=True)[:3]), "training_jsonl", "failed"),
    }
    # The uploader itself sends one file (one PutObject below 16 MiB, sha256 recorded); the rest
    # land directly, as from `aws s3 cp`.
    from dataset_ops.staging.upload import upload_file

    uploaded = upload_file(
        ML / "gsm8k_train.jsonl",
        f"{root}/uploads/",
        name="gsm8k/train.jsonl",
        data_type="training_jsonl",
        progress=False,
    )
    assert uploaded.state == "uploaded" and uploaded.sha256 == hashlib.sha256(gsm8k).hexdigest()
    for name, (content, data_type, _) in batch.items():
        if name == "gsm8k/train.jsonl":
            continue
        area.write_stream(f"uploads/{name}", io.BytesIO(content))
        write_status(
            area,
            UploadStatus(
                name=name,
                state=UploadState.UPLOADED,
                data_type=data_type,
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
            ),
        )
    events_before = _fresh_events()

    # One scheduled-style run; min_records=10 for this run makes few.jsonl (3 records) fail.
    run = _dag().test(run_conf={"rule_overrides": {"min_records": 10}})
    states = _states(run)
    assert {name: states[name] for name in batch} == {name: "success" for name in batch}
    statuses = {s.name: s for s in list_statuses(area)}
    assert {n: s.state for n, s in statuses.items()} == {n: v[2] for n, v in batch.items()}
    assert list(area.list("uploads")) == []

    for name, (content, _, expected) in batch.items():
        if expected == "fresh":
            assert file_sha256(area, f"fresh/{name}") == hashlib.sha256(content).hexdigest()
            assert not area.exists(f"failed/{name}")
        else:
            assert area.exists(f"failed/{name}") and not area.exists(f"fresh/{name}")
            assert read_json(area, f"failed/{name}.report.json")["valid"] is False
    assert statuses["gsm8k/train.jsonl"].records == 7_473
    assert statuses["newsgroups/train.jsonl"].records == 3_441
    assert statuses["tweets/airline.csv"].records == 14_640
    first_bad = (CSV / "Tweets.airline-sentiment.invalid-utf8.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError) as exc:
        first_bad.decode("utf-8")
    mangled = read_json(area, "failed/tweets/airline-mangled.csv.report.json")
    first_utf8 = next(e for e in mangled["errors"] if e["code"] == "invalid_utf8")
    assert first_utf8["offset"] == exc.value.start  # the first bad byte, found independently
    assert statuses["tweets/airline-mangled.csv"].errors == mangled["errors_found"] == 3
    assert _fresh_events() - events_before == 3
    assert states["summary"] == "success"
    # fresh/_manifest.json lists the three promoted files, written by this run
    manifest = read_fresh_manifest(area)
    records = {"gsm8k/train.jsonl": 7_473, "newsgroups/train.jsonl": 3_441, "tweets/airline.csv": 14_640}
    assert {f.path: (f.bytes, f.sha256, f.rows) for f in manifest.files} == {
        name: (len(batch[name][0]), hashlib.sha256(batch[name][0]).hexdigest(), rows)
        for name, rows in records.items()
    }
    assert manifest.producer == {"dag_id": "staged_upload_validation", "run_id": run.run_id}
    assert manifest.status == "complete" and verify(area, manifest, checksums=True) == []

    # Manual run: re-validate the quarantined few.jsonl with the rule set's own min_records (1).
    run = _dag().test(run_conf={"retry_failed": ["few.jsonl"]})
    status = {s.name: s for s in list_statuses(area)}["few.jsonl"]
    assert status.state == "fresh" and status.records == 3
    assert [h[0] for h in status.history] == ["uploaded", "validating", "failed", "validating"]
    assert not area.exists("failed/few.jsonl") and not area.exists("failed/few.jsonl.report.json")
    assert _fresh_events() - events_before == 4
    manifest = read_fresh_manifest(area)
    assert manifest.file("few.jsonl").rows == 3 and len(manifest.files) == 4
    assert manifest.extra["files"]["few.jsonl"]["producer"]["run_id"] == run.run_id
    assert verify(area, manifest, checksums=True) == []


def _fresh_event_extras() -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent.extra)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri == "x-dataset-ops://staging/fresh")
                .order_by(AssetEvent.id)
            )
        )


def _run_cli(module: str, *args: str, root: str) -> subprocess.CompletedProcess:
    """`python -m <module> ARGS` with AIRFLOW_VAR_STAGING_ROOT=<root>, as the README shows."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), "AIRFLOW_VAR_STAGING_ROOT": root}
    env.pop("AIRFLOW__LOGGING__LOGGING_LEVEL")  # the tests' INFO; a user's shell has none
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_same_name_keeps_versions_and_the_same_content_is_a_no_op(backend, request, monkeypatch, tmp_path):
    """Upload A as x.jsonl -> fresh; different B as x.jsonl -> fresh/x.v2.jsonl beside it, named
    in the status, the listing and the Asset event; A again -> duplicate, no event; two different
    bad files of one name -> both kept with both reports. The uploads go through
    `python -m dataset_ops.upload` exactly as the README shows (on the local root: the embedded
    default, no S3)."""
    if backend == "s3":
        root = f"s3://{request.getfixturevalue('s3_bucket')}/training-data"
    else:
        root = str(tmp_path / "staging")
    monkeypatch.setenv("AIRFLOW_VAR_STAGING_ROOT", root)
    area = open_storage(root)
    gsm8k = (ML / "gsm8k_train.jsonl").read_bytes()
    versions = {
        "a": b"".join(gsm8k.splitlines(keepends=True)[:50]),
        "b": b"".join(gsm8k.splitlines(keepends=True)[50:120]),
        "bad1": gsm8k.split(b"\n", 3)[0] + b"\n[1, 2]\n",
        "bad2": gsm8k.split(b"\n", 3)[0] + b'\n{"question": \n',
    }
    files = {}
    for label, data in versions.items():
        (tmp_path / label).mkdir()
        files[label] = tmp_path / label / "x.jsonl"
        files[label].write_bytes(data)

    def upload_and_validate(label: str) -> dict:
        done = _run_cli("dataset_ops.upload", str(files[label]), "--data-type", "training_jsonl", root=root)
        assert done.returncode == 0, done.stderr
        run = _dag().test()
        assert _states(run)["x.jsonl"] == "success"
        return run.get_task_instance("summary").xcom_pull(task_ids="summary")

    events = len(_fresh_event_extras())
    assert upload_and_validate("a")["fresh"] == ["x.jsonl"]
    summary = upload_and_validate("b")
    assert summary["fresh"] == ["x.jsonl"]
    with area.open_read("fresh/x.jsonl") as fh:
        assert fh.read() == versions["a"]
    with area.open_read("fresh/x.v2.jsonl") as fh:
        assert fh.read() == versions["b"]
    status = {s.name: s for s in list_statuses(area)}["x.jsonl"]
    assert (status.state, status.version, status.key) == ("fresh", 2, "fresh/x.v2.jsonl")
    extras = _fresh_event_extras()[events:]
    assert [(e["name"], e["version"], e["key"]) for e in extras] == [
        ("x.jsonl", 1, "fresh/x.jsonl"),
        ("x.jsonl", 2, "fresh/x.v2.jsonl"),
    ]
    assert extras[1]["uri"] == area.uri("fresh/x.v2.jsonl")
    assert extras[1]["sha256"] == hashlib.sha256(versions["b"]).hexdigest()
    assert extras[1]["records"] == 70 and extras[1]["manifest"] == area.uri("fresh/_manifest.json")
    listed = read_json(area, "fresh/_manifest.json")
    assert [(f["path"], f["rows"]) for f in listed["files"]] == [("x.jsonl", 50), ("x.v2.jsonl", 70)]

    summary = upload_and_validate("a")  # the same bytes again
    assert summary["duplicates"] == {"x.jsonl": "fresh/x.jsonl"} and summary["fresh"] == []
    assert len(_fresh_event_extras()) == events + 2  # no event: no new data
    assert read_json(area, "fresh/_manifest.json") == listed  # nor a manifest entry
    assert sorted(area.list("fresh")) == ["fresh/_manifest.json", "fresh/x.jsonl", "fresh/x.v2.jsonl"]
    assert list(area.list("uploads")) == []

    upload_and_validate("bad1")
    upload_and_validate("bad2")
    assert sorted(area.list("failed")) == [
        "failed/x.jsonl",
        "failed/x.jsonl.report.json",
        "failed/x.v2.jsonl",
        "failed/x.v2.jsonl.report.json",
    ]
    for key, label in (("failed/x.jsonl", "bad1"), ("failed/x.v2.jsonl", "bad2")):
        assert file_sha256(area, key) == hashlib.sha256(versions[label]).hexdigest()
        assert read_json(area, f"{key}.report.json")["sha256"] == hashlib.sha256(versions[label]).hexdigest()

    listing = _run_cli("dataset_ops.staging", "list", root=root)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split()[:4] for line in listing.stdout.splitlines()]
    assert rows == [
        ["fresh", "x.jsonl", "v1", "fresh/x.jsonl"],
        ["fresh", "x.jsonl", "v2", "fresh/x.v2.jsonl"],
        ["failed", "x.jsonl", "v1", "failed/x.jsonl"],
        ["failed", "x.jsonl", "v2", "failed/x.v2.jsonl"],
    ]
    checked = _run_cli("dataset_ops.staging", "verify", "--checksums", root=root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("fresh/_manifest.json: 2 files")
