"""The old inventory service's client scripts, run against the suite's running API server.

Seed ``000_7188696ca1829e4a`` ("Gestión de Datasets") gives four workflows ("Flujos") and a
dashboard snippet written against ``http://localhost:8001/api/v1/apify/facebook``. They are
copied below as the seed prints them, with two changes only: the base URL (the acceptance
Airflow's api-server, same path ``/api/v1/apify/facebook``) and an ``Authorization`` header (a JWT
from ``POST /auth/token``). Flujo 2's ``schedule`` loop is not run (it never returns): its job,
``cleanup_old_datasets``, is called once. The dashboard's ``calculate_oldest_age`` and
``calculate_newest_age`` are not in the seed; they are written here the way such a script would
(naive ``datetime.now()`` minus the parsed ``created_at``).

The downloads are real: ``apify_dataset_download`` runs on the scheduler against the Apify test
server (``helpers.apify_server``) and writes to the S3 storage root.
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stdout
from datetime import datetime

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]

DAG_ID = "apify_dataset_download"
#: A second Apify run on the test server (17 letters and digits), downloaded by Flujo 4.
MIGRATED = "MigrationRun00001"
#: What the seed's examples use (never an actor run on the test server, never stored).
SEED_EXAMPLE_RUN = "bfMXWLphPQcDmBsrz"

# the two changes: the base URL and the header (set by the fixture below)
BASE = "http://localhost:8001/api/v1/apify/facebook"
HEADERS: dict[str, str] = {}


@pytest.fixture
def seed_client(acceptance, monkeypatch):
    """The scripts' globals pointed at the acceptance api-server; the download DAG unpaused
    (restored afterwards); the second Apify run (four real items) on the test server."""
    monkeypatch.setattr(sys.modules[__name__], "BASE", f"{acceptance.stack.api_url}/api/v1/apify/facebook")
    monkeypatch.setitem(HEADERS, "Authorization", f"Bearer {acceptance.stack.token()}")
    acceptance.apify.add_run(MIGRATED, items=acceptance.apify.items[:4])
    was_paused = acceptance.dags.get_dag(dag_id=DAG_ID).is_paused
    acceptance.set_paused(DAG_ID, False)
    yield acceptance
    acceptance.set_paused(DAG_ID, was_paused)


# --- Flujo 1: Auditoría de Almacenamiento (seed 000) ---------------------------------------------
def flujo_1():
    # 1. Listar todos los datasets
    response = requests.get(f"{BASE}/runs/list", headers=HEADERS)
    data = response.json()

    total_size = sum(run["size_bytes"] for run in data["runs"])
    print(f"Total datasets: {data['total_runs']}")
    print(f"Espacio total usado: {total_size / (1024**3):.2f} GB")

    # 2. Identificar datasets grandes
    large_runs = [r for r in data["runs"] if r["size_bytes"] > 100 * 1024 * 1024]
    print(f"Datasets >100MB: {len(large_runs)}")


# --- Flujo 2: Limpieza Automática Programada (seed 000; the job, without the schedule loop) ------
def cleanup_old_datasets():
    """Ejecuta limpieza automática cada semana"""
    response = requests.post(
        f"{BASE}/runs/cleanup",
        json={"days_old": 30, "keep_recent": 10, "dry_run": False},
        headers=HEADERS,
    )
    result = response.json()
    print(f"Limpieza completada: {result['freed_space_bytes'] / (1024**2):.2f} MB liberados")


# --- Flujo 3: Verificación de Integridad (seed 000) ---------------------------------------------
def verify_dataset_integrity(run_id):
    """Verifica que un dataset esté completo"""
    response = requests.get(f"{BASE}/runs/{run_id}", headers=HEADERS)

    if response.status_code == 404:
        return False, "Dataset no encontrado"

    data = response.json()
    files = data["files"]

    checks = {
        "CSV": files["csv"]["exists"],
        "JSONL": files["jsonl"]["exists"],
        "Media": files["media"]["exists"],
    }

    all_ok = all(checks.values())
    return all_ok, checks


# --- Flujo 4: Migración de Datasets (seed 000) --------------------------------------------------
def download_dataset_for_migration(run_id, download_media=True):
    """Descarga dataset desde Apify para migración"""
    response = requests.post(
        f"{BASE}/download-dataset-from-run",
        json={"run_id": run_id, "download_media": download_media, "force_download": False},
        headers=HEADERS,
    )

    if response.status_code == 200:
        data = response.json()
        print(f"Dataset descargado: {data['size_bytes'] / (1024**2):.2f} MB")
        return True
    else:
        print(f"Error: {response.json()['detail']}")
        return False


# --- Dashboard Recomendado (seed 000) -------------------------------------------------------------
def calculate_oldest_age(runs):
    return max((datetime.now() - datetime.fromisoformat(r["created_at"])).days for r in runs)


def calculate_newest_age(runs):
    return min((datetime.now() - datetime.fromisoformat(r["created_at"])).days for r in runs)


def get_storage_metrics():
    """Obtiene métricas de almacenamiento"""
    response = requests.get(f"{BASE}/runs/list", headers=HEADERS)
    data = response.json()

    total_size = sum(r["size_bytes"] for r in data["runs"])
    avg_size = total_size / data["total_runs"] if data["total_runs"] > 0 else 0

    return {
        "total_runs": data["total_runs"],
        "total_size_gb": total_size / (1024**3),
        "avg_size_mb": avg_size / (1024**2),
        "oldest_run_days": calculate_oldest_age(data["runs"]),
        "newest_run_days": calculate_newest_age(data["runs"]),
    }


def _printed(func, *args) -> tuple[object, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        result = func(*args)
    return result, out.getvalue()


# --- the scripts, in the order a user would run them ---------------------------------------------
def test_the_seeds_scripts_work_against_the_suite(seed_client):
    acc = seed_client
    before = {r.dag_run_id for r in acc.runs(DAG_ID)}

    # Flujo 4: a real download through the DAG (answered when the dataset is stored), then the
    # seed's own placeholders, which are not Apify run ids: the script prints the 422's detail
    ok, printed = _printed(download_dataset_for_migration, MIGRATED)
    assert ok is True, printed
    assert printed.startswith("Dataset descargado: ") and printed.endswith(" MB\n"), printed
    new_runs = [r for r in acc.runs(DAG_ID) if r.dag_run_id not in before]
    assert [(r.state.value, r.conf["run_id"]) for r in new_runs] == [("success", MIGRATED)]
    ok, printed = _printed(download_dataset_for_migration, MIGRATED)  # stored: no new DAG run
    assert ok is True and len([r for r in acc.runs(DAG_ID) if r.dag_run_id not in before]) == 1
    for placeholder in ["run1", "run2", "run3"]:
        ok, printed = _printed(download_dataset_for_migration, placeholder)
        assert ok is False and printed.startswith("Error: [{") and "run_id" in printed, printed

    # Flujo 3: the downloaded dataset is whole; the seed's example id is not stored
    assert verify_dataset_integrity(MIGRATED) == (True, {"CSV": True, "JSONL": True, "Media": True})
    assert verify_dataset_integrity(SEED_EXAMPLE_RUN) == (False, "Dataset no encontrado")

    # Flujo 1: the audit prints the figures of the listing
    listing = acc.stack.get("/dataset-ops/apify/facebook/runs/list")
    assert MIGRATED in {r["run_id"] for r in listing["runs"]}
    _, printed = _printed(flujo_1)
    total = sum(r["size_bytes"] for r in listing["runs"])
    assert printed.splitlines() == [
        f"Total datasets: {listing['total_runs']}",
        f"Espacio total usado: {total / (1024**3):.2f} GB",
        "Datasets >100MB: 0",
    ]

    # the dashboard: ages from the old service's dates (no offset) against a naive now()
    metrics = get_storage_metrics()
    assert metrics["total_runs"] == listing["total_runs"] and metrics["newest_run_days"] == 0
    assert metrics["avg_size_mb"] == pytest.approx(total / listing["total_runs"] / 1024**2)

    # Flujo 2: the weekly cleanup deletes nothing younger than 30 days
    _, printed = _printed(cleanup_old_datasets)
    assert printed == "Limpieza completada: 0.00 MB liberados\n"
    after = acc.stack.get("/dataset-ops/apify/facebook/runs/list")
    assert {r["run_id"] for r in after["runs"]} == {r["run_id"] for r in listing["runs"]}
