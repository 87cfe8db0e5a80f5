"""Which failures are worth retrying: the suite's one classification of errors.

A task that fails on bad input fails again on every retry: a file with the wrong header, a row
with an extra field, invalid UTF-8, a value of the wrong type, a duplicate key, HTTP 404, an
unknown data type or deployment, a bad Param value. The library raises such errors as
subclasses of :class:`PermanentError` where it detects them; everything else (connection
errors, timeouts, HTTP 408/425/429 and 5xx, S3 throttling, a lock timeout, a worker that died)
stays an ordinary exception and is retried.

How Airflow learns about it: :data:`dataset_ops.dag_defaults.DEFAULT_ARGS` gives every task the
retry policy :data:`dataset_ops.dag_defaults.RETRY_POLICY` (Airflow 3.3's
``retry_policy``, evaluated by the task runner in the worker for every failure except
``AirflowFailException``), which fails the task at once when :func:`is_permanent` says so. The
task then ends ``failed`` after its first try: logged once, its failure callback run once.
DAG files need no wrapping, and this module imports nothing from Airflow, so the library and
its command-line tools stay light.

Classes (each also derives from the built-in exception that callers already catch)::

    PermanentError            anything no retry can fix
      InputError (ValueError)   bad file, header, row, encoding, value, Param
      NotFound (LookupError)    an unknown name: data type, rule set, file, deployment, run
      HTTPClientError           HTTP 4xx other than 408, 425, 429
"""

from __future__ import annotations

#: 4xx statuses that may succeed later: 408 Request Timeout, 425 Too Early, 429 Too Many Requests.
TRANSIENT_CLIENT_STATUSES = frozenset({408, 425, 429})


class PermanentError(Exception):
    """An error that no retry can fix: the input or the request is wrong.

    Tasks of the suite fail at once on it (see the module docstring); the message must say what
    is wrong and where (file, line, byte offset, URL, name).
    """


class InputError(PermanentError, ValueError):
    """Bad input: a file with a wrong header, a bad row or value, invalid UTF-8, a bad Param."""


class NotFound(PermanentError, LookupError):
    """Something named does not exist: an unknown data type or rule set, file, deployment, run."""


class HTTPClientError(PermanentError):
    """The server refused the request with a 4xx status that a retry does not change (404, 410,
    401, 403, 400, ...; not 408, 425 or 429).

    :param message: what was asked and the answer (method, URL, status, reason).
    :param status: the HTTP status code.
    """

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # picklable with its status (Exception pickles ``args`` only)
        return type(self), (self.args[0], self.status)


def is_permanent_http_status(status: int) -> bool:
    """Whether an HTTP answer with ``status`` fails the same way when asked again: every 4xx
    except 408, 425 and 429. 5xx and other statuses are transient (or not errors)."""
    return 400 <= status < 500 and status not in TRANSIENT_CLIENT_STATUSES


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` means that retrying the task cannot help (it is a :class:`PermanentError`).

    Only the exception itself counts, not its ``__cause__``: a transient error raised while
    handling a permanent one (or the reverse) is classified by what was raised.
    """
    return isinstance(exc, PermanentError)
