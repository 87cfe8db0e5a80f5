"""One entity, one run, against the local inventory services (tests/helpers/inventory_server.py):
the files read back with pandas and pyarrow and match what the service served; reruns replace
their own files; every fault ends as described."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.inventory_server import InventoryServer

from dataset_ops.ingest.config import load_config
from dataset_ops.ingest.extract import ingest_entity, lake_key, read_partition_manifest
from dataset_ops.ingest.http import IngestHTTPError, make_session
from dataset_ops.ingest.pagination import PaginationError
from dataset_ops.storage import open_storage
from dataset_ops.storage.manifest import verify

START = datetime(2026, 11, 15, 2, 0, tzinfo=UTC)
END = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
FAST = {"backoff_factor": 0.01, "backoff_jitter": 0.0, "retries": 3, "read_timeout": 5.0}


@pytest.fixture
def server():
    with InventoryServer(seed=7) as s:
        yield s


def entity(name: str, **http):
    return load_config().entity(name).with_overrides(http={**FAST, **http})


def run(server, storage, name: str, layout="partitioned", **http) -> dict:
    e = entity(name, **http)
    session = make_session(server.base_url, e.http)
    return ingest_entity(e, session, storage, START, END, layout=layout, producer={"test": True})


def read(storage, key: str) -> bytes:
    with storage.open_read(key) as fh:
        return fh.read()


def expected_rows(server, name: str) -> list[dict]:
    if name == "ordenes":
        return server.records(
            name, updated_since="2026-11-15T02:00:00Z", updated_before="2026-11-16T02:00:00Z"
        )
    return server.records(name)


@pytest.mark.parametrize("name", ["productos", "categorias", "ordenes", "clientes", "proveedores"])
def test_every_entity_lands_three_formats_that_match_the_source(server, tmp_path, name):
    storage = open_storage(str(tmp_path / "lake"))
    metrics = run(server, storage, name)
    source = expected_rows(server, name)
    assert metrics["records"] == len(source) and metrics["duplicates"] == 0 and metrics["invalid_rows"] == 0
    assert metrics["mode"] == ("incremental" if name == "ordenes" else "snapshot")

    raw = [orjson.loads(line) for line in read(storage, lake_key(name, "jsonl", START)).splitlines()]
    assert raw == source  # the backup is the records as served

    csv_df = pd.read_csv(
        io.BytesIO(read(storage, lake_key(name, "csv", START))), dtype=str, keep_default_na=False
    )
    table = pq.read_table(io.BytesIO(read(storage, lake_key(name, "parquet", START))))
    assert list(csv_df.columns) == table.column_names == metrics["columns"]
    if name == "proveedores":  # one row per product of each supplier, at least one per supplier
        assert metrics["rows"] == sum(max(1, len(r.get("productos") or [])) for r in source)
        first = source[0]
        rows = table.to_pylist()
        mine = [r for r in rows if r["_id"] == first["_id"]]
        assert [r["productos.sku"] for r in mine] == [p["sku"] for p in first["productos"]] or not first[
            "productos"
        ]
        assert mine[0]["contacto.email"] == first["contacto"]["email"]
    else:
        assert metrics["rows"] == len(source) == len(csv_df) == table.num_rows
        assert table.column("id").to_pylist() == [r["id"] for r in source]
        assert csv_df["id"].tolist() == [str(r["id"]) for r in source]
        if name == "productos":  # names with commas and quotes survive the CSV quoting
            assert csv_df["nombre"].tolist() == [r["nombre"] for r in source]
            assert table.column("precio").to_pylist() == [r["precio"] for r in source]
            assert set(csv_df["activo"]) <= {"true", "false"}
    files = {f["format"]: f for f in metrics["files"]}
    assert set(files) == {"csv", "jsonl", "parquet"} and all(f["sha256"] for f in files.values())
    # each format's partition has its manifest (the old _metrics/ object is no longer written)
    assert not storage.exists(lake_key(name, "metrics", START))
    for fmt, f in files.items():
        prefix, _, file_name = f["key"].rpartition("/")
        raw = orjson.loads(read(storage, f"{prefix}/_manifest.json"))
        assert raw["status"] == "complete" and raw["producer"] == {"test": True}
        assert raw["files"] == [
            {"path": file_name, "bytes": f["bytes"], "sha256": f["sha256"], "rows": f["rows"]}
        ]
        stored = raw["extra"]["runs"][f"{name}_20261115_020000"]
        assert stored["rows"] == metrics["rows"] and stored["pages"] == metrics["pages"] >= 1
        assert raw["extra"]["formats"] == [fmt]
        assert verify(storage, read_partition_manifest(storage, prefix), checksums=True) == []


def test_on_s3_a_rerun_leaves_the_same_keys_and_bytes(server, s3_bucket):
    storage = open_storage(f"s3://{s3_bucket}/lake")
    first = run(server, storage, "clientes")
    keys = sorted(storage.list(""))
    contents = {k: read(storage, k) for k in keys if not k.endswith("/_manifest.json")}
    second = run(server, storage, "clientes")
    assert sorted(storage.list("")) == keys
    assert {k: read(storage, k) for k in contents} == contents
    assert [f["sha256"] for f in first["files"]] == [f["sha256"] for f in second["files"]]
    assert "clientes/dt=2026-11-15/clientes_20261115_020000.csv" in keys


def test_flat_layout_and_gzip(server, tmp_path):
    storage = open_storage(str(tmp_path / "lake"))
    e = entity("categorias").with_overrides(gzip=True)
    metrics = ingest_entity(e, make_session(server.base_url, e.http), storage, START, END, layout="flat")
    assert sorted(f["key"] for f in metrics["files"]) == [
        "categorias/categorias_20261115_020000.csv.gz",
        "categorias/categorias_20261115_020000.jsonl.gz",
        "categorias/categorias_20261115_020000.parquet",
    ]
    flat = read_partition_manifest(storage, "categorias")  # one manifest for the entity's folder
    assert sorted(f.path for f in flat.files) == [
        k.split("/")[1] for k in sorted(f["key"] for f in metrics["files"])
    ]
    assert flat.extra["formats"] == ["csv", "jsonl", "parquet"] and verify(storage, flat) == []
    df = pd.read_csv(
        io.BytesIO(read(storage, "categorias/categorias_20261115_020000.csv.gz")), compression="gzip"
    )
    assert len(df) == server.count("categorias")


def test_duplicates_and_invalid_records_are_dropped_and_counted(server, tmp_path):
    storage = open_storage(str(tmp_path / "lake"))
    server.duplicates = 7
    orders = run(server, storage, "ordenes")
    assert orders["duplicates"] > 0 and orders["rows"] == orders["records"] - orders["duplicates"]
    assert orders["rows"] == len(expected_rows(server, "ordenes"))
    server.invalid = 5
    products = run(server, storage, "productos")
    assert products["invalid_rows"] == 5 and products["rows"] == server.count("productos") - 5
    assert all("precio" in example["reason"] for example in products["invalid_examples"])


def test_5xx_and_429_are_retried_and_retry_after_is_honoured(server, tmp_path):
    storage = open_storage(str(tmp_path / "lake"))
    server.fault("/api/clientes", "status", times=2, status=503)
    server.fault("/api/clientes", "status", times=1, status=429, retry_after=1)
    started = time.monotonic()
    metrics = run(server, storage, "clientes")
    assert time.monotonic() - started >= 1.0  # waited as Retry-After said
    assert metrics["rows"] == server.count("clientes")
    statuses = [status for path, _, status in server.requests if path == "/api/clientes"]
    assert statuses[:4] == [503, 503, 429, 200]


def test_a_read_timeout_and_a_dropped_connection_are_retried(server, tmp_path):
    storage = open_storage(str(tmp_path / "lake"))
    server.fault("/api/categorias", "timeout", times=1, seconds=2.0)
    server.fault("/api/categorias", "drop", times=1)
    metrics = run(server, storage, "categorias", read_timeout=0.5)
    assert metrics["rows"] == server.count("categorias")


def test_retries_run_out_with_the_url_and_status(server, tmp_path):
    storage = open_storage(str(tmp_path / "lake"))
    server.fault("/api/productos", "status", times=None, status=500)
    with pytest.raises(IngestHTTPError, match=r"/api/productos\?.*HTTP 500 .*after retries"):
        run(server, storage, "productos")
    assert len([p for p, _, _ in server.requests if p == "/api/productos"]) == 1 + FAST["retries"]
    assert list(storage.list("")) == []  # nothing half-published


def test_other_4xx_fail_at_once(server, tmp_path):
    storage = open_storage(str(tmp_path / "lake"))
    server.fault("/api/clientes", "status", times=None, status=404)
    with pytest.raises(IngestHTTPError, match="HTTP 404"):
        run(server, storage, "clientes")
    assert len([p for p, _, _ in server.requests if p == "/api/clientes"]) == 1


def test_a_malformed_page_stops_with_its_url(server, tmp_path):
    storage = open_storage(str(tmp_path / "lake"))
    server.fault("/api/proveedores", "malformed", times=None)
    with pytest.raises(IngestHTTPError, match="/api/proveedores.*not JSON"):
        run(server, storage, "proveedores")


def test_a_cursor_loop_and_a_repeated_page_stop_instead_of_looping(server, tmp_path):
    storage = open_storage(str(tmp_path / "lake"))
    server.fault("/api/ordenes", "cursor_loop", times=None)
    with pytest.raises(PaginationError, match="again|repeats the records of page 1"):
        run(server, storage, "ordenes")
    server.clear_faults()
    server.requests.clear()
    server.fault("/api/productos", "repeat_page", times=None)
    with pytest.raises(PaginationError, match="repeats the records of page 1"):
        run(server, storage, "productos")
    assert len(server.requests) == 2
    assert list(storage.list("")) == []


def test_partitions_written_by_the_earlier_metrics_objects_are_read_as_manifests(tmp_path):
    """Earlier versions left ``_metrics/<entity>/dt=<day>/<base>.json`` (partitioned) or
    ``<entity>/_metrics/<base>.json`` (flat) and no ``_manifest.json``: the metrics become each
    prefix's manifest, and a new run of the same partition keeps the old run's files listed."""
    import hashlib
    import json

    storage = open_storage(str(tmp_path / "lake"))
    data = {
        "productos/dt=2026-11-14/productos_20261114_020000.csv": b"id\n1\n2\n",
        "raw/productos/dt=2026-11-14/productos_20261114_020000.jsonl": b'{"id": 1}\n{"id": 2}\n',
        "productos/productos_20261114_020000.csv": b"id\n1\n",
    }
    for key, body in data.items():
        storage.write_stream(key, io.BytesIO(body))

    def old_metrics(keys, layout):  # the exact shape the earlier ingest_entity wrote
        return {
            "entity": "productos",
            "service": "productos_service",
            "endpoint": "/api/productos",
            "mode": "snapshot",
            "data_interval": {"start": "2026-11-14T02:00:00Z", "end": "2026-11-15T02:00:00Z"},
            "layout": layout,
            "producer": {"dag_id": "microservice_ingest", "run_id": "scheduled__old"},
            "pages": 1,
            "records": 2,
            "bytes": 40,
            "duplicates": 0,
            "invalid_rows": 0,
            "rows": 2,
            "invalid_examples": [],
            "columns": ["id"],
            "files": [
                {
                    "key": k,
                    "bytes": len(data[k]),
                    "sha256": hashlib.sha256(data[k]).hexdigest(),
                    "format": "jsonl" if k.endswith(".jsonl") else "csv",
                    "rows": 2,
                }
                for k in keys
            ],
            "seconds": 0.5,
            "finished_at": "2026-11-15T02:00:07+00:00",
        }

    partitioned = old_metrics(list(data)[:2], "partitioned")
    flat = old_metrics(list(data)[2:], "flat")
    for key, body in (
        (lake_key("productos", "metrics", START.replace(day=14)), partitioned),
        (lake_key("productos", "metrics", START.replace(day=14), "flat"), flat),
    ):
        storage.write_stream(key, io.BytesIO(json.dumps(body, indent=2, sort_keys=True).encode()))

    csv = read_partition_manifest(storage, "productos/dt=2026-11-14")
    assert csv.legacy and csv.complete and [f.path for f in csv.files] == ["productos_20261114_020000.csv"]
    assert csv.producer["run_id"] == "scheduled__old" and csv.extra["formats"] == ["csv"]
    assert csv.extra["runs"]["productos_20261114_020000"]["records"] == 2
    assert verify(storage, csv, checksums=True) == []
    jsonl = read_partition_manifest(storage, "raw/productos/dt=2026-11-14")
    assert [f.path for f in jsonl.files] == ["productos_20261114_020000.jsonl"] and jsonl.file(
        "productos_20261114_020000.jsonl"
    ).rows == 2
    old_flat = read_partition_manifest(storage, "productos")
    assert [f.path for f in old_flat.files] == ["productos_20261114_020000.csv"]
    assert read_partition_manifest(storage, "parquet/productos/dt=2026-11-14") is None

    # a run of the next day in the flat folder adds to what the old run left
    from dataset_ops.ingest.extract import write_manifests

    storage.write_stream("productos/productos_20261115_020000.csv", io.BytesIO(b"id\n3\n"))
    new = {**flat, "producer": {"dag_id": "microservice_ingest", "run_id": "scheduled__new"}}
    new["files"] = [
        {
            "key": "productos/productos_20261115_020000.csv",
            "bytes": 5,
            "format": "csv",
            "rows": 1,
            "sha256": hashlib.sha256(b"id\n3\n").hexdigest(),
        }
    ]
    (written,) = write_manifests(storage, new, "productos_20261115_020000")
    again = read_partition_manifest(storage, "productos")
    assert not again.legacy and again.producer["run_id"] == "scheduled__new"
    assert [f.path for f in again.files] == ["productos_20261114_020000.csv", "productos_20261115_020000.csv"]
    assert set(again.extra["runs"]) == {"productos_20261114_020000", "productos_20261115_020000"}
    assert verify(storage, again, checksums=True) == []
