"""One JSONL validation worker process: ``python -m dataset_ops.validation.jsonl_worker``.

Started by :class:`~dataset_ops.validation.workers.WorkerPool` (the parent's side, which also
documents the protocol); it reads the rules, then answers each chunk of whole lines with
:meth:`JsonlValidator.check_chunk <dataset_ops.validation.jsonl.JsonlValidator.check_chunk>`
and, at the end of input, sends its peak RSS. It imports only the validation modules, not
Airflow. Imports go one way: this module -> ``jsonl`` -> ``workers``.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import orjson

from dataset_ops.validation.jsonl import JsonlValidator
from dataset_ops.validation.reader import ErrorCollector
from dataset_ops.validation.rules import JsonlRules
from dataset_ops.validation.workers import read_frame, write_frame


def main() -> int:
    """The worker: rules first, then answer each chunk (see :mod:`dataset_ops.validation.workers`);
    returns the exit code (0)."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    init = read_frame(inp)
    if init is None:
        return 0
    spec = orjson.loads(init)
    rules = SimpleNamespace(jsonl=JsonlRules.from_dict(spec["jsonl"]), max_line_bytes=spec["max_line"])
    validator = JsonlValidator(rules, ErrorCollector(spec["max_errors"]))  # type: ignore[arg-type]
    while (chunk := read_frame(inp)) is not None:
        write_frame(out, orjson.dumps(validator.check_chunk(chunk)))
    write_frame(out, orjson.dumps({"vm_hwm_kib": vm_hwm_kib()}))
    return 0


def vm_hwm_kib() -> int | None:
    """This process's peak resident set size in KiB (Linux ``VmHWM``), None where unknown."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


if __name__ == "__main__":
    sys.exit(main())
