"""Which interval an ingest run covers (``dataset_ops.ingest.interval``), for every kind of run and
several schedules, and the docker runner's pieces that need no engine (private Connections,
skipping entities not asked for)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable
from airflow.timetables.simple import NullTimetable
from airflow.timetables.trigger import CronTriggerTimetable

from dataset_ops.ingest.interval import (
    IngestInterval,
    IntervalError,
    interval_of_day,
    last_complete_interval,
    resolve_interval,
)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


DAILY_0200 = CronTriggerTimetable("0 2 * * *", timezone="UTC", interval=timedelta(days=1))


@pytest.mark.parametrize(
    "run_after, start, end",
    [
        (utc(2026, 11, 21, 5, 14, 48), utc(2026, 11, 20, 2), utc(2026, 11, 21, 2)),
        (utc(2026, 11, 21, 2, 0), utc(2026, 11, 20, 2), utc(2026, 11, 21, 2)),  # exactly at the end
        (utc(2026, 11, 21, 1, 59, 59), utc(2026, 11, 19, 2), utc(2026, 11, 20, 2)),  # not yet
        (utc(2027, 1, 1, 0, 30), utc(2026, 12, 30, 2), utc(2026, 12, 31, 2)),  # across a year
    ],
)
def test_a_run_without_a_logical_date_gets_the_last_complete_interval(run_after, start, end):
    interval = resolve_interval(
        DAILY_0200, data_interval_start=None, data_interval_end=None, run_after=run_after
    )
    assert (interval.start, interval.end, interval.source) == (start, end, "run_after")


def test_other_schedules_resolve_from_their_own_timetable():
    """Hourly in Madrid (data-interval timetable), weekly on Mondays 03:00 (trigger timetable with
    a 7-day interval), every 6 hours (timedelta schedule)."""
    run_after = utc(2026, 11, 21, 5, 14)  # a Saturday
    hourly = CronDataIntervalTimetable("0 * * * *", timezone="Europe/Madrid")
    assert last_complete_interval(hourly, run_after) == (utc(2026, 11, 21, 4), utc(2026, 11, 21, 5))
    weekly = CronTriggerTimetable("0 3 * * 1", timezone="UTC", interval=timedelta(days=7))
    assert last_complete_interval(weekly, run_after) == (utc(2026, 11, 9, 3), utc(2026, 11, 16, 3))
    six_hours = DeltaDataIntervalTimetable(timedelta(hours=6))
    start, end = last_complete_interval(six_hours, run_after)
    assert end <= run_after < end + timedelta(hours=6) and end - start == timedelta(hours=6)


def test_a_run_with_one_of_the_schedules_intervals_keeps_it():
    """Scheduled and backfill runs, and a manual run at a scheduled time."""
    for start in (utc(2026, 11, 15, 2), utc(2026, 12, 31, 2)):
        interval = resolve_interval(
            DAILY_0200, data_interval_start=start, data_interval_end=start + timedelta(days=1),
            run_after=utc(2027, 2, 1),
        )  # fmt: skip
        assert (interval.start, interval.end, interval.source) == (start, start + timedelta(days=1), "run")


@pytest.mark.parametrize(
    "own_start, own_end, start, end",
    [  # a manual run at 05:14:48 (the trigger form's "now"): Airflow gives it the 24 h before
        (
            utc(2026, 11, 20, 5, 14, 48),
            utc(2026, 11, 21, 5, 14, 48),
            utc(2026, 11, 20, 2),
            utc(2026, 11, 21, 2),
        ),
        (utc(2026, 11, 20, 1, 0), utc(2026, 11, 21, 1, 0), utc(2026, 11, 19, 2), utc(2026, 11, 20, 2)),
        (utc(2026, 11, 20, 2), utc(2026, 11, 20, 2), utc(2026, 11, 19, 2), utc(2026, 11, 20, 2)),  # empty
    ],
)
def test_a_run_with_another_interval_gets_the_schedules_interval_that_ended_last(
    own_start, own_end, start, end
):
    """No partition overlapping the scheduled ones (an Athena table would count rows twice)."""
    interval = resolve_interval(
        DAILY_0200, data_interval_start=own_start, data_interval_end=own_end, run_after=utc(2026, 12, 1)
    )
    assert (interval.start, interval.end, interval.source) == (start, end, "aligned")


def test_a_schedule_without_intervals_keeps_the_runs_own():
    own = (utc(2026, 11, 20, 5, 14), utc(2026, 11, 21, 5, 14))
    interval = resolve_interval(NullTimetable(), data_interval_start=own[0], data_interval_end=own[1],
                                run_after=utc(2026, 12, 1))  # fmt: skip
    assert (interval.start, interval.end, interval.source) == (*own, "run")


def test_the_param_day_gives_the_interval_starting_that_day_and_wins():
    for run_start in (None, utc(2026, 11, 15, 2)):
        interval = resolve_interval(
            DAILY_0200,
            data_interval_start=run_start,
            data_interval_end=run_start and run_start + timedelta(days=1),
            run_after=utc(2026, 12, 7, 14, 0),
            day="2026-11-12",
        )
        assert (interval.start, interval.end, interval.source) == (
            utc(2026, 11, 12, 2),
            utc(2026, 11, 13, 2),
            "day",
        )
    assert interval_of_day(DAILY_0200, "2026-02-28") == (utc(2026, 2, 28, 2), utc(2026, 3, 1, 2))


def test_a_day_is_refused_when_bad_incomplete_or_not_a_start_of_the_schedule():
    with pytest.raises(IntervalError, match="not a date"):
        resolve_interval(DAILY_0200, data_interval_start=None, data_interval_end=None,
                         run_after=utc(2026, 12, 1), day="2026-02-30")  # fmt: skip
    with pytest.raises(IntervalError, match="not complete"):  # ends 2026-11-21 02:00
        resolve_interval(DAILY_0200, data_interval_start=None, data_interval_end=None,
                         run_after=utc(2026, 11, 21, 1, 0), day="2026-11-20")  # fmt: skip
    weekly = CronTriggerTimetable("0 3 * * 1", timezone="UTC", interval=timedelta(days=7))
    assert interval_of_day(weekly, "2026-11-16") == (utc(2026, 11, 16, 3), utc(2026, 11, 23, 3))
    with pytest.raises(IntervalError, match="no interval .* starts on 2026-11-17"):
        interval_of_day(weekly, "2026-11-17")


def test_a_schedule_without_intervals_fails_with_a_hint():
    with pytest.raises(IntervalError, match="give the Param day"):
        last_complete_interval(NullTimetable(), utc(2026, 11, 21))


def test_the_xcom_form_round_trips_and_needs_a_zone():
    interval = IngestInterval(utc(2026, 11, 20, 2), utc(2026, 11, 21, 2), "run_after")
    value = interval.as_dict()
    assert value == {
        "start": "2026-11-20T02:00:00+00:00",
        "end": "2026-11-21T02:00:00+00:00",
        "source": "run_after",
    }
    assert json.loads(json.dumps(value)) == value and IngestInterval.from_dict(value) == interval
    with pytest.raises(IntervalError, match="no time zone"):
        IngestInterval.from_dict({"start": "2026-11-20T02:00:00", "end": "2026-11-21T02:00:00+00:00"})


# --- docker runner pieces ---------------------------------------------------------------------
PASSWORD = "pa/ss:w@rd?#&=+ %ü"


def test_connection_environment_passes_uris_and_masks_every_form_of_the_password(monkeypatch):
    from airflow.sdk import Connection
    from airflow.sdk._shared.secrets_masker import redact

    from dataset_ops.ingest.docker_runner import connection_environment

    monkeypatch.setenv(
        "AIRFLOW_CONN_PRODUCTOS_SERVICE",
        json.dumps({"conn_type": "http", "host": "svc", "port": 80, "login": "u", "password": PASSWORD}),
    )
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONN", raising=False)
    env = connection_environment(["productos_service", "no_such_conn"])
    assert set(env) == {"AIRFLOW_CONN_PRODUCTOS_SERVICE"}  # a missing Connection is left out
    uri = env["AIRFLOW_CONN_PRODUCTOS_SERVICE"]
    assert Connection.from_uri(uri, conn_id="x").password == PASSWORD
    assert quote(PASSWORD, safe="") in uri
    for form in (uri, PASSWORD, quote(PASSWORD, safe="")):
        assert form not in str(redact(f"container env: {form}"))


def test_the_docker_task_skips_an_entity_not_asked_for_before_any_docker_call():
    from airflow.sdk.exceptions import AirflowSkipException

    from dataset_ops.ingest.docker_runner import IngestDockerOperator

    # nothing listens on port 9: a Docker call would fail with another error
    op = IngestDockerOperator(
        task_id="t",
        image="img",
        entity="productos",
        conn_id="productos_service",
        docker_url="tcp://127.0.0.1:9",
    )
    with pytest.raises(AirflowSkipException, match="productos is not in the Param entities"):
        op.execute({"params": {"entities": ["categorias"]}})
    assert op._private_environment == {}  # no Connection resolved for a skipped entity
    assert op.command[:4] == ["python", "-m", "dataset_ops.ingest", "productos"]
    assert "xcom_pull(task_ids='data_interval')['start']" in op.command[5]
    assert (
        "private_environment" not in op.template_fields and "_private_environment" not in op.template_fields
    )
