"""An Elasticsearch API for tests: the ``noida-db`` server (answers as ES 8.15.3), one per caller.

No real Elasticsearch can be installed here (see ``shared/FACTS.md``). Measured with
elasticsearch-py 9.5.1 against noida-db 0.2.3:

* works: explicit mappings, ``_bulk`` (``helpers.bulk``), refresh, count, term/terms/range
  (ISO strings with ``Z`` or ``+00:00``, epoch millis)/exists/bool queries, ``_source`` includes
  (also wildcards), terms/date_histogram/avg aggregations, ``max_result_window`` 10,000 enforced,
  point in time on an index pattern (a snapshot: later writes are invisible; ``keep_alive``
  expiry gives 404; ``pit_id`` in every answer; ``index`` + ``pit`` rejected with 400 like ES),
  ``search_after`` sorted on ``[{"@timestamp": "asc"}, {"_shard_doc": "asc"}]`` (a total order:
  ``_shard_doc`` is unique across the PIT's indices), sliced PIT;
* differs: a hit's ``sort`` carries one extra implicit tiebreaker value even when the sort ends
  with ``_shard_doc`` (``[ts, n, n]``; pass ``hits[-1]["sort"]`` back as is and it works);
  ``open_point_in_time`` on a pattern matching no index answers 404 ``index_not_found_exception``
  (not checked against a real ES, whose wildcard default ``allow_no_indices=true`` may differ);
* missing: the ``composite`` aggregation (400 ``Unknown aggregation type``);
* speed: each search takes ~0.15-0.2 s whatever its size, so use big pages (30k hits in pages of
  5,000: ~3 s); bulk-loading 30.5k documents ~3-4.5 s; start ~0.1 s.

    with NoidaElasticsearch() as es_server:
        create_index(es_server.url, "inferences-2026.11", mappings)
        bulk_load(es_server.url, "inferences-2026.11", docs)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

NOIDA_BIN = Path(sys.executable).with_name("noida-db")


def _free_port() -> int:
    from ports import free_port  # scripts/ports.py, the repository's one port picker

    return free_port()


class NoidaElasticsearch:
    """``noida-db start --only elasticsearch`` on a free port with a temporary data dir.

    The server runs in its own process group (the ``noida-db`` entry point is a Python wrapper
    that starts the real binary as a child); :meth:`stop` ends the whole group and deletes the
    data dir. ``url`` is ``http://127.0.0.1:<port>``; ``log_path`` holds its stdout/stderr."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None, start_timeout: float = 20.0):
        self._auto_port = port is None
        self.port = port or _free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="noida-es-"))
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.started_in: float | None = None  # seconds until GET / answered

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NoidaElasticsearch:
        """Start and wait until GET / answers; raises RuntimeError with the log's tail if the
        server exits or does not answer within ``start_timeout``. A port chosen here that another
        process grabs in the meantime is replaced (3 tries)."""
        if self.proc is not None:
            return self
        if not NOIDA_BIN.exists():
            raise RuntimeError(f"noida-db is not installed at {NOIDA_BIN} (requirements-dev.txt)")
        t0 = time.perf_counter()
        deadline = t0 + self.start_timeout
        tries = 3 if self._auto_port else 1
        self._spawn()
        while True:
            if self.proc.poll() is not None:
                tries -= 1
                if tries and "already in use" in self.log_tail():
                    self.port = _free_port()
                    self._spawn()
                    continue
                self._fail(f"noida-db exited with code {self.proc.returncode}")
            # GET / alone could be another server on the port: noida prints its URL once bound
            if self._ready_line() and self._answers() and self.proc.poll() is None:
                break
            if time.perf_counter() > deadline:
                self._fail(f"noida-db did not answer GET {self.url}/ within {self.start_timeout:.0f} s")
            time.sleep(0.1)
        self.started_in = time.perf_counter() - t0
        return self

    def _spawn(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(NOIDA_BIN), "start", "--only", "elasticsearch",
                    "--elasticsearch-port", str(self.port), "--data-dir", str(self.data_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # a non-interactive shell may start us with SIGINT ignored; give the server defaults
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )  # fmt: skip

    def _ready_line(self) -> bool:
        try:
            return f"elasticsearch  {self.url}" in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=1) as resp:
                return resp.status == 200 and resp.headers.get("X-Elastic-Product") == "Elasticsearch"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _fail(self, message: str):
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"{message}; log tail:\n{tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``timeout``; delete the data dir
        and the log."""
        proc, self.proc = self.proc, None
        if proc is not None:
            pgid = proc.pid  # start_new_session: the wrapper leads its own group
            _signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _group_alive(pgid, proc) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _group_alive(pgid, proc):
                _signal_group(pgid, signal.SIGKILL)
                end = time.monotonic() + 5
                while _group_alive(pgid, proc) and time.monotonic() < end:
                    time.sleep(0.05)
            try:
                proc.wait(1)
            except subprocess.TimeoutExpired:
                pass
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)

    def client(self, **kwargs):
        """An ``elasticsearch.Elasticsearch`` client for the server."""
        from elasticsearch import Elasticsearch

        kwargs.setdefault("request_timeout", 120)
        return Elasticsearch(self.url, **kwargs)

    def __enter__(self) -> NoidaElasticsearch:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int, proc: subprocess.Popen) -> bool:
    """True while a process of the group is running (zombies do not count: the real server is
    re-parented to PID 1 when the wrapper dies, and may stay a zombie for a while)."""
    proc.poll()  # reap the wrapper
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def create_index(url: str, index: str, mappings: dict | None = None) -> None:
    """Create ``index`` with explicit ``mappings`` (no-op if it exists)."""
    from elasticsearch import Elasticsearch

    with Elasticsearch(url, request_timeout=60) as es:
        if not es.indices.exists(index=index):
            es.indices.create(index=index, mappings=mappings or {})


def bulk_load(url: str, index: str | None, docs: Iterable[dict], chunk: int = 5000) -> int:
    """Index ``docs`` with ``elasticsearch.helpers.bulk`` and refresh; returns the number indexed.

    A doc is either a plain ``_source`` dict (goes to ``index``) or a bulk action with ``_index``
    / ``_id`` / ``_source`` (``index`` is the default for actions without ``_index``). Raises on any
    item error. 30.5k inference docs: about 3 s against noida."""
    from elasticsearch import Elasticsearch, helpers

    def actions():
        for doc in docs:
            if "_source" in doc:
                if "_index" not in doc:
                    doc = {**doc, "_index": index}
                yield doc
            else:
                yield {"_index": index, "_source": doc}

    with Elasticsearch(url, request_timeout=300) as es:
        n, _errors = helpers.bulk(es, actions(), chunk_size=chunk, max_chunk_bytes=50 << 20)
        es.indices.refresh(index="_all")
    return n
