"""Free TCP ports on 127.0.0.1: the one port picker of the repository.

Used by the test fixtures (``tests/helpers/services.py`` re-exports it), the Airflow stacks
(``scripts/airflow_stack.py``), the SeaweedFS starter (``scripts/seaweedfs.py``) and the
benchmarks. Importable wherever ``scripts/`` is on ``sys.path`` (pytest's ``pythonpath``, or the
scripts' and benchmarks' own ``sys.path`` line).
"""

from __future__ import annotations

import socket

#: SeaweedFS (and other gRPC-twinned servers) also listen on their HTTP port + this offset.
GRPC_TWIN_OFFSET = 10_000


def bindable(port: int) -> bool:
    """Whether a socket can bind ``port`` on 127.0.0.1 right now (nothing listens on it)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, twin_offset: int | None = None, avoid: set[int] | frozenset[int] = frozenset()) -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel's choice of an ephemeral port).

    ``twin_offset``: also require ``port + twin_offset`` to be free and at most 65535 (SeaweedFS
    opens its gRPC listener there, :data:`GRPC_TWIN_OFFSET`). ``avoid``: ports already promised to
    something else (neither the port nor its twin may be one of them).

    Free "right now" only: another process can take it before the caller binds it. Raises
    :class:`OSError` when no such port turns up in 500 tries.
    """
    for _ in range(500):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in avoid:
            continue
        if twin_offset is None:
            return port
        twin = port + twin_offset
        if twin <= 65535 and twin not in avoid and bindable(twin):
            return port
    raise OSError("no free TCP port on 127.0.0.1 (with its twin) after 500 tries")
