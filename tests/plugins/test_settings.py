"""``dataset_ops.settings.variable`` in a command-line tool: the Variable the UI edits (the metadata
database of the Airflow home), unless ``AIRFLOW_VAR_<KEY>`` is set; the staging tools use it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRINT_ROOT = "from dataset_ops.staging.status import staging_root; print(staging_root())"


def _python(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_VAR_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "PYTHONPATH": str(REPO / "plugins"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_a_command_line_tool_reads_the_variable_set_in_the_metadata_database(tmp_path):
    root = str(tmp_path / f"staging-{uuid.uuid4().hex[:6]}")
    set_it = f"from airflow.models import Variable; Variable.set('staging_root', {root!r}); print('set')"
    assert _python(set_it) == "set"
    try:
        assert _python(PRINT_ROOT) == root  # what `python -m dataset_ops.upload` would use
        assert _python(PRINT_ROOT, AIRFLOW_VAR_STAGING_ROOT="/elsewhere") == "/elsewhere"  # env wins
    finally:
        _python("from airflow.models import Variable; Variable.delete('staging_root'); print('ok')")
    assert _python(PRINT_ROOT) == "s3://training-data/"  # unset: the documented default
