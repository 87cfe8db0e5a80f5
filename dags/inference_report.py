"""
### Inference report

Extracts the inference records of one deployment from Elasticsearch (Connection `inference_es`;
index and field names in `include/inference/mapping.yaml`) and its reference data from MySQL
(Connection `inference_mysql`, read-only; queries in `include/inference/sql/`), analyses them and
writes the workbook `reports/dataset_{deployment_id}_{timestamp}.xlsx` into the process folder
`processes/{process_name}/` of the storage root (Variable `dataset_ops_storage_root`).

Sheets: `Resumen` (KPIs and a chart), `Datos_Elasticsearch` (every record; continues on
`Datos_Elasticsearch_2`... past Excel's 1,048,576 rows), `References`, `Devices` (both with a
`revisar_imagenes` column to mark), `Labels`, `Model_Data`, `Consistencia`.

The window is the `days_back` days before the run (its logical date, or when it was triggered).
An unknown deployment or one without records in the window fails with a clear message and no
workbook. Next: mark references/devices in the workbook (or pick them as Params) and trigger
`inference_review`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE, fail_without_retry


def _storage():
    from dataset_ops import settings

    return settings.storage()


def _params(params):
    from dataset_ops.settings import InferenceReportParams

    return InferenceReportParams.from_params(params)


@dag(
    dag_id="inference_report",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["inference", "elasticsearch", "mysql", "excel"],
    doc_md=__doc__,
    params={
        "deployment_id": Param(
            type="integer",
            minimum=1,
            title="Deployment id",
            description="The deployment whose records to extract.",
        ),
        "days_back": Param(
            30,
            type="integer",
            minimum=1,
            maximum=3650,
            title="Days back",
            description="Window length (days).",
        ),
        "confidence": Param(
            0.78,
            type="number",
            minimum=0,
            maximum=1,
            title="Confidence threshold",
            description="Top-1 confidence under which a record counts as low-confidence.",
        ),
        "min_appearances": Param(
            20,
            type="integer",
            minimum=0,
            title="Minimum appearances",
            description="References the model proposes fewer times are flagged in Consistencia.",
        ),
        "process_name": Param(
            "",
            type=["string", "null"],
            pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,99})?$",
            maxLength=100,
            title="Process name",
            description="Empty: dataset_{deployment_id}_{ddmmyy}_v{n}, the next free n.",
        ),
    },
)
def inference_report():
    @task(multiple_outputs=False)
    def start(params=None) -> dict:
        """Check the deployment in MySQL, create the process folder, save the reference data."""
        from dataset_ops.inference.extract import UnknownDeployment
        from dataset_ops.inference.process import ProcessExists
        from dataset_ops.inference.tasks import start_report

        ctx = get_current_context()
        with fail_without_retry(UnknownDeployment, ProcessExists, ValueError):
            return start_report(_storage(), _params(params), ctx["run_id"], ctx["dag_run"])

    @task(multiple_outputs=False)
    def extract_and_report(process: dict, params=None) -> dict:
        """All records of the deployment in the window -> data/records.parquet and the workbook
        in reports/ (the data sheet written while the next page is fetched), then the analysis."""
        from dataset_ops.inference.tasks import NoRecords, extract_and_report

        with fail_without_retry(NoRecords):
            return extract_and_report(_storage(), process, _params(params))

    extract_and_report(start())


inference_report()
