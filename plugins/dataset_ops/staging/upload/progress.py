"""The uploader's progress line on stderr, from the suite's one reporter
(:class:`dataset_ops.progress.ProgressLog`): percent, bytes, MiB/s over the last 10 s, ETA and
parts done/total; every second as one self-overwriting line on a terminal, every 5 s as plain
lines otherwise (task logs, pipes)."""

from __future__ import annotations

from dataset_ops.progress import ProgressLog, StreamLines

#: Seconds between lines on a terminal and elsewhere.
TTY_EVERY = 1.0
PLAIN_EVERY = 5.0


def upload_progress(
    name: str, size: int, *, done: int = 0, parts_total: int = 0, parts_done: int = 0
) -> ProgressLog:
    """A reporter for uploading ``name`` (``size`` bytes, ``done`` of them already uploaded by an
    earlier run) writing to the current ``sys.stderr``; run it with ``.reporting(enabled)``."""
    lines = StreamLines()
    return ProgressLog(
        f"upload {name}",
        size,
        TTY_EVERY if lines.tty else PLAIN_EVERY,
        done=done,
        parts_total=parts_total,
        parts_done=parts_done,
        emit=lines,
    )
