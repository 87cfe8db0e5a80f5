"""The Uploads page as a benchmark method of ``bench_upload.py``: a real ``airflow api-server``
(the suite's plugin, the simple auth manager, a SQLite metadata DB migrated once) on the round's
S3 server, and headless Chromium (Playwright, Debian's ``/usr/bin/chromium``) uploading the file
through the page: Uppy's AWS S3 plugin sending the parts straight to S3 on presigned URLs.

The figure is the page's own: from the Upload click to Uppy's ``upload-success`` (both read in the
page with ``performance.now()``), which is what a user waits for; the api-server's start and the
browser's are not in it. Prints nothing itself; :func:`page_upload` returns the seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PAGE = "/dataset-ops/staging/ui/"


class PageServer:
    """``airflow api-server`` in its own home (``home``), on a free port, for one S3 endpoint.

    :param home: an AIRFLOW_HOME folder (its SQLite DB is migrated on first use).
    :param env: the environment to start it with (``AIRFLOW_CONN_AWS_DEFAULT``, the staging root).
    """

    def __init__(self, home: Path, env: dict[str, str]):
        if str(REPO / "scripts") not in sys.path:
            sys.path.insert(0, str(REPO / "scripts"))
        from ports import free_port

        self.home = Path(home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(12)
        self.env = {
            **env,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": "bench-upload-page-" + "x" * 32,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> PageServer:
        from processes import spawn

        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        airflow = str(Path(sys.executable).with_name("airflow"))
        if not (self.home / "airflow.db").exists():
            subprocess.run([airflow, "db", "migrate"], env=self.env, check=True, capture_output=True)
        argv = [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.port), "-w", "1"]
        self.proc = spawn(argv, self.home / "api-server.log", self.home, self.env)
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=2).read()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.home / "api-server.log"
                    raise RuntimeError(f"api-server did not start; see {log}") from None
                time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def token(self) -> str:
        request = urllib.request.Request(
            f"{self.url}/auth/token",
            data=json.dumps({"username": "admin", "password": self.password}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())["access_token"]


def chromium_cpu_seconds() -> dict[str, float]:
    """User + system CPU seconds used so far by the running Chromium processes (every process
    whose name starts with ``chrom``), by kind: ``browser``, ``renderer``, ``network`` (the
    network service), ``gpu``, ``other`` (other utility processes)."""
    import psutil

    total: dict[str, float] = {}
    for proc in psutil.process_iter(["name", "cpu_times", "cmdline"]):
        if not (proc.info["name"] or "").startswith("chrom") or not proc.info["cpu_times"]:
            continue
        line = " ".join(proc.info["cmdline"] or ())
        if "--type=renderer" in line:
            kind = "renderer"
        elif "network.mojom.NetworkService" in line:
            kind = "network"
        elif "--type=gpu-process" in line:
            kind = "gpu"
        elif "--type=" in line:
            kind = "other"
        else:
            kind = "browser"
        total[kind] = total.get(kind, 0.0) + proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return total


def page_upload(server: PageServer, path: Path, timeout_s: float = 1800) -> tuple[float, dict[str, float]]:
    """Upload ``path`` through the page served by ``server``; (seconds from the Upload click to
    Uppy's ``upload-success``, CPU seconds Chromium's processes used in that time by kind, see
    :func:`chromium_cpu_seconds`).

    :raises RuntimeError: the upload failed (the page's notice in the message)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "_token", "value": server.token(), "url": server.url}])
            tab = context.new_page()
            tab.goto(f"{server.url}{PAGE}")
            tab.wait_for_function("document.getElementById('data-type').options.length > 0")
            tab.evaluate(
                """() => {
                  window.benchDone = null
                  window.datasetOpsUppy.on('upload-success', () => { window.benchDone = performance.now() })
                  window.datasetOpsUppy.on('upload-error', (f, e) => {
                    window.benchDone = -1
                    window.benchError = String(e)
                  })
                }"""
            )
            tab.locator(".uppy-Dashboard-input").first.set_input_files(str(path))
            button = tab.locator(".uppy-StatusBar-actionBtn--upload")
            button.wait_for()
            started = tab.evaluate("performance.now()")
            cpu_before = chromium_cpu_seconds()
            button.click()
            tab.wait_for_function("window.benchDone !== null", timeout=timeout_s * 1000, polling=200)
            cpu_after = chromium_cpu_seconds()
            cpu = {k: round(v - cpu_before.get(k, 0.0), 2) for k, v in cpu_after.items()}
            done = tab.evaluate("window.benchDone")
            if done < 0:
                notice = tab.get_by_test_id("notice").text_content()
                raise RuntimeError(f"the page's upload failed: {tab.evaluate('window.benchError')}; {notice}")
            return (done - started) / 1000, cpu
        finally:
            browser.close()
