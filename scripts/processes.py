"""Background server processes for the stacks, the test fixtures and the benchmarks.

Importable wherever ``scripts/`` is on ``sys.path`` (pytest's ``pythonpath``, or the scripts' and
benchmarks' own ``sys.path`` line).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path


def spawn(argv: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``argv`` in a session (process group) of its own, stdin closed, stdout and stderr
    appended to ``log``; stop the whole group with ``os.killpg``.

    SIGINT is reset to its default in the child: a non-interactive shell starts background jobs
    with SIGINT ignored, and some servers (SeaweedFS) stop promptly only on SIGINT.

    :param env: the child's environment (default: this process's).
    :raises OSError: ``argv[0]`` cannot be run, or ``log`` cannot be opened.
    """
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
