"""``apify_dataset_download`` with ``dag.test()`` against the local Apify API server
(tests/helpers/apify_server.py: the 61 real ad items, media rewritten to it, real JPEG/PNG/MP4s).

A run lays out the dataset with counts and checksums that match what the server served; a second
run fetches nothing; media answering 404/500/timeouts end as a partial dataset listing them, and
a rerun fetches only those; a RUNNING run is waited for, a FAILED one fails the DAG run with its
status; a run id like ``../../etc`` never reaches a task; an S3 root gets the same layout."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from urllib.parse import urlsplit

import cv2
import pytest
from helpers.apify_server import RUN_ID, ApifyServer, apify_id
from helpers.dags import load_dag

from dataset_ops.apify.inventory import get_dataset
from dataset_ops.apify.media import media_refs
from dataset_ops.storage import open_storage
from dataset_ops.storage.manifest import read_manifest, verify

pytestmark = pytest.mark.integration

PREFIX = f"datasets/facebook/{RUN_ID}"
CONF = {"run_id": RUN_ID, "frame_interval_seconds": 1.0}


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


@pytest.fixture
def apify(monkeypatch):
    with ApifyServer() as server:
        conn = {
            "conn_type": "http",
            "host": server.api_url,
            "password": server.token,
            "extra": {"media_read_timeout": 1.0, "media_backoff_factor": 0.01, "media_retries": 1},
        }
        monkeypatch.setenv("AIRFLOW_CONN_APIFY_DEFAULT", json.dumps(conn))
        yield server


@pytest.fixture
def root(tmp_path, monkeypatch):
    path = tmp_path / "storage"
    monkeypatch.setenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", str(path))
    return path


def _media_requests(server) -> int:
    return sum(1 for path, _, _ in server.requests if path.startswith("/media/"))


def _expected_media(server) -> dict[str, object]:
    refs = {}
    for item in server.items:
        for ref in media_refs(item):
            refs.setdefault(ref.url, ref)
    return {ref.name: ref for ref in refs.values()}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_lays_out_the_dataset_and_a_second_run_fetches_nothing(apify, root):
    dag = load_dag("apify_dataset_download", retries=0)
    run = dag.test(run_conf=CONF)
    assert str(run.state) == "success", _states(run)
    folder = root / PREFIX
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["status"] == "complete", manifest["problems"]
    assert not (folder / ".download.lock").exists()  # the claim ends with the download

    # items: every served item, in order, in both files
    lines = (folder / f"{RUN_ID}.jsonl").read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == apify.items
    with open(folder / f"{RUN_ID}.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["adArchiveID"] for r in rows] == [str(i["adArchiveID"]) for i in apify.items]
    counts = manifest["extra"]["counts"]
    assert counts["items"] == counts["csv_rows"] == len(apify.items) == 61
    listed = {f["path"]: f for f in manifest["files"]}
    for kind in ("jsonl", "csv"):
        entry = listed[f"{RUN_ID}.{kind}"]
        assert entry["sha256"] == _sha(folder / entry["path"]) and entry["rows"] == 61
        assert entry["bytes"] == (folder / entry["path"]).stat().st_size
    assert manifest["producer"] == {"dag_id": "apify_dataset_download", "run_id": run.run_id}
    assert manifest["format_version"] == 1 and manifest["dataset"] == PREFIX
    # the one manifest type lists every file of the folder (itself aside), each as stored
    stored = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert set(listed) == stored - {"_manifest.json"}
    storage = open_storage(str(root))
    assert verify(storage, read_manifest(storage, PREFIX), checksums=True) == []

    # media: exactly the expected files, each the bytes the server has, checksums recorded
    expected = _expected_media(apify)
    on_disk = {p.name for p in (folder / "media").iterdir()}
    assert on_disk == set(expected)
    for entry in manifest["extra"]["media"]:
        data = (folder / "media" / entry["name"]).read_bytes()
        assert data == apify.media[urlsplit(entry["url"]).path]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    videos = [n for n, r in expected.items() if r.kind == "video"]
    assert manifest["extra"]["counts"]["videos"] == len(videos) > 0
    assert manifest["extra"]["counts"]["images"] == len(expected) - len(videos)

    # frames: one per second of each video, named from it, decodable, checksummed
    frames = {p.name for p in (folder / "video_frames").iterdir()}
    total = 0
    for entry in manifest["extra"]["video_frames"]:
        cap = cv2.VideoCapture(str(folder / "media" / entry["video"]))
        duration = cap.get(cv2.CAP_PROP_FRAME_COUNT) / cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        assert entry["status"] == "extracted"
        assert len(entry["frames"]) == math.ceil(duration - 1e-9)
        for frame in entry["frames"]:
            assert frame["name"] in frames and frame["name"].startswith(entry["video"].rsplit(".", 1)[0])
            assert frame["sha256"] == _sha(folder / "video_frames" / frame["name"])
        total += len(entry["frames"])
    assert total == len(frames) == manifest["extra"]["counts"]["video_frames"]
    report = folder / "reports" / "download_report.json"
    assert listed["reports/download_report.json"]["sha256"] == _sha(report)
    assert json.loads(report.read_text())["completeness"] == "complete"

    # the inventory sees the same dataset
    summary = get_dataset(open_storage(str(root)), RUN_ID).summary()
    assert summary["media_count"] == len(expected) and summary["has_csv"] and summary["has_jsonl"]

    # a second run: the dataset is complete, nothing is fetched again
    seen = len(apify.requests)
    again = dag.test(run_conf=CONF)
    assert str(again.state) == "success"
    states = _states(again)
    assert states["download_items"] == states["download_media"] == "skipped", states
    assert all(path.startswith("/v2/actor-runs/") for path, _, _ in apify.requests[seen:])
    assert json.loads((folder / "_manifest.json").read_text())["extra"]["media"] == manifest["extra"]["media"]


def test_failed_media_leave_a_partial_dataset_that_a_rerun_completes(apify, root):
    expected = _expected_media(apify)
    images = [r for r in expected.values() if r.kind == "image"]
    missing, broken, slow = (urlsplit(r.url).path for r in images[:3])
    apify.fault(missing, "status", status=404, times=None)
    apify.fault(broken, "status", status=500, times=None)
    apify.fault(slow, "timeout", seconds=3.0, times=None)
    dag = load_dag("apify_dataset_download", retries=0)
    run = dag.test(run_conf=CONF | {"extract_video_frames": False})
    assert str(run.state) == "success", _states(run)
    folder = root / PREFIX
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["status"] == "partial"
    media = manifest["extra"]["media"]
    failed = {urlsplit(m["url"]).path: m["error"] for m in media if m["status"] == "failed"}
    assert set(failed) == {missing, broken, slow}
    assert "404" in failed[missing] and "500" in failed[broken] and "timed out" in failed[slow].lower()
    assert manifest["extra"]["counts"]["media_failed"] == 3
    assert len(list((folder / "media").iterdir())) == len(expected) - 3
    report = json.loads((folder / "reports" / "download_report.json").read_text())
    assert {urlsplit(m["url"]).path for m in report["failed_media"]} == set(failed)

    apify.clear_faults()
    before = len(apify.requests)
    again = dag.test(run_conf=CONF | {"extract_video_frames": False})
    assert str(again.state) == "success"
    # only the three that failed (a stalled request of the first run may log its end late)
    assert {p for p, _, _ in apify.requests[before:] if p.startswith("/media/")} == {missing, broken, slow}
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["extra"]["counts"]["media_failed"] == 0
    assert len(list((folder / "media").iterdir())) == len(expected)


def test_a_running_run_is_waited_for_and_a_failed_run_fails_with_its_status(apify, root, capfd):
    running, failed = apify_id("running"), apify_id("failed")
    apify.add_run(running, status="RUNNING", finish_after=1.5)
    apify.add_run(failed, status="FAILED")
    dag = load_dag("apify_dataset_download", retries=0)
    dag.get_task("wait_for_run").poke_interval = 0.5
    run = dag.test(run_conf={"run_id": running, "download_media": False})
    assert str(run.state) == "success", _states(run)
    assert (root / f"datasets/facebook/{running}/{running}.csv").is_file()

    bad = dag.test(run_conf={"run_id": failed})
    assert str(bad.state) == "failed"
    assert _states(bad)["wait_for_run"] == "failed"
    assert f"Apify actor run {failed} ended with status FAILED" in capfd.readouterr().out
    assert not (root / f"datasets/facebook/{failed}").exists()


@pytest.mark.parametrize("bad", ["../../etc", "HG7ML7M8z78YcAPEB\n", "HG7ML7M8z78YcAPE/"])
def test_a_run_id_that_is_not_an_apify_id_never_reaches_a_task(apify, root, bad):
    from airflow.sdk.definitions.param import ParamValidationError

    dag = load_dag("apify_dataset_download", retries=0)
    with pytest.raises(ParamValidationError):
        dag.test(run_conf={"run_id": bad})
    with pytest.raises(ValueError, match="not an Apify run id"):
        get_dataset(open_storage(str(root)), bad)
    assert not root.exists() or not any(root.rglob("*"))


def test_an_s3_root_gets_the_same_layout(apify, s3_bucket, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", f"s3://{s3_bucket}/ads")
    dag = load_dag("apify_dataset_download", retries=0)
    run = dag.test(run_conf=CONF)
    assert str(run.state) == "success", _states(run)
    storage = open_storage(f"s3://{s3_bucket}/ads")
    with storage.open_read(f"{PREFIX}/_manifest.json") as fh:
        manifest = json.loads(fh.read())
    assert manifest["status"] == "complete", manifest["problems"]
    keys = set(storage.list(PREFIX + "/"))
    assert {f"{PREFIX}/media/{m['name']}" for m in manifest["extra"]["media"]} <= keys
    videos = manifest["extra"]["video_frames"]
    frames = {f"{PREFIX}/video_frames/{f['name']}" for v in videos for f in v["frames"]}
    assert frames and frames <= keys
    with storage.open_read(f"{PREFIX}/{RUN_ID}.jsonl") as fh:
        jsonl = next(f for f in manifest["files"] if f["path"] == f"{RUN_ID}.jsonl")
        assert hashlib.sha256(fh.read()).hexdigest() == jsonl["sha256"]
    assert verify(storage, read_manifest(storage, PREFIX), checksums=True) == []
    detail = get_dataset(storage, RUN_ID).details()
    assert detail["files"]["jsonl"]["lines"] == 61 and detail["files"]["video_frames"]["count"] == len(frames)

    before = _media_requests(apify)
    again = dag.test(run_conf=CONF | {"force_download": False})
    assert str(again.state) == "success" and _media_requests(apify) == before


def test_an_unreadable_video_is_reported_and_the_other_videos_get_their_frames(apify, root):
    videos = [urlsplit(r.url).path for r in _expected_media(apify).values() if r.kind == "video"]
    apify.media[videos[0]] = b"\x00\x00\x00\x18ftypmp42 truncated, not a video"
    dag = load_dag("apify_dataset_download", retries=0)
    run = dag.test(run_conf=CONF)
    assert str(run.state) == "success", _states(run)
    manifest = json.loads((root / PREFIX / "_manifest.json").read_text())
    assert manifest["status"] == "partial"
    frames = {v["video"]: v for v in manifest["extra"]["video_frames"]}
    broken = next(m["name"] for m in manifest["extra"]["media"] if urlsplit(m["url"]).path == videos[0])
    assert frames[broken]["status"] == "failed" and broken in frames[broken]["error"]
    assert frames[broken]["frames"] == [] and manifest["extra"]["counts"]["videos_failed"] == 1
    good = [v for name, v in frames.items() if name != broken]
    assert len(good) == len(videos) - 1 and all(v["status"] == "extracted" and v["frames"] for v in good)
    assert any(broken in p for p in manifest["problems"])


def test_a_second_download_of_the_same_run_waits_for_the_first(apify, root):
    from dataset_ops.apify.tasks import DownloadInProgress, prepare
    from dataset_ops.settings import ApifyDownloadParams

    storage = open_storage(str(root))
    params = ApifyDownloadParams(download_media=True, force_download=True, extract_video_frames=True)
    run = {"run_id": RUN_ID, "dataset_id": "WkzbQMuFYuamGv3YF", "status": "SUCCEEDED"}
    prepare(storage, run, params, "manual__first")
    with pytest.raises(DownloadInProgress, match="manual__first"):
        prepare(storage, run, params, "manual__second")
    # the same DAG run (a retry of its prepare task) goes on
    assert prepare(storage, run, params, "manual__first")["skip"] is False


def test_racing_downloads_of_one_dataset_let_exactly_one_through(apify, root):
    from concurrent.futures import ThreadPoolExecutor

    from dataset_ops.apify.tasks import DownloadInProgress, prepare
    from dataset_ops.settings import ApifyDownloadParams

    storage = open_storage(str(root))
    params = ApifyDownloadParams(download_media=True, force_download=False, extract_video_frames=True)
    run = {"run_id": RUN_ID, "dataset_id": "WkzbQMuFYuamGv3YF", "status": "SUCCEEDED"}

    def start(i: int) -> str:
        try:
            prepare(storage, run, params, f"manual__{i}")
            return "started"
        except DownloadInProgress:
            return "refused"

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(start, range(6)))
    assert outcomes.count("started") == 1 and outcomes.count("refused") == 5


def test_a_new_frame_interval_replaces_the_old_frames(apify, root):
    dag = load_dag("apify_dataset_download", retries=0)
    assert str(dag.test(run_conf=CONF).state) == "success"
    run = dag.test(run_conf=CONF | {"frame_interval_seconds": 2.0})
    assert str(run.state) == "success"
    manifest = json.loads((root / PREFIX / "_manifest.json").read_text())
    listed = {f["name"] for v in manifest["extra"]["video_frames"] for f in v["frames"]}
    assert {p.name for p in (root / PREFIX / "video_frames").iterdir()} == listed
    assert all(v["interval_seconds"] == 2.0 for v in manifest["extra"]["video_frames"])
    detail = get_dataset(open_storage(str(root)), RUN_ID).details()
    assert (
        detail["files"]["video_frames"]["count"] == manifest["extra"]["counts"]["video_frames"] == len(listed)
    )
