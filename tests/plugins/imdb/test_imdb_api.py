"""The read-only IMDb API (``dataset_ops.imdb.api``), standalone and inside Airflow's API server.

Data: the bundled sample ``include/imdb_sample/`` loaded by the suite's own loader (stage + publish)
into a database of this module, plus, from the same real August 2025 slice the sample's
title.episode comes from (``shared/data/imdb/head-2025-08/title.basics.tsv``), the title.basics rows
of the series ``tt0046593`` and two of its episodes (the sample's title.basics has no series), and
three episode rows added here with equal and unknown season/episode numbers, so ties and NULL sort
keys occur. Then :func:`dataset_ops.imdb.queries.ensure_read_indexes`.

* Standalone: :func:`dataset_ops.imdb.api_server.create_app` in-process (TestClient), with tokens
  made by Airflow's ``JWTGenerator`` (the class Airflow's API server issues them with), and the
  documented command as a real server process accepting a token from Airflow's ``POST /auth/token``.
* Mounted: Airflow's own API app built in this process with the suite's plugin (helpers.airflow_api),
  in multi-team mode so that a user without read access to the DAG ``imdb_load`` exists (the simple
  auth manager's roles otherwise read every DAG): ``reader`` belongs to the DAG bundle's team,
  ``outsider`` to another one.

Expected answers are computed with SQL written here from the API's specification (each word of a
title ``q`` matched by a regular expression as a whole word of ``primaryTitle`` or
``originalTitle``, a name ``q`` as text anywhere, NULL years last, ties in id order), not with the
API's SQL (which reads the word index ``title_words``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
from helpers.airflow_api import JWT_SECRET, team_owned_dags
from helpers.imdb_data import IMDB_DATA
from helpers.services import PG_ADMIN_URL, free_port
from psycopg.conninfo import conninfo_to_dict

from dataset_ops.imdb import api, api_server, load
from dataset_ops.imdb import queries as q
from dataset_ops.imdb.datasets import IMDB_FILES, imdb_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "include" / "imdb_sample"
#: The session's one secret: Airflow signs every in-process token with the first app's (cached)
SECRET = JWT_SECRET
SERIES = "tt0046593"  # The Magical World of Disney: 109 episodes in the sample's title.episode
EPISODES = ("tt0049473", "tt0050318")  # two of them, whose title.basics rows are added
ADDED_EPISODES = [  # (tconst, seasonNumber, episodeNumber): ties and unknown numbers
    ("tt9900001", 30, 1),
    ("tt9900002", 30, 1),
    ("tt9900003", None, None),
]
DOC_COMMAND = ".venv/bin/python -m dataset_ops.imdb.api_server --host 127.0.0.1 --port 8090 --workers 2"


# --- data ----------------------------------------------------------------------------------------
def _load_sample(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        load.ensure_schemas(conn)
        staged = []
        for spec in IMDB_FILES.values():
            with open(SAMPLE / spec.file_name, "rb") as fh:
                staged.append(load.stage_file(conn, spec, fh).to_dict())
        load.publish(conn, staged)
        wanted = {SERIES, *EPISODES}
        lines = [
            line
            for line in (IMDB_DATA / "head-2025-08" / "title.basics.tsv")
            .read_text(encoding="utf-8")
            .splitlines()
            if line.split("\t", 1)[0] in wanted
        ]
        assert len(lines) == 3
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE added (LIKE imdb.title_basics)")
            cols = (
                "tconst, titletype, primarytitle, originaltitle, isadult, startyear, endyear, runtimeminutes"
            )
            with cur.copy(f"COPY added ({cols}, genres) FROM STDIN") as copy:
                for line in lines:
                    f = [None if v == "\\N" else v for v in line.split("\t")]
                    f[4] = f[4] == "1"
                    f[8] = f[8].split(",") if f[8] else None
                    copy.write_row(f)
            cur.execute("INSERT INTO imdb.title_basics SELECT * FROM added")
            cur.executemany(
                "INSERT INTO imdb.title_episode (tconst, parenttconst, seasonnumber, episodenumber) "
                "VALUES (%s, %s, %s, %s)",
                [(t, SERIES, s, e) for t, s, e in ADDED_EPISODES],
            )
        assert q.ensure_read_indexes(conn) == [name for _, name, _, _ in q.READ_INDEXES] + [q.WORDS_TABLE]


@pytest.fixture(scope="module")
def imdb_url():
    """A database of this module holding the sample (see the module docstring); dropped after."""
    name = f"dataset_ops_test_imdbapi_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        _load_sample(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def sql(imdb_url):
    """The expected answers' connection (autocommit)."""
    with psycopg.connect(imdb_url, autocommit=True) as conn:
        yield conn


def column(conn, query: str, *params) -> list:
    return [r[0] for r in conn.execute(query, params or None)]


# --- the standalone app in-process ---------------------------------------------------------------
def airflow_jwt(secret: str = SECRET, **claims) -> str:
    """A token as Airflow's API server issues them (its ``JWTGenerator``, audience apache-airflow)."""
    from airflow.api_fastapi.auth.tokens import JWTGenerator

    return JWTGenerator(secret_key=secret, audience="apache-airflow", valid_for=600).generate(
        {"sub": "tester", **claims}
    )


@pytest.fixture(scope="module")
def standalone(imdb_url):
    """(TestClient of the standalone app on the sample, headers with a valid token)."""
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", SECRET)
        app = api_server.create_app(conninfo_to_dict(imdb_url), pool_size=2)
        with TestClient(app) as client:
            yield client, {"Authorization": f"Bearer {airflow_jwt()}"}


def get(standalone, path: str, **params):
    client, headers = standalone
    return client.get(f"/imdb{path}", params=params, headers=headers)


def walk(standalone, path: str, limit: int, **params) -> list[dict]:
    """Every item of a list, page by page through ``next``; checks each full page's size."""
    items, cursor = [], None
    for _ in range(10_000):
        page = get(standalone, path, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next"]
        if cursor is None:
            assert len(body["items"]) <= limit
            return items
        assert len(body["items"]) == limit
    raise AssertionError("more than 10,000 pages")


# --- one title, one name -------------------------------------------------------------------------
def test_a_title_has_its_rating_akas_crew_and_principals_with_names(standalone, sql):
    title = get(standalone, "/titles/tt0000247").json()
    row = sql.execute(
        "SELECT titletype, primarytitle, originaltitle, startyear, genres FROM imdb.title_basics "
        "WHERE tconst = 'tt0000247'"
    ).fetchone()
    assert (title["titleType"], title["primaryTitle"], title["originalTitle"], title["startYear"]) == row[:4]
    assert title["genres"] == row[4]
    rating = sql.execute(
        "SELECT averagerating::float8, numvotes FROM imdb.title_ratings WHERE tconst = 'tt0000247'"
    ).fetchone()
    assert title["rating"] == (rating and {"averageRating": rating[0], "numVotes": rating[1]})
    names = dict(sql.execute("SELECT nconst, primaryname FROM imdb.name_basics"))
    crew = sql.execute("SELECT directors, writers FROM imdb.title_crew WHERE tconst = 'tt0000247'").fetchone()
    assert title["crew"]["directors"] == [{"nconst": n, "primaryName": names.get(n)} for n in crew[0]]
    assert title["crew"]["writers"] == [{"nconst": n, "primaryName": names.get(n)} for n in crew[1]]
    assert any(d["primaryName"] for d in title["crew"]["directors"])  # some resolve, some do not
    assert any(d["primaryName"] is None for d in title["crew"]["directors"])
    principals = sql.execute(
        "SELECT ordering, nconst, category, job, characters FROM imdb.title_principals "
        "WHERE tconst = 'tt0000247' ORDER BY ordering"
    ).fetchall()
    assert len(principals) == 19
    assert [
        (p["ordering"], p["nconst"], p["category"], p["job"], p["characters"]) for p in title["principals"]
    ] == [tuple(p) for p in principals]
    assert [p["primaryName"] for p in title["principals"]] == [names.get(p[1]) for p in principals]
    assert title["episodeOf"] is None and title["episodes"] == {"total": 0, "items": [], "next": None}

    carmencita = get(standalone, "/titles/tt0000001").json()
    akas = sql.execute(
        "SELECT ordering, title, region, language, types, attributes, isoriginaltitle FROM imdb.title_akas "
        "WHERE titleid = 'tt0000001' ORDER BY ordering"
    ).fetchall()
    keys = ("ordering", "title", "region", "language", "types", "attributes", "isOriginalTitle")
    assert carmencita["akas"] == [dict(zip(keys, a, strict=True)) for a in akas] and len(akas) >= 8
    assert carmencita["rating"] == {"averageRating": 5.7, "numVotes": 2142}


def test_a_series_lists_its_episodes_and_an_episode_names_its_series(standalone, sql):
    series = get(standalone, f"/titles/{SERIES}").json()
    expected = column(
        sql,
        "SELECT tconst FROM imdb.title_episode WHERE parenttconst = %s "
        "ORDER BY seasonnumber NULLS LAST, episodenumber NULLS LAST, tconst",
        SERIES,
    )
    assert series["episodes"]["total"] == len(expected) == 112
    assert [e["tconst"] for e in series["episodes"]["items"]] == expected[: q.DEFAULT_LIMIT]
    # the title's "next" continues at the episodes route
    rest, cursor = [], series["episodes"]["next"]
    while cursor:
        page = get(standalone, f"/titles/{SERIES}/episodes", cursor=cursor, limit=9).json()
        rest += page["items"]
        cursor = page["next"]
    assert [e["tconst"] for e in series["episodes"]["items"] + rest] == expected
    # the same list from the start, in pages of every size
    for limit in (1, 7, 100):
        assert [e["tconst"] for e in walk(standalone, f"/titles/{SERIES}/episodes", limit)] == expected
    by_id = {e["tconst"]: e for e in rest + series["episodes"]["items"]}
    assert by_id["tt0049473"]["primaryTitle"] == "Man in Space" and by_id["tt0049473"]["startYear"] == 1955
    assert expected[-1] == "tt9900003"  # unknown season and episode: last
    assert expected.index("tt9900001") + 1 == expected.index("tt9900002")  # a tie, in tconst order

    episode = get(standalone, "/titles/tt0049473").json()
    assert episode["episodeOf"] == {
        "parentTconst": SERIES,
        "primaryTitle": "The Magical World of Disney",
        "seasonNumber": 1,
        "episodeNumber": 20,
    }
    assert get(standalone, "/titles/tt0000001/episodes").json() == {"items": [], "next": None}


def test_a_name_has_its_known_for_titles_in_imdbs_order(standalone, sql):
    name = get(standalone, "/names/nm0000428").json()
    row = sql.execute(
        "SELECT primaryname, birthyear, deathyear, primaryprofession, knownfortitles FROM imdb.name_basics "
        "WHERE nconst = 'nm0000428'"
    ).fetchone()
    assert (name["primaryName"], name["birthYear"], name["deathYear"], name["primaryProfession"]) == row[:4]
    assert [k["tconst"] for k in name["knownForTitles"]] == row[4]
    titles = {t: (ty, pt, y) for t, ty, pt, y in sql.execute(
        "SELECT tconst, titletype, primarytitle, startyear FROM imdb.title_basics")}  # fmt: skip
    for known in name["knownForTitles"]:
        assert (known["titleType"], known["primaryTitle"], known["startYear"]) == titles.get(
            known["tconst"], (None, None, None)
        )
    assert sum(k["primaryTitle"] is not None for k in name["knownForTitles"]) >= 2


def test_unknown_ids_are_404(standalone):
    for path in ("/titles/tt9999999", "/titles/tt9999999/episodes", "/names/nm9999999", "/titles/tt1"):
        answer = get(standalone, path)
        assert answer.status_code == 404, (path, answer.text)
        assert "is not in the IMDb tables" in answer.json()["detail"]


# --- search and pages ----------------------------------------------------------------------------
def words_where(*words: str, extra: str = "", args: tuple = ()) -> tuple[str, tuple]:
    """WHERE (and its parameters) of titles having every one of ``words`` (lower-case letters)
    as a whole word of primaryTitle or originalTitle: a regular expression per word, delimited
    by a non-alphanumeric character or the text's ends."""
    where, params = [], []
    for word in words:
        where.append("(lower(primarytitle) ~ %s OR lower(originaltitle) ~ %s)")
        params += [f"(^|[^[:alnum:]]){word}($|[^[:alnum:]])"] * 2
    return " AND ".join(where + ([extra] if extra else [])), (*params, *args)


TITLE_SEARCHES = [  # (parameters, WHERE of the expected query, its parameters)
    ({"q": "the"}, *words_where("the")),
    ({"q": "LOVE"}, *words_where("love")),
    ({"q": "a"}, *words_where("a")),
    ({"q": "The-Man!", "sort": "startYear"}, *words_where("the", "man")),
    (
        {"q": "the", "titleType": "short", "startYearFrom": 1900, "startYearTo": 1912},
        *words_where(
            "the", extra="titletype = %s AND startyear BETWEEN %s AND %s", args=("short", 1900, 1912)
        ),
    ),
    (
        {"q": "of", "genre": "Drama", "startYearFrom": 1910, "startYearTo": 1925, "sort": "startYear"},
        *words_where(
            "of", extra="%s = ANY(genres) AND startyear BETWEEN %s AND %s", args=("Drama", 1910, 1925)
        ),
    ),
    (
        {"q": "the", "titleType": "movie", "genre": "Comedy", "sort": "startYear"},
        *words_where("the", extra="titletype = %s AND %s = ANY(genres)", args=("movie", "Comedy")),
    ),
    ({"genre": "Drama", "sort": "startYear"}, "%s = ANY(genres)", ("Drama",)),
    (
        {"titleType": "short", "startYearFrom": 1900, "startYearTo": 1905, "sort": "startYear"},
        "titletype = %s AND startyear BETWEEN %s AND %s",
        ("short", 1900, 1905),
    ),
    (
        {"titleType": "movie", "genre": "Comedy", "startYearTo": 1915},
        "titletype = %s AND %s = ANY(genres) AND startyear <= %s",
        ("movie", "Comedy", 1915),
    ),  # fmt: skip
    ({"sort": "startYear"}, "true", ()),
]


@pytest.mark.parametrize(("params", "where", "args"), TITLE_SEARCHES)
def test_walking_every_page_of_a_title_search_gives_the_one_big_query(standalone, sql, params, where, args):
    order = "startyear NULLS LAST, tconst" if params.get("sort") == "startYear" else "tconst"
    expected = column(sql, f"SELECT tconst FROM imdb.title_basics WHERE {where} ORDER BY {order}", *args)
    assert len(expected) > 30, "the search must span pages"
    for limit in (7, 100):
        got = [t["tconst"] for t in walk(standalone, "/titles", limit, **params)]
        assert got == expected and len(set(got)) == len(got)
    if params.get("sort") == "startYear":  # equal sort keys occur: their order is tconst's
        years = column(sql, f"SELECT startyear FROM imdb.title_basics WHERE {where} ORDER BY {order}", *args)
        assert len(set(years)) < len(years) / 5


def test_a_page_size_may_change_between_pages_and_items_carry_their_rating(standalone, sql):
    expected = column(sql, "SELECT tconst FROM imdb.title_basics ORDER BY tconst")
    got, cursor = [], None
    for limit in (3, 50, 1, 100, 100, 100, 100, 100, 100) * 20:
        page = get(standalone, "/titles", limit=limit, **({"cursor": cursor} if cursor else {})).json()
        got += page["items"]
        cursor = page["next"]
        if not cursor:
            break
    assert [t["tconst"] for t in got] == expected and not cursor
    ratings = dict(sql.execute("SELECT tconst, numvotes FROM imdb.title_ratings"))
    for item in got[:600]:
        assert (item["rating"] or {}).get("numVotes") == ratings.get(item["tconst"])
    assert sum(item["rating"] is not None for item in got[:600]) > 100


def test_name_search_walks_every_page(standalone, sql):
    expected = column(
        sql, "SELECT nconst FROM imdb.name_basics WHERE primaryname ILIKE '%john%' ORDER BY nconst"
    )
    assert len(expected) > 50
    for limit in (1, 13):
        assert [n["nconst"] for n in walk(standalone, "/names", limit, q="John")] == expected
    first = get(standalone, "/names", q="Astaire").json()
    assert (
        first["items"][0]["nconst"] == "nm0000001" and first["items"][0]["knownForTitles"][0] == "tt0072308"
    )


def test_q_finds_whole_words_not_substrings(standalone, sql):
    where, args = words_where("love")
    words = column(sql, f"SELECT tconst FROM imdb.title_basics WHERE {where} ORDER BY tconst", *args)
    substrings = column(
        sql,
        "SELECT tconst FROM imdb.title_basics "
        "WHERE primarytitle ILIKE '%love%' OR originaltitle ILIKE '%love%'",
    )
    assert set(words) < set(substrings)  # Lovely, Glove, ... do not have the word love
    assert [t["tconst"] for t in walk(standalone, "/titles", 100, q="love")] == words


def test_the_words_of_q_may_be_split_between_primary_and_original_title(standalone, sql):
    the = "'(^|[^[:alnum:]])the($|[^[:alnum:]])'"
    tconst, primary = sql.execute(
        "SELECT tconst, lower(primarytitle) FROM imdb.title_basics WHERE originaltitle <> primarytitle "
        f"AND lower(originaltitle) ~ {the} AND lower(primarytitle) !~ {the} ORDER BY tconst LIMIT 1"
    ).fetchone()
    word = re.findall(r"[^\W_]+", primary)[0]
    found = [t["tconst"] for t in walk(standalone, "/titles", 100, q=f"{word.upper()} the")]
    assert tconst in found
    where, args = words_where(word, "the")
    assert found == column(sql, f"SELECT tconst FROM imdb.title_basics WHERE {where} ORDER BY tconst", *args)


def test_a_q_without_letters_or_digits_finds_nothing(standalone, sql):
    for text in ("%%%", "___"):
        assert (
            column(sql, "SELECT tconst FROM imdb.title_basics WHERE strpos(primarytitle, %s) > 0", text) == []
        )
        assert (
            len(column(sql, "SELECT tconst FROM imdb.title_basics WHERE primarytitle ILIKE %s", f"%{text}%"))
            > 7000
        )
        assert get(standalone, "/titles", q=text).json() == {"items": [], "next": None}


# --- bad input -----------------------------------------------------------------------------------
BAD_422 = [
    ("/titles/xx0000001", {}, "tconst"),
    ("/titles/tt", {}, "tconst"),
    ("/titles/tt12ab", {}, "tconst"),
    ("/titles/tt\u0661\u0662\u0663", {}, "tconst"),  # Arabic-Indic digits are not digits here
    ("/titles/nm0000001", {}, "tconst"),
    ("/names/tt0000001", {}, "nconst"),
    ("/titles", {"limit": 0}, "limit"),
    ("/titles", {"limit": 101}, "limit"),
    ("/titles", {"limit": "ten"}, "limit"),
    ("/titles/tt0046593/episodes", {"limit": 1000}, "limit"),
    ("/names", {"q": "Jo"}, "q"),
    ("/names", {}, "q"),
    ("/titles", {"q": ""}, "q"),
    ("/titles", {"q": "x" * 201}, "q"),
    ("/titles", {"startYearFrom": 0}, "startYearFrom"),
    ("/titles", {"startYearTo": 10000}, "startYearTo"),
    ("/titles", {"sort": "primaryTitle"}, "sort"),
    ("/titles", {"titleType": "tv Series"}, "titleType"),
    ("/titles", {"cursor": "not/base64"}, "cursor"),
]


@pytest.mark.parametrize(("path", "params", "field"), BAD_422)
def test_parameters_that_break_their_rule_are_422_naming_the_field(standalone, path, params, field):
    answer = get(standalone, path, **params)
    assert answer.status_code == 422, answer.text
    assert [e["loc"][-1] for e in answer.json()["detail"]] == [field]


def _cursor(*parts) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).rstrip(b"=").decode()


def test_bad_cursors_and_an_inverted_year_range_are_400_with_the_reason(standalone):
    names_cursor = get(standalone, "/names", q="John", limit=1).json()["next"]
    drama_cursor = get(standalone, "/titles", genre="Drama", limit=1).json()["next"]
    episodes_cursor = get(standalone, f"/titles/{SERIES}/episodes", limit=1).json()["next"]
    cases = [
        ({"startYearFrom": 2000, "startYearTo": 1990}, "startYearFrom (2000) is after startYearTo (1990)"),
        ({"cursor": "zz"}, "is not a cursor of this API"),
        ({"cursor": _cursor("hello")}, "is not a cursor of this API"),
        ({"cursor": names_cursor}, "is not a cursor of this list"),
        ({"cursor": episodes_cursor}, "is not a cursor of this list"),
        ({"cursor": drama_cursor, "genre": "Comedy"}, "belongs to another query"),
        ({"cursor": drama_cursor, "genre": "Drama", "sort": "startYear"}, "belongs to another query"),
        ({"cursor": _cursor(1, "titles", q.TitleSearch().fingerprint(), [1])}, "keys of the wrong shape"),
        ({"cursor": _cursor(1, "titles", q.TitleSearch().fingerprint(), ["tt1", 2])}, "wrong shape"),
    ]
    for params, message in cases:
        answer = get(standalone, "/titles", **params)
        assert answer.status_code == 400, (params, answer.text)
        assert message in answer.json()["detail"], (params, answer.text)
    other_series = get(standalone, "/titles/tt0000001/episodes", cursor=episodes_cursor)
    assert other_series.status_code == 400 and "another query" in other_series.json()["detail"]
    # the same cursor with its own parameters works
    assert get(standalone, "/titles", genre="Drama", cursor=drama_cursor).status_code == 200


# --- authentication, standalone ------------------------------------------------------------------
def test_the_standalone_app_refuses_a_missing_forged_or_expired_token(standalone):
    client, headers = standalone
    paths = ["/imdb/titles/tt0000001", "/imdb/titles?q=the", f"/imdb/titles/{SERIES}/episodes",
             "/imdb/names/nm0000001", "/imdb/names?q=john"]  # fmt: skip
    forged = airflow_jwt(secret="not-the-secret-" + "z" * 40)
    claims_ok, sig = headers["Authorization"].rsplit(".", 1)
    tampered = f"{claims_ok[:-4]}AAAA.{sig}"
    expired = _expired_token()
    for path in paths:
        assert client.get(path, headers=headers).status_code == 200
        missing = client.get(path)
        assert missing.status_code == 401 and missing.json() == {"detail": "Not authenticated"}
        assert missing.headers["www-authenticate"] == "Bearer"
        for token in (forged, "not-a-jwt", tampered.removeprefix("Bearer ")):
            refused = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 403 and refused.json() == {"detail": "Invalid JWT token"}, path
        late = client.get(path, headers={"Authorization": f"Bearer {expired}"})
        assert late.status_code == 401 and late.json() == {"detail": "Token Expired"}
    other_audience = _token_for_audience("someone-else")
    assert client.get(paths[0], headers={"Authorization": f"Bearer {other_audience}"}).status_code == 403
    assert client.get("/health").json() == {"status": "ok"}  # no token needed


def _expired_token() -> str:
    import jwt

    now = int(time.time())
    claims = {"sub": "tester", "aud": "apache-airflow", "iat": now - 120, "nbf": now - 120, "exp": now - 60}
    return jwt.encode(claims, SECRET, algorithm="HS512")


def _token_for_audience(audience: str) -> str:
    from airflow.api_fastapi.auth.tokens import JWTGenerator

    return JWTGenerator(secret_key=SECRET, audience=audience, valid_for=600).generate({"sub": "tester"})


def test_the_server_does_not_start_without_its_settings(tmp_path):
    env = {"PATH": os.environ["PATH"], "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__API_AUTH__JWT_SECRET": SECRET}
    cmd = [sys.executable, "-m", "dataset_ops.imdb.api_server", "--port", str(free_port())]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "AIRFLOW_CONN_IMDB_POSTGRES is not set" in out.stderr
    env = {**env, "AIRFLOW_CONN_IMDB_POSTGRES": "postgresql://postgres@127.0.0.1:5432/x"}
    del env["AIRFLOW__API_AUTH__JWT_SECRET"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "AIRFLOW__API_AUTH__JWT_SECRET" in out.stderr


# --- the database side ---------------------------------------------------------------------------
def _database(url: str, **kwargs) -> api.ImdbDatabase:
    return api.ImdbDatabase(lambda: conninfo_to_dict(url), pool_size=1, **kwargs)


def test_the_api_connections_cannot_write_and_long_queries_are_cancelled(imdb_url, sql):
    async def scenario():
        db = _database(imdb_url, statement_timeout_s=0.3)
        try:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                async with db.connection() as conn:
                    await conn.execute("DELETE FROM imdb.title_ratings")
            with pytest.raises(api.DatabaseUnavailable, match="took longer than 0.3 s"):
                async with db.connection() as conn:
                    await conn.execute("SELECT pg_sleep(2)")
            async with db.connection() as conn:  # the pool goes on
                return await (await conn.execute("SELECT count(*) FROM imdb.title_ratings")).fetchone()
        finally:
            await db.close()

    assert asyncio.run(scenario()) == (531,)
    assert sql.execute("SELECT count(*) FROM imdb.title_ratings").fetchone() == (531,)


def test_an_unloaded_or_unreachable_database_is_503_with_the_reason(pg, postgres_url):
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", SECRET)
        app = api_server.create_app(conninfo_to_dict(postgres_url), pool_size=1)
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {airflow_jwt()}"}
            answer = client.get("/imdb/titles/tt0000001", headers=headers)
            assert answer.status_code == 503
            assert "the IMDb tables are not loaded yet" in answer.json()["detail"]
            assert "run the DAG imdb_load" in answer.json()["detail"]
            load.ensure_schemas(pg)  # titles and ratings published, but ensure_read_indexes has not run
            for spec in (imdb_file("title.basics"), imdb_file("title.ratings")):
                with open(SAMPLE / spec.file_name, "rb") as fh:
                    load.publish(pg, [load.stage_file(pg, spec, fh).to_dict()])
            assert (
                client.get("/imdb/titles", params={"titleType": "movie"}, headers=headers).status_code == 200
            )
            answer = client.get("/imdb/titles", params={"q": "the"}, headers=headers)
            assert answer.status_code == 503
            assert "word index of the titles is not built yet" in answer.json()["detail"]
            assert "ensure_read_indexes" in answer.json()["detail"]

    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"

    async def unreachable():
        db = _database(closed, pool_timeout_s=1.0)
        async with db.connection():
            pass

    with pytest.raises(api.DatabaseUnavailable, match="does not answer"):
        asyncio.run(unreachable())


def test_indexes_can_be_built_on_the_staged_tables_and_move_with_the_publish(pg):
    spec = imdb_file("title.basics")
    load.ensure_schemas(pg)
    with open(SAMPLE / spec.file_name, "rb") as fh:
        staged = load.stage_file(pg, spec, fh)
    created = q.ensure_read_indexes(pg, schema=load.STAGING_SCHEMA)
    assert created == [name for table, name, _, _ in q.READ_INDEXES if table == "title_basics"]
    load.publish(pg, [staged.to_dict()])
    published = column(pg, "SELECT indexname FROM pg_indexes WHERE schemaname = 'imdb'")
    assert set(created) <= set(published)
    assert q.ensure_read_indexes(pg) == [q.WORDS_TABLE]  # the word index is built on imdb only
    assert q.ensure_read_indexes(pg) == []  # nothing missing: a no-op


def test_the_word_index_is_rebuilt_when_a_publish_replaced_the_titles(pg):
    spec = imdb_file("title.basics")
    load.ensure_schemas(pg)

    def publish(title: str) -> None:
        with open(SAMPLE / spec.file_name, "rb") as fh:
            staged = load.stage_file(pg, spec, fh)
        pg.execute(
            f"UPDATE {load.STAGING_SCHEMA}.title_basics SET primarytitle = %s WHERE tconst = 'tt0000001'",
            (title,),
        )
        load.publish(pg, [staged.to_dict()])

    def titles_with(word: str) -> list[str]:
        return column(pg, "SELECT tconst FROM imdb.title_words WHERE word = %s ORDER BY tconst", word)

    publish("Zyzzyva, first cut")
    assert q.WORDS_TABLE in q.ensure_read_indexes(pg)
    assert titles_with("zyzzyva") == ["tt0000001"] and titles_with("quux") == []
    counts = dict(
        pg.execute("SELECT word, titles FROM imdb.title_word_counts WHERE word IN ('zyzzyva', 'the')")
    )
    assert counts == {"zyzzyva": 1, "the": len(titles_with("the"))} and counts["the"] > 1000
    publish("Quux, second cut")
    assert titles_with("zyzzyva") == ["tt0000001"]  # stale until it runs again
    assert q.ensure_read_indexes(pg)[-1] == q.WORDS_TABLE  # (and the new table's indexes)
    assert titles_with("zyzzyva") == [] and titles_with("quux") == ["tt0000001"]
    assert q.ensure_read_indexes(pg) == []
    leftovers = column(pg, "SELECT tablename FROM pg_tables WHERE tablename LIKE '%%_build'")
    assert leftovers == []


# --- mounted in Airflow's API server, and the documented command --------------------------------
TEAM, OTHER_TEAM = "imdb_readers", "others"
USERS = {
    "admin": ("admin", "admin-pw"),
    "reader": (f"viewer:{TEAM}", "reader-pw"),
    "outsider": (f"viewer:{OTHER_TEAM}", "outsider-pw"),
}


MOUNTED = "/dataset-ops/imdb"
MOUNTED_ROUTES = [
    "/titles/tt0000001",
    f"/titles/{SERIES}/episodes?limit=5",
    "/titles?q=the&limit=5",
    "/names/nm0000001",
    "/names?q=john",
]


@pytest.fixture(scope="module")
def airflow_app(tmp_path_factory, imdb_url):
    """(client, headers by user): Airflow's API app in multi-team mode, the DAG ``imdb_load``'s
    bundle owned by the team of ``reader``; the Connection ``imdb_postgres`` is the sample's DB."""
    env = {
        "AIRFLOW_CONN_IMDB_POSTGRES": imdb_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": SECRET,  # the standalone app's too: one Airflow deployment
    }
    with team_owned_dags(tmp_path_factory.mktemp("imdb-api"), [api.DAG_ID], TEAM, USERS, env) as app:
        yield app


def test_mounted_routes_need_a_token_and_read_access_to_imdb_load(airflow_app, standalone):
    client, headers = airflow_app
    for route in MOUNTED_ROUTES:
        url = MOUNTED + route
        assert client.get(url).status_code == 401, route
        assert client.get(url, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403, route
        refused = client.get(url, headers=headers["outsider"])
        assert refused.status_code == 403, (route, refused.text)
        answer = client.get(url, headers=headers["reader"])
        assert answer.status_code == 200, (route, answer.text)
        same = standalone[0].get("/imdb" + route, headers=standalone[1])
        assert answer.json() == same.json(), route
    bad = client.get(f"{MOUNTED}/titles/tt12ab", headers=headers["reader"])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "tconst"]
    inverted = client.get(f"{MOUNTED}/titles?startYearFrom=3&startYearTo=2", headers=headers["reader"])
    assert inverted.status_code == 400 and "after startYearTo" in inverted.json()["detail"]
    assert client.get(f"{MOUNTED}/names/nm9999999", headers=headers["reader"]).status_code == 404
    spec = client.get("/dataset-ops/openapi.json", headers=headers["admin"]).json()
    assert {f"{MOUNTED}/titles/{{tconst}}", f"{MOUNTED}/titles", f"{MOUNTED}/names"} <= {
        "/dataset-ops" + p for p in spec["paths"]
    }


def test_the_documented_command_serves_the_api_to_an_airflow_token(airflow_app, imdb_url, tmp_path):
    client, headers = airflow_app
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__API_AUTH__JWT_SECRET": os.environ["AIRFLOW__API_AUTH__JWT_SECRET"],  # Airflow's, above
        "AIRFLOW_CONN_IMDB_POSTGRES": imdb_url,
    }
    argv = shlex.split(DOC_COMMAND.replace("8090", str(port)))
    server = subprocess.Popen(
        argv, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                    assert json.load(resp) == {"status": "ok"}
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode()
                time.sleep(0.3)
        title = urllib.request.Request(f"{base}/imdb/titles/tt0000001", headers=headers["reader"])
        with urllib.request.urlopen(title, timeout=10) as resp:
            assert json.load(resp)["primaryTitle"] == "Carmencita"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/imdb/titles/tt0000001", timeout=10)
        assert refused.value.code == 401
        # two workers: each answers (a burst of requests reaches both)
        for _ in range(20):
            with urllib.request.urlopen(
                urllib.request.Request(f"{base}/imdb/names/nm0000001", headers=headers["outsider"]),
                timeout=10,
            ) as resp:
                assert json.load(resp)["primaryName"] == "Fred Astaire"  # no per-DAG check standalone
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


@pytest.mark.parametrize("budget", [40, q.WALK_BUDGET["nconst"]])
@pytest.mark.parametrize(
    "search", [q.NameSearch("john"), q.NameSearch("ann", limit=100), q.NameSearch("mar", limit=7)], ids=repr
)
def test_the_bounded_walk_and_the_fenced_search_give_the_same_page(sql, search, budget):
    """The walk's page, when it finds a full one, is the exact statement's page; when it does
    not, the exact statement answers (both cases occur with these budgets)."""
    (walk, params), (exact, _) = search.statements()
    params = {**params, "budget": budget}
    walked = sql.execute(walk, params).fetchall()
    exact_rows = sql.execute(exact, params).fetchall()
    assert len(exact_rows) == params["n"]  # every search here has a next page
    if len(walked) == params["n"]:
        assert walked == exact_rows
    else:
        assert walked == exact_rows[: len(walked)]  # a prefix: the walk stopped at its budget
    WALK_OUTCOMES.add(len(walked) == params["n"])


WALK_OUTCOMES: set[bool] = set()


def test_both_walk_outcomes_occurred():
    assert WALK_OUTCOMES == {True, False}
