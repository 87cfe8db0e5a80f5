"""Process folders of the inference workflow: ``{storage root}/processes/{process_name}/``.

::

    reports/            dataset_{deployment_id}_{YYYYmmdd_HHMMSS}.xlsx (the time is the window's end)
    images/productos/   review images per reference      images/devices/   review images per device
    data/               records.parquet, references/labels/devices .parquet, model.json
    logs/               one JSON summary per step
    process_metadata.json   Params, counts, timings (seconds) per step, status

A process is named ``dataset_{deployment_id}_{ddmmyy}_v{n}`` by default, ``n`` the next free
number for that deployment and day; the DAG run that created it is recorded, so a retry of the
same DAG run reuses its process instead of taking the next number.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from dataset_ops.storage import read_json, write_json

if TYPE_CHECKING:
    from dataset_ops.storage import Storage

PROCESSES_PREFIX = "processes"
METADATA = "process_metadata.json"
FOLDERS = ("reports", "images/productos", "images/devices", "data", "logs")
#: A process name, as the DAGs' Params check it (JSON Schema); :func:`check_process_name` too.
PROCESS_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_NAME = re.compile(PROCESS_NAME_PATTERN[1:-1])


class ProcessExists(RuntimeError):
    """The process name is taken by another DAG run."""


def check_process_name(name: object) -> str:
    """``name`` if it is a safe folder name (letters, digits, ``_.-``, at most 100, not starting
    with a dot). :raises ValueError: otherwise, naming it."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{name!r} is not a process name (letters, digits, '_', '.', '-'; at most 100)")
    return name


def process_prefix(name: str) -> str:
    return f"{PROCESSES_PREFIX}/{check_process_name(name)}"


def read_metadata(storage: Storage, name: str) -> dict | None:
    return read_json(storage, f"{process_prefix(name)}/{METADATA}")


def write_metadata(storage: Storage, name: str, metadata: dict) -> dict:
    metadata["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(storage, f"{process_prefix(name)}/{METADATA}", metadata)
    return metadata


def _existing(storage: Storage, base: str) -> dict[int, str]:
    """``{n: name}`` of the processes named ``{base}{n}``."""
    found: dict[int, str] = {}
    pattern = re.compile(re.escape(base) + r"(\d+)")
    for name in storage.children(PROCESSES_PREFIX):
        match = pattern.fullmatch(name)
        if match:
            found[int(match.group(1))] = name
    return found


def _first(deployment_id: int, dag_run_id: str, name: str) -> bytes:
    """The first metadata of a process (written by the claim)."""
    import json

    return json.dumps(
        {
            "process_name": name,
            "deployment_id": int(deployment_id),
            "dag_run_id": dag_run_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "steps": {},
        },
        indent=2,
        sort_keys=True,
    ).encode()


def start_process(
    storage: Storage, deployment_id: int, day: date, dag_run_id: str, params: dict, name: str | None = None
) -> dict:
    """Create (or, for a retry of the same DAG run, reuse) the process and its metadata.

    :param name: the Param ``process_name``; empty: ``dataset_{deployment_id}_{ddmmyy}_v{n}``.
    :returns: the metadata (``process_name``, ``prefix``, ``status`` running, ...).
    :raises ProcessExists: ``name`` belongs to another DAG run.
    :raises ValueError: an unsafe ``name``.
    """
    if name:
        check_process_name(name)
        if not storage.create(f"{process_prefix(name)}/{METADATA}", _first(deployment_id, dag_run_id, name)):
            owner = (read_metadata(storage, name) or {}).get("dag_run_id")
            if owner != dag_run_id:
                raise ProcessExists(f"process {name} exists (DAG run {owner}); choose another process_name")
    else:
        base = f"dataset_{int(deployment_id)}_{day:%d%m%y}_v"
        existing = _existing(storage, base)
        mine = [
            n
            for n, candidate in existing.items()
            if (read_metadata(storage, candidate) or {}).get("dag_run_id") == dag_run_id
        ]
        number = mine[0] if mine else max(existing, default=0) + 1
        # claim the number with a create-only write; a concurrent run that got it sends us on
        while not mine and not storage.create(
            f"{process_prefix(f'{base}{number}')}/{METADATA}",
            _first(deployment_id, dag_run_id, f"{base}{number}"),
        ):
            number += 1
        name = f"{base}{number}"
    metadata = read_metadata(storage, name)
    metadata.update(
        status="running", params=params, prefix=process_prefix(name), uri=storage.uri(process_prefix(name))
    )
    return write_metadata(storage, name, metadata)


def record_step(storage: Storage, name: str, step: str, info: dict, *, status: str | None = None) -> dict:
    """Add ``info`` (counts, ``seconds``) under ``steps[step]`` of the metadata and write
    ``logs/{step}.json``."""
    metadata = read_metadata(storage, name) or {"process_name": name, "steps": {}}
    metadata.setdefault("steps", {})[step] = info
    if status:
        metadata["status"] = status
    write_json(storage, f"{process_prefix(name)}/logs/{step}.json", info)
    return write_metadata(storage, name, metadata)
