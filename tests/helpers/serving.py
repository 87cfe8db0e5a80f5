"""Start/stop for the local test servers: a ``ThreadingHTTPServer`` served from a daemon thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a deep accept queue: socketserver's default of 5 pending
    connections drops bursts of simultaneous connects (16 download threads), which clients only
    retry after a 1 s SYN timeout."""

    request_queue_size = 128
    daemon_threads = True


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no Nagle delay (headers and body are two writes: no 40 ms stalls),
    no request log on stderr (keeps pytest output clean)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass


class BackgroundServer:
    """Mixin: ``self._httpd`` (a ``ThreadingHTTPServer``) and ``self._stopping`` (an Event) are
    set by the subclass; ``start()``/``stop()`` or ``with server:`` run it in a daemon thread.
    Subclasses add their own clean-up in :meth:`_after_stop`."""

    _thread: threading.Thread | None = None

    def start(self):
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; stalled answers are cut short (``_stopping``)."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self._after_stop()

    def _after_stop(self) -> None:
        """Hook for subclasses (close connections, delete temporary files)."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def take_fault(queue: list[list] | None):
    """The first fault of a server's per-path fault queue, spending one of its uses.

    ``queue`` holds ``[fault, remaining]`` pairs (``remaining`` None: every request, forever); an
    entry whose uses are spent is removed. Returns None for an empty or missing queue. The caller
    holds the server's lock."""
    if not queue:
        return None
    entry = queue[0]
    if entry[1] is not None:
        entry[1] -= 1
        if entry[1] <= 0:
            queue.pop(0)
    return entry[0]


def serve_until_signalled(server: BackgroundServer, note: str | None = None) -> int:
    """CLI main loop: start ``server``, print its ``base_url`` (the first stdout line, flushed)
    and ``note`` on stderr, serve until SIGTERM or Ctrl-C, stop; returns exit code 0."""
    import signal
    import sys
    import time

    def terminate(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    server.start()
    try:
        print(server.base_url, flush=True)
        if note:
            print(note, file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
