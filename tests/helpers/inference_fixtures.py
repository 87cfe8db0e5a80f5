"""Pytest plugin: the inference world (``helpers.inference_data``) served by real servers.

Loaded by ``tests/conftest.py`` (``pytest_plugins``). Session fixtures start or fill each service
once, on first use:

* ``inference_world``  the :class:`helpers.inference_data.World` (seed 20261120, 30k records;
                       shared by the session: read it, do not mutate it).
* ``inference_es``     a ``noida-db`` Elasticsearch holding every record in ``inferences-YYYY.MM``
                       (plus the decoy index); an :class:`InferenceES`.
* ``inference_mysql``  URL of a MariaDB database with ``schema.sql`` and the world's rows.
* ``inference_images`` ``s3://<bucket>/images/`` on the session's S3 server with the review
                       candidates' images (function fixture over a bucket filled once per session).
* ``inference_env``    sets the Connections ``inference_es``, ``inference_mysql`` (and
                       ``aws_default``) and the Variable ``inference_images_root``; an
                       :class:`InferenceEnv`.

``TIMINGS`` collects how long each step took (seconds).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from helpers.inference_data import ES_MAPPINGS, IMAGES_PREFIX, World, make_world

#: seconds per step: world, es_start, es_bulk, mysql_load, s3_upload (filled as fixtures run)
TIMINGS: dict[str, float] = {}


@dataclass
class InferenceES:
    url: str  # http://127.0.0.1:<port>
    host: str
    port: int
    index_pattern: str  # "inferences-*"
    indices: list[str]  # the inferences-YYYY.MM indices holding the records
    decoy_index: str  # holds copies of some deployment-7 docs; does not match the pattern
    doc_count: int  # documents in indices matching the pattern
    server: object = field(repr=False)  # the helpers.es_server.NoidaElasticsearch

    def client(self, **kwargs):
        """An ``elasticsearch.Elasticsearch`` client (caller closes it)."""
        return self.server.client(**kwargs)


@dataclass
class InferenceEnv:
    world: World
    es: InferenceES
    mysql_url: str
    images_root: str  # s3://<bucket>/images/
    bucket: str
    s3_endpoint: str


@pytest.fixture(scope="session")
def inference_world() -> World:
    t0 = time.perf_counter()
    world = make_world()
    TIMINGS["world"] = time.perf_counter() - t0
    return world


@pytest.fixture(scope="session")
def inference_es(inference_world):
    """noida-db started once per session, the world's documents bulk-loaded and refreshed."""
    from helpers.es_server import NoidaElasticsearch, bulk_load, create_index

    server = NoidaElasticsearch().start()
    try:
        TIMINGS["es_start"] = server.started_in
        t0 = time.perf_counter()
        for index in [*inference_world.index_names, inference_world.decoy_index]:
            create_index(server.url, index, ES_MAPPINGS)
        bulk_load(server.url, None, inference_world.es_actions())
        TIMINGS["es_bulk"] = time.perf_counter() - t0
        with server.client() as es:
            count = es.count(index=inference_world.index_pattern)["count"]
        yield InferenceES(
            url=server.url,
            host="127.0.0.1",
            port=server.port,
            index_pattern=inference_world.index_pattern,
            indices=inference_world.index_names,
            decoy_index=inference_world.decoy_index,
            doc_count=count,
            server=server,
        )
    finally:
        server.stop()


@pytest.fixture(scope="session")
def inference_mysql(mariadb_url, inference_world) -> str:
    """URL ``mysql://root@127.0.0.1:3306/<db>`` of a database holding the world's reference data.

    It is a sibling of ``mariadb_url``'s database on the same server (``<that name>_inf``),
    dropped at the end: ``mariadb_url``'s own database is shared by the session and other tests
    create tables in it (``tests/test_service_fixtures.py`` creates ``labels``)."""
    import pymysql

    parts = urlsplit(mariadb_url)
    name = parts.path.lstrip("/") + "_inf"
    admin = pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username or "root")
    t0 = time.perf_counter()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        conn = pymysql.connect(
            host=parts.hostname, port=parts.port or 3306, user=parts.username or "root", database=name,
            charset="utf8mb4",
        )  # fmt: skip
        with conn:
            inference_world.load_mysql(conn)
        TIMINGS["mysql_load"] = time.perf_counter() - t0
        yield f"mysql://{parts.username or 'root'}@{parts.hostname}:{parts.port or 3306}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def _s3_client(endpoint: str):
    from seaweedfs import s3_client

    return s3_client(endpoint, max_pool_connections=16)


def upload_images(world: World, endpoint: str, bucket: str, keys, prefix: str = IMAGES_PREFIX) -> int:
    """Put ``world.image_bytes(key)`` at ``prefix + key`` for each key (8 threads);
    returns how many."""
    from concurrent.futures import ThreadPoolExecutor

    s3 = _s3_client(endpoint)

    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=prefix + key, Body=world.image_bytes(key), ContentType="image/jpeg")

    keys = list(keys)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))
    return len(keys)


@pytest.fixture(scope="session")
def inference_images_bucket(s3_endpoint, inference_world) -> str:
    """A bucket on the session's S3 server with the images of
    ``inference_world.uploaded_image_keys()`` (the review candidates minus ``missing_images``)
    under ``images/``, filled once per session (~800 objects, ~5 s)."""
    bucket = f"inference-images-{uuid.uuid4().hex[:8]}"
    s3 = _s3_client(s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    t0 = time.perf_counter()
    upload_images(inference_world, s3_endpoint, bucket, inference_world.uploaded_image_keys())
    TIMINGS["s3_upload"] = time.perf_counter() - t0
    return bucket


@pytest.fixture
def inference_images(inference_images_bucket, s3_endpoint, monkeypatch) -> str:
    """``s3://<bucket>/images/`` with the review candidates' images; points the Connection
    ``aws_default`` at the session's S3 server exactly as ``s3_bucket`` does (both can be used
    together)."""
    from helpers.s3 import use_s3

    use_s3(monkeypatch, s3_endpoint)
    return f"s3://{inference_images_bucket}/{IMAGES_PREFIX}"


@pytest.fixture
def inference_env(monkeypatch, inference_world, inference_es, inference_mysql, inference_images, s3_endpoint):
    """Connections ``inference_es`` and ``inference_mysql`` and Variable ``inference_images_root``
    for the run of a test (plus ``aws_default`` from ``inference_images``)."""
    mysql = urlsplit(inference_mysql)
    monkeypatch.setenv(
        "AIRFLOW_CONN_INFERENCE_ES",
        json.dumps(
            {
                "conn_type": "elasticsearch",
                "host": inference_es.host,
                "port": inference_es.port,
                "schema": "http",
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_INFERENCE_MYSQL",
        json.dumps(
            {
                "conn_type": "mysql",
                "host": mysql.hostname,
                "port": mysql.port,
                "login": mysql.username,
                "schema": mysql.path.lstrip("/"),
            }
        ),
    )
    monkeypatch.setenv("AIRFLOW_VAR_INFERENCE_IMAGES_ROOT", inference_images)
    return InferenceEnv(
        world=inference_world,
        es=inference_es,
        mysql_url=inference_mysql,
        images_root=inference_images,
        bucket=urlsplit(inference_images).netloc,
        s3_endpoint=s3_endpoint,
    )
