"""Every command the README and ``docs/`` show is run by a test, or the docs say why not.

:mod:`helpers.doc_commands` finds the commands (fenced shell blocks, usage synopses and inline
code spans that start like a command) in README.md, docs/*.md, include/**/README.md and
benchmarks/README.md. :data:`REGISTRY` maps each one, in normalized form, to

* :class:`Runs`: a test runs it as the document writes it (placeholders such as ``FILE`` or
  ``<s3_port>`` filled in, as said in ``how``) and checks what the text says it does;
* :class:`Covered`: a test runs the same code another way (``dag.test()`` for an
  ``airflow dags test`` command, an argv list, a data folder of its own), said in ``how``;
* :class:`NotRun`: no test runs it, for ``reason``; the document that shows it must say so
  (``doc_says`` is a phrase of that document).

The registry tests fail when a documented command is missing from the registry, when an entry
is stale (no document shows its command any more), when an entry names a test function that
does not exist, when a :class:`Runs` entry's test module does not hold the command's text, or
when the document of a :class:`NotRun` command does not say it is not run.

The commands that no other test ran are run here, literally, in subprocesses with a user's
shell environment (none of this session's ``AIRFLOW_*`` settings):

* ``make demo``'s recipe (what ``make -n demo`` prints) with ``--data-dir`` in a temporary
  "checkout" (a folder with ``.venv`` linked to the project's), so the real ``.data`` is never
  touched; then, in that checkout, ``source .data/demo.env`` with ``airflow dags trigger`` and
  ``airflow backfill create``, the staged-upload commands of docs/staging.md, docs/operations.md and
  ``docs/airflow-dags-test.md``, ``airflow dags test staged_upload_validation`` and the listings;
* the stand-in services of ``docs/airflow-dags-test.md`` (moto S3, the Apify and inventory
  servers) with the page's ``export`` lines, and the ingest image's command against them;
* the commands that made ``include/imdb_sample/`` and those that check it.

About 60 s in all on 2 cores, most of it the demo (about 18 s) and ``airflow dags test`` (about
18 s).
"""

from __future__ import annotations

import ast
import functools
import gzip
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.doc_commands import REPO, all_commands, extract, normalize, section_text

THIS = "tests/test_docs_commands.py"
SHARED = Path(os.environ.get("DATASET_OPS_SHARED_DATA", REPO.parent / "shared" / "data"))


# --- the registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Runs:
    """A test runs the command as documented.

    :param test: pytest node id without parameters, ``tests/<path>.py::<function>``.
    :param how: what the test fills in or changes (placeholders, a temporary data folder).
    """

    test: str
    how: str = ""


@dataclass(frozen=True)
class Covered:
    """A test runs the same code in another form (``dag.test()``, an argv list, ...).

    :param test: pytest node id without parameters.
    :param how: how the test's form relates to the documented command.
    """

    test: str
    how: str


@dataclass(frozen=True)
class NotRun:
    """No test runs the command.

    :param reason: why not.
    :param doc_says: a phrase the document showing the command holds (whitespace-normalized,
        case-insensitive) that tells the reader so.
    """

    reason: str
    doc_says: str


DEMO_FLOW = f"{THIS}::test_make_demo_downloads_and_loads_the_bundled_sample"
DEMO_ENV = f"{THIS}::test_demo_env_gives_the_airflow_cli_the_demo_home"
STAGING = f"{THIS}::test_staged_upload_commands_on_the_demo_home_do_what_the_docs_say"
STAND_INS = f"{THIS}::test_the_stand_in_services_and_the_ingest_command_of_the_docs"
SAMPLE = f"{THIS}::test_the_imdb_sample_is_remade_byte_for_byte_by_its_readme_commands"
DEMO_SETUP = (
    "tests/scripts/test_demo.py::test_setup_puts_the_settings_in_the_metadata_db_and_nothing_hides_them"
)
COMPOSE = "tests/deploy/test_compose.py::test_compose_accepts_the_file_and_refuses_a_broken_copy"
CELERY = (
    "tests/deploy/test_celery_stack.py::test_a_staged_batch_runs_on_both_workers_and_ends_as_on_one_machine"
)
CELERY_BACKFILL = (
    "tests/deploy/test_celery_stack.py::test_a_week_backfill_runs_once_per_day_with_one_partition_per_day"
)
BROWSER = (
    "tests/browser/test_trigger_forms.py::test_apify_download_triggered_from_its_form_shows_in_the_inventory"
)
FUZZ = (
    "tests/acceptance/test_api_fuzz.py::test_the_api_answers_every_generated_request_without_a_server_error"
)
ACCEPTANCE = (
    "tests/acceptance/test_dag_runs.py::test_imdb_download_from_its_schedule_starts_imdb_load_by_its_assets"
)
INGEST = "tests/integration/test_microservice_ingest_dag.py"
UPLOAD_CLI = (
    "tests/plugins/staging/test_upload.py::test_cli_uploads_to_a_local_staging_root_as_the_readme_shows"
)
IMDB_DAGS = "tests/integration/test_imdb_dags.py::test_download_then_load_all_seven_files"
APIFY_DAG = (
    "tests/integration/test_apify_dataset_download_dag.py::"
    "test_a_run_lays_out_the_dataset_and_a_second_run_fetches_nothing"
)
RETENTION_DAG = (
    "tests/integration/test_dataset_retention_dag.py::test_manual_runs_report_first_and_delete_when_asked"
)
REPORT_DAG = "tests/integration/test_inference_report_dag.py::test_the_report_matches_the_records"
REVIEW_DAGS = (
    "tests/integration/test_inference_review_dataset_dags.py::test_review_then_dataset_then_register"
)
MERGE_DAG = "tests/integration/test_inference_review_dataset_dags.py::test_merge_two_processes_datasets"

DAGS_TEST = "`airflow dags test` runs `dag.test()` in one process; the test runs that on the same DAG"
BENCH = NotRun("a benchmark: minutes of run time and the machine to itself", "benchmarks are run by hand")
NO_DOCKER = NotRun("needs a Docker engine; the development machine has none", "never been started")
NO_DOCKER_BUILD = NotRun("needs a Docker engine; the development machine has none", "Not built or run here")
DOCS_ENV = NotRun(
    "the environment of the session docs/airflow-dags-test.md records; the stand-in test runs the "
    "page's own export lines for S3, the lake and the inventory services",
    "ports and credentials as placeholders",
)
DOCS_SETUP = NotRun(
    "the throwaway SQLite home of the recorded session; the tests' home (tests/conftest.py) has "
    "the same settings and is migrated with `airflow db migrate` at the start of every session",
    "A throwaway home with SQLite",
)

NO_AWS = NotRun(
    "needs an AWS account (Glue, S3); none is reachable from here", "the AWS commands above were not run"
)
REGISTRY: dict[str, Runs | Covered | NotRun] = {
    # --- docs/imdb-api.md: the IMDb read API on its own -------------------------------------------
    ".venv/bin/python -m dataset_ops.imdb.api_server --host 127.0.0.1 --port 8090 --workers 2": Runs(
        "tests/plugins/imdb/test_imdb_api.py::test_the_documented_command_serves_the_api_to_an_airflow_token",
        "port 8090 replaced by a free port; the two variables set to the test database and Airflow's secret",
    ),
    ".venv/bin/python benchmarks/bench_imdb_api.py [--workers 1 2] [--duration 20] [--warmup 5] "
    "[--connections 64] [--threads 2] [--pool-size 4] [--rows 2000000] [--db imdb_bench_api] "
    "[--only ours|seed] [--rebuild]": BENCH,
    "docker compose up -d imdb-api": NO_DOCKER,
    # --- docs/ingest.md: the lake's catalog in AWS ------------------------------------------------
    "aws glue create-database --database-input '{\"Name\": \"inventario_datalake\"}'": NO_AWS,
    "aws s3 cp s3://inventario-datalake/_catalog/inventario_datalake/glue/productos_parquet.json .": NO_AWS,
    "aws glue create-table --cli-input-json file://productos_parquet.json": NO_AWS,
    # --- README.md: the two commands (also shown in docs/testing.md, docs/operations.md) -------
    "make demo": Runs(DEMO_FLOW, "the recipe `make -n demo` prints, with --data-dir in a temporary checkout"),
    "make test": NotRun("the test suite itself; a test cannot run the suite it is part of", "The last run:"),
    "bash .ci/run": NotRun("`make test` on a fresh clone: the suite itself", "The last run:"),
    "make test PYTEST_SPLIT=0": NotRun(
        "the test suite itself, as one session; a test cannot run the suite it is part of", "The last run:"
    ),
    "make install": NotRun(
        "the installation `make test` and `make demo` run first",
        "the first step of `make demo` and `make test`",
    ),
    "make lock": NotRun("rewrites the pinned requirements from the package index", "no test runs it"),
    # --- docs/staging.md: staged uploads -------------------------------------------------------
    ".venv/bin/python -m dataset_ops.upload train.jsonl --data-type training_jsonl": Runs(
        STAGING,
        "after `source .data/demo.env` (the Variable from the demo's metadata DB), and with "
        "AIRFLOW_VAR_STAGING_ROOT set",
    ),
    ".venv/bin/python -m dataset_ops.upload train.jsonl --data-type training_jsonl "
    "--root .data/staging": Runs(STAGING),
    ".venv/bin/python -m dataset_ops.staging list --state failed": Runs(STAGING),
    "python -m dataset_ops.staging list": Runs(STAGING, "after `source .data/demo.env`"),
    ".venv/bin/python -m dataset_ops.staging verify --checksums": Covered(
        "tests/integration/test_staged_upload_dag.py::test_same_name_keeps_versions_and_the_same_content_is_a_no_op",
        "runs `python -m dataset_ops.staging verify --checksums` as a subprocess with the staging "
        "root in AIRFLOW_VAR_STAGING_ROOT, on S3 and on a local root, and checks exit code 0",
    ),
    "python -m dataset_ops.upload": Covered(
        UPLOAD_CLI, "names the program; the test runs it as a subprocess"
    ),
    "python -m dataset_ops.staging": Covered(
        STAGING, "names the program (docs/architecture.md); the test runs its `list` command"
    ),
    "python -m dataset_ops.staging.upload": Covered(
        "tests/plugins/staging/test_upload.py::test_the_new_module_runs_the_same_command",
        "names the program (docs/architecture.md, docs/staging.md); the test runs it as a "
        "subprocess into a local staging root and checks its usage line",
    ),
    "python -m dataset_ops.validation.jsonl_worker": Covered(
        "tests/plugins/validation/test_validation_parallel.py::test_workers_give_the_same_result",
        "names the worker program (docs/architecture.md, benchmarks/README.md); the validator "
        "starts it as its worker processes and the test compares their result with one process",
    ),
    # --- docs/ingest.md: microservice ingest ---------------------------------------------------
    "airflow backfill create --dag-id microservice_ingest --from-date 2026-11-11T02:00:00+00:00 "
    "--to-date 2026-11-13T02:00:00+00:00": Runs(
        f"{INGEST}::test_the_readme_backfill_command_gives_the_partitions_the_readme_promises"
    ),
    "airflow backfill create": Covered(
        f"{INGEST}::test_the_readme_backfill_command_gives_the_partitions_the_readme_promises",
        "names the command; the test runs the backfill of docs/ingest.md",
    ),
    "airflow dags test microservice_ingest 2026-11-16T02:00:00+00:00": Covered(
        f"{INGEST}::test_a_manual_run_lands_the_last_complete_interval_of_the_schedule", DAGS_TEST
    ),
    'airflow dags test microservice_ingest -c \'{"entities": ["categorias"]}\'': Covered(
        f"{INGEST}::test_a_manual_run_lands_the_last_complete_interval_of_the_schedule", DAGS_TEST
    ),
    'airflow dags test microservice_ingest -c \'{"entities": ["categorias"], "day": "2026-11-12"}\'': Covered(
        f"{INGEST}::test_the_param_day_lands_that_days_interval",
        DAGS_TEST + "; the stand-in test lands the same categorias partition with the ingest command",
    ),
    "python -m dataset_ops.ingest ENTITY --start ISO --end ISO --layout ...": Runs(
        STAND_INS, "ENTITY categorias, the interval of 2026-11-12, layout partitioned"
    ),
    "python -m dataset_ops.ingest": Covered(
        STAND_INS, "names the program (docs/architecture.md); the test runs the documented ingest command"
    ),
    # --- docs/operations.md: opening the Airflow UI locally; README.md: configuration -----------
    "make airflow": Covered(
        DEMO_SETUP,
        "`scripts/demo.py --ui`: the same setup (run with --setup-only) and the launch environment "
        "of `airflow standalone`, which the test checks",
    ),
    "scripts/demo.py --ui": Covered(
        DEMO_SETUP, "checks demo.launch_environment, what --ui starts Airflow with"
    ),
    "airflow standalone": NotRun(
        "`make airflow`'s server (about 2.5 GB, 45 s to answer) runs until Ctrl-C",
        "`airflow standalone` itself was not started",
    ),
    ".venv/bin/python scripts/demo.py --setup-only": Covered(
        DEMO_SETUP, "with --data-dir in a temporary folder"
    ),
    "airflow variables set": Covered(
        DEMO_SETUP, "runs `airflow variables set imdb_base_url ...` on the demo home"
    ),
    ".venv/bin/python -m dataset_ops.upload FILE --data-type training_jsonl --root .data/staging": Runs(
        STAGING, "FILE: a JSON Lines file with a bad line"
    ),
    "airflow dags test staged_upload_validation": Runs(STAGING),
    "airflow teams create uploaders": Covered(
        "tests/plugins/staging/test_staging_api_teams.py::test_an_outsider_cannot_start_an_upload_and_a_member_can",
        "the fixture adds the same team row through Airflow's Team model, in the test's metadata DB",
    ),
    "source .data/demo.env": Runs(DEMO_ENV),
    "python -m dataset_ops.staging list --root .data/staging": Runs(STAGING),
    "airflow dags trigger imdb_download": Runs(DEMO_ENV),
    "airflow backfill create --dag-id imdb_download --from-date 2026-11-01 --to-date 2026-11-03": Runs(
        DEMO_ENV
    ),
    "IMDB_BASE_URL=https://datasets.imdbws.com/ make demo": NotRun(
        "downloads the real dumps (about 1.8 GB) from the internet", "no test runs it"
    ),
    "airflow connections add": NotRun(
        "Airflow's own command, named as one way to set a Connection", "Airflow's own"
    ),
    "airflow pools import include/pools.json": Covered(
        ACCEPTANCE, "the acceptance stack (scripts/airflow_stack.py) imports include/pools.json so"
    ),
    # --- docs/operations.md: docker compose; docs/architecture.md: more workers ----------------
    "cp .env.example .env": Covered(
        COMPOSE, "`docker compose config` resolves the file with .env.example as .env"
    ),
    "docker compose up -d": NO_DOCKER,
    "docker compose up -d --scale airflow-worker=N": NO_DOCKER,
    "docker compose up -d --scale airflow-worker=3": NO_DOCKER,
    "docker compose --profile build build ingest-image": NO_DOCKER,
    "docker build -f include/docker/ingest/Dockerfile -t dataset-ops-ingest:latest .": NO_DOCKER_BUILD,
    "docker compose config": Covered(COMPOSE, "the real Compose v2 binary, `config` with .env.example"),
    "psql -h localhost -p 5433 -U imdb imdb": NO_DOCKER,
    "mysql -h 127.0.0.1 -P 3307 -u inference -p inference": NO_DOCKER,
    # --- docs/operations.md: distributed, browser; docs/apify.md: the API ----------------------
    "make distributed": Covered(
        CELERY, "the same stack (scripts/airflow_stack.py), a staged batch compared with a dag.test() run"
    ),
    'make distributed DISTRIBUTED_ARGS="--keep"': NotRun(
        "leaves the stack running until Ctrl-C", "Ctrl-C stops"
    ),
    "airflow celery worker": Covered(CELERY, "the stack's two workers"),
    "airflow api-server": Covered(FUZZ, "the acceptance layer's api-server"),
    "schemathesis run .../dataset-ops/openapi.json --checks all --max-examples 300": NotRun(
        "300 examples per operation take minutes; the fuzz test runs the same CLI with fewer", "Run by hand"
    ),
    "schemathesis run": Covered(FUZZ, "the test runs the schemathesis CLI on the running api-server"),
    "make screenshots": Covered(BROWSER, "the browser tests, which `make screenshots` runs saving pictures"),
    "airflow backfill create --dag-id microservice_ingest --from-date 2026-11-11T02:00:00+00:00 "
    '--to-date 2026-11-17T02:00:00+00:00 --dag-run-conf \'{"entities": ["ordenes"]}\'': Covered(
        CELERY_BACKFILL, "the same arguments as an argv list, on the Celery stack"
    ),
    # --- benchmarks (benchmarks/README.md, docs/imdb.md, staging.md, ingest.md, operations.md) ---
    "make bench": BENCH,
    'make bench BENCH_ARGS="--only ratings"': BENCH,
    "make bench-validation": BENCH,
    "make bench-upload": BENCH,
    "make bench-ingest": BENCH,
    "make bench-media": BENCH,
    "make bench-inference": BENCH,
    "make bench-distributed": BENCH,
    ".venv/bin/python benchmarks/bench_imdb_copy.py": BENCH,
    ".venv/bin/python benchmarks/bench_imdb_copy.py [--only ratings|basics|ratings-scaled ...] [--rows N] "
    "[--scaled-rows N] [--streams 1,2,4] [--repeat 3] "
    '[--dsn "host=127.0.0.1 port=5432 user=postgres dbname=postgres"] [--skip-to-sql] [--to-sql-rows N] '
    "[--to-sql-repeat 1] [--skip-pgloader]": BENCH,
    ".venv/bin/python benchmarks/bench_upload.py [--size-mib 2048] [--repeat 2] [--parallel 4] "
    "[--diagnostic-part-size-mib 16] [--page]": BENCH,
    ".venv/bin/python benchmarks/bench_validation.py [--size-gb 1] [--repeat 3] [--others-repeat 1] "
    "[--only jsonl|csv] [--pandas-json-prefix-mb N] [--frictionless-prefix-mb 50] [--skip METHOD ...] "
    "[--pandas2-python PY]": BENCH,
    ".venv/bin/python benchmarks/bench_validation.py": BENCH,
    ".venv/bin/python benchmarks/bench_validation.py --only jsonl --repeat 5 --others-repeat 5 --skip "
    'pandas.read_json --skip pyarrow.json.read_json --skip "orjson loop"': BENCH,
    ".venv/bin/python benchmarks/bench_ingest.py [--records 200000] [--latency 0.005] [--repeat 2] "
    "[--dlt-python .data/bench/dlt/bin/python]": BENCH,
    ".venv/bin/python benchmarks/bench_media.py [--files 500] [--latency 0.05] [--workers 16] [--repeat 3] "
    "[--dir DIR]": BENCH,
    ".venv/bin/python benchmarks/bench_inference.py [--records 100000] [--repeat 3] [--methods ours "
    "pandas-openpyxl pandas-xlsxwriter [ours-sequential]] [--reference-data mysql|world] [--profile METHOD] "
    "[--keep DIR]": BENCH,
    ".venv/bin/python benchmarks/bench_inference.py": BENCH,
    ".venv/bin/python benchmarks/bench_inference.py --repeat 1": BENCH,
    ".venv/bin/python benchmarks/bench_inference.py --repeat 3": BENCH,
    ".venv/bin/python benchmarks/bench_review_append.py [--records 100000] [--log-rows 200]": BENCH,
    ".venv/bin/python benchmarks/bench_distributed.py [--repeat 3] [--imdb-mb 100] [--upload-mb 150] "
    "[--workloads imdb staged] [--setups 1 2] [--airflow-defaults] "
    "[--env AIRFLOW__SECTION__KEY=value ...]": BENCH,
    ".venv/bin/python benchmarks/bench_distributed.py --repeat 2": BENCH,
    ".venv/bin/python benchmarks/bench_distributed.py --repeat 3": BENCH,
    "airflow celery worker --concurrency 1": BENCH,
    'psql -1 -c "CREATE UNLOGGED TABLE …" -c "\\copy … FROM \'file.tsv\' WITH (…)"': BENCH,
    "psql -1": BENCH,
    "zcat file.gz | pgloader cmd.load": BENCH,
    'python3 -c "sum(range(10**8))"': BENCH,
    "python -m moto.server": Covered(
        STAND_INS, "names the server; the test starts it as docs/airflow-dags-test.md shows"
    ),
    # --- docs/airflow-dags-test.md ---------------------------------------------------------------
    "airflow dags test <dag_id> [logical_date] [-c '<conf json>']": Covered(
        STAGING, "the synopsis; the test runs `airflow dags test staged_upload_validation`"
    ),
    "airflow dags test": Covered(STAGING, "names the command; the test runs one"),
    "export AIRFLOW_HOME=/tmp/dagstest/home": DOCS_SETUP,
    "export AIRFLOW__CORE__DAGS_FOLDER=$PWD/dags AIRFLOW__CORE__PLUGINS_FOLDER=$PWD/plugins": DOCS_SETUP,
    "export AIRFLOW__CORE__LOAD_EXAMPLES=False ARROW_DEFAULT_MEMORY_POOL=system": DOCS_SETUP,
    "export PATH=$PWD/.venv/bin:$PATH": DOCS_SETUP,
    "airflow db migrate": Covered(DEMO_SETUP, "scripts/demo.py migrates its home so; tests/conftest.py too"),
    "export AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT=/tmp/dagstest/storage": DOCS_ENV,
    "export AIRFLOW_VAR_IMDB_BASE_URL=http://127.0.0.1:<imdb_port>/": DOCS_ENV,
    "export AIRFLOW_VAR_STAGING_ROOT=s3://training-data/": DOCS_ENV,
    "export AIRFLOW_VAR_DATALAKE_ROOT=s3://inventario-datalake/": Runs(STAND_INS),
    "export AIRFLOW_VAR_INFERENCE_IMAGES_ROOT=s3://retail-images/images/": DOCS_ENV,
    'export AIRFLOW_CONN_AWS_DEFAULT=\'{"conn_type": "aws", "login": "<key>", "password": "<secret>", '
    '"extra": {"endpoint_url": "http://127.0.0.1:<s3_port>", "region_name": "us-east-1"}}\'': Runs(
        STAND_INS, "<key>, <secret>, <s3_port> filled in"
    ),
    "export AIRFLOW_CONN_IMDB_POSTGRES=postgresql://postgres@127.0.0.1:5432/dagstest_imdb": DOCS_ENV,
    'export AIRFLOW_CONN_APIFY_DEFAULT=\'{"conn_type": "http", "host": "http://127.0.0.1:<apify_port>", '
    '"password": "<apify_token>"}\'': DOCS_ENV,
    'export AIRFLOW_CONN_PRODUCTOS_SERVICE=\'{"conn_type": "http", "host": "127.0.0.1", "port": '
    '<inventory_port>, "schema": "http"}\'': Runs(STAND_INS, "<inventory_port> filled in"),
    'export AIRFLOW_CONN_ORDENES_SERVICE=\'{"conn_type": "http", "host": "127.0.0.1", "port": '
    '<inventory_port>, "schema": "http"}\'': DOCS_ENV,
    'export AIRFLOW_CONN_PROVEEDORES_SERVICE=\'{"conn_type": "http", "host": "127.0.0.1", "port": '
    '<inventory_port>, "schema": "http"}\'': DOCS_ENV,
    'export AIRFLOW_CONN_INFERENCE_ES=\'{"conn_type": "elasticsearch", "host": "127.0.0.1", "port": '
    '<es_port>, "schema": "http"}\'': DOCS_ENV,
    'export AIRFLOW_CONN_INFERENCE_MYSQL=\'{"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, '
    '"login": "root", "schema": "dagstest_inference"}\'': DOCS_ENV,
    "python -m moto.server -H 127.0.0.1 -p <s3_port>": Runs(STAND_INS, "<s3_port>: a free port"),
    "python tests/helpers/apify_server.py --port 0": Runs(STAND_INS),
    "python tests/helpers/inventory_server.py --port 0 --seed 11": Runs(STAND_INS),
    "python -m dataset_ops.upload ../shared/data/ml/gsm8k_train.jsonl --name gsm8k/train.jsonl "
    "--data-type training_jsonl": Runs(STAGING, "AIRFLOW_VAR_STAGING_ROOT: the demo home's staging folder"),
    "python -m dataset_ops.upload ../shared/data/messy_csv/Tweets.airline-sentiment.csv --name "
    "tweets/airline.csv --data-type tweets_csv": Runs(STAGING),
    "python -m dataset_ops.upload ../shared/data/messy_csv/Tweets.airline-sentiment.invalid-utf8.csv "
    "--name tweets/airline-mangled.csv --data-type tweets_csv": Runs(STAGING),
    "airflow dags test imdb_download": Covered(IMDB_DAGS, DAGS_TEST),
    "airflow dags test imdb_load": Covered(IMDB_DAGS, DAGS_TEST),
    'airflow dags test apify_dataset_download -c \'{"run_id": "<17-char run id>"}\'': Covered(
        APIFY_DAG, DAGS_TEST
    ),
    'airflow dags test apify_dataset_download -c \'{"run_id": "HG7ML7M8z78YcAPEB"}\'': Covered(
        APIFY_DAG, DAGS_TEST
    ),
    "airflow dags test dataset_retention": Covered(RETENTION_DAG, DAGS_TEST),
    "airflow dags test inference_report <logical_date> -c '{\"deployment_id\": 7}'": Covered(
        REPORT_DAG, DAGS_TEST
    ),
    "airflow dags test inference_report 2026-11-20T12:00:00+00:00 -c '{\"deployment_id\": 7}'": Covered(
        REPORT_DAG, DAGS_TEST
    ),
    'airflow dags test inference_review -c \'{"process_name": "...", "selection": "params", '
    '"references": [...], "devices": [...]}\'': Covered(REVIEW_DAGS, DAGS_TEST),
    'airflow dags test inference_review -c \'{"process_name": "dataset_7_201126_v1", "selection": '
    '"params", "references": [37, 50, 9002], "devices": [10], "images_per_item": 3}\'': Covered(
        REVIEW_DAGS, DAGS_TEST
    ),
    'airflow dags test inference_dataset -c \'{"process_name": "...", "references": [...]}\'': Covered(
        REVIEW_DAGS, DAGS_TEST
    ),
    'airflow dags test inference_dataset -c \'{"process_name": "dataset_7_201126_v1", "references": '
    "[37, 50, 9002]}'": Covered(REVIEW_DAGS, DAGS_TEST),
    'airflow dags test inference_merge -c \'{"process_names": ["a", "b"], '
    '"target_process_name": "c"}\'': Covered(MERGE_DAG, DAGS_TEST),
    'airflow dags test inference_merge -c \'{"process_names": ["dataset_7_201126_v1", '
    '"dataset_7_201126_v2"], "target_process_name": "merged_1", "register": true}\'': Covered(
        MERGE_DAG, DAGS_TEST
    ),
    # --- include/imdb_sample/README.md -----------------------------------------------------------
    "S=../shared/data/imdb; D=include/imdb_sample": Runs(SAMPLE, "D: a temporary folder"),
    "for n in name.basics title.basics title.crew title.principals title.ratings; do gzip -9 -n -c "
    '"$S/head-2025-04/$n.tsv" > "$D/$n.tsv.gz"; done': Runs(SAMPLE),
    'for n in title.akas title.episode; do head -n 10001 "$S/head-2025-08/$n.tsv" | gzip -9 -n -c > '
    '"$D/$n.tsv.gz"; done': Runs(SAMPLE),
    'cp "$S/head-2025-08/LICENSE.parthti2003-IMDb-SQL-Practice-Project.txt" "$D/"': Runs(SAMPLE),
    "gzip -n": Covered(SAMPLE, "names the option; the test runs the commands that use it"),
    "zcat name.basics.tsv.gz | cmp - ../../../shared/data/imdb/head-2025-04/name.basics.tsv": Runs(SAMPLE),
    "sha256sum *.tsv.gz": Runs(SAMPLE),
}


# --- helpers -----------------------------------------------------------------------------------
@functools.cache
def _documented() -> dict:
    return all_commands()


def documented(command: str) -> str:
    """``command`` (normalized) after checking that a document shows it; fails otherwise."""
    assert command in _documented(), f"no document shows {command!r} any more"
    return command


def _shell_env(**extra: str) -> dict[str, str]:
    """A user's shell: no Airflow setting of this test session, no PYTHONPATH."""
    outer = ("PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")  # `make test`'s own make settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k not in outer}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return {**env, **extra}


def _bash(script: str, cwd: Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=_shell_env(**extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _node(test: str) -> tuple[Path, str]:
    path, _, name = test.partition("::")
    return REPO / path, name


def _defined_tests(path: Path) -> set[str]:
    """``func`` and ``Class::func`` of every test function defined in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)}
    return {n for n in names if n.rsplit("::", 1)[-1].startswith("test")}


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        " ".join(n.value.split())
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


# --- the registry tests ------------------------------------------------------------------------
def test_every_documented_command_has_a_registry_entry():
    missing = {
        text: [f"{c.path}:{c.line}" for c in places]
        for text, places in _documented().items()
        if text not in REGISTRY
    }
    assert not missing, f"documented commands no test runs and no reason explains: {missing}"


def test_no_registry_entry_is_stale():
    stale = sorted(set(REGISTRY) - set(_documented()))
    assert not stale, f"registry entries no document shows: {stale}"


def test_every_entry_names_a_test_that_exists():
    wrong = []
    for command, entry in REGISTRY.items():
        if isinstance(entry, NotRun):
            assert entry.reason and entry.doc_says, command
            continue
        path, name = _node(entry.test)
        if not path.is_file() or name not in _defined_tests(path):
            wrong.append((command, entry.test))
    assert not wrong, f"entries naming no existing test: {wrong}"


def test_a_test_that_runs_a_command_holds_its_text():
    """A :class:`Runs` test module holds the command as documented (a string constant, whitespace
    normalized), so that changing the docs or the test shows up here."""
    missing = []
    for command, entry in REGISTRY.items():
        if isinstance(entry, Runs):
            path, _ = _node(entry.test)
            if not any(command in constant for constant in _string_constants(path)):
                missing.append((command, entry.test))
    assert not missing, missing


def test_a_command_no_test_runs_is_said_so_where_it_is_shown():
    """The phrase of a :class:`NotRun` entry is in the section showing the command (or in that
    document's preamble) at one place at least."""
    silent = []
    for command, entry in REGISTRY.items():
        if isinstance(entry, NotRun) and command in _documented():
            phrase = " ".join(entry.doc_says.split()).lower()
            places = _documented()[command]
            if not any(phrase in section_text(REPO / c.path, c.line) for c in places):
                silent.append((command, [f"{c.path}:{c.line}" for c in places], entry.doc_says))
    assert not silent, f"commands not run whose documents do not say so: {silent}"


def test_the_extractor_finds_block_synopsis_and_inline_commands(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text(
        "# T\n\nRun `make demo` or `IMDB_BASE_URL=http://x/ make demo`; not `dataset_ops.upload` or "
        "`AIRFLOW_VAR_X`.\n\n| a | `airflow dags test x` |\n|---|---|\n| b | `airflow.sdk` |\n\n"
        "```bash\nmake test   # all tests\n.venv/bin/python -m m \\\n  --flag 'a # b'\n"
        "for n in a b; do\n  echo $n\ndone\n# a comment line\n```\n\n"
        "```\nmake bench        # a comment\n.venv/bin/python b.py [--x]\n    [--y N]\n"
        "wall time: 3 s\npython 3.11.7, pyarrow 26\n```\n\n"
        "```console\n$ airflow dags list\noutput line\n```\n\n```yaml\nmake: not a command\n```\n",
        encoding="utf-8",
    )
    found = [(c.text, c.kind) for c in extract(doc, tmp_path)]
    assert found == [
        ("make test", "block"),
        (".venv/bin/python -m m --flag 'a # b'", "block"),
        ("for n in a b; do echo $n; done", "block"),
        ("make bench", "block"),
        (".venv/bin/python b.py [--x] [--y N]", "block"),
        ("airflow dags list", "block"),
        ("make demo", "inline"),
        ("IMDB_BASE_URL=http://x/ make demo", "inline"),
        ("airflow dags test x", "inline"),
    ]
    assert normalize("a  b   # c\n  d") == "a b; d"


# --- make demo, demo.env and the staging commands, in a temporary checkout -------------------------
@pytest.fixture(scope="module")
def demo_checkout(tmp_path_factory):
    """A folder standing for the checkout (``.venv`` linked to the project's) whose ``.data`` the
    demo fills: ``make demo``'s recipe run with ``--data-dir <checkout>/.data``. Yields (checkout,
    demo output); drops the demo's PostgreSQL database afterwards."""
    import demo
    import psycopg
    from helpers.services import PG_ADMIN_URL

    checkout = tmp_path_factory.mktemp("checkout")
    (checkout / ".venv").symlink_to(REPO / ".venv")
    data = checkout / ".data"
    target = shlex.quote(documented("make demo").split()[1])
    recipe = _ok(_bash(f"make -n --no-print-directory {target}", cwd=REPO)).splitlines()[-1]
    assert recipe == ".venv/bin/python scripts/demo.py", recipe  # what `make demo` runs after `install`
    started = time.monotonic()
    out = _ok(_bash(f"{recipe} --data-dir {shlex.quote(str(data))}", cwd=REPO, timeout=600))
    try:
        yield checkout, out, time.monotonic() - started
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{demo.demo_database(data)}" WITH (FORCE)')


def _sample_rows() -> dict[str, int]:
    """Data rows per dump from include/imdb_sample/README.md's table."""
    text = (REPO / "include" / "imdb_sample" / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z.]+)\.tsv\.gz` \| ([\d,]+) \|", text, flags=re.M)
    return {name: int(count.replace(",", "")) for name, count in rows}


def test_make_demo_downloads_and_loads_the_bundled_sample(demo_checkout):
    """README: `make demo` "runs the IMDb download + COPY load on the bundled sample", and
    docs/operations.md: "once:
    creates .data/airflow (SQLite metadata DB), pools, Variables, Connection, database": every
    table of the sample is published with the rows include/imdb_sample/README.md lists."""
    import psycopg

    documented("make demo")
    checkout, out, _ = demo_checkout
    assert "imdb_download: 7 downloaded, 0 unchanged" in out, out
    assert "imdb_load: 7 table(s) published" in out, out
    assert (checkout / ".data" / "airflow" / "airflow.db").is_file()
    uri = re.search(r"psql (\S+) -c", out).group(1)
    rows = _sample_rows()
    assert len(rows) == 7
    with psycopg.connect(uri) as conn:
        for name, count in rows.items():
            table = "imdb." + name.replace(".", "_")
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count, table


def _runs(checkout: Path, dag_id: str) -> list[tuple[str, str, str | None]]:
    """(run_type, state, logical_date) of the DAG's runs in the demo home's metadata DB."""
    with sqlite3.connect(checkout / ".data" / "airflow" / "airflow.db") as db:
        return db.execute(
            "SELECT run_type, state, logical_date FROM dag_run WHERE dag_id = ? ORDER BY id", (dag_id,)
        ).fetchall()


def test_demo_env_gives_the_airflow_cli_the_demo_home(demo_checkout):
    """docs/operations.md: "`source .data/demo.env` gives a shell the same home and metadata DB for the
    `airflow` CLI, e.g. `airflow dags trigger imdb_download` or `airflow backfill create ...`":
    both land in the demo home's DB beside the demo's own run; the backfill makes one run per
    day 2026-11-01 .. 11-03 (imdb_download runs @daily, at midnight)."""
    checkout, _, _ = demo_checkout
    before = _runs(checkout, "imdb_download")
    assert [r[:2] for r in before] == [("manual", "success")]  # the demo's dag.test() run
    script = "\n".join(
        [
            documented("source .data/demo.env"),
            documented("airflow dags trigger imdb_download"),
            documented(
                "airflow backfill create --dag-id imdb_download --from-date 2026-11-01 --to-date 2026-11-03"
            ),
        ]
    )
    _ok(_bash("set -e\n" + script, cwd=checkout))
    after = _runs(checkout, "imdb_download")[1:]
    assert after[0][:2] == ("manual", "queued")  # triggered: waits for a scheduler
    backfill = [r for r in after if r[0] == "backfill"]
    assert [r[2][:10] for r in backfill] == ["2026-11-01", "2026-11-02", "2026-11-03"], after
    assert all(r[2][11:19] == "00:00:00" for r in backfill)


def test_staged_upload_commands_on_the_demo_home_do_what_the_docs_say(demo_checkout):
    """The staged-upload block of docs/staging.md, the "Opening the Airflow UI locally" commands of
    docs/operations.md, and the
    uploads of docs/airflow-dags-test.md, on the demo home: uploads land in `uploads/` of the
    Variable's root or of `--root`; `airflow dags test staged_upload_validation` (after `source
    .data/demo.env`) promotes the good files to `fresh/` (gsm8k 7,473 and the tweets 14,640
    records) and quarantines the bad ones (the mangled CSV with the page's error); the listing
    shows them, and `--state failed` only the failed ones."""
    checkout, _, _ = demo_checkout
    staging = checkout / ".data" / "staging"
    variable_root = checkout / "variable-root"
    lines = (SHARED / "ml" / "gsm8k_train.jsonl").read_bytes().splitlines(keepends=True)
    (checkout / "train.jsonl").write_bytes(b"".join(lines[:40]))
    (checkout / "bad.jsonl").write_bytes(lines[0] + b"[1, 2]\n")
    readme_upload = documented(
        ".venv/bin/python -m dataset_ops.upload train.jsonl --data-type training_jsonl"
    )
    readme_local = documented(
        ".venv/bin/python -m dataset_ops.upload train.jsonl --data-type training_jsonl --root .data/staging"
    )
    readme_failed = documented(".venv/bin/python -m dataset_ops.staging list --state failed")
    ui_upload = documented(
        ".venv/bin/python -m dataset_ops.upload FILE --data-type training_jsonl --root .data/staging"
    )

    # the docs/staging.md block in the demo's shell: the Variable staging_root from the demo's metadata
    # database (.data/staging), then --root (the same file again: a no-op); then in a shell with
    # the Variable's environment form, which wins
    source = documented("source .data/demo.env")
    _ok(_bash(f"set -e\n{source}\n{readme_upload}\n{readme_local}", cwd=checkout))
    assert (staging / "uploads" / "train.jsonl").read_bytes() == (checkout / "train.jsonl").read_bytes()
    _ok(_bash(readme_upload, cwd=checkout, AIRFLOW_VAR_STAGING_ROOT=str(variable_root)))
    assert (variable_root / "uploads" / "train.jsonl").read_bytes() == (checkout / "train.jsonl").read_bytes()
    # the UI section's upload, FILE a file with a bad line
    _ok(_bash(ui_upload.replace("FILE", "bad.jsonl"), cwd=checkout))
    # docs/airflow-dags-test.md's uploads: from the repository root, with shared/ beside it
    docs_uploads = [
        documented(
            "python -m dataset_ops.upload ../shared/data/ml/gsm8k_train.jsonl --name gsm8k/train.jsonl "
            "--data-type training_jsonl"
        ),
        documented(
            "python -m dataset_ops.upload ../shared/data/messy_csv/Tweets.airline-sentiment.csv --name "
            "tweets/airline.csv --data-type tweets_csv"
        ),
        documented(
            "python -m dataset_ops.upload ../shared/data/messy_csv/Tweets.airline-sentiment.invalid-utf8.csv "
            "--name tweets/airline-mangled.csv --data-type tweets_csv"
        ),
    ]
    if SHARED.resolve() != (REPO.parent / "shared" / "data").resolve():  # DATASET_OPS_SHARED_DATA
        docs_uploads = [c.replace("../shared/data", str(SHARED)) for c in docs_uploads]
    _ok(_bash("set -e\n" + "\n".join(docs_uploads), cwd=REPO, AIRFLOW_VAR_STAGING_ROOT=str(staging)))
    assert sorted(
        p.relative_to(staging / "uploads").as_posix() for p in (staging / "uploads").rglob("*.*")
    ) == [
        "bad.jsonl",
        "gsm8k/train.jsonl",
        "train.jsonl",
        "tweets/airline-mangled.csv",
        "tweets/airline.csv",
    ]

    dags_test = documented("airflow dags test staged_upload_validation")
    run = _bash(f"set -e\n{documented('source .data/demo.env')}\n{dags_test}", cwd=checkout, timeout=600)
    _ok(run)
    assert list((staging / "uploads").rglob("*.*")) == []
    listing = _ok(_bash(documented("python -m dataset_ops.staging list --root .data/staging"), cwd=checkout))
    rows = {line.split()[1]: line for line in listing.splitlines() if line.strip()}
    assert {name: row.split()[0] for name, row in rows.items()} == {
        "bad.jsonl": "failed",
        "gsm8k/train.jsonl": "fresh",
        "train.jsonl": "fresh",
        "tweets/airline-mangled.csv": "failed",
        "tweets/airline.csv": "fresh",
    }, listing
    assert "7,473 rec" in rows["gsm8k/train.jsonl"] and "14,640 rec" in rows["tweets/airline.csv"]
    assert "line 1, offset 0: header columns are in a different order" in rows["tweets/airline-mangled.csv"]
    assert (staging / "fresh" / "gsm8k" / "train.jsonl").is_file()
    assert (staging / "failed" / "tweets" / "airline-mangled.csv.report.json").is_file()

    # the block's listing of failed files; the docs' bare `list` with the Variable's shell form
    failed = _ok(_bash(f"{source}\n{readme_failed}", cwd=checkout))
    assert sorted(line.split()[1] for line in failed.splitlines()) == [
        "bad.jsonl",
        "tweets/airline-mangled.csv",
    ]
    assert all(line.split()[0] == "failed" for line in failed.splitlines())
    bare = _ok(_bash(f"{source}\n{documented('python -m dataset_ops.staging list')}", cwd=checkout))
    assert bare == listing


# --- the stand-in services of docs/airflow-dags-test.md and the ingest image's command ----------
def _start(command: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=cwd,
        env=_shell_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _first_line(proc: subprocess.Popen, timeout: float = 120) -> str:
    import select

    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the server printed no base URL"
    return proc.stdout.readline().strip()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _get_json(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def test_the_stand_in_services_and_the_ingest_command_of_the_docs(tmp_path):
    """docs/airflow-dags-test.md's stand-ins, started as the page shows: moto's S3 server answers
    S3; the Apify server serves run HG7ML7M8z78YcAPEB with 61 items to the token `test-token`;
    the inventory server (seed 11) serves the services. The page's `export` lines for S3, the
    lake root and productos_service, placeholders filled in, then the ingest image's command
    (include/docker/README.md) for categorias on 2026-11-12 land the page's partition
    `categorias/dt=2026-11-12/categorias_20261112_020000.*` with its 36 rows."""
    import boto3
    from helpers.services import free_port

    s3_port = free_port()
    servers = []
    try:
        moto = _start(
            documented("python -m moto.server -H 127.0.0.1 -p <s3_port>").replace("<s3_port>", str(s3_port)),
            REPO,
        )
        servers.append(moto)
        apify = _start(documented("python tests/helpers/apify_server.py --port 0"), REPO)
        servers.append(apify)
        inventory = _start(documented("python tests/helpers/inventory_server.py --port 0 --seed 11"), REPO)
        servers.append(inventory)

        apify_url, inventory_url = _first_line(apify), _first_line(inventory)
        run = _get_json(f"{apify_url}/v2/actor-runs/HG7ML7M8z78YcAPEB", token="test-token")["data"]
        items = _get_json(f"{apify_url}/v2/datasets/{run['defaultDatasetId']}/items", token="test-token")
        assert run["status"] == "SUCCEEDED" and len(items) == 61

        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            region_name="us-east-1",
            aws_access_key_id="docs-key",
            aws_secret_access_key="docs-secret",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.create_bucket(Bucket="inventario-datalake")
                break
            except Exception:
                if time.monotonic() > deadline or moto.poll() is not None:
                    raise
                time.sleep(0.3)

        filled = {
            "<key>": "docs-key",
            "<secret>": "docs-secret",
            "<s3_port>": str(s3_port),
            "<inventory_port>": inventory_url.rsplit(":", 1)[1].strip("/"),
        }
        exports = [
            documented(
                'export AIRFLOW_CONN_AWS_DEFAULT=\'{"conn_type": "aws", "login": "<key>", '
                '"password": "<secret>", '
                '"extra": {"endpoint_url": "http://127.0.0.1:<s3_port>", "region_name": "us-east-1"}}\''
            ),
            documented(
                'export AIRFLOW_CONN_PRODUCTOS_SERVICE=\'{"conn_type": "http", "host": "127.0.0.1", "port": '
                '<inventory_port>, "schema": "http"}\''
            ),
            documented("export AIRFLOW_VAR_DATALAKE_ROOT=s3://inventario-datalake/"),
        ]
        script = "\n".join(exports)
        for placeholder, value in filled.items():
            script = script.replace(placeholder, value)
        ingest = documented("python -m dataset_ops.ingest ENTITY --start ISO --end ISO --layout ...")
        ingest = (
            ingest.replace("ENTITY", "categorias")
            .replace("--start ISO", "--start 2026-11-12T02:00:00+00:00")
            .replace("--end ISO", "--end 2026-11-13T02:00:00+00:00")
            .replace("--layout ...", "--layout partitioned")
        )
        metrics = json.loads(_ok(_bash(f"set -e\n{script}\n{ingest}", cwd=tmp_path)).splitlines()[-1])
        assert metrics["rows"] == 36, metrics
        keys = sorted(
            o["Key"]
            for o in s3.list_objects_v2(Bucket="inventario-datalake").get("Contents", [])
            if "categorias" in o["Key"]
        )
        assert "categorias/dt=2026-11-12/categorias_20261112_020000.csv" in keys, keys
        csv = s3.get_object(
            Bucket="inventario-datalake", Key="categorias/dt=2026-11-12/categorias_20261112_020000.csv"
        )
        assert len(csv["Body"].read().decode().strip().splitlines()) == 1 + 36
    finally:
        for proc in servers:
            _stop(proc)


# --- include/imdb_sample/README.md ----------------------------------------------------------------
def test_the_imdb_sample_is_remade_byte_for_byte_by_its_readme_commands(tmp_path):
    """ "How they were made", run from the repository root with `D` a temporary folder: the files
    are byte for byte the bundled ones (gzip -n: no name, no time stamp), and the README's checks
    (`zcat ... | cmp`, `sha256sum` against its table) pass on the bundled folder."""
    sample = REPO / "include" / "imdb_sample"
    made = tmp_path / "made"
    made.mkdir()
    block = [
        documented("S=../shared/data/imdb; D=include/imdb_sample"),
        documented(
            "for n in name.basics title.basics title.crew title.principals title.ratings; do gzip -9 -n -c "
            '"$S/head-2025-04/$n.tsv" > "$D/$n.tsv.gz"; done'
        ),
        documented(
            'for n in title.akas title.episode; do head -n 10001 "$S/head-2025-08/$n.tsv" | gzip -9 -n -c > '
            '"$D/$n.tsv.gz"; done'
        ),
        documented('cp "$S/head-2025-08/LICENSE.parthti2003-IMDb-SQL-Practice-Project.txt" "$D/"'),
    ]
    imdb = SHARED / "imdb"
    script = (
        block[0]
        .replace("S=../shared/data/imdb", f"S={shlex.quote(str(imdb))}")
        .replace("D=include/imdb_sample", f"D={shlex.quote(str(made))}")
    )
    script += "\n" + "\n".join(block[1:])
    _ok(_bash("set -e\n" + script, cwd=REPO))
    bundled = sorted(p.name for p in sample.iterdir() if p.name != "README.md")
    assert sorted(p.name for p in made.iterdir()) == bundled
    for name in bundled:
        assert (made / name).read_bytes() == (sample / name).read_bytes(), name

    readme = (sample / "README.md").read_text(encoding="utf-8")
    table = dict(
        re.findall(r"^\| `([a-z.]+\.tsv\.gz)` \| [\d,]+ \| [\d,]+ \| `([0-9a-f]{64})`", readme, flags=re.M)
    )
    assert len(table) == 7
    sums = _ok(_bash(documented("sha256sum *.tsv.gz"), cwd=sample))
    assert {line.split()[1]: line.split()[0] for line in sums.splitlines()} == table
    check = documented(
        "zcat name.basics.tsv.gz | cmp - ../../../shared/data/imdb/head-2025-04/name.basics.tsv"
    )
    if imdb.resolve() != (REPO.parent / "shared" / "data" / "imdb").resolve():
        check = check.replace("../../../shared/data/imdb", str(imdb))
    _ok(_bash(check, cwd=sample))
    with gzip.open(sample / "title.ratings.tsv.gz") as fh:  # a file the check above does not cover
        assert fh.read() == (imdb / "head-2025-04" / "title.ratings.tsv").read_bytes()
    assert shutil.which("cmp") and shutil.which("sha256sum")
