"""
### Merge inference datasets

Joins the training datasets (`dataset/` folders) of several processes into the process
`target_process_name`: the same class-folder layout, each transaction once (duplicates with the
same bytes kept once), conflicts (the same transaction in two classes, or with other bytes)
reported in `dataset/_merge_report.json` and left as the first process had them. Then
`reports/folder_structure.csv`, and, when `register` is on, the ZIP and a registry row as in
`inference_dataset`. Every source must be a complete dataset (with its `_manifest.json`).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE
from dataset_ops.inference.process import PROCESS_NAME_PATTERN as PROCESS_NAME


@dag(
    dag_id="inference_merge",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["inference", "dataset", "merge"],
    doc_md=__doc__,
    params={
        "process_names": Param(
            type="array",
            minItems=2,
            items={"type": "string", "pattern": PROCESS_NAME},
            title="Processes",
            description="The processes whose datasets to merge, in priority order.",
        ),
        "target_process_name": Param(
            type="string", pattern=PROCESS_NAME, title="Target process", description="Where the merge goes."
        ),
        "register": Param(
            False, type="boolean", title="Register", description="ZIP, upload and registry row."
        ),
        "dataset_name": Param(
            "",
            type=["string", "null"],
            pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,99})?$",
            title="Dataset name",
            description="Name in the registry (empty: the target process name).",
        ),
    },
)
def inference_merge():
    @task(multiple_outputs=False)
    def merge_datasets(params=None) -> dict:
        """The sources' datasets into the target's dataset/."""
        from dataset_ops import settings
        from dataset_ops.inference.tasks import merge_step

        return merge_step(
            settings.storage(),
            list(params["process_names"]),
            params["target_process_name"],
            settings.producer(),
        )

    @task(multiple_outputs=False)
    def folder_structure(merged: dict) -> dict:
        """reports/folder_structure.csv of the merged dataset."""
        from dataset_ops import settings
        from dataset_ops.inference.tasks import folder_structure_step

        return folder_structure_step(settings.storage(), merged)

    @task(multiple_outputs=False)
    def register_dataset(merged: dict, params=None, dag_run=None) -> dict:
        """ZIP, upload and one row in the registry."""
        from airflow.sdk.exceptions import AirflowSkipException

        from dataset_ops import settings
        from dataset_ops.inference.tasks import register_step

        if not params["register"]:
            raise AirflowSkipException("register is off")
        return register_step(
            settings.storage(),
            merged,
            settings.inference_registry_root().open(),
            params["dataset_name"] or params["target_process_name"],
            dag_run.run_id,
        )

    merged = merge_datasets()
    folder_structure(merged) >> register_dataset(merged)


inference_merge()
