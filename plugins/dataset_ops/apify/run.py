"""Waiting for an Apify actor run: :class:`ApifyRunSensor` and its trigger.

A run's ``status`` (Apify API v2, ``GET /v2/actor-runs/{runId}``,
https://docs.apify.com/api/v2/actor-run-get) is READY or RUNNING while it works (TIMING-OUT and
ABORTING on the way to an end), then one of the terminal statuses SUCCEEDED, FAILED, TIMED-OUT,
ABORTED. The sensor checks once; a run still working is waited for in the triggerer
(deferrable, the default) or by rescheduled pokes, for at most ``timeout`` seconds. It succeeds
with ``{"run_id", "status", "dataset_id", "finished_at"}`` (the XCom), and fails at once, with
the status and Apify's status message, for a run that ended any other way or does not exist.
The token never leaves the Connection: the trigger is serialised with the Connection id only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from dataset_ops.errors import NotFound, PermanentError

SUCCEEDED = "SUCCEEDED"
#: Statuses after which a run never changes.
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"})


class RunNotFound(NotFound):
    """The API has no run with this id (or the token cannot see it). A ``LookupError``;
    permanent (:mod:`dataset_ops.errors`): the task fails without retries."""


def _summary(run_id: str, run) -> dict:
    if run is None:
        raise RunNotFound(f"Apify has no actor run {run_id} (or the apify_default token cannot see it)")
    return {
        "run_id": run_id,
        "status": str(run.status),
        "status_message": getattr(run, "status_message", None),
        "dataset_id": run.default_dataset_id,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def run_summary(run_id: str, conn_id: str) -> dict:
    """``{"run_id", "status", "status_message", "dataset_id", "finished_at"}`` of the run now.

    :raises RunNotFound: unknown run. :raises apify_client.errors.ApifyApiError: the API refused.
    """
    from dataset_ops.apify.items import client_from_connection

    return _summary(run_id, client_from_connection(conn_id).run(run_id).get())


class RunEnded(PermanentError, RuntimeError):
    """The run ended with a status other than SUCCEEDED (FAILED, TIMED-OUT, ABORTED): permanent
    (:mod:`dataset_ops.errors`), the task fails without retries."""


def check_succeeded(summary: dict) -> dict:
    """``summary`` if the run SUCCEEDED. :raises RunEnded: it ended otherwise (status in the
    message)."""
    if summary["status"] in TERMINAL and summary["status"] != SUCCEEDED:
        note = f": {summary['status_message']}" if summary.get("status_message") else ""
        raise RunEnded(f"Apify actor run {summary['run_id']} ended with status {summary['status']}{note}")
    return summary


class ApifyRunTrigger(BaseTrigger):
    """Polls the run every ``poll_interval`` seconds until it reaches a terminal status or
    ``timeout`` seconds pass; fires one event ``{"summary": ...}`` or ``{"error": ...}``. A failed
    check (Apify 5xx, network) is logged and tried again at the next poll; an unknown run ends
    the wait at once."""

    def __init__(self, run_id: str, conn_id: str, poll_interval: float, timeout: float):
        super().__init__()
        self.run_id, self.conn_id = run_id, conn_id
        self.poll_interval, self.timeout = poll_interval, timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_id": self.run_id,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = time.monotonic() + self.timeout
        status = "unknown"
        while True:
            try:
                summary = await asyncio.to_thread(run_summary, self.run_id, self.conn_id)
            except RunNotFound as exc:
                yield TriggerEvent({"error": str(exc)})
                return
            except Exception as exc:  # a 5xx or a network error: keep polling until the deadline
                self.log.warning(
                    "Apify actor run %s: check failed (%s: %s); trying again",
                    self.run_id,
                    type(exc).__name__,
                    exc,
                )
            else:
                status = summary["status"]
                if status in TERMINAL:
                    yield TriggerEvent({"summary": summary})
                    return
                self.log.info(
                    "Apify actor run %s is %s; next check in %s s", self.run_id, status, self.poll_interval
                )
            if time.monotonic() >= deadline:
                waited = f"still {status} after {self.timeout:.0f} s"
                yield TriggerEvent({"error": f"Apify actor run {self.run_id} {waited}"})
                return
            await asyncio.sleep(self.poll_interval)


class ApifyRunSensor(BaseSensorOperator):
    """Wait until the Apify actor run ``run_id`` SUCCEEDED (see the module docstring).

    :param run_id: templated; checked with :func:`dataset_ops.apify.items.check_run_id`.
    :param conn_id: the Connection holding the token and API URL (``apify_default``).
    :param deferrable: wait in the triggerer (True) instead of poking.
    """

    template_fields = ("run_id",)

    def __init__(self, *, run_id: str, conn_id: str = "apify_default", deferrable: bool = True, **kwargs):
        kwargs.setdefault("mode", "reschedule")  # when not deferrable: free the worker slot between pokes
        kwargs.setdefault("poke_interval", 30)
        kwargs.setdefault("timeout", timedelta(hours=6).total_seconds())
        super().__init__(**kwargs)
        self.run_id, self.conn_id, self.deferrable = run_id, conn_id, deferrable

    def _fail(self, message: str):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(message)

    def poke(self, context) -> Any:
        from airflow.sdk.bases.sensor import PokeReturnValue

        from dataset_ops.apify.items import check_run_id

        try:
            check_run_id(self.run_id)
            summary = check_succeeded(run_summary(self.run_id, self.conn_id))
        except (ValueError, RunNotFound, RunEnded) as exc:
            self._fail(str(exc))
        done = summary["status"] == SUCCEEDED
        if not done:
            self.log.info("Apify actor run %s is %s", self.run_id, summary["status"])
        return PokeReturnValue(is_done=done, xcom_value=summary if done else None)

    def execute(self, context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        result = self.poke(context)
        if result.is_done:
            return result.xcom_value
        self.defer(
            trigger=ApifyRunTrigger(
                self.run_id, self.conn_id, float(self.poke_interval), float(self.timeout)
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict) -> dict:
        """Back from the trigger: the run's summary, or the task fails with the reason."""
        if "error" in event:
            self._fail(event["error"])
        try:
            summary = check_succeeded(event["summary"])
        except RunEnded as exc:
            self._fail(str(exc))
        self.log.info("Apify actor run %s SUCCEEDED (dataset %s)", summary["run_id"], summary["dataset_id"])
        return summary
