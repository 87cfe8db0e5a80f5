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
from dataset_ops.ingest.extract import ingest_entity, lake_key
from dataset_ops.ingest.http import IngestHTTPError, make_session
from dataset_ops.ingest.pagination import PaginationError
from dataset_ops.storage import open_storage

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
    stored = orjson.loads(read(storage, lake_key(name, "metrics", START)))
    assert stored["rows"] == metrics["rows"] and stored["pages"] == metrics["pages"] >= 1


def test_on_s3_a_rerun_leaves_the_same_keys_and_bytes(server, s3_bucket):
    storage = open_storage(f"s3://{s3_bucket}/lake")
    first = run(server, storage, "clientes")
    keys = sorted(storage.list(""))
    contents = {k: read(storage, k) for k in keys if not k.startswith("_metrics/")}
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
