"""Pagination styles of REST services, each a small class with explicit stop conditions.

A paginator turns the previous response into the next request (or None when the listing is
done). The fetch loop (:func:`dataset_ops.ingest.http.fetch_pages`) adds the guards every style
shares: a page whose body repeats an earlier page's, a cursor or link seen before, and more than
``max_pages`` pages all stop with :class:`PaginationError` instead of looping forever.

Styles (``pagination.style`` in ``include/microservices.yaml``):

* ``page_number``: ``?page=N&size=M``; stops on an empty page, at ``total_pages`` when the body
  has it, or on a page shorter than ``M``.
* ``offset``: ``?offset=K&limit=M``; stops on an empty page, at ``total`` when the body has it,
  or on a page shorter than ``M``.
* ``cursor``: ``?cursor=C`` with the next cursor in the body (``next_cursor``); stops when it
  is null or empty.
* ``next_link``: the URL of the next page in the body (``next``); stops when it is null.
* ``link_header``: the ``Link: <url>; rel="next"`` response header (RFC 8288); stops when there
  is none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class PaginationError(RuntimeError):
    """The service paginates in a way that would never end or skip data (the message says how)."""


@dataclass
class Request:
    """One page request: an absolute ``url`` or an endpoint path, and query ``params``."""

    url: str
    params: dict[str, str] = field(default_factory=dict)


def dig(body: Any, path: str | None) -> Any:
    """The value at a dotted ``path`` in a JSON body (``None`` path: the body itself).

    :raises PaginationError: a step of the path is missing or not an object.
    """
    if not path:
        return body
    value = body
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            raise PaginationError(f"the response has no {path!r} (missing {step!r})")
        value = value[step]
    return value


class Paginator:
    """Base class: ``records_path`` says where the list of records is in the body.

    :param page_size: records per page asked for (sent as ``size_param`` when the style has one).
    """

    style = ""

    def __init__(self, records_path: str | None = None, page_size: int = 500, size_param: str | None = None):
        self.records_path = records_path
        self.page_size = page_size
        self.size_param = size_param

    def records(self, body: Any) -> list[dict]:
        """The records of a page. :raises PaginationError: not a list of objects."""
        items = dig(body, self.records_path)
        if not isinstance(items, list):
            raise PaginationError(f"records at {self.records_path or 'the top level'} are not a list")
        return items

    def _size(self) -> dict[str, str]:
        return {self.size_param: str(self.page_size)} if self.size_param else {}

    def first(self, endpoint: str, params: dict[str, str]) -> Request:
        """The first request for ``endpoint`` with the run's own ``params`` (filters)."""
        return Request(endpoint, {**params, **self._size()})

    def next(self, previous: Request, body: Any, links: dict, records: list[dict]) -> Request | None:
        """The request after ``previous``, or None when the listing is done.

        :param body: the parsed JSON of ``previous``'s response. :param links: its ``Link``
            header as ``requests`` parses it (``{"next": {"url": ...}}``). :param records: its
            records.
        :raises PaginationError: the body lacks what the style needs.
        """
        raise NotImplementedError

    def state(self, request: Request) -> str:
        """What identifies a position in the listing (a repeat means a loop)."""
        return f"{request.url}?{sorted(request.params.items())}"


class PageNumberPaginator(Paginator):
    """``?{page_param}=N`` from ``first_page``; see the module docstring."""

    style = "page_number"

    def __init__(
        self,
        *,
        page_param: str = "page",
        first_page: int = 1,
        total_pages_path: str | None = None,
        size_param: str | None = "size",
        **kwargs,
    ):
        super().__init__(size_param=size_param, **kwargs)
        self.page_param = page_param
        self.first_page = first_page
        self.total_pages_path = total_pages_path

    def first(self, endpoint: str, params: dict[str, str]) -> Request:
        request = super().first(endpoint, params)
        request.params[self.page_param] = str(self.first_page)
        return request

    def next(self, previous: Request, body: Any, links: dict, records: list[dict]) -> Request | None:
        page = int(previous.params[self.page_param])
        if not records:
            return None
        if self.total_pages_path:
            if page >= int(dig(body, self.total_pages_path)):
                return None
        elif len(records) < self.page_size:
            return None
        return Request(previous.url, {**previous.params, self.page_param: str(page + 1)})


class OffsetPaginator(Paginator):
    """``?{offset_param}=K&{limit_param}=M``; see the module docstring."""

    style = "offset"

    def __init__(
        self,
        *,
        offset_param: str = "offset",
        total_path: str | None = None,
        size_param: str = "limit",
        **kwargs,
    ):
        super().__init__(size_param=size_param, **kwargs)
        self.offset_param = offset_param
        self.total_path = total_path

    def first(self, endpoint: str, params: dict[str, str]) -> Request:
        request = super().first(endpoint, params)
        request.params[self.offset_param] = "0"
        return request

    def next(self, previous: Request, body: Any, links: dict, records: list[dict]) -> Request | None:
        offset = int(previous.params[self.offset_param]) + len(records)
        if not records:
            return None
        if self.total_path:
            if offset >= int(dig(body, self.total_path)):
                return None
        elif len(records) < self.page_size:
            return None
        return Request(previous.url, {**previous.params, self.offset_param: str(offset)})


class CursorPaginator(Paginator):
    """The next cursor from the body at ``cursor_path``, sent as ``?{cursor_param}=``."""

    style = "cursor"

    def __init__(
        self,
        *,
        cursor_param: str = "cursor",
        cursor_path: str = "next_cursor",
        size_param: str = "limit",
        **kwargs,
    ):
        super().__init__(size_param=size_param, **kwargs)
        self.cursor_param = cursor_param
        self.cursor_path = cursor_path

    def next(self, previous: Request, body: Any, links: dict, records: list[dict]) -> Request | None:
        cursor = dig(body, self.cursor_path)
        if cursor in (None, ""):
            return None
        return Request(previous.url, {**previous.params, self.cursor_param: str(cursor)})


class NextLinkPaginator(Paginator):
    """The next page's URL from the body at ``next_path`` (absolute, or relative to the service)."""

    style = "next_link"

    def __init__(self, *, next_path: str = "next", size_param: str | None = None, **kwargs):
        super().__init__(size_param=size_param, **kwargs)
        self.next_path = next_path

    def next(self, previous: Request, body: Any, links: dict, records: list[dict]) -> Request | None:
        link = dig(body, self.next_path)
        if not link:
            return None
        return Request(str(link), {})  # the link carries its own query string


class LinkHeaderPaginator(Paginator):
    """The ``Link`` header's ``rel`` URL (RFC 8288, as parsed by ``requests``' ``Response.links``)."""

    style = "link_header"

    def __init__(self, *, rel: str = "next", size_param: str | None = None, **kwargs):
        super().__init__(size_param=size_param, **kwargs)
        self.rel = rel

    def next(self, previous: Request, body: Any, links: dict, records: list[dict]) -> Request | None:
        link = (links or {}).get(self.rel, {}).get("url")
        if not link:
            return None
        return Request(link, {})


STYLES: dict[str, type[Paginator]] = {
    cls.style: cls
    for cls in (PageNumberPaginator, OffsetPaginator, CursorPaginator, NextLinkPaginator, LinkHeaderPaginator)
}


def make_paginator(spec: dict, page_size: int) -> Paginator:
    """A paginator from an entity's ``pagination`` mapping (``style`` plus that class's options).

    :raises ValueError: unknown style or option.
    """
    options = dict(spec)
    style = options.pop("style", None)
    if style not in STYLES:
        raise ValueError(f"pagination style {style!r} is not one of {sorted(STYLES)}")
    options.setdefault("page_size", page_size)
    try:
        return STYLES[style](**options)
    except TypeError as exc:
        raise ValueError(f"pagination {style}: {exc}") from None
