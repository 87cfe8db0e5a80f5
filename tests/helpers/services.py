"""Addresses of the machine's services that the tests use, importable from any test module
(``conftest`` is not: ``tests/plugins/validation/conftest.py`` shares the module name)."""

from __future__ import annotations

import os

from ports import free_port  # noqa: F401 (the repository's one port picker, scripts/ports.py)

#: The PostgreSQL server tests create their throwaway databases on (``DATASET_OPS_TEST_PG``).
PG_ADMIN_URL = os.environ.get("DATASET_OPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
