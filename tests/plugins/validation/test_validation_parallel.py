"""JSONL checked in worker threads (the Arrow path) or worker processes gives the same result as
in one thread: the same lines, records, errors (line numbers, offsets, reasons, order) and
totals."""

from __future__ import annotations

import json

import pytest
from validation_samples import GSM8K, run

from dataset_ops.validation import jsonl as jsonl_module
from dataset_ops.validation import load_rules
from dataset_ops.validation import workers as workers_module
from dataset_ops.validation.validator import PARALLEL_MIN_BYTES, default_workers

BLOCK = 64 << 10  # many chunks from the 4 MB sample


def _lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _broken(gsm8k: bytes) -> bytes:
    """The real sample with one of each line problem, spread over many 64 KiB chunks."""
    lines = _lines_of(gsm8k)
    obj = json.loads(lines[5])
    lines[10] = lines[0] + lines[1]  # two objects on one line ...
    lines[11] = b""  # ... beside an empty one
    lines[900] = b"[1, 2]"
    lines[1500] = lines[1500][:-1]  # closing brace lost
    lines[2200] = json.dumps({**obj, "answer": 7}).encode()  # schema: not a string
    lines[3000] = lines[3000][:40] + b"\xff\xfe" + lines[3000][40:]  # invalid UTF-8
    lines[4100] = json.dumps({**obj, "extra": True}).encode()  # additionalProperties
    lines[7000] = b"   "
    return b"\n".join(lines)


def _same(a, b) -> None:
    assert (a.valid, a.complete, a.lines, a.records, a.errors_found) == (
        b.valid,
        b.complete,
        b.lines,
        b.records,
        b.errors_found,
    )
    assert a.errors == b.errors


@pytest.fixture(scope="module")
def training():
    return load_rules("training_jsonl")


@pytest.fixture(params=["threads", "processes"])
def pool(request, monkeypatch):
    """Which workers check the chunks: threads on the Arrow path (what ``training_jsonl`` gets),
    or worker processes (what a schema outside Arrow's subset gets; forced here by turning the
    Arrow path off in this process)."""
    if request.param == "processes":
        monkeypatch.setattr(jsonl_module, "compile_arrow_checker", lambda schema: None)
    return request.param


@pytest.mark.parametrize("case", ["clean", "broken", "no final newline", "crlf"])
def test_workers_give_the_same_result(gsm8k, training, case, pool):
    data = {
        "clean": gsm8k,
        "broken": _broken(gsm8k),
        "no final newline": gsm8k.rstrip(b"\n"),
        "crlf": gsm8k.replace(b"\n", b"\r\n"),
    }[case]
    one = run(data, training, "x.jsonl", block_size=BLOCK, workers=1)
    two = run(data, training, "x.jsonl", block_size=BLOCK, workers=2)
    _same(two, one)
    assert (one.workers, one.worker_peak_rss_bytes) == (0, None)
    assert two.workers == 2
    if pool == "processes":
        assert 10 << 20 < two.worker_peak_rss_bytes < 400 << 20
    else:
        assert two.worker_peak_rss_bytes is None
    if case == "broken":
        assert [(e.line, e.code) for e in one.errors] == [
            (11, "invalid_json"),
            (12, "empty_line"),
            (901, "not_an_object"),
            (1501, "invalid_json"),
            (2201, "schema"),
            (3001, "invalid_utf8"),
            (4101, "schema"),
            (7001, "empty_line"),
        ]
    else:
        assert one.valid and one.records == 7473


def test_workers_with_the_generic_schema_path(gsm8k):
    """A schema msgspec cannot enforce (an array property): workers run orjson + fastjsonschema."""
    rules = load_rules("training_jsonl").with_overrides(
        {
            "jsonl": {
                "schema": {
                    "type": "object",
                    "required": ["question"],
                    "properties": {"question": {"type": "string"}, "tags": {"type": "array"}},
                }
            }
        }
    )
    assert rules.jsonl.block_decoder is None
    data = _broken(gsm8k)
    _same(
        run(data, rules, "x.jsonl", block_size=BLOCK, workers=2),
        run(data, rules, "x.jsonl", block_size=BLOCK, workers=1),
    )


def test_workers_with_long_lines_and_the_error_cap(gsm8k, training, pool):
    """Lines over max_line_bytes go through the reading process between worker chunks; the
    error cap lists the same first errors and counts the same total."""
    lines = _lines_of(gsm8k)
    for i in (100, 2000, 5000):
        lines[i] = b'{"question": "' + b"x" * 3000 + b'"}'
    for i in range(3000, 3400):
        lines[i] = b"[]"
    data = b"\n".join(lines)
    rules = training.with_overrides({"max_line_bytes": 2048, "max_errors": 50})
    one = run(data, rules, "x.jsonl", block_size=1024, workers=1)
    two = run(data, rules, "x.jsonl", block_size=1024, workers=2)
    _same(two, one)
    assert one.errors_found == 403 and len(one.errors) == 50
    assert one.errors[0].code == "line_too_long" and one.errors[0].line == 101

    stop = rules.with_overrides({"stop_at_max_errors": True})
    one = run(data, stop, "x.jsonl", block_size=BLOCK, workers=1)
    two = run(data, stop, "x.jsonl", block_size=BLOCK, workers=2)
    assert not one.complete and not two.complete
    assert one.errors == two.errors and one.errors_found == two.errors_found == 50


def test_default_workers():
    assert default_workers("jsonl", PARALLEL_MIN_BYTES - 1) == 1
    assert default_workers("csv", PARALLEL_MIN_BYTES) == 1
    assert default_workers("jsonl", None) == 1
    assert 1 <= default_workers("jsonl", PARALLEL_MIN_BYTES) <= 4


def test_the_real_file_with_workers(training):
    one = run(GSM8K.read_bytes(), training, "gsm8k.jsonl", block_size=BLOCK, workers=2)
    assert one.valid and one.records == 7473


def test_a_worker_that_dies_is_an_error_not_a_verdict(gsm8k, training, monkeypatch):
    """No result at all rather than a wrong one: the exit code is in the message."""
    monkeypatch.setattr(jsonl_module, "compile_arrow_checker", lambda schema: None)  # processes
    monkeypatch.setattr(workers_module.sys, "executable", "/bin/false")
    with pytest.raises(workers_module.WorkerError, match="exited with code 1"):
        run(gsm8k, training, "x.jsonl", block_size=BLOCK, workers=2)


def test_the_validation_modules_import_each_other_without_a_cycle():
    """Every import between the modules of ``dataset_ops.validation`` (at the top or inside a
    function) goes one way: ``jsonl_worker`` -> ``jsonl`` -> ``workers``, never back."""
    import ast
    from pathlib import Path

    import dataset_ops.validation as package

    folder = Path(package.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        edges = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("dataset_ops.validation."):
                    edges.add(name.split(".")[2])
    assert {"jsonl", "workers"} <= graph["jsonl_worker"] and "workers" in graph["jsonl"]

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in graph.get(node, ()):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    cycles = [c for m in graph if (c := cycle_from(m, m, (m,)))]
    assert cycles == []


def test_check_chunk_numbers_lines_within_the_chunk(gsm8k, training):
    """What a worker answers for one chunk: counts, and errors with chunk-relative lines/offsets."""
    from dataset_ops.validation.jsonl import JsonlValidator
    from dataset_ops.validation.reader import ErrorCollector

    good = gsm8k.split(b"\n", 2)[:2]
    chunk = good[0] + b"\n" + b"[1]\n" + good[1] + b"\n"
    validator = JsonlValidator(training, ErrorCollector(10))
    lines, records, errors, found = validator.check_chunk(chunk)
    assert (lines, records, found) == (3, 3, 1)
    assert [e[0] for e in errors] == ["not_an_object"] and errors[0][2:4] == [2, len(good[0]) + 1]
    assert validator.check_chunk(good[0] + b"\n") == [1, 1, [], 0]  # counters start again
