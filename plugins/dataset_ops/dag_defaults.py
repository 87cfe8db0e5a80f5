"""Defaults every dataset-ops DAG shares (owner, retries with exponential backoff, the failure
notification of :mod:`dataset_ops.notify`)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pendulum

from dataset_ops.notify import task_failure_callback

#: ``default_args`` for every DAG of the suite.
DEFAULT_ARGS: dict = {
    "owner": "dataset-ops",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": task_failure_callback,
}

#: First logical date of the suite's schedules.
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


@contextmanager
def fail_without_retry(*errors: type[BaseException]):
    """Inside a task: re-raise ``errors`` as ``AirflowFailException``, so the task fails at once
    instead of being retried (bad input that no retry can fix), with the same message."""
    try:
        yield
    except errors as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
