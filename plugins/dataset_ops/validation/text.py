"""Plain text: UTF-8 (exact offset of every invalid sequence), no NUL bytes (unless allowed),
lines up to ``max_line_bytes``. Records are lines (empty lines included).

Blocks are checked as they come with an incremental UTF-8 decoder, so no line is ever
gathered: a line of any length costs one block of memory.
"""

from __future__ import annotations

from dataset_ops.validation.reader import BlockSource, ErrorCollector, Utf8Stream
from dataset_ops.validation.rules import RuleSet


class TextValidator:
    """Validate plain UTF-8 text from a :class:`BlockSource`; see the module docstring.

    :param rules: the rule set (``text.allow_nul``, ``max_line_bytes``).
    :param errors: where errors go.
    """

    def __init__(self, rules: RuleSet, errors: ErrorCollector):
        self.rules = rules
        self.errors = errors
        self.max_line = rules.max_line_bytes
        self.lines = 0
        self.records = 0

    def run(self, src: BlockSource) -> None:
        """Read ``src`` to the end. :raises Stop: a fatal error or the error cap."""
        utf8 = Utf8Stream()
        allow_nul = self.rules.text.allow_nul
        max_line = self.max_line
        pos = src.start_offset
        newlines = 0  # '\n' seen before `pos`
        line_len = 0  # bytes of the current line before `pos`
        line_start = pos
        reported = False  # the current line was already reported as too long
        first = True
        for block in src.blocks():
            if not allow_nul:
                nul = block.find(b"\0")
                if nul >= 0:
                    line = newlines + 1 + block.count(b"\n", 0, nul)
                    if first:
                        raise self.errors.fatal(
                            "format_mismatch",
                            f"content does not look like text: NUL byte at offset {pos + nul:,} "
                            "(binary data?)",
                            line,
                            pos + nul,
                        )
                    self._nul_bytes(block, pos, newlines)
            first = False
            seen, number = 0, newlines + 1  # line numbers counted onwards, error after error
            for bad, reason in utf8.feed(block, pos):
                index = max(bad - pos, 0)
                number += block.count(b"\n", seen, index)
                seen = index
                self.errors.add("invalid_utf8", reason, number, bad)
            count = block.count(b"\n")
            if count == 0:
                line_len += len(block)
            else:
                first_nl = block.find(b"\n")
                self._check_len(line_len + first_nl, newlines + 1, line_start, reported)
                if len(block) - first_nl > max_line:
                    self._check_inner_lines(block, pos, newlines, first_nl)
                last_nl = block.rfind(b"\n")
                line_len = len(block) - last_nl - 1
                line_start = pos + last_nl + 1
                reported = False
            if line_len > max_line and not reported:
                self._check_len(line_len, newlines + count + 1, line_start, False, streaming=True)
                reported = True
            newlines += count
            pos += len(block)
            src.records_hint = self.lines = self.records = newlines
        for bad, reason in utf8.finish(pos):
            self.errors.add("invalid_utf8", reason, newlines + 1, bad)
        self.lines = newlines + (1 if line_len else 0)
        self.records = self.lines

    def _check_len(
        self, length: int, number: int, offset: int, reported: bool, streaming: bool = False
    ) -> None:
        if length > self.max_line and not reported:
            size = f"at least {length:,}" if streaming else f"{length:,}"
            self.errors.add(
                "line_too_long",
                f"line is longer than max_line_bytes ({self.max_line:,} bytes): {size} bytes",
                number,
                offset,
            )

    def _check_inner_lines(self, block: bytes, pos: int, newlines: int, first_nl: int) -> None:
        """Lines that start and end inside ``block`` (only when a block can hold a too-long one)."""
        start = first_nl + 1
        number = newlines + 2
        while True:
            nl = block.find(b"\n", start)
            if nl < 0:
                return
            self._check_len(nl - start, number, pos + start, False)
            start, number = nl + 1, number + 1

    def _nul_bytes(self, block: bytes, pos: int, newlines: int) -> None:
        i = block.find(b"\0")
        line = newlines + 1 + block.count(b"\n", 0, i)
        while True:
            self.errors.add("nul_byte", "NUL byte in text", line, pos + i)
            j = block.find(b"\0", i + 1)
            if j < 0:
                return
            line += block.count(b"\n", i, j)
            i = j
