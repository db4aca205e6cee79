"""Just enough SQL lexing to name the tables a statement reads and writes.

Used for three things: counting how often each table is referenced by a compiled ORM query
(so a table that also appears in a subquery loses its precise tags), naming the tables a raw
``SELECT`` reads, and naming the tables a raw ``INSERT``/``UPDATE``/``DELETE``/``TRUNCATE``/
``MERGE``/``COPY`` writes. It is a lexer, not a parser: every mistake it can make must err toward
more dependencies (a column that happens to be named like a table counts as a reference) or more
invalidation (a write whose target it cannot name invalidates every tracked table).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Statement", "parse"]

# String literals and comments are skipped; identifiers are quoted ("...", "" escapes) or bare.
# A trailing "." marks the identifier as a qualifier (schema or table prefix of a column).
_TOKEN = re.compile(
    r"""
      (?P<skip>'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/|\$\$.*?\$\$|%s|%\(\w+\)s)
    | "(?P<quoted>(?:[^"]|"")+)"(?P<qdot>\s*\.)?
    | (?P<bare>[A-Za-z_][A-Za-z0-9_$]*)(?P<bdot>\s*\.)?
    | (?P<punct>[(),;])
    """,
    re.VERBOSE | re.DOTALL,
)

_READ_START = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "EXPLAIN", "SHOW", "FETCH"})
_WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "TRUNCATE", "MERGE", "COPY"})
_DDL_START = frozenset(
    {
        "CREATE",
        "ALTER",
        "DROP",
        "COMMENT",
        "GRANT",
        "REVOKE",
        "ANALYZE",
        "VACUUM",
        "CLUSTER",
        "REINDEX",
    }
)
# Statements that may write tables they do not name (procedural code).
_OPAQUE_START = frozenset({"DO", "CALL"})
# Words that end a FROM list (so the word after a table name is not taken for an alias).
_CLAUSE = frozenset(
    {
        "WHERE",
        "GROUP",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "HAVING",
        "WINDOW",
        "UNION",
        "INTERSECT",
        "EXCEPT",
        "FOR",
        "ON",
        "USING",
        "INNER",
        "LEFT",
        "RIGHT",
        "FULL",
        "CROSS",
        "JOIN",
        "NATURAL",
        "LATERAL",
        "SET",
        "RETURNING",
        "FETCH",
        "QUALIFY",
        "WITH",
    }
)
# Words that may sit between a write keyword and its table name.
_NOISE = frozenset({"ONLY", "TABLE", "IF", "EXISTS", "INTO", "FROM"})


@dataclass(frozen=True)
class _Token:
    kind: str  # "word" (bare identifier or keyword), "name" (quoted identifier), "punct"
    text: str  # bare words as written; quoted names unescaped
    qualifier: bool = False  # followed by "." (a schema or table qualifier)

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        # PostgreSQL folds bare identifiers to lower case.
        return self.text.lower() if self.kind == "word" else self.text


@dataclass(frozen=True)
class Statement:
    """What a SQL string reads and writes, as far as table names go."""

    #: Every identifier used as a table-or-column reference (not as a qualifier), with counts.
    refs: Counter[str]
    #: Names following FROM / JOIN (the tables a read names, including unknown ones).
    from_names: frozenset[str]
    reads: bool
    writes: bool
    #: Tables written (bare names, schema dropped); meaningful only when ``writes``.
    targets: frozenset[str]
    #: ``True`` when a write keyword was found but a target could not be named.
    unknown_target: bool
    #: ``SELECT ... FOR UPDATE / FOR SHARE``.
    locks: bool
    ddl: bool


def _tokens(sql: str) -> list[_Token]:
    out: list[_Token] = []
    for m in _TOKEN.finditer(sql):
        if m.group("skip") is not None:
            continue
        if m.group("quoted") is not None:
            out.append(_Token("name", m.group("quoted").replace('""', '"'), bool(m.group("qdot"))))
        elif m.group("bare") is not None:
            out.append(_Token("word", m.group("bare"), bool(m.group("bdot"))))
        else:
            out.append(_Token("punct", m.group("punct")))
    return out


def _name_at(tokens: list[_Token], i: int) -> tuple[str | None, int]:
    """Read a possibly schema-qualified name starting at ``tokens[i]``; return (name, next i)."""
    name = None
    while i < len(tokens) and tokens[i].kind in ("word", "name"):
        name = tokens[i].name
        if not tokens[i].qualifier:
            return name, i + 1
        i += 1
    return name, i


def _target(tokens: list[_Token], i: int) -> tuple[str | None, int]:
    while i < len(tokens) and tokens[i].upper in _NOISE:
        i += 1
    if i < len(tokens) and tokens[i].kind == "word" and tokens[i].upper == "NOT":
        i += 2  # IF NOT EXISTS
    return _name_at(tokens, i)


@lru_cache(maxsize=4096)
def parse(sql: str) -> Statement:
    """Lex ``sql`` once (cached: ORM statements repeat with different parameters)."""
    tokens = _tokens(sql)
    refs: Counter[str] = Counter(
        t.name for t in tokens if t.kind in ("word", "name") and not t.qualifier
    )
    first = next((t.upper for t in tokens if t.kind == "word"), "")
    from_names: set[str] = set()
    targets: set[str] = set()
    writes = unknown = locks = False
    for i, tok in enumerate(tokens):
        word = tok.upper
        if word in ("FROM", "JOIN"):
            j = i + 1
            while j < len(tokens) and tokens[j].upper in ("ONLY", "LATERAL"):
                j += 1
            while True:  # FROM a [AS] [x], b [y], ...
                name, j = _name_at(tokens, j)
                if name is None:
                    break
                from_names.add(name)
                if j < len(tokens) and tokens[j].upper == "AS":
                    j += 1
                if j < len(tokens) and tokens[j].kind != "punct" and tokens[j].upper not in _CLAUSE:
                    j += 1  # an alias
                if j < len(tokens) and tokens[j].kind == "punct" and tokens[j].text == ",":
                    j += 1
                    continue
                break
        prev = tokens[i - 1].upper if i else ""
        if word == "UPDATE" and prev in ("FOR", "KEY", "DO"):
            # SELECT ... FOR [NO KEY] UPDATE locks; ON CONFLICT DO UPDATE belongs to an INSERT.
            locks = locks or prev != "DO"
            continue
        if word == "SHARE" and prev in ("FOR", "KEY"):
            locks = True
            continue
        if word in ("DELETE", "UPDATE") and prev == "ON":
            continue  # ... ON DELETE CASCADE (DDL)
        if word in _WRITE_WORDS:
            writes = True
            if word == "TRUNCATE":
                j = i + 1
                while True:
                    name, j = _target(tokens, j)
                    if name is None:
                        unknown = True
                        break
                    targets.add(name)
                    if j < len(tokens) and tokens[j].kind == "punct" and tokens[j].text == ",":
                        j += 1
                        continue
                    break
            elif word == "INSERT" and i + 1 < len(tokens) and tokens[i + 1].upper != "INTO":
                unknown = True
            else:
                name, _ = _target(tokens, i + 1)
                if name is None or name.upper() in ("SET", "WHERE", "("):
                    unknown = True
                else:
                    targets.add(name)
    ddl = first in _DDL_START
    if ddl:
        writes = unknown = False
        targets.clear()
    elif first in _OPAQUE_START:
        writes = unknown = True
    return Statement(
        refs=refs,
        from_names=frozenset(from_names),
        reads=first in _READ_START or bool(from_names),
        writes=writes,
        targets=frozenset(targets),
        unknown_target=unknown,
        locks=locks,
        ddl=ddl,
    )
