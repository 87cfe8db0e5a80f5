"""Inference records from Elasticsearch and reference data from MySQL, to local Parquet files.

Elasticsearch (Connection ``inference_es``, through the elasticsearch provider's
``ElasticsearchPythonHook``): every record of one deployment in a time window, read with a
point in time and ``search_after`` (https://www.elastic.co/guide/en/elasticsearch/reference/current/paginate-search-results.html):
no 10,000-hit limit, no scroll context, a consistent view while paging. Only the mapped
``_source`` fields are fetched, ``page_size`` hits per request, sorted by ``_shard_doc`` (a total
order, the cheapest one). Each page becomes one Arrow record batch of :func:`record_schema`
appended to a Parquet file (:class:`RecordExtraction`, which fetches the next page while the
caller uses the current one), so memory holds a few pages at a time.
A field missing in a record becomes null and is counted per field.

MySQL (Connection ``inference_mysql``, through the mysql provider's ``MySqlHook``, in a
``READ ONLY`` transaction): the queries ``include/inference/sql/{model,references,labels,devices}.sql``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from dataset_ops.errors import NotFound
from dataset_ops.inference.config import EsMapping, sql

log = logging.getLogger(__name__)

ES_CONN_ID = "inference_es"
MYSQL_CONN_ID = "inference_mysql"
TOP_K = 3


def record_schema():
    """The Arrow schema of the records Parquet file (one row per inference record)."""
    import pyarrow as pa

    fields = [
        ("transaction_id", pa.string()),
        ("deployment_id", pa.int64()),
        ("device_id", pa.int64()),
        ("reference_id", pa.int64()),
        ("result", pa.string()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("image_key", pa.string()),
    ]
    for k in range(1, TOP_K + 1):
        fields += [(f"label_{k}", pa.int64()), (f"conf_{k}", pa.float64())]
    return pa.schema(fields)


#: Logical field -> Parquet column, for the scalar fields of the mapping.
COLUMNS = {
    "transaction": "transaction_id",
    "deployment": "deployment_id",
    "device": "device_id",
    "reference": "reference_id",
    "result": "result",
    "timestamp": "timestamp",
    "image_key": "image_key",
}
_INT_COLUMNS = {"deployment_id", "device_id", "reference_id"} | {f"label_{k}" for k in range(1, TOP_K + 1)}


class ExtractError(RuntimeError):
    """A source is unreachable, denies access, or returned something unusable (the message
    names the Connection, the server and the reason)."""


class UnknownDeployment(NotFound):
    """The deployment id is not in the reference database (a ``LookupError``; permanent: the
    task fails without retries, see :mod:`dataset_ops.errors`)."""


#: Response bodies at least this long (bytes) are kept undecoded by :func:`search_serializers`.
RAW_BODY_BYTES = 1 << 20


def search_serializers() -> dict:
    """The client's ``serializers`` argument for :class:`RecordExtraction`: JSON as usual, except
    that response bodies of :data:`RAW_BODY_BYTES` or more (pages of hits) stay ``bytes``, which
    :class:`RecordExtraction` parses straight into Arrow (``pyarrow.json``) instead of into a
    Python dict per hit (elasticsearch-py "Serializers": a mapping of mimetype to serializer;
    the compatibility mimetype ``application/vnd.elasticsearch+json`` follows ``application/json``)."""
    from elasticsearch.serializer import JsonSerializer

    class LargeBodiesAsBytes(JsonSerializer):
        def loads(self, data: bytes) -> Any:
            return bytes(data) if len(data) >= RAW_BODY_BYTES else super().loads(data)

    return {"application/json": LargeBodiesAsBytes()}


def es_client(conn_id: str = ES_CONN_ID):
    """The ``elasticsearch.Elasticsearch`` client of ``ElasticsearchPythonHook`` for the
    Connection ``conn_id``: host, port (9200), schema (``http``/``https``); login/password as
    basic auth; the extra as client arguments (e.g. ``ca_certs``, ``api_key``); large response
    bodies left as bytes (:func:`search_serializers`)."""
    from airflow.providers.elasticsearch.hooks.elasticsearch import ElasticsearchPythonHook
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    scheme = conn.schema if conn.schema in ("http", "https") else "http"
    host = f"{scheme}://{conn.host or '127.0.0.1'}:{conn.port or 9200}"
    args = dict(conn.extra_dejson)
    if conn.login:
        args["basic_auth"] = (conn.login, conn.password or "")
    args.setdefault("request_timeout", 60)
    args.setdefault("serializers", search_serializers())
    return ElasticsearchPythonHook(hosts=[host], es_conn_args=args).get_conn


def _get(source: dict, path: str) -> Any:
    value: Any = source
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        if part in value:
            value = value[part]
        elif path in source:  # a flat key with dots in its name
            return source[path]
        else:
            return None
    return value


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _page_batch_rows(hits: list[dict], mapping: EsMapping, schema, missing: dict[str, int]):
    """Value by value, converting and naming the record and field of a bad value."""
    import pyarrow as pa

    paths = _column_paths(mapping)
    columns: dict[str, list] = {name: [] for name in schema.names}
    for hit in hits:
        source = hit.get("_source") or {}
        for name in schema.names:
            path = paths.get(name)
            value = _get(source, path) if path else None
            if value is None:
                missing[name] = missing.get(name, 0) + 1
            else:
                try:
                    if name in _INT_COLUMNS:
                        value = int(value)
                    elif name.startswith("conf_"):
                        value = float(value)
                    elif name == "timestamp":
                        value = _timestamp(value)
                    else:
                        value = str(value)
                except (TypeError, ValueError) as exc:
                    raise ExtractError(
                        f"record {hit.get('_index')}/{hit.get('_id')}: field {path!r} = {value!r}: {exc}"
                    ) from None
            columns[name].append(value)
    return pa.RecordBatch.from_pydict(columns, schema=schema)


class _Page(NamedTuple):
    """One search response: its record batch (None without hits), number of hits, the last
    hit's sort values, the point in time id, and whether every shard answered in time."""

    batch: Any
    hits: int
    search_after: list | None
    pit_id: str | None
    complete: bool


def _response_schema(mapping: EsMapping, schema):
    """The ``pyarrow.json`` explicit schema of a search response for :func:`_arrow_page` (flat
    ``_source`` paths only: None when a mapped path has a dot)."""
    import pyarrow as pa

    paths = _column_paths(mapping)
    if any("." in path for path in paths.values()):
        return None
    source: dict[str, Any] = {}
    for name, path in paths.items():
        kind = schema.field(name).type
        source.setdefault(path, pa.string() if name == "timestamp" else kind)
    hit = pa.struct(
        [
            ("_index", pa.string()),
            ("_id", pa.string()),
            ("_source", pa.struct(list(source.items()))),
            ("sort", pa.list_(pa.int64())),
        ]
    )
    return pa.schema(
        [
            ("pit_id", pa.string()),
            ("timed_out", pa.bool_()),
            ("_shards", pa.struct([("failed", pa.int64())])),
            ("hits", pa.struct([("hits", pa.list_(hit))])),
        ]
    )


def _column_paths(mapping: EsMapping) -> dict[str, str]:
    """Parquet column -> ``_source`` path."""
    paths = {COLUMNS[name]: mapping.fields[name] for name in COLUMNS}
    for k, (label, conf) in enumerate(mapping.top_labels[:TOP_K], 1):
        paths[f"label_{k}"], paths[f"conf_{k}"] = label, conf
    return paths


def _arrow_page(body: bytes, response_schema, mapping: EsMapping, schema, missing: dict[str, int]):
    """A raw search response parsed with ``pyarrow.json`` into a :class:`_Page`, or None when a
    value does not have its schema type (the caller then decodes the page as JSON and converts
    it value by value, naming a bad record)."""
    import io

    import pyarrow as pa
    import pyarrow.json as pj

    try:
        table = pj.read_json(
            io.BytesIO(body),
            read_options=pj.ReadOptions(block_size=len(body) + 1, use_threads=False),
            parse_options=pj.ParseOptions(
                explicit_schema=response_schema, unexpected_field_behavior="ignore"
            ),
        )
        if table.num_rows != 1:
            return None
        top = table.to_batches()[0]
        hits = top.column("hits").field("hits")  # list<hit> of the one response
        items = hits.flatten()
        if items.null_count:
            return None
        sources = {
            field.name: column
            for field, column in zip(
                items.type.field("_source").type, items.field("_source").flatten(), strict=True
            )
        }
        arrays = []
        for field, path in zip(schema, (_column_paths(mapping)[name] for name in schema.names), strict=True):
            column = sources[path]
            arrays.append(column.cast(field.type) if column.type != field.type else column)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError):
        return None
    for field, array in zip(schema, arrays, strict=True):
        if array.null_count:
            missing[field.name] = missing.get(field.name, 0) + array.null_count
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    count = len(items)
    return _Page(
        batch if count else None,
        count,
        items.field("sort")[count - 1].as_py() if count else None,
        top.column("pit_id")[0].as_py(),
        not top.column("timed_out")[0].as_py() and not top.column("_shards").field("failed")[0].as_py(),
    )


def _page_batch(hits: list[dict], mapping: EsMapping, schema, missing: dict[str, int]):
    """One page as a record batch, column by column (Arrow converts each column at once); a
    page with a value Arrow does not take as is goes through :func:`_page_batch_rows`."""
    import pyarrow as pa

    paths = _column_paths(mapping)
    sources = [hit.get("_source") or {} for hit in hits]
    arrays = []
    try:
        for field in schema:
            path = paths.get(field.name)
            if path is None:
                values = [None] * len(sources)
            elif "." in path:
                values = [_get(source, path) for source in sources]
            else:
                values = [source.get(path) for source in sources]
            if field.name == "timestamp":
                if any(type(v) is not str for v in values if v is not None):
                    raise TypeError("timestamp not an ISO string")
                arrays.append(pa.array(values, pa.string()).cast(field.type))
            else:
                arrays.append(pa.array(values, field.type))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return _page_batch_rows(hits, mapping, schema, missing)
    for field, array in zip(schema, arrays, strict=True):
        if array.null_count:
            missing[field.name] = missing.get(field.name, 0) + array.null_count
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class RecordExtraction:
    """One pass over a deployment's records: Elasticsearch pages -> Arrow record batches, each
    appended to a Parquet file and handed to the caller as it comes.

    The searches run in a background thread one page ahead of the caller (a queue of
    ``prefetch`` converted batches), so the time Elasticsearch takes to answer a page overlaps
    with what the caller does with the previous one (the report writes its data sheet).
    Pages are sorted by ``_shard_doc`` alone, the cheapest total order of a point in time
    (Elasticsearch docs, "Paginate search results": search_after with ``_shard_doc``), so
    records come in index order, which for append-only inference indices is arrival order.
    A page shorter than ``page_size`` is the last one (no empty closing search).

    Use as a context manager; iterate :meth:`batches` once::

        with RecordExtraction(es, mapping, 7, since, until, out) as extraction:
            for batch in extraction.batches():   # pyarrow.RecordBatch of record_schema()
                ...
        extraction.summary  # {"records", "pages", "missing", "bytes", "first", "last"}

    The Parquet file is written as ``out.partial`` and renamed to ``out`` when the last batch
    has been handed out (before :meth:`batches` returns); on any error it is removed, and the
    point in time is closed on exit either way.

    :raises ExtractError: (from :meth:`batches`) Elasticsearch unreachable, access denied, no such
        index, a page incomplete (timed out or failed shards), or a value of the wrong type (names
        the record and field).
    """

    def __init__(
        self,
        es,
        mapping: EsMapping,
        deployment_id: int,
        since: datetime,
        until: datetime,
        out: Path,
        *,
        conn_id: str = ES_CONN_ID,
        prefetch: int = 2,
    ):
        self.es, self.mapping, self.out = es, mapping, Path(out)
        self.deployment_id = deployment_id
        self.where = f"Elasticsearch (Connection {conn_id}, index {mapping.index})"
        self.query = {
            "bool": {
                "filter": [
                    {"term": {mapping.fields["deployment"]: deployment_id}},
                    {
                        "range": {
                            mapping.fields["timestamp"]: {"gte": since.isoformat(), "lt": until.isoformat()}
                        }
                    },
                ]
            }
        }
        self.prefetch = max(1, prefetch)
        self.schema = record_schema()
        self.missing: dict[str, int] = {}
        self.records = self.pages = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.summary: dict | None = None
        self._partial = self.out.with_name(self.out.name + ".partial")
        self._pit: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RecordExtraction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._partial.unlink(missing_ok=True)
        self._close_pit()

    def batches(self) -> Iterator:
        """The records as Arrow record batches of :func:`record_schema`, one per page, in order."""
        import pyarrow.parquet as pq

        self.out.parent.mkdir(parents=True, exist_ok=True)
        with self._errors():
            self._pit = self.es.open_point_in_time(
                index=self.mapping.index, keep_alive=self.mapping.keep_alive
            )["id"]
        pages: queue.Queue = queue.Queue(maxsize=self.prefetch)
        self._thread = threading.Thread(target=self._fetch, args=(pages,), name="es-pages", daemon=True)
        self._thread.start()
        with pq.ParquetWriter(self._partial, self.schema, compression="zstd") as writer:
            while True:
                item = pages.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                writer.write_batch(item)
                self.records += item.num_rows
                self.pages += 1
                self._stamps(item)
                if self.pages % 20 == 0:
                    log.info("%s: %d records so far", self.where, self.records)
                yield item
        self._partial.replace(self.out)
        log.info(
            "%s: %d records of deployment %s in %d pages; missing fields %s",
            self.where,
            self.records,
            self.deployment_id,
            self.pages,
            self.missing,
        )
        self.summary = {
            "records": self.records,
            "pages": self.pages,
            "missing": dict(self.missing),
            "bytes": self.out.stat().st_size,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
        }

    def _stamps(self, batch) -> None:
        import pyarrow.compute as pc

        low, high = pc.min_max(batch.column("timestamp")).values()
        low, high = low.as_py(), high.as_py()
        if low is not None:
            self.first = low if self.first is None else min(self.first, low)
            self.last = high if self.last is None else max(self.last, high)

    def _fetch(self, pages: queue.Queue) -> None:
        """The search loop (background thread): converted pages, then None, or the error."""

        def put(item) -> bool:
            while not self._stop.is_set():
                try:
                    pages.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            search_after = None
            size = self.mapping.page_size
            response_schema = _response_schema(self.mapping, self.schema)
            page = 0
            while not self._stop.is_set():
                page += 1
                with self._errors():
                    response = self.es.search(
                        query=self.query,
                        pit={"id": self._pit, "keep_alive": self.mapping.keep_alive},
                        sort=[{"_shard_doc": "asc"}],
                        size=size,
                        source_includes=self.mapping.source_paths(),
                        search_after=search_after,
                        track_total_hits=False,
                    )
                body = response.body
                del response
                parsed = None
                if isinstance(body, bytes):  # a page left undecoded by search_serializers()
                    if response_schema is not None:
                        parsed = _arrow_page(body, response_schema, self.mapping, self.schema, self.missing)
                    if parsed is None or not parsed.complete:  # a bad value or an incomplete page
                        body = orjson.loads(body)
                if parsed is None or not parsed.complete:
                    parsed = self._dict_page(body, page)
                del body
                batch, count, search_after = parsed.batch, parsed.hits, parsed.search_after
                self._pit = parsed.pit_id or self._pit
                del parsed
                if count and not put(batch):
                    return
                del batch
                if count < size:
                    break
            put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    def _dict_page(self, response: dict, page: int) -> _Page:
        """A decoded search response as a :class:`_Page`.

        :raises ExtractError: the page timed out or has failed shards, or a bad value.
        """
        shards = response.get("_shards") or {}
        if response.get("timed_out") or shards.get("failed"):
            raise ExtractError(
                f"{self.where}: page {page} incomplete (timed_out={response.get('timed_out')}, "
                f"failed shards {shards.get('failed')}: {shards.get('failures')})"
            )
        hits = response["hits"]["hits"]
        batch = _page_batch(hits, self.mapping, self.schema, self.missing) if hits else None
        return _Page(batch, len(hits), hits[-1]["sort"] if hits else None, response.get("pit_id"), True)

    @contextmanager
    def _errors(self):
        import elasticsearch

        try:
            yield
        except elasticsearch.ConnectionError as exc:
            raise ExtractError(f"{self.where} is unreachable: {exc}") from None
        except (elasticsearch.AuthenticationException, elasticsearch.AuthorizationException) as exc:
            raise ExtractError(f"{self.where} denied access: {exc}") from None
        except elasticsearch.NotFoundError as exc:
            raise ExtractError(f"{self.where}: not found: {exc}") from None

    def _close_pit(self) -> None:
        import elasticsearch

        pit, self._pit = self._pit, None
        if pit:
            try:
                self.es.close_point_in_time(id=pit)
            except elasticsearch.ApiError:  # it expires anyway
                pass


def extract_records(
    es,
    mapping: EsMapping,
    deployment_id: int,
    since: datetime,
    until: datetime,
    out: Path,
    *,
    conn_id: str = ES_CONN_ID,
) -> dict:
    """Every record of ``deployment_id`` with ``since <= timestamp < until`` into the Parquet
    file ``out`` (written as ``out.partial``, renamed when complete), with :class:`RecordExtraction`.

    :returns: ``{"records", "pages", "missing": {column: count}, "bytes", "first", "last"}``
        (``first``/``last``: ISO timestamps of the earliest and latest record, None when there
        are no records).
    :raises ExtractError: Elasticsearch unreachable, access denied, no such index, or a value
        of the wrong type (names the record and field).
    """
    with RecordExtraction(es, mapping, deployment_id, since, until, out, conn_id=conn_id) as extraction:
        for _ in extraction.batches():
            pass
    return extraction.summary


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode()
    return value


def read_reference_data(deployment_id: int, conn_id: str = MYSQL_CONN_ID) -> dict[str, list[dict]]:
    """The deployment's model, references, labels and devices: ``{"model": [row], "references":
    [...], "labels": [...], "devices": [...]}``, rows as dicts of plain values.

    :raises UnknownDeployment: the deployment is not in ``deployments``.
    :raises ExtractError: MySQL unreachable or access denied (names the Connection).
    """
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    hook = MySqlHook(mysql_conn_id=conn_id)
    try:
        conn = hook.get_conn()
    except Exception as exc:  # MySQLdb / pymysql OperationalError: unreachable or denied
        raise ExtractError(f"MySQL (Connection {conn_id}) is unreachable or denied access: {exc}") from None
    out: dict[str, list[dict]] = {}
    try:
        cur = conn.cursor()
        cur.execute("START TRANSACTION READ ONLY")
        for name in ("model", "references", "labels", "devices"):
            cur.execute(sql(name), {"deployment_id": int(deployment_id)})
            names = [d[0] for d in cur.description]
            out[name] = [{k: _plain(v) for k, v in zip(names, row, strict=True)} for row in cur.fetchall()]
        cur.execute("ROLLBACK")
        cur.close()
    except Exception as exc:
        if type(exc).__name__ in ("OperationalError", "ProgrammingError"):
            raise ExtractError(f"MySQL (Connection {conn_id}): {exc}") from None
        raise
    finally:
        conn.close()
    if not out["model"]:
        raise UnknownDeployment(
            f"deployment {deployment_id} is not in the deployments table (Connection {conn_id})"
        )
    return out
