"""
### Inference training dataset and registration

Builds a training dataset from a process of `inference_report`: one folder per class
(`dataset/{label_id}_{label_name}/{transaction_id}.jpg`, the class being the label of the
record's true reference), images copied from the image store (Variable
`inference_images_root`). By default transactions already used in a registered dataset are left
out; `fast_mode` takes at most `max_references` references and `max_images_per_reference` images
each; `references` restricts it to some references (the review passes the reviewed ones).

Then `reports/summary_dataset.csv` (every image with its record's data) and
`reports/folder_structure.csv` (leaf folders and image counts), and, unless `register` is off,
the registration: a ZIP of the dataset uploaded to `{registry}/datasets/{name}.zip` and one row
appended to `{registry}/registry.csv` (Variable `inference_registry_root`, default
`registry/` of the storage root), safe under concurrent registrations. Nothing is registered
unless the ZIP is complete and verified.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE
from dataset_ops.inference.process import PROCESS_NAME_PATTERN as PROCESS_NAME


@dag(
    dag_id="inference_dataset",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["inference", "dataset", "s3"],
    doc_md=__doc__,
    params={
        "process_name": Param(
            type="string",
            pattern=PROCESS_NAME,
            maxLength=100,
            title="Process",
            description="From inference_report.",
        ),
        "references": Param(
            [],
            type=["array", "null"],
            items={"type": "integer"},
            title="References",
            description="Only these (empty: all).",
        ),
        "fast_mode": Param(
            False, type="boolean", title="Fast mode", description="Limit references and images."
        ),
        "max_references": Param(
            10, type="integer", minimum=1, title="Max references", description="Fast mode: the busiest ones."
        ),
        "max_images_per_reference": Param(
            20, type="integer", minimum=1, title="Max images per reference", description="Fast mode."
        ),
        "exclude_registered": Param(
            True,
            type="boolean",
            title="Exclude registered transactions",
            description="Leave out transactions already in a registered dataset.",
        ),
        "register": Param(
            True, type="boolean", title="Register", description="ZIP, upload and registry row."
        ),
        "dataset_name": Param(
            "",
            type=["string", "null"],
            pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,99})?$",
            title="Dataset name",
            description="Name in the registry (empty: the process name).",
        ),
    },
)
def inference_dataset():
    @task(multiple_outputs=False)
    def create_dataset(params=None) -> dict:
        """Class folders of images under dataset/."""
        from dataset_ops import settings
        from dataset_ops.inference.tasks import create_dataset_step

        options = settings.InferenceDatasetParams.from_params(params)
        registry = settings.inference_registry_root().open() if options.exclude_registered else None
        return create_dataset_step(
            settings.storage(),
            options,
            settings.inference_images_root().open(),
            registry,
            settings.producer(),
        )

    @task(multiple_outputs=False)
    def summary_dataset(created: dict) -> dict:
        """reports/summary_dataset.csv: every image with its record's data."""
        from dataset_ops import settings
        from dataset_ops.inference.tasks import summary_step

        return summary_step(settings.storage(), created)

    @task(multiple_outputs=False)
    def folder_structure(created: dict) -> dict:
        """reports/folder_structure.csv: leaf folders and image counts."""
        from dataset_ops import settings
        from dataset_ops.inference.tasks import folder_structure_step

        return folder_structure_step(settings.storage(), created)

    @task(multiple_outputs=False)
    def register_dataset(created: dict, params=None, dag_run=None) -> dict:
        """ZIP, upload and one row in the registry."""
        from airflow.sdk.exceptions import AirflowSkipException

        from dataset_ops import settings
        from dataset_ops.inference.tasks import register_step

        options = settings.InferenceDatasetParams.from_params(params)
        if not options.register:
            raise AirflowSkipException("register is off")
        return register_step(
            settings.storage(),
            created,
            settings.inference_registry_root().open(),
            options.registry_name,
            dag_run.run_id,
        )

    created = create_dataset()
    [summary_dataset(created), folder_structure(created)] >> register_dataset(created)


inference_dataset()
