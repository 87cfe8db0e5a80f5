"""A user without any access to the DAG ``staged_upload_validation`` can neither upload nor list.

The simple auth manager's roles (viewer, user, op, admin) reach every DAG, so a user with no read
access to one DAG needs per-DAG permissions: Airflow's multi-team mode gives them. Here the DAG
bundle ``dags-folder`` belongs to the team ``uploaders``; ``member`` (role user, team
``uploaders``) may upload, ``outsider`` (role user, team ``others``) gets 403 on every staging
route, through the same permission check the Uploads page's calls go through. Airflow's own API
app, built in the test process with the suite's plugin (helpers.airflow_api); the staging root is
a local folder. Afterwards the bundle is synced again without a team, as the other tests expect."""

from __future__ import annotations

import json

import pytest
from helpers.airflow_api import airflow_api_client, bearer_headers

pytestmark = pytest.mark.integration

DAG_ID = "staged_upload_validation"
BASE = "/dataset-ops/staging"
TEAM, OTHER_TEAM = "uploaders", "others"
USERS = {
    "admin": ("admin", "admin-pw"),
    "member": (f"user:{TEAM}", "member-pw"),
    "outsider": (f"user:{OTHER_TEAM}", "outsider-pw"),
}
BUNDLES = json.dumps(
    [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {},
            "team_name": TEAM,
        }
    ]
)


def _sync_bundles() -> None:
    """Sync the bundles as configured now, and forget the DAG teams Airflow cached in this
    process (``[core] team_name_cache_ttl``, 30 s)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dag import clear_team_name_cache
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    clear_team_name_cache()


@pytest.fixture(scope="module")
def teams_app(tmp_path_factory):
    """(client, headers by user) with the DAG's bundle owned by the team ``uploaders``."""
    from airflow.models.team import Team
    from airflow.utils.session import create_session

    with create_session() as session:
        for name in (TEAM, OTHER_TEAM):
            if Team.get_name_if_exists(name, session=session) is None:
                session.add(Team(name=name))
    root = tmp_path_factory.mktemp("teams-staging")
    env = {
        "AIRFLOW__CORE__MULTI_TEAM": "True",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": BUNDLES,
        "AIRFLOW_VAR_STAGING_ROOT": str(root),
    }
    try:
        with airflow_api_client(tmp_path_factory.mktemp("teams-api"), [DAG_ID], env, USERS) as client:
            from airflow.models.dag import DagModel, clear_team_name_cache

            clear_team_name_cache()
            assert DagModel.get_team_name(DAG_ID) == TEAM  # the setting took: the DAG is the team's
            yield client, bearer_headers(client, USERS)
    finally:
        _sync_bundles()  # multi-team off again: the bundle loses its team


def start(client, headers, name="team/check.jsonl"):
    return client.post(
        f"{BASE}/s3/multipart",
        json={"filename": name, "metadata": {"data_type": "training_jsonl", "size": 10}},
        headers=headers,
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/staged-files"),
        ("GET", "/file-info/team/check.jsonl"),
        ("GET", "/upload-progress/team/check.jsonl"),
        ("GET", "/download-file/team/check.jsonl"),
        ("GET", "/health"),
        ("GET", "/metrics"),
        ("GET", "/rule-sets"),
        ("POST", "/process-file/team/check.jsonl"),
        ("POST", "/retry-failed-file/team/check.jsonl"),
        ("GET", "/s3/multipart/some-upload-id?key=uploads/team/check.jsonl"),
        ("GET", "/s3/multipart/some-upload-id/1?key=uploads/team/check.jsonl"),
        ("DELETE", "/s3/multipart/some-upload-id?key=uploads/team/check.jsonl"),
        ("POST", "/s3/multipart/some-upload-id/complete?key=uploads/team/check.jsonl"),
        ("PUT", "/parts/some-upload-id/1?key=uploads/team/check.jsonl"),
        ("DELETE", "/cleanup-failed-uploads"),
    ],
)
def test_a_user_outside_the_dags_team_is_refused_everywhere(teams_app, method, path):
    client, headers = teams_app
    answer = client.request(method, BASE + path, headers=headers["outsider"])
    assert answer.status_code == 403, (method, path, answer.status_code, answer.text)


def test_an_outsider_cannot_start_an_upload_and_a_member_can(teams_app):
    client, headers = teams_app
    refused = start(client, headers["outsider"])
    assert refused.status_code == 403, refused.text
    listing = client.get(f"{BASE}/staged-files", headers=headers["member"])
    assert listing.status_code == 200 and listing.json()["files"] == [], listing.text
    started = start(client, headers["member"])
    assert started.status_code == 200, started.text
    listed = client.get(f"{BASE}/staged-files", headers=headers["member"]).json()["files"]
    assert [f["file_id"] for f in listed] == ["team/check.jsonl"]
    # the outsider still sees nothing of it, not even its progress
    assert client.get(f"{BASE}/staged-files", headers=headers["outsider"]).status_code == 403
    progress = client.get(f"{BASE}/upload-progress/team/check.jsonl", headers=headers["outsider"])
    assert progress.status_code == 403, progress.text
