"""Figures of a deployment's inference records: per reference, per device, labels, model data,
consistency checks, and the KPIs of the report's ``Resumen`` sheet.

Definitions (one record = one transaction; ``label_k`` are the model's top-3 predicted labels,
mapped to references through MySQL ``labels.reference_id``):

* ``ok``: the transaction's ``result`` is one of the mapping's ``ok_results`` (a record without
  ``result`` counts in no ok percentage);
* ``model_ok`` / top-1 hit: the top-1 label's reference is the record's reference; top-2 and
  top-3 hits: the reference is among the first 2 or 3 labels' references;
* ``appearances`` of a reference: records whose top-3 labels propose it (right or wrong);
* confidence: of the top-1 label, 0..1; ``below_threshold``: top-1 confidence < ``confidence``;
  the confidence buckets are cut at 0.50, the threshold and 0.90 (:func:`bucket_edges`).

Percentages are fractions 0..1 (the workbook formats them). :class:`Analyser` computes
everything in one pass over Arrow record batches of
:func:`dataset_ops.inference.extract.record_schema` (``pyarrow.compute`` group-bys per batch,
merged into per-reference, per-device and per-label sums), so memory grows with the number of
references, devices and labels, not records; the report feeds it the batches it writes to the
``Datos_Elasticsearch`` sheet (:func:`sheet_batches`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Confidence bucket edges besides the threshold.
_LOW = 0.5
_HIGH = 0.9
#: Sums kept per reference, device and label (see :meth:`Analyser.add`).
_SUMS = ("n", "ok", "ok_n", "model_ok", "top2", "top3", "conf", "conf_n", "below")
#: The columns of :meth:`Analyser._rates`, in order.
_RATE_COLUMNS = (
    "transactions", "ok_pct", "model_ok_pct", "top1_hit_rate", "top2_hit_rate", "top3_hit_rate",
    "confidence_mean", "below_threshold",
)  # fmt: skip


@dataclass
class Table:
    """A small table of the report: column names and rows (tuples; None is a blank cell)."""

    columns: list[str]
    rows: list[tuple]

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass
class Analysis:
    """Everything the report shows, as small tables (sizes: references x ~20, devices x ~20)."""

    kpis: list[tuple[str, object, str]]
    chart: dict
    references: Table
    devices: Table
    labels: Table
    model: list[tuple[str, object]]
    consistency: Table
    figures: dict = field(default_factory=dict)


def bucket_edges(confidence: float) -> list[float]:
    """The confidence bucket edges: 0.50, the threshold and 0.90, sorted, without repeats
    (a threshold of 0.50 or 0.90 gives three buckets)."""
    return sorted({_LOW, round(float(confidence), 6), _HIGH})


def bucket_names(confidence: float) -> list[str]:
    """Bucket labels, e.g. ``<0.50``, ``0.50-0.78``, ``0.78-0.90``, ``>=0.90`` (lower edge included)."""
    edges = bucket_edges(confidence)
    inner = [f"{a:.2f}-{b:.2f}" for a, b in zip(edges, edges[1:], strict=False)]
    return [f"<{edges[0]:.2f}", *inner, f">={edges[-1]:.2f}"]


def label_references(labels: list[dict]) -> dict[int, int]:
    """``{label_id: reference_id}`` for the labels that name a reference."""
    return {int(r["label_id"]): int(r["reference_id"]) for r in labels if r.get("reference_id") is not None}


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


class Analyser:
    """The report's figures, accumulated batch by batch (see the module docstring).

    :param reference_data: the dict of :func:`dataset_ops.inference.extract.read_reference_data`.
    :param confidence: the threshold (0..1). :param min_appearances: references proposed fewer
        times are flagged. :param ok_results: the ``result`` values that count as ok.
    """

    def __init__(
        self,
        reference_data: dict[str, list[dict]],
        *,
        confidence: float,
        min_appearances: int,
        ok_results: frozenset[str],
    ):
        import pyarrow as pa

        self.reference_data = reference_data
        self.confidence = float(confidence)
        self.min_appearances = int(min_appearances)
        self.ok_results = pa.array(sorted(ok_results), pa.string())
        self.edges = bucket_edges(confidence)
        self.buckets = [f"b{i}" for i in range(len(self.edges) + 1)]
        label_refs = label_references(reference_data["labels"])
        self._label_keys = pa.array(list(label_refs), pa.int64())
        self._label_refs = pa.array(list(label_refs.values()), pa.int64())
        self.records = 0
        self.missing: Counter = Counter()
        self.totals: Counter = Counter()
        self.by_reference: dict[int, Counter] = {}
        self.by_device: dict[int, Counter] = {}
        self.device_references: dict[int, set] = {}
        self.device_seen: dict[int, list] = {}
        self.top1_by_label: dict[int, Counter] = {}
        self.appearances: Counter = Counter()
        self.predicted_labels: Counter = Counter()

    def add(self, batch) -> None:
        """Add a record batch of :func:`dataset_ops.inference.extract.record_schema`."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if batch.num_rows == 0:
            return
        self.records += batch.num_rows
        for name in RECORD_FIELDS:
            self.missing[name] += batch.column(name).null_count
        truth = batch.column("reference_id")
        refs = [
            pc.take(self._label_refs, pc.index_in(batch.column(f"label_{k}"), value_set=self._label_keys))
            for k in (1, 2, 3)
        ]
        hits = [pc.fill_null(pc.equal(ref, truth), False) for ref in refs]
        model_ok = hits[0]
        top2 = pc.or_(model_ok, hits[1])
        top3 = pc.or_(top2, hits[2])
        result = batch.column("result")
        ok = pc.if_else(
            pc.is_null(result),
            pa.scalar(None, pa.int64()),
            pc.is_in(result, value_set=self.ok_results).cast(pa.int64()),
        )
        conf = batch.column("conf_1")
        bucket = None
        for edge in self.edges:
            step = pc.greater_equal(conf, edge).cast(pa.int64())
            bucket = step if bucket is None else pc.add(bucket, step)
        columns = {
            "reference_id": truth,
            "device_id": batch.column("device_id"),
            "label_1": batch.column("label_1"),
            "timestamp": batch.column("timestamp"),
            "n": pa.array([1] * batch.num_rows, pa.int64()),
            "ok": ok,
            "ok_n": pc.is_valid(ok).cast(pa.int64()),
            "model_ok": model_ok.cast(pa.int64()),
            "top2": top2.cast(pa.int64()),
            "top3": top3.cast(pa.int64()),
            "conf": conf,
            "conf_n": pc.is_valid(conf).cast(pa.int64()),
            "below": pc.fill_null(pc.less(conf, self.confidence), False).cast(pa.int64()),
        }
        for i, name in enumerate(self.buckets):
            columns[name] = pc.fill_null(pc.equal(bucket, i), False).cast(pa.int64())
        table = pa.table(columns)
        sums = [*_SUMS, *self.buckets]
        for name in sums:
            self.totals[name] += pc.sum(table.column(name)).as_py() or 0
        self._merge(table, "reference_id", sums, self.by_reference)
        extra = [("reference_id", "distinct"), ("timestamp", "min"), ("timestamp", "max")]
        for key, row in self._merge(table, "device_id", sums, self.by_device, extra):
            self.device_references.setdefault(key, set()).update(
                v for v in row["reference_id_distinct"] if v is not None
            )
            seen = self.device_seen.setdefault(key, [None, None])
            low, high = row["timestamp_min"], row["timestamp_max"]
            if low is not None:
                seen[0] = low if seen[0] is None else min(seen[0], low)
                seen[1] = high if seen[1] is None else max(seen[1], high)
        self._merge(table, "label_1", ["n", "model_ok"], self.top1_by_label)
        for ref in refs:
            self.appearances.update(_value_counts(ref))
        for k in (1, 2, 3):
            self.predicted_labels.update(_value_counts(batch.column(f"label_{k}")))

    @staticmethod
    def _merge(table, key: str, sums: list[str], into: dict, extra=()) -> list[tuple[Any, dict]]:
        """Group ``table`` by ``key`` (null keys left out), add the sums into ``into[key]``;
        return the groups' rows (with the ``extra`` aggregates) for the caller."""
        grouped = table.group_by(key).aggregate([(name, "sum") for name in sums] + list(extra)).to_pylist()
        rows = []
        for row in grouped:
            value = row[key]
            if value is None:
                continue
            acc = into.setdefault(value, Counter())
            for name in sums:
                acc[name] += row[f"{name}_sum"] or 0
            rows.append((value, row))
        return rows

    # -- the tables ---------------------------------------------------------------------------------

    def _rates(self, acc: Counter | None) -> list:
        """transactions, ok_pct, model_ok_pct, top1..3 hit rates, confidence_mean, below_threshold."""
        if acc is None:
            return [0, None, None, None, None, None, None, 0]
        n = acc["n"]
        return [
            n,
            _ratio(acc["ok"], acc["ok_n"]),
            _ratio(acc["model_ok"], n),
            _ratio(acc["model_ok"], n),
            _ratio(acc["top2"], n),
            _ratio(acc["top3"], n),
            _ratio(acc["conf"], acc["conf_n"]),
            acc["below"],
        ]

    def _bucket_shares(self, acc: Counter | None) -> list:
        if acc is None:
            return [None] * len(self.buckets)
        return [acc[name] / acc["conf_n"] if acc["conf_n"] else 0.0 for name in self.buckets]

    def result(self, window: tuple[str, str] | None = None) -> Analysis:
        """The report's tables, KPIs, chart and figures.

        Steps: the reference, device and label tables, the consistency checks over them, then
        the figures, KPIs and confidence chart.

        :param window: (from, to) ISO dates for the KPIs.
        :raises ValueError: no records were added.
        """
        if not self.records:
            raise ValueError("no records to analyse")
        refs_db = {row["reference_id"]: row for row in self.reference_data["references"]}
        devs_db = {row["device_id"]: row for row in self.reference_data["devices"]}
        bucket_columns = [f"conf {name}" for name in bucket_names(self.confidence)]
        references = self._reference_table(refs_db, bucket_columns)
        devices = self._device_table(devs_db, bucket_columns)
        labels = self._label_table(refs_db)
        consistency, unknown_refs = self._consistency(refs_db, references, devices)
        figures = self._figures(devices, consistency, unknown_refs)
        model_row = self.reference_data["model"][0]
        kpis = self._kpis(model_row, figures, window)
        model = list(model_row.items())
        return Analysis(kpis, self._chart(), references, devices, labels, model, consistency, figures)

    def _reference_table(self, refs_db: dict[int, dict], bucket_columns: list[str]) -> Table:
        """One row per reference with records, most transactions first (ties: lowest id): MySQL's
        code, name and category, :meth:`_rates` (appearances after the transactions), the
        confidence bucket shares and the ``min_appearances`` / known-in-MySQL flags."""
        rows = []
        for ref_id in sorted(self.by_reference, key=lambda r: (-self.by_reference[r]["n"], r)):
            acc, known = self.by_reference[ref_id], refs_db.get(ref_id, {})
            rate = self._rates(acc)
            appearances = self.appearances.get(ref_id, 0)
            rows.append(
                (
                    ref_id, known.get("reference_code"), known.get("reference_name"), known.get("category"),
                    rate[0], appearances, *rate[1:], *self._bucket_shares(acc),
                    appearances >= self.min_appearances, ref_id in refs_db, "",
                )
            )  # fmt: skip
        return Table(
            [
                "reference_id", "reference_code", "reference_name", "category", "transactions", "appearances",
                *_RATE_COLUMNS[1:], *bucket_columns, "meets_min_appearances", "known_in_mysql",
                "revisar_imagenes",
            ],
            rows,
        )  # fmt: skip

    def _device_table(self, devs_db: dict[int, dict], bucket_columns: list[str]) -> Table:
        """One row per device of MySQL or with records, by id (MySQL devices without records
        have 0 transactions): :meth:`_rates`, bucket shares, distinct references, first and last
        record time."""
        rows = []
        for device_id in sorted(set(devs_db) | set(self.by_device)):
            acc, known = self.by_device.get(device_id), devs_db.get(device_id, {})
            seen = self.device_seen.get(device_id, [None, None])
            refs = self.device_references.get(device_id)
            rows.append(
                (
                    device_id, known.get("device_code"), known.get("shop"), known.get("location"),
                    *self._rates(acc), *self._bucket_shares(acc),
                    len(refs) if acc is not None else None, seen[0], seen[1], "",
                )
            )  # fmt: skip
        return Table(
            [
                "device_id", "device_code", "shop", "location", *_RATE_COLUMNS, *bucket_columns,
                "references", "first_seen", "last_seen", "revisar_imagenes",
            ],
            rows,
        )  # fmt: skip

    def _label_table(self, refs_db: dict[int, dict]) -> Table:
        """One row per label of the model, in MySQL's order: its MySQL columns, top-1
        predictions, correct ones, precision (0..1) and its reference's name."""
        data_labels = self.reference_data["labels"]
        label_extra = [c for c in (data_labels[0] if data_labels else {}) if c != "label_id"] or [
            "label_name",
            "reference_id",
        ]
        rows = []
        for row in data_labels:
            acc = self.top1_by_label.get(row["label_id"], Counter())
            predicted, correct = acc["n"], acc["model_ok"]
            reference = refs_db.get(row.get("reference_id"), {})
            rows.append(
                (
                    row["label_id"],
                    *(row.get(c) for c in label_extra),
                    predicted,
                    correct,
                    _ratio(correct, predicted),
                    reference.get("reference_name"),
                )
            )
        return Table(
            ["label_id", *label_extra, "predicted_top1", "top1_correct", "precision", "reference_name"],
            rows,
        )

    def _consistency(self, refs_db: dict[int, dict], references: Table, devices: Table) -> tuple[Table, int]:
        """The consistency checks (``check``, ``item``, ``detail``, ``count``) and the records
        of references unknown to MySQL. Order: unknown references (most records first), labels
        without reference, unknown predicted labels, devices without data, records below the
        threshold, fields missing in records, references below ``min_appearances``."""
        checks: list[tuple[str, str, str, int]] = []
        counts = sorted(
            ((acc["n"], ref) for ref, acc in self.by_reference.items()), key=lambda x: (-x[0], x[1])
        )
        unknown_refs = 0
        for n, ref_id in counts:
            if ref_id not in refs_db:
                unknown_refs += n
                checks.append(("reference in Elasticsearch unknown to MySQL", str(ref_id), f"{n} records", n))
        data_labels = self.reference_data["labels"]
        for row in data_labels:
            if row.get("reference_id") is None:
                checks.append(("label without reference", str(row["label_id"]), str(row["label_name"]), 1))
        known_labels = {row["label_id"] for row in data_labels}
        unknown_labels = [
            (n, label) for label, n in self.predicted_labels.items() if label not in known_labels
        ]
        for n, label_id in sorted(unknown_labels, key=lambda x: (-x[0], x[1])):
            checks.append(("predicted label unknown to the model", str(label_id), f"{n} predictions", n))
        for row in devices.rows:
            if row[4] == 0:
                checks.append(("device without data", str(row[0]), row[1] or "", 0))
        below = self.totals["below"]
        checks.append(
            (
                "records below the confidence threshold",
                f"< {self.confidence:.2f}",
                f"{below / self.records:.1%}",
                below,
            )
        )
        for column in RECORD_FIELDS:
            n_missing = self.missing[column]
            if n_missing:
                checks.append(
                    ("field missing in records", column, f"{n_missing / self.records:.2%}", n_missing)
                )
        for row in references.records():
            if not row["meets_min_appearances"]:
                checks.append(
                    (
                        "reference below min_appearances",
                        str(row["reference_id"]),
                        f"{row['appearances']} < {self.min_appearances}",
                        int(row["appearances"]),
                    )
                )
        return Table(["check", "item", "detail", "count"], checks), unknown_refs

    def _figures(self, devices: Table, consistency: Table, unknown_refs: int) -> dict:
        """The headline numbers (counts; ``*_pct`` and ``*_rate`` as fractions 0..1)."""
        return {
            "records": self.records,
            "devices_with_data": sum(1 for row in devices.rows if row[4] > 0),
            "devices_total": len(devices.rows),
            "references_seen": len(self.by_reference),
            "ok_pct": _ratio(self.totals["ok"], self.totals["ok_n"]),
            "model_ok_pct": self.totals["model_ok"] / self.records,
            "top3_hit_rate": self.totals["top3"] / self.records,
            "below_threshold": self.totals["below"],
            "unknown_reference_records": unknown_refs,
            "consistency_issues": len(consistency.rows),
        }

    def _kpis(
        self, model_row: dict, figures: dict, window: tuple[str, str] | None
    ) -> list[tuple[str, object, str]]:
        """The ``Resumen`` sheet's KPIs: ``(name, value, format)``, format ``text``, ``int`` or
        ``percent``; the window's dates only when given."""
        kpis: list[tuple[str, object, str]] = [
            (
                "Deployment",
                f"{model_row['deployment_id']} {model_row.get('deployment_name') or ''}".strip(),
                "text",
            ),
            ("Model", f"{model_row.get('model_name')} {model_row.get('model_version')}", "text"),
        ]
        if window:
            kpis += [("From (UTC)", window[0], "text"), ("To (UTC)", window[1], "text")]
        devices = f"{figures['devices_with_data']} / {figures['devices_total']}"
        kpis += [
            ("Records", figures["records"], "int"),
            ("Devices with data / in MySQL", devices, "text"),
            ("References seen", figures["references_seen"], "int"),
            ("OK transactions", figures["ok_pct"], "percent"),
            ("Model OK (top-1)", figures["model_ok_pct"], "percent"),
            ("Top-3 hit rate", figures["top3_hit_rate"], "percent"),
            (f"Below confidence {self.confidence:.2f}", figures["below_threshold"] / self.records, "percent"),
            ("Records of references unknown to MySQL", figures["unknown_reference_records"], "int"),
            ("Consistency findings", figures["consistency_issues"], "int"),
        ]
        return kpis

    def _chart(self) -> dict:
        """The top-1 confidence column chart: records per bucket (:func:`bucket_names`)."""
        return {
            "type": "column",
            "title": "Top-1 confidence",
            "categories": bucket_names(self.confidence),
            "values": [int(self.totals[name]) for name in self.buckets],
            "series_name": "records",
        }


def _value_counts(array) -> dict:
    """``{value: count}`` of an Arrow array's non-null values."""
    import pyarrow.compute as pc

    counts = pc.value_counts(array.drop_null() if array.null_count else array)
    return {item["values"].as_py(): item["counts"].as_py() for item in counts}


#: Record fields whose missing values are counted (Consistencia's "field missing in records").
RECORD_FIELDS = [
    "transaction_id", "device_id", "reference_id", "result", "timestamp",
    "label_1", "conf_1", "label_2", "conf_2", "label_3", "conf_3",
]  # fmt: skip


#: Columns of the ``Datos_Elasticsearch`` sheet, in order, with their kinds.
RECORD_COLUMNS = [
    ("transaction_id", "text"),
    ("timestamp", "datetime"),
    ("device_id", "int"),
    ("reference_id", "int"),
    ("result", "text"),
    ("label_1", "int"),
    ("conf_1", "float"),
    ("label_2", "int"),
    ("conf_2", "float"),
    ("label_3", "int"),
    ("conf_3", "float"),
    ("top1_reference_id", "int"),
    ("model_ok", "bool"),
    ("below_threshold", "bool"),
    ("image_key", "text"),
]


def sheet_batches(batches: Iterable, label_refs: dict[int, int], *, confidence: float) -> Iterator:
    """The ``Datos_Elasticsearch`` sheet's record batches (:data:`RECORD_COLUMNS`, in order) from
    record batches of :func:`dataset_ops.inference.extract.record_schema`, one at a time: the
    derived columns computed with ``pyarrow.compute`` (``top1_reference_id``: the top-1 label's
    reference, null when the label has none; ``model_ok``; ``below_threshold``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pa.array(list(label_refs), pa.int64())
    values = pa.array(list(label_refs.values()), pa.int64())
    for batch in batches:
        top1 = pc.take(values, pc.index_in(batch.column("label_1"), value_set=keys))
        derived = {
            "top1_reference_id": top1,
            "model_ok": pc.fill_null(pc.equal(top1, batch.column("reference_id")), False),
            "below_threshold": pc.fill_null(pc.less(batch.column("conf_1"), confidence), False),
        }
        yield pa.RecordBatch.from_arrays(
            [derived[name] if name in derived else batch.column(name) for name, _ in RECORD_COLUMNS],
            names=[name for name, _ in RECORD_COLUMNS],
        )
