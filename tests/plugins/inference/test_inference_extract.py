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


# -- raw pages parsed with pyarrow.json: the same batch as the dict path ------------------------
def _body(hits: list[dict], **top) -> bytes:
    import orjson

    response = {"pit_id": "p2", "timed_out": False, "_shards": {"total": 1, "failed": 0}, **top}
    response["hits"] = {"hits": [{**hit, "_score": None, "sort": [i, 3]} for i, hit in enumerate(hits)]}
    return orjson.dumps(response)


def test_the_arrow_path_equals_the_dict_path(mapping):
    from dataset_ops.inference.extract import _arrow_page, _response_schema

    hits = [_hit(i) for i in range(30)] + [_hit(30, result=None, pred_label_3=None, pred_conf_3=None)]
    hits.append({"_index": "inferences-2026.11", "_id": "empty"})  # no _source at all
    hits[3]["_source"]["extra"] = {"nested": [1, 2]}  # unmapped fields are ignored
    hits[4]["_source"]["pred_conf_1"] = 1  # an integer confidence is a float
    arrow_missing, dict_missing = {}, {}
    page = _arrow_page(
        _body(hits), _response_schema(mapping, record_schema()), mapping, record_schema(), arrow_missing
    )
    expected = _page_batch(hits, mapping, record_schema(), dict_missing)
    assert page.batch.equals(expected) and page.hits == 32 and page.complete
    assert page.search_after == [31, 3] and page.pit_id == "p2"
    assert arrow_missing == dict_missing and arrow_missing["transaction_id"] == 1


def test_the_arrow_path_gives_up_on_a_bad_value_and_reports_incomplete_pages(mapping):
    from dataset_ops.inference.extract import _arrow_page, _response_schema

    schema = _response_schema(mapping, record_schema())
    bad = [_hit(0), _hit(1, device_id="shelf-3")]
    assert _arrow_page(_body(bad), schema, mapping, record_schema(), {}) is None
    failed = _arrow_page(_body([_hit(0)], _shards={"failed": 1}), schema, mapping, record_schema(), {})
    assert failed.complete is False


class _RawPages:
    """An Elasticsearch client stand-in whose search answers are raw bytes, as the client
    built with search_serializers() returns them for large pages."""

    def __init__(self, pages: list[bytes]):
        self.pages, self.searches = list(pages), []

    def open_point_in_time(self, **kwargs):
        return {"id": "p1"}

    def search(self, **kwargs):
        from types import SimpleNamespace

        self.searches.append(kwargs)
        return SimpleNamespace(body=self.pages.pop(0))

    def close_point_in_time(self, **kwargs):
        return {}


def _extract(tmp_path, mapping, pages, page_size):
    from dataclasses import replace
    from datetime import UTC, datetime

    from dataset_ops.inference.extract import extract_records

    es = _RawPages(pages)
    since, until = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    out = tmp_path / "records.parquet"
    summary = extract_records(es, replace(mapping, page_size=page_size), 7, since, until, out)
    return es, summary, out


def test_raw_pages_are_extracted_and_a_bad_value_is_named(tmp_path, mapping):
    import pyarrow.parquet as pq

    pages = [_body([_hit(i) for i in range(0, 2)]), _body([_hit(2)])]
    es, summary, out = _extract(tmp_path, mapping, pages, page_size=2)
    assert summary["records"] == 3 and summary["pages"] == 2 and len(es.searches) == 2  # short page: done
    assert es.searches[1]["search_after"] == [1, 3] and es.searches[1]["pit"]["id"] == "p2"
    assert pq.read_table(out).column("transaction_id").to_pylist() == ["t0", "t1", "t2"]

    pages = [_body([_hit(0), _hit(1, device_id="shelf-3")])]
    with pytest.raises(ExtractError, match=r"record inferences-2026.11/t1: field 'device_id' = 'shelf-3'"):
        _extract(tmp_path, mapping, pages, page_size=5)
    assert not list(tmp_path.glob("*.partial"))

    pages = [_body([_hit(0)], timed_out=True)]
    with pytest.raises(ExtractError, match=r"page 1 incomplete \(timed_out=True"):
        _extract(tmp_path, mapping, pages, page_size=5)
