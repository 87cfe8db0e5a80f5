"""A local HTTP server that plays the three inventory microservices of a small hardware retailer.

* **Product service**: ``/api/productos`` (page number + page size in the body) and
  ``/api/categorias`` (a bare JSON array, next page in an RFC 8288 ``Link`` header).
* **Order service**: ``/api/ordenes`` (opaque cursor in the body, incremental filtering on
  ``updated_at``) and ``/api/clientes`` (offset + limit).
* **Supplier service** (backed by MongoDB): ``/api/proveedores``, nested documents with an ``_id``
  of 24 hex digits and a ``next`` link in the body.

All data is deterministic: a record is a pure function of ``(seed, entity, index)``, so two servers
with the same seed serve identical bytes. The small entities (2,400 products, 36 categories,
3,000 customers, 180 suppliers) are built once at construction; orders are computed from their
index on demand, the only per-order state being a compact ``array('i')`` of ``updated_at`` epoch
seconds (4 bytes per order) used for filtering. Bodies are serialized with orjson; a page of 500
orders is built and serialized in about 3 ms on a slow CI core, so 200,000 orders are no bottleneck.
A ``updated_since`` / ``updated_before`` window costs one scan of that array the first time it is
seen (cached afterwards); the cursor is the next order's index, found in the window by bisection.

Like :mod:`helpers.http_server`, it can be told to misbehave per path (:meth:`InventoryServer.fault`)
to test failure handling: answer a status (with ``Retry-After``), stall, send broken JSON, loop on
a cursor, repeat the first page, or drop the connection.

In tests it runs in a background thread::

    with InventoryServer(seed=7) as api:
        requests.get(f"{api.base_url}/api/productos", params={"page": 2, "size": 500})

For benchmarks it runs as a process; the base URL is the first line on stdout::

    python tests/helpers/inventory_server.py --port 0 --orders 200000 --latency 0.005 --seed 7
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import math
import random
import re
import sys
import threading
import time
import unicodedata
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

import orjson

try:  # imported as tests' helpers.<module>, or run as a script from tests/helpers/
    from helpers.serving import (
        BackgroundServer,
        LocalHTTPServer,
        QuietHandler,
        serve_until_signalled,
        take_fault,
    )
except ImportError:  # pragma: no cover
    from serving import BackgroundServer, LocalHTTPServer, QuietHandler, serve_until_signalled, take_fault


# --- sizes and time ranges --------------------------------------------------------------------
N_PRODUCTOS = 2_400
N_CLIENTES = 3_000
N_PROVEEDORES = 180
MAX_PAGE = 1_000  # largest page size / limit any endpoint accepts

#: Orders' ``updated_at`` lie in [ORDERS_FROM, ORDERS_TO): 10 days, epoch seconds (UTC).
ORDERS_FROM = int(datetime(2026, 11, 10, tzinfo=UTC).timestamp())
ORDERS_TO = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
_DAY = 86_400

ENTITIES = ("productos", "categorias", "ordenes", "clientes", "proveedores")
FAULT_KINDS = ("status", "timeout", "malformed", "cursor_loop", "repeat_page", "drop")
_PATHS = {f"/api/{e}": e for e in ENTITIES}

# --- word lists --------------------------------------------------------------------------------
# id -> (nombre, padre_id, descripcion, product nouns, product specs, (min price, max price) in EUR)
_CATEGORIAS: dict[int, tuple[str, int | None, str, tuple[str, ...], tuple[str, ...], tuple[int, int]]] = {
    1: (
        "Herramientas eléctricas",
        None,
        "Herramientas con motor, con cable o a batería.",
        ("Kit combo taladro y atornillador", "Batería de litio", "Cargador rápido", "Multiherramienta"),
        ("18V", "20V 4,0 Ah", "12V 2,0 Ah", "con maletín", "oscilante 300W"),
        (25, 260),
    ),
    2: (
        "Herramientas manuales",
        None,
        "Herramientas de mano para taller y bricolaje.",
        ("Juego de herramientas", "Caja de herramientas", "Banco de trabajo plegable"),
        ("45 piezas", "108 piezas", "de acero", "con ruedas"),
        (15, 140),
    ),
    3: (
        "Fontanería",
        None,
        "Material para instalaciones de agua y saneamiento.",
        ("Kit de reparación de fugas", "Cinta de teflón", "Desatascador"),
        ("12 m", "profesional", "de ventosa"),
        (2, 35),
    ),
    4: (
        "Electricidad",
        None,
        "Material eléctrico para el hogar y la obra.",
        ("Comprobador de tensión", "Multímetro digital", "Regleta"),
        ("6 tomas", "con USB", "CAT III 600V"),
        (6, 70),
    ),
    5: (
        "Jardín y exterior",
        None,
        "Todo para el jardín, la terraza y el huerto.",
        ("Carretilla", "Barbacoa de carbón", "Toldo enrollable"),
        ("100 L", "Ø 57 cm", "3x2 m"),
        (30, 220),
    ),
    6: (
        "Pintura y decoración",
        None,
        "Pinturas, accesorios de pintor y decoración.",
        ("Cinta de carrocero", "Plástico protector", "Masilla de relleno"),
        ("48 mm x 50 m", "4x5 m", "1 kg"),
        (2, 18),
    ),
    7: (
        "Seguridad laboral",
        None,
        "Equipos de protección individual (EPI).",
        ("Chaleco reflectante", "Botiquín de primeros auxilios", "Mascarilla FFP2"),
        ("talla L", "20 unidades", "clase 2"),
        (3, 45),
    ),
    8: (
        "Tornillería y fijaciones",
        None,
        "Tornillos, tacos, clavos y adhesivos.",
        ("Surtido de tornillos", "Caja organizadora", "Brida de nylon"),
        ("600 piezas", "2,5x100 mm", "negra"),
        (3, 40),
    ),
    9: (
        "Taladros",
        1,
        "Taladros percutores, atornilladores y martillos perforadores.",
        ("Taladro percutor", "Taladro atornillador", "Martillo perforador SDS-Plus", "Taladro de columna"),
        ("750W", "18V sin escobillas", "1.100W", "12V compacto", "800W con maletín"),
        (39, 320),
    ),
    10: (
        "Sierras",
        1,
        "Sierras circulares, de calar, ingletadoras y sables.",
        ("Sierra circular", "Sierra de calar", "Sierra ingletadora", "Sierra sable"),
        ("1.400W", "Ø 190 mm", "18V", "650W pendular"),
        (45, 390),
    ),
    11: (
        "Amoladoras",
        1,
        "Amoladoras angulares y discos de corte y desbaste.",
        ("Amoladora angular", "Disco de corte", "Disco de desbaste"),
        ("Ø 115 mm", "Ø 125 mm, 900W", "2.200W Ø 230 mm"),
        (4, 150),
    ),
    12: (
        "Lijadoras",
        1,
        "Lijadoras orbitales, de banda y abrasivos.",
        ("Lijadora orbital", "Lijadora de banda", "Pliego de lija"),
        ("grano 120", "240W", "pack 10, grano 80"),
        (3, 130),
    ),
    13: (
        "Destornilladores",
        2,
        "Destornilladores, puntas y juegos de precisión.",
        ("Destornillador plano", "Destornillador Phillips", "Juego de puntas", "Destornillador de precisión"),
        ("PH2 x 100 mm", "5,5 x 125 mm", "32 piezas", "aislado 1000V"),
        (2, 35),
    ),
    14: (
        "Llaves",
        2,
        "Llaves inglesas, combinadas, Allen y de carraca.",
        ("Llave inglesa", "Llave combinada", "Juego de llaves Allen", "Llave de carraca"),
        ('10"', '12"', "13 mm", '1/2" con vaso', "9 piezas"),
        (4, 60),
    ),
    15: (
        "Martillos",
        2,
        "Martillos, mazas y mazos.",
        ("Martillo de carpintero", "Maza de goma", "Martillo de bola"),
        ("500 g", "mango de fibra", "1 kg"),
        (6, 40),
    ),
    16: (
        "Medición",
        2,
        "Cintas métricas, niveles, medidores láser y escuadras.",
        ("Cinta métrica", "Nivel de burbuja", "Medidor láser", "Escuadra de carpintero"),
        ("5 m", "8 m", "60 cm", "40 m", "30 cm"),
        (3, 120),
    ),
    17: (
        "Grifería",
        3,
        "Grifos de lavabo, cocina y ducha.",
        ("Grifo monomando de lavabo", "Grifo de cocina extraíble", "Columna de ducha termostática"),
        ("cromado", "negro mate", 'rosca 1/2"'),
        (25, 240),
    ),
    18: (
        "Tuberías",
        3,
        "Tubos y accesorios de PVC, cobre y multicapa.",
        ("Tubo multicapa", "Tubo de PVC", "Codo de latón"),
        ("Ø 16 mm, 50 m", "Ø 40 mm", '90° 1/2"'),
        (2, 90),
    ),
    19: (
        "Accesorios de baño",
        3,
        "Mamparas, asientos de inodoro y accesorios.",
        ("Mampara de ducha", "Asiento de inodoro", "Toallero"),
        ("80 cm", "cierre lento", "de acero inoxidable"),
        (12, 280),
    ),
    20: (
        "Cables",
        4,
        "Cable eléctrico, mangueras y cable de red.",
        ("Cable eléctrico unipolar", "Manguera eléctrica", "Cable de red"),
        ("2,5 mm², 100 m", "3x1,5 mm²", "Cat 6, 20 m"),
        (8, 95),
    ),
    21: (
        "Iluminación",
        4,
        "Bombillas, focos, tiras LED y plafones.",
        ("Bombilla LED", "Foco proyector LED", "Tira LED", "Plafón de techo"),
        ("E27 10W", "GU10 5W", "50W IP65", "5 m RGB", "luz cálida"),
        (2, 75),
    ),
    22: (
        "Enchufes e interruptores",
        4,
        "Mecanismos eléctricos y bases múltiples.",
        ("Enchufe schuko", "Interruptor conmutador", "Base múltiple"),
        ("blanco", "empotrable", "con protección infantil"),
        (3, 30),
    ),
    23: (
        "Riego",
        5,
        "Mangueras, pistolas, programadores y aspersores.",
        ("Manguera extensible", "Pistola de riego", "Programador de riego", "Aspersor oscilante"),
        ('3/4" 25 m', "7 funciones", "15 m", "de batería"),
        (5, 70),
    ),
    24: (
        "Cortacésped",
        5,
        "Cortacéspedes y desbrozadoras eléctricos, de gasolina y a batería.",
        ("Cortacésped eléctrico", "Cortacésped de gasolina", "Desbrozadora"),
        ("1.600W", "139 cc", "36 cm de corte", "a batería 36V"),
        (79, 480),
    ),
    25: (
        "Herramientas de jardín",
        5,
        "Tijeras de podar, rastrillos, palas y azadas.",
        ("Tijera de podar", "Rastrillo", "Pala", "Azada"),
        ("de yunque", "metálico 14 dientes", "de punta", "con mango de fresno"),
        (6, 45),
    ),
    26: (
        "Macetas y jardineras",
        5,
        "Macetas de barro y plástico, jardineras y maceteros.",
        ("Maceta de barro", "Jardinera rectangular", "Macetero autorriego"),
        ("Ø 30 cm", "60 cm", "antracita"),
        (2, 40),
    ),
    27: (
        "Pinturas",
        6,
        "Pintura plástica, esmaltes y pintura para exteriores.",
        ("Pintura plástica", "Esmalte sintético", "Pintura para exteriores"),
        ("blanco mate, 15 L", "4 L", "rojo carruaje 750 ml", "antimoho"),
        (7, 90),
    ),
    28: (
        "Brochas y rodillos",
        6,
        "Brochas, rodillos, paletinas y kits de pintor.",
        ("Rodillo antigoteo", "Brocha plana", "Paletina", "Kit de pintor"),
        ("22 cm", "nº 20", '2"', "5 piezas"),
        (2, 25),
    ),
    29: (
        "Barnices y tratamientos",
        6,
        "Barnices, lasures y aceites para madera.",
        ("Barniz para madera", "Lasur protector", "Aceite de teca"),
        ("satinado", "incoloro 750 ml", "nogal, 2,5 L"),
        (8, 55),
    ),
    30: (
        "Guantes",
        7,
        "Guantes de trabajo, anticorte y desechables.",
        ("Guantes de nitrilo", "Guantes anticorte", "Guantes de jardín"),
        ("talla 9", "nivel 5", "100 uds."),
        (2, 20),
    ),
    31: (
        "Calzado de seguridad",
        7,
        "Botas y zapatos de seguridad homologados.",
        ("Bota de seguridad", "Zapato de seguridad"),
        ("S3 talla 42", "S1P talla 40", "con puntera de composite"),
        (29, 110),
    ),
    32: (
        "Protección ocular y auditiva",
        7,
        "Gafas de protección, orejeras y tapones.",
        ("Gafas de protección", "Orejeras", "Tapones auditivos"),
        ("antivaho", "SNR 30 dB", "200 pares"),
        (3, 35),
    ),
    33: (
        "Tornillos",
        8,
        "Tornillos para madera, metal y autorroscantes.",
        ("Tornillo para madera", "Tornillo autorroscante", "Tornillo de cabeza hexagonal"),
        ("4x40 mm (caja 200)", "M8x60 zincado", "3,5x25 mm, 500 uds."),
        (3, 25),
    ),
    34: (
        "Tacos",
        8,
        "Tacos de nylon, químicos y para pladur.",
        ("Taco de nylon", "Taco químico", "Taco para pladur"),
        ("8 mm (100 uds.)", "300 ml", "metálico"),
        (2, 20),
    ),
    35: (
        "Clavos",
        8,
        "Clavos de acero, de cabeza plana y puntas.",
        ("Clavo de acero", "Clavo de cabeza plana", "Punta de París"),
        ("2x40 mm", "500 g", "galvanizado"),
        (2, 12),
    ),
    36: (
        "Adhesivos y selladores",
        8,
        "Siliconas, adhesivos de montaje, colas y espumas.",
        ("Silicona neutra", "Adhesivo de montaje", "Cola blanca", "Espuma de poliuretano"),
        ("transparente 280 ml", "extrafuerte", "1 kg", "750 ml"),
        (3, 18),
    ),
}
_MARCAS = ("Bricomax", "Toolsur", "Férrea", "Pro-Ibérica", "Núcleo", "Átomo", "Ferrum")

_NOMBRES = (
    "María", "José", "Antonio", "Carmen", "Lucía", "Javier", "Sofía", "Martín", "Ana", "Raúl",
    "Inés", "Álvaro", "Elena", "Sergio", "Paula", "Andrés", "Marta", "Jesús", "Laura", "Iván",
    "Begoña", "Íñigo", "Nuria", "Óscar", "Rocío", "Adrián", "Ainhoa", "Tomás", "Valentina", "Joaquín",
)  # fmt: skip
_APELLIDOS = (
    "García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez",
    "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez",
    "Romero", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos", "Gil", "Núñez", "Peña",
    "Ibáñez", "Castaño", "Ortiz", "Rubio",
)  # fmt: skip
_DOMINIOS = ("gmail.com", "hotmail.com", "yahoo.es", "outlook.com", "correo.es", "telefonica.net")
# pais -> (phone prefix, cities, postcode digits)
_PAISES = {
    "España": ("+34", ("Madrid", "Barcelona", "Sevilla", "València", "Málaga", "Bilbao", "Zaragoza"), 5),
    "México": ("+52", ("Ciudad de México", "Guadalajara", "Monterrey", "Puebla"), 5),
    "Argentina": ("+54", ("Buenos Aires", "Córdoba", "Rosario"), 4),
    "Colombia": ("+57", ("Bogotá", "Medellín", "Cali"), 6),
    "Chile": ("+56", ("Santiago", "Valparaíso", "Concepción"), 7),
    "Perú": ("+51", ("Lima", "Arequipa", "Trujillo"), 5),
}
_PAIS_PESOS = ("España",) * 10 + ("México",) * 4 + ("Argentina", "Colombia", "Chile", "Perú")
_EMPRESA_RAIZ = (
    "Suministros", "Ferretera", "Distribuciones", "Herramientas", "Comercial", "Industrias",
    "Almacenes", "Importaciones", "Talleres", "Materiales",
)  # fmt: skip
_EMPRESA_NOMBRE = (
    "Ibéricos", "del Norte", "Levante", "Castellana", "Atlántico", "del Sur", "Cantábrico",
    "Pérez e Hijos", "Hermanos Muñoz", "Galaica", "Andaluza", "Mediterráneo", "Río Ebro",
)  # fmt: skip
_EMPRESA_FORMA = ("S.L.", "S.A.", "S.L.U.", "S.A. de C.V.", "Ltda.")
_CALLES = (
    "Calle Mayor", "Avenida de la Constitución", "Calle del Carmen", "Polígono Industrial Las Arenas",
    "Camino Real", "Paseo de la Castellana", "Calle San Martín", "Avenida Libertador",
    "Calle Núñez de Balboa",
)  # fmt: skip
_ETIQUETAS = (
    "mayorista", "importador", "nacional", "certificado ISO 9001", "entrega 24h", "ecológico",
    "pago a 60 días", "dropshipping",
)  # fmt: skip
#: Order states, weighted (index by a value in 0..99).
_ESTADOS = (
    ("pendiente",) * 12 + ("pagada",) * 18 + ("enviada",) * 20 + ("entregada",) * 42 + ("cancelada",) * 8
)
#: Order quantities 1..20, skewed towards small quantities (index by a value in 0..63).
_CANTIDADES = tuple([1] * 20 + [2] * 12 + [3] * 8 + [4] * 5 + [5] * 4 + list(range(6, 21)))
assert len(_ESTADOS) == 100 and len(_CANTIDADES) == 64

_M64 = (1 << 64) - 1
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _seed64(seed: int, name: str) -> int:
    """A 64-bit key for ``(seed, name)``, independent of PYTHONHASHSEED."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "big")


@lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    """``"YYYY-MM-DDT"`` for a day number (days since 1970-01-01, UTC)."""
    return datetime.fromtimestamp(day * _DAY, UTC).strftime("%Y-%m-%dT")


def iso(epoch: int) -> str:
    """Epoch seconds (int) -> ISO 8601 UTC with second precision, e.g. ``"2026-11-19T08:15:00Z"``."""
    day, rest = divmod(epoch, _DAY)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{_day_prefix(day)}{hour:02d}:{minute:02d}:{second:02d}Z"


#: Orders' timestamps are built from two tables: "YYYY-MM-DDTHH:MM:" per minute since
#: _MINUTES_FROM (5 days before ORDERS_FROM, since ``fecha`` may precede ``updated_at`` by up to 4 days)
#: up to ORDERS_TO (~21,600 strings, built on first use), and "SSZ" per second.
_MINUTES_FROM = ORDERS_FROM - 5 * _DAY
_SECONDS = tuple(f"{s:02d}Z" for s in range(60))


@lru_cache(maxsize=1)
def _minutes() -> tuple[str, ...]:
    hours_minutes = [f"{hh:02d}:{mm:02d}:" for hh in range(24) for mm in range(60)]
    days = range(_MINUTES_FROM // _DAY, ORDERS_TO // _DAY)
    return tuple(_day_prefix(d) + hm for d in days for hm in hours_minutes)


def parse_iso(value: str) -> float:
    """ISO 8601 (``...Z``, ``...+02:00``, naive = UTC, or a bare date) -> epoch seconds (float).

    A ``+`` in an offset that arrived unencoded in a query string (decoded as a space) is accepted.
    Raises ValueError for anything else.
    """
    text = value.strip()
    if "T" in text and text.count(" ") == 1:
        text = text.replace(" ", "+")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _ascii_slug(text: str) -> str:
    """``"Núñez Peña"`` -> ``"nunezpena"`` (for e-mail addresses)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", plain.lower())


class _BadRequest(Exception):
    """A query parameter has a bad value: answered with 400 and ``{"error": str(exc)}``."""


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    """``params[name]`` as an int in ``[low, high]`` (``default`` when absent); else :class:`_BadRequest`."""
    raw = params.get(name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw.strip()):
        raise _BadRequest(f"{name} must be an integer, got {raw!r}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _BadRequest(f"{name} must be {bound}, got {value}")
    return value


@dataclass
class Fault:
    """Misbehaviour for one endpoint path, consumed by matching requests.

    :param kind: one of :data:`FAULT_KINDS` (see :meth:`InventoryServer.fault`).
    :param times: how many requests it applies to; None: every request, forever.
    :param status: HTTP status for ``kind="status"``.
    :param retry_after: seconds for a ``Retry-After`` header with ``kind="status"`` (rounded up).
    :param seconds: how long ``kind="timeout"`` stalls before answering.
    """

    kind: str
    times: int | None = 1
    status: int = 500
    retry_after: float | None = None
    seconds: float = 5.0


class InventoryServer(BackgroundServer):
    """The product, order and supplier services on one local HTTP server (see the module docstring).

    :param seed: data seed; the same seed gives byte-identical answers.
    :param orders: number of orders (``/api/ordenes`` records, ids ``1..orders``).
    :param latency: seconds slept at the start of every request.
    :param host: interface to bind; ``port``: 0 picks a free port.

    The socket is bound at construction, so :attr:`base_url` (``"http://127.0.0.1:PORT"``, no
    trailing slash) is known before :meth:`start`. Settable attributes:

    * :attr:`duplicates` (int, default 0): ``/api/ordenes`` pages also carry, after their own
      records, this many records already served on an earlier page (same id, same content), spread
      over the pages holding positions 1000, 1037, 1074, ... of the (filtered) sequence; a full pass
      yields ``count + duplicates`` records when that sequence has more than 1,000 orders (see
      :meth:`_duplicate_positions` for smaller ones). ``records()`` never includes them.
    * :attr:`invalid` (int, default 0): this many products (evenly spaced indexes) are served, and
      returned by ``records()``, with ``"precio": "N/A"``.

    :attr:`requests` lists ``(path, query params as {str: str}, status)`` per request, appended
    before the answer is sent; ``status`` is 0 for a dropped connection.
    """

    def __init__(
        self,
        *,
        seed: int = 7,
        orders: int = 20_500,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if orders < 0:
            raise ValueError("orders must be >= 0")
        self.seed = seed
        self.orders = orders
        self.latency = latency
        self.duplicates = 0
        self.invalid = 0
        self.requests: list[tuple[str, dict[str, str], int]] = []
        self._lock = threading.Lock()
        self._faults: dict[str, list[list]] = {}  # path -> [[Fault, remaining], ...]
        self._stopping = threading.Event()
        self._filtered_cache: OrderedDict[tuple[int, int], array] = OrderedDict()
        self._build()

        server = self

        class Handler(QuietHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                server._handle(self)

        self._httpd = LocalHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self._httpd.server_address[1]}"

    # --- faults ------------------------------------------------------------------------------
    def fault(
        self,
        path: str,
        kind: str,
        *,
        times: int | None = 1,
        status: int = 500,
        retry_after: float | None = None,
        seconds: float = 5.0,
    ) -> None:
        """Make the next ``times`` requests to ``path`` (e.g. ``"/api/ordenes"``) misbehave.

        Faults for a path are consumed in the order added; ``times=None`` means forever (so
        faults added later for that path never apply until :meth:`clear_faults`). Kinds:

        * ``"status"``: answer ``status`` with ``{"error": "injected"}``; with ``retry_after``
          (seconds) add ``Retry-After: ceil(retry_after)``.
        * ``"timeout"``: sleep ``seconds``, then answer normally.
        * ``"malformed"``: answer 200 with the first half of the normal body (not valid JSON).
        * ``"cursor_loop"`` (``/api/ordenes`` only): answer normally but with ``next_cursor``
          equal to the request's cursor (no cursor: a cursor pointing at the first page).
        * ``"repeat_page"`` (the four other endpoints): the records of the first page (same page
          size) replace the requested page's records; everything else (``page``/``offset`` fields,
          ``next`` link, ``Link`` header) is as for the requested page.
        * ``"drop"``: close the connection without answering.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        if kind == "cursor_loop" and path != "/api/ordenes":
            raise ValueError("cursor_loop applies to /api/ordenes only")
        if kind == "repeat_page" and (path not in _PATHS or path == "/api/ordenes"):
            raise ValueError("repeat_page applies to productos, categorias, clientes and proveedores")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            self._faults.setdefault(path, []).append(
                [Fault(kind, times, status, retry_after, seconds), times]
            )

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            return take_fault(self._faults.get(path))

    # --- data ----------------------------------------------------------------------------------
    def count(self, entity: str) -> int:
        """Number of distinct records of ``entity`` (one of :data:`ENTITIES`)."""
        sizes = {
            "productos": N_PRODUCTOS,
            "categorias": len(_CATEGORIAS),
            "ordenes": self.orders,
            "clientes": N_CLIENTES,
            "proveedores": N_PROVEEDORES,
        }
        if entity not in sizes:
            raise ValueError(f"unknown entity {entity!r}; one of {ENTITIES}")
        return sizes[entity]

    def records(
        self, entity: str, *, updated_since: str | None = None, updated_before: str | None = None
    ) -> list[dict]:
        """Every record of ``entity`` as served (fresh JSON-able dicts, in serving order: by id).

        For ``"ordenes"`` the optional ISO 8601 bounds keep ``updated_since <= updated_at <
        updated_before`` like the endpoint; duplicates (:attr:`duplicates`) are not included.
        Products reflect :attr:`invalid`.
        """
        self.count(entity)  # validates the name
        if entity != "ordenes":
            if updated_since is not None or updated_before is not None:
                raise ValueError("updated_since / updated_before apply to ordenes only")
            if entity == "productos":
                rows = self._productos_slice(0, N_PRODUCTOS)
            else:
                rows = {"categorias": self._categorias, "clientes": self._clientes}.get(
                    entity, self._proveedores
                )
            return orjson.loads(orjson.dumps(rows))
        lo, hi = self._bounds(updated_since, updated_before)
        seq = self._filtered(lo, hi)
        return self._ordenes_rows(range(self.orders) if seq is None else seq)

    def _build(self) -> None:
        """Build the small entities and the orders' ``updated_at`` array (~0.3 s with 200k orders)."""
        seed = self.seed
        self._categorias = [
            {"id": cid, "nombre": nombre, "padre_id": padre, "descripcion": desc}
            for cid, (nombre, padre, desc, *_rest) in _CATEGORIAS.items()
        ]

        # suppliers first (products point at them), their product lists after the products
        proveedores: list[dict] = []
        n_items: list[int] = []
        for i in range(N_PROVEEDORES):
            rng = random.Random(f"{seed}/proveedores/{i}")
            creado = int(datetime(2015, 1, 1, tzinfo=UTC).timestamp()) + rng.randrange(11 * 365 * _DAY)
            oid = f"{creado:08x}{rng.getrandbits(64):016x}"
            raiz, marca = rng.choice(_EMPRESA_RAIZ), rng.choice(_EMPRESA_NOMBRE)
            nombre = f"{raiz} {marca} {rng.choice(_EMPRESA_FORMA)}"
            pais = rng.choice(_PAIS_PESOS)
            prefijo, ciudades, cp_digits = _PAISES[pais]
            doc: dict = {
                "_id": oid,
                "nombre": nombre,
                "contacto": {
                    "email": f"{rng.choice(('ventas', 'pedidos', 'info', 'comercial'))}@"
                    f"{_ascii_slug(raiz + marca)}.{'es' if pais == 'España' else 'com'}",
                    "telefono": None
                    if rng.random() < 0.15
                    else f"{prefijo} {rng.randrange(100, 1000)} {rng.randrange(100, 1000)} "
                    f"{rng.randrange(100, 1000)}",
                },
            }
            if rng.random() >= 0.1:  # about 10% lack an address entirely
                doc["direccion"] = {
                    "calle": f"{rng.choice(_CALLES)} {rng.randrange(1, 200)}",
                    "ciudad": rng.choice(ciudades),
                    "pais": pais,
                    "cp": f"{rng.randrange(10 ** (cp_digits - 1), 10**cp_digits)}",
                }
            n_items.append(rng.randrange(7))  # how many of its products it lists (filled below)
            doc["productos"] = []
            doc["etiquetas"] = rng.sample(_ETIQUETAS, rng.randrange(4))
            doc["activo"] = rng.random() < 0.9
            doc["creado"] = iso(creado)
            proveedores.append(doc)

        productos = []
        by_supplier: list[list[int]] = [[] for _ in range(N_PROVEEDORES)]
        act_from = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
        for i in range(N_PRODUCTOS):
            rng = random.Random(f"{seed}/productos/{i}")
            cid = rng.randrange(1, len(_CATEGORIAS) + 1)
            _n, _p, _d, nouns, specs, (lo, hi) = _CATEGORIAS[cid]
            nombre = f"{rng.choice(nouns)} {rng.choice(specs)}"
            if rng.random() < 0.3:
                nombre += f" {rng.choice(_MARCAS)}"
            precio = round(rng.randrange(lo, hi) + rng.choice((0.99, 0.95, 0.5, 0.0, 0.49)), 2)
            sup = rng.randrange(N_PROVEEDORES)
            by_supplier[sup].append(i)
            productos.append(
                {
                    "id": i + 1,
                    "sku": f"PRD-{i + 1:06d}",
                    "nombre": nombre,
                    "categoria_id": cid,
                    "proveedor_id": proveedores[sup]["_id"],
                    "precio": precio,
                    "stock": 0 if rng.random() < 0.08 else rng.randrange(1, 500),
                    "activo": rng.random() < 0.92,
                    "actualizado": iso(act_from + rng.randrange(313 * _DAY)),
                }
            )
        for sup, doc in enumerate(proveedores):
            doc["productos"] = [
                {"sku": productos[i]["sku"], "precio": round(productos[i]["precio"] * 0.62, 2)}
                for i in by_supplier[sup][: n_items[sup]]
            ]
        self._productos = productos
        self._proveedores = proveedores
        self._precios = [p["precio"] for p in productos]  # numeric even when served as "N/A"

        clientes = []
        alta_from = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp())
        for i in range(N_CLIENTES):
            rng = random.Random(f"{seed}/clientes/{i}")
            nombre, ape1, ape2 = rng.choice(_NOMBRES), rng.choice(_APELLIDOS), rng.choice(_APELLIDOS)
            pais = rng.choice(_PAIS_PESOS)
            prefijo, ciudades, _cp = _PAISES[pais]
            clientes.append(
                {
                    "id": i + 1,
                    "nombre": f"{nombre} {ape1} {ape2}",
                    "email": f"{_ascii_slug(nombre)}.{_ascii_slug(ape1)}{i + 1}@{rng.choice(_DOMINIOS)}",
                    "telefono": f"{prefijo} {rng.randrange(600, 700)} {rng.randrange(100, 1000)} "
                    f"{rng.randrange(100, 1000)}",
                    "ciudad": rng.choice(ciudades),
                    "pais": pais,
                    "fecha_alta": iso(alta_from + rng.randrange(7 * 365 * _DAY)),
                }
            )
        self._clientes = clientes

        # orders: updated_at (epoch s) per index; element i depends on (seed, i) only
        rand = random.Random(f"{seed}/ordenes/updated_at").random
        span = ORDERS_TO - ORDERS_FROM
        self._updated = array("i", [ORDERS_FROM + int(rand() * span) for _ in range(self.orders)])
        self._okey = _seed64(seed, "ordenes")

    def _ordenes_rows(self, indexes) -> list[dict]:
        """Orders at ``indexes`` (an iterable of ints; id = index + 1), each a pure function of
        ``(seed, index)``; about 3 µs per order (one loop with local names: this is the hot path)."""
        key = self._okey + 0x9E3779B97F4A7C15
        updated_at, precios, minutes, seconds = self._updated, self._precios, _minutes(), _SECONDS
        cantidades, estados, m64, base, lag = _CANTIDADES, _ESTADOS, _M64, _MINUTES_FROM, 4 * _DAY
        rows = []
        append = rows.append
        for i in indexes:
            # splitmix64 of (key + i), inlined
            h = (key + i) & m64
            h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & m64
            h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & m64
            h ^= h >> 31
            updated = updated_at[i] - base
            fecha = updated - (h >> 41) % lag  # created up to 4 days before the last update
            producto = 1 + (h >> 12) % N_PRODUCTOS
            cantidad = cantidades[(h >> 28) & 63]
            precio = precios[producto - 1]
            append(
                {
                    "id": i + 1,
                    "cliente_id": 1 + h % N_CLIENTES,
                    "producto_id": producto,
                    "cantidad": cantidad,
                    "precio_unitario": precio,
                    "total": round(cantidad * precio, 2),
                    "estado": estados[(h >> 34) % 100],
                    "fecha": minutes[fecha // 60] + seconds[fecha % 60],
                    "updated_at": minutes[updated // 60] + seconds[updated % 60],
                }
            )
        return rows

    def _productos_slice(self, start: int, stop: int) -> list[dict]:
        """Products ``[start, stop)`` as served (with :attr:`invalid` applied)."""
        rows = self._productos[start:stop]
        bad = self._invalid_indexes()
        if bad:
            rows = [{**r, "precio": "N/A"} if start + k in bad else r for k, r in enumerate(rows)]
        return rows

    def _invalid_indexes(self) -> frozenset[int]:
        """Indexes of the products served with ``"precio": "N/A"``: ``invalid`` evenly spaced ones."""
        n = min(max(int(self.invalid), 0), N_PRODUCTOS)
        if not n:
            return frozenset()
        step = N_PRODUCTOS / n
        return frozenset(int(step * m + step / 2) for m in range(n))

    def _bounds(self, since: str | None, before: str | None) -> tuple[int | None, int | None]:
        """ISO bounds -> integer epoch bounds for ``lo <= updated_at < hi`` (ValueError if bad)."""
        lo = None if since is None else math.ceil(parse_iso(since))
        hi = None if before is None else math.ceil(parse_iso(before))
        return lo, hi

    def _filtered(self, lo: int | None, hi: int | None) -> array | None:
        """Sorted order indexes with ``lo <= updated_at < hi``; None when unfiltered (all of them).

        One O(orders) scan per distinct window (~10 ms for 200k), then cached (LRU of 32).
        """
        if lo is None and hi is None:
            return None
        key = (-(2**31) if lo is None else lo, 2**31 if hi is None else hi)
        with self._lock:
            seq = self._filtered_cache.get(key)
            if seq is not None:
                self._filtered_cache.move_to_end(key)
                return seq
        a, b = key
        seq = array("i", [i for i, t in enumerate(self._updated) if a <= t < b])
        with self._lock:
            self._filtered_cache[key] = seq
            while len(self._filtered_cache) > 32:
                self._filtered_cache.popitem(last=False)
        return seq

    def _duplicate_positions(self, total: int) -> list[tuple[int, int]]:
        """``(position, j)`` for the ``duplicates`` extra records of a sequence of ``total`` orders.

        Duplicate ``j`` rides on the page holding (filtered) position ``1000 + 37 * j`` (wrapped
        into ``[1000, total)``; every page holding it starts after position 0 because limit <= 1000)
        and repeats the record at position ``(position * 7919 + j) % page_start``, which an earlier
        page served. So a full pass yields ``total + duplicates`` records whenever ``total > 1000``;
        for ``1 < total <= 1000`` they all ride on the last record and appear only when the last
        page is not the first one.
        """
        d = max(int(self.duplicates), 0)
        if not d or total < 2:
            return []
        if total > MAX_PAGE:
            return [(MAX_PAGE + (37 * j) % (total - MAX_PAGE), j) for j in range(d)]
        return [(total - 1, j) for j in range(d)]

    # --- HTTP -------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        if self.latency > 0:
            time.sleep(self.latency)
        url = urlsplit(h.path)
        path = url.path
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        fault = self._take_fault(path)
        kind = fault.kind if fault else None
        headers: dict[str, str] = {}
        if kind == "drop":
            self._log(path, params, 0)
            h.close_connection = True
            return
        if kind == "status":
            assert fault is not None
            status, body = fault.status, b'{"error":"injected"}'
            if fault.retry_after is not None:
                headers["Retry-After"] = str(math.ceil(fault.retry_after))
        else:
            entity = _PATHS.get(path)
            try:
                if entity is None:
                    status, body = 404, orjson.dumps({"error": f"no such endpoint: {path}"})
                else:
                    status = 200
                    body = getattr(self, f"_get_{entity}")(params, headers, kind)
            except _BadRequest as exc:
                status, body = 400, orjson.dumps({"error": str(exc)})
            except Exception as exc:  # a bug here must not hang the client
                status, body = 500, orjson.dumps({"error": f"internal: {exc!r}"})
            if kind == "malformed" and status == 200:
                body = body[: max(1, len(body) // 2)]
        self._log(path, params, status)
        if kind == "timeout":
            assert fault is not None
            if self._stopping.wait(fault.seconds):
                h.close_connection = True
                return
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _log(self, path: str, params: dict[str, str], status: int) -> None:
        with self._lock:
            self.requests.append((path, params, status))

    def _get_productos(self, params: dict[str, str], headers: dict[str, str], kind: str | None) -> bytes:
        page = _int_param(params, "page", 1, 1)
        size = _int_param(params, "size", 100, 1, MAX_PAGE)
        first = 0 if kind == "repeat_page" else (page - 1) * size
        return orjson.dumps(
            {
                "items": self._productos_slice(first, first + size),
                "page": page,
                "size": size,
                "total": N_PRODUCTOS,
                "total_pages": -(-N_PRODUCTOS // size),
            }
        )

    def _get_categorias(self, params: dict[str, str], headers: dict[str, str], kind: str | None) -> bytes:
        page = _int_param(params, "page", 1, 1)
        per_page = _int_param(params, "per_page", 10, 1, MAX_PAGE)
        total = len(self._categorias)
        last = max(1, -(-total // per_page))
        first = 0 if kind == "repeat_page" else (page - 1) * per_page
        url = f"{self.base_url}/api/categorias?page={{}}&per_page={per_page}"
        links = [f'<{url.format(page + 1)}>; rel="next"'] if page < last else []
        links.append(f'<{url.format(last)}>; rel="last"')
        headers["Link"] = ", ".join(links)
        headers["X-Total-Count"] = str(total)
        return orjson.dumps(self._categorias[first : first + per_page])

    def _get_ordenes(self, params: dict[str, str], headers: dict[str, str], kind: str | None) -> bytes:
        limit = _int_param(params, "limit", 500, 1, MAX_PAGE)
        cursor = params.get("cursor")
        start = 0 if cursor is None else self._decode_cursor(cursor)
        try:
            lo, hi = self._bounds(params.get("updated_since"), params.get("updated_before"))
        except ValueError as exc:
            raise _BadRequest(f"updated_since / updated_before must be ISO 8601 timestamps: {exc}") from None
        seq = self._filtered(lo, hi)
        if seq is None:
            total = self.orders
            pos = min(start, total)
            indexes: range | array = range(pos, min(pos + limit, total))
            nxt = pos + limit if pos + limit < total else None
        else:
            total = len(seq)
            pos = bisect.bisect_left(seq, start)
            indexes = seq[pos : pos + limit]
            nxt = seq[pos + limit] if pos + limit < total else None
        data = self._ordenes_rows(indexes)
        if self.duplicates and pos > 0:
            end = pos + len(data)
            again = [(at * 7919 + j) % pos for at, j in self._duplicate_positions(total) if pos <= at < end]
            data += self._ordenes_rows(again if seq is None else [seq[q] for q in again])
        if kind == "cursor_loop":
            next_cursor = cursor if cursor is not None else self._encode_cursor(0)
        else:
            next_cursor = None if nxt is None else self._encode_cursor(nxt)
        return orjson.dumps({"data": data, "next_cursor": next_cursor})

    @staticmethod
    def _encode_cursor(index: int) -> str:
        """Opaque cursor for the order at ``index`` (the next one to serve, in id order)."""
        return base64.urlsafe_b64encode(f"o:{index}".encode()).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str) -> int:
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            tag, _, index = text.partition(":")
            if tag != "o" or not index.isdigit():
                raise ValueError(text)
            return int(index)
        except (ValueError, UnicodeDecodeError):
            raise _BadRequest(f"invalid cursor {cursor!r}") from None

    def _get_clientes(self, params: dict[str, str], headers: dict[str, str], kind: str | None) -> bytes:
        offset = _int_param(params, "offset", 0, 0)
        limit = _int_param(params, "limit", 100, 1, MAX_PAGE)
        first = 0 if kind == "repeat_page" else offset
        return orjson.dumps(
            {
                "results": self._clientes[first : first + limit],
                "total": N_CLIENTES,
                "offset": offset,
                "limit": limit,
            }
        )

    def _get_proveedores(self, params: dict[str, str], headers: dict[str, str], kind: str | None) -> bytes:
        page = _int_param(params, "page", 1, 1)
        size = _int_param(params, "page_size", 50, 1, MAX_PAGE)
        first = 0 if kind == "repeat_page" else (page - 1) * size
        more = page * size < N_PROVEEDORES
        return orjson.dumps(
            {
                "results": self._proveedores[first : first + size],
                "next": f"{self.base_url}/api/proveedores?page={page + 1}&page_size={size}" if more else None,
            }
        )


def main(argv: list[str] | None = None) -> int:
    """CLI: serve until SIGTERM/SIGINT; prints the base URL as the first stdout line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--orders", type=int, default=20_500)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    parser.add_argument("--duplicates", type=int, default=0)
    parser.add_argument("--invalid", type=int, default=0)
    args = parser.parse_args(argv)
    server = InventoryServer(
        seed=args.seed, orders=args.orders, latency=args.latency, host=args.host, port=args.port
    )
    server.duplicates = args.duplicates
    server.invalid = args.invalid

    return serve_until_signalled(server)


if __name__ == "__main__":
    sys.exit(main())
