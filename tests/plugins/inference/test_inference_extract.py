"""Pages of Elasticsearch hits to Arrow batches: the column-wise path gives exactly what the
value-by-value path gives, falls back to it for values Arrow does not take as they are, and a
bad value names its record and field."""

from __future__ import annotations

import pytest

from dataset_ops.inference.config import load_mapping
from dataset_ops.inference.extract import ExtractError, _page_batch, _page_batch_rows, record_schema


def _hit(i: int, **source) -> dict:
    base = {
        "transaction_id": f"t{i}",
        "deployment_id": 7,
        "device_id": 3,
        "reference_id": 12,
        "result": "ok",
        "@timestamp": f"2026-11-0{1 + i % 9}T10:00:00.123Z",
        "image_key": f"d/{i}.jpg",
        "pred_label_1": 101,
        "pred_conf_1": 0.91,
        "pred_label_2": 102,
        "pred_conf_2": 0.05,
        "pred_label_3": 103,
        "pred_conf_3": 0.01,
    }
    base.update(source)
    return {
        "_index": "inferences-2026.11",
        "_id": f"t{i}",
        "_source": {k: v for k, v in base.items() if v is not None},
    }


@pytest.fixture
def mapping():
    return load_mapping(7)


def test_the_column_path_equals_the_row_path(mapping):
    hits = [_hit(i) for i in range(20)] + [_hit(20, result=None, pred_label_3=None, pred_conf_3=None)]
    fast_missing, slow_missing = {}, {}
    fast = _page_batch(hits, mapping, record_schema(), fast_missing)
    slow = _page_batch_rows(hits, mapping, record_schema(), slow_missing)
    assert fast.equals(slow) and fast.num_rows == 21
    assert fast_missing == slow_missing == {"result": 1, "label_3": 1, "conf_3": 1}


def test_values_arrow_does_not_take_go_value_by_value(mapping):
    hits = [_hit(0, device_id="3", **{"@timestamp": 1762000000000}), _hit(1)]
    missing = {}
    batch = _page_batch(hits, mapping, record_schema(), missing)
    assert batch.column("device_id").to_pylist() == [3, 3]
    assert batch.column("timestamp")[0].as_py().year == 2025 and not missing


def test_a_bad_value_names_its_record_and_field(mapping):
    hits = [_hit(0), _hit(1, device_id="shelf-3")]
    with pytest.raises(ExtractError, match=r"record inferences-2026.11/t1: field 'device_id' = 'shelf-3'"):
        _page_batch(hits, mapping, record_schema(), {})
