"""The report's figures (Analyser) on a handful of records worked out by hand, fed in batches of
different sizes; and confidence thresholds at and beyond the fixed bucket edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from dataset_ops.inference.analysis import Analyser, bucket_names
from dataset_ops.inference.extract import record_schema

T0 = datetime(2026, 11, 1, tzinfo=UTC)
REFERENCE_DATA = {
    "model": [{"deployment_id": 7, "deployment_name": "shop", "model_name": "m", "model_version": "1"}],
    "references": [
        {"reference_id": 1, "reference_code": "R1", "reference_name": "one", "category": "c"},
        {"reference_id": 2, "reference_code": "R2", "reference_name": "two", "category": "c"},
    ],
    "labels": [
        {"label_id": 10, "label_name": "one", "reference_id": 1},
        {"label_id": 20, "label_name": "two", "reference_id": 2},
        {"label_id": 30, "label_name": "background", "reference_id": None},
    ],
    "devices": [
        {"device_id": 100, "device_code": "D100", "shop": "s", "location": "l"},
        {"device_id": 200, "device_code": "D200", "shop": "s", "location": "l"},
    ],
}
# (device, reference, result, label_1, conf_1, label_2, label_3)
RECORDS = [
    (100, 1, "ok", 10, 0.95, 20, 30),  # top-1 right, >= 0.90
    (100, 1, "ko", 20, 0.60, 10, 30),  # top-2 right, 0.50-0.78, below
    (100, 2, None, 20, 0.80, 10, 30),  # top-1 right, no result, 0.78-0.90
    (100, 3, "ok", 10, 0.40, 20, 99),  # reference unknown to MySQL, label 99 unknown, below
    (None, 1, "ok", 30, None, 10, 20),  # no device, no confidence, top-2 right
]


def _batch(rows, start: int = 0):
    """Records ``start``.. of RECORDS as one batch; record i is stamped T0 + i hours."""
    cols = {name: [] for name in record_schema().names}
    for i, (device, ref, result, l1, c1, l2, l3) in enumerate(rows, start=start):
        values = {
            "transaction_id": f"t{i}", "deployment_id": 7, "device_id": device, "reference_id": ref,
            "result": result, "timestamp": T0 + timedelta(hours=i), "image_key": "k",
            "label_1": l1, "conf_1": c1, "label_2": l2, "conf_2": 0.1, "label_3": l3, "conf_3": 0.05,
        }  # fmt: skip
        for name in cols:
            cols[name].append(values[name])
    return pa.RecordBatch.from_pydict(cols, schema=record_schema())


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_figures_worked_out_by_hand(batch_size):
    analyser = Analyser(REFERENCE_DATA, confidence=0.78, min_appearances=3, ok_results=frozenset({"ok"}))
    for start in range(0, len(RECORDS), batch_size):
        analyser.add(_batch(RECORDS[start : start + batch_size], start))
    result = analyser.result(("2026-10-02", "2026-11-01"))

    refs = {row["reference_id"]: row for row in result.references.records()}
    assert [row["reference_id"] for row in result.references.records()] == [1, 2, 3]  # most first
    one = refs[1]
    assert one["transactions"] == 3 and one["appearances"] == 5  # label 10 is in every top-3
    assert one["ok_pct"] == pytest.approx(2 / 3)  # ok, ko, ok
    assert one["model_ok_pct"] == pytest.approx(1 / 3) and one["top2_hit_rate"] == 1.0
    assert one["confidence_mean"] == pytest.approx((0.95 + 0.60) / 2) and one["below_threshold"] == 1
    assert [one[f"conf {n}"] for n in bucket_names(0.78)] == [0.0, 0.5, 0.0, 0.5]
    assert one["meets_min_appearances"] and one["known_in_mysql"] and one["reference_name"] == "one"
    assert refs[2]["ok_pct"] is None and refs[2]["model_ok_pct"] == 1.0
    assert refs[3]["known_in_mysql"] is False and refs[3]["reference_name"] is None

    devices = {row["device_id"]: row for row in result.devices.records()}
    assert list(devices) == [100, 200]
    assert devices[100]["transactions"] == 4 and devices[100]["references"] == 3
    assert devices[100]["first_seen"] == T0 and devices[100]["last_seen"] == T0 + timedelta(hours=3)
    assert devices[200]["transactions"] == 0 and devices[200]["ok_pct"] is None

    labels = {row["label_id"]: row for row in result.labels.records()}
    assert (labels[10]["predicted_top1"], labels[10]["top1_correct"]) == (2, 1)
    assert (labels[20]["predicted_top1"], labels[20]["top1_correct"]) == (2, 1)
    assert labels[30]["predicted_top1"] == 1 and labels[30]["precision"] == 0.0

    findings = {(row[0], row[1]): row[3] for row in result.consistency.rows}
    assert findings[("reference in Elasticsearch unknown to MySQL", "3")] == 1
    assert findings[("label without reference", "30")] == 1
    assert findings[("predicted label unknown to the model", "99")] == 1
    assert findings[("device without data", "200")] == 0
    assert findings[("records below the confidence threshold", "< 0.78")] == 2
    assert findings[("field missing in records", "device_id")] == 1
    assert findings[("field missing in records", "result")] == 1
    assert findings[("reference below min_appearances", "3")] == 0  # no label names reference 3
    assert ("reference below min_appearances", "2") not in findings  # label 20: in all 5 top-3s
    assert result.figures["records"] == 5 and result.figures["unknown_reference_records"] == 1
    assert result.figures["ok_pct"] == 0.75 and result.chart["values"] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("confidence", "names"),
    [
        (0.95, ["<0.50", "0.50-0.90", "0.90-0.95", ">=0.95"]),
        (0.30, ["<0.30", "0.30-0.50", "0.50-0.90", ">=0.90"]),
        (0.50, ["<0.50", "0.50-0.90", ">=0.90"]),
    ],
)
def test_thresholds_beyond_the_fixed_edges_give_sorted_buckets(confidence, names):
    assert bucket_names(confidence) == names
    analyser = Analyser(
        REFERENCE_DATA, confidence=confidence, min_appearances=0, ok_results=frozenset({"ok"})
    )
    analyser.add(_batch(RECORDS))
    result = analyser.result()
    assert result.chart["categories"] == names and sum(result.chart["values"]) == 4
    assert [f"conf {n}" for n in names] == [c for c in result.references.columns if c.startswith("conf ")]


def test_no_records_is_an_error():
    analyser = Analyser(REFERENCE_DATA, confidence=0.78, min_appearances=0, ok_results=frozenset({"ok"}))
    analyser.add(_batch([]))
    with pytest.raises(ValueError, match="no records"):
        analyser.result()
