"""Worker processes that check chunks of whole JSONL lines for :class:`~.jsonl.JsonlValidator`:
the parent's side (:class:`WorkerPool`) and the framing both sides use.

Each worker is ``python -m dataset_ops.validation.jsonl_worker`` (:mod:`.jsonl_worker`, the
child's side), a plain child process (not
``multiprocessing``: spawn and forkserver import the parent's ``__main__`` again, which breaks
any script without an ``if __name__ == "__main__"`` guard, and fork copies a threaded process).
It imports only the validation modules, not Airflow.

Protocol over the child's stdin/stdout, each message a frame of an 8-byte little-endian length
and that many bytes:

* parent -> worker: first the rules as JSON (``{"jsonl": <JsonlRules.to_dict()>, "max_line":
  bytes, "max_errors": n}``), then one chunk per frame: whole lines, ending in ``\\n``, none
  longer than ``max_line``. End of input ends the worker.
* worker -> parent: per chunk, JSON ``[lines, records, errors, found]`` where ``errors`` are the
  first ``max_errors`` as ``[code, reason, line, offset, column]`` with line numbers from 1 and
  byte offsets from 0 within the chunk, and ``found`` counts all of them. After the end of
  input, one last frame ``{"vm_hwm_kib": n}``: the worker's peak RSS (Linux ``VmHWM``).

Each worker answers its chunks in order; the parent sends chunks round-robin and takes the
answers in the same order, so results are applied in file order. A thread per worker reads its
answers as they come, so a worker never blocks on a full stdout pipe while the parent writes.
"""

from __future__ import annotations

import os
import queue
import struct
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import BinaryIO

import orjson

_HEADER = struct.Struct("<Q")
#: The module each worker process runs.
WORKER_MODULE = "dataset_ops.validation.jsonl_worker"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding dataset_ops/


class WorkerError(RuntimeError):
    """A worker process died or answered nonsense; the message has its exit code and stderr."""


def write_frame(out: BinaryIO, *pieces: bytes | bytearray | memoryview) -> None:
    """Write one frame (8-byte little-endian length, then the bytes) of the concatenated
    ``pieces`` to the binary stream ``out`` (written one by one: no joined copy) and flush."""
    out.write(_HEADER.pack(sum(len(p) for p in pieces)))
    for piece in pieces:
        out.write(piece)
    out.flush()


def read_frame(inp: BinaryIO) -> bytes | None:
    """The payload of the next frame of the binary stream ``inp``; None at the end of input (or
    a frame cut off)."""
    header = inp.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = inp.read(size)
    if len(payload) < size:
        return None
    return payload


def _widen(pipe) -> None:
    """Ask for a 1 MiB pipe buffer (Linux ``F_SETPIPE_SZ``; 64 KiB by default): fewer switches
    per 4 MiB chunk. Best effort: the limit is ``/proc/sys/fs/pipe-max-size``."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError):
        pass


class _Worker:
    def __init__(self, init: bytes, index: int):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for pipe in (self.proc.stdin, self.proc.stdout):
            _widen(pipe)
        self.answers: queue.SimpleQueue = queue.SimpleQueue()
        self.stderr = b""
        self.peak_rss_kib: int | None = None
        self._reader = threading.Thread(target=self._read, name=f"jsonl-worker-{index}", daemon=True)
        self._reader.start()
        self._errs = threading.Thread(target=self._read_stderr, daemon=True)
        self._errs.start()
        self.send(init)

    def _read(self) -> None:
        while (frame := read_frame(self.proc.stdout)) is not None:
            self.answers.put(frame)
        self.answers.put(None)

    def _read_stderr(self) -> None:
        self.stderr = self.proc.stderr.read()[-4000:]

    def send(self, *pieces: bytes | bytearray | memoryview) -> None:
        try:
            write_frame(self.proc.stdin, *pieces)
        except (BrokenPipeError, OSError) as exc:
            raise self._died() from exc

    def answer(self) -> list:
        frame = self.answers.get()
        if frame is None:
            raise self._died()
        return orjson.loads(frame)

    def _died(self) -> WorkerError:
        code = self.proc.wait()
        self._errs.join(timeout=5)
        text = self.stderr.decode("utf-8", "replace").strip()
        return WorkerError(f"JSONL validation worker exited with code {code}: {text[-2000:]}")

    def close(self, kill: bool) -> None:
        if kill and self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if not kill:  # the last frame is the worker's peak RSS
            last = None
            while (frame := self.answers.get()) is not None:
                last = frame
            if last is not None:
                self.peak_rss_kib = orjson.loads(last).get("vm_hwm_kib")
        self.proc.wait()
        self._reader.join(timeout=5)
        self._errs.join(timeout=5)


class WorkerPool:
    """``workers`` child processes checking chunks in order (see the module docstring).

    :param jsonl_rules: ``JsonlRules.to_dict()`` of the rule set.
    :param max_line: ``max_line_bytes``. :param max_errors: errors listed per chunk at most.
    :param workers: processes to start (>= 1).
    """

    def __init__(self, jsonl_rules: dict, max_line: int, max_errors: int, workers: int):
        init = orjson.dumps({"jsonl": jsonl_rules, "max_line": max_line, "max_errors": max_errors})
        self._workers: list[_Worker] = []
        try:
            for i in range(workers):
                self._workers.append(_Worker(init, i))
        except BaseException:
            self.close(kill=True)
            raise
        self._next = 0
        self._pending: deque[_Worker] = deque()
        #: after :meth:`close`: the workers' peak RSS added up, in bytes (None if unknown)
        self.peak_rss_bytes: int | None = None

    def __len__(self) -> int:
        """Chunks sent whose answer was not taken yet."""
        return len(self._pending)

    def submit(self, *pieces: bytes | bytearray | memoryview) -> None:
        """Send the chunk made of ``pieces`` to the next worker. :raises WorkerError: it is gone."""
        worker = self._workers[self._next]
        self._next = (self._next + 1) % len(self._workers)
        worker.send(*pieces)
        self._pending.append(worker)

    def next_answer(self) -> tuple[int, int, list[list], int]:
        """The answer to the oldest chunk sent: ``(lines, records, errors, found)``.

        :raises WorkerError: the worker died (its exit code and stderr are in the message).
        """
        lines, records, errors, found = self._pending.popleft().answer()
        return lines, records, errors, found

    def close(self, kill: bool = False) -> None:
        """End the workers (``kill``: at once, without waiting for their answers)."""
        for worker in self._workers:
            worker.close(kill)
        peaks = [w.peak_rss_kib for w in self._workers]
        if peaks and None not in peaks:
            self.peak_rss_bytes = sum(peaks) * 1024
        self._workers = []
