"""
### IMDb download

Downloads the seven IMDb non-commercial dataset dumps
([dataset page](https://developer.imdb.com/non-commercial-datasets/)) into the suite's object
storage (Variable `dataset_ops_storage_root`) under `imdb/raw/`, one mapped task per file.

* Conditional GET: the ETag / Last-Modified of the stored copy are sent back; unchanged files are
  skipped and transfer nothing.
* The body streams to storage (never held in memory) and is checked on the way: complete gzip,
  the expected header line. A broken file never replaces the stored one.
* Each new file emits an event on its Asset `x-dataset-ops://imdb/raw/<file>.tsv.gz`, which
  schedules `imdb_load`.
* Failures: connection errors, timeouts, 429 and 5xx are retried (by the HTTP session, then by
  Airflow). HTTP 404, 410 and other 4xx (not 408/425/429), a wrong header line or a corrupt gzip
  fail the task after its first try: no retry can fix them.

Params: `base_url` (empty: the Variable `imdb_base_url`, default `https://datasets.imdbws.com/`),
`files`, `read_timeout_seconds`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from dataset_ops.dag_defaults import DEFAULT_ARGS, START_DATE
from dataset_ops.imdb.assets import IMDB_RAW_ALIAS, imdb_raw_asset
from dataset_ops.imdb.datasets import files_param


@dag(
    dag_id="imdb_download",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["imdb", "download"],
    doc_md=__doc__,
    params={
        "base_url": Param(
            None,
            type=["null", "string"],
            pattern=r"^(https?|file)://",
            title="Base URL",
            description="Folder URL of the dumps; empty uses the Variable imdb_base_url.",
        ),
        "files": files_param("Which of the seven dumps to download."),
        "read_timeout_seconds": Param(
            60,
            type="integer",
            minimum=1,
            maximum=3600,
            title="Read timeout (seconds)",
            description="A download with no byte for this long counts as stalled and fails.",
        ),
    },
)
def imdb_download():
    @task
    def select_files(params=None) -> list[str]:
        """The files to fetch, from the Param `files`."""
        return list(params["files"])

    @task(multiple_outputs=False, outlets=[IMDB_RAW_ALIAS], map_index_template="{{ imdb_file }}")
    def download(name: str, params=None, dag_run=None, outlet_events=None) -> dict:
        """Fetch one dump; skipped when unchanged, else an Asset event with its metadata."""
        from dataset_ops import settings
        from dataset_ops.imdb.tasks import download as download_dump

        get_current_context()["imdb_file"] = name
        result = download_dump(
            name,
            settings.imdb_base_url(params["base_url"]),
            settings.storage(),
            read_timeout=params["read_timeout_seconds"],
            producer={"dag_id": dag_run.dag_id, "run_id": dag_run.run_id},
        )
        if result.status == "unchanged":
            raise AirflowSkipException(f"{name} unchanged (ETag {result.etag})")
        outlet_events[IMDB_RAW_ALIAS].add(imdb_raw_asset(name), extra=result.to_dict())
        return result.to_dict()

    download.expand(name=select_files())


imdb_download()
