"""The suite's HTTP API fuzzed against its own OpenAPI on the running api-server.

``schemathesis run`` (the CLI, as a user would run it) reads ``/dataset-ops/openapi.json`` from
the acceptance Airflow's api-server and sends generated requests to every operation with a real
token, a bounded number of examples per operation, deterministic generation, checking that no answer is a
server error, that status codes and response bodies match the schema. Requests without the token
must be refused with 401. DAG runs that the fuzzer's requests trigger (``apify_dataset_download``
from ``POST download-dataset-from-run``, ``staged_upload_validation`` from the staging routes; the
DAGs are paused, so they never start) are deleted afterwards through the REST API.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
MAX_EXAMPLES = 25  # per operation of the Apify routes (5 operations)
# the stateful phase (chains of calls through inferred links) took 171 s here for 78 scenarios
PHASES = "examples,coverage,fuzzing"
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"


def _schemathesis(acc, *args: str, token: str | None) -> subprocess.CompletedProcess:
    stack = acc.stack
    argv = [
        SCHEMATHESIS,
        "run",
        f"{stack.api_url}/dataset-ops/openapi.json",
        "--url",
        f"{stack.api_url}/dataset-ops",
    ]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    argv += ["--no-color", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


#: (path regex, the DAG whose runs the routes trigger, examples per operation, phases): the staging
#: routes are fuzzed in depth (coverage phase included) in tests/plugins/staging/test_staging_api.py;
#: here, on the real api-server with an S3 staging root, 5 examples without the coverage phase keep
#: the run short (25 with it took about 80 s more; 5 with it, 43 s).
ROUTERS = [
    ("^/apify/", "apify_dataset_download", MAX_EXAMPLES, PHASES),
    ("^/staging/", "staged_upload_validation", 5, "examples,fuzzing"),
]


@pytest.mark.parametrize(("paths", "dag_id", "examples", "phases"), ROUTERS, ids=["apify", "staging"])
def test_the_api_answers_every_generated_request_without_a_server_error(
    acceptance, paths, dag_id, examples, phases
):
    acc = acceptance
    acc.set_paused(dag_id, True)
    before = {r.dag_run_id for r in acc.runs(dag_id)}
    try:
        result = _schemathesis(
            acc,
            "--include-path-regex",
            paths,
            "--checks",
            CHECKS,
            "--max-examples",
            str(examples),
            "--generation-deterministic",
            "--phases",
            phases,
            token=acc.stack.token(),
        )
    finally:
        for run in acc.runs(dag_id):
            if run.dag_run_id not in before:
                acc.discard_run(dag_id, run.dag_run_id)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output or " passed" in output, output[-3000:]


@pytest.mark.parametrize("mount", ["/dataset-ops", "/api/v1/apify/facebook"])
def test_without_a_token_every_documented_operation_answers_401(acceptance, mount):
    """The suite's API and the old inventory service's paths (the plugin's two mounts)."""
    import requests

    stack = acceptance.stack
    spec = requests.get(
        f"{stack.api_url}{mount}/openapi.json",
        headers={"Authorization": f"Bearer {stack.token()}"},
        timeout=30,
    ).json()
    operations = [
        (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(operations) >= (20 if mount == "/dataset-ops" else 6), operations
    for method, path in operations:
        answer = requests.request(method, f"{stack.api_url}{mount}{path}", json={}, timeout=30)
        assert answer.status_code == 401, (method, path, answer.status_code, answer.text[:300])
