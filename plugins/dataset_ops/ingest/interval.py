"""The data interval one ingest run covers, for every kind of run, from the DAG's own timetable.

Airflow 3 gives a run a data interval when it has a logical date (scheduled, backfill, manual
with a date) and none otherwise (a manual run from the REST API with ``"logical_date": null`` or
from the trigger form with the date cleared; only ``run_after`` is set). The lake keys are named
from the interval, so every run needs one. :func:`resolve_interval` picks it, in this order:

1. ``day`` given (the Param ``day``, ``YYYY-MM-DD``): the timetable's interval that starts on
   that UTC day, the interval whose files are named ``dt=<day>``. It must be complete by the
   run's ``run_after``, or the run fails.
2. The run has a data interval that is one of the timetable's (scheduled, backfill, a manual
   run at a scheduled time): that interval.
3. The run has another data interval (a manual run at any other moment, e.g. the trigger form's
   pre-filled "now", whose Airflow interval is the 24 hours before it): the last complete
   interval of the timetable that ends at or before the end of the run's interval. Without
   this, such a run would write a partition overlapping the scheduled ones, and an Athena table
   over the entity would count those records twice.
4. No data interval (no logical date): the last complete interval of the timetable that ends at
   or before ``run_after``, as the schedule would have run it.

So every run lands one of the schedule's intervals, and two runs of the same interval write the
same keys (the later replaces the earlier).

With the DAG's ``CronTriggerTimetable("0 2 * * *", interval=1 day)`` an interval runs from 02:00
UTC to 02:00 the next day; a run at 2026-11-21 05:14 without a logical date ingests
2026-11-20 02:00 .. 2026-11-21 02:00 (``dt=2026-11-20``), the same interval and keys as the
scheduled run of 2026-11-21 02:00.

Only the timetable's public API is used (``next_dagrun_info`` with a ``TimeRestriction``), so a
different schedule (hourly, weekly, another zone) resolves the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.timetables.base import DataInterval, Timetable

#: How far back :func:`last_complete_interval` looks for a schedule's last interval (a yearly
#: schedule still resolves; nothing ever scans more than this).
MAX_LOOKBACK = timedelta(days=800)
#: Intervals stepped through at most while looking for one (hourly over 800 days is 19,200).
MAX_STEPS = 50_000


class IntervalError(ValueError):
    """No interval can be resolved for the run (bad ``day``, an incomplete or missing interval);
    retrying does not help."""


@dataclass(frozen=True)
class IngestInterval:
    """The interval a run ingests.

    :param start: inclusive, timezone-aware UTC.
    :param end: exclusive, timezone-aware UTC.
    :param source: ``day`` (the Param), ``run`` (the run's data interval), ``aligned`` (the
        schedule's interval that ended last before the end of the run's own, rule 3) or
        ``run_after`` (the last complete interval before a run without a logical date).
    """

    start: datetime
    end: datetime
    source: str

    def as_dict(self) -> dict[str, str]:
        """``{"start": ISO 8601, "end": ISO 8601, "source": ...}``: the XCom and the container's
        ``--start`` / ``--end``."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "source": self.source}

    @classmethod
    def from_dict(cls, value: dict[str, str]) -> IngestInterval:
        """The inverse of :meth:`as_dict`. :raises IntervalError: a start or end without a zone."""
        start, end = _aware(value["start"]), _aware(value["end"])
        return cls(start, end, value.get("source", "run"))


def _aware(value: Any) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise IntervalError(f"{value!r} has no time zone")
    moment = moment.astimezone(UTC)
    # a plain datetime: pendulum's DateTime drops a stdlib tzinfo in arithmetic
    return datetime(*moment.timetuple()[:6], moment.microsecond, tzinfo=UTC)


def _pendulum(moment: datetime):
    import pendulum

    return pendulum.instance(moment.astimezone(UTC))


def _infos(timetable: Timetable, earliest: datetime, latest: datetime | None):
    """The timetable's intervals from ``earliest`` on, in order (what a catch-up would run)."""
    from airflow.timetables.base import TimeRestriction

    restriction = TimeRestriction(
        earliest=_pendulum(earliest), latest=_pendulum(latest) if latest else None, catchup=True
    )
    last: DataInterval | None = None
    for _ in range(MAX_STEPS):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        if info is None or info.data_interval is None:
            return
        if last is not None and info.data_interval.end <= last.end:
            return  # a timetable that does not advance
        last = info.data_interval
        yield last


def last_complete_interval(timetable: Timetable, run_after: datetime) -> tuple[datetime, datetime]:
    """The latest interval of ``timetable`` that ends at or before ``run_after``.

    :param run_after: timezone-aware.
    :returns: ``(start, end)`` in UTC.
    :raises IntervalError: the schedule has no interval ending in the :data:`MAX_LOOKBACK`
        before ``run_after`` (e.g. a run-once or asset-only schedule).
    """
    run_after = _aware(run_after)
    lookback = timedelta(days=2)
    while True:
        found = None
        for interval in _infos(timetable, run_after - lookback, run_after):
            if interval.end > run_after:
                break
            found = interval
        if found is not None:
            return _aware(found.start), _aware(found.end)
        if lookback >= MAX_LOOKBACK:
            raise IntervalError(
                f"the schedule {getattr(timetable, 'summary', timetable)!r} has no interval ending in the "
                f"{MAX_LOOKBACK.days} days before {run_after.isoformat()}: give the Param day"
            )
        lookback = min(lookback * 4, MAX_LOOKBACK)


def interval_of_day(timetable: Timetable, day: date | str) -> tuple[datetime, datetime]:
    """The interval of ``timetable`` that starts on the UTC day ``day`` (its files are named
    ``dt=<day>``).

    :param day: a date or ``YYYY-MM-DD``.
    :returns: ``(start, end)`` in UTC.
    :raises IntervalError: ``day`` is not a date, or no interval starts on it (a weekly schedule
        and a day in between).
    """
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day.strip())
        except ValueError:
            raise IntervalError(f"day {day!r} is not a date (YYYY-MM-DD)") from None
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for interval in _infos(timetable, midnight, None):
        start = _aware(interval.start)
        if start < midnight:
            continue
        if start >= midnight + timedelta(days=1):
            break
        return start, _aware(interval.end)
    raise IntervalError(
        f"no interval of the schedule {getattr(timetable, 'summary', timetable)!r} starts on {day}"
    )


def resolve_interval(
    timetable: Timetable,
    *,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    run_after: datetime,
    day: date | str | None = None,
) -> IngestInterval:
    """The interval a run ingests (see the module docstring for the rules).

    :param timetable: the DAG's timetable (``dag.timetable``).
    :param data_interval_start: the run's, or None for a run without a logical date.
    :param data_interval_end: likewise.
    :param run_after: the run's ``run_after`` (always set), timezone-aware.
    :param day: the Param ``day`` (``YYYY-MM-DD``), or None / "" for none.
    :raises IntervalError: bad or incomplete ``day``; no interval before ``run_after``.
    """
    run_after = _aware(run_after)
    if day not in (None, ""):
        start, end = interval_of_day(timetable, day)
        if end > run_after:
            raise IntervalError(
                f"day {day}: its interval {start.isoformat()} .. {end.isoformat()} is not complete at "
                f"this run's run_after {run_after.isoformat()}"
            )
        return IngestInterval(start, end, "day")
    if data_interval_start is not None and data_interval_end is not None:
        own = (_aware(data_interval_start), _aware(data_interval_end))
        try:
            aligned = last_complete_interval(timetable, own[1])
        except IntervalError:  # a schedule without intervals: nothing to align to
            return IngestInterval(*own, "run")
        return IngestInterval(*own, "run") if aligned == own else IngestInterval(*aligned, "aligned")
    start, end = last_complete_interval(timetable, run_after)
    return IngestInterval(start, end, "run_after")
