"""Reading the suite's Airflow Variables the same way inside a task and in a command-line tool.

Inside a task (a task runner talking to its supervisor) a Variable comes from the Execution API:
``AIRFLOW_VAR_<KEY>`` in the environment, a secrets backend, then the metadata database. In a
command-line tool (``python -m dataset_ops.upload``, ``python -m dataset_ops.staging``) the Task
SDK has no supervisor to ask, so :func:`variable` reads the environment form and then the
metadata database of the configured Airflow home (``AIRFLOW_HOME`` / ``sql_alchemy_conn``), the
one the UI edits: a Variable set in the UI is what the tools use too.
"""

from __future__ import annotations

import os
from typing import Any


class VariableUnavailable(RuntimeError):
    """A Variable could not be read: the metadata database it lives in cannot be read."""


def _in_task() -> bool:
    """Whether this process runs a task (its supervisor's channel is set up)."""
    from airflow.sdk.execution_time import task_runner

    return hasattr(task_runner, "SUPERVISOR_COMMS")


def variable(key: str, default: Any = None) -> Any:
    """The Airflow Variable ``key`` (a string), or ``default`` when it is set nowhere.

    Order: ``AIRFLOW_VAR_<KEY>``; inside a task the Task SDK's ``Variable.get`` (secrets backends,
    metadata database through the Execution API); outside a task the metadata database of the
    configured Airflow home (``airflow.models.Variable``).

    :raises VariableUnavailable: outside a task, the metadata database cannot be read (not
        migrated, not reachable); a Variable that is simply not set is not an error.
    """
    env = os.environ.get(f"AIRFLOW_VAR_{key.upper()}")
    if env is not None:
        return env
    if _in_task():
        from airflow.sdk import Variable

        return Variable.get(key, default=default)
    from airflow.models import Variable as StoredVariable
    from sqlalchemy.exc import SQLAlchemyError

    try:
        # the Task SDK's Variable cannot read the database outside a task; `airflow variables get`
        # reads it with this model too
        return StoredVariable.get(key, default_var=default)  # noqa: AIR311
    except SQLAlchemyError as exc:
        from airflow.configuration import conf

        database = conf.get("database", "sql_alchemy_conn").split("@")[-1]
        raise VariableUnavailable(
            f"the Variable {key} cannot be read from the Airflow metadata database ({database}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}; set AIRFLOW_VAR_{key.upper()} or "
            "give the value on the command line"
        ) from exc
