"""A failed task of a real DAG (``dataset_retention`` with its S3 root behind a port nobody
listens on, the AWS Connection's secret key set) calls the suite's one ``on_failure_callback``: a
structured log line per failed task, and a mail through the SMTP Connection ``smtp_default`` to a
real SMTP server (aiosmtpd) with the summary and no secret. Without the Connection, the log line
only. The redaction patterns are checked on their own."""

from __future__ import annotations

import email
import json
import re
import socket
import time

import pytest
from helpers.dags import load_dag

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-pw-1234"
#: ``[api] base_url`` of a UI that is not on localhost:8080 (a host, a port and a path prefix).
UI = "http://example.test:9999/airflow"


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append((envelope.rcpt_tos, envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    with socket.socket() as s:  # Controller checks readiness by connecting: it needs a real port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


@pytest.fixture
def failing_dag(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    aws = {
        "conn_type": "aws", "login": "AKIDEXAMPLE", "password": SECRET,
        "extra": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1",
                  "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}},
    }  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws))
    monkeypatch.setenv("AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT", "s3://unreachable-bucket/root/")
    monkeypatch.setenv("AIRFLOW_VAR_STAGING_ROOT", "s3://unreachable-bucket/staging/")
    return load_dag("dataset_retention", retries=0)


def _failure_lines(text: str) -> list[dict]:
    """The summaries of the ``task failed: {json}`` log lines, once per task."""
    decoder, found = json.JSONDecoder(), {}
    for m in re.finditer(r"task failed: (?=\{)", text):
        summary, _ = decoder.raw_decode(text, m.end())
        found[(summary["task_id"], summary["map_index"])] = summary
    return list(found.values())


def test_a_failed_task_logs_a_summary_and_mails_it_without_secrets(
    failing_dag, smtp_server, monkeypatch, caplog
):
    port, inbox = smtp_server
    conn = {
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"from_email": "airflow@example.com", "to": "data-team@example.com, oncall@example.com",
                  "disable_ssl": True, "disable_tls": True},
    }  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", UI)
    run = failing_dag.test()
    assert str(run.state) == "failed"
    out = caplog.text
    summaries = _failure_lines(out)
    assert summaries, out[-3000:]
    failed = {s["task_id"] for s in summaries}
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert failed == {task for task, state in states.items() if state == "failed"}
    first = summaries[0]
    assert first["dag_id"] == "dataset_retention" and first["run_id"] == run.run_id and first["error_type"]
    for summary in summaries:  # the UI's own address, from [api] base_url
        assert summary["log_url"].startswith(f"{UI}/dags/dataset_retention/runs/"), summary
        assert summary["log_url"].endswith("?try_number=1") and "log_url_note" not in summary
    assert SECRET not in out.split("task failed:", 1)[1] and SECRET not in json.dumps(summaries)

    deadline = time.monotonic() + 10
    while len(inbox.messages) < len(summaries) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(inbox.messages) == len(summaries)
    rcpts, content = inbox.messages[0]
    assert sorted(rcpts) == ["data-team@example.com", "oncall@example.com"]
    message = email.message_from_bytes(content)
    assert (
        message["Subject"].startswith("[dataset-ops] dataset_retention.") and "failed" in message["Subject"]
    )
    body = "".join(
        part.get_payload(decode=True).decode()
        for part in message.walk()
        if part.get_content_type() == "text/html"
    )
    assert (
        "dataset_retention" in body and run.run_id in body and SECRET not in content.decode(errors="replace")
    )
    assert f"{UI}/dags/dataset_retention/runs/" in body and "localhost:8080" not in body


def test_without_an_smtp_connection_only_the_log_line(failing_dag, smtp_server, monkeypatch, caplog):
    _, inbox = smtp_server
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    run = failing_dag.test()
    assert str(run.state) == "failed"
    summaries = _failure_lines(caplog.text)
    assert summaries and inbox.messages == []
    # no [api] base_url: no guessed host (Airflow's fallback is localhost:8080), the UI path only
    for summary in summaries:
        assert summary["log_url"].startswith("/dags/dataset_retention/runs/"), summary
        assert "base_url" in summary["log_url_note"]
    assert "localhost:8080" not in "".join(json.dumps(s) for s in summaries)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET http://reader:pw0rd@host:8080/x failed", "GET http://***:***@host:8080/x failed"),
        ("postgresql://imdb:imdb-pw@db/imdb", "postgresql://***:***@db/imdb"),
        ("login failed: password=hunter2; user=x", "login failed: password=***; user=x"),
        ('{"api_key": "abc123", "n": 1}', '{"api_key": "***", "n": 1}'),
        ("Authorization: Bearer-xyz", "Authorization: ***"),
        ("nothing secret at s3://bucket/key", "nothing secret at s3://bucket/key"),
    ],
)
def test_redaction_patterns(text, expected):
    from dataset_ops.notify import redact

    assert redact(text) == expected
