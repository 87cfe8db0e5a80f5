"""The suite's one progress reporter (``dataset_ops.progress``), driven by a fake clock: a line
at a steady interval with percent, bytes, rate over the last window, ETA, rows and parts."""

from __future__ import annotations

import io
import logging

import pytest

from dataset_ops.progress import ProgressLog, StreamLines, format_bytes, format_duration

MiB = 1 << 20


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reporter(total: int | None, every: float = 10.0, **kwargs) -> tuple[ProgressLog, FakeClock, list[str]]:
    clock, lines = FakeClock(), []
    return ProgressLog("GET f.tsv.gz", total, every, emit=lines.append, clock=clock, **kwargs), clock, lines


def test_a_line_every_interval_with_percent_bytes_rate_and_eta():
    prog, clock, lines = reporter(100 * MiB)
    for second in range(1, 31):  # 2 MiB a second for 30 s, updated every second
        clock.now += 1
        prog.update(2 * MiB * second, rows=1000 * second)
    assert len(lines) == 3  # at 10, 20 and 30 s: not every update
    assert (
        lines[0]
        == "GET f.tsv.gz:  20.0% 20.0 MiB of 100.0 MiB, 10,000 rows, 2.0 MiB/s, ETA 0:40, 0:10 elapsed"
    )
    assert lines[2].startswith("GET f.tsv.gz:  60.0% 60.0 MiB of 100.0 MiB, 30,000 rows, 2.0 MiB/s, ETA 0:20")


def test_the_rate_is_over_the_last_window_not_since_the_start():
    prog, clock, lines = reporter(None, every=5.0, window=10.0)
    clock.now += 20
    prog.update(200 * MiB)  # 10 MiB/s for 20 s
    clock.now += 10
    prog.update(210 * MiB)  # then 1 MiB/s for 10 s
    assert lines[-1] == "GET f.tsv.gz: 210.0 MiB, 1.0 MiB/s, 0:30 elapsed"  # no total: no percent, no ETA


def test_force_writes_at_once_and_resumed_bytes_count_in_percent_not_in_rate():
    prog, clock, lines = reporter(40 * MiB, done=30 * MiB, parts_total=4, parts_done=3)
    clock.now += 2
    prog.add(4 * MiB)
    assert prog.tick() is None and lines == []  # before the interval
    prog.part_done()
    line = prog.tick(force=True)
    assert line == lines[0]
    assert line.startswith("GET f.tsv.gz:  85.0% 34.0 MiB of 40.0 MiB, 2.0 MiB/s, ETA 0:03, parts 4/4")


def test_logs_to_the_progress_logger_by_default(caplog):
    clock = FakeClock()
    prog = ProgressLog("COPY x", 10 * MiB, 1.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="dataset_ops.progress"):
        clock.now += 1
        prog.update(5 * MiB)
    assert [r.getMessage()[:24] for r in caplog.records] == ["COPY x:  50.0% 5.0 MiB o"]


def test_reporting_writes_a_last_line_after_long_work_and_nothing_when_disabled():
    prog, clock, lines = reporter(8 * MiB, every=3600.0)  # the thread never ticks during the test
    with prog.reporting():
        prog.add(8 * MiB)
        clock.now += 3600
    assert len(lines) == 1 and lines[0].startswith("GET f.tsv.gz: 100.0% 8.0 MiB of 8.0 MiB")

    failing, clock, lines = reporter(8 * MiB, every=3600.0)
    with pytest.raises(RuntimeError), failing.reporting():
        clock.now += 7200
        raise RuntimeError("failed: no 'done' line")
    assert lines == []

    quiet, clock, lines = reporter(8 * MiB, every=3600.0)
    with quiet.reporting(enabled=False):
        clock.now += 7200
    assert lines == []


def test_stream_lines_overwrite_on_a_terminal_and_are_plain_lines_elsewhere():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain, tty = io.StringIO(), Tty()
    for stream in (plain, tty):
        out = StreamLines(stream)
        out("a")
        out("b")
        out.close()
    assert plain.getvalue() == "a\nb\n"
    assert tty.getvalue() == "\r\x1b[Ka\r\x1b[Kb\n"


def test_formats():
    assert format_bytes(10 * MiB) == "10.0 MiB" and format_bytes(3 << 30) == "3.00 GiB"
    assert (
        format_duration(None) == "--:--"
        and format_duration(65) == "1:05"
        and format_duration(3725) == "1:02:05"
    )
    with pytest.raises(ValueError):
        ProgressLog("x", every=0)
