"""A fake Docker Engine API on a local TCP port: the few endpoints ``DockerOperator`` calls, so a
test sees exactly what would be sent to the container (its command and environment) without a
Docker engine.

It answers ``GET /version``, ``GET /_ping``, ``GET /images/json`` (the image is always present, so
nothing is pulled), ``POST /containers/create`` (recorded in :attr:`FakeDockerEngine.created`),
``GET /containers/{id}/json``, ``POST /containers/{id}/attach`` (HTTP 101, then the container's
output as Docker's multiplexed raw stream once the container is started), ``POST
/containers/{id}/start``, ``POST /containers/{id}/wait`` and ``DELETE /containers/{id}``.
The container "prints" :attr:`FakeDockerEngine.output` and exits with :attr:`exit_code`.
Point ``DockerOperator`` at it with ``docker_url=engine.docker_url`` or ``DOCKER_HOST``.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import uuid
from http.server import BaseHTTPRequestHandler

from helpers.serving import BackgroundServer, LocalHTTPServer

API_VERSION = "1.45"


class FakeDockerEngine(BackgroundServer):
    """``with FakeDockerEngine() as engine:``; :attr:`created` lists the bodies of
    ``POST /containers/create`` (``Image``, ``Cmd``, ``Env`` as ``NAME=value`` strings, ...)."""

    def __init__(self, output: list[str] | None = None, exit_code: int = 0):
        self.output = output if output is not None else ['{"rows": 0}']
        self.exit_code = exit_code
        self.created: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self._started: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = LocalHTTPServer(("127.0.0.1", 0), _handler(self))
        self.docker_url = f"tcp://127.0.0.1:{self._httpd.server_address[1]}"

    def environment(self, index: int = -1) -> dict[str, str]:
        """The ``Env`` of the ``index``-th created container as a dict."""
        return dict(item.split("=", 1) for item in self.created[index].get("Env") or [])

    def _frames(self) -> bytes:
        out = b""
        for line in self.output:
            payload = (line + "\n").encode("utf-8")
            out += struct.pack(">BxxxL", 1, len(payload)) + payload  # stream 1: stdout
        return out


def _handler(engine: FakeDockerEngine):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _json(self, status: int, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _empty(self, status: int = 204) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _route(self, method: str) -> None:
            path = re.sub(r"^/v[0-9.]+", "", self.path.split("?", 1)[0])
            engine.requests.append((method, path))
            body = self._body()
            container = re.fullmatch(r"/containers/([^/]+)(/\w+)?", path)
            if method == "GET" and path == "/version":
                return self._json(
                    200, {"ApiVersion": API_VERSION, "Version": "fake", "MinAPIVersion": "1.24"}
                )
            if method in ("GET", "HEAD") and path == "/_ping":
                data = b"OK"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return self.wfile.write(data)
            if method == "GET" and path == "/images/json":
                return self._json(200, [{"Id": "sha256:fake", "RepoTags": ["fake:latest"]}])
            if method == "POST" and path == "/containers/create":
                spec = json.loads(body or b"{}")
                cid = uuid.uuid4().hex
                with engine._lock:
                    engine.created.append(spec)
                    engine._started[cid] = threading.Event()
                return self._json(201, {"Id": cid, "Warnings": []})
            if container:
                cid, action = container.group(1), container.group(2)
                started = engine._started.get(cid)
                if started is None:
                    return self._json(404, {"message": f"No such container: {cid}"})
                if method == "GET" and action == "/json":
                    return self._json(200, {"Id": cid, "Config": {"Tty": False}, "State": {"Running": False}})
                if method == "POST" and action == "/attach":
                    self.send_response(101, "UPGRADED")
                    self.send_header("Content-Type", "application/vnd.docker.raw-stream")
                    self.send_header("Connection", "Upgrade")
                    self.send_header("Upgrade", "tcp")
                    self.end_headers()
                    self.wfile.flush()
                    # the client reads the stream from the raw socket: send it only after start,
                    # as a real engine does, so it is not swallowed by the header reader's buffer
                    started.wait(30)
                    self.wfile.write(engine._frames())
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                if method == "POST" and action == "/start":
                    started.set()
                    return self._empty()
                if method == "POST" and action == "/wait":
                    return self._json(200, {"StatusCode": engine.exit_code, "Error": None})
                if method == "DELETE" and action is None:
                    return self._empty()
            return self._json(404, {"message": f"fake engine: no {method} {path}"})

        def do_GET(self):
            self._route("GET")

        def do_HEAD(self):
            self._route("HEAD")

        def do_POST(self):
            self._route("POST")

        def do_DELETE(self):
            self._route("DELETE")

    return Handler
