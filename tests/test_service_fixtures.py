"""The service fixtures hand out real, isolated servers that the provider hooks can use."""

from __future__ import annotations

import urllib.request


def test_mariadb_fixture_works_through_the_mysql_provider(mariadb_url, monkeypatch):
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    monkeypatch.setenv("AIRFLOW_CONN_INFERENCE_MYSQL", mariadb_url)
    hook = MySqlHook(mysql_conn_id="inference_mysql")  # mysqlclient, built against libmariadb
    hook.run("CREATE TABLE labels (id INT PRIMARY KEY, name VARCHAR(20))")
    hook.insert_rows("labels", [(1, "cat"), (2, "perro")])
    assert hook.get_records("SELECT name FROM labels ORDER BY id") == (("cat",), ("perro",))
    assert hook.get_first("SELECT DATABASE()")[0] == mariadb_url.rsplit("/", 1)[1]


def test_postgres_fixture_works_through_the_postgres_provider(postgres_url, monkeypatch):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    monkeypatch.setenv("AIRFLOW_CONN_IMDB_POSTGRES", postgres_url)
    conn = PostgresHook(postgres_conn_id="imdb_postgres").get_conn()
    assert type(conn).__module__.startswith("psycopg")  # psycopg 3: cursor.copy streaming
    with conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone()[0] == postgres_url.rsplit("/", 1)[1]


def test_s3_fixture_works_through_the_amazon_provider(s3_bucket):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id="aws_default")
    hook.load_bytes(b"hello", key="k.txt", bucket_name=s3_bucket)
    assert hook.read_key("k.txt", s3_bucket) == "hello"


def test_file_server_speaks_etag_and_304(file_server):
    (file_server.root / "a.gz").write_bytes(b"x" * 10)
    with urllib.request.urlopen(file_server.url + "a.gz") as resp:
        etag = resp.headers["ETag"]
        assert resp.read() == b"x" * 10 and resp.headers["Last-Modified"]
    req = urllib.request.Request(file_server.url + "a.gz", headers={"If-None-Match": etag})
    try:
        urllib.request.urlopen(req)
        raise AssertionError("expected 304")
    except urllib.error.HTTPError as exc:
        assert exc.code == 304
