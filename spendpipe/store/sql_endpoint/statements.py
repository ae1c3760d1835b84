"""Which SQL the endpoint runs: one read-only statement, checked on ClickHouse's own tokens.

The check reads the query as ClickHouse's lexer does (quoted strings and identifiers, `--`,
`# ` and nested `/* */` comments), so a keyword inside a string is data and a keyword inside a
comment is nothing, while a statement behind a comment or a `;` is still seen. Anything the
lexer does not recognise (heredocs, stray characters, an unterminated comment or string) is
refused rather than guessed at. It is the first of two walls: every query also runs with
ClickHouse's `readonly=1` (see `engine`).
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

from spendpipe.store.sql_endpoint.errors import ClickhouseError

STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})
"""The statements that only read."""

FORBIDDEN_FUNCTIONS = frozenset(
    name.lower()
    for name in (
        "file", "fileCluster", "url", "urlCluster", "input", "remote", "remoteSecure", "cluster",
        "clusterAllReplicas", "mysql", "postgresql", "jdbc", "odbc", "sqlite", "mongodb", "redis",
        "executable", "executablePool", "dictionary", "gcs", "oss", "cosn", "ytsaurus", "bigquery",
        "arrowFlight", "arrowflight", "prometheusQuery", "timeSeriesData", "fuzzJSON", "fuzzQuery",
        "filesystem", "python", "arrowstream", "eval",
    )
)  # fmt: skip
"""Functions and table functions that read files, URLs or other servers; chDB's `python` and
`arrowstream`, which read objects of the process the engine runs in (the pipeline's); and
`eval`, whose query is a string this check cannot read."""
FORBIDDEN_PREFIXES = ("s3", "hdfs", "azure", "iceberg", "deltalake", "hudi", "paimon")
"""Families of them (`s3Cluster`, `icebergS3`, `azureBlobStorage`, `deltaLakeCluster`, `paimonLocal`...)."""
FORBIDDEN_WORDS = frozenset({"INFILE", "OUTFILE"})
"""`INTO OUTFILE` writes a file wherever the engine runs: in this process."""

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<line_comment>(--|\#[ !])[^\n]*)
    | (?P<string>'(?:[^'\\]|\\.|'')*')
    | (?P<quoted>"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
    | (?P<number>0[xX][0-9a-fA-F]+|0[bB][01]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<parameter>\{[A-Za-z_][A-Za-z0-9_]*:[^{}]*\})
    | (?P<semicolon>;)
    | (?P<symbol><=>|==|!=|<>|<=|>=|\|\||::|->|[-+*/%=<>(),.\[\]{}?:^!@~&|])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokens(sql: str) -> Iterator[Token]:
    """The tokens of `sql` that mean something: comments and whitespace are dropped."""
    position = 0
    while position < len(sql):
        if sql.startswith("/*", position):
            position = _comment_end(sql, position)
            continue
        match = _TOKEN.match(sql, position)
        if match is None or match.lastgroup is None:
            raise refused(f"cannot read the query at {sql[position : position + 20]!r}")
        position = match.end()
        if match.lastgroup not in ("space", "line_comment"):
            yield Token(match.lastgroup, match.group())


def _comment_end(sql: str, start: int) -> int:
    """Where a `/* */` comment ends; ClickHouse nests them, so this does too."""
    depth, position = 0, start
    while position < len(sql):
        if sql.startswith("/*", position):
            depth, position = depth + 1, position + 2
        elif sql.startswith("*/", position):
            depth, position = depth - 1, position + 2
            if depth == 0:
                return position
        else:
            position += 1
    raise refused("a comment is not closed")


def check_read_only(sql: str) -> list[Token]:
    """The query's tokens if it is one statement that only reads; else a `ClickhouseError`."""
    found = list(tokens(sql))
    while found and found[-1].kind == "semicolon":
        found.pop()
    if not found:
        raise ClickhouseError(62, "SYNTAX_ERROR", "Empty query")
    if any(token.kind == "semicolon" for token in found):
        raise refused("one statement per request: this one has more than one")
    first = next((token for token in found if token.text != "("), found[0])
    if first.kind != "word" or first.text.upper() not in STATEMENTS:
        raise refused(f"{first.text.upper()} is not a read: only {', '.join(sorted(STATEMENTS))} run here")
    for token, following in zip(found, [*found[1:], None], strict=True):
        if token.kind == "word" and token.text.upper() in FORBIDDEN_WORDS:
            raise refused(f"{token.text.upper()} reads or writes files")
        called = following is not None and following.text == "("
        if called and token.kind in ("word", "quoted") and _reaches_out(name := _unquoted(token)):
            raise refused(f"{name}() reads files, URLs or other servers")
    return found


def _unquoted(token: Token) -> str:
    """A name as ClickHouse resolves it: `file` and "file" call file(). A quoted name with an
    escape (`\x66ile` is file too) is refused rather than decoded."""
    if token.kind != "quoted":
        return token.text
    if "\\" in token.text:
        raise refused(f"a function name with an escape: {token.text}")
    return token.text[1:-1].replace(token.text[0] * 2, token.text[0])


def _reaches_out(name: str) -> bool:
    lowered = name.lower()
    return lowered in FORBIDDEN_FUNCTIONS or lowered.startswith(FORBIDDEN_PREFIXES)


def output_format(found: list[Token]) -> str | None:
    """The format a trailing `FORMAT name` clause asks for (before a `SETTINGS` clause, if any)."""
    depth = 0
    chosen = None
    for index, token in enumerate(found):
        depth += {"(": 1, ")": -1}.get(token.text, 0) if token.kind == "symbol" else 0
        following = found[index + 1] if index + 1 < len(found) else None
        if depth == 0 and token.kind == "word" and token.text.upper() == "FORMAT" and _names_format(following):
            chosen = following.text.strip('`"') if following is not None else None
    return chosen


def _names_format(token: Token | None) -> bool:
    return token is not None and token.kind in ("word", "quoted") and token.text.upper() not in _CLAUSES


_CLAUSES = frozenset({"FROM", "WHERE", "GROUP", "ORDER", "LIMIT", "SETTINGS", "HAVING", "UNION", "AS", "AND", "OR"})


def refused(reason: str) -> ClickhouseError:
    return ClickhouseError(164, "READONLY", f"Refused by the spendpipe SQL endpoint: {reason}")
