"""The steps of the ``apify_dataset_download`` DAG: one function per task, XCom-sized results.

The dataset of a run lives in the storage (local folder or S3, :mod:`dataset_ops.storage`) under
``datasets/facebook/{run_id}/`` (:mod:`dataset_ops.apify.inventory`)::

    {run_id}.jsonl  {run_id}.csv  media/  video_frames/  reports/download_report.json  _manifest.json

Each step works in a :func:`dataset_workspace`: with a local storage root that is the dataset folder
itself (files are written under temporary names and renamed, so a reader never sees half a
file); with S3 it is a temporary local folder whose finished files are uploaded, so any worker
can run any step and nothing is shared on local disk. The manifest is read at the start of each
step and rewritten at its end, after the files it lists; it says ``in_progress`` until
:func:`finalize` decides ``complete`` (everything requested is there) or ``partial`` (some media
or frames failed, or a step failed), and a rerun of a partial dataset fetches only what is
missing.

``_manifest.json`` is the suite's one manifest type (:mod:`dataset_ops.storage.manifest`: files
with bytes, sha256 and rows, producer DAG and run, created_at, status, problems); the dataset's
own fields are in its ``extra`` (sizes in bytes, dates UTC ISO 8601)::

    {"run_id", "dataset_id", "run": {"status", "finished_at"},
     "params": {download_media, extract_video_frames, frame_interval_seconds},
     "download": {"dag_run_id", "started_at", "finished_at"},
     "counts": {"items", "csv_rows", "jsonl_lines", "columns", "images", "videos", "media_failed",
                "video_frames", "videos_failed"},
     "media": [{name, url, kind, ad_id, status, bytes, sha256, content_type, error, source}],
     "video_frames": [{video, status, interval_seconds, frames: [{name, seconds, bytes, sha256}], error}]}

The file list holds ``{run_id}.jsonl`` and ``{run_id}.csv`` (rows: the items), every media file
downloaded (``media/<name>``), every frame (``video_frames/<name>``) and the report. Datasets of
earlier versions carry ``manifest.json`` instead; it is read through
:func:`dataset_ops.apify.inventory.legacy_manifest` and replaced by ``_manifest.json`` when a
download resumes them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from dataset_ops.apify.download import sha256_file
from dataset_ops.apify.inventory import (
    COMPLETE,
    DAG_ID,
    FRAMES,
    IN_PROGRESS,
    LEGACY_MANIFEST,
    MEDIA,
    PARTIAL,
    REPORTS,
    STALE_IN_PROGRESS,
    dataset_prefix,
    read_dataset_manifest,
)
from dataset_ops.storage import read_json
from dataset_ops.storage.manifest import Manifest, ManifestFile, manifest_key, utc_now, write_manifest
from dataset_ops.storage.workspace import FolderWorkspace

if TYPE_CHECKING:
    from dataset_ops.settings import ApifyDownloadParams
    from dataset_ops.storage import Storage

log = logging.getLogger(__name__)
REPORT_NAME = "download_report.json"
_OK = ("downloaded", "present")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dataset_workspace(storage: Storage, run_id: str) -> FolderWorkspace:
    """The :class:`~dataset_ops.storage.workspace.FolderWorkspace` of the dataset of ``run_id``."""
    return FolderWorkspace(storage, dataset_prefix(run_id))


def read_manifest(storage: Storage, run_id: str) -> Manifest | None:
    """The dataset's manifest (``_manifest.json``, else a legacy ``manifest.json``; None when
    it has neither). :raises ManifestError: unreadable."""
    return read_dataset_manifest(storage, run_id)


def save_manifest(storage: Storage, run_id: str, manifest: Manifest) -> Manifest:
    """Write the manifest (``updated_at`` now) to ``datasets/facebook/{run_id}/_manifest.json``;
    returns it."""
    manifest.dataset = dataset_prefix(run_id)
    return write_manifest(storage, manifest)


def _replace_files(manifest: Manifest, folder: str, entries: list[ManifestFile]) -> None:
    """The file list's entries below ``folder/`` become ``entries``."""
    manifest.files = [f for f in manifest.files if not f.path.startswith(folder + "/")] + entries


def satisfies(manifest: Manifest | None, params: ApifyDownloadParams) -> bool:
    """Whether a stored dataset already holds everything ``params`` ask for: complete, with
    media if asked, and with frames at the same interval if asked.

    :param params: the run's Params (``settings.ApifyDownloadParams.from_params``)."""
    if manifest is None or not manifest.complete:
        return False
    had = manifest.extra.get("params") or {}
    if params.download_media and not had.get("download_media"):
        return False
    if params.frames_wanted:
        return bool(had.get("extract_video_frames")) and float(had.get("frame_interval_seconds", 0)) == float(
            params.frame_interval_seconds
        )
    return True


class DownloadInProgress(RuntimeError):
    """Another DAG run is downloading the same dataset right now."""


#: The claim a download holds on its dataset folder (created only if absent, removed at the end).
LOCK = ".download.lock"


def claim_download(storage: Storage, run_id: str, dag_run_id: str) -> None:
    """Take the dataset for ``dag_run_id`` with a create-only write of ``.download.lock``; a
    retry of the same DAG run keeps its claim; a claim untouched for :data:`STALE_IN_PROGRESS`
    (its worker was lost) is taken over.

    :raises DownloadInProgress: another DAG run holds a live claim."""
    key = f"{dataset_prefix(run_id)}/{LOCK}"
    body = orjson.dumps({"dag_run_id": dag_run_id, "claimed_at": _now()})
    if storage.create(key, body):
        return
    held = read_json(storage, key) or {}
    owner = held.get("dag_run_id")
    claimed = held.get("claimed_at")
    age = datetime.now(UTC) - datetime.fromisoformat(claimed) if claimed else STALE_IN_PROGRESS
    if owner == dag_run_id:
        return
    if age < STALE_IN_PROGRESS:
        raise DownloadInProgress(
            f"dataset {run_id} is being downloaded by DAG run {owner} (since {claimed}); wait for it, "
            f"or after {STALE_IN_PROGRESS} take over"
        )
    log.warning("dataset %s: taking over the stale claim of DAG run %s (%s)", run_id, owner, claimed)
    storage.write_stream(key, io.BytesIO(body))


def release_download(storage: Storage, run_id: str) -> None:
    """Remove the claim (end of a download, whatever its outcome)."""
    storage.delete(f"{dataset_prefix(run_id)}/{LOCK}")


def prepare(
    storage: Storage, run: dict, params: ApifyDownloadParams, dag_run_id: str, producer: dict | None = None
) -> dict:
    """Start (or skip) a download: ``{"run_id", "dataset_id", "skip", "reason", "force"}``.

    A dataset that :func:`satisfies` the params is skipped unless ``force_download``. Otherwise
    the manifest is (re)written as ``in_progress``, keeping what an earlier run recorded unless
    ``force_download`` (then everything is fetched again). A legacy ``manifest.json`` is
    replaced by ``_manifest.json``.

    :param params: the run's Params (``settings.ApifyDownloadParams.from_params``).
    :param producer: the manifest's producer, ``{"dag_id", "run_id"}`` of the DAG run (default
        ``{"dag_id": "apify_dataset_download", "run_id": dag_run_id}``).

    :raises DownloadInProgress: another DAG run is downloading this dataset (even when forced:
        two writers would mix their files and manifests)."""
    run_id = run["run_id"]
    prefix = dataset_prefix(run_id)
    previous = read_manifest(storage, run_id)
    force = params.force_download
    if not force and satisfies(previous, params):
        log.info(
            "dataset %s is complete (%s); nothing to do (force_download to fetch it again)", run_id, prefix
        )
        return {
            "run_id": run_id,
            "dataset_id": run["dataset_id"],
            "skip": True,
            "reason": "complete",
            "force": False,
        }
    claim_download(storage, run_id, dag_run_id)
    previous = read_manifest(storage, run_id)  # as it is now that the dataset is ours
    base = None if force else previous
    extra = dict(base.extra) if base else {}
    extra.update(
        run_id=run_id,
        dataset_id=run["dataset_id"],
        run={"status": run["status"], "finished_at": run.get("finished_at")},
        params={
            "download_media": params.download_media,
            "extract_video_frames": params.extract_video_frames,
            "frame_interval_seconds": params.frame_interval_seconds,
        },
        download={"dag_run_id": dag_run_id, "started_at": _now(), "finished_at": None},
    )
    for key, empty in (("counts", {}), ("media", []), ("video_frames", [])):
        extra.setdefault(key, empty)
    manifest = Manifest(
        prefix,
        dict(producer) if producer else {"dag_id": DAG_ID, "run_id": dag_run_id},
        IN_PROGRESS,
        files=list(base.files) if base else [],
        created_at=(base.created_at if base else None) or utc_now(),
        extra=extra,
    )
    save_manifest(storage, run_id, manifest)
    if storage.exists(f"{prefix}/{LEGACY_MANIFEST}"):  # replaced by _manifest.json
        storage.delete(f"{prefix}/{LEGACY_MANIFEST}")
    log.info(
        "dataset %s: download started into %s (%s)",
        run_id,
        storage.uri(prefix),
        "forced" if force else "resume",
    )
    return {"run_id": run_id, "dataset_id": run["dataset_id"], "skip": False, "reason": None, "force": force}


def download_items(storage: Storage, plan: dict, *, conn_id: str = "apify_default") -> dict:
    """All items of the run's default dataset -> ``{run_id}.jsonl`` + ``{run_id}.csv``.

    :returns: ``{"items", "csv_rows", "jsonl_lines", "columns", "jsonl_bytes", "csv_bytes"}``.
    :raises apify_client.errors.ApifyApiError: the API refused (status in the message).
    """
    from dataset_ops.apify.items import client_from_connection
    from dataset_ops.apify.items import download_items as fetch

    run_id = plan["run_id"]
    with dataset_workspace(storage, run_id) as ws:
        result = fetch(client_from_connection(conn_id), plan["dataset_id"], ws.path, run_id)
        files = {}
        for kind in ("jsonl", "csv"):
            path = result[kind]
            files[kind] = ManifestFile(path.name, path.stat().st_size, sha256_file(path), result["items"])
            ws.publish(path.name)
    manifest = read_manifest(storage, run_id)
    for entry in files.values():
        manifest.add(entry)
    manifest.extra["counts"].update(
        items=result["items"],
        csv_rows=result["items"],
        jsonl_lines=result["items"],
        columns=len(result["columns"]),
    )
    save_manifest(storage, run_id, manifest)
    log.info("dataset %s: %d items, %d CSV columns", run_id, result["items"], len(result["columns"]))
    return {
        "items": result["items"],
        "csv_rows": result["items"],
        "jsonl_lines": result["items"],
        "columns": len(result["columns"]),
        "jsonl_bytes": files["jsonl"].bytes,
        "csv_bytes": files["csv"].bytes,
    }


def _refs(jsonl: Path):
    from dataset_ops.apify.media import media_refs

    seen: dict[str, object] = {}
    with open(jsonl, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{jsonl}: line {number}: not JSON ({exc})") from None
            for ref in media_refs(item):
                seen.setdefault(ref.url, ref)
    return list(seen.values())


def download_media(storage: Storage, plan: dict, **settings) -> dict:
    """Every image and video of the items into ``media/``: what the manifest records and the
    storage holds is kept, the rest is fetched (:class:`dataset_ops.apify.download.MediaDownloader`
    with ``settings``, see :func:`dataset_ops.settings.apify_media_settings`); failures are
    recorded, never raised.

    :returns: ``{"media", "images", "videos", "downloaded", "present", "failed", "bytes"}``.
    """
    from dataset_ops.apify.download import MediaDownloader, MediaResult

    run_id = plan["run_id"]
    manifest = read_manifest(storage, run_id)
    with dataset_workspace(storage, run_id) as ws:
        refs = _refs(ws.local(f"{run_id}.jsonl"))
        stored = ws.stored(MEDIA)
        known = {
            m["name"]: m
            for m in manifest.extra.get("media", [])
            if m.get("status") in _OK and m.get("sha256")
        }
        results: dict[str, MediaResult] = {}
        todo = []
        for ref in refs:
            entry = known.get(ref.name)
            if entry and stored.get(ref.name) == entry["bytes"]:
                results[ref.url] = MediaResult(
                    ref.name,
                    ref.url,
                    ref.kind,
                    ref.ad_id,
                    "present",
                    entry["bytes"],
                    entry["sha256"],
                    entry.get("content_type"),
                )
            else:  # on a local root a file not in the manifest is hashed by the downloader
                todo.append(ref)
        # force_download on a local root: fetch beside the old files, then replace them one by one
        refetch = bool(plan.get("force")) and ws.in_place
        folder = ws.path / (".refetch" if refetch else MEDIA)
        try:
            for result in MediaDownloader(folder, **settings).run(todo):
                results[result.url] = result
                if refetch and result.status in _OK:
                    (ws.path / MEDIA).mkdir(exist_ok=True)
                    (folder / result.name).replace(ws.path / MEDIA / result.name)
                if result.status == "downloaded":
                    ws.publish(f"{MEDIA}/{result.name}")
        finally:
            if refetch:
                shutil.rmtree(folder, ignore_errors=True)
    entries = [results[ref.url].to_dict() | {"source": ref.source} for ref in refs]
    manifest = read_manifest(storage, run_id)
    manifest.extra["media"] = entries
    ok = [e for e in entries if e["status"] in _OK]
    media = [ManifestFile(f"{MEDIA}/{e['name']}", e["bytes"], e["sha256"]) for e in ok]
    _replace_files(manifest, MEDIA, media)
    counts = manifest.extra["counts"]
    counts.update(
        images=sum(e["kind"] == "image" for e in ok),
        videos=sum(e["kind"] == "video" for e in ok),
        media_failed=len(entries) - len(ok),
    )
    save_manifest(storage, run_id, manifest)
    summary = {
        "media": len(entries),
        "images": counts["images"],
        "videos": counts["videos"],
        "downloaded": sum(e["status"] == "downloaded" for e in entries),
        "present": sum(e["status"] == "present" for e in entries),
        "failed": counts["media_failed"],
        "bytes": sum(e["bytes"] for e in ok),
    }
    for e in entries:
        if e["status"] == "failed":
            log.warning("dataset %s: media %s failed: %s", run_id, e["url"], e["error"])
    log.info("dataset %s media: %s", run_id, summary)
    return summary


def extract_video_frames(storage: Storage, plan: dict, interval_seconds: float, *, workers: int = 2) -> dict:
    """One JPEG every ``interval_seconds`` of each downloaded video into ``video_frames/``
    (:mod:`dataset_ops.apify.frames`); videos already done at this interval are kept; an
    unreadable video is recorded, never raised.

    :returns: ``{"videos", "extracted", "kept", "failed", "frames"}``.
    """
    from dataset_ops.apify.frames import extract_all

    run_id = plan["run_id"]
    manifest = read_manifest(storage, run_id)
    videos = [
        m["name"] for m in manifest.extra.get("media", []) if m["kind"] == "video" and m["status"] in _OK
    ]
    previous = {v["video"]: v for v in manifest.extra.get("video_frames", [])}
    with dataset_workspace(storage, run_id) as ws:
        stored = ws.stored(FRAMES)
        entries: dict[str, dict] = {}
        todo = []
        for name in videos:
            old = previous.get(name)
            if (
                old
                and old["status"] == "extracted"
                and float(old.get("interval_seconds", 0)) == float(interval_seconds)
                and all(stored.get(f["name"]) == f["bytes"] for f in old["frames"])
            ):
                entries[name] = old
            else:
                todo.append(name)
        for name in todo:  # frames of an earlier interval would linger beside the new ones
            for frame in (previous.get(name) or {}).get("frames", []):
                storage.delete(ws.key(f"{FRAMES}/{frame['name']}"))
        paths = [ws.local(f"{MEDIA}/{name}") for name in todo]
        for result in extract_all(paths, ws.path / FRAMES, interval_seconds, workers=workers):
            entry = result.to_dict() | {"interval_seconds": float(interval_seconds)}
            entries[result.video] = entry
            for frame in entry["frames"]:
                ws.publish(f"{FRAMES}/{frame['name']}")
            if entry["status"] != "extracted":
                log.warning("dataset %s: video %s: %s", run_id, result.video, entry.get("error"))
    ordered = [entries[name] for name in videos]
    manifest = read_manifest(storage, run_id)
    manifest.extra["video_frames"] = ordered
    frames = [
        ManifestFile(f"{FRAMES}/{f['name']}", f["bytes"], f["sha256"]) for v in ordered for f in v["frames"]
    ]
    _replace_files(manifest, FRAMES, frames)
    counts = manifest.extra["counts"]
    counts.update(
        video_frames=len(frames),
        videos_failed=sum(v["status"] != "extracted" for v in ordered),
    )
    save_manifest(storage, run_id, manifest)
    summary = {
        "videos": len(ordered),
        "extracted": len(todo) - counts["videos_failed"],
        "kept": len(ordered) - len(todo),
        "failed": counts["videos_failed"],
        "frames": counts["video_frames"],
    }
    log.info("dataset %s video frames: %s", run_id, summary)
    return summary


def finalize(storage: Storage, plan: dict, steps: dict[str, dict | None]) -> dict:
    """Decide completeness, write ``reports/download_report.json`` and the final manifest.

    :param steps: each requested step's XCom result (None when the step failed or did not run).
    :returns: ``{"run_id", "completeness", "problems", "counts", "total_size_bytes", "manifest"}``.
    """
    run_id = plan["run_id"]
    manifest = read_manifest(storage, run_id)
    extra = manifest.extra
    problems = [f"step {name} did not finish" for name, result in steps.items() if result is None]
    problems += [
        f"media {m['name']} ({m['url']}): {m['error']}" for m in extra["media"] if m["status"] == "failed"
    ]
    problems += [
        f"video {v['video']}: {v.get('error')}" for v in extra["video_frames"] if v["status"] != "extracted"
    ]
    manifest.status = PARTIAL if problems else COMPLETE
    manifest.problems = problems
    extra["download"]["finished_at"] = _now()
    report = {
        "run_id": run_id,
        "dataset_id": extra.get("dataset_id"),
        "dag_run_id": extra["download"]["dag_run_id"],
        "completeness": manifest.status,
        "counts": extra["counts"],
        "steps": steps,
        "failed_media": [m for m in extra["media"] if m["status"] == "failed"],
        "failed_videos": [v for v in extra["video_frames"] if v["status"] != "extracted"],
        "problems": problems,
        "finished_at": extra["download"]["finished_at"],
    }
    body = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    storage.write_stream(f"{dataset_prefix(run_id)}/{REPORTS}/{REPORT_NAME}", io.BytesIO(body))
    manifest.add(ManifestFile(f"{REPORTS}/{REPORT_NAME}", len(body), hashlib.sha256(body).hexdigest()))
    save_manifest(storage, run_id, manifest)
    release_download(storage, run_id)
    log.info("dataset %s: %s, %d problems", run_id, manifest.status, len(problems))
    return {
        "run_id": run_id,
        "completeness": manifest.status,
        "problems": problems[:20],
        "counts": extra["counts"],
        "total_size_bytes": manifest.total_bytes,
        "manifest": storage.uri(manifest_key(dataset_prefix(run_id))),
    }
