"""One entity, one run: pages from the service -> validated, de-duplicated, flattened rows ->
CSV, JSONL and Parquet in the lake, each partition with its manifest.

Lake keys (below the Variable ``datalake_root``), for a run whose data interval starts at
2026-11-20 02:00 UTC (``layout="partitioned"``, the default)::

    productos/dt=2026-11-20/productos_20261120_020000.csv          Athena/Glue table location
    productos/dt=2026-11-20/_manifest.json
    parquet/productos/dt=2026-11-20/productos_20261120_020000.parquet
    parquet/productos/dt=2026-11-20/_manifest.json
    raw/productos/dt=2026-11-20/productos_20261120_020000.jsonl    the records as received
    raw/productos/dt=2026-11-20/_manifest.json

Each format has its own prefix because an Athena table reads every file below its location.
The names come from the data interval only, so a rerun of the same interval replaces its own
files and never adds a second copy. ``layout="flat"`` is the old containers' layout: every file
of an entity in ``<entity>/`` (``productos/productos_20261120_020000.csv`` and so on, and
``productos/_manifest.json``).

Every prefix that receives files gets the suite's one manifest (:mod:`dataset_ops.storage.manifest`),
``<prefix>/_manifest.json``, written after its files (Glue, Athena, Hive and Spark skip names
starting with ``_``): every file of the partition with bytes, sha256 and rows (CSV and Parquet:
flattened rows; JSONL: records as received), the producing DAG run, status ``complete``; its
``extra`` holds ``{"entity", "layout", "formats", "runs": {<file base name>: metrics}}``, the run
metrics of :func:`ingest_entity` without their file list. Several runs that share a partition
add to its manifest in turn (:func:`~dataset_ops.storage.manifest.update_manifest`).

Earlier versions wrote a metrics object per run instead,
``_metrics/<entity>/dt=<day>/<base>.json`` (flat: ``<entity>/_metrics/<base>.json``);
:func:`legacy_manifest` reads a partition's manifest from those.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dataset_ops.ingest.config import EntityConfig
from dataset_ops.ingest.flatten import columns_for, row_maker
from dataset_ops.ingest.http import fetch_pages
from dataset_ops.storage import Storage, publish_file, read_json
from dataset_ops.storage.manifest import Manifest, ManifestFile, read_manifest, update_manifest

log = logging.getLogger(__name__)
_EXT = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
_PREFIX = {"csv": "", "jsonl": "raw/", "parquet": "parquet/"}
#: invalid records described in the metrics (all are counted)
INVALID_EXAMPLES = 20


def lake_key(
    entity: str, fmt: str, interval_start: datetime, layout: str = "partitioned", gz: bool = False
) -> str:
    """The key of one file (``fmt``: ``csv``, ``jsonl``, ``parquet`` or ``metrics``); see above."""
    start = interval_start.astimezone(UTC)
    base = f"{entity}_{start:%Y%m%d_%H%M%S}"
    ext = "json" if fmt == "metrics" else _EXT[fmt] + (".gz" if gz and fmt != "parquet" else "")
    if layout == "flat":
        return f"{entity}/{base}.{ext}" if fmt != "metrics" else f"{entity}/_metrics/{base}.json"
    if layout != "partitioned":
        raise ValueError(f"layout must be 'partitioned' or 'flat', not {layout!r}")
    prefix = "_metrics/" if fmt == "metrics" else _PREFIX[fmt]
    return f"{prefix}{entity}/dt={start:%Y-%m-%d}/{base}.{ext}"


class KeyIndex:
    """Primary keys seen in this run, in an SQLite file, so memory does not grow with the rows."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (k TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("BEGIN")

    def add(self, key: str) -> bool:
        """True when ``key`` is new (and remembers it), False for a duplicate."""
        return self.add_many([key])[0]

    def add_many(self, keys: list[str]) -> list[bool]:
        """For each key in order: True when new (remembered from now on), False for a duplicate
        (seen in an earlier call or earlier in ``keys``). Two statements per 900 keys."""
        fresh: list[bool] = []
        for i in range(0, len(keys), 900):  # SQLite's bound-variable limit is 999 in old builds
            part = keys[i : i + 900]
            marks = ",".join("?" * len(part))
            known = {k for (k,) in self._db.execute(f"SELECT k FROM seen WHERE k IN ({marks})", part)}
            new = []
            for key in part:
                is_new = key not in known
                fresh.append(is_new)
                if is_new:
                    known.add(key)
                    new.append((key,))
            self._db.executemany("INSERT INTO seen VALUES (?)", new)
        return fresh

    def close(self) -> None:
        self._db.execute("COMMIT")
        self._db.close()


def _primary_key(record: dict, fields: tuple[str, ...]) -> str | None:
    parts = []
    for name in fields:
        value = record
        for step in name.split("."):
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
        parts.append(str(value))
    return "\x1f".join(parts)


def iso(moment: datetime) -> str:
    """``2026-11-20T02:00:00Z``: what the services take for their interval filters."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ingest_entity(
    entity: EntityConfig,
    session,
    storage: Storage,
    interval_start: datetime,
    interval_end: datetime,
    *,
    layout: str = "partitioned",
    producer: dict | None = None,
    workdir: str | Path | None = None,
) -> dict:
    """Extract ``entity`` for the data interval and land its files in ``storage``.

    Records failing the entity's JSON Schema (checked with the validation plugin's compiled
    validator) and records without a primary key are dropped and counted; so are duplicates by
    primary key (the first one wins). Files are written locally, then published (verified
    atomic publish, :func:`dataset_ops.storage.publish_file`): nothing partial appears in the lake.

    :param session: from :func:`~dataset_ops.ingest.http.session_from_connection` or
        :func:`~dataset_ops.ingest.http.make_session`.
    :param interval_start: the run's data interval start (names the files; with
        ``incremental`` also the filter). :param interval_end: its end (exclusive).
    :param layout: ``partitioned`` or ``flat`` (see the module docstring).
    :param producer: who ran it, e.g. ``{"dag_id", "run_id"}``, stored in the metrics and as
        the producer of the partitions' manifests.
    :returns: the metrics (also in the ``extra`` of each written partition's manifest, see the
        module docstring): ``rows`` written, ``records``
        received, ``pages``, ``bytes`` of HTTP bodies, ``duplicates``, ``invalid_rows``,
        ``seconds``, ``files`` (key, bytes, sha256 per file) and ``invalid_examples``.
    :raises dataset_ops.ingest.http.IngestHTTPError: a request failed for good.
    :raises dataset_ops.ingest.pagination.PaginationError: the listing loops or never ends.
    """
    from dataset_ops.ingest.writers import EntityFiles
    from dataset_ops.validation.rules import JsonlRules

    started = time.monotonic()
    lake_key(entity.name, "csv", interval_start, layout)  # checks the layout early
    validate = JsonlRules.from_dict({"schema": entity.schema}).validator
    columns = columns_for(entity.schema, entity.explode)
    to_rows = row_maker(columns, entity.explode)
    params = dict(entity.params)
    if entity.incremental:
        params[entity.incremental["since_param"]] = iso(interval_start)
        params[entity.incremental["before_param"]] = iso(interval_end)
    base = f"{entity.name}_{interval_start.astimezone(UTC):%Y%m%d_%H%M%S}"
    metrics: dict = {
        "entity": entity.name,
        "service": entity.service,
        "endpoint": entity.endpoint,
        "mode": "incremental" if entity.incremental else "snapshot",
        "data_interval": {"start": iso(interval_start), "end": iso(interval_end)},
        "layout": layout,
        "producer": producer or {},
        "pages": 0,
        "records": 0,
        "bytes": 0,
        "duplicates": 0,
        "invalid_rows": 0,
        "rows": 0,
        "invalid_examples": [],
    }
    with tempfile.TemporaryDirectory(prefix=f"ingest-{entity.name}-", dir=workdir) as tmp:
        folder = Path(tmp)
        keys = KeyIndex(folder / "keys.sqlite")
        files = EntityFiles(folder, base, columns, entity.formats, entity.gzip)
        try:
            pages = fetch_pages(
                session, entity.paginator(), entity.endpoint, params, entity.http, max_pages=entity.max_pages
            )
            for page in pages:
                metrics["pages"] += 1
                metrics["bytes"] += page.bytes
                metrics["records"] += len(page.records)
                files.add_raw(page.records)
                good, good_keys = [], []
                for i, record in enumerate(page.records):
                    key, problem = _check(record, validate, entity.primary_key)
                    if problem is not None:
                        metrics["invalid_rows"] += 1
                        if len(metrics["invalid_examples"]) < INVALID_EXAMPLES:
                            metrics["invalid_examples"].append(
                                {"page": page.number, "index": i, "url": page.url, "reason": problem}
                            )
                        continue
                    good.append(record)
                    good_keys.append(key)
                rows: list[tuple] = []
                for record, is_new in zip(good, keys.add_many(good_keys), strict=True):
                    if is_new:
                        rows.extend(to_rows(record))
                    else:
                        metrics["duplicates"] += 1
                files.add_rows(rows)
            paths = files.close()
        except BaseException:
            files.abort()
            raise
        finally:
            keys.close()
        metrics["rows"] = files.rows
        metrics["columns"] = [c.name for c in columns]
        metrics["files"] = []
        for fmt, path in paths.items():
            key = lake_key(entity.name, fmt, interval_start, layout, entity.gzip)
            published = publish_file(storage, key, path)
            published["format"] = fmt
            published["rows"] = files.raw_records if fmt == "jsonl" else files.rows
            metrics["files"].append(published)
    metrics["seconds"] = round(time.monotonic() - started, 3)
    metrics["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_manifests(storage, metrics, base)
    log.info(
        "%s: %d rows from %d records in %d pages (%d bytes), %d duplicates, %d invalid, %.1f s",
        entity.name,
        metrics["rows"],
        metrics["records"],
        metrics["pages"],
        metrics["bytes"],
        metrics["duplicates"],
        metrics["invalid_rows"],
        metrics["seconds"],
    )
    return metrics


def _check(record: dict, validate, primary_key: tuple[str, ...]) -> tuple[str | None, str | None]:
    """``(primary key, None)`` for a good record, ``(None, reason)`` for a bad one."""
    if not isinstance(record, dict):
        return None, f"not a JSON object: {type(record).__name__}"
    try:
        validate(record)
    except Exception as exc:  # fastjsonschema.JsonSchemaValueException
        return None, f"schema: {getattr(exc, 'message', exc)}"
    key = _primary_key(record, primary_key)
    if key is None:
        return None, f"no primary key {list(primary_key)}"
    return key, None


def _split(key: str) -> tuple[str, str]:
    """``(prefix, name)`` of a lake key."""
    prefix, _, name = key.rpartition("/")
    return prefix, name


def write_manifests(storage: Storage, metrics: dict, base: str) -> list[Manifest]:
    """Add the run's files to the manifest of each prefix they landed in (one per format when
    partitioned, one for all when flat), last, after the files.

    :param metrics: :func:`ingest_entity`'s result (``files``: ``key``, ``bytes``, ``sha256``,
        ``rows``, ``format``). :param base: the run's file name without extension.
    :returns: the manifests written.
    """
    by_prefix: dict[str, list[dict]] = {}
    for f in metrics["files"]:
        by_prefix.setdefault(_split(f["key"])[0], []).append(f)
    run = {k: v for k, v in metrics.items() if k != "files"}
    written = []
    for prefix, files in by_prefix.items():

        def change(current: Manifest | None, prefix=prefix, files=files) -> Manifest:
            manifest = current or Manifest(prefix)
            manifest.legacy = False
            manifest.producer = dict(metrics.get("producer") or {})
            manifest.status = "complete"
            for f in files:
                manifest.add(ManifestFile(_split(f["key"])[1], f["bytes"], f["sha256"], f["rows"]))
            formats = sorted({f["format"] for f in files} | set(manifest.extra.get("formats", [])))
            manifest.extra.update(entity=metrics["entity"], layout=metrics["layout"], formats=formats)
            manifest.extra.setdefault("runs", {})[base] = run
            return manifest

        written.append(update_manifest(storage, prefix, change, legacy=legacy_manifest))
    return written


def _legacy_metrics_folder(prefix: str) -> str | None:
    """Where earlier versions put the metrics of the runs whose files are in ``prefix``."""
    parts = prefix.strip("/").split("/")
    if parts[-1].startswith("dt="):  # [raw/ | parquet/]<entity>/dt=<day>
        return f"_metrics/{parts[-2]}/{parts[-1]}/" if len(parts) >= 2 else None
    return f"{parts[-1]}/_metrics/" if len(parts) == 1 else None  # flat: <entity>


def legacy_manifest(storage: Storage, prefix: str) -> Manifest | None:
    """The manifest of a lake prefix written by earlier versions, from their metrics objects
    (``legacy=True``); None when there is none.

    The old metrics object (``_metrics/<entity>/dt=<day>/<base>.json``, flat
    ``<entity>/_metrics/<base>.json``; bytes, UTC ISO 8601)::

        {"entity", "service", "endpoint", "mode", "data_interval": {"start", "end"}, "layout",
         "producer": {"dag_id", "run_id"}, "pages", "records", "bytes", "duplicates",
         "invalid_rows", "rows", "invalid_examples", "columns", "seconds", "finished_at",
         "files": [{"key", "bytes", "sha256", "format", "rows"}]}

    Its files whose key lies directly in ``prefix`` become the manifest's files; the rest of each
    object goes to ``extra["runs"][<base>]``, as :func:`write_manifests` writes it.

    :raises ValueError: a metrics object that is not JSON.
    """
    prefix = prefix.strip("/")
    folder = _legacy_metrics_folder(prefix)
    if folder is None:
        return None
    manifest = Manifest(prefix, status="complete", legacy=True)
    stamps, formats = [], set()
    for key in sorted(storage.list(folder)):
        if not key.endswith(".json") or "/" in key[len(folder) :]:
            continue
        metrics = read_json(storage, key) or {}
        mine = [f for f in metrics.get("files") or [] if _split(f.get("key", ""))[0] == prefix]
        if not mine:
            continue
        for f in mine:
            manifest.add(ManifestFile(_split(f["key"])[1], int(f["bytes"]), f["sha256"], f.get("rows")))
            formats.add(f.get("format"))
        run = {k: v for k, v in metrics.items() if k != "files"}
        manifest.extra.setdefault("runs", {})[_split(key)[1].removesuffix(".json")] = run
        manifest.extra.update(entity=metrics.get("entity"), layout=metrics.get("layout"))
        manifest.producer = dict(metrics.get("producer") or {})
        stamps.append(metrics.get("finished_at") or "")
    if not manifest.files:
        return None
    manifest.extra["formats"] = sorted(f for f in formats if f)
    manifest.created_at, manifest.updated_at = min(stamps), max(stamps)
    return manifest


def read_partition_manifest(storage: Storage, prefix: str) -> Manifest | None:
    """The manifest of the lake prefix ``prefix`` (e.g. ``productos/dt=2026-11-20``):
    ``_manifest.json``, else one built from the legacy metrics objects; None when neither.

    :raises dataset_ops.storage.ManifestError: ``_manifest.json`` is unreadable."""
    return read_manifest(storage, prefix, legacy=legacy_manifest)


__all__ = [
    "KeyIndex",
    "ingest_entity",
    "iso",
    "lake_key",
    "legacy_manifest",
    "read_partition_manifest",
    "write_manifests",
]
