"""Where a deployment's inference records are in Elasticsearch and what their fields are called.

One YAML file, ``include/inference/mapping.yaml`` (see its comments): ``defaults`` (index
pattern, field names, the ``result`` values that count as correct, page size, point-in-time
keep-alive) and ``deployments`` (per deployment id, keys overriding the defaults; ``fields``
merge key by key). A dotted field name (``device.id``) reaches into an object of ``_source``.
The reference-data queries are ``include/inference/sql/*.sql`` (MySQL, ``%(deployment_id)s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

INCLUDE = Path(__file__).resolve().parents[3] / "include" / "inference"
MAPPING_PATH = INCLUDE / "mapping.yaml"
SQL_DIR = INCLUDE / "sql"
_SCALAR_FIELDS = ("deployment", "device", "reference", "result", "timestamp", "image_key", "transaction")


@dataclass(frozen=True)
class EsMapping:
    """The Elasticsearch side of one deployment.

    :param index: index name or pattern (``inferences-*``). :param fields: logical name ->
        ``_source`` path for :data:`_SCALAR_FIELDS`. :param top_labels: ((label path, confidence
        path), ...) best first. :param ok_results: ``result`` values of a correct transaction.
    :param page_size: hits per page. :param keep_alive: point-in-time keep-alive (ES duration).
    """

    index: str
    fields: dict[str, str]
    top_labels: tuple[tuple[str, str], ...]
    ok_results: frozenset[str]
    page_size: int = 10000
    keep_alive: str = "2m"

    def source_paths(self) -> list[str]:
        """Every ``_source`` path to fetch (the ``_source`` includes of the search)."""
        paths = [self.fields[name] for name in _SCALAR_FIELDS]
        for label, conf in self.top_labels:
            paths += [label, conf]
        return paths


def load_mapping(deployment_id: int, path: Path = MAPPING_PATH) -> EsMapping:
    """The mapping of ``deployment_id`` (defaults merged with its own entry).

    :raises ValueError: a missing field name or a malformed file (names the file and key).
    """
    import yaml

    doc = yaml.safe_load(path.read_text()) or {}
    base: dict[str, Any] = dict(doc.get("defaults") or {})
    own = (doc.get("deployments") or {}).get(str(deployment_id)) or {}
    fields = {**(base.get("fields") or {}), **(own.get("fields") or {})}
    merged = {**base, **own, "fields": fields}
    missing = [name for name in (*_SCALAR_FIELDS, "top_labels") if not fields.get(name)]
    if missing or not merged.get("index"):
        what = ", ".join(missing) or "index"
        raise ValueError(f"{path}: deployment {deployment_id}: no {what} in the mapping")
    top = fields["top_labels"]
    if not isinstance(top, list) or not all(isinstance(p, list) and len(p) == 2 for p in top):
        raise ValueError(f"{path}: fields.top_labels must be a list of [label, confidence] pairs")
    return EsMapping(
        index=str(merged["index"]),
        fields={name: str(fields[name]) for name in _SCALAR_FIELDS},
        top_labels=tuple((str(a), str(b)) for a, b in top),
        ok_results=frozenset(str(v) for v in merged.get("ok_results") or ["ok"]),
        page_size=int(merged.get("page_size", 10000)),
        keep_alive=str(merged.get("keep_alive", "2m")),
    )


def sql(name: str) -> str:
    """The text of ``include/inference/sql/{name}.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()
