"""
### Inference image review

Downloads review images for the references and devices chosen after `inference_report`, into
the process folder (`images/productos/{reference}/{correct|incorrect}/`,
`images/devices/{device}/...`), from the image store (Variable `inference_images_root`, an
`s3://` prefix). Two ways to choose:

* **marked workbook** (`selection` = `workbook`): type anything in the `revisar_imagenes` column
  of `References` / `Devices` and upload the workbook back to `reports/` of the process folder
  (the newest `.xlsx` there is read, or the one named in `workbook`);
* **Params** (`selection` = `params`): list the ids in `references` and `devices`.

`images_per_item` images of `correct` transactions (the model's top-1 was right), `incorrect`
ones, or `both` (that many of each). The workbook gains `revisar_imagenes_bajadas` and
`devices_imagenes_bajadas` sheets logging every image (missing ones included). `dry_run` lists
without downloading. Unknown references or devices fail the run before any download.

Unless `continue_to_dataset` is off (or a dry run), the run then triggers `inference_dataset`
for the reviewed references: report -> review -> dataset -> register in one click.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE
from dataset_ops.inference.process import PROCESS_NAME_PATTERN as PROCESS_NAME


@dag(
    dag_id="inference_review",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["inference", "review", "s3"],
    doc_md=__doc__,
    params={
        "process_name": Param(
            type="string",
            pattern=PROCESS_NAME,
            maxLength=100,
            title="Process",
            description="From inference_report.",
        ),
        "selection": Param(
            "workbook",
            enum=["workbook", "params"],
            title="Selection",
            description="workbook: rows marked in revisar_imagenes; params: the ids below.",
        ),
        "references": Param(
            [],
            type=["array", "null"],
            items={"type": "integer"},
            title="References",
            description="Ids (selection=params).",
        ),
        "devices": Param(
            [],
            type=["array", "null"],
            items={"type": "integer"},
            title="Devices",
            description="Ids (selection=params).",
        ),
        "workbook": Param(
            "",
            type=["string", "null"],
            pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,150}\.xlsx)?$",
            title="Workbook",
            description="A file in reports/ (empty: the newest .xlsx there).",
        ),
        "images_per_item": Param(
            5, type="integer", minimum=1, maximum=500, title="Images per item", description="Per kind."
        ),
        "kind": Param(
            "both",
            enum=["both", "correct", "incorrect"],
            title="Kind",
            description="Transactions the model got right, wrong, or both.",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run", description="List the images only."),
        "continue_to_dataset": Param(
            True,
            type="boolean",
            title="Continue to the dataset",
            description="Trigger inference_dataset for the reviewed references when done.",
        ),
    },
)
def inference_review():
    @task(multiple_outputs=False)
    def review_images(params=None) -> dict:
        """Choose, download and log the review images."""
        from dataset_ops import settings
        from dataset_ops.inference.review import review

        selection = None
        if params["selection"] == "params":
            selection = {
                "references": list(params["references"] or []),
                "devices": list(params["devices"] or []),
            }
        summary = review(
            settings.storage(),
            params["process_name"],
            selection=selection,
            workbook_name=params["workbook"] or None,
            per_item=params["images_per_item"],
            kind=params["kind"],
            dry_run=params["dry_run"],
            images_root=settings.inference_images_root().check().uri,
        )
        if summary["picked"] and not summary["downloaded"] and not params["dry_run"]:
            raise RuntimeError(f"none of the {summary['picked']} review images was downloaded: {summary}")
        return summary

    @task.short_circuit
    def dataset_conf(result: dict, params=None) -> dict | bool:
        """The conf of inference_dataset, or False (skip) when turned off or a dry run."""
        if not params["continue_to_dataset"] or params["dry_run"]:
            return False
        return {"process_name": params["process_name"], "references": result["selection"]["references"]}

    TriggerDagRunOperator(
        task_id="trigger_dataset",
        trigger_dag_id="inference_dataset",
        conf=dataset_conf(review_images()),
        wait_for_completion=False,
    )


inference_review()
