"""The Uploads page (the plugin's external view, ``/dataset-ops/staging/ui/``) in headless Chromium
(Playwright, Debian's ``/usr/bin/chromium``) on the distributed stack (``airflow_stack``: CeleryExecutor,
two workers, the staging root on a SeaweedFS bucket whose CORS admits the UI's origin).

* A 200 MB JSONL file (real GSM8K lines) is dropped on the page with the upload speed throttled
  (Chrome DevTools network emulation) so that the page can be reloaded mid-way: the parts go
  straight to S3 on presigned URLs, the page shows MB/s and an ETA, and after the reload the same
  file is selected again and the upload resumes from the parts S3 holds (one list-parts request,
  only the missing parts sent). The completed file is validated by the DAG run the API started
  and listed as fresh, byte for byte the file.
* A bad file (custom rules) shows its report (line, byte offset, reason), is retried with relaxed
  rules from the page and promoted.
* The page is in the Airflow UI's menu; a Viewer cannot upload; a browser without the session
  sees "Log in to Airflow first" and no file.

Screenshots go to ``DATASET_OPS_SCREENSHOTS`` (``make screenshots``: ``docs/``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

import pytest
import requests
from helpers.s3 import use_s3
from helpers.stack import STAGING_PREFIX
from helpers.ui import VIEWPORT, chromium, logged_in_page

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
GSM8K = SHARED / "ml" / "gsm8k_train.jsonl"
PAGE = "/dataset-ops/staging/ui/"
API = "/dataset-ops/staging"
SIZE = 200 * 10**6  # bytes: the 200 MB
#: bytes per second of each request while the reload is due: 4 parts of 16 MiB in flight at once
#: (20 MB/s, about 10 s for the file), so the first 4 parts are stored after about 3.4 s
THROTTLE = 5 * 10**6
WAIT_MS = 300_000  # an upper bound for the page to reach a state, not a timing assertion


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def stack(airflow_stack):
    """The stack, its bucket's CORS admitting the UI's origin (as a deployment must, see
    docs/staging.md); afterwards the staging area is emptied again (the stack is shared: the
    Celery tests expect only their own files there)."""
    from seaweedfs import s3_client

    client = s3_client(airflow_stack.s3_endpoint)
    yield _with_cors(client, airflow_stack)
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=airflow_stack.bucket, Prefix=f"{STAGING_PREFIX}/"):
        for item in page.get("Contents", ()):
            client.delete_object(Bucket=airflow_stack.bucket, Key=item["Key"])


def _with_cors(client, airflow_stack):
    """Let the stack's UI origin PUT parts and read their ETag; the stack."""
    client.put_bucket_cors(
        Bucket=airflow_stack.bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [airflow_stack.stack.api_url],
                    "AllowedMethods": ["PUT", "GET"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 600,
                }
            ]
        },
    )
    return airflow_stack


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    """200 MB of real GSM8K lines (whole lines), named train.jsonl."""
    text = GSM8K.read_bytes()
    path = tmp_path_factory.mktemp("uploads-page") / "train.jsonl"
    with open(path, "wb") as out:
        written = 0
        while written + len(text) <= SIZE:
            written += out.write(text)
        lines = text.splitlines(keepends=True)
        for line in lines:
            if written + len(line) > SIZE:
                break
            written += out.write(line)
    return path


def api_get(stack, path: str) -> dict:
    answer = requests.get(
        f"{stack.stack.api_url}{API}/{path}",
        headers={"Authorization": f"Bearer {stack.stack.token()}"},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()


def shot(tab, name: str) -> None:
    folder = Path(os.environ.get("DATASET_OPS_SCREENSHOTS") or tempfile.mkdtemp(prefix="dataset-ops-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(folder / f"uploads-{name}.png"), full_page=True)


def throttle(tab, bytes_per_second: float) -> None:
    cdp = tab.context.new_cdp_session(tab)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second},
    )


def choose_files(tab, *paths: Path) -> None:
    """Give the Dashboard's (hidden) file input the files, as the browse dialog would; when the
    Dashboard lists files already (a restored upload), through its "Add more" panel."""
    add_more = tab.locator(".uppy-DashboardContent-addMore")
    if add_more.count():
        add_more.click()
    tab.locator(".uppy-Dashboard-input").first.set_input_files([str(p) for p in paths])


def press_upload(tab) -> None:
    tab.locator(".uppy-StatusBar-actionBtn--upload").click()


def test_a_200_mb_upload_survives_a_reload_and_is_validated(browser, stack, big_file, monkeypatch):
    from playwright.sync_api import expect

    name = big_file.name
    with logged_in_page(browser, stack.stack) as tab:
        requests_seen: list[tuple[str, str]] = []
        tab.on("request", lambda r: requests_seen.append((r.method, r.url)))
        tab.goto(f"{stack.stack.api_url}{PAGE}")
        expect(tab.get_by_role("heading", name="Uploads", exact=True)).to_be_visible()
        tab.get_by_test_id("data-type").select_option("training_jsonl")
        tab.get_by_test_id("description").fill("GSM8K, 200 MB, through the page")
        throttle(tab, THROTTLE)
        choose_files(tab, big_file)
        press_upload(tab)

        # MB/s and ETA while the parts go out
        expect(tab.get_by_test_id(f"speed-{name}")).to_have_text(
            re.compile(r"^\d+\.\d MB/s$"), timeout=WAIT_MS
        )
        expect(tab.get_by_test_id(f"eta-{name}")).to_have_text(re.compile(r"^\d+:\d\d$"))
        shot(tab, "uploading")
        deadline = time.monotonic() + WAIT_MS / 1000
        while api_get(stack, f"upload-progress/{name}")["parts_uploaded"] < 1:
            assert time.monotonic() < deadline, "no part reached S3"
            time.sleep(0.2)
        record = api_get(stack, f"file-info/{name}")["record"]
        upload_id, parts_total = record["upload_id"], record["multipart"]["parts"]
        stored = api_get(stack, f"upload-progress/{name}")["parts_uploaded"]
        assert parts_total == 12 and 1 <= stored < parts_total

        # a page reload: the browser cannot reopen the file, so the user selects it again
        tab.reload()
        requests_seen.clear()
        expect(tab.get_by_test_id("notice")).to_contain_text(f"Select {name} again to resume")
        throttle(tab, -1)
        choose_files(tab, big_file)
        press_upload(tab)
        expect(tab.get_by_test_id(f"state-{name}")).to_have_text("Uploaded", timeout=WAIT_MS)
        sent = [u for m, u in requests_seen if m == "PUT" and "partNumber=" in u]
        listed = [
            u for m, u in requests_seen if m == "GET" and re.search(rf"/s3/multipart/{upload_id}\?key=", u)
        ]
        assert listed, "the resumed upload did not ask which parts S3 holds"
        assert all(upload_id in u for u in sent) and len(sent) <= parts_total - stored, sent

        # validated at once by the run the API started, and listed as fresh
        expect(tab.get_by_test_id(f"status-{name}")).to_have_text("fresh", timeout=WAIT_MS)
        expect(tab.get_by_test_id("notice")).to_be_hidden()
        shot(tab, "fresh")
    from dataset_ops.storage import open_storage

    use_s3(monkeypatch, stack.s3_endpoint)
    storage = open_storage(stack.root(STAGING_PREFIX))
    digest = hashlib.sha256()
    with storage.open_read(f"fresh/{name}") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(big_file.read_bytes()).hexdigest()
    info = api_get(stack, f"file-info/{name}")
    assert info["description"] == "GSM8K, 200 MB, through the page" and info[
        "records"
    ] == big_file.read_bytes().count(b"\n")


def test_a_bad_file_shows_its_report_and_a_relaxed_retry_promotes_it(browser, stack, tmp_path):
    from playwright.sync_api import expect

    bad = tmp_path / "answers.jsonl"
    bad.write_bytes(b'{"q": "1 + 1", "a": 2}\n{"question": "2 + 2", "a": 4}\n{"q": "3 + 3", "a": 6}\n')
    with logged_in_page(browser, stack.stack) as tab:
        tab.goto(f"{stack.stack.api_url}{PAGE}")
        tab.get_by_test_id("data-type").select_option("custom")
        tab.get_by_test_id("rules").fill(
            '{"allowed_formats": ["jsonl"], "min_records": 1,'
            ' "jsonl": {"schema": {"type": "object", "required": ["q", "a"]}}}'
        )
        choose_files(tab, bad)
        press_upload(tab)
        expect(tab.get_by_test_id("status-answers.jsonl")).to_have_text("failed", timeout=WAIT_MS)
        tab.get_by_test_id("status-filter").select_option("failed")
        expect(tab.get_by_test_id("row-answers.jsonl")).to_be_visible()
        tab.get_by_test_id("report-answers.jsonl").click()
        report = tab.get_by_test_id("report")
        expect(report).to_be_visible()
        first = report.locator("tbody tr").first
        expect(first.locator("td").nth(0)).to_have_text("2")  # line
        expect(first.locator("td").nth(1)).to_have_text("23")  # byte offset of line 2
        expect(first.locator("td").nth(2)).to_contain_text("'q'")
        shot(tab, "report")
        tab.get_by_test_id("retry-overrides").fill(
            '{"jsonl": {"schema": {"type": "object", "required": ["a"]}}}'
        )
        tab.get_by_test_id("retry").click()
        expect(tab.get_by_test_id("retry-result")).to_contain_text("Retry started: manual__", timeout=30_000)
        tab.get_by_test_id("status-filter").select_option("")
        expect(tab.get_by_test_id("status-answers.jsonl")).to_have_text("fresh", timeout=WAIT_MS)


def test_the_page_is_in_the_airflow_menu(browser, stack):
    from playwright.sync_api import expect

    with logged_in_page(browser, stack.stack) as tab:
        tab.goto(f"{stack.stack.api_url}/plugin/uploads")
        frame = tab.frame_locator("iframe")
        expect(frame.get_by_role("heading", name="Uploads", exact=True)).to_be_visible(timeout=30_000)
        expect(frame.get_by_test_id("data-type")).to_have_value("jsonl")  # the rule sets were read
        expect(frame.get_by_test_id("files-total")).to_contain_text("file(s)")  # and the listing
        assert PAGE in tab.locator("iframe").get_attribute("src")
        shot(tab, "in-airflow")


def test_a_viewer_cannot_upload_and_a_stranger_sees_nothing(browser, stack, tmp_path):
    from playwright.sync_api import expect

    small = tmp_path / "viewer.jsonl"
    small.write_bytes(b'{"question": "x", "answer": "#### 1"}\n')
    with logged_in_page(browser, stack.stack, viewer=True) as tab:
        tab.goto(f"{stack.stack.api_url}{PAGE}")
        expect(tab.get_by_test_id("files").locator("tbody tr").first).to_be_visible()  # reading is allowed
        choose_files(tab, small)
        press_upload(tab)
        expect(tab.get_by_test_id("notice")).to_contain_text("permission", timeout=30_000)
    assert all(f["name"] != "viewer.jsonl" for f in api_get(stack, "staged-files")["files"])

    context = browser.new_context(viewport=VIEWPORT)
    try:
        tab = context.new_page()
        tab.goto(f"{stack.stack.api_url}{PAGE}")
        expect(tab.get_by_test_id("notice")).to_contain_text("Log in to Airflow first")
        expect(tab.get_by_test_id("files").locator("tbody tr")).to_have_count(0)
    finally:
        context.close()
