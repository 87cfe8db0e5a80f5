"""An upload to a local staging root (a folder or ``file://``; the embedded default).

The bytes are copied in 8 MiB blocks to a hidden ``.<base>.upload.partial`` file beside the key
(sha256 computed on the way, fsynced), then hard-linked to the key: ``link`` never replaces a
file, so the object appears under ``uploads/`` only when complete and a file waiting there is
never overwritten (:class:`~dataset_ops.staging.upload.errors.NameTaken`). The ``uploading``
record names the partial file and the source's size and ``mtime_ns``; a rerun with the same
source checks the partial file block by block against the source and copies only the rest, else
starts over, saying so. The staging cleanup removes partial files older than its
``multipart_older_than_hours``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dataset_ops.progress import format_bytes
from dataset_ops.staging.status import UploadState, UploadStatus, now_iso, status_key, write_status
from dataset_ops.staging.upload.errors import NameTaken, UploadError, UploadInterrupted
from dataset_ops.staging.upload.hashing import sha256_of
from dataset_ops.staging.upload.plan import CRASH_ENV, MULTIPART_BLOCK, local_destination
from dataset_ops.staging.upload.progress import upload_progress
from dataset_ops.staging.upload.resume import existing_upload, verified_prefix
from dataset_ops.storage import file_sha256, open_storage, read_json

MiB = 1 << 20
#: Block size of a local upload (bytes): reads, progress, resume checks and the crash hook count these.
LOCAL_BLOCK = 8 * MiB


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def upload_local(
    path: Path,
    dest: str,
    name: str,
    data_type: str | None,
    progress: bool,
    say: Callable[[str], None],
    started: float,
) -> UploadStatus:
    """Copy the checked local file ``path`` to ``<dest><name>`` in a local staging root (see the
    module docstring) and record it as ``uploaded``.

    :param dest: a folder or ``file://`` URI (:func:`~dataset_ops.staging.upload.plan.local_destination`).
    :param progress: show the progress line on stderr. :param say: where notices go.
    :param started: ``time.monotonic()`` when the upload began (for ``timings``).
    :returns: the ``uploaded`` record.
    :raises NameTaken: ``uploads/<name>`` holds a different file (nothing replaced).
    :raises UploadError: the file changed during the copy. :raises UploadInterrupted: Ctrl-C.
    """
    root, prefix = local_destination(dest)
    storage = open_storage(root)
    key = f"{prefix}{name}"
    folder, _, base = key.rpartition("/")
    partial_key = f"{folder}/.{base}.upload.partial" if folder else f".{base}.upload.partial"
    final, partial = Path(storage.uri(key)), Path(storage.uri(partial_key))
    record = read_json(storage, status_key(name))
    previous = UploadStatus.from_dict(record) if record else None
    with open(path, "rb") as fh:
        fd = fh.fileno()
        st = os.fstat(fd)
        size = st.st_size
        if final.is_file():  # same content: nothing to do; different: never replaced
            existing = file_sha256(storage, key) if final.stat().st_size == size else None
            sha256 = sha256_of(fd, size)
            return existing_upload(
                storage, name, str(final), previous, data_type, size, sha256, existing, say
            )
        source = {"path": str(path), "size": size, "mtime_ns": st.st_mtime_ns}
        block = (record or {}).get(MULTIPART_BLOCK) or {}
        digest = hashlib.sha256()
        offset = 0
        resumable = (
            previous is not None
            and previous.state == UploadState.UPLOADING
            and block.get("partial") == partial_key
            and block.get("source") == source
            and partial.is_file()
        )
        if resumable:
            offset = verified_prefix(fd, partial, digest, LOCAL_BLOCK)
            say(f"resuming: {format_bytes(offset)} of {format_bytes(size)} already copied to {partial}")
        elif partial.exists() or (previous is not None and previous.state == UploadState.UPLOADING):
            say(f"the interrupted upload of {name} was of a different or changed file: starting over")
            partial.unlink(missing_ok=True)
        if previous is not None and previous.state == UploadState.UPLOADING and resumable:
            status = previous if not data_type else replace(previous, data_type=data_type)
        else:
            fields = dict(
                size=size, sha256=None, upload_id=None, records=None, errors=None, error_summary=None,
                report_key=None, version=None, key=None, duplicate_of=None, timings={},
                data_type=data_type or (previous.data_type if previous else None),
            )  # fmt: skip
            status = (
                UploadStatus(name=name, state=str(UploadState.UPLOADING), **fields)
                if previous is None
                else previous.moved_to(UploadState.UPLOADING, started_at=now_iso(), **fields)
            )
        write_status(storage, replace(status, multipart={"partial": partial_key, "source": source}))
        if not resumable:
            say(f"uploading {path} to {final}: {format_bytes(size)}")
        crash_after = int(os.environ.get(CRASH_ENV) or 0)
        sending = time.monotonic()
        partial.parent.mkdir(parents=True, exist_ok=True)
        out = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            with upload_progress(name, size, done=offset).reporting(progress) as prog:
                blocks = 0
                while offset < size:
                    data = os.pread(fd, min(LOCAL_BLOCK, size - offset), offset)
                    if not data:
                        raise UploadError(f"{path} ended at byte {offset:,}: it shrank during the upload")
                    digest.update(data)
                    _write_all(out, data)
                    offset += len(data)
                    prog.add(len(data))
                    blocks += 1
                    if crash_after and blocks >= crash_after:
                        sys.stderr.write(f"\n{CRASH_ENV}={crash_after}: simulated crash (os._exit(137))\n")
                        sys.stderr.flush()
                        os._exit(137)
            os.fsync(out)
        except KeyboardInterrupt as exc:
            raise UploadInterrupted(
                f"{format_bytes(offset)} of {format_bytes(size)} copied; kept in {partial}"
            ) from exc
        finally:
            os.close(out)
        now = os.fstat(fd)
        if (now.st_size, now.st_mtime_ns) != (size, st.st_mtime_ns):
            raise UploadError(
                f"{path} changed during the upload (the next run starts over with the new content)"
            )
    sha256 = digest.hexdigest()
    try:
        os.link(partial, final)
    except FileExistsError:
        raise NameTaken(
            f"{final} appeared during the upload (another upload of this name): nothing was replaced; "
            f"rerun the command once that file was validated (the copy in {partial} is reused)"
        ) from None
    partial.unlink()
    total = round(time.monotonic() - started, 3)
    status = status.moved_to(
        UploadState.UPLOADED,
        size=size,
        sha256=sha256,
        upload_id=None,
        multipart=None,
        etag=None,
        timings={"upload": total},
    )
    write_status(storage, status)
    send_seconds = max(time.monotonic() - sending, 1e-9)
    say(
        f"uploaded {final}: {format_bytes(size)} in {total:.1f} s "
        f"({size / MiB / send_seconds:.1f} MiB/s); sha256 {sha256}"
    )
    return status
