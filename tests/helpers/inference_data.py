"""A deterministic, consistent world for the inference workflow (issue 6).

``make_world()`` builds, from one seed, what production spreads over three systems:

* MySQL (``include/inference/schema.sql``): 2 models, 2 deployments (7 runs model A, 8 runs model B),
  ~60 product references (some inactive, a few names with quotes and accents), the labels (classes)
  of both models and the devices of both deployments;
* Elasticsearch (field names of ``include/inference/mapping.yaml``'s defaults): one document per
  inference, in monthly indices ``inferences-YYYY.MM`` (the pattern ``inferences-*``), plus a decoy
  index that does not match the pattern;
* S3: one small real JPEG per record (``image_bytes(key)``), keys below ``images/``.

The inconsistencies the workflow must survive are there on purpose and listed by the World:
labels without a reference (``labels_without_references``), devices without records
(``devices_without_data``), references in Elasticsearch that MySQL does not know
(``UNKNOWN_REFERENCES``), records missing ``result`` or ``pred_label_3``/``pred_conf_3``,
images missing from S3 (``missing_images``), timestamps shared by several records (a sort on
``@timestamp`` alone is not a total order) and a record exactly on the window's start.

Everything is plain Python so tests can compute expected figures independently of the code under
test: ``records_for()``, ``Record.top1_right``, ``Record.right_in_top3``, ``Record.low_confidence``...
"""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCHEMA_SQL = REPO / "include" / "inference" / "schema.sql"

#: The fixed "now" of the default world: records of deployment 7 fill [NOW - 30 days, NOW).
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WINDOW_DAYS = 30
#: Top-1 confidence below this counts as low (about 15 % of the records).
LOW_CONFIDENCE = 0.78
#: Reference ids that occur in Elasticsearch (about 1 % of records) but not in MySQL.
UNKNOWN_REFERENCES = (9001, 9002)
INDEX_PATTERN = "inferences-*"
#: An index holding copies of some deployment-7 documents; it does NOT match ``inferences-*``.
DECOY_INDEX = "archive-inferences-2026.10"
IMAGES_PREFIX = "images/"

#: Explicit mappings for the ``inferences-*`` indices (as production has; ids are integers).
ES_MAPPINGS = {
    "properties": {
        "deployment_id": {"type": "integer"},
        "device_id": {"type": "integer"},
        "reference_id": {"type": "integer"},
        "result": {"type": "keyword"},
        "@timestamp": {"type": "date"},
        "image_key": {"type": "keyword"},
        "transaction_id": {"type": "keyword"},
        **{f"pred_label_{k}": {"type": "integer"} for k in (1, 2, 3)},
        **{f"pred_conf_{k}": {"type": "float"} for k in (1, 2, 3)},
    }
}

# Probabilities of the generator (observed figures for the default world are in the tests).
P_TOP1 = 0.81  # the correct label is first (x 0.99 known references: ~80 % of all records)
P_TOP3 = 0.94  # ... or second/third (~93 % of all records right within the top 3)
P_UNKNOWN_REFERENCE = 0.01
P_LOW_WHEN_RIGHT = 0.075  # top-1 confidence < 0.78 when top-1 is right
P_LOW_WHEN_WRONG = 0.45  # ... when top-1 is wrong: ~15 % of all records
P_OK_WHEN_WRONG = 0.10  # noise: the device logged "ok" although top-1 was wrong
P_NO_RESULT = 0.0025  # the record has no `result` field
P_NO_THIRD = 0.0025  # the record has no pred_label_3 / pred_conf_3
P_SHARED_TIMESTAMP = 0.01  # the record reuses the timestamp of another record


# --- the rows ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Model:
    id: int
    name: str
    version: str
    framework: str
    trained_at: datetime  # naive UTC (MySQL DATETIME)
    num_classes: int
    accuracy: Decimal | None


@dataclass(frozen=True, slots=True)
class Deployment:
    id: int
    name: str
    model_id: int
    created_at: datetime  # naive UTC


@dataclass(frozen=True, slots=True)
class Reference:
    id: int
    code: str
    name: str
    category: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class Label:
    id: int
    model_id: int
    name: str
    reference_id: int | None


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    code: str
    deployment_id: int
    shop: str
    location: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class Record:
    """One inference. ``preds`` holds 3 (label id, confidence) pairs, best first (2 when the record
    lacks ``pred_label_3``); ``result`` is None when the record has no ``result`` field;
    ``correct_rank`` is 1..3 when the label of ``reference_id`` is among ``preds``, else None."""

    transaction_id: str
    deployment_id: int
    device_id: int
    reference_id: int
    timestamp: datetime  # aware UTC, millisecond precision
    result: str | None
    preds: tuple[tuple[int, float], ...]
    correct_rank: int | None

    @property
    def iso_timestamp(self) -> str:
        """``@timestamp`` as stored: ``2026-11-05T08:12:33.123Z``."""
        return self.timestamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.timestamp.microsecond // 1000:03d}Z"

    @property
    def image_key(self) -> str:
        return (
            f"deployment={self.deployment_id}/device={self.device_id}/"
            f"{self.timestamp:%Y/%m/%d}/{self.transaction_id}.jpg"
        )

    @property
    def index(self) -> str:
        """The monthly index the record lives in (``inferences-2026.11``)."""
        return f"inferences-{self.timestamp:%Y.%m}"

    @property
    def top1_label(self) -> int:
        return self.preds[0][0]

    @property
    def top1_conf(self) -> float:
        return self.preds[0][1]

    @property
    def top1_right(self) -> bool:
        return self.correct_rank == 1

    @property
    def right_in_top3(self) -> bool:
        return self.correct_rank is not None

    @property
    def low_confidence(self) -> bool:
        return self.top1_conf < LOW_CONFIDENCE

    @property
    def missing_fields(self) -> tuple[str, ...]:
        missing = () if self.result is not None else ("result",)
        return missing + (("pred_label_3", "pred_conf_3") if len(self.preds) < 3 else ())

    def document(self) -> dict:
        """The Elasticsearch ``_source`` (default field names of ``mapping.yaml``)."""
        doc = {
            "deployment_id": self.deployment_id,
            "device_id": self.device_id,
            "reference_id": self.reference_id,
            "@timestamp": self.iso_timestamp,
            "image_key": self.image_key,
            "transaction_id": self.transaction_id,
        }
        if self.result is not None:
            doc["result"] = self.result
        for k, (label, conf) in enumerate(self.preds, 1):
            doc[f"pred_label_{k}"] = label
            doc[f"pred_conf_{k}"] = conf
        return doc


# --- the world ---------------------------------------------------------------------------------
@dataclass
class World:
    seed: int
    now: datetime
    window_start: datetime
    deployment_id: int
    other_deployment_id: int
    models: list[Model]
    deployments: list[Deployment]
    references: list[Reference]
    labels: list[Label]
    devices: list[Device]
    #: every record (deployment 7 in the window, deployment 7 older, deployment 8), sorted by
    #: (timestamp, transaction_id)
    records: list[Record]
    #: references and devices whose images are in S3 (``inference_images``): uploading all 30k
    #: images to the test S3 server takes minutes, so only the records a review test selects get one
    review_references: tuple[int, ...]
    review_devices: tuple[int, ...]
    #: image keys of review candidates deliberately absent from S3
    missing_images: tuple[str, ...]
    #: transaction ids of the deployment-7 window records copied into DECOY_INDEX
    decoy_transactions: tuple[str, ...]
    index_pattern: str = INDEX_PATTERN
    decoy_index: str = DECOY_INDEX

    # lookups
    @cached_property
    def reference_by_id(self) -> dict[int, Reference]:
        return {r.id: r for r in self.references}

    @cached_property
    def label_by_id(self) -> dict[int, Label]:
        return {lab.id: lab for lab in self.labels}

    @cached_property
    def device_by_id(self) -> dict[int, Device]:
        return {d.id: d for d in self.devices}

    @cached_property
    def record_by_image_key(self) -> dict[str, Record]:
        return {r.image_key: r for r in self.records}

    @cached_property
    def record_by_transaction(self) -> dict[str, Record]:
        return {r.transaction_id: r for r in self.records}

    def deployment(self, deployment_id: int | None = None) -> Deployment:
        dep = self.deployment_id if deployment_id is None else deployment_id
        return next(d for d in self.deployments if d.id == dep)

    def model_for(self, deployment_id: int | None = None) -> Model:
        model_id = self.deployment(deployment_id).model_id
        return next(m for m in self.models if m.id == model_id)

    def labels_for(self, deployment_id: int | None = None) -> list[Label]:
        model_id = self.deployment(deployment_id).model_id
        return [lab for lab in self.labels if lab.model_id == model_id]

    def devices_for(self, deployment_id: int | None = None) -> list[Device]:
        dep = self.deployment_id if deployment_id is None else deployment_id
        return [d for d in self.devices if d.deployment_id == dep]

    # truth
    def records_for(
        self,
        deployment_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Record]:
        """Records of a deployment (default 7) with ``since <= @timestamp < until`` (None: open),
        in (timestamp, transaction_id) order. ``records_for(7, w.window_start, w.now)`` is the
        30-day window of ``n_records`` records."""
        dep = self.deployment_id if deployment_id is None else deployment_id
        return [
            r
            for r in self.records
            if r.deployment_id == dep
            and (since is None or r.timestamp >= since)
            and (until is None or r.timestamp < until)
        ]

    @property
    def window_records(self) -> list[Record]:
        """Deployment 7's records in [window_start, now)."""
        return self.records_for(self.deployment_id, self.window_start, self.now)

    def labels_without_references(self, deployment_id: int | None = None) -> list[int]:
        return [lab.id for lab in self.labels_for(deployment_id) if lab.reference_id is None]

    def devices_without_data(self, deployment_id=None, since=None, until=None) -> list[int]:
        seen = {r.device_id for r in self.records_for(deployment_id, since, until)}
        return [d.id for d in self.devices_for(deployment_id) if d.id not in seen]

    def unknown_references(self, deployment_id=None, since=None, until=None) -> dict[int, int]:
        """Reference ids of the records that MySQL does not know -> number of records."""
        counts: dict[int, int] = {}
        for r in self.records_for(deployment_id, since, until):
            if r.reference_id not in self.reference_by_id:
                counts[r.reference_id] = counts.get(r.reference_id, 0) + 1
        return counts

    def label_reference(self, deployment_id: int | None = None) -> dict[int, int | None]:
        """label id -> reference id (None for a label without reference) for the deployment's model."""
        return {lab.id: lab.reference_id for lab in self.labels_for(deployment_id)}

    @property
    def index_names(self) -> list[str]:
        """The ``inferences-YYYY.MM`` indices holding the records."""
        return sorted({r.index for r in self.records})

    # Elasticsearch
    def es_documents(self, deployment_id: int | None = None) -> Iterator[dict]:
        """``_source`` of every record (or of one deployment's), in ``records`` order."""
        for r in self.records:
            if deployment_id is None or r.deployment_id == deployment_id:
                yield r.document()

    def es_actions(self) -> Iterator[dict]:
        """Bulk actions (``_index``, ``_id`` = transaction id, ``_source``) for all records, then the
        decoy copies."""
        for r in self.records:
            yield {"_index": r.index, "_id": r.transaction_id, "_source": r.document()}
        for tx in self.decoy_transactions:
            yield {
                "_index": self.decoy_index,
                "_id": tx,
                "_source": self.record_by_transaction[tx].document(),
            }

    # S3
    def image_keys(self, deployment_id=None, since=None, until=None) -> list[str]:
        return [r.image_key for r in self.records_for(deployment_id, since, until)]

    @property
    def review_candidates(self) -> list[Record]:
        """Deployment 7's window records of ``review_references`` or ``review_devices``: the
        records whose images ``inference_images`` uploads (except ``missing_images``)."""
        refs, devs = set(self.review_references), set(self.review_devices)
        return [r for r in self.window_records if r.reference_id in refs or r.device_id in devs]

    def uploaded_image_keys(self) -> list[str]:
        """Keys (below ``images/``) that ``inference_images`` puts in S3: the review candidates'
        minus ``missing_images``."""
        missing = set(self.missing_images)
        return [r.image_key for r in self.review_candidates if r.image_key not in missing]

    def image_bytes(self, key: str) -> bytes:
        """A 32x32 JPEG for the record of ``key`` (a key under ``images/`` is accepted too), filled
        with ``image_colour(reference_id)``; deterministic."""
        import cv2
        import numpy as np

        record = self.record_by_image_key[key.removeprefix(IMAGES_PREFIX)]
        img = np.empty((32, 32, 3), dtype=np.uint8)
        img[:] = image_colour(record.reference_id)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        return buf.tobytes()

    # MySQL
    def records_table(self, records: Iterable[Record] | None = None):
        """``records`` (default: the window records) as the Arrow table the extraction writes
        (:func:`dataset_ops.inference.extract.record_schema`)."""
        import pyarrow as pa

        from dataset_ops.inference.extract import record_schema

        schema = record_schema()
        records = self.window_records if records is None else records
        cols: dict[str, list] = {name: [] for name in schema.names}
        names = ("transaction_id", "deployment_id", "device_id", "reference_id", "result", "timestamp")
        for r in records:
            for name in names:
                cols[name].append(getattr(r, name))
            cols["image_key"].append(r.image_key)
            for k in (1, 2, 3):
                label, conf = r.preds[k - 1] if len(r.preds) >= k else (None, None)
                cols[f"label_{k}"].append(label)
                cols[f"conf_{k}"].append(conf)
        return pa.Table.from_pydict(cols, schema=schema)

    def reference_data(self) -> dict[str, list[dict]]:
        """What extract.read_reference_data returns for deployment 7 (plain JSON values)."""
        dep, model = self.deployment(), self.model_for()
        return {
            "model": [
                {
                    "deployment_id": dep.id,
                    "deployment_name": dep.name,
                    "model_id": model.id,
                    "model_name": model.name,
                    "model_version": model.version,
                    "framework": model.framework,
                    "trained_at": model.trained_at.isoformat(),
                    "num_classes": model.num_classes,
                    "accuracy": float(model.accuracy),
                }
            ],
            "references": [
                {
                    "reference_id": r.id,
                    "reference_code": r.code,
                    "reference_name": r.name,
                    "category": r.category,
                    "active": int(r.active),
                }
                for r in self.references
            ],
            "labels": [
                {"label_id": lab.id, "label_name": lab.name, "reference_id": lab.reference_id}
                for lab in self.labels_for()
            ],
            "devices": [
                {
                    "device_id": d.id,
                    "device_code": d.code,
                    "shop": d.shop,
                    "location": d.location,
                    "active": int(d.active),
                }
                for d in self.devices_for()
            ],
        }

    def mysql_statements(self) -> list[str]:
        """``schema.sql``'s CREATE TABLEs, then one multi-row INSERT per table with literal values
        (no driver placeholders: run them with ``cursor.execute(sql)`` or ``MySqlHook.run``)."""
        stmts = schema_statements()
        tables = [
            ("models", self.models),
            ("deployments", self.deployments),
            ("product_references", self.references),
            ("labels", self.labels),
            ("devices", self.devices),
        ]
        for table, rows in tables:
            cols = rows[0].__dataclass_fields__.keys()
            values = ",\n".join(
                "(" + ", ".join(sql_literal(getattr(row, c)) for c in cols) + ")" for row in rows
            )
            stmts.append(f"INSERT INTO {table} ({', '.join(cols)}) VALUES\n{values}")
        return stmts

    def load_mysql(self, conn) -> None:
        """Create the schema and insert the rows through a DB-API connection (PyMySQL or
        mysqlclient) to an empty database; commits."""
        with conn.cursor() as cur:
            for stmt in self.mysql_statements():
                cur.execute(stmt)
        conn.commit()

    def summary(self) -> dict:
        w = self.window_records
        n = len(w)
        return {
            "records": len(self.records),
            "window_records": n,
            "top1_right": sum(r.top1_right for r in w) / n,
            "right_in_top3": sum(r.right_in_top3 for r in w) / n,
            "low_confidence": sum(r.low_confidence for r in w) / n,
            "unknown_references": self.unknown_references(None, self.window_start, self.now),
            "missing_result": sum(r.result is None for r in w),
            "missing_third": sum(len(r.preds) < 3 for r in w),
            "devices_without_data": self.devices_without_data(None, self.window_start, self.now),
            "labels_without_references": self.labels_without_references(),
            "review_references": self.review_references,
            "review_devices": self.review_devices,
            "review_candidates": len(self.review_candidates),
            "per_device": dict(sorted(Counter(r.device_id for r in w).items())),
            "indices": self.index_names,
        }


def image_colour(reference_id: int) -> tuple[int, int, int]:
    """BGR colour of the images of a reference."""
    return ((reference_id * 53) % 256, (reference_id * 97 + 40) % 256, (reference_id * 193 + 80) % 256)


def schema_statements() -> list[str]:
    """The statements of ``include/inference/schema.sql`` (comments removed)."""
    text = re.sub(r"--[^\n]*", "", SCHEMA_SQL.read_text())
    return [s.strip() for s in text.split(";") if s.strip()]


def sql_literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value:%Y-%m-%d %H:%M:%S}'"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


# --- generation --------------------------------------------------------------------------------
_CATEGORIES = ["beverages", "snacks", "dairy", "bakery", "produce", "frozen", "household", None]
_BRANDS = ["Aurora", "Bellamy", "Cascade", "Dad's", "Etoile", "Fjord", "Granja", "Hoshi", "Ilios", "Juniper"]
_ITEMS = [
    "Cola 33cl", "Sparkling Water 1L", "Orange Juice 1L", "Crisps Salted 150g", "Crème fraîche 20cl",
    "Greek Yoghurt 4x125g", "Baguette", "Croissant x4", "Bananas 1kg", "Apples Gala 1kg",
    "Frozen Peas 1kg", "Ice Cream Vanilla 1L", "Dish Soap 500ml", "Paper Towels x2", "Cookies 200g",
]  # fmt: skip
_SHOPS = ["Lyon Part-Dieu", "Lyon Confluence", "Grenoble Centre", "Annecy Lac", "Valence Gare"]
_NULL_LABELS = ["background", "empty_hand", "unknown_object"]


def make_world(
    seed: int = 20261120,
    n_records: int = 30_000,
    deployment_id: int = 7,
    other_deployment_id: int = 8,
    now: datetime = NOW,
    window_days: int = WINDOW_DAYS,
    n_old: int = 200,
    n_other: int = 300,
    n_references: int = 60,
    n_labels: int = 50,
    n_devices: int = 12,
    n_missing_images: int = 10,
    n_decoys: int = 25,
) -> World:
    """Build the world; the same arguments always give the same world (about 0.3 s for 30k)."""
    rng = random.Random(seed)
    window_start = now - timedelta(days=window_days)
    naive_now = now.replace(tzinfo=None)

    trained_a, trained_b = naive_now - timedelta(days=95), naive_now - timedelta(days=240)
    models = [
        Model(1, "shelf-vision", "3.2.0", "pytorch", trained_a, n_labels, Decimal("0.8125")),
        Model(2, "shelf-vision-lite", "1.4.1", "onnx", trained_b, 20, None),
    ]
    deployments = [
        Deployment(deployment_id, "Rhone-Alpes shops", 1, naive_now - timedelta(days=80)),
        Deployment(other_deployment_id, "Pilot kiosks", 2, naive_now - timedelta(days=200)),
    ]

    references = []
    inactive = set(rng.sample(range(1, n_references + 1), 5))
    for i in range(1, n_references + 1):
        q, m = divmod(i, len(_ITEMS))  # (brand, item) pairs are distinct for i < 150
        name = f"{_BRANDS[(3 * q + m) % len(_BRANDS)]} {_ITEMS[m]}"
        code = f"REF-{i:04d}"
        references.append(Reference(i, code, name, _CATEGORIES[i % len(_CATEGORIES)], i not in inactive))

    # model A: n_labels - 3 labels naming distinct references (2 of them inactive), 3 without
    ref_ids = [r.id for r in references]
    inactive_sorted = sorted(inactive)
    labelled = set(rng.sample(sorted(set(ref_ids) - inactive), n_labels - 3 - 2)) | set(inactive_sorted[:2])
    labelled_refs = sorted(labelled)
    labels = []
    null_slots = set(rng.sample(range(n_labels), 3))
    refs_iter = iter(labelled_refs)
    null_names = iter(_NULL_LABELS)
    for k in range(n_labels):
        if k in null_slots:
            labels.append(Label(101 + k, 1, next(null_names), None))
        else:
            ref = next(refs_iter)
            labels.append(Label(101 + k, 1, _slug(references[ref - 1].name), ref))
    # model B: 20 labels, all with a reference
    b_refs = sorted(rng.sample(ref_ids, 20))
    labels += [Label(201 + k, 2, _slug(references[r - 1].name), r) for k, r in enumerate(b_refs)]

    devices = []
    for i in range(1, n_devices + 1):
        shop = _SHOPS[(i - 1) % len(_SHOPS)]
        location = None if i % 5 == 0 else f"checkout {(i - 1) // len(_SHOPS) + 1}"
        devices.append(Device(i, f"DEV-{i:04d}", deployment_id, shop, location, i != n_devices))
    other_devices = [
        Device(20 + i, f"KIOSK-{i:02d}", other_deployment_id, "Paris Bercy", None, True) for i in (1, 2, 3)
    ]
    devices += other_devices

    # records
    a_labels = [lab.id for lab in labels if lab.model_id == 1]
    b_labels = [lab.id for lab in labels if lab.model_id == 2]
    a_label_of_ref = {lab.reference_id: lab.id for lab in labels if lab.model_id == 1 and lab.reference_id}
    b_label_of_ref = {lab.reference_id: lab.id for lab in labels if lab.model_id == 2}
    active_devices = [d.id for d in devices[: n_devices - 2]]  # the last 2 have no records
    dev_weights = [rng.uniform(0.4, 2.0) for _ in active_devices]
    dev_weights[-1] = 0.08  # a low-traffic device (~1 % of the records): the device to review
    ref_weights = [1.0 / (k + 3) for k in range(len(labelled_refs))]
    rng.shuffle(ref_weights)

    window_ms = window_days * 86_400_000
    records: list[Record] = []
    uid = _uuid_factory(rng)

    def gen(n, dep, dev_ids, dev_w, refs, ref_w, labs, label_of_ref, start, span_ms, unknown):
        out = []
        devs = rng.choices(dev_ids, dev_w, k=n)
        rfs = rng.choices(refs, ref_w, k=n)
        for i in range(n):
            ref = rfs[i]
            if unknown and rng.random() < P_UNKNOWN_REFERENCE:
                ref = UNKNOWN_REFERENCES[rng.random() < 0.4]
            if out and rng.random() < P_SHARED_TIMESTAMP:
                ts = out[rng.randrange(len(out))].timestamp
            else:
                ts = start + timedelta(milliseconds=rng.randrange(span_ms))
            out.append(_record(rng, uid(), dep, devs[i], ref, ts, labs, label_of_ref))
        return out

    records += gen(
        n_records, deployment_id, active_devices, dev_weights, labelled_refs, ref_weights,
        a_labels, a_label_of_ref, window_start, window_ms, True,
    )  # fmt: skip
    # edge: one record exactly on the window's start (inside), one 1 ms before (outside)
    first = records[0]
    records[0] = _replace_ts(first, window_start)
    records += gen(
        n_old, deployment_id, active_devices, dev_weights, labelled_refs, ref_weights,
        a_labels, a_label_of_ref, window_start - timedelta(days=window_days), window_ms, True,
    )  # fmt: skip
    records[n_records] = _replace_ts(records[n_records], window_start - timedelta(milliseconds=1))
    records += gen(
        n_other, other_deployment_id, [d.id for d in other_devices], [1, 1, 1], b_refs, [1] * len(b_refs),
        b_labels, b_label_of_ref, window_start, window_ms, False,
    )  # fmt: skip
    records.sort(key=lambda r: (r.timestamp, r.transaction_id))

    window = [r for r in records if r.deployment_id == deployment_id and r.timestamp >= window_start]
    per_ref: dict[int, int] = {}
    for r in window:
        per_ref[r.reference_id] = per_ref.get(r.reference_id, 0) + 1
    rarest = sorted((n, ref) for ref, n in per_ref.items() if ref not in UNKNOWN_REFERENCES)[:2]
    review_references = tuple(sorted(ref for _, ref in rarest)) + (UNKNOWN_REFERENCES[1],)
    review_devices = (active_devices[-1],)
    candidates = [r for r in window if r.reference_id in review_references or r.device_id in review_devices]
    missing_images = tuple(
        r.image_key for r in rng.sample(candidates, min(n_missing_images, len(candidates)))
    )
    decoys = tuple(r.transaction_id for r in rng.sample(window, min(n_decoys, len(window))))
    return World(
        seed=seed,
        now=now,
        window_start=window_start,
        deployment_id=deployment_id,
        other_deployment_id=other_deployment_id,
        models=models,
        deployments=deployments,
        references=references,
        labels=labels,
        devices=devices,
        records=records,
        review_references=review_references,
        review_devices=review_devices,
        missing_images=missing_images,
        decoy_transactions=decoys,
    )


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _uuid_factory(rng: random.Random):
    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    return uid


def _replace_ts(record: Record, ts: datetime) -> Record:
    return replace(record, timestamp=ts)


def _record(rng, tx, dep, device, ref, ts, labs, label_of_ref) -> Record:
    correct = label_of_ref.get(ref)
    rank = None
    if correct is not None:
        u = rng.random()
        if u < P_TOP1:
            rank = 1
        elif u < P_TOP3:
            rank = 2 if rng.random() < 0.65 else 3
    others = [lab for lab in rng.sample(labs, 4) if lab != correct][:3]
    if rank is not None:
        others.insert(rank - 1, correct)
    top = others[:3]

    low = rng.random() < (P_LOW_WHEN_RIGHT if rank == 1 else P_LOW_WHEN_WRONG)
    c1 = round(rng.uniform(0.35, LOW_CONFIDENCE) if low else rng.uniform(LOW_CONFIDENCE, 0.995), 4)
    if low and c1 >= LOW_CONFIDENCE:
        c1 = LOW_CONFIDENCE - 0.0001
    rest = 1.0 - c1
    c2 = round(min(rest * rng.uniform(0.35, 0.85), c1 * 0.9), 4)
    c3 = round(min((rest - c2) * rng.uniform(0.3, 0.9), c2 * 0.9), 4)
    c3 = max(c3, 0.0001)
    c2 = max(c2, c3 + 0.0001)
    preds = ((top[0], c1), (top[1], c2), (top[2], c3))

    result = "ok" if rank == 1 else ("ok" if rng.random() < P_OK_WHEN_WRONG else "ko")
    u = rng.random()
    if u < P_NO_RESULT:
        result = None
    elif u < P_NO_RESULT + P_NO_THIRD:
        preds = preds[:2]
        if rank == 3:
            rank = None
    return Record(tx, dep, device, ref, ts, result, preds, rank)
