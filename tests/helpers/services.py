"""Addresses of the machine's services that the tests use, importable from any test module
(``conftest`` is not: ``tests/plugins/validation/conftest.py`` shares the module name)."""

from __future__ import annotations

import os
import socket

#: The PostgreSQL server tests create their throwaway databases on (``DATASET_OPS_TEST_PG``).
PG_ADMIN_URL = os.environ.get("DATASET_OPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
