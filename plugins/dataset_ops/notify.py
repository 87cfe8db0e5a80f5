"""Task failure notification: the one ``on_failure_callback`` of every dataset-ops DAG
(:data:`dataset_ops.dag_defaults.DEFAULT_ARGS`).

A failed task (after its last try) logs one structured line, ``task failed: {json}`` with
:func:`failure_summary`'s fields, and, when the SMTP Connection ``smtp_default`` exists (the SMTP
provider's ``SmtpHook``: host, port, login/password, extra ``from_email``), mails the same summary
to the addresses in the Connection's extra ``to`` (a list or a comma-separated string).

``log_url`` links to the failed try in the Airflow UI. Airflow builds ``ti.log_url`` from
``[api] base_url`` (``AIRFLOW__API__BASE_URL``) and, when that is not set, from a guessed
``http://localhost:8080``; the summary never passes the guess on: without a configured base URL
``log_url`` is the page's path in the UI (``/dags/...``) and ``log_url_note`` says what to set.

No secret goes out: the error text passes through Airflow's secrets masker (the Connection
passwords and Variables the task fetched are registered there), then credentials in URLs
(``scheme://user:password@``) and ``password=...``-style pairs are replaced by ``***``. The
callback never raises: a failure to notify is logged, and the task's own failure stays what
the UI shows.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
#: Longest error text kept in the summary (characters).
MAX_ERROR_CHARS = 2_000
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:]+:[^\s/@]+@")
_SECRET_PAIRS = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|authorization)"
    r"(\s*[=:]\s*|\"\s*:\s*\")([^\s,;&\"']+)"
)


def redact(text: str) -> str:
    """``text`` without secrets: Airflow's secrets masker, then URL credentials and
    ``password=...``-style values replaced by ``***``."""
    try:
        from airflow.sdk._shared.secrets_masker import redact as airflow_redact

        text = str(airflow_redact(text))
    except Exception:  # the masker's module moved or is not configured: the patterns still apply
        pass
    text = _URL_CREDENTIALS.sub(r"\1***:***@", text)
    return _SECRET_PAIRS.sub(lambda m: f"{m[1]}{m[2]}***", text)


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (None if value is None else str(value))


def configured_base_url() -> str | None:
    """Airflow's ``[api] base_url`` (the UI's address, e.g. ``https://airflow.example.com``), or
    None when it is not configured (Airflow then guesses ``http://localhost:8080``)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover - an older layout
        from airflow.configuration import conf
    return conf.get("api", "base_url", fallback=None) or None


def ui_log_url(ti: Any) -> tuple[str | None, str | None]:
    """(link to the task try's page in the Airflow UI, note). The link is ``ti.log_url``, which
    Airflow builds from ``[api] base_url``; without one it is only the page's path (the host
    would be a guess) and the note says to set ``[api] base_url``."""
    url = getattr(ti, "log_url", None)
    if not url:
        return None, None
    if configured_base_url():
        return url, None
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return path, "[api] base_url is not set (AIRFLOW__API__BASE_URL): log_url is the path in the UI"


def failure_summary(context: Mapping[str, Any]) -> dict[str, Any]:
    """The failed task as a flat dict: ``event`` ("task_failed"), ``dag_id``, ``task_id``,
    ``map_index``, ``run_id``, ``run_type``, ``logical_date`` (ISO), ``try_number``,
    ``max_tries``, ``hostname``, ``error_type``, ``error`` (redacted, at most
    :data:`MAX_ERROR_CHARS` characters), ``log_url`` (see :func:`ui_log_url`) and, when
    ``[api] base_url`` is not set, ``log_url_note``."""
    ti = context["ti"]
    dag_run = context.get("dag_run")
    error = context.get("exception")
    run_type = getattr(dag_run, "run_type", None)
    text = redact(str(error)) if error is not None else None
    log_url, log_url_note = ui_log_url(ti)
    summary = {
        "event": "task_failed",
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "map_index": getattr(ti, "map_index", -1),
        "run_id": ti.run_id,
        "run_type": getattr(run_type, "value", run_type),
        "logical_date": _iso(context.get("logical_date")),
        "try_number": getattr(ti, "try_number", None),
        "max_tries": getattr(ti, "max_tries", None),
        "hostname": getattr(ti, "hostname", None),
        "error_type": type(error).__name__ if error is not None else None,
        "error": text[:MAX_ERROR_CHARS] if text is not None else None,
        "log_url": log_url,
    }
    if log_url_note:
        summary["log_url_note"] = log_url_note
    return summary


def _recipients(extra: Mapping[str, Any]) -> list[str]:
    to = extra.get("to") or []
    if isinstance(to, str):
        to = to.split(",")
    return [address.strip() for address in to if address and address.strip()]


def _mail(summary: dict[str, Any]) -> bool:
    """Mail ``summary`` through ``smtp_default``; False when there is no such Connection or it
    names no recipient."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(SMTP_CONN_ID)
    except AirflowNotFoundException:
        return False
    to = _recipients(conn.extra_dejson)
    if not to:
        log.warning("Connection %s has no recipients (extra 'to'): no failure mail sent", SMTP_CONN_ID)
        return False
    where = summary["task_id"] + (
        f"[{summary['map_index']}]" if summary["map_index"] not in (-1, None) else ""
    )
    subject = f"[dataset-ops] {summary['dag_id']}.{where} failed ({summary['run_id']})"
    rows = "".join(
        f"<tr><th align='left'>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>"
        for key, value in summary.items()
    )
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook.send_email_smtp(to=to, subject=subject, html_content=f"<table>{rows}</table>")
    return True


def task_failure_callback(context: Mapping[str, Any]) -> None:
    """The ``on_failure_callback`` of every task: log the summary, mail it when ``smtp_default``
    exists. Never raises."""
    try:
        summary = failure_summary(context)
    except Exception:
        log.exception("task failed, and its failure summary could not be built")
        return
    log.error("task failed: %s", json.dumps(summary, default=str, sort_keys=True))
    try:
        if _mail(summary):
            log.info("failure mail sent through Connection %s", SMTP_CONN_ID)
    except Exception as exc:  # a broken mail server must not hide the task's own failure
        log.warning("failure mail through Connection %s not sent: %s", SMTP_CONN_ID, redact(str(exc)))
