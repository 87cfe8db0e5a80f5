"""The Airflow 3.3.2 UI in headless Chromium (Playwright, Debian's ``/usr/bin/chromium``) on the
distributed stack (``airflow_stack``: CeleryExecutor, two workers, S3 on SeaweedFS, the Apify API fake).

For ``apify_dataset_download`` and ``dataset_retention``: log in on the SimpleAuthManager page,
open the DAG, open its Trigger form, fill one field per Param of the DAG (every Param must have a
value here, so a new Param fails the test until it is covered), save a screenshot of the filled
form (``docs/trigger-<dag_id>.png`` with ``make screenshots``), trigger, and watch the run's state
badge in the UI become Success. Then the run's conf must be exactly the filled values, and the
plugin's inventory endpoints (``/dataset-ops/apify/facebook/...``), opened in the same logged-in
browser (the UI's session cookie is the credential), must show what the run did: the downloaded
dataset complete with one frame per 2 s of each video (the interval filled in), and the
retention's deletions (the datasets past the 20 days filled in, beyond the 1 newest kept, with dry
run unticked). A browser without the session gets 401 there.

Selectors (Airflow 3.3.2): the Trigger form is a dialog headed ``Trigger Dag - <dag_id>``;
number Params are spinbuttons and boolean Params checkboxes named by the Param's ``title``; a
string Param's input is not labelled (its label points at another id), so it is found as the
textbox in the field group that shows the title. Switches hide their checkbox: the visible
switch (the checkbox's parent label) is clicked. After Trigger the UI opens the run's page,
whose header card has the state badge (``data-testid`` ``header-card`` / ``state-badge``).
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest
from helpers.apify_datasets import make_dataset
from helpers.apify_server import VIDEO_FPS, VIDEO_FRAMES, apify_id
from helpers.s3 import use_s3
from helpers.stack import STORAGE_PREFIX
from helpers.ui import (
    chromium,
    fill_params,
    logged_in_page,
    open_trigger_form,
    save_form_screenshot,
)

from dataset_ops.apify.inventory import DatasetNotFound, delete_dataset
from dataset_ops.storage import open_storage

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_MS = 300_000  # an upper bound for a run to end, not a timing assertion
FINAL_BADGE = re.compile(r"^\s*(Success|Failed)\s*$")
INVENTORY = "/dataset-ops/apify/facebook"

#: The Apify run the download form asks for (added to the stack's Apify fake by the test).
APIFY_RUN = apify_id("dataset-ops/browser-test")
FRAME_INTERVAL = 2  # seconds: the fake's 3 s videos give 2 frames each (3 at the default 1 s)
DOWNLOAD_FORM = {
    "run_id": APIFY_RUN,
    "download_media": True,
    "force_download": True,
    "extract_video_frames": True,
    "frame_interval_seconds": FRAME_INTERVAL,
}

#: Stored datasets for the retention run, by age in days: with days_old 20 and keep_recent 1 the
#: two past 20 days go; with the Params' defaults (30, 10, dry run) all four would stay.
RETENTION_AGES = {apify_id(f"dataset-ops/browser-test/{age}d"): age for age in (0, 15, 25, 27)}
RETENTION_FORM = {
    "days_old": 20,
    "keep_recent": 1,
    "dry_run": False,
    "failed_older_than_hours": 48,
    "multipart_older_than_hours": 72,
    "work_older_than_days": 14,
}


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from ``/usr/bin/chromium`` (never a browser Playwright downloads)."""
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, airflow_stack):
    """A fresh browser context (1280x900) logged in to the stack's UI as its admin."""
    with logged_in_page(browser, airflow_stack.stack) as tab:
        yield tab


def trigger_and_wait(tab, dialog, airflow_stack, dag_id: str) -> str:
    """Press Trigger, follow the UI to the new run's page and wait until its state badge shows a
    final state; asserts it is Success and returns the run id."""
    from playwright.sync_api import expect

    dialog.get_by_role("button", name="Trigger", exact=True).click()
    tab.wait_for_url(re.compile(rf"/dags/{dag_id}/runs/[^/]+"))
    run_id = unquote(urlsplit(tab.url).path.split("/runs/", 1)[1].strip("/"))
    badge = tab.get_by_test_id("header-card").get_by_test_id("state-badge")
    expect(badge).to_have_text(FINAL_BADGE, timeout=RUN_TIMEOUT_MS)
    stack = airflow_stack.stack
    states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(dag_id, run_id)}
    assert badge.inner_text().strip() == "Success", states
    assert stack.run_state(dag_id, run_id) == "success"
    return run_id


def run_conf(stack, dag_id: str, run_id: str) -> dict:
    """The conf of a DAG run as the REST API has it."""
    return stack.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["conf"]


def open_json(tab, url: str, status: int = 200) -> dict:
    """Open ``url`` in the tab; assert the answer's status and that the page shows its body."""
    response = tab.goto(url)
    assert response.status == status, response.text()[:500]
    body = response.json()
    assert json.loads(tab.locator("body").inner_text()) == body  # what the browser shows
    return body


def submit_form(tab, airflow_stack, dag_id: str, values: dict) -> str:
    """Open the DAG's Trigger form, fill it with ``values``, save its screenshot, trigger and wait
    for the run to succeed; the run's conf must then be exactly ``values``. The run id."""
    stack = airflow_stack.stack
    form = open_trigger_form(tab, stack, dag_id)
    fill_params(form, dag_id, values)
    save_form_screenshot(tab, form, dag_id)
    run_id = trigger_and_wait(tab, form, airflow_stack, dag_id)
    assert run_conf(stack, dag_id, run_id) == values
    return run_id


# --- tests -------------------------------------------------------------------------------------------
def test_apify_download_triggered_from_its_form_shows_in_the_inventory(page, airflow_stack):
    stack, dag_id = airflow_stack.stack, "apify_dataset_download"
    apify = airflow_stack.apify
    apify.add_run(APIFY_RUN, status="SUCCEEDED")

    submit_form(page, airflow_stack, dag_id, DOWNLOAD_FORM)

    listing = open_json(page, f"{stack.api_url}{INVENTORY}/runs/list")
    summary = {run["run_id"]: run for run in listing["runs"]}[APIFY_RUN]
    assert summary["completeness"] == "complete" and summary["has_csv"] and summary["has_jsonl"]
    details = open_json(page, f"{stack.api_url}{INVENTORY}/runs/{APIFY_RUN}")
    items = len(apify.items)
    assert details["files"]["csv"]["rows"] == details["files"]["jsonl"]["lines"] == items == 61
    media = details["files"]["media"]
    assert media["exists"] and media["failed"] == 0 and media["videos"] > 0
    assert media["images"] + media["videos"] == media["count"] == summary["media_count"]
    frames_per_video = math.ceil(VIDEO_FRAMES / VIDEO_FPS / FRAME_INTERVAL)
    frames = details["files"]["video_frames"]
    assert frames == {
        "exists": True,
        "path": "video_frames/",
        "count": frames_per_video * media["videos"],
        "size_bytes": frames["size_bytes"],
        "videos_failed": 0,
    }
    assert frames["size_bytes"] > 0

    anonymous = page.context.browser.new_context()
    try:
        assert anonymous.new_page().goto(f"{stack.api_url}{INVENTORY}/runs/list").status == 401
    finally:
        anonymous.close()


def test_dataset_retention_triggered_from_its_form_deletes_what_the_form_says(
    page, airflow_stack, monkeypatch
):
    stack, dag_id = airflow_stack.stack, "dataset_retention"
    use_s3(monkeypatch, airflow_stack.s3_endpoint)
    storage = open_storage(airflow_stack.root(STORAGE_PREFIX))
    with tempfile.TemporaryDirectory() as local:
        for run, age in RETENTION_AGES.items():
            make_dataset(Path(local), run, days_ago=age)
        for path in sorted(Path(local).rglob("*")):
            if path.is_file():
                storage.write_file(path.relative_to(local).as_posix(), path)
    old = {run for run, age in RETENTION_AGES.items() if age > RETENTION_FORM["days_old"]}
    young = set(RETENTION_AGES) - old
    try:
        submit_form(page, airflow_stack, dag_id, RETENTION_FORM)

        listing = open_json(page, f"{stack.api_url}{INVENTORY}/runs/list")
        stored = {run["run_id"] for run in listing["runs"]}
        assert young <= stored and not old & stored, stored
        for run in old:
            open_json(page, f"{stack.api_url}{INVENTORY}/runs/{run}", status=404)
    finally:  # the stack's storage is shared by the session's tests
        for run in RETENTION_AGES:
            try:
                delete_dataset(storage, run, force=True)
            except DatasetNotFound:
                pass
