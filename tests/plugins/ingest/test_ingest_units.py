"""Pieces of the ingest without a server: config checks, paginators' stop conditions, flattening,
lake keys, the key index."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dataset_ops.ingest.config import ConfigError, load_config
from dataset_ops.ingest.extract import KeyIndex, lake_key
from dataset_ops.ingest.flatten import columns_for, flatten, row_maker
from dataset_ops.ingest.pagination import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextLinkPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PaginationError,
    make_paginator,
)

START = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def test_the_shipped_config_names_five_entities_one_per_style():
    config = load_config()
    assert config.entity_names() == ["productos", "categorias", "ordenes", "clientes", "proveedores"]
    styles = {e.name: e.paginator().style for s in config.services for e in s.entities}
    assert sorted(styles.values()) == ["cursor", "link_header", "next_link", "offset", "page_number"]
    assert [s.pool for s in config.services] == [
        "productos_service",
        "ordenes_service",
        "proveedores_service",
    ]
    assert config.entity("ordenes").incremental == {
        "since_param": "updated_since",
        "before_param": "updated_before",
    }
    with pytest.raises(KeyError, match="known"):
        config.entity("nope")


@pytest.mark.parametrize(
    "change, message",
    [
        ("    pagination: {style: pages}\n", "pagination style 'pages'"),
        ("    pagination: {style: cursor, nonsense: 1}\n", "unexpected keyword"),
        ("    formats: [xlsx]\n", "unknown format"),
        ("    color: red\n", "unknown setting"),
        ("    explode: nombre\n", "not a list of objects"),
    ],
)
def test_config_errors_name_the_entity(tmp_path, change, message):
    text = (
        "services:\n  s:\n    entities:\n      e:\n        endpoint: /x\n        primary_key: id\n"
        "        schema: {type: object, properties: {id: {type: integer}, nombre: {type: string}}}\n"
    )
    base = "        pagination: {style: offset}\n"
    if change.lstrip().startswith("pagination"):
        base = ""
    path = tmp_path / "c.yaml"
    path.write_text(text + base + "    " + change)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "services.s.entities.e" in str(info.value)


def test_page_number_stops_at_total_pages_or_a_short_or_empty_page():
    p = PageNumberPaginator(records_path="items", total_pages_path="total_pages", page_size=2)
    first = p.first("api/x", {"a": "1"})
    assert first.params == {"a": "1", "size": "2", "page": "1"}
    second = p.next(first, {"items": [{}, {}], "total_pages": 3}, {}, [{}, {}])
    assert second.params["page"] == "2"
    assert (
        p.next(second.__class__("api/x", {**second.params, "page": "3"}), {"total_pages": 3}, {}, [{}])
        is None
    )
    no_total = PageNumberPaginator(page_size=2)
    assert no_total.next(first, {}, {}, [{}]) is None  # short page
    assert no_total.next(first, {}, {}, []) is None  # empty page


def test_offset_cursor_and_links():
    o = OffsetPaginator(records_path="results", total_path="total", page_size=2)
    r = o.first("api/c", {})
    r2 = o.next(r, {"total": 3}, {}, [{}, {}])
    assert r2.params["offset"] == "2" and o.next(r2, {"total": 3}, {}, [{}]) is None

    c = CursorPaginator(records_path="data", page_size=2)
    r = c.first("api/o", {"updated_since": "x"})
    assert c.next(r, {"next_cursor": "abc"}, {}, [{}]).params == {
        "updated_since": "x",
        "limit": "2",
        "cursor": "abc",
    }
    assert c.next(r, {"next_cursor": None}, {}, [{}]) is None
    with pytest.raises(PaginationError, match="next_cursor"):
        c.next(r, {"data": []}, {}, [])

    n = NextLinkPaginator(records_path="results")
    assert (
        n.next(n.first("api/p", {}), {"next": "http://h/api/p?page=2"}, {}, [{}]).url
        == "http://h/api/p?page=2"
    )
    assert n.next(n.first("api/p", {}), {"next": None}, {}, [{}]) is None

    h = LinkHeaderPaginator(size_param="per_page", page_size=10)
    assert (
        h.next(h.first("api/k", {}), [], {"next": {"url": "http://h/k?page=2"}}, [{}]).url
        == "http://h/k?page=2"
    )
    assert h.next(h.first("api/k", {}), [], {}, [{}]) is None
    assert h.records([{"id": 1}]) == [{"id": 1}]
    with pytest.raises(PaginationError, match="not a list"):
        h.records({"id": 1})
    with pytest.raises(ValueError, match="not one of"):
        make_paginator({"style": "nope"}, 10)


def test_flatten_nested_documents_with_one_exploded_list():
    schema = load_config().entity("proveedores").schema
    columns = columns_for(schema, "productos")
    names = [c.name for c in columns]
    assert names[:4] == ["_id", "nombre", "contacto.email", "contacto.telefono"]
    assert "productos.sku" in names and "etiquetas" in names
    kinds = {c.name: c.kind for c in columns}
    assert (
        kinds["creado"] == "datetime"
        and kinds["etiquetas"] == "json"
        and kinds["productos.precio"] == "number"
    )
    doc = {
        "_id": "a" * 24,
        "nombre": "Ferretería Sur, S.A.",
        "contacto": {"email": "x@y.es", "telefono": None},
        "productos": [{"sku": "PRD-000001", "precio": 2.5}, {"sku": "PRD-000002", "precio": 3.0}],
        "etiquetas": ["a", "b"],
        "activo": True,
        "creado": "2026-01-02T03:04:05Z",
    }
    rows = flatten(doc, columns, "productos")
    assert len(rows) == 2
    row = dict(zip(names, rows[1], strict=True))
    assert row["productos.sku"] == "PRD-000002" and row["contacto.email"] == "x@y.es"
    assert row["direccion.ciudad"] is None and row["etiquetas"] == '["a","b"]'
    assert flatten({**doc, "productos": []}, columns, "productos")[0][names.index("productos.sku")] is None


def test_lake_keys_come_from_the_interval_only():
    assert lake_key("productos", "csv", START) == "productos/dt=2026-11-20/productos_20261120_020000.csv"
    assert (
        lake_key("productos", "parquet", START)
        == "parquet/productos/dt=2026-11-20/productos_20261120_020000.parquet"
    )
    assert (
        lake_key("productos", "jsonl", START, gz=True)
        == "raw/productos/dt=2026-11-20/productos_20261120_020000.jsonl.gz"
    )
    assert (
        lake_key("productos", "metrics", START)
        == "_metrics/productos/dt=2026-11-20/productos_20261120_020000.json"
    )
    assert lake_key("productos", "csv", START, "flat") == "productos/productos_20261120_020000.csv"
    with pytest.raises(ValueError, match="layout"):
        lake_key("productos", "csv", START, "daily")


def test_key_index_on_disk(tmp_path):
    index = KeyIndex(tmp_path / "k.sqlite")
    assert index.add("1") and index.add("2") and not index.add("1")
    keys = [str(i % 1500) for i in range(2000)] + ["2", "x"]  # repeats inside one call, across 900-key parts
    flags = index.add_many(keys)
    assert flags[:3] == [True, False, False]  # "1" and "2" were added before
    assert sum(flags) == 1500 - 2 + 1 and flags[-2:] == [False, True]
    index.close()


def test_the_flat_row_maker_equals_flatten():
    schema = load_config().entity("ordenes").schema
    columns = columns_for(schema)
    record = {"id": 1, "cliente_id": 2, "estado": "pagada", "extra": 5}
    assert row_maker(columns)(record) == flatten(record, columns)
    nested = load_config().entity("proveedores").schema
    ncols = columns_for(nested, "productos")
    doc = {"_id": "a" * 24, "productos": [{"sku": "s"}], "etiquetas": ["x"]}
    assert row_maker(ncols, "productos")(doc) == flatten(doc, ncols, "productos")
