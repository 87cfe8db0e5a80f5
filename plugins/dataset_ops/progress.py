"""Progress of long work (downloads, COPY loads, validation, uploads) at a steady interval.

One reporter for the whole suite: :class:`ProgressLog` counts bytes (and optionally rows and
parts) and, at most once every ``every`` seconds, reports one line with percent, bytes done and
total, rate over the last ``window`` seconds, ETA, rows, parts and elapsed time::

    GET title.basics.tsv.gz:  42.0% 120.0 MiB of 285.7 MiB, 1,234,567 rows, 12.3 MiB/s, ETA 0:13, 0:10 elapsed

It is driven two ways:

* **pull**: the worker calls :meth:`ProgressLog.update` (absolute count) or :meth:`ProgressLog.add`
  (increment) as it goes; a line is written when ``every`` seconds passed since the last one
  (IMDb download and COPY, streaming validation: lines to the log, so to the task log);
* **push**: :meth:`ProgressLog.reporting` runs a reporter thread that writes a line every
  ``every`` seconds even when no bytes arrive, so a stall shows (the uploader, whose parts
  count bytes from several threads; lines to stderr through :class:`StreamLines`, one
  self-overwriting line on a terminal).

Time comes from ``clock`` (default :func:`time.monotonic`), so tests drive it with a fake clock.
Units: bytes, seconds; rates in MiB/s (1 MiB = 2**20 bytes).
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

MiB = 1 << 20
GiB = 1 << 30

log = logging.getLogger(__name__)


def format_bytes(n: float) -> str:
    """``n`` bytes as ``"12.3 MiB"`` (below 1 GiB) or ``"1.20 GiB"``."""
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"


def format_duration(seconds: float | None) -> str:
    """``seconds`` as ``m:ss`` or ``h:mm:ss``; ``--:--`` when unknown (None)."""
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class StreamLines:
    """Writes progress lines to a text ``stream`` (default ``sys.stderr``).

    On a terminal (``stream.isatty()``) each line replaces the previous one (``\\r`` and
    erase-line) and :meth:`close` ends it with a newline; otherwise (a task log, a pipe) each
    line is a line of its own.
    """

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._open = False

    def __call__(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self._open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the terminal line (a no-op elsewhere)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


class ProgressLog:
    """Count progress of one piece of work and report it at a steady interval.

    Thread-safe: :meth:`add`, :meth:`update` and :meth:`part_done` may be called from several
    threads; lines are written by whichever thread calls :meth:`tick` (or by the reporter
    thread of :meth:`reporting`).

    :param what: label at the start of each line (``"GET title.basics.tsv.gz"``).
    :param total_bytes: bytes in all (including ``done``), for percent and ETA; None if unknown.
    :param every: seconds between lines (> 0).
    :param done: bytes already done before this run (resumed work): counted in the percent,
        not in the rate.
    :param parts_total: parts in all (shown as ``parts d/t`` when > 0).
    :param parts_done: parts already done before this run.
    :param emit: called with each line; default ``logging.getLogger("dataset_ops.progress").info``.
    :param clock: seconds, monotonic (default :func:`time.monotonic`).
    :param window: seconds over which the rate is measured (the last ``window`` seconds).
    :raises ValueError: ``every`` or ``window`` is not positive.
    """

    def __init__(
        self,
        what: str,
        total_bytes: int | None = None,
        every: float = 10.0,
        *,
        done: int = 0,
        parts_total: int = 0,
        parts_done: int = 0,
        emit: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        window: float = 10.0,
    ):
        if every <= 0 or window <= 0:
            raise ValueError(f"every and window must be > 0 seconds, got {every} and {window}")
        self.what, self.total, self.every, self.window = what, total_bytes, every, window
        self.emit = emit or (lambda line: log.info("%s", line))
        self.clock = clock
        self.done = done
        self.rows: int | None = None
        self.parts_total, self.parts_done = parts_total, parts_done
        self.lines_written = 0
        self._lock = threading.Lock()
        self.start = self._last = clock()
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(self.start, done)])

    # --- counting ------------------------------------------------------------------------------
    def add(self, n: int) -> None:
        """``n`` more bytes done (negative: a retry rewound them). Never writes a line."""
        with self._lock:
            self.done += n

    def part_done(self) -> None:
        """One more part done. Never writes a line."""
        with self._lock:
            self.parts_done += 1

    def update(self, done_bytes: int, rows: int | None = None, force: bool = False) -> str | None:
        """Set the bytes done (absolute, including ``done`` of the constructor) and the rows, then
        :meth:`tick`. :returns: the line written, or None."""
        with self._lock:
            self.done = done_bytes
            if rows is not None:
                self.rows = rows
        return self.tick(force)

    # --- reporting -----------------------------------------------------------------------------
    def tick(self, force: bool = False) -> str | None:
        """Write a line if ``every`` seconds passed since the last one (or the start), or if
        ``force``. :returns: the line written, or None."""
        now = self.clock()
        with self._lock:
            if not force and now - self._last < self.every:
                return None
            self._last = now
            line = self._line(now)
            self.lines_written += 1
        self.emit(line)
        return line

    def rate(self, now: float | None = None) -> float:
        """Bytes per second over the last ``window`` seconds (of this run; 0.0 at the start)."""
        with self._lock:
            return self._rate(self.clock() if now is None else now, sample=False)

    def _rate(self, now: float, sample: bool) -> float:
        samples = self._samples
        if sample:
            samples.append((now, self.done))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        t0, d0 = samples[0]
        return (self.done - d0) / (now - t0) if now > t0 else 0.0

    def line(self) -> str:
        """The progress line for now (without writing it)."""
        with self._lock:
            return self._line(self.clock())

    def _line(self, now: float) -> str:
        rate = self._rate(now, sample=True)
        parts = [f"{self.what}: "]
        if self.total:
            parts[0] += f"{100.0 * self.done / self.total:5.1f}% "
            parts[0] += f"{format_bytes(self.done)} of {format_bytes(self.total)}"
        else:
            parts[0] += format_bytes(self.done)
        if self.rows is not None:
            parts.append(f"{self.rows:,} rows")
        parts.append(f"{rate / MiB:.1f} MiB/s")
        if self.total:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate if rate > 0 else None)}")
        if self.parts_total:
            parts.append(f"parts {self.parts_done}/{self.parts_total}")
        parts.append(f"{format_duration(now - self.start)} elapsed")
        return ", ".join(parts)

    @contextmanager
    def reporting(self, enabled: bool = True) -> Iterator[ProgressLog]:
        """Run a reporter thread writing a line every ``every`` seconds while the block runs.

        At the end, one last line is written when the work took at least ``every`` seconds
        and ended without an exception (so the log shows 100%); an ``emit`` with a ``close()``
        (:class:`StreamLines`) is closed. With ``enabled`` False nothing is written at all.
        """
        stop = threading.Event()
        thread = None
        if enabled:
            thread = threading.Thread(
                target=self._run, args=(stop,), name=f"progress-{self.what}", daemon=True
            )
            thread.start()
        ok = False
        try:
            yield self
            ok = True
        finally:
            stop.set()
            if thread is not None:
                thread.join()
                if ok and self.clock() - self.start >= self.every:
                    self.tick(force=True)
                close = getattr(self.emit, "close", None)
                if close is not None:
                    close()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            self.tick(force=True)
