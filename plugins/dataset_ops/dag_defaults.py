"""Defaults every dataset-ops DAG shares (owner, retries with exponential backoff, the retry
policy that fails hopeless inputs at once, the failure notification of :mod:`dataset_ops.notify`).

Retries: transient failures (connection errors, timeouts, HTTP 429/5xx, S3 throttling) are
retried twice with exponential backoff from 30 s. Errors the library raises as
:class:`dataset_ops.errors.PermanentError` (bad file, header, row, encoding, HTTP 4xx other than
408/425/429, an unknown data type, deployment or file) fail the task after its first try:
:data:`RETRY_POLICY` (Airflow's ``retry_policy``, evaluated by the task runner) decides so.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pendulum
from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

from dataset_ops.errors import PermanentError
from dataset_ops.notify import task_failure_callback

#: Every task's ``retry_policy``: a :class:`~dataset_ops.errors.PermanentError` fails the task at
#: once (state ``failed`` after try 1, no retry); any other exception gets the task's retries.
RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=PermanentError,
            action=RetryAction.FAIL,
            reason="bad input that no retry can fix (dataset_ops.errors.PermanentError): not retried",
        )
    ],
    default=RetryAction.DEFAULT,
)

#: ``default_args`` for every DAG of the suite.
DEFAULT_ARGS: dict = {
    "owner": "dataset-ops",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "retry_policy": RETRY_POLICY,
    "on_failure_callback": task_failure_callback,
}

#: First logical date of the suite's schedules.
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


@contextmanager
def fail_without_retry(*errors: type[BaseException]):
    """Inside a task: re-raise ``errors`` as ``AirflowFailException``, so the task fails at once
    instead of being retried (bad input that no retry can fix), with the same message.

    Prefer raising a :class:`~dataset_ops.errors.PermanentError` subclass in the library, which
    :data:`RETRY_POLICY` fails at once without any wrapping; this is for foreign exceptions."""
    try:
        yield
    except errors as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
