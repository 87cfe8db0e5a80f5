"""The whole file's sha256, in one sequential read, optionally in a background thread.

For an S3 upload the hashing pass runs beside the start-up work (importing Airflow, resolving
the Connection, reading the status record: about 3 s) and, for a multipart upload, beside the
parts themselves; ``CompleteMultipartUpload`` waits for it (:class:`HashJob`). The sha256 goes
into the status record, where the validation workflow compares it with the sha256 of the bytes
it reads before anything is promoted.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

from dataset_ops.staging.upload.errors import UploadCancelled, UploadError
from dataset_ops.staging.upload.plan import HASH_BLOCK


def sha256_of(fd: int, size: int, stop: threading.Event | None = None) -> str:
    """Hex sha256 of the first ``size`` bytes of the open descriptor ``fd`` (8 MiB reads into one
    reused buffer, ``os.preadv``: the descriptor's position is not used).

    :raises UploadCancelled: ``stop`` was set.
    :raises UploadError: the file holds other than ``size`` bytes (it changed while hashing).
    """
    digest = hashlib.sha256()
    buf = bytearray(HASH_BLOCK)
    view = memoryview(buf)
    offset = 0
    while True:
        if stop is not None and stop.is_set():
            raise UploadCancelled("hashing stopped")
        n = os.preadv(fd, [buf], offset)
        if not n:
            break
        digest.update(view[:n])
        offset += n
    if offset != size:
        raise UploadError(f"read {offset:,} bytes, expected {size:,}: the file changed while hashing")
    return digest.hexdigest()


class HashJob:
    """:func:`sha256_of` in a background thread (started at once); it shows no progress line.

    :param fd: open descriptor of the file. :param size: its size in bytes.
    """

    def __init__(self, fd: int, size: int):
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        #: seconds the hashing took (0.0 until it is done)
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(fd, size), name="sha256", daemon=True)
        self._thread.start()

    def _run(self, fd: int, size: int) -> None:
        started = time.monotonic()
        try:
            self._digest = sha256_of(fd, size, self._stop)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        self.seconds = round(time.monotonic() - started, 3)

    def result(self) -> str:
        """The hex digest, once the thread is done; re-raises what the hashing raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest

    def cancel(self) -> None:
        """Stop hashing (used when start-up fails) and wait for the thread; a no-op once done."""
        self._stop.set()
        self._thread.join()
