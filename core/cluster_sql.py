"""Adapting Yiwang's DuckDB SQL to DuckLake (cluster mode).

DuckLake stores tables as Parquet files listed in a PostgreSQL catalog. It has no indexes, so
it refuses PRIMARY KEY, UNIQUE, FOREIGN KEY and CHECK constraints, CREATE INDEX and
sequences (measured with duckdb-extension-ducklake 1.5.5; docs/cluster.md lists every
difference). The migrations are written once, for embedded DuckDB; ``adapt_migration`` turns
one migration script into statements DuckLake accepts and says what it changed:

- PRIMARY KEY / UNIQUE / CHECK / REFERENCES / CONSTRAINT clauses are removed (a primary key
  column keeps its NOT NULL);
- CREATE [UNIQUE] INDEX statements are dropped;
- CREATE SEQUENCE becomes a PostgreSQL sequence (``Statement.kind == "sequence"``);
- ``nextval('x')`` becomes ``yw_nextval('x')``, a function the cluster store registers, which
  takes values from that PostgreSQL sequence.

>>> stmts, notes = adapt_migration("CREATE TABLE t (id INT PRIMARY KEY, n INT CHECK (n > 0));")
>>> stmts[0].sql
'CREATE TABLE t (id INT NOT NULL, n INT)'
>>> [n.change for n in notes]
['dropped PRIMARY KEY on t.id', 'dropped CHECK on t.n: CHECK (n > 0)']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Adaptation", "Statement", "adapt_migration", "rewrite_nextval", "split_statements"]

_TOKEN = re.compile(
    r"""
    (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<space>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Statement:
    """One statement of an adapted migration: ``kind`` is "sql" (run in DuckDB) or
    "sequence" (create the PostgreSQL sequence ``name`` starting at ``start``)."""

    kind: str
    sql: str
    name: str | None = None
    start: int = 1


@dataclass(frozen=True)
class Adaptation:
    """What the adaptation changed: the object (table, index, sequence) and how."""

    object: str
    change: str


@dataclass
class _Tok:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else self.text


def _tokens(sql: str) -> list[_Tok]:
    return [_Tok(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(sql)]


def _text(toks: list[_Tok]) -> str:
    return "".join(t.text for t in toks)


def split_statements(sql: str) -> list[str]:
    """Split a script on top-level semicolons (not those in strings or comments); comments are
    kept with the statement that follows them and empty statements are dropped."""
    out, current = [], []
    for tok in _tokens(sql):
        if tok.kind == "other" and tok.text == ";":
            out.append(_text(current))
            current = []
        else:
            current.append(tok)
    out.append(_text(current))
    return [s.strip() for s in out if _significant(_tokens(s))]


def _significant(toks: list[_Tok]) -> list[_Tok]:
    return [t for t in toks if t.kind not in ("space", "comment")]


def rewrite_nextval(sql: str) -> str:
    """``nextval(`` → ``yw_nextval(`` outside strings, comments and quoted names."""
    if "nextval" not in sql.lower():
        return sql
    toks = _tokens(sql)
    return "".join(
        "yw_nextval" if t.kind == "word" and t.upper == "NEXTVAL" and _next_is_paren(toks, i)
        else t.text
        for i, t in enumerate(toks)
    )


def _next_is_paren(toks: list[_Tok], i: int) -> bool:
    for t in toks[i + 1:]:
        if t.kind in ("space", "comment"):
            continue
        return t.kind == "other" and t.text == "("
    return False


def _skip_parens(toks: list[_Tok], i: int) -> int:
    """Index just past the balanced parenthesis group starting at ``toks[i] == '('``."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind == "other" and toks[j].text == "(":
            depth += 1
        elif toks[j].kind == "other" and toks[j].text == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError("unbalanced parentheses")


def _next_sig(toks: list[_Tok], i: int) -> int:
    while i < len(toks) and toks[i].kind in ("space", "comment"):
        i += 1
    return i


def _strip_column(toks: list[_Tok], table: str, notes: list[Adaptation]) -> list[_Tok]:
    """Remove constraint clauses from one column definition."""
    name = next((t.text for t in toks if t.kind in ("word", "quoted")), "?")
    out: list[_Tok] = []
    has_not_null = False
    pk = False
    i = 0
    while i < len(toks):
        t = toks[i]
        u = t.upper
        if t.kind == "word" and u == "PRIMARY":
            j = _next_sig(toks, i + 1)
            i = j + 1  # past KEY
            pk = True
            notes.append(Adaptation(table, f"dropped PRIMARY KEY on {table}.{name}"))
            continue
        if t.kind == "word" and u == "UNIQUE":
            i += 1
            notes.append(Adaptation(table, f"dropped UNIQUE on {table}.{name}"))
            continue
        if t.kind == "word" and u == "CONSTRAINT":
            i = _next_sig(toks, i + 1) + 1  # drop "CONSTRAINT name"; the clause follows
            continue
        if t.kind == "word" and u == "CHECK":
            j = _next_sig(toks, i + 1)
            end = _skip_parens(toks, j)
            notes.append(Adaptation(table, f"dropped CHECK on {table}.{name}: "
                                           f"{_text(toks[i:end]).strip()}"))
            i = end
            continue
        if t.kind == "word" and u == "REFERENCES":
            j = _next_sig(toks, i + 1) + 1  # table name
            k = _next_sig(toks, j)
            if k < len(toks) and toks[k].text == "(":
                j = _skip_parens(toks, k)
            notes.append(Adaptation(table, f"dropped REFERENCES on {table}.{name}"))
            i = j
            continue
        if t.kind == "word" and u == "NOT":
            j = _next_sig(toks, i + 1)
            if j < len(toks) and toks[j].upper == "NULL":
                has_not_null = True
        out.append(t)
        i += 1
    text_tail = out
    if pk and not has_not_null:
        while text_tail and text_tail[-1].kind in ("space", "comment"):
            text_tail = text_tail[:-1]
        trailing = out[len(text_tail):]
        out = [*text_tail, _Tok("space", " "), _Tok("word", "NOT"), _Tok("space", " "),
               _Tok("word", "NULL"), *trailing]
    return _collapse_spaces(out)


def _collapse_spaces(toks: list[_Tok]) -> list[_Tok]:
    """Single spaces where a removed clause left several; no space before ',' or ')'."""
    out: list[_Tok] = []
    for t in toks:
        if t.kind == "space" and "\n" not in t.text:
            if out and out[-1].kind == "space":
                continue
            t = _Tok("space", " ")
        out.append(t)
    while out and out[-1].kind == "space" and "\n" not in out[-1].text:
        out.pop()
    return out


def _split_elements(toks: list[_Tok]) -> list[list[_Tok]]:
    """Split the inside of a CREATE TABLE body on top-level commas."""
    parts, current, depth = [], [], 0
    for t in toks:
        if t.kind == "other" and t.text == "(":
            depth += 1
        elif t.kind == "other" and t.text == ")":
            depth -= 1
        if depth == 0 and t.kind == "other" and t.text == ",":
            parts.append(current)
            current = []
        else:
            current.append(t)
    parts.append(current)
    return parts


_TABLE_CONSTRAINT = ("PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT")


def _adapt_create_table(toks: list[_Tok], notes: list[Adaptation]) -> str:
    sig = [i for i, t in enumerate(toks) if t.kind not in ("space", "comment")]
    # table name: the significant token after TABLE [IF NOT EXISTS]
    k = next(n for n, i in enumerate(sig) if toks[i].upper == "TABLE") + 1
    if toks[sig[k]].upper == "IF":
        k += 3
    table = toks[sig[k]].text
    open_i = next((i for i in sig[k + 1:] if toks[i].text == "("), None)
    if open_i is None or any(toks[i].upper == "AS" for i in sig[k + 1:k + 2]):
        return _text(toks)  # CREATE TABLE … AS SELECT: no constraints possible
    close_i = _skip_parens(toks, open_i) - 1
    elements = _split_elements(toks[open_i + 1:close_i])
    kept: list[list[_Tok]] = []
    pk_columns: list[str] = []
    for el in elements:
        first = _significant(el)
        if first and first[0].upper in _TABLE_CONSTRAINT:
            clause = " ".join(_text(el).split())
            if first[0].upper == "PRIMARY":
                inner = _text(el)[_text(el).index("(") + 1:_text(el).rindex(")")]
                pk_columns = [c.strip().strip('"') for c in inner.split(",")]
            notes.append(Adaptation(table, f"dropped table constraint on {table}: {clause}"))
            continue
        kept.append(el)
    rebuilt = []
    for el in kept:
        col = _strip_column(el, table, notes)
        names = [t.text.strip('"') for t in col if t.kind in ("word", "quoted")]
        if names and names[0] in pk_columns and not _has_not_null(col):
            trailing_ws = []
            while col and col[-1].kind in ("space", "comment"):
                trailing_ws.insert(0, col.pop())
            col = [*col, _Tok("space", " "), _Tok("word", "NOT"), _Tok("space", " "),
                   _Tok("word", "NULL"), *trailing_ws]
        text = _text(col)
        rebuilt.append(text if "--" in text.rsplit("\n", 1)[-1] else text.rstrip())
    # a comment that ended a dropped element must not swallow the closing parenthesis
    body = ",".join(rebuilt).rstrip()
    if "--" in body.rsplit("\n", 1)[-1]:
        body += "\n"
    return _text(toks[:open_i + 1]) + body + _text(toks[close_i:])


def _has_not_null(toks: list[_Tok]) -> bool:
    words = [t.upper for t in toks if t.kind == "word"]
    return any(a == "NOT" and b == "NULL" for a, b in zip(words, words[1:], strict=False))


def _strip_leading(sql: str) -> str:
    toks = _tokens(sql)
    i = _next_sig(toks, 0)
    return _text(toks[i:])


def adapt_migration(sql: str) -> tuple[list[Statement], list[Adaptation]]:
    """Adapt one migration script for DuckLake: statements to run and what changed."""
    statements: list[Statement] = []
    notes: list[Adaptation] = []
    for raw in split_statements(sql):
        stmt = _strip_leading(raw)
        toks = _tokens(stmt)
        words = [t.upper for t in _significant(toks)[:6]]
        head = " ".join(words)
        if words[:2] == ["CREATE", "SEQUENCE"] or head.startswith("CREATE OR REPLACE SEQUENCE"):
            sig = _significant(toks)
            k = words.index("SEQUENCE") + 1
            if sig[k].upper == "IF":
                k += 3
            name = sig[k].text.strip('"')
            m = re.search(r"\bSTART\s+(?:WITH\s+)?(-?\d+)", stmt, re.IGNORECASE)
            start = int(m.group(1)) if m else 1
            statements.append(Statement("sequence", stmt, name=name, start=start))
            notes.append(Adaptation(name, f"sequence {name} is a PostgreSQL sequence"))
            continue
        if (words[:2] == ["CREATE", "INDEX"] or words[:3] == ["CREATE", "UNIQUE", "INDEX"]):
            notes.append(Adaptation(words[2] if words[1] == "INDEX" else words[3],
                                    f"dropped index: {' '.join(stmt.split())}"))
            continue
        if words[:1] == ["ALTER"] and "ADD" in words and any(
                w in words for w in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN")) \
                and "COLUMN" not in words:
            notes.append(Adaptation(words[2], f"dropped constraint: {' '.join(stmt.split())}"))
            continue
        if "TABLE" in words and words[0] == "CREATE":
            stmt = _adapt_create_table(toks, notes)
        elif words[:1] == ["ALTER"] and "COLUMN" in words:
            table = _significant(toks)[2].text
            col_start = next(i for i, t in enumerate(toks) if t.upper == "COLUMN") + 1
            stmt = _text(toks[:col_start]) + _text(_strip_column(toks[col_start:], table, notes))
        statements.append(Statement("sql", rewrite_nextval(stmt)))
    return statements, notes
