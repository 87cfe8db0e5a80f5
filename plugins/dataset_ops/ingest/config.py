"""The ingest configuration: services, their entities, endpoints, pagination, keys and schemas.

It is one YAML file, ``include/microservices.yaml`` (see the comments there), read with
:func:`load_config`. Nothing about a service lives in code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dataset_ops.httpclient import HttpSettings
from dataset_ops.ingest.pagination import Paginator, make_paginator

CONFIG_PATH = Path(__file__).resolve().parents[3] / "include" / "microservices.yaml"
FORMATS = ("csv", "jsonl", "parquet")
LAYOUTS = ("partitioned", "flat")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ConfigError(ValueError):
    """The configuration file is wrong; the message names the file and the setting."""


@dataclass(frozen=True)
class EntityConfig:
    """One entity of a service.

    :param name: entity name; also the first key segment in the lake.
    :param service: the service's name; :param conn_id: its Airflow Connection.
    :param endpoint: path below the Connection's base URL.
    :param primary_key: field(s) identifying a record (dotted paths allowed); duplicates are dropped.
    :param pagination: the ``pagination`` mapping (see :mod:`dataset_ops.ingest.pagination`).
    :param schema: JSON Schema (draft-07) of one record as served.
    :param incremental: ``{"since_param": ..., "before_param": ...}``: the data interval is sent
        as these query parameters (ISO 8601 UTC); None: a full snapshot every run.
    :param explode: flatten: the list of objects whose items become one row each (at most one);
        other lists are JSON-encoded.
    :param formats: files written per run (``csv``, ``jsonl``, ``parquet``).
    :param gzip: gzip the CSV and JSONL files.
    :param params: fixed query parameters sent with every request.
    """

    name: str
    service: str
    conn_id: str
    endpoint: str
    primary_key: tuple[str, ...]
    pagination: dict
    schema: dict
    http: HttpSettings = field(default_factory=HttpSettings)
    page_size: int = 500
    max_pages: int = 10_000
    incremental: dict | None = None
    explode: str | None = None
    formats: tuple[str, ...] = FORMATS
    gzip: bool = False
    params: dict = field(default_factory=dict)

    def paginator(self) -> Paginator:
        """A new paginator for this entity."""
        return make_paginator(self.pagination, self.page_size)

    def with_overrides(self, **changes: Any) -> EntityConfig:
        """A copy with ``changes``; ``http`` may be a dict of :class:`HttpSettings` fields."""
        if isinstance(changes.get("http"), dict):
            changes["http"] = replace(self.http, **changes["http"])
        return replace(self, **changes)


@dataclass(frozen=True)
class ServiceConfig:
    """A service: its Connection id, pool and entities (in file order)."""

    name: str
    conn_id: str
    pool: str
    entities: tuple[EntityConfig, ...]


@dataclass(frozen=True)
class IngestConfig:
    """The whole file: services in file order."""

    services: tuple[ServiceConfig, ...]
    source: str = ""

    def entity(self, name: str) -> EntityConfig:
        """The entity ``name``. :raises KeyError: no such entity (the message lists them)."""
        for service in self.services:
            for entity in service.entities:
                if entity.name == name:
                    return entity
        raise KeyError(f"no entity {name!r} in {self.source}; known: {self.entity_names()}")

    def entity_names(self) -> list[str]:
        return [e.name for s in self.services for e in s.entities]


_DEFAULT_KEYS = {
    "page_size",
    "max_pages",
    "formats",
    "gzip",
    "connect_timeout",
    "read_timeout",
    "retries",
    "backoff_factor",
    "backoff_jitter",
    "backoff_max",
}
_ENTITY_KEYS = {
    "endpoint",
    "primary_key",
    "pagination",
    "schema",
    "incremental",
    "explode",
    "params",
} | _DEFAULT_KEYS


def services_overview(path: str | Path | None = None) -> list[tuple[str, str, str, list[str]]]:
    """``(service, pool, conn_id, [entity names])`` per service, from the YAML alone (no schema
    compilation): light enough for DAG parsing. :func:`load_config` checks the rest at run time.
    """
    import yaml

    data = yaml.safe_load(Path(path or CONFIG_PATH).read_text(encoding="utf-8")) or {}
    return [
        (name, spec.get("pool", name), spec.get("conn_id", name), list(spec.get("entities") or {}))
        for name, spec in (data.get("services") or {}).items()
    ]


def load_config(path: str | Path | None = None) -> IngestConfig:
    """Read and check the configuration (default :data:`CONFIG_PATH`).

    :raises ConfigError: unreadable YAML, an unknown or missing setting, a bad pagination style,
        schema or format (the message names the file and the entity).
    """
    import yaml

    path = Path(path or CONFIG_PATH)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    defaults = data.get("defaults") or {}
    _check(set(defaults) - _DEFAULT_KEYS, f"{path}: defaults: unknown setting(s)")
    services = []
    for service_name, service in (data.get("services") or {}).items():
        where = f"{path}: services.{service_name}"
        if not isinstance(service, dict) or not service.get("entities"):
            raise ConfigError(f"{where}: needs 'entities'")
        _check(set(service) - {"conn_id", "pool", "entities"}, f"{where}: unknown setting(s)")
        conn_id = service.get("conn_id", service_name)
        entities = tuple(
            _entity(name, spec, service_name, conn_id, defaults, f"{where}.entities.{name}")
            for name, spec in service["entities"].items()
        )
        services.append(ServiceConfig(service_name, conn_id, service.get("pool", service_name), entities))
    names = [e.name for s in services for e in s.entities]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    _check(set(duplicates), f"{path}: entity names must be unique")
    if not services:
        raise ConfigError(f"{path}: no services")
    return IngestConfig(tuple(services), str(path))


def _check(bad: set, message: str) -> None:
    if bad:
        raise ConfigError(f"{message}: {sorted(bad)}")


def _entity(name: str, spec: dict, service: str, conn_id: str, defaults: dict, where: str) -> EntityConfig:
    import fastjsonschema

    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: entity names are lower-case letters, digits and _")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping")
    _check(set(spec) - _ENTITY_KEYS, f"{where}: unknown setting(s)")
    merged = {**defaults, **spec}
    for key in ("endpoint", "primary_key", "pagination", "schema"):
        if not merged.get(key):
            raise ConfigError(f"{where}: '{key}' is required")
    formats = tuple(merged.get("formats") or FORMATS)
    _check(set(formats) - set(FORMATS), f"{where}: unknown format(s)")
    schema = merged["schema"]
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise ConfigError(f"{where}: schema must be 'type: object' with 'properties'")
    try:
        fastjsonschema.compile(schema)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise ConfigError(f"{where}: schema: {exc}") from None
    key = merged["primary_key"]
    primary_key = (key,) if isinstance(key, str) else tuple(key)
    incremental = merged.get("incremental")
    if incremental is not None and set(incremental) != {"since_param", "before_param"}:
        raise ConfigError(f"{where}: incremental needs exactly since_param and before_param")
    explode = merged.get("explode")
    if explode is not None:
        prop = schema["properties"].get(explode) or {}
        if prop.get("type") != "array" or (prop.get("items") or {}).get("type") != "object":
            raise ConfigError(f"{where}: explode: {explode!r} is not a list of objects in the schema")
    http = HttpSettings(**{k: merged[k] for k in HttpSettings.__dataclass_fields__ if k in merged})
    entity = EntityConfig(
        name=name,
        service=service,
        conn_id=conn_id,
        endpoint=merged["endpoint"].lstrip("/"),
        primary_key=primary_key,
        pagination=dict(merged["pagination"]),
        schema=schema,
        http=http,
        page_size=int(merged.get("page_size", 500)),
        max_pages=int(merged.get("max_pages", 10_000)),
        incremental=incremental,
        explode=explode,
        formats=formats,
        gzip=bool(merged.get("gzip", False)),
        params={k: str(v) for k, v in (merged.get("params") or {}).items()},
    )
    try:
        entity.paginator()
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return entity
