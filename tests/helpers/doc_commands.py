"""The shell commands the project's documentation shows, found with markdown-it-py.

Documents: ``README.md``, ``docs/*.md``, ``include/**/README.md`` and ``benchmarks/README.md``.
A command is

* a logical line of a fenced block whose info string is ``bash``, ``sh``, ``shell`` or
  ``console`` (``$ `` prompts removed; lines continued with a trailing ``\\`` joined; a
  ``for``/``while``/``if`` compound kept whole up to its ``done``/``fi``), except comment lines;
* a logical line of a fenced block without an info string that starts like a command (usage
  synopses such as ``.venv/bin/python benchmarks/bench_upload.py [--size-mib 2048]``; lines
  indented below it continue it). Other lines of such a block are output and are ignored;
* an inline code span that starts like a command (:data:`COMMAND_START`): ``make demo``,
  ``airflow dags test imdb_load``, ``IMDB_BASE_URL=... make demo``, ...

Commands are compared in :func:`normalize` form: a trailing ``# comment`` removed (outside
quotes), whitespace collapsed to one space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[2]

#: fenced-block info strings whose every line is a command
SHELL_INFOS = {"bash", "sh", "shell", "console"}

#: how a command starts: a program the project's docs tell users to run, or ``NAME=value cmd``
COMMAND_START = re.compile(
    r"""^(?:
        make(?:\s|$)
      | airflow\s
      | \.venv/bin/\S+
      | python3?\s+(?:-m\s|-c\s|\S+\.py\b)
      | uv\s | pip\s
      | docker\s
      | cp\s | source\s | export\s | bash\s | zcat\s | gzip\s | sha256sum\s | curl\s
      | psql\s | mysql\s
      | schemathesis\s
      | scripts/\S+\s
      | [A-Z][A-Z0-9_]*=\S+\s+\S
    )""",
    re.VERBOSE,
)

_COMPOUND_OPEN = re.compile(r"^(for|while|until|if|case)\b")
_COMPOUND_CLOSE = re.compile(r"(?:^|;\s*|\s)(done|fi|esac)\s*$")


@dataclass(frozen=True)
class DocCommand:
    """One command as a document shows it.

    :param text: the command in :func:`normalize` form (the registry's key).
    :param path: the document, relative to the repository root (``docs/airflow-dags-test.md``).
    :param line: 1-based line of the block or paragraph that shows it.
    :param kind: ``"block"`` (a fenced code block) or ``"inline"`` (a code span).
    """

    text: str
    path: str
    line: int
    kind: str


def documents(repo: Path = REPO) -> list[Path]:
    """The documents whose commands count, sorted: README.md, docs/*.md, include/**/README.md,
    benchmarks/README.md (those that exist)."""
    found = [repo / "README.md", repo / "benchmarks" / "README.md"]
    found += sorted((repo / "docs").glob("*.md"))
    found += sorted((repo / "include").rglob("README.md"))
    return [p for p in found if p.is_file()]


def strip_comment(line: str) -> str:
    """``line`` without a shell comment: a ``#`` at the start or after whitespace, outside
    single and double quotes, and everything after it."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def normalize(command: str) -> str:
    """The comparable form of a command: comments stripped from each line, the lines of a
    compound joined into one shell line (``; `` between commands, a space after ``do``,
    ``then``, ``else``, ``{``, ``|``, ``&&``, ``||`` and ``;``), whitespace collapsed to single
    spaces."""
    lines = [" ".join(strip_comment(line).split()) for line in command.splitlines()]
    joined = ""
    for line in filter(None, lines):
        if joined:
            glue = " " if re.search(r"(?:\b(?:do|then|else)|[{|;]|&&)$", joined) else "; "
            joined += glue
        joined += line
    return joined


def is_command(text: str) -> bool:
    """True if ``text`` (one line) starts like a command (:data:`COMMAND_START`)."""
    return bool(COMMAND_START.match(text.strip()))


def _shell_block_commands(content: str, console: bool) -> list[str]:
    """Logical commands of a shell block: continuations joined, compounds kept whole."""
    commands: list[str] = []
    pending = ""
    compound: list[str] = []
    for raw in content.splitlines():
        line = raw.rstrip()
        if console:
            if not line.startswith("$ ") and not pending and not compound:
                continue  # output
            line = line.removeprefix("$ ")
        if pending:
            line = pending + " " + line.strip()
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        code = strip_comment(line).strip()
        if not code and not compound:
            continue
        if compound or _COMPOUND_OPEN.match(code):
            compound.append(code)
            if _COMPOUND_CLOSE.search(code):
                commands.append("\n".join(compound))
                compound = []
            continue
        commands.append(code)
    if pending:
        commands.append(pending)
    if compound:
        commands.append("\n".join(compound))
    return commands


def _synopsis_block_commands(content: str) -> list[str]:
    """Command lines of a block without an info string; indented lines continue them."""
    commands: list[str] = []
    for raw in content.splitlines():
        if commands and raw[:1].isspace() and raw.strip() and commands[-1] is not None:
            commands[-1] += " " + raw.strip()
        elif is_command(raw) and not raw[:1].isspace():
            commands.append(raw.strip())
        else:
            commands.append(None)  # output: ends a command
    return [c for c in commands if c is not None]


def _inline_code(tokens) -> list[tuple[str, int]]:
    """(code span text, line) of every inline code span, tables included."""
    spans = []
    for token in tokens:
        if token.type == "inline" and token.children:
            line = token.map[0] + 1 if token.map else 0
            spans += [(child.content, line) for child in token.children if child.type == "code_inline"]
    return spans


def extract(path: Path, repo: Path = REPO) -> list[DocCommand]:
    """Every command ``path`` shows, in document order (duplicates kept)."""
    rel = path.relative_to(repo).as_posix()
    tokens = MarkdownIt("commonmark").enable("table").parse(path.read_text(encoding="utf-8"))
    found: list[DocCommand] = []
    for token in tokens:
        if token.type not in ("fence", "code_block"):
            continue
        info = token.info.strip().split()[0].lower() if token.info.strip() else ""
        line = token.map[0] + 1 if token.map else 0
        if info in SHELL_INFOS:
            texts = _shell_block_commands(token.content, console=info == "console")
        elif info == "" and token.type == "fence":
            texts = _synopsis_block_commands(token.content)
        else:
            continue
        found += [DocCommand(normalize(t), rel, line, "block") for t in texts if normalize(t)]
    for content, line in _inline_code(tokens):
        if is_command(content):
            found.append(DocCommand(normalize(content), rel, line, "inline"))
    return found


def all_commands(repo: Path = REPO) -> dict[str, list[DocCommand]]:
    """Every documented command, normalized text -> where the documents show it."""
    commands: dict[str, list[DocCommand]] = {}
    for path in documents(repo):
        for command in extract(path, repo):
            commands.setdefault(command.text, []).append(command)
    return commands


def section_text(path: Path, line: int) -> str:
    """What a reader of ``path`` sees around 1-based ``line``: the document's preamble (the text
    before its second heading) and the section holding ``line`` (from the heading above it to the
    next heading of any level), whitespace collapsed and lower-cased."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").parse(text)
    starts = [t.map[0] for t in tokens if t.type == "heading_open" and t.map]
    bounds = [*starts, len(lines)]
    preamble_end = bounds[1] if len(bounds) > 1 else len(lines)
    start = max([s for s in starts if s <= line - 1], default=0)
    end = min([s for s in bounds if s > line - 1], default=len(lines))
    chosen = lines[:preamble_end] + ([] if start < preamble_end else lines[start:end])
    return " ".join(" ".join(chosen).split()).lower()
