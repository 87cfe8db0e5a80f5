"""What the tasks of the ``dataset_retention`` DAG share: the dry-run rule of scheduled runs."""

from __future__ import annotations


def effective_dry_run(requested: bool, run_type) -> bool:
    """Scheduled runs delete (they run with the Params' defaults, whose ``dry_run`` is true for
    the people triggering by hand); every other run type does what ``dry_run`` says.

    :param run_type: the DAG run's ``run_type`` (the Task SDK's ``DagRunType`` str enum, whose
        ``str()`` is ``"DagRunType.SCHEDULED"``, or its value ``"scheduled"``).
    """
    return False if getattr(run_type, "value", run_type) == "scheduled" else bool(requested)
