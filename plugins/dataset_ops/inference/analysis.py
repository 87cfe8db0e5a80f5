"""Figures of a deployment's inference records: per reference, per device, labels, model data,
consistency checks, and the KPIs of the report's ``Resumen`` sheet.

Definitions (one record = one transaction; ``label_k`` are the model's top-3 predicted labels,
mapped to references through MySQL ``labels.reference_id``):

* ``ok``: the transaction's ``result`` is one of the mapping's ``ok_results`` (a record without
  ``result`` counts in no ok percentage);
* ``model_ok`` / top-1 hit: the top-1 label's reference is the record's reference; top-2 and
  top-3 hits: the reference is among the first 2 or 3 labels' references;
* ``appearances`` of a reference: records whose top-3 labels propose it (right or wrong);
* confidence: of the top-1 label, 0..1; ``below_threshold``: top-1 confidence < ``confidence``.

Percentages are fractions 0..1 (the workbook formats them). The records are read from the
Parquet file of :func:`dataset_ops.inference.extract.extract_records` with the needed columns
only; the per-record rows of the ``Datos_Elasticsearch`` sheet are streamed batch by batch by
:func:`sheet_batches` (from the file or from batches as they are extracted).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: Upper edges of the confidence buckets below and above the threshold.
_LOW = 0.5
_HIGH = 0.9


@dataclass
class Analysis:
    """Everything the report shows, as small tables (sizes: references x ~20, devices x ~20)."""

    kpis: list[tuple[str, object, str]]
    chart: dict
    references: pd.DataFrame
    devices: pd.DataFrame
    labels: pd.DataFrame
    model: list[tuple[str, object]]
    consistency: pd.DataFrame
    figures: dict = field(default_factory=dict)


def bucket_names(confidence: float) -> list[str]:
    """Confidence bucket labels: ``<0.50``, ``0.50-<thr>``, ``<thr>-0.90``, ``>=0.90``."""
    return [f"<{_LOW:.2f}", f"{_LOW:.2f}-{confidence:.2f}", f"{confidence:.2f}-{_HIGH:.2f}", f">={_HIGH:.2f}"]


def _bucket(conf: pd.Series, confidence: float) -> pd.Series:
    edges = [-np.inf, _LOW, confidence, _HIGH, np.inf]
    return pd.cut(conf, bins=edges, right=False, labels=bucket_names(confidence))


def label_references(labels: list[dict]) -> dict[int, int]:
    """``{label_id: reference_id}`` for the labels that name a reference."""
    return {int(r["label_id"]): int(r["reference_id"]) for r in labels if r.get("reference_id") is not None}


def _derive(df: pd.DataFrame, label_refs: dict[int, int], ok_results: frozenset[str], confidence: float):
    refs = [df[f"label_{k}"].map(label_refs) for k in (1, 2, 3)]
    truth = df["reference_id"]
    df["top1_reference_id"] = refs[0].astype("Int64")
    df["model_ok"] = refs[0].eq(truth).fillna(False).astype(bool)
    df["top2_hit"] = df["model_ok"] | refs[1].eq(truth).fillna(False)
    df["top3_hit"] = df["top2_hit"] | refs[2].eq(truth).fillna(False)
    ok = df["result"].isin(list(ok_results)).astype(float)
    df["ok"] = ok.where(df["result"].notna())
    df["below_threshold"] = df["conf_1"].lt(confidence) & df["conf_1"].notna()
    return df


def _rate_table(df: pd.DataFrame, key: str, confidence: float) -> pd.DataFrame:
    grouped = df.groupby(key, dropna=False)
    table = pd.DataFrame(
        {
            "transactions": grouped.size(),
            "ok_pct": grouped["ok"].mean(),
            "model_ok_pct": grouped["model_ok"].mean(),
            "top1_hit_rate": grouped["model_ok"].mean(),
            "top2_hit_rate": grouped["top2_hit"].mean(),
            "top3_hit_rate": grouped["top3_hit"].mean(),
            "confidence_mean": grouped["conf_1"].mean(),
            "below_threshold": grouped["below_threshold"].sum().astype("int64"),
        }
    )
    buckets = pd.crosstab(df[key], _bucket(df["conf_1"], confidence), normalize="index")
    buckets = buckets.reindex(columns=bucket_names(confidence), fill_value=0.0)
    buckets.columns = [f"conf {name}" for name in buckets.columns]
    return table.join(buckets, how="left").fillna({c: 0.0 for c in buckets.columns})


def analyse(
    records: Path,
    reference_data: dict[str, list[dict]],
    *,
    confidence: float,
    min_appearances: int,
    ok_results: frozenset[str],
    window: tuple[str, str] | None = None,
) -> Analysis:
    """The report's figures (see the module docstring).

    :param records: the Parquet file of the records. :param reference_data: the dict of
        :func:`dataset_ops.inference.extract.read_reference_data`.
    :param confidence: the threshold (0..1). :param min_appearances: references proposed fewer
        times are flagged. :param window: (from, to) ISO dates for the KPIs.
    :raises ValueError: no records.
    """
    import pyarrow.parquet as pq

    cols = ["transaction_id", "device_id", "reference_id", "result", "timestamp"]
    cols += [f"{p}_{k}" for k in (1, 2, 3) for p in ("label", "conf")]
    df = pq.read_table(records, columns=cols).to_pandas()
    if df.empty:
        raise ValueError(f"{records}: no records to analyse")
    label_refs = label_references(reference_data["labels"])
    df = _derive(df, label_refs, ok_results, confidence)
    refs_db = (
        pd.DataFrame(reference_data["references"]).set_index("reference_id")
        if reference_data["references"]
        else None
    )
    dev_db = (
        pd.DataFrame(reference_data["devices"]).set_index("device_id") if reference_data["devices"] else None
    )

    # --- references
    by_ref = _rate_table(df.dropna(subset=["reference_id"]), "reference_id", confidence)
    proposed = pd.concat([df[f"label_{k}"].map(label_refs) for k in (1, 2, 3)], ignore_index=True)
    appearances = proposed.dropna().astype("int64").value_counts()
    by_ref.insert(1, "appearances", appearances.reindex(by_ref.index).fillna(0).astype("int64"))
    by_ref["meets_min_appearances"] = by_ref["appearances"] >= min_appearances
    if refs_db is not None:
        by_ref = refs_db[["reference_code", "reference_name", "category"]].join(by_ref, how="right")
    else:
        by_ref.insert(0, "reference_code", None)
    by_ref["known_in_mysql"] = by_ref.index.isin(refs_db.index if refs_db is not None else [])
    by_ref["revisar_imagenes"] = ""
    references = by_ref.reset_index().sort_values("transactions", ascending=False, kind="stable")

    # --- devices (MySQL devices without data included, with 0 transactions)
    by_dev = _rate_table(df.dropna(subset=["device_id"]), "device_id", confidence)
    grouped = df.groupby("device_id")
    by_dev["references"] = grouped["reference_id"].nunique()
    by_dev["first_seen"] = grouped["timestamp"].min()
    by_dev["last_seen"] = grouped["timestamp"].max()
    if dev_db is not None:
        by_dev = dev_db[["device_code", "shop", "location"]].join(by_dev, how="outer")
    by_dev["transactions"] = by_dev["transactions"].fillna(0).astype("int64")
    by_dev["below_threshold"] = by_dev["below_threshold"].fillna(0).astype("int64")
    by_dev["revisar_imagenes"] = ""
    devices = by_dev.reset_index().rename(columns={"index": "device_id"})

    # --- labels
    top1 = df.groupby("label_1").agg(predicted_top1=("model_ok", "size"), top1_correct=("model_ok", "sum"))
    labels = pd.DataFrame(reference_data["labels"])
    if labels.empty:
        labels = pd.DataFrame(columns=["label_id", "label_name", "reference_id"])
    labels = labels.set_index("label_id").join(top1, how="left")
    labels["predicted_top1"] = labels["predicted_top1"].fillna(0).astype("int64")
    labels["top1_correct"] = labels["top1_correct"].fillna(0).astype("int64")
    labels["precision"] = (labels["top1_correct"] / labels["predicted_top1"]).where(
        labels["predicted_top1"] > 0
    )
    if refs_db is not None:
        labels = labels.join(refs_db[["reference_name"]], on="reference_id")
    labels = labels.reset_index()

    # --- consistency
    checks: list[tuple[str, str, str, int]] = []
    counts = df["reference_id"].value_counts()
    for ref_id, n in counts.items():
        if refs_db is None or ref_id not in refs_db.index:
            checks.append(
                ("reference in Elasticsearch unknown to MySQL", str(ref_id), f"{n} records", int(n))
            )
    for row in reference_data["labels"]:
        if row.get("reference_id") is None:
            checks.append(("label without reference", str(row["label_id"]), str(row["label_name"]), 1))
    known_labels = set(labels["label_id"].astype("int64")) if not labels.empty else set()
    unknown_labels = pd.concat([df[f"label_{k}"] for k in (1, 2, 3)]).dropna().astype("int64")
    for label_id, n in unknown_labels[~unknown_labels.isin(known_labels)].value_counts().items():
        checks.append(("predicted label unknown to the model", str(label_id), f"{n} predictions", int(n)))
    for row in devices[devices["transactions"] == 0].itertuples():
        checks.append(("device without data", str(row.device_id), f"{getattr(row, 'device_code', '')}", 0))
    below = int(df["below_threshold"].sum())
    checks.append(
        ("records below the confidence threshold", f"< {confidence:.2f}", f"{below / len(df):.1%}", below)
    )
    for column in cols:
        n_missing = int(df[column].isna().sum())
        if n_missing:
            checks.append(("field missing in records", column, f"{n_missing / len(df):.2%}", n_missing))
    for row in references[~references["meets_min_appearances"]].itertuples():
        checks.append(
            (
                "reference below min_appearances",
                str(row.reference_id),
                f"{row.appearances} < {min_appearances}",
                int(row.appearances),
            )
        )
    consistency = pd.DataFrame(checks, columns=["check", "item", "detail", "count"])

    # --- model and KPIs
    model_row = reference_data["model"][0]
    model = [(key, value) for key, value in model_row.items()]
    known_devices = int((devices["transactions"] > 0).sum())
    unknown_refs = int(sum(n for ref, n in counts.items() if refs_db is None or ref not in refs_db.index))
    figures = {
        "records": len(df),
        "devices_with_data": known_devices,
        "devices_total": len(devices),
        "references_seen": int(df["reference_id"].nunique()),
        "ok_pct": float(df["ok"].mean()),
        "model_ok_pct": float(df["model_ok"].mean()),
        "top3_hit_rate": float(df["top3_hit"].mean()),
        "below_threshold": below,
        "unknown_reference_records": unknown_refs,
        "consistency_issues": len(consistency),
    }
    figures = {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in figures.items()}
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
    kpis += [
        ("Records", figures["records"], "int"),
        ("Devices with data / in MySQL", f"{known_devices} / {len(devices)}", "text"),
        ("References seen", figures["references_seen"], "int"),
        ("OK transactions", figures["ok_pct"], "percent"),
        ("Model OK (top-1)", figures["model_ok_pct"], "percent"),
        ("Top-3 hit rate", figures["top3_hit_rate"], "percent"),
        (f"Below confidence {confidence:.2f}", below / len(df), "percent"),
        ("Records of references unknown to MySQL", unknown_refs, "int"),
        ("Consistency findings", len(consistency), "int"),
    ]
    dist = _bucket(df["conf_1"], confidence).value_counts().reindex(bucket_names(confidence), fill_value=0)
    chart = {
        "type": "column",
        "title": "Top-1 confidence",
        "categories": list(dist.index.astype(str)),
        "values": [int(v) for v in dist.to_numpy()],
        "series_name": "records",
    }
    return Analysis(kpis, chart, references, devices, labels, model, consistency, figures)


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
