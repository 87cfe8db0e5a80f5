"""A user without any access to the DAG ``staged_upload_validation`` can neither upload nor list.

The simple auth manager's roles (viewer, user, op, admin) reach every DAG, so a user with no read
access to one DAG needs per-DAG permissions: Airflow's multi-team mode gives them. Here the DAG
bundle ``dags-folder`` belongs to the team ``uploaders``; ``member`` (role user, team
``uploaders``) may upload, ``outsider`` (role user, team ``others``) gets 403 on every staging
route, through the same permission check the Uploads page's calls go through. Airflow's own API
app, built in the test process with the suite's plugin (helpers.airflow_api); the staging root is
a local folder. Afterwards the bundle is synced again without a team, as the other tests expect."""

from __future__ import annotations

import pytest
from helpers.airflow_api import team_owned_dags

pytestmark = pytest.mark.integration

DAG_ID = "staged_upload_validation"
BASE = "/dataset-ops/staging"
TEAM, OTHER_TEAM = "uploaders", "others"
USERS = {
    "admin": ("admin", "admin-pw"),
    "member": (f"user:{TEAM}", "member-pw"),
    "outsider": (f"user:{OTHER_TEAM}", "outsider-pw"),
}


@pytest.fixture(scope="module")
def teams_app(tmp_path_factory):
    """(client, headers by user) with the DAG's bundle owned by the team ``uploaders``."""
    env = {"AIRFLOW_VAR_STAGING_ROOT": str(tmp_path_factory.mktemp("teams-staging"))}
    with team_owned_dags(tmp_path_factory.mktemp("teams-api"), [DAG_ID], TEAM, USERS, env) as app:
        yield app


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
