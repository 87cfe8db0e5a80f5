"""Airflow's own API app built in the test process, with the suite's plugin mounted by Airflow's
plugin manager (``plugins/dataset_ops_plugin.py``), the simple auth manager and three users, and
the DAGs the routes trigger serialized into the session's metadata DB (tests/conftest.py)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: The JWT secret of every in-process Airflow API app of the session. Airflow caches its token
#: signer per process (``BaseAuthManager._get_token_signer`` is a cached classmethod), so the first
#: app's secret signs every token of the session: one value for all, which a standalone server
#: validating those tokens must be given too.
JWT_SECRET = "test-secret-for-the-dataset-ops-api-tests-" + "x" * 32
#: user -> (simple auth manager role, password written to the passwords file)
USERS = {"admin": ("admin", "admin-pw"), "editor": ("user", "editor-pw"), "viewer": ("viewer", "viewer-pw")}


@contextmanager
def airflow_api_client(
    tmp: Path, dag_ids: list[str], env: dict[str, str] | None = None, users: dict | None = None
):
    """A ``TestClient`` of Airflow's API app with ``users`` (default :data:`USERS`: user -> (role,
    password), the role may end in ``:team1|team2`` in multi-team mode); ``dag_ids`` (files
    ``dags/<id>.py``) are serialized first; ``env`` is set while the app lives."""
    from fastapi.testclient import TestClient

    users = users or USERS
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps({user: pw for user, (_, pw) in users.items()}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        mp.setenv(
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{u}:{r}" for u, (r, _) in users.items())
        )
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        for dag_id in dag_ids:
            serialize_dag(dag_id)
        from airflow.api_fastapi.app import create_app, purge_cached_app

        purge_cached_app()  # a fresh auth manager with these users
        with TestClient(create_app()) as client:
            yield client
        purge_cached_app()


def serialize_dag(dag_id: str):
    """Write the DAG ``dag_id`` (only its file) to the metadata DB, as the dag-processor would, so
    that the API can trigger it; returns the parsed DAG."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    dags = REPO / "dags"
    bag = BundleDagBag(dag_folder=str(dags / f"{dag_id}.py"), bundle_path=dags, bundle_name="dags-folder")
    assert not bag.import_errors, bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.get_dag(dag_id)


def bearer_headers(client, users: dict | None = None) -> dict[str, dict[str, str]]:
    """user -> ``{"Authorization": "Bearer <JWT>"}``, from ``POST /auth/token``, for ``users``
    (default :data:`USERS`)."""
    headers = {}
    for user, (_, password) in (users or USERS).items():
        resp = client.post("/auth/token", json={"username": user, "password": password})
        assert resp.status_code == 201, resp.text
        headers[user] = {"Authorization": f"Bearer {resp.json()['access_token']}"}
    return headers


def dag_runs(client, headers, dag_id: str) -> list[dict]:
    """Every run of ``dag_id`` through the core REST API."""
    resp = client.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1000}, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_runs"]


@contextmanager
def served(app):
    """``app`` (an ASGI app, e.g. a TestClient's ``.app``) served by uvicorn on 127.0.0.1 in a
    thread: real HTTP; yields the base URL ``http://127.0.0.1:PORT``."""
    import threading
    import time

    import uvicorn

    from helpers.services import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def team_owned_dags(tmp: Path, dag_ids: list[str], team: str, users: dict, env: dict[str, str] | None = None):
    """:func:`airflow_api_client` in multi-team mode with the bundle ``dags-folder`` (holding
    ``dag_ids``) owned by ``team``; the teams named in ``users``' roles (``role:team``) are
    created. Yields (client, user -> Authorization header). Afterwards the bundles are synced
    again without a team and Airflow's per-process DAG-team cache (30 s) is cleared."""
    from airflow.models.dag import DagModel
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    teams = {team} | {role.split(":", 1)[1] for role, _ in users.values() if ":" in role}
    with create_session() as session:
        for name in sorted(teams):
            if Team.get_name_if_exists(name, session=session) is None:
                session.add(Team(name=name))
    bundles = [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {},
            "team_name": team,
        }
    ]
    env = {
        "AIRFLOW__CORE__MULTI_TEAM": "True",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        **(env or {}),
    }
    try:
        with airflow_api_client(tmp, dag_ids, env, users) as client:
            _sync_team_cache()
            for dag_id in dag_ids:  # the setting took: the DAGs are the team's
                assert DagModel.get_team_name(dag_id) == team, dag_id
            yield client, bearer_headers(client, users)
    finally:
        _sync_bundles()  # multi-team off again: the bundle loses its team


def _sync_team_cache() -> None:
    from airflow.models.dag import clear_team_name_cache

    clear_team_name_cache()


def _sync_bundles() -> None:
    """Sync the bundles as configured now, and forget the DAG teams Airflow cached in this
    process (``[core] team_name_cache_ttl``, 30 s)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    _sync_team_cache()
