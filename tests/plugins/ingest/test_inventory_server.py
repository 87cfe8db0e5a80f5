"""Tests for :class:`helpers.inventory_server.InventoryServer`, the fake inventory microservices.

Each endpoint is paginated fully with its own scheme and compared with ``records()``; then
determinism, incremental filtering of orders, every fault kind, duplicates / invalid records, bad
parameters, latency and the CLI used by the benchmark.
"""

from __future__ import annotations

import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers.inventory_server import InventoryServer

HELPER = Path(__file__).resolve().parents[2] / "helpers" / "inventory_server.py"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
HEX24 = re.compile(r"[0-9a-f]{24}")
TIMEOUT = 10  # seconds, for every request that should answer


@pytest.fixture(scope="module")
def server():
    with InventoryServer(seed=7) as srv:
        yield srv


@pytest.fixture
def api(server):
    """The module's server, with faults, duplicates and invalid records reset around each test."""
    server.clear_faults()
    server.duplicates = server.invalid = 0
    yield server
    server.clear_faults()
    server.duplicates = server.invalid = 0


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


# --- paginators, one per scheme ----------------------------------------------------------------
def all_productos(http, base_url, size=500):
    items, page = [], 1
    while True:
        body = http.get(
            f"{base_url}/api/productos", params={"page": page, "size": size}, timeout=TIMEOUT
        ).json()
        if not body["items"]:
            return items, body
        items += body["items"]
        page += 1


def all_categorias(http, base_url, per_page=10):
    items, url, params = [], f"{base_url}/api/categorias", {"per_page": per_page}
    while url:
        resp = http.get(url, params=params, timeout=TIMEOUT)
        resp.raise_for_status()
        items += resp.json()
        url, params = resp.links.get("next", {}).get("url"), None
    return items


def ordenes_pages(http, base_url, limit=500, **filters):
    pages, cursor = [], None
    while True:
        params = {"limit": limit, **filters, **({"cursor": cursor} if cursor else {})}
        resp = http.get(f"{base_url}/api/ordenes", params=params, timeout=TIMEOUT)
        resp.raise_for_status()
        body = resp.json()
        pages.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def all_ordenes(http, base_url, limit=500, **filters):
    """(every order, number of pages)."""
    pages = ordenes_pages(http, base_url, limit, **filters)
    return [o for page in pages for o in page], len(pages)


def all_clientes(http, base_url, limit=1000):
    items, offset = [], 0
    while True:
        body = http.get(
            f"{base_url}/api/clientes", params={"offset": offset, "limit": limit}, timeout=TIMEOUT
        ).json()
        items += body["results"]
        offset += limit
        if offset >= body["total"]:
            return items


def all_proveedores(http, base_url, page_size=50):
    items, url, params = [], f"{base_url}/api/proveedores", {"page_size": page_size}
    while url:
        body = http.get(url, params=params, timeout=TIMEOUT).json()
        items += body["results"]
        url, params = body["next"], None
    return items


# --- full pagination per endpoint --------------------------------------------------------------
def test_productos_page_and_size(api, http):
    items, last = all_productos(http, api.base_url, size=500)
    assert len(items) == api.count("productos") == 2_400
    assert items == api.records("productos")
    assert [p["id"] for p in items] == list(range(1, 2_401))
    assert last == {"items": [], "page": 6, "size": 500, "total": 2_400, "total_pages": 5}
    default = http.get(f"{api.base_url}/api/productos", timeout=TIMEOUT).json()
    assert (default["page"], default["size"], len(default["items"])) == (1, 100, 100)

    fields = {
        "id",
        "sku",
        "nombre",
        "categoria_id",
        "proveedor_id",
        "precio",
        "stock",
        "activo",
        "actualizado",
    }
    assert all(set(p) == fields for p in items)
    assert all(re.fullmatch(r"PRD-\d{6}", p["sku"]) for p in items)
    assert all(1 <= p["categoria_id"] <= 36 and TIMESTAMP.fullmatch(p["actualizado"]) for p in items)
    assert all(isinstance(p["precio"], float) and round(p["precio"], 2) == p["precio"] for p in items)
    assert all(isinstance(p["stock"], int) and isinstance(p["activo"], bool) for p in items)
    # names that make CSV quoting and encodings matter
    names = [p["nombre"] for p in items]
    assert any("," in n for n in names) and any('"' in n for n in names)
    assert any(re.search(r"[áéíóúñÑØ²°]", n) for n in names)
    # every product points at an existing supplier
    suppliers = {s["_id"] for s in api.records("proveedores")}
    assert {p["proveedor_id"] for p in items} <= suppliers


def test_categorias_link_header(api, http):
    items = all_categorias(http, api.base_url, per_page=10)
    assert len(items) == api.count("categorias") == 36
    assert items == api.records("categorias")
    assert {c["padre_id"] for c in items if c["padre_id"] is not None} <= {c["id"] for c in items}
    assert sum(c["padre_id"] is None for c in items) == 8

    resp = http.get(f"{api.base_url}/api/categorias", params={"page": 2, "per_page": 10}, timeout=TIMEOUT)
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.links["next"]["url"] == f"{api.base_url}/api/categorias?page=3&per_page=10"
    assert resp.links["last"]["url"] == f"{api.base_url}/api/categorias?page=4&per_page=10"
    last = http.get(resp.links["last"]["url"], timeout=TIMEOUT)
    assert "next" not in last.links and len(last.json()) == 6
    beyond = http.get(f"{api.base_url}/api/categorias", params={"page": 9}, timeout=TIMEOUT)
    assert beyond.json() == []


def test_ordenes_cursor(api, http):
    items, pages = all_ordenes(http, api.base_url, limit=500)
    assert pages == 41
    assert len(items) == api.count("ordenes") == 20_500
    assert items == api.records("ordenes")
    assert [o["id"] for o in items] == list(range(1, 20_501))
    estados = {"pendiente", "pagada", "enviada", "entregada", "cancelada"}
    for o in items[:2_000]:
        assert 1 <= o["cliente_id"] <= 3_000 and 1 <= o["producto_id"] <= 2_400
        assert 1 <= o["cantidad"] <= 20 and o["estado"] in estados
        assert o["total"] == round(o["cantidad"] * o["precio_unitario"], 2)
        assert TIMESTAMP.fullmatch(o["fecha"]) and TIMESTAMP.fullmatch(o["updated_at"])
        assert o["fecha"] <= o["updated_at"]
        assert "2026-11-10T00:00:00Z" <= o["updated_at"] < "2026-11-20T00:00:00Z"
    # not sorted by updated_at
    assert [o["updated_at"] for o in items] != sorted(o["updated_at"] for o in items)


def test_clientes_offset_limit(api, http):
    items = all_clientes(http, api.base_url, limit=1000)
    assert len(items) == api.count("clientes") == 3_000
    assert items == api.records("clientes")
    c = items[0]
    assert set(c) == {"id", "nombre", "email", "telefono", "ciudad", "pais", "fecha_alta"}
    assert all("@" in c["email"] and c["email"].isascii() for c in items)
    body = http.get(f"{api.base_url}/api/clientes", params={"offset": 2_950}, timeout=TIMEOUT).json()
    assert (body["total"], body["offset"], body["limit"], len(body["results"])) == (3_000, 2_950, 100, 50)


def test_proveedores_next_link_nested(api, http):
    items = all_proveedores(http, api.base_url, page_size=50)
    assert len(items) == api.count("proveedores") == 180
    assert items == api.records("proveedores")
    assert len({s["_id"] for s in items}) == 180
    assert all(HEX24.fullmatch(s["_id"]) and TIMESTAMP.fullmatch(s["creado"]) for s in items)
    assert any("direccion" not in s for s in items)
    assert any(s["contacto"]["telefono"] is None for s in items)
    assert all(set(s["direccion"]) == {"calle", "ciudad", "pais", "cp"} for s in items if "direccion" in s)
    assert all(0 <= len(s["productos"]) <= 6 for s in items) and any(s["productos"] for s in items)
    skus = {p["sku"] for p in api.records("productos")}
    assert all(p["sku"] in skus and isinstance(p["precio"], float) for s in items for p in s["productos"])
    first = http.get(f"{api.base_url}/api/proveedores", timeout=TIMEOUT).json()
    assert first["next"] == f"{api.base_url}/api/proveedores?page=2&page_size=50"


# --- determinism and filtering -------------------------------------------------------------------
PAGES = [
    "/api/productos?page=3&size=500",
    "/api/categorias?page=2",
    "/api/ordenes?limit=500",
    "/api/clientes?offset=1000&limit=200",
    "/api/proveedores?page=2",
]


def test_same_seed_same_bytes(api, http):
    def body(server, page):
        # next links name the server's own port
        content = http.get(server.base_url + page, timeout=TIMEOUT).content
        return content.replace(server.base_url.encode(), b"BASE")

    with InventoryServer(seed=7) as twin, InventoryServer(seed=8) as other:
        for page in PAGES:
            ours = body(api, page)
            assert body(twin, page) == ours, page
            if "categorias" not in page:  # categories are a fixed list
                assert body(other, page) != ours, page
        cursor = http.get(f"{api.base_url}/api/ordenes", timeout=TIMEOUT).json()["next_cursor"]
        page2 = f"/api/ordenes?limit=500&cursor={cursor}"
        assert body(api, page2) == body(twin, page2)


def test_ordenes_one_day_window(api, http):
    window = {"updated_since": "2026-11-15T00:00:00Z", "updated_before": "2026-11-16T00:00:00Z"}
    items, _ = all_ordenes(http, api.base_url, limit=300, **window)
    assert items == api.records("ordenes", **window)
    assert 0.08 * 20_500 < len(items) < 0.12 * 20_500
    assert all(window["updated_since"] <= o["updated_at"] < window["updated_before"] for o in items)
    assert [o["id"] for o in items] == sorted(o["id"] for o in items)
    # the same window written with an offset, and open-ended bounds
    same = {"updated_since": "2026-11-15T01:00:00+01:00", "updated_before": "2026-11-16T00:00:00"}
    assert all_ordenes(http, api.base_url, limit=1000, **same)[0] == items
    since = all_ordenes(http, api.base_url, limit=1000, updated_since="2026-11-19T00:00:00Z")[0]
    before = all_ordenes(http, api.base_url, limit=1000, updated_before="2026-11-19T00:00:00Z")[0]
    assert len(since) + len(before) == 20_500


# --- faults ----------------------------------------------------------------------------------------
def test_fault_status_with_retry_after(api, http):
    url = f"{api.base_url}/api/productos"
    api.fault("/api/productos", "status", status=503, retry_after=1.2, times=2)
    for _ in range(2):
        resp = http.get(url, timeout=TIMEOUT)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
        assert resp.json() == {"error": "injected"}
    assert http.get(url, timeout=TIMEOUT).status_code == 200
    api.fault("/api/productos", "status", status=429)
    resp = http.get(url, timeout=TIMEOUT)
    assert resp.status_code == 429 and "Retry-After" not in resp.headers
    assert [r[2] for r in api.requests[-4:]] == [503, 503, 200, 429]


def test_faults_consumed_in_order_and_forever(api, http):
    url = f"{api.base_url}/api/clientes"
    api.fault("/api/clientes", "status", status=500)
    api.fault("/api/clientes", "malformed")
    assert http.get(url, timeout=TIMEOUT).status_code == 500
    with pytest.raises(ValueError):
        http.get(url, timeout=TIMEOUT).json()
    assert http.get(url, timeout=TIMEOUT).json()["total"] == 3_000
    api.fault("/api/clientes", "status", status=502, times=None)
    assert [http.get(url, timeout=TIMEOUT).status_code for _ in range(3)] == [502] * 3
    api.clear_faults()
    assert http.get(url, timeout=TIMEOUT).status_code == 200
    with pytest.raises(ValueError):
        api.fault("/api/clientes", "explode")
    with pytest.raises(ValueError):
        api.fault("/api/clientes", "cursor_loop")


def test_fault_timeout(api, http):
    api.fault("/api/ordenes", "timeout", seconds=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(f"{api.base_url}/api/ordenes", timeout=(2, 0.2))
    assert http.get(f"{api.base_url}/api/ordenes", timeout=TIMEOUT).status_code == 200


def test_fault_malformed(api, http):
    api.fault("/api/ordenes", "malformed")
    resp = http.get(f"{api.base_url}/api/ordenes", timeout=TIMEOUT)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    assert resp.content.startswith(b'{"data":[')
    with pytest.raises(requests.exceptions.JSONDecodeError):
        resp.json()


def test_fault_cursor_loop(api, http):
    url = f"{api.base_url}/api/ordenes"
    first = http.get(url, params={"limit": 100}, timeout=TIMEOUT).json()
    second = http.get(url, params={"limit": 100, "cursor": first["next_cursor"]}, timeout=TIMEOUT).json()
    api.fault("/api/ordenes", "cursor_loop", times=3)
    looped = http.get(url, params={"limit": 100, "cursor": first["next_cursor"]}, timeout=TIMEOUT).json()
    assert looped == {"data": second["data"], "next_cursor": first["next_cursor"]}
    # without a cursor: a cursor that leads back to the first page
    start = http.get(url, params={"limit": 100}, timeout=TIMEOUT).json()
    again = http.get(url, params={"limit": 100, "cursor": start["next_cursor"]}, timeout=TIMEOUT).json()
    assert start["data"] == again["data"] == first["data"]
    assert again["next_cursor"] == start["next_cursor"]


@pytest.mark.parametrize(
    ("path", "params", "records_of"),
    [
        ("/api/productos", {"size": 100}, lambda b: b["items"]),
        ("/api/clientes", {"limit": 100}, lambda b: b["results"]),
        ("/api/proveedores", {"page_size": 20}, lambda b: b["results"]),
        ("/api/categorias", {"per_page": 5}, lambda b: b),
    ],
)
def test_fault_repeat_page(api, http, path, params, records_of):
    url = api.base_url + path
    page3 = {**params, "offset": 200} if path == "/api/clientes" else {**params, "page": 3}
    first = records_of(http.get(url, params=params, timeout=TIMEOUT).json())
    normal = http.get(url, params=page3, timeout=TIMEOUT)
    api.fault(path, "repeat_page")
    repeated = http.get(url, params=page3, timeout=TIMEOUT)
    assert records_of(repeated.json()) == first != records_of(normal.json())
    # pagination metadata is still that of the requested page
    if path == "/api/proveedores":
        assert repeated.json()["next"] == normal.json()["next"] is not None
    if path == "/api/categorias":
        assert repeated.links["next"] == normal.links["next"]
    assert records_of(http.get(url, params=page3, timeout=TIMEOUT).json()) == records_of(normal.json())


def test_fault_drop(api, http):
    api.fault("/api/proveedores", "drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(f"{api.base_url}/api/proveedores", timeout=TIMEOUT)
    assert api.requests[-1] == ("/api/proveedores", {}, 0)
    assert http.get(f"{api.base_url}/api/proveedores", timeout=TIMEOUT).status_code == 200


# --- dirty data ------------------------------------------------------------------------------------
def test_duplicates(api, http):
    api.duplicates = 7
    pages = ordenes_pages(http, api.base_url, limit=500)
    items = [o for page in pages for o in page]
    assert len(items) == 20_507
    by_id = {o["id"]: o for o in api.records("ordenes")}
    assert len(by_id) == len({o["id"] for o in items}) == 20_500
    assert all(o == by_id[o["id"]] for o in items)
    # each repeat comes after its page's own records and was served on an earlier page
    seen: set[int] = set()
    repeats = 0
    for page in pages:
        own, extra = page[:500], page[500:]
        assert not seen & {o["id"] for o in own}
        assert {o["id"] for o in extra} <= seen
        repeats += len(extra)
        seen |= {o["id"] for o in own}
    assert repeats == 7 and not pages[0][500:]
    assert ordenes_pages(http, api.base_url, limit=500) == pages  # deterministic
    assert len(all_ordenes(http, api.base_url, limit=1000)[0]) == 20_507
    assert api.records("ordenes") == list(by_id.values())  # records() has no duplicates


def test_invalid_prices(api, http):
    api.invalid = 5
    items, _ = all_productos(http, api.base_url, size=1000)
    bad = [p for p in items if p["precio"] == "N/A"]
    assert len(bad) == 5 and len(items) == 2_400
    assert items == api.records("productos")
    assert [p["id"] for p in bad] == [p["id"] for p in api.records("productos") if p["precio"] == "N/A"]
    assert all(isinstance(p["precio"], float) for p in items if p not in bad)


# --- protocol ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "page",
    [
        "/api/productos?page=abc",
        "/api/productos?size=0",
        "/api/productos?size=1001",
        "/api/productos?page=0",
        "/api/categorias?per_page=x",
        "/api/ordenes?limit=5000",
        "/api/ordenes?cursor=not-a-cursor",
        "/api/ordenes?updated_since=yesterday",
        "/api/ordenes?updated_before=2026-13-01T00:00:00Z",
        "/api/clientes?offset=-1",
        "/api/clientes?limit=1.5",
        "/api/proveedores?page=",
    ],
)
def test_bad_params_400(api, http, page):
    resp = http.get(api.base_url + page, timeout=TIMEOUT)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json()["error"]


def test_unknown_path_404_and_request_log(api, http):
    resp = http.get(f"{api.base_url}/api/almacenes?x=1", timeout=TIMEOUT)
    assert resp.status_code == 404 and "error" in resp.json()
    assert api.requests[-1] == ("/api/almacenes", {"x": "1"}, 404)
    http.get(f"{api.base_url}/api/clientes", params={"offset": 5, "limit": 2}, timeout=TIMEOUT)
    assert api.requests[-1] == ("/api/clientes", {"offset": "5", "limit": "2"}, 200)


def test_latency():
    with InventoryServer(orders=100, latency=0.2) as slow, requests.Session() as http:
        started = time.monotonic()
        assert http.get(f"{slow.base_url}/api/ordenes", timeout=TIMEOUT).status_code == 200
        assert time.monotonic() - started >= 0.2


def test_cli_prints_url_and_serves():
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), "--port", "0", "--orders", "2000", "--latency", "0.001", "--seed", "7"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no URL printed within 30 s"
        base_url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        body = requests.get(f"{base_url}/api/ordenes", params={"limit": 10}, timeout=TIMEOUT).json()
        assert [o["id"] for o in body["data"]] == list(range(1, 11))
        with InventoryServer(seed=7, orders=2000) as same:
            assert body["data"] == same.records("ordenes")[:10]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
