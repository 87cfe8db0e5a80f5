"""
### Dataset retention

Keeps the storage from filling up. Weekly (Sunday 03:00 UTC) it deletes; triggered by hand it
only reports unless `dry_run` is unticked.

* **Apify datasets** under `datasets/facebook/` of the storage root (Variable
  `dataset_ops_storage_root`): those older than `days_old` days go, but the `keep_recent` newest
  always stay, and a dataset whose download is in progress is never touched.
* **Staged uploads** under the Variable `staging_root`: quarantined files (with their report and
  status) older than `failed_older_than_hours`, and incomplete multipart uploads in `uploads/`
  older than `multipart_older_than_hours`.
* **Working folders** under `work/inference/` of the storage root whose newest file is older
  than `work_older_than_days` days (a place for working copies; the inference DAGs themselves
  keep their scratch files in temporary folders that each task removes).

The `report` task returns (and logs) one report: for the datasets the old cleanup endpoint's
fields (`runs_checked`, `runs_to_delete`, `runs_deleted`, `runs_kept`, `freed_space_bytes`,
`deleted_runs` with `run_id`, `days_old`, `size_bytes`), then `staging` and `work_folders`.
The same dataset cleanup is `POST /dataset-ops/apify/facebook/runs/cleanup` on the API server.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task
from airflow.timetables.trigger import CronTriggerTimetable

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE


def _dry_run(params) -> bool:
    from dataset_ops.retention import effective_dry_run

    return effective_dry_run(params["dry_run"], get_current_context()["dag_run"].run_type)


@dag(
    dag_id="dataset_retention",
    schedule=CronTriggerTimetable("0 3 * * 0", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["retention", "apify", "staging"],
    doc_md=__doc__,
    params={
        "days_old": Param(
            30, type="integer", minimum=0, title="Days old", description="Delete datasets older."
        ),
        "keep_recent": Param(
            10, type="integer", minimum=0, title="Keep recent", description="Always keep this many newest."
        ),
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run",
            description="Only report (manual runs). Scheduled runs always delete.",
        ),
        "failed_older_than_hours": Param(
            24,
            type="number",
            minimum=0,
            title="Failed uploads older than (hours)",
            description="Quarantined files in failed/ of the staging root, with report and status.",
        ),
        "multipart_older_than_hours": Param(
            24,
            type="number",
            minimum=0,
            title="Incomplete uploads older than (hours)",
            description="Abandoned multipart uploads in uploads/ of the staging root.",
        ),
        "work_older_than_days": Param(
            7,
            type="number",
            minimum=0,
            title="Working folders older than (days)",
            description="Folders in work/inference/ whose newest file is older.",
        ),
    },
)
def dataset_retention():
    @task(multiple_outputs=False)
    def apify_datasets(params=None) -> dict:
        """Old Apify datasets (keeping the newest and those in progress)."""
        from dataset_ops import settings
        from dataset_ops.apify.inventory import cleanup_datasets

        return cleanup_datasets(
            settings.storage(),
            days_old=params["days_old"],
            keep_recent=params["keep_recent"],
            dry_run=_dry_run(params),
        )

    @task(multiple_outputs=False)
    def staged_uploads(params=None) -> dict:
        """Old quarantined files and abandoned multipart uploads of the staging area."""
        from dataset_ops import settings
        from dataset_ops.staging.tasks import cleanup

        return cleanup(
            settings.staging_root().open(),
            failed_older_than_hours=params["failed_older_than_hours"],
            multipart_older_than_hours=params["multipart_older_than_hours"],
            dry_run=_dry_run(params),
        )

    @task(multiple_outputs=False)
    def work_folders(params=None) -> dict:
        """Old working folders of the inference workflow."""
        from dataset_ops import settings
        from dataset_ops.retention import cleanup_work_folders

        return cleanup_work_folders(
            settings.storage(), older_than_days=params["work_older_than_days"], dry_run=_dry_run(params)
        )

    @task(multiple_outputs=False, trigger_rule="all_done")
    def report(params=None, ti=None) -> dict:
        """One report of the three parts; fails the run if a part failed."""
        import logging

        from airflow.sdk.exceptions import AirflowFailException

        parts = ("apify_datasets", "staged_uploads", "work_folders")
        results = {name: ti.xcom_pull(task_ids=name, default=None) for name in parts}
        datasets = results["apify_datasets"] or {}
        combined = {
            **datasets,
            "dry_run": _dry_run(params),
            "staging": results["staged_uploads"],
            "work_folders": results["work_folders"],
        }
        logging.getLogger("dataset_ops.retention").info("retention report: %s", combined)
        failed = [name for name, value in results.items() if value is None]
        if failed:
            raise AirflowFailException(f"retention parts failed: {', '.join(failed)} (see their logs)")
        return combined

    [apify_datasets(), staged_uploads(), work_folders()] >> report()


dataset_retention()
