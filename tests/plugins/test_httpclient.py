"""The suite's one HTTP session factory (``dataset_ops.httpclient``) against a local HTTP server:
429/5xx retried with Retry-After honoured, GET and HEAD only, other 4xx at once; the IMDb
download's ``http_session`` is this factory with its own policy."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dataset_ops.httpclient import HttpSettings, make_session, new_session
from dataset_ops.imdb.download import http_session

FAST = HttpSettings(retries=3, backoff_factor=0.0, backoff_jitter=0.0)


class FlakyServer:
    """Answers ``/flaky/<n>`` with 503 (Retry-After: 0) ``n`` times per method, then 200;
    ``/gone`` with 404. Records every request as ``(method, path, headers)``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server.requests.append((self.command, self.path, dict(self.headers)))
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen = sum(1 for m, p, _ in server.requests if (m, p) == (self.command, self.path))
                if self.path.startswith("/flaky/") and seen <= int(self.path.rsplit("/", 1)[1]):
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                elif self.path == "/gone":
                    self.send_response(404)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.requests if (m, p) == (method, path))


@pytest.fixture
def server():
    srv = FlakyServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_get_and_head_are_retried_until_they_succeed(server):
    session = new_session(FAST)
    assert session.get(server.url + "flaky/2", timeout=5).status_code == 200
    assert server.count("GET", "/flaky/2") == 3
    assert session.head(server.url + "flaky/1", timeout=5).status_code == 200
    assert server.count("HEAD", "/flaky/1") == 2


def test_retries_run_out_with_the_last_answer_and_post_is_never_retried(server):
    session = new_session(FAST)
    assert session.get(server.url + "flaky/9", timeout=5).status_code == 503
    assert server.count("GET", "/flaky/9") == 4  # the first try and 3 retries
    assert session.post(server.url + "flaky/1", data=b"x", timeout=5).status_code == 503
    assert server.count("POST", "/flaky/1") == 1
    assert session.get(server.url + "gone", timeout=5).status_code == 404
    assert server.count("GET", "/gone") == 1


def test_make_session_is_a_json_api_session_with_a_base_url(server):
    session = make_session(server.url.rstrip("/"), FAST, headers={"X-Api-Key": "k"})
    assert session.base_url == server.url
    session.get(session.base_url + "flaky/0", timeout=5)
    headers = server.requests[-1][2]
    assert headers["Accept"] == "application/json" and headers["X-Api-Key"] == "k"


def test_the_imdb_session_is_the_shared_one_with_its_user_agent(server):
    session = http_session(retries=2, backoff_factor=0.0)
    assert session.get(server.url + "flaky/2", timeout=5).status_code == 200
    assert server.count("GET", "/flaky/2") == 3
    headers = server.requests[-1][2]
    assert headers["User-Agent"] == "dataset-ops imdb_download" and headers["Accept"] != "application/json"
