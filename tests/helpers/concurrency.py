"""Running the same call from several threads at once, for race tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any


def at_once(fn: Callable[[Any], Any], args: Iterable[Hashable], timeout: float = 120) -> dict:
    """Call ``fn(arg)`` for each of ``args``, each in its own thread, released together by a
    barrier so that the calls overlap; ``{arg: result}``.

    :raises AssertionError: a call raised (the first error is chained) or did not finish within
        ``timeout`` seconds.
    """
    args = list(args)
    barrier = threading.Barrier(len(args))
    results: dict = {}
    errors: list[BaseException] = []

    def run(arg) -> None:
        try:
            barrier.wait()
            results[arg] = fn(arg)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if errors:
        raise AssertionError(f"{len(errors)} of {len(args)} concurrent calls failed: {errors!r}") from errors[
            0
        ]
    assert not any(t.is_alive() for t in threads), f"calls still running after {timeout} s"
    return results
