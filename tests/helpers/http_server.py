"""A local HTTP file server that speaks like a static download host (e.g. datasets.imdbws.com).

It serves files from a folder with ``ETag`` (sha256 of the content), ``Last-Modified`` and
``Content-Length``, answers ``If-None-Match`` / ``If-Modified-Since`` with ``304 Not Modified``
(RFC 9110), and can be told to misbehave per path to test failure handling: return a status a
number of times, stall after some bytes, or announce more bytes than it sends.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from helpers.serving import LocalHTTPServer


@dataclass
class Fault:
    """Misbehaviour for one path.

    :param status: HTTP status to answer instead of the file.
    :param times: how many requests get ``status`` (then the file is served); None: always.
    :param stall_after: send this many body bytes, then stop sending (connection stays open).
    :param stall_seconds: how long a stall lasts before the connection is closed.
    :param short_by: announce the full Content-Length but send this many bytes fewer.
    """

    status: int | None = None
    times: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 30.0
    short_by: int | None = None
    served: int = field(default=0, init=False)


class FileServer:
    """Serve ``root`` on 127.0.0.1 in a background thread; ``url`` ends with ``/``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.faults: dict[str, Fault] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802 (http.server API)
                server._handle(self)

        self._httpd = LocalHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, path: str, status: int | None = None) -> int:
        """Requests seen for ``path`` (optionally only those answered with ``status``)."""
        return sum(1 for _, p, s in self.requests if p == path and (status is None or s == status))

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0].lstrip("/")
        fault = self.faults.get(path)
        if fault and fault.status and (fault.times is None or fault.served < fault.times):
            fault.served += 1
            return self._reply(h, path, fault.status, b"error\n")
        file = self.root / path
        if not path or not file.is_file():
            return self._reply(h, path, 404, b"not found\n")
        body = file.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        mtime = file.stat().st_mtime
        last_modified = formatdate(mtime, usegmt=True)
        if h.headers.get("If-None-Match") == etag:
            return self._reply(h, path, 304, b"", {"ETag": etag})
        headers = {"ETag": etag, "Last-Modified": last_modified, "Content-Type": "application/x-gzip"}
        if fault and fault.stall_after is not None:
            self._reply(h, path, 200, body[: fault.stall_after], headers, length=len(body))
            time.sleep(fault.stall_seconds)
            h.close_connection = True
            return None
        if fault and fault.short_by:
            self._reply(h, path, 200, body[: -fault.short_by], headers, length=len(body))
            h.close_connection = True
            return None
        return self._reply(h, path, 200, body, headers)

    def _reply(self, h, path, status, body, headers=None, length=None) -> None:
        self.requests.append(("GET", path, status))
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        try:
            h.wfile.write(body)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
