"""Read queries of the IMDb API over the tables ``imdb_load`` publishes, and the indexes they need.

Tables and columns are those of :mod:`dataset_ops.imdb.datasets` (IMDb's own column names, which
PostgreSQL folds to lower case; the JSON keys keep IMDb's spelling: ``primaryTitle``,
``startYear``, ...). Format of the data: https://developer.imdb.com/non-commercial-datasets/ .

* One title or one name is one SQL statement that builds the whole JSON document in PostgreSQL
  (``json_build_object``/``json_agg``): one round trip, prepared once per connection.
* Lists (title search, name search, a series' episodes) use **keyset pagination**: the page after
  a cursor is ``WHERE (sort key, id) > (last key, last id) ORDER BY sort key, id LIMIT n + 1``;
  never ``OFFSET``, so page 1,000 costs what page 1 costs, and rows with equal sort keys are
  ordered by their id, so walking the pages gives every row exactly once. The cursor is opaque
  to clients: URL-safe base64 of a JSON array ``[version, list kind, fingerprint, last keys]``;
  the fingerprint (a hash of the filters and the sort) makes a cursor of one query fail loudly
  when it is sent with another (:class:`BadCursor`).
* Title search by words (``q``) reads a word index, the table ``title_words`` (word, tconst,
  year) that :func:`ensure_title_words` derives from ``title_basics``: a page is a walk of the
  postings of the query's rarest word in sort order from the cursor, joined to the titles for
  the other filters (:func:`words_statement`). Its cost follows the rows walked, not the word's
  frequency, and its plan does not depend on the values, so it is prepared once per connection.
  Words are whole words, not substrings (``love`` does not find ``Lovely``).
* The other searches (titles without ``q``, names by substring) are executed unprepared
  (``prepare=False``): PostgreSQL then plans each one with the actual values, which matters for
  text patterns (a common name part is best found by walking the key order, a rare one through
  the trigram index) and for filters of very different selectivity.
* NULL sort keys (``startYear``, ``seasonNumber``, ``episodeNumber``) sort last: the SQL orders
  by ``coalesce(col, 2147483647)``, and :func:`ensure_read_indexes` indexes that expression.

Module import stays light (orjson and the standard library): the plugin imports it in every
Airflow process; psycopg is only used through the connections handed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from dataset_ops.errors import InputError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: The schema ``imdb_load`` publishes into (:data:`dataset_ops.imdb.load.PUBLISHED_SCHEMA`).
SCHEMA = "imdb"

#: ``tconst``: ``tt`` and digits (IMDb writes at least 7, zero-padded: ``tt0000001``).
TCONST_PATTERN = r"^tt[0-9]{1,12}$"
#: ``nconst``: ``nm`` and digits (``nm0000001``).
NCONST_PATTERN = r"^nm[0-9]{1,12}$"
#: ``titleType`` and ``genre`` filter values: letters, digits and ``-`` (``tvSeries``, ``Sci-Fi``).
WORD_PATTERN = r"^[A-Za-z0-9-]{1,40}$"

#: Rows per page when the request names no ``limit``, and the most it may ask for.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: Shortest and longest name query, in characters. Three characters are the shortest text a
#: trigram index can look up (pg_trgm); shorter ones would scan the whole table.
MIN_QUERY_CHARS = 3
MAX_QUERY_CHARS = 200
#: Shortest title query (words: any word, even one letter, is looked up in the word index).
MIN_TITLE_QUERY_CHARS = 1
#: Year bounds accepted by the ``startYear`` filters.
MIN_YEAR, MAX_YEAR = 1, 9999
#: Longest cursor accepted, in characters (a real one is under 120).
MAX_CURSOR_CHARS = 512

#: Stand-in for a NULL sort key: sorts after every real year, season or episode number.
NULL_LAST = 2147483647
CURSOR_VERSION = 1

TitleSort = Literal["tconst", "startYear"]


class BadCursor(InputError):
    """A ``cursor`` that is not one this API gave for the same query (HTTP 400)."""


class BadQuery(InputError):
    """Query parameters that are valid one by one but not together, e.g. ``startYearFrom`` after
    ``startYearTo`` (HTTP 400)."""


# --- cursors -------------------------------------------------------------------------------------
def fingerprint(*parts: Any) -> str:
    """A short hash (12 hex digits, BLAKE2b) of the query parameters a cursor belongs to."""
    return hashlib.blake2b(orjson.dumps(parts), digest_size=6).hexdigest()


def encode_cursor(kind: str, print_: str, keys: list) -> str:
    """The opaque cursor after the row whose sort keys are ``keys``: URL-safe base64 (no padding)
    of the JSON array ``[CURSOR_VERSION, kind, print_, keys]``."""
    raw = orjson.dumps([CURSOR_VERSION, kind, print_, keys])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(token: str, kind: str, print_: str, key_types: tuple[type, ...]) -> list:
    """The sort keys a cursor of :func:`encode_cursor` carries, checked.

    :param kind: the list the cursor must be of (``titles``, ``names``, ``episodes``).
    :param print_: the fingerprint of the query it is sent with (:func:`fingerprint`).
    :param key_types: the type of each key (``str`` or ``int``).
    :raises BadCursor: not base64/JSON of the expected shape, another list's cursor, a cursor of
        another query (other filters or sort), or keys of the wrong number or type.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, got_kind, got_print, keys = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadCursor(f"cursor {token[:40]!r} is not a cursor of this API ({type(exc).__name__})") from None
    if version != CURSOR_VERSION or got_kind != kind:
        raise BadCursor(f"cursor {token[:40]!r} is not a cursor of this list ({kind})")
    if got_print != print_:
        raise BadCursor(
            "cursor belongs to another query (its filters or sort differ): send the same "
            "parameters as for the page that gave it, or start again without cursor"
        )
    if (
        not isinstance(keys, list)
        or len(keys) != len(key_types)
        or not all(type(k) is t for k, t in zip(keys, key_types, strict=True))
    ):
        raise BadCursor(f"cursor {token[:40]!r} carries keys of the wrong shape")
    return keys


# --- one title, one name -------------------------------------------------------------------------
def _names_json(array_sql: str) -> str:
    """JSON array ``[{"nconst", "primaryName"}]`` of the nconsts in ``array_sql``, in its order."""
    return f"""coalesce((
        SELECT json_agg(json_build_object('nconst', x.nconst, 'primaryName', n.primaryname)
                        ORDER BY x.ord)
        FROM unnest({array_sql}) WITH ORDINALITY AS x(nconst, ord)
        LEFT JOIN {SCHEMA}.name_basics n ON n.nconst = x.nconst), '[]'::json)"""


_EPISODE_ORDER = f"coalesce(e.seasonnumber, {NULL_LAST}), coalesce(e.episodenumber, {NULL_LAST}), e.tconst"

TITLE_SQL = f"""
SELECT json_build_object(
  'tconst', b.tconst,
  'titleType', b.titletype,
  'primaryTitle', b.primarytitle,
  'originalTitle', b.originaltitle,
  'isAdult', b.isadult,
  'startYear', b.startyear,
  'endYear', b.endyear,
  'runtimeMinutes', b.runtimeminutes,
  'genres', b.genres,
  'rating', (SELECT json_build_object('averageRating', r.averagerating, 'numVotes', r.numvotes)
             FROM {SCHEMA}.title_ratings r WHERE r.tconst = b.tconst),
  'akas', coalesce((
      SELECT json_agg(json_build_object(
               'ordering', a.ordering, 'title', a.title, 'region', a.region,
               'language', a.language, 'types', a.types, 'attributes', a.attributes,
               'isOriginalTitle', a.isoriginaltitle) ORDER BY a.ordering)
      FROM {SCHEMA}.title_akas a WHERE a.titleid = b.tconst), '[]'::json),
  'crew', (SELECT json_build_object('directors', {_names_json("c.directors")},
                                    'writers', {_names_json("c.writers")})
           FROM {SCHEMA}.title_crew c WHERE c.tconst = b.tconst),
  'principals', coalesce((
      SELECT json_agg(json_build_object(
               'ordering', p.ordering, 'nconst', p.nconst, 'primaryName', n.primaryname,
               'category', p.category, 'job', p.job, 'characters', p.characters)
             ORDER BY p.ordering)
      FROM {SCHEMA}.title_principals p
      LEFT JOIN {SCHEMA}.name_basics n ON n.nconst = p.nconst
      WHERE p.tconst = b.tconst), '[]'::json),
  'episodeOf', (SELECT json_build_object('parentTconst', e.parenttconst,
                                         'primaryTitle', pb.primarytitle,
                                         'seasonNumber', e.seasonnumber,
                                         'episodeNumber', e.episodenumber)
                FROM {SCHEMA}.title_episode e
                LEFT JOIN {SCHEMA}.title_basics pb ON pb.tconst = e.parenttconst
                WHERE e.tconst = b.tconst),
  'episodes', json_build_object(
      'total', (SELECT count(*) FROM {SCHEMA}.title_episode e WHERE e.parenttconst = b.tconst),
      'items', coalesce((
          SELECT json_agg(json_build_object(
                   'tconst', e.tconst, 'seasonNumber', e.seasonnumber,
                   'episodeNumber', e.episodenumber, 'primaryTitle', eb.primarytitle,
                   'startYear', eb.startyear) ORDER BY e.k1, e.k2, e.tconst)
          FROM (SELECT e.tconst, e.seasonnumber, e.episodenumber,
                       coalesce(e.seasonnumber, {NULL_LAST}) AS k1,
                       coalesce(e.episodenumber, {NULL_LAST}) AS k2
                FROM {SCHEMA}.title_episode e WHERE e.parenttconst = b.tconst
                ORDER BY {_EPISODE_ORDER} LIMIT %(episodes)s) e
          LEFT JOIN {SCHEMA}.title_basics eb ON eb.tconst = e.tconst), '[]'::json))
)::text
FROM {SCHEMA}.title_basics b
WHERE b.tconst = %(tconst)s
"""

NAME_SQL = f"""
SELECT json_build_object(
  'nconst', n.nconst,
  'primaryName', n.primaryname,
  'birthYear', n.birthyear,
  'deathYear', n.deathyear,
  'primaryProfession', n.primaryprofession,
  'knownForTitles', coalesce((
      SELECT json_agg(json_build_object('tconst', k.tconst, 'titleType', b.titletype,
                                        'primaryTitle', b.primarytitle, 'startYear', b.startyear)
                      ORDER BY k.ord)
      FROM unnest(n.knownfortitles) WITH ORDINALITY AS k(tconst, ord)
      LEFT JOIN {SCHEMA}.title_basics b ON b.tconst = k.tconst), '[]'::json)
)::text
FROM {SCHEMA}.name_basics n
WHERE n.nconst = %(nconst)s
"""


async def fetch_title(conn: psycopg.AsyncConnection, tconst: str) -> bytes | None:
    """One title as JSON (UTF-8 bytes), or None when ``imdb.title_basics`` has no such ``tconst``.

    Shape: ``{"tconst", "titleType", "primaryTitle", "originalTitle", "isAdult", "startYear",
    "endYear", "runtimeMinutes", "genres": [..], "rating": {"averageRating", "numVotes"} | null,
    "akas": [{"ordering", "title", "region", "language", "types", "attributes",
    "isOriginalTitle"}], "crew": {"directors": [{"nconst", "primaryName"}], "writers": [..]} |
    null, "principals": [{"ordering", "nconst", "primaryName", "category", "job",
    "characters"}], "episodeOf": {"parentTconst", "primaryTitle", "seasonNumber",
    "episodeNumber"} | null, "episodes": {"total", "items": [{"tconst", "seasonNumber",
    "episodeNumber", "primaryTitle", "startYear"}], "next": cursor | null}}``. ``episodes.items``
    holds the first :data:`DEFAULT_LIMIT` episodes (season, then episode number, unknown last);
    ``next`` continues them at :func:`list_episodes`. A name an nconst does not resolve to
    (IMDb's files are not referentially complete) is ``null``; ``characters`` is IMDb's text
    (a JSON-like list such as ``["Self"]``), passed on as it is.
    """
    cur = await conn.execute(TITLE_SQL, {"tconst": tconst, "episodes": DEFAULT_LIMIT + 1}, prepare=True)
    row = await cur.fetchone()
    if row is None:
        return None
    doc = orjson.loads(row[0])
    episodes = doc["episodes"]
    items = episodes["items"]
    episodes["next"] = None
    if len(items) > DEFAULT_LIMIT:
        del items[DEFAULT_LIMIT:]
        episodes["next"] = encode_cursor(
            "episodes", fingerprint("episodes", tconst), _episode_keys(items[-1])
        )
    return orjson.dumps(doc)


async def fetch_name(conn: psycopg.AsyncConnection, nconst: str) -> bytes | None:
    """One name as JSON (UTF-8 bytes), or None when ``imdb.name_basics`` has no such ``nconst``.

    Shape: ``{"nconst", "primaryName", "birthYear", "deathYear", "primaryProfession": [..],
    "knownForTitles": [{"tconst", "titleType", "primaryTitle", "startYear"}]}``, known-for
    titles in IMDb's order (a title missing from ``title_basics`` has null fields).
    """
    cur = await conn.execute(NAME_SQL, {"nconst": nconst}, prepare=True)
    row = await cur.fetchone()
    return None if row is None else orjson.dumps(orjson.loads(row[0]))  # compact, as the others


# --- lists ---------------------------------------------------------------------------------------
def like_pattern(text: str) -> str:
    """``%text%`` for ``ILIKE``, with ``\\``, ``%`` and ``_`` in ``text`` matched literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit must be 1 to {MAX_LIMIT}, not {limit}")


#: Rows a name search walks in nconst order before it gives up on the walk (see
#: :func:`walk_statement`): the heap is read in file order (the dumps are sorted by id), about
#: 1 us a row.
WALK_BUDGET = {"nconst": 5_000}


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def walk_statement(table: str, aligned: list[str], filters: list[str], order: str) -> str:
    """A page found by walking the rows in sort order, at most ``%(budget)s`` of them
    (:data:`WALK_BUDGET`).

    The inner query walks the index of the sort (with the ``aligned`` conditions, which that
    index serves: the cursor, a type for tconst order, a year range for year order) and stops
    after the budget; the outer query keeps the rows that pass ``filters`` and stops at the page
    size. When it finds a full page, that page is exact: the walked rows are a prefix, in sort
    order, of all candidates. When it does not (matches are rare, or the list ends), the caller
    runs :func:`fenced_statement`. This bounds the cost of frequent words (found within a few
    hundred rows) whatever PostgreSQL estimates for ``ILIKE '%word%'``, which it cannot estimate
    well; a mistaken ordered walk over a rare word would read the whole table.
    """
    return (
        f"SELECT b.* FROM (SELECT b.* FROM {table} b {_where(aligned)} ORDER BY {order} LIMIT %(budget)s) b "
        f"{_where(filters)} ORDER BY {order} LIMIT %(n)s"
    )


def fenced_statement(table: str, conditions: list[str], order: str) -> str:
    """A page from every row matching ``conditions``, sorted afterwards: the ``OFFSET 0``
    subquery keeps PostgreSQL from walking the sort's index with the conditions as a filter, so
    it finds the rows through the trigram (and other) indexes, then sorts the top of them."""
    return (
        f"SELECT b.* FROM (SELECT b.* FROM {table} b {_where(conditions)} OFFSET 0) b "
        f"ORDER BY {order} LIMIT %(n)s"
    )


#: A word: a longest run of letters and digits (POSIX class ``[:alnum:]``, Unicode-aware in a
#: UTF-8 database), lower-cased; everything else separates words.
WORD_SEPARATOR = "[^[:alnum:]]+"
#: The words of ``%(q)s``, as :func:`ensure_title_words` cuts titles into words (a text array,
#: NULL when ``q`` has no letter or digit).
QUERY_WORDS = (
    f"(SELECT array_agg(DISTINCT x) FROM regexp_split_to_table(lower(%(q)s), '{WORD_SEPARATOR}') x "
    "WHERE x <> '')"
)


def words_statement(params: dict[str, Any], sort: TitleSort) -> str:
    """A page of the titles with every word of ``%(q)s``, found through ``title_words``.

    Walks the postings of the query's rarest word (fewest titles in ``title_word_counts``) in
    sort order along the index ``(word, tconst)`` or ``(word, yearkey, tconst)``, from the
    cursor, with the year range on the same index; each posting is joined to its title (by
    primary key) for the type and genre filters, and when ``q`` has several words, the others
    are looked up in ``(word, tconst)``. The cost follows the rows walked, not the word's
    frequency: a page of a frequent word is found in a few dozen postings.

    :param params: the statement's parameters: ``q``, and those of the filters present
        (``type``, ``genre``, ``y0``/``y1``, cursor ``t`` and ``y``).
    """
    words = QUERY_WORDS
    rarest = (
        f"(SELECT u.word FROM unnest({words}) u(word) "
        f"LEFT JOIN {SCHEMA}.title_word_counts c ON c.word = u.word "
        "ORDER BY coalesce(c.titles, 0), u.word LIMIT 1)"
    )
    conditions = [f"w.word = {rarest}"]
    if sort == "tconst":
        order = "w.tconst"
        if "t" in params:
            conditions.append("w.tconst > %(t)s")
    else:
        order = "w.yearkey, w.tconst"
        if "t" in params:
            conditions.append("(w.yearkey, w.tconst) > (%(y)s, %(t)s)")
    if "y0" in params:
        # in tconst order ``+ 0`` keeps the range off the year index: PostgreSQL estimates a
        # few postings for any word (the word is a parameter), and would otherwise read the
        # word's whole range of years through that index and sort it
        key = "w.yearkey" if sort == "startYear" else "(w.yearkey + 0)"
        conditions.append(f"{key} BETWEEN %(y0)s AND %(y1)s")
    if "type" in params:
        conditions.append("b.titletype = %(type)s")
    if "genre" in params:
        conditions.append("b.genres @> %(genre)s::text[]")
    conditions.append(
        f"(cardinality({words}) = 1 OR (SELECT count(*) FROM {SCHEMA}.title_words o "
        f"WHERE o.word = ANY({words}::text[]) AND o.tconst = w.tconst) = cardinality({words}))"
    )
    return (
        f"SELECT b.* FROM {SCHEMA}.title_words w JOIN {SCHEMA}.title_basics b ON b.tconst = w.tconst "
        f"{_where(conditions)} ORDER BY {order} LIMIT %(n)s"
    )


@dataclass(frozen=True)
class TitleSearch:
    """A title search: every filter is optional; those given must all match.

    :param q: words: a title matches when every word of ``q`` is a word of its ``primaryTitle``
        or ``originalTitle`` (words as :func:`ensure_title_words` cuts them: runs of letters and
        digits, case-insensitive; ``q`` without any finds nothing);
        :data:`MIN_TITLE_QUERY_CHARS` to :data:`MAX_QUERY_CHARS` characters.
    :param title_type: ``titleType`` equal to this (``movie``, ``tvSeries``, ...).
    :param genre: one of the title's ``genres`` (as IMDb writes it: ``Drama``, ``Sci-Fi``).
    :param start_year_from: ``startYear`` at least this (titles without a year are left out).
    :param start_year_to: ``startYear`` at most this (titles without a year are left out).
    :param sort: ``tconst`` (the default) or ``startYear`` (titles without a year last; equal
        years in ``tconst`` order).
    :param limit: rows per page, 1 to :data:`MAX_LIMIT`.
    :param cursor: the ``next`` of the previous page, or None for the first page.
    """

    q: str | None = None
    title_type: str | None = None
    genre: str | None = None
    start_year_from: int | None = None
    start_year_to: int | None = None
    sort: TitleSort = "tconst"
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def fingerprint(self) -> str:
        """Hash of every parameter but ``limit`` and ``cursor``."""
        return fingerprint(
            "titles", self.q, self.title_type, self.genre, self.start_year_from, self.start_year_to, self.sort
        )

    def statements(self) -> list[tuple[str, dict]]:
        """The statements to run, in order, with their parameters: the first that returns a full
        page (``limit + 1`` rows) answers; the last one always does (see :func:`run_search`).

        Without ``q``: one statement, planned by PostgreSQL with its values. With ``q``: one
        statement over the word index (:func:`words_statement`), whose plan does not depend on
        the values (run prepared).

        :raises BadQuery: year bounds out of order or out of range, limit out of range.
        :raises BadCursor: see :func:`decode_cursor`.
        """
        _check_limit(self.limit)
        params: dict[str, Any] = {"n": self.limit + 1}
        aligned, rest = [], []  # conditions the sort's index walks along, and the others
        if self.q is not None:
            if not MIN_TITLE_QUERY_CHARS <= len(self.q) <= MAX_QUERY_CHARS:
                raise BadQuery(f"q must be {MIN_TITLE_QUERY_CHARS} to {MAX_QUERY_CHARS} characters")
            params["q"] = self.q
        if self.sort not in ("tconst", "startYear"):
            raise BadQuery(f"sort must be tconst or startYear, not {self.sort!r}")
        if self.title_type is not None:
            params["type"] = self.title_type
            # (titletype, tconst) is indexed: a tconst-ordered walk within one type
            (aligned if self.sort == "tconst" else rest).append("b.titletype = %(type)s")
        if self.genre is not None:
            params["genre"] = [self.genre]
            rest.append("b.genres @> %(genre)s::text[]")
        year = f"coalesce(b.startyear, {NULL_LAST})"
        if self.start_year_from is not None or self.start_year_to is not None:
            low = MIN_YEAR if self.start_year_from is None else self.start_year_from
            high = MAX_YEAR if self.start_year_to is None else self.start_year_to
            for name, value in (("startYearFrom", low), ("startYearTo", high)):
                if not MIN_YEAR <= value <= MAX_YEAR:
                    raise BadQuery(f"{name} must be {MIN_YEAR} to {MAX_YEAR}, not {value}")
            if low > high:
                raise BadQuery(f"startYearFrom ({low}) is after startYearTo ({high})")
            params.update(y0=low, y1=high)
            (aligned if self.sort == "startYear" else rest).append(f"{year} BETWEEN %(y0)s AND %(y1)s")
        if self.sort == "tconst":
            order = "b.tconst"
            if self.cursor is not None:
                (params["t"],) = decode_cursor(self.cursor, "titles", self.fingerprint(), (str,))
                aligned.append("b.tconst > %(t)s")
        else:
            order = f"{year}, b.tconst"
            if self.cursor is not None:
                keys = decode_cursor(self.cursor, "titles", self.fingerprint(), (int, str))
                params["y"], params["t"] = keys
                aligned.append(f"({year}, b.tconst) > (%(y)s, %(t)s)")
        table = f"{SCHEMA}.title_basics"
        if self.q is None:
            page = f"SELECT b.* FROM {table} b {_where(aligned + rest)} ORDER BY {order} LIMIT %(n)s"
            return [(self._select(page, order), params)]
        return [(self._select(words_statement(params, self.sort), order), params)]

    @staticmethod
    def _select(page: str, order: str) -> str:
        """The answer's columns for the page of title_basics rows ``page`` (rating joined)."""
        return f"""
SELECT b.tconst, b.titletype, b.primarytitle, b.originaltitle, b.isadult, b.startyear,
       b.endyear, b.runtimeminutes, b.genres, r.averagerating::float8, r.numvotes
FROM ({page}) b
LEFT JOIN {SCHEMA}.title_ratings r ON r.tconst = b.tconst
ORDER BY {order}"""

    def next_cursor(self, last: tuple) -> str:
        """The cursor after the result row ``last``."""
        keys = [last[0]] if self.sort == "tconst" else [NULL_LAST if last[5] is None else last[5], last[0]]
        return encode_cursor("titles", self.fingerprint(), keys)


_TITLE_KEYS = ("tconst", "titleType", "primaryTitle", "originalTitle", "isAdult", "startYear")


def _title_row(row: tuple) -> dict:
    item = dict(zip(_TITLE_KEYS, row, strict=False))
    item["endYear"], item["runtimeMinutes"], item["genres"] = row[6], row[7], row[8]
    item["rating"] = None if row[10] is None else {"averageRating": row[9], "numVotes": row[10]}
    return item


async def run_search(
    conn: psycopg.AsyncConnection, statements: list[tuple[str, dict]], prepare: bool = False
) -> list[tuple]:
    """The rows of the first statement that returns a full page (``params["n"]`` rows), else of
    the last one. Unprepared by default: PostgreSQL plans each with its values."""
    for query, params in statements:
        cur = await conn.execute(query, params, prepare=prepare)
        rows = await cur.fetchall()
        if len(rows) >= params["n"]:
            break
    return rows


async def search_titles(conn: psycopg.AsyncConnection, search: TitleSearch) -> bytes:
    """One page of a title search as JSON: ``{"items": [{"tconst", "titleType", "primaryTitle",
    "originalTitle", "isAdult", "startYear", "endYear", "runtimeMinutes", "genres", "rating":
    {"averageRating", "numVotes"} | null}], "next": cursor | null}`` in the order of
    ``search.sort``; ``next`` is null on the last page.

    :raises BadQuery: see :meth:`TitleSearch.statements`. :raises BadCursor: see :func:`decode_cursor`.
    """
    # a word search's plan does not depend on the values (see words_statement): prepared
    rows = await run_search(conn, search.statements(), prepare=search.q is not None)
    more = len(rows) > search.limit
    rows = rows[: search.limit]
    return orjson.dumps(
        {
            "items": [_title_row(r) for r in rows],
            "next": search.next_cursor(rows[-1]) if more else None,
        }
    )


@dataclass(frozen=True)
class NameSearch:
    """A name search: ``q`` found (case-insensitively, anywhere) in ``primaryName``, in ``nconst``
    order. ``limit`` and ``cursor`` as in :class:`TitleSearch`."""

    q: str
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def fingerprint(self) -> str:
        """Hash of ``q``."""
        return fingerprint("names", self.q)

    def statements(self) -> list[tuple[str, dict]]:
        """The walk, then the exact statement, as for a text search of titles
        (:meth:`TitleSearch.statements`; raises as it does)."""
        _check_limit(self.limit)
        if not MIN_QUERY_CHARS <= len(self.q) <= MAX_QUERY_CHARS:
            raise BadQuery(f"q must be {MIN_QUERY_CHARS} to {MAX_QUERY_CHARS} characters")
        params: dict[str, Any] = {"p": like_pattern(self.q), "n": self.limit + 1}
        params["budget"] = WALK_BUDGET["nconst"]
        aligned = []
        if self.cursor is not None:
            (params["after"],) = decode_cursor(self.cursor, "names", self.fingerprint(), (str,))
            aligned.append("b.nconst > %(after)s")
        table, text = f"{SCHEMA}.name_basics", "b.primaryname ILIKE %(p)s"
        columns = "b.nconst, b.primaryname, b.birthyear, b.deathyear, b.primaryprofession, b.knownfortitles"
        return [
            (f"SELECT {columns} FROM ({page}) b ORDER BY b.nconst", params)
            for page in (
                walk_statement(table, aligned, [text], "b.nconst"),
                fenced_statement(table, [*aligned, text], "b.nconst"),
            )
        ]


_NAME_KEYS = ("nconst", "primaryName", "birthYear", "deathYear", "primaryProfession", "knownForTitles")


async def search_names(conn: psycopg.AsyncConnection, search: NameSearch) -> bytes:
    """One page of a name search as JSON: ``{"items": [{"nconst", "primaryName", "birthYear",
    "deathYear", "primaryProfession", "knownForTitles": [tconst, ...]}], "next": cursor | null}``.

    :raises BadQuery: see :meth:`NameSearch.statements`. :raises BadCursor: see :func:`decode_cursor`.
    """
    rows = await run_search(conn, search.statements())
    more = len(rows) > search.limit
    rows = rows[: search.limit]
    return orjson.dumps(
        {
            "items": [dict(zip(_NAME_KEYS, r, strict=True)) for r in rows],
            "next": encode_cursor("names", search.fingerprint(), [rows[-1][0]]) if more else None,
        }
    )


def _episode_keys(item: dict) -> list:
    season, episode = item["seasonNumber"], item["episodeNumber"]
    return [
        NULL_LAST if season is None else season,
        NULL_LAST if episode is None else episode,
        item["tconst"],
    ]


EPISODES_SQL = f"""
SELECT e.tconst, e.seasonnumber, e.episodenumber, eb.primarytitle, eb.startyear
FROM (SELECT e.tconst, e.seasonnumber, e.episodenumber FROM {SCHEMA}.title_episode e
      WHERE e.parenttconst = %(parent)s {{after}}
      ORDER BY {_EPISODE_ORDER} LIMIT %(n)s) e
LEFT JOIN {SCHEMA}.title_basics eb ON eb.tconst = e.tconst
ORDER BY {_EPISODE_ORDER}"""

_EPISODE_KEYS = ("tconst", "seasonNumber", "episodeNumber", "primaryTitle", "startYear")


async def list_episodes(
    conn: psycopg.AsyncConnection, tconst: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> bytes | None:
    """One page of a series' episodes as JSON, or None when ``tconst`` is not a title.

    ``{"items": [{"tconst", "seasonNumber", "episodeNumber", "primaryTitle", "startYear"}],
    "next": cursor | null}``, by season then episode number (unknown numbers last), equal
    numbers in ``tconst`` order. A title without episodes has an empty page.

    :raises BadQuery: limit out of range. :raises BadCursor: see :func:`decode_cursor`.
    """
    _check_limit(limit)
    print_ = fingerprint("episodes", tconst)
    params: dict[str, Any] = {"parent": tconst, "n": limit + 1}
    after = ""
    if cursor is not None:
        params["s"], params["e"], params["t"] = decode_cursor(cursor, "episodes", print_, (int, int, str))
        after = (
            f"AND (coalesce(e.seasonnumber, {NULL_LAST}), coalesce(e.episodenumber, {NULL_LAST}), e.tconst)"
            " > (%(s)s, %(e)s, %(t)s)"
        )
    exists = await conn.execute(
        f"SELECT 1 FROM {SCHEMA}.title_basics WHERE tconst = %(t)s", {"t": tconst}, prepare=True
    )
    if await exists.fetchone() is None:
        return None
    cur = await conn.execute(EPISODES_SQL.format(after=after), params, prepare=True)
    rows = await cur.fetchall()
    more = len(rows) > limit
    items = [dict(zip(_EPISODE_KEYS, r, strict=True)) for r in rows[:limit]]
    return orjson.dumps(
        {
            "items": items,
            "next": encode_cursor("episodes", print_, _episode_keys(items[-1])) if more else None,
        }
    )


# --- indexes -------------------------------------------------------------------------------------
#: (table, index name, definition after ``ON <schema>.<table>``, ANALYZE afterwards: expression
#: indexes get their statistics from ANALYZE)
READ_INDEXES: tuple[tuple[str, str, str, bool], ...] = (
    ("title_basics", "title_basics_titletype_tconst_idx", "(titletype, tconst)", False),
    (
        "title_basics",
        "title_basics_startyear_tconst_idx",
        f"((coalesce(startyear, {NULL_LAST})), tconst)",
        True,
    ),
    ("title_basics", "title_basics_genres_idx", "USING gin (genres)", False),
    ("name_basics", "name_basics_primaryname_trgm_idx", "USING gin (primaryname gin_trgm_ops)", False),
    (
        "title_episode",
        "title_episode_parent_order_idx",
        f"(parenttconst, (coalesce(seasonnumber, {NULL_LAST})), "
        f"(coalesce(episodenumber, {NULL_LAST})), tconst)",
        True,
    ),
)


#: The word index of the titles (:func:`ensure_title_words`): its tables and their indexes.
WORDS_TABLE, WORD_COUNTS_TABLE = "title_words", "title_word_counts"
WORDS_INDEXES = (
    ("title_words_word_tconst_idx", "(word, tconst) INCLUDE (yearkey)"),
    ("title_words_word_year_idx", "(word, yearkey, tconst)"),
)


def ensure_title_words(
    conn: psycopg.Connection, schema: str = SCHEMA, maintenance_work_mem: str = "512MB"
) -> bool:
    """Build the word index of the titles unless it is current: ``title_words (word, tconst,
    yearkey)``, one row per distinct word of a title's ``primaryTitle`` and ``originalTitle``
    (lower-cased, cut at :data:`WORD_SEPARATOR`; ``yearkey`` = ``startYear``, NULL as
    :data:`NULL_LAST`), with btree indexes on ``(word, tconst) INCLUDE (yearkey)`` and ``(word,
    yearkey, tconst)``, and ``title_word_counts (word primary key, titles)``.

    Current means built from the ``title_basics`` table now in ``schema``: the build records
    that table's OID in the comment of ``title_words``; a publish replaces ``title_basics`` (a
    new OID), so the next call rebuilds. The new tables are built under ``*_build`` names
    (UNLOGGED when ``title_basics`` is, like the loader's tables), vacuumed and analysed, then
    swapped in with the old ones dropped in one transaction: searches read the old index until
    then. A publish does not move these tables from ``imdb_staging``: build them on ``imdb``.

    :param conn: an autocommit psycopg 3 connection with CREATE rights on ``schema``.
    :returns: True when it built them, False when they were current or ``title_basics`` is
        missing.
    :raises psycopg.Error: a database failure (the tables in use stay as they were).
    """
    row = conn.execute(
        "SELECT c.oid::bigint, c.relpersistence FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = 'title_basics' AND c.relkind = 'r'",
        (schema,),
    ).fetchone()
    if row is None:
        return False
    source, persistence = f"title_basics {row[0]}", row[1]
    current = conn.execute(
        "SELECT obj_description(to_regclass(%s), 'pg_class'), to_regclass(%s) IS NOT NULL",
        (f"{schema}.{WORDS_TABLE}", f"{schema}.{WORD_COUNTS_TABLE}"),
    ).fetchone()
    if current == (source, True):
        return False
    words, counts = f"{schema}.{WORDS_TABLE}", f"{schema}.{WORD_COUNTS_TABLE}"
    unlogged = "UNLOGGED " if persistence == "u" else ""
    log.info("building %s from %s.title_basics", words, schema)
    conn.execute(f"DROP TABLE IF EXISTS {words}_build, {counts}_build")
    with conn.transaction():
        conn.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
        conn.execute(
            f"""CREATE {unlogged}TABLE {words}_build AS
            SELECT w.word COLLATE "C" AS word, b.tconst, coalesce(b.startyear, {NULL_LAST}) AS yearkey
            FROM {schema}.title_basics b,
            LATERAL (SELECT DISTINCT x FROM regexp_split_to_table(
                         lower(concat_ws(' ', b.primarytitle, nullif(b.originaltitle, b.primarytitle))),
                         '{WORD_SEPARATOR}') x
                     WHERE x <> '') w(word)"""
        )
        for name, definition in WORDS_INDEXES:
            conn.execute(f"CREATE INDEX {name}_build ON {words}_build {definition}")
        conn.execute(
            f"CREATE {unlogged}TABLE {counts}_build AS "
            f"SELECT word, count(*)::integer AS titles FROM {words}_build GROUP BY word"
        )
        conn.execute(
            f"ALTER TABLE {counts}_build ADD CONSTRAINT {WORD_COUNTS_TABLE}_build_pkey PRIMARY KEY (word)"
        )
    conn.execute(f"VACUUM (ANALYZE) {words}_build")  # all-visible: index-only scans
    conn.execute(f"ANALYZE {counts}_build")
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {words}, {counts}")
        conn.execute(f"ALTER TABLE {words}_build RENAME TO {WORDS_TABLE}")
        conn.execute(f"ALTER TABLE {counts}_build RENAME TO {WORD_COUNTS_TABLE}")
        for name, _ in WORDS_INDEXES:
            conn.execute(f"ALTER INDEX {schema}.{name}_build RENAME TO {name}")
        conn.execute(
            f"ALTER INDEX {schema}.{WORD_COUNTS_TABLE}_build_pkey RENAME TO {WORD_COUNTS_TABLE}_pkey"
        )
        conn.execute(f"COMMENT ON TABLE {words} IS '{source}'")
    return True


def ensure_read_indexes(
    conn: psycopg.Connection, schema: str = SCHEMA, maintenance_work_mem: str = "512MB"
) -> list[str]:
    """Create what the API's searches need, where missing: the word index of the titles
    (:func:`ensure_title_words`, rebuilt when ``title_basics`` was replaced); a trigram GIN index
    (pg_trgm) on ``primaryName``; btree on ``(titleType, tconst)`` and on ``(startYear, tconst)``
    (NULL years last); GIN on ``genres``; btree on ``title_episode (parentTconst, seasonNumber,
    episodeNumber, tconst)``.

    Call it after every publish of these tables: publishing replaces a table with a new one
    (:func:`dataset_ops.imdb.load.publish`), which has only its primary key and the loader's
    indexes. The indexes can also be built on the staged tables before the publish (``schema`` =
    ``imdb_staging``): they move with the tables, and keep their names. The word index is built
    only when ``schema`` is :data:`SCHEMA` (a publish would not move it).
    Tables that do not exist in ``schema`` are skipped. Each index is built in its own
    transaction with plain ``CREATE INDEX`` (readers go on; writers of that table wait);
    expression indexes are followed by ``ANALYZE`` of their table. Runs ``CREATE EXTENSION IF
    NOT EXISTS pg_trgm`` (a trusted extension: the database owner may create it).

    :param conn: an autocommit psycopg 3 connection with CREATE rights on ``schema``.
    :param maintenance_work_mem: memory for each index build (GIN builds are much faster with
        more).
    :returns: the names of the indexes created, then :data:`WORDS_TABLE` when the word index was
        built (empty when all existed).
    :raises psycopg.Error: a database failure (the indexes built before it stay).
    """
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    existing = {
        (table, name)
        for table, name in conn.execute(
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
        )
    }
    tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}
    created, to_analyze = [], set()
    for table, name, definition, analyze in READ_INDEXES:
        if table not in tables or (table, name) in existing:
            continue
        log.info("creating index %s.%s on %s", schema, name, table)
        with conn.transaction():
            conn.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {schema}.{table} {definition}")
        created.append(name)
        if analyze:
            to_analyze.add(table)
    for table in sorted(to_analyze):
        conn.execute(f"ANALYZE {schema}.{table}")
    if schema == SCHEMA and ensure_title_words(conn, schema, maintenance_work_mem):
        created.append(WORDS_TABLE)
    return created
