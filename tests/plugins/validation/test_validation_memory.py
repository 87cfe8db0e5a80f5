"""A line over the real 64 MiB default is reported while streaming, without being held.

Runs in a fresh interpreter. The generated stream produces its 65 MiB line piece by piece, so
the only way the peak RSS can grow by 65 MiB or more is the validator buffering it. The peak is
``VmHWM`` of ``/proc/self/status``, reset to the current RSS through ``/proc/self/clear_refs``
just before the validation: ``ru_maxrss`` alone cannot show it, as Linux keeps a process's
``ru_maxrss`` across fork and exec, so the child starts with pytest's peak (often higher than
anything the child does). ``ru_maxrss`` is checked as well.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from validation_samples import REPO

SCRIPT = textwrap.dedent(
    r"""
    import io, json, resource, sys
    from dataset_ops.validation import DEFAULT_MAX_LINE_BYTES, load_rules, validate_stream

    fmt = sys.argv[1]
    LONG = DEFAULT_MAX_LINE_BYTES + (1 << 20)  # 65 MiB

    if fmt == "jsonl":
        rules, name = load_rules("training_jsonl"), "big.jsonl"
        good = b'{"question": "q", "answer": "a\\n#### 1"}\n'
        head, body, tail = good + b'{"question": "', b"x", b'", "answer": "a\\n#### 1"}\n' + good
    elif fmt == "csv":
        rules, name = load_rules("tweets_csv"), "big.csv"
        cols = [c.name for c in rules.csv.columns]
        row = b"5.70306E+17,neutral,1,,,Virgin America,,cairdin,,0,hello,,24-02-2015 11.35,,\r\n"
        head = ",".join(cols).encode() + b"\r\n" + row + b"5.7E+17,neutral,1,,,"
        body, tail = b"x", b"\r\n" + row
    else:
        rules, name = load_rules("text"), "big.txt"
        head, body, tail = b"first line\n", b"x", b"\nlast line\n"


    class Generated(io.RawIOBase):
        # head, then LONG bytes of `body`, then tail; never more than one read's worth in memory
        def __init__(self):
            self.parts = [(head, 1), (body, LONG), (tail, 1)]
            self.pos = 0

        def readable(self):
            return True

        def read(self, n=-1):
            while self.parts:
                piece, repeat = self.parts[0]
                if len(piece) == 1 and repeat > 1:
                    take = min(n, repeat)
                    self.parts[0] = (piece, repeat - take)
                    if repeat - take == 0:
                        self.parts.pop(0)
                    return piece * take
                self.parts.pop(0)
                return piece
            return b""


    def status_kib(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])


    validate_stream(io.BytesIO(head + tail), rules, name=name)  # warm up: imports, pools
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS
    rss_before = status_kib("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = validate_stream(Generated(), rules, name=name)
    print(json.dumps({
        "delta_kib": status_kib("VmHWM") - rss_before,
        "maxrss_delta_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before,
        "result": result.to_dict(),
        "head": len(head),
    }))
    """
)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "txt"])
def test_a_65_mib_line_is_detected_without_buffering_it(fmt):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    result = out["result"]
    assert out["delta_kib"] < 100 * 1024, f"peak RSS grew by {out['delta_kib'] / 1024:.0f} MiB"
    assert out["maxrss_delta_kib"] < 100 * 1024
    errors = result["errors"]
    assert [e["code"] for e in errors] == ["line_too_long"]
    assert result["content_bytes"] > 64 << 20
    if fmt == "csv":  # the record never ends within the limit: reading stops there
        assert (errors[0]["line"], result["complete"], result["records"]) == (3, False, 1)
    elif fmt == "jsonl":  # lines 1 and 3 are good; line 2 is reported where it starts
        assert (errors[0]["line"], errors[0]["offset"]) == (2, out["head"] - len('{"question": "'))
        assert (result["records"], result["lines"], result["complete"]) == (3, 3, True)
    else:
        assert (errors[0]["line"], errors[0]["offset"]) == (2, out["head"])
        assert (result["lines"], result["complete"]) == (3, True)
