"""The inference test world and the servers holding it (``helpers.inference_fixtures``).

The figures the workflow's tests will compute must be there: counts, the deliberate
inconsistencies, Elasticsearch holding every document and a point-in-time + ``search_after``
read returning each window record exactly once, MySQL rows readable through the provider hook,
images on S3 that decode.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

from helpers.inference_data import (
    DECOY_INDEX,
    LOW_CONFIDENCE,
    REPO,
    UNKNOWN_REFERENCES,
    World,
    image_colour,
    make_world,
    schema_statements,
)
from helpers.inference_fixtures import TIMINGS

SORT = [{"@timestamp": "asc"}, {"_shard_doc": "asc"}]
KEY = re.compile(r"deployment=(\d+)/device=(\d+)/(\d{4})/(\d{2})/(\d{2})/([0-9a-f-]{36})\.jpg")


def _iso(dt) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _window_query(world: World, deployment_id: int, since, until) -> dict:
    return {
        "bool": {
            "filter": [
                {"term": {"deployment_id": deployment_id}},
                {"range": {"@timestamp": {"gte": _iso(since), "lt": _iso(until)}}},
            ]
        }
    }


def _pit_read(es, index: str, query: dict, page_size: int, source) -> tuple[list[dict], int]:
    """All hits of ``query`` through a point in time and search_after; (hits, requests)."""
    pit = es.open_point_in_time(index=index, keep_alive="2m")["id"]
    hits, after, requests = [], None, 0
    try:
        while True:
            kwargs = {"search_after": after} if after is not None else {}
            resp = es.search(
                query=query,
                sort=SORT,
                size=page_size,
                pit={"id": pit, "keep_alive": "2m"},
                source_includes=source,
                track_total_hits=False,
                **kwargs,
            )
            requests += 1
            page = resp["hits"]["hits"]
            if not page:
                return hits, requests
            hits += page
            after = page[-1]["sort"]
            pit = resp.get("pit_id", pit)
    finally:
        es.close_point_in_time(id=pit)


# --- the world, in pure Python ----------------------------------------------------------------
def test_the_world_is_deterministic():
    a, b = make_world(n_records=2000), make_world(n_records=2000)
    assert [r.document() for r in a.records] == [r.document() for r in b.records]
    assert a.mysql_statements() == b.mysql_statements()
    assert a.missing_images == b.missing_images and a.review_references == b.review_references
    key = a.review_candidates[0].image_key
    assert a.image_bytes(key) == b.image_bytes(key)
    other = make_world(seed=1, n_records=2000)
    assert [r.transaction_id for r in other.records] != [r.transaction_id for r in a.records]


def test_reference_data_has_the_promised_rows(inference_world):
    w = inference_world
    assert [m.id for m in w.models] == [1, 2] and w.model_for(7).id == 1 and w.model_for(8).id == 2
    assert {d.id: d.model_id for d in w.deployments} == {7: 1, 8: 2}
    assert len(w.references) == 60 and sum(not r.active for r in w.references) == 5
    assert len({r.code for r in w.references}) == 60
    labels = w.labels_for(7)
    assert len(labels) == 50 == w.model_for(7).num_classes
    assert len(w.labels_without_references()) == 3
    refs = [lab.reference_id for lab in labels if lab.reference_id is not None]
    assert len(refs) == len(set(refs)) == 47  # one label per reference: "right" is unambiguous
    assert any(not w.reference_by_id[r].active for r in refs)  # inactive references still labelled
    assert len(w.devices_for(7)) == 12 and len(w.devices_for(8)) == 3
    assert w.devices_without_data(7, w.window_start, w.now) == [11, 12]
    assert w.devices_without_data(7) == [11, 12]  # no records at all, not just in the window


def test_records_have_the_promised_properties(inference_world):
    w = inference_world
    window = w.window_records
    assert len(window) == 30_000
    assert len(w.records_for(7, until=w.window_start)) == 200
    assert len(w.records_for(8)) == 300 and len(w.records) == 30_500
    assert len({r.transaction_id for r in w.records}) == len(w.records)
    assert w.records == sorted(w.records, key=lambda r: (r.timestamp, r.transaction_id))
    # the window's edges: one record exactly on its start, one 1 ms before it
    assert window[0].timestamp == w.window_start
    assert w.records_for(7, until=w.window_start)[-1].timestamp == w.window_start - timedelta(milliseconds=1)
    assert all(r.timestamp < w.now for r in w.records)
    # timestamps shared by several records: @timestamp alone is no total order
    assert max(Counter(r.timestamp for r in window).values()) >= 3

    n = len(window)
    assert 0.78 <= sum(r.top1_right for r in window) / n <= 0.82
    assert 0.91 <= sum(r.right_in_top3 for r in window) / n <= 0.95
    assert 0.13 <= sum(r.low_confidence for r in window) / n <= 0.17
    unknown = w.unknown_references(7, w.window_start, w.now)
    assert set(unknown) == set(UNKNOWN_REFERENCES) and 0.008 <= sum(unknown.values()) / n <= 0.015
    assert w.unknown_references(8) == {}
    assert 40 <= sum(r.result is None for r in window) <= 110
    assert 40 <= sum(len(r.preds) == 2 for r in window) <= 110
    ok_wrong = sum(r.result == "ok" and not r.top1_right for r in window)
    assert all(r.result in ("ok", None) for r in window if r.top1_right) and ok_wrong > 100  # noise

    label_ref = w.label_reference(7)
    for r in w.records:
        labels = [label for label, _ in r.preds]
        confs = [conf for _, conf in r.preds]
        assert len(set(labels)) == len(labels) and all(0 < c <= 1 for c in confs)
        assert confs == sorted(confs, reverse=True) and len(set(confs)) == len(confs)
        assert sum(confs) <= 1.0001
        assert set(labels) <= set(w.label_reference(r.deployment_id))
        ranks = [
            k for k, label in enumerate(labels, 1) if w.label_by_id[label].reference_id == r.reference_id
        ]
        assert r.correct_rank == (ranks[0] if ranks else None)
        assert r.low_confidence == (r.top1_conf < LOW_CONFIDENCE)
        m = KEY.fullmatch(r.image_key)
        assert m and (int(m[1]), int(m[2]), m[6]) == (r.deployment_id, r.device_id, r.transaction_id)
        assert r.index == f"inferences-{m[3]}.{m[4]}"
    assert len(label_ref) == 50


def test_documents_use_the_mapping_field_names(inference_world):
    docs = list(inference_world.es_documents(7))
    assert len(docs) == 30_200
    full = {
        "deployment_id", "device_id", "reference_id", "result", "@timestamp", "image_key", "transaction_id",
        "pred_label_1", "pred_conf_1", "pred_label_2", "pred_conf_2", "pred_label_3", "pred_conf_3",
    }  # fmt: skip
    shapes = Counter(frozenset(full - set(d)) for d in docs)
    assert set(shapes) == {frozenset(), frozenset({"result"}), frozenset({"pred_label_3", "pred_conf_3"})}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", d["@timestamp"]) for d in docs)


def test_review_candidates_and_missing_images(inference_world):
    w = inference_world
    cands = w.review_candidates
    assert 500 <= len(cands) <= 1200
    assert UNKNOWN_REFERENCES[1] in w.review_references and len(w.review_devices) == 1
    assert set(w.missing_images) <= {r.image_key for r in cands} and len(w.missing_images) == 10
    assert len(w.uploaded_image_keys()) == len(cands) - 10


def test_image_bytes_are_small_real_jpegs(inference_world):
    import cv2
    import numpy as np

    rec = inference_world.review_candidates[0]
    data = inference_world.image_bytes(rec.image_key)
    assert data[:3] == b"\xff\xd8\xff" and len(data) < 2000
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (32, 32, 3)
    assert np.abs(img.reshape(-1, 3).mean(axis=0) - image_colour(rec.reference_id)).max() < 4


def test_mysql_statements_are_the_schema_then_inserts(inference_world):
    stmts = inference_world.mysql_statements()
    assert stmts[:5] == schema_statements() and len(stmts) == 10
    assert all(s.startswith("CREATE TABLE") for s in stmts[:5])
    assert [s.split()[2] for s in stmts[5:]] == [
        "models",
        "deployments",
        "product_references",
        "labels",
        "devices",
    ]


# --- MySQL -------------------------------------------------------------------------------------
def test_mysql_holds_the_reference_data_through_the_provider(inference_env):
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    w = inference_env.world
    hook = MySqlHook(mysql_conn_id="inference_mysql")
    counts = {
        t: hook.get_first(f"SELECT COUNT(*) FROM {t}")[0]
        for t in ("models", "deployments", "product_references", "labels", "devices")
    }
    assert counts == {"models": 2, "deployments": 2, "product_references": 60, "labels": 70, "devices": 15}

    def query(name):
        return hook.get_records(
            (REPO / "include/inference/sql" / f"{name}.sql").read_text(), {"deployment_id": 7}
        )

    model = query("model")
    assert len(model) == 1 and model[0][:4] == (7, "Rhone-Alpes shops", 1, "shelf-vision")
    labels = query("labels")
    assert [(lid, ref) for lid, _, ref in labels] == [(lab.id, lab.reference_id) for lab in w.labels_for(7)]
    assert sum(ref is None for _, _, ref in labels) == 3
    refs = query("references")
    assert [(r[0], r[1], r[2]) for r in refs] == [(r.id, r.code, r.name) for r in w.references]
    assert any("'" in r[2] for r in refs) and any("è" in r[2] for r in refs)  # quotes and accents intact
    devices = query("devices")
    assert [d[0] for d in devices] == list(range(1, 13)) and devices[-1][4] == 0


# --- Elasticsearch -----------------------------------------------------------------------------
def test_es_holds_every_document(inference_es, inference_world):
    w = inference_world
    assert inference_es.doc_count == len(w.records) == 30_500
    with inference_es.client() as es:
        per_index = {ix: es.count(index=ix)["count"] for ix in inference_es.indices}
        assert per_index == dict(Counter(r.index for r in w.records))
        assert len(per_index) == 3  # the pattern spans the months
        assert es.count(index=DECOY_INDEX)["count"] == len(w.decoy_transactions) == 25
        assert es.count(index="inferences-*", query={"term": {"deployment_id": 8}})["count"] == 300
        missing = es.count(
            index="inferences-*", query={"bool": {"must_not": {"exists": {"field": "result"}}}}
        )
        assert missing["count"] == sum(r.result is None for r in w.records)


def test_pit_search_after_reads_the_window_exactly_once(inference_es, inference_world):
    w = inference_world
    fields = ["transaction_id", "@timestamp", "device_id", "reference_id", "result", "pred_label_3"]
    with inference_es.client() as es:
        hits, requests = _pit_read(
            es, inference_es.index_pattern, _window_query(w, 7, w.window_start, w.now), 5000, fields
        )
    txs = [h["_source"]["transaction_id"] for h in hits]
    assert len(txs) == len(set(txs)) == 30_000 and requests == 7
    assert set(txs) == {r.transaction_id for r in w.window_records}  # no decoy, no deployment 8, no old
    assert [h["_source"]["@timestamp"] for h in hits] == [r.iso_timestamp for r in w.window_records]
    assert all(set(h["_source"]) <= set(fields) for h in hits)  # _source includes honoured
    by_tx = w.record_by_transaction
    assert sum("result" not in h["_source"] for h in hits) == sum(r.result is None for r in w.window_records)
    assert all(h["_source"]["device_id"] == by_tx[h["_source"]["transaction_id"]].device_id for h in hits)


def test_pit_pages_split_inside_groups_of_equal_timestamps(inference_es, inference_world):
    """Pages of 1 and 2 hits across records sharing a timestamp: the _shard_doc tiebreaker makes
    the order total, so nothing is skipped or repeated."""
    w = inference_world
    shared = Counter(r.timestamp for r in w.window_records).most_common(1)[0][0]
    since, until = shared - timedelta(minutes=5), shared + timedelta(minutes=5)
    expected = [r.transaction_id for r in w.records_for(7, since, until)]
    assert 4 <= len(expected) < 30  # noida answers a search in ~0.2 s whatever its size
    with inference_es.client() as es:
        for size in (1, 3):
            hits, _ = _pit_read(
                es, "inferences-*", _window_query(w, 7, since, until), size, ["transaction_id"]
            )
            txs = [h["_source"]["transaction_id"] for h in hits]
            assert len(txs) == len(set(txs)) and set(txs) == set(expected)


def test_es_connection_from_the_environment(inference_env):
    from airflow.providers.elasticsearch.hooks.elasticsearch import ElasticsearchPythonHook
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection("inference_es")
    assert (conn.conn_type, conn.host, conn.port, conn.schema) == (
        "elasticsearch", "127.0.0.1", inference_env.es.port, "http",
    )  # fmt: skip
    es = ElasticsearchPythonHook(hosts=[f"{conn.schema}://{conn.host}:{conn.port}"]).get_conn
    assert es.info()["version"]["number"] == "8.15.3"
    assert es.count(index="inferences-*")["count"] == 30_500


# --- S3 ----------------------------------------------------------------------------------------
def test_images_are_on_s3_except_the_missing_ones(inference_env):
    import cv2
    import numpy as np
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Variable

    w = inference_env.world
    root = Variable.get("inference_images_root")
    assert root == inference_env.images_root == f"s3://{inference_env.bucket}/images/"
    hook = S3Hook(aws_conn_id="aws_default")
    keys = set(hook.list_keys(inference_env.bucket, prefix="images/"))
    assert keys == {"images/" + k for k in w.uploaded_image_keys()}
    assert not keys & {"images/" + k for k in w.missing_images}
    for rec in w.review_candidates[:5]:
        if rec.image_key in w.missing_images:
            continue
        obj = hook.get_key("images/" + rec.image_key, inference_env.bucket)
        data = obj.get()["Body"].read()
        assert data == w.image_bytes(rec.image_key)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (32, 32, 3)
    assert not hook.check_for_key("images/" + w.missing_images[0], inference_env.bucket)


def test_timings_were_recorded(inference_env):
    """Run with ``-s`` to see them."""
    print("inference fixture timings (s):", {k: round(v, 2) for k, v in TIMINGS.items()})
    assert {"world", "es_start", "es_bulk", "mysql_load", "s3_upload"} <= set(TIMINGS)
