"""Loading the suite's DAGs for ``dag.test()`` runs."""

from __future__ import annotations

from pathlib import Path


def load_dag(dag_id: str, *, retries: int | None = None):
    """The DAG ``dag_id`` from the dags folder (asserting that no file fails to import).

    :param retries: when given, set on every task (0: failures show at once, no retry waits).
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    if retries is not None:
        for task in dag.tasks:
            task.retries = retries
    return dag


#: Every DAG of the suite, by file name (one DAG a file).
DAG_IDS = tuple(sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "dags").glob("*.py")))
