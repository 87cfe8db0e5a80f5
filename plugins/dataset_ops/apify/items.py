"""An Apify actor run's dataset items -> ``{run_id}.jsonl`` and ``{run_id}.csv``, streamed.

Items come from ``apify-client`` (``DatasetClient.iterate_items``: ``GET /v2/datasets/{id}/items``
with ``offset``/``limit`` pages, https://docs.apify.com/api/v2/dataset-items-get), which keeps
asking until the dataset's total is reached, so a short page never ends the download early.

* JSONL: one item per line as the API returned it (orjson), written while the pages arrive.
* CSV: the items flattened (nested objects -> dotted columns ``snapshot.title``; lists -> JSON
  text), RFC 4180 quoting, UTF-8, a header of every column any item has, in first-seen order.
  Columns are only known once every item was seen, so the CSV is written in a second pass over
  the JSONL file. Neither pass holds more than one item (plus the column names) in memory.

Both files are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

#: Apify resource ids (runs, datasets): 17 characters of [A-Za-z0-9].
APIFY_ID = re.compile(r"[A-Za-z0-9]{17}")
CONN_ID = "apify_default"
DEFAULT_API_URL = "https://api.apify.com"


def check_run_id(run_id: Any) -> str:
    """``run_id`` if it is an Apify id (17 letters and digits). :raises ValueError: otherwise,
    naming the value; nothing else can reach a path."""
    if not isinstance(run_id, str) or not APIFY_ID.fullmatch(run_id):  # ($ would allow a final \n)
        raise ValueError(
            f"{run_id!r} is not an Apify run id (17 letters and digits, e.g. 'HG7ML7M8z78YcAPEB')"
        )
    return run_id


def client_from_connection(conn_id: str = CONN_ID):
    """An ``ApifyClient`` from the Airflow Connection ``conn_id``: the token is its password,
    the API base URL its host (with schema and port; default ``https://api.apify.com``)."""
    from airflow.sdk import BaseHook
    from apify_client import ApifyClient

    conn = BaseHook.get_connection(conn_id)
    host = (conn.host or "").rstrip("/")
    if host and "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    if host and conn.port:
        host = f"{host}:{conn.port}"
    return ApifyClient(token=conn.password, api_url=host or DEFAULT_API_URL)


def flatten_item(item: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1]}`` -> ``{"a.b": 1, "c": "[1]"}``: nested objects become dotted
    keys, lists become JSON text, scalars stay."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if value:
                out.update(flatten_item(value, f"{name}."))
            else:
                out[name] = "{}"
        elif isinstance(value, list):
            out[name] = orjson.dumps(value).decode()
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = value
    return out


def write_jsonl(items: Iterable[dict], path: Path) -> int:
    """Write ``items`` to ``path`` (via ``<path>.partial``); returns the number of items."""
    tmp = path.with_name(path.name + ".partial")
    count = 0
    with open(tmp, "wb") as out:
        for item in items:
            out.write(orjson.dumps(item))
            out.write(b"\n")
            count += 1
    os.replace(tmp, path)
    return count


def _read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def write_csv_from_jsonl(jsonl: Path, path: Path) -> tuple[int, list[str]]:
    """Flatten every item of ``jsonl`` into ``path`` (two passes, see the module docstring).

    :returns: (rows written, columns).
    """
    columns: dict[str, None] = {}
    for item in _read_jsonl(jsonl):
        for key in flatten_item(item):
            columns.setdefault(key, None)
    names = list(columns)
    tmp = path.with_name(path.name + ".partial")
    rows = 0
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n", restval="")
        writer.writeheader()
        for item in _read_jsonl(jsonl):
            writer.writerow(flatten_item(item))
            rows += 1
    os.replace(tmp, path)
    return rows, names


def download_items(client, dataset_id: str, folder: Path, run_id: str, *, chunk_size: int = 1000) -> dict:
    """All items of ``dataset_id`` as ``folder/{run_id}.jsonl`` and ``folder/{run_id}.csv``.

    :returns: ``{"items", "jsonl": path, "csv": path, "columns"}``.
    :raises apify_client.errors.ApifyApiError: the API refused (the message has the status).
    """
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / f"{run_id}.jsonl"
    count = write_jsonl(client.dataset(dataset_id).iterate_items(chunk_size=chunk_size), jsonl)
    csv_path = folder / f"{run_id}.csv"
    rows, columns = write_csv_from_jsonl(jsonl, csv_path)
    if rows != count:  # the JSONL file changed between the passes
        raise RuntimeError(f"{jsonl}: {count} items written but {rows} CSV rows")
    return {"items": count, "jsonl": jsonl, "csv": csv_path, "columns": columns}
