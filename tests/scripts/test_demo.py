"""``scripts/demo.py``'s setup as ``make demo`` / ``make airflow`` run it, into a temporary data
folder (``--setup-only --data-dir``): the Variables, the Connection and every pool of
``include/pools.json`` are in the metadata DB where the ``airflow`` CLI (and so the UI) sees them,
nothing in the launch environment or in ``demo.env`` hides them, a Variable changed afterwards is
what Airflow reads, and a second setup keeps what the user changed. Uses the machine's PostgreSQL
(127.0.0.1:5432, trust) for the demo database, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.py"
POOLS = json.loads((REPO / "include" / "pools.json").read_text())
#: What an older demo.env exported and a user's shell may still hold: it must change nothing.
STALE = {
    "AIRFLOW_VAR_IMDB_BASE_URL": "http://stale.invalid/imdb/",
    "AIRFLOW_CONN_IMDB_POSTGRES": "postgresql://stale@stale.invalid:5432/stale",
    "AIRFLOW_VAR_DATASET_OPS_STORAGE_ROOT": "/stale/storage",
}
USER_URL = "http://user.example.test/imdb/"


def _shell_env() -> dict[str, str]:
    """A user's shell: no Airflow settings of this test session, the stale exports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return {**env, **STALE}


def _setup(data: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--setup-only", "--data-dir", str(data)],
        env=_shell_env(),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{(data / 'demo.log').read_text()[-3000:]}"
    return proc.stdout


def _exports(env_file: Path) -> dict[str, str]:
    exports = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            exports[name] = shlex.split(value)[0] if name != "PATH" else value
    return exports


def _airflow_cli(data: Path, *commands: str) -> list[str]:
    """Run ``airflow`` commands in a shell that sourced ``demo.env`` (with the stale exports
    around it); returns each command's stdout."""
    marker = "=====demo-test-next====="
    script = f"source {shlex.quote(str(data / 'demo.env'))}\n" + f"\necho {marker}\n".join(commands)
    proc = subprocess.run(
        ["bash", "-c", script], env=_shell_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return proc.stdout.split(marker + "\n")


def _metadata(data: Path) -> tuple[dict, dict, dict]:
    """(Variables, the Connection imdb_postgres, pools) as the ``airflow`` CLI shows them."""
    variables, connection, pools = _airflow_cli(
        data,
        f"airflow variables export {shlex.quote(str(data / 'variables.json'))} >/dev/null",
        "airflow connections get imdb_postgres -o json",
        "airflow pools list -o json",
    )
    exported = json.loads((data / "variables.json").read_text())  # {key: {"value", "description"}}
    variables = {k: v["value"] if isinstance(v, dict) else v for k, v in exported.items()}
    [connection] = json.loads(connection)
    pools = {p["pool"]: int(p["slots"]) for p in json.loads(pools)}
    return variables, connection, pools


@pytest.fixture
def demo_data(tmp_path):
    """A demo data folder; its database on the machine's PostgreSQL is dropped afterwards."""
    import demo
    import psycopg
    from helpers.services import PG_ADMIN_URL

    data = tmp_path / "data"
    yield data
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{demo.demo_database(data)}" WITH (FORCE)')


def test_setup_puts_the_settings_in_the_metadata_db_and_nothing_hides_them(demo_data):
    import demo

    data = demo_data
    database = demo.demo_database(data)
    assert database.startswith("imdb_demo_") and database != demo.demo_database(REPO / ".data")
    out = _setup(data)
    assert f"database {database}" in out
    assert "Ignoring AIRFLOW_CONN_IMDB_POSTGRES" in out  # the stale export is named, not used

    # the metadata DB, as the airflow CLI (and the UI) shows it
    variables, connection, pools = _metadata(data)
    assert variables["dataset_ops_storage_root"] == str(data / "storage")
    assert variables["staging_root"] == str(data / "staging")
    sample_url = variables["imdb_base_url"]
    assert sample_url.startswith("http://127.0.0.1:")
    assert (connection["conn_type"], connection["host"], connection["schema"]) == (
        "postgres",
        "127.0.0.1",
        database,
    )
    assert str(REPO) in connection["description"]
    assert pools == {"default_pool": 128} | {name: spec["slots"] for name, spec in POOLS.items()}

    # neither demo.env nor the launch environment holds a Variable or Connection of the demo
    exports = _exports(data / "demo.env")
    assert not [k for k in exports if k.startswith(("AIRFLOW_VAR_", "AIRFLOW_CONN_"))]
    shell = {**_shell_env(), **exports}
    launch = demo.launch_environment(shell, 8099)
    assert not demo.setting_env_names() & set(launch)
    assert set(STALE) <= demo.setting_env_names()
    assert launch["AIRFLOW__API__BASE_URL"] == "http://localhost:8099"
    assert (
        demo.launch_environment({**shell, "AIRFLOW__API__BASE_URL": "http://ui.test/x"}, 8099)[
            "AIRFLOW__API__BASE_URL"
        ]
        == "http://ui.test/x"
    )

    # the user changes the Variable and a pool: Airflow reads the change (env before DB, as a
    # task does), and a second setup keeps both
    _airflow_cli(
        data,
        f"airflow variables set imdb_base_url {USER_URL}",
        "airflow pools set imdb_postgres 7 'resized by the user'",
    )
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "from airflow.models.variable import Variable; print(Variable.get('imdb_base_url'))",
        ],
        env=launch,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip().splitlines()[-1] == USER_URL

    out = _setup(data)
    assert f"Variable imdb_base_url = {USER_URL!r} kept (changed in Airflow" in out
    variables, connection, pools = _metadata(data)
    assert variables["imdb_base_url"] == USER_URL
    assert variables["dataset_ops_storage_root"] == str(data / "storage")
    assert connection["schema"] == database
    assert pools["imdb_postgres"] == 7
    assert {name: pools[name] for name in POOLS if name != "imdb_postgres"} == {
        name: spec["slots"] for name, spec in POOLS.items() if name != "imdb_postgres"
    }


def test_a_setting_the_demo_wrote_is_updated_by_the_next_setup(demo_data):
    """The sample server's port changes per run: ``imdb_base_url`` follows it while nobody
    changed it (the record of what the demo wrote tells the two apart)."""
    first = _setup(demo_data)
    url = _metadata(demo_data)[0]["imdb_base_url"]
    record = json.loads((demo_data / "demo-settings.json").read_text())
    assert record["variables"]["imdb_base_url"] == url and "changed in Airflow" not in first
    second = _setup(demo_data)
    new_url = _metadata(demo_data)[0]["imdb_base_url"]
    assert "changed in Airflow" not in second
    assert new_url.startswith("http://127.0.0.1:") and new_url in second
