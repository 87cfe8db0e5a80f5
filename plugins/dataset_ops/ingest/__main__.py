"""``python -m dataset_ops.ingest ENTITY --start ISO --end ISO [--layout partitioned|flat] [--root URI]``

Runs one entity for one data interval, the same code the DAG's in-process tasks run; this is
what the ``DockerOperator`` runner starts in the ingest image (``include/docker/ingest/``).
Connections come from the environment (``AIRFLOW_CONN_<ID>``) like in any Airflow process.
The lake is ``--root``, else the Variable ``datalake_root`` (``AIRFLOW_VAR_DATALAKE_ROOT``), else
``datalake/`` below the storage root (:func:`dataset_ops.settings.datalake_root`); an ``s3://``
lake needs the Connection ``aws_default`` (exit code 1 naming it when it is missing).
Prints the metrics as JSON on stdout; exit code 1 with the error on stderr when it fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +00:00)")
    return moment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataset_ops.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("entity", help="entity name from include/microservices.yaml")
    parser.add_argument("--start", type=_when, required=True, help="data interval start, ISO 8601 with zone")
    parser.add_argument("--end", type=_when, required=True, help="data interval end (exclusive)")
    parser.add_argument("--layout", choices=["partitioned", "flat"], default="partitioned")
    parser.add_argument(
        "--root", help="lake root (default: Variable datalake_root, else datalake/ below the storage root)"
    )
    parser.add_argument("--config", help="config file (default: include/microservices.yaml)")
    parser.add_argument("--run-id", default=None, help="recorded in the metrics")
    args = parser.parse_args(argv)
    from dataset_ops import settings
    from dataset_ops.ingest.tasks import run_entity

    try:
        metrics = run_entity(
            args.entity,
            args.start,
            args.end,
            settings.datalake_root(args.root).open(),
            layout=args.layout,
            config_path=args.config,
            producer={"runner": "docker", "run_id": args.run_id},
        )
    except Exception as exc:
        print(f"ingest of {args.entity} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
