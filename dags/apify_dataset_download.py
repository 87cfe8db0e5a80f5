"""
### Apify dataset download (Facebook Ads Library scraper)

Fetches the dataset of one Apify actor run into the storage (Variable `dataset_ops_storage_root`)
under `datasets/facebook/{run_id}/`, as the ads team keeps them:

* `{run_id}.jsonl` (the items as the API returns them) and `{run_id}.csv` (flattened columns);
* `media/`: every image and video of the ads (originals, with the actor's fallbacks), fetched
  concurrently, verified (status, Content-Type, size, sha256) and resumable;
* `video_frames/`: one JPEG every `frame_interval_seconds` of each video (OpenCV);
* `reports/download_report.json` and `_manifest.json`, the suite's dataset manifest (every file
  with bytes, sha256 and rows, producer DAG run, created_at, updated_at, status: `complete` or
  `partial`; counts, media and frames in its `extra`). Datasets of earlier versions keep their
  `manifest.json`, which is still read (and replaced by `_manifest.json` when a run resumes them).

The run must have SUCCEEDED: a run still RUNNING is waited for in the triggerer (up to 6 hours);
a FAILED, TIMED-OUT or ABORTED run fails the DAG run with that status. A dataset that is already
complete is skipped unless `force_download`; a partial one is completed (only what is missing is
fetched). Failed media and unreadable videos are listed in the manifest and the report; the DAG
run then ends as success with a `partial` dataset, and a rerun fetches what is still missing.

Connection `apify_default`: the API token as password; host (and schema/port) only to use another
API base URL than `https://api.apify.com`; optional extra `media_workers` (16), `media_read_timeout`
(30 s), `media_connect_timeout` (5 s), `media_retries` (3), `media_backoff_factor` (0.5 s),
`media_max_bytes` (512 MiB). Trigger it from the UI, the REST API, another DAG, or
`POST /dataset-ops/apify/facebook/download-dataset-from-run` on the API server.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from dataset_ops.apify.run import ApifyRunSensor
from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE

CONN_ID = "apify_default"


def _storage():
    from dataset_ops import settings

    return settings.storage()


@dag(
    dag_id="apify_dataset_download",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    tags=["apify", "facebook-ads", "media"],
    doc_md=__doc__,
    params={
        "run_id": Param(
            type="string",
            pattern=r"^[A-Za-z0-9]{17}$",
            minLength=17,
            maxLength=17,  # JSON Schema's $ lets a final newline through; the length does not
            title="Apify run id",
            description="The actor run whose default dataset to download (17 letters and digits).",
        ),
        "download_media": Param(
            True, type="boolean", title="Download media", description="Images and videos."
        ),
        "force_download": Param(
            False,
            type="boolean",
            title="Force download",
            description="Fetch everything again even when the dataset is complete.",
        ),
        "extract_video_frames": Param(
            True, type="boolean", title="Extract video frames", description="Needs download_media."
        ),
        "frame_interval_seconds": Param(
            1.0,
            type="number",
            exclusiveMinimum=0,
            maximum=3600,
            title="Frame interval (seconds)",
            description="One JPEG every this many seconds of each video.",
        ),
    },
)
def apify_dataset_download():
    wait = ApifyRunSensor(
        task_id="wait_for_run",
        run_id="{{ params.run_id }}",
        conn_id=CONN_ID,
        deferrable=True,
        poke_interval=30,
        timeout=timedelta(hours=6).total_seconds(),
    )

    @task(multiple_outputs=False)
    def prepare(run: dict, params=None) -> dict:
        """Skip a complete dataset (unless forced); else mark it in_progress."""
        from dataset_ops.apify.tasks import prepare as start
        from dataset_ops.settings import ApifyDownloadParams, producer

        context = get_current_context()
        return start(
            _storage(), run, ApifyDownloadParams.from_params(params), context["run_id"], producer(context)
        )

    def _skip_unless(plan: dict, wanted: bool = True, why: str = "") -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        if plan["skip"]:
            raise AirflowSkipException(
                f"dataset {plan['run_id']} is complete (force_download to fetch it again)"
            )
        if not wanted:
            raise AirflowSkipException(why)

    @task(multiple_outputs=False)
    def download_items(plan: dict) -> dict:
        """All items -> {run_id}.jsonl and {run_id}.csv."""
        from dataset_ops.apify.tasks import download_items as fetch

        _skip_unless(plan)
        return fetch(_storage(), plan, conn_id=CONN_ID)

    @task(multiple_outputs=False)
    def download_media(plan: dict, items: dict, params=None) -> dict:
        """Images and videos into media/ (only what is missing)."""
        from dataset_ops.apify.tasks import download_media as fetch
        from dataset_ops.settings import apify_media_settings

        _skip_unless(plan, params["download_media"], "download_media is off")
        return fetch(_storage(), plan, **apify_media_settings(CONN_ID))

    @task(multiple_outputs=False)
    def extract_video_frames(plan: dict, media: dict, params=None) -> dict:
        """One JPEG every frame_interval_seconds of each video into video_frames/."""
        from dataset_ops.apify.tasks import extract_video_frames as extract

        wanted = params["download_media"] and params["extract_video_frames"]
        _skip_unless(plan, wanted, "extract_video_frames (or download_media) is off")
        return extract(_storage(), plan, params["frame_interval_seconds"])

    @task(multiple_outputs=False, trigger_rule="all_done")
    def finalize(plan: dict, params=None, ti=None) -> dict:
        """Completeness, report and final manifest; fails the run if a step failed."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from dataset_ops.apify.tasks import finalize as close

        if plan is None:
            raise AirflowFailException("prepare did not finish; nothing to finalize")
        if plan["skip"]:
            raise AirflowSkipException(f"dataset {plan['run_id']} is complete")
        wanted = ["download_items"]
        if params["download_media"]:
            wanted.append("download_media")
            if params["extract_video_frames"]:
                wanted.append("extract_video_frames")
        steps = {name: ti.xcom_pull(task_ids=name, default=None) for name in wanted}
        result = close(_storage(), plan, steps)
        missing = [name for name, value in steps.items() if value is None]
        if missing:
            raise AirflowFailException(f"dataset {plan['run_id']} is partial: {', '.join(missing)} failed")
        return result

    plan = prepare(wait.output)
    items = download_items(plan)
    media = download_media(plan, items)
    frames = extract_video_frames(plan, media)
    frames >> finalize(plan)


apify_dataset_download()
