"""The writes of one append, sent as one statement when they are few.

An append writes a handful of tables: the leaves and tree nodes, the log's
head, then what the books make of the entries (postings, balances, monthly
flows, state machines). Sent one by one, that is a dozen round trips under the
org's lock, each of which also waits for the event loop to get back to it
while the server is busy with other requests. A group commit of a few dozen
single posts spent most of its time so.

So the append collects its writes first, as ``Rows`` (rows for a table),
``Statement`` (one set-based statement) and ``Each`` (one statement a key), and
``send`` ships them:

- few rows (``COMBINE_ROWS`` or fewer): one statement, every write a
  data-modifying ``WITH`` query over ``unnest`` of column arrays: one round trip
  that the database works through while the server answers other requests;
- more (a 1000-entry batch): ``Rows`` by ``COPY``, ``Each`` by executemany and
  statements one by one, since COPY is the fastest way in for many rows.

The writes of one statement all see the snapshot taken before any of them, and
none sees another's rows. That is why an ``Each`` that must see rows written
before it in the same append (``alone=True``) is sent after the others, by
itself. Every other write of an append touches rows no other write of it
touches; ``tests/test_writes.py`` checks both ways of sending give the same
tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

#: At most this many rows in all are sent as one statement; more go by COPY.
COMBINE_ROWS = 256

_PARAM = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows to insert into ``table``; ``types`` are the columns' SQL types, for ``unnest``."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: Sequence[tuple[Any, ...]]

    def insert_sql(self) -> str:
        arrays = ", ".join(f"${n}::{t}[]" for n, t in enumerate(self.types, 1))
        columns = ", ".join(self.columns)
        return f"INSERT INTO {self.table} ({columns}) SELECT * FROM unnest({arrays})"

    def arrays(self) -> list[list[Any]]:
        return columns(self.rows)


def columns(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as column arrays, for ``unnest``."""
    return [list(column) for column in zip(*rows, strict=True)]


@dataclass(frozen=True, slots=True)
class Statement:
    """One INSERT, UPDATE or DELETE with parameters ``$1`` … ``$n`` (no dollar quoting)."""

    sql: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Each:
    """One statement run once per arguments tuple (an UPDATE by primary key).

    Set-based updates (``UPDATE … FROM unnest(…)``) are left to the planner's
    choice of join, and statistics older than an org's rows made it hash every
    row of the org; one statement a key is looked up by its key whatever the
    statistics.
    """

    sql: str
    rows: Sequence[tuple[Any, ...]]
    #: Must see rows the other writes of the append insert: sent after them, alone.
    alone: bool = False


Write = Rows | Statement | Each


def combined(writes: Sequence[Write]) -> tuple[str, list[Any]]:
    """One statement doing all of ``writes``, and its arguments."""
    parts: list[tuple[str, Sequence[Any]]] = []
    for write in writes:
        if isinstance(write, Rows):
            parts.append((write.insert_sql(), write.arrays()))
        elif isinstance(write, Each):
            parts += [(write.sql, row) for row in write.rows]
        else:
            parts.append((write.sql, write.args))
    queries: list[str] = []
    args: list[Any] = []
    for n, (sql, these) in enumerate(parts):
        queries.append(f"w{n} AS ({_renumbered(sql, len(args))})")
        args.extend(these)
    return f"WITH {', '.join(queries)} SELECT 1", args


def _renumbered(sql: str, offset: int) -> str:
    return _PARAM.sub(lambda m: f"${int(m[1]) + offset}", sql)


async def send(conn: asyncpg.Connection, writes: Sequence[Write]) -> None:
    """Do ``writes`` on ``conn`` (inside the caller's transaction)."""
    together: list[Write] = []
    after: list[Each] = []
    for w in writes:
        if isinstance(w, Rows | Each) and not w.rows:
            continue
        if isinstance(w, Each) and w.alone:
            after.append(w)
        else:
            together.append(w)
    rows = sum(len(w.rows) for w in together if isinstance(w, Rows))
    if len(together) > 1 and rows <= COMBINE_ROWS:
        sql, args = combined(together)
        await conn.execute(sql, *args)
    else:
        for w in together:
            await _send_one(conn, w)
    for w in after:
        await _send_one(conn, w)


async def _send_one(conn: asyncpg.Connection, write: Write) -> None:
    if isinstance(write, Rows):
        await conn.copy_records_to_table(write.table, records=write.rows, columns=write.columns)
    elif isinstance(write, Each):
        await conn.executemany(write.sql, write.rows)
    else:
        await conn.execute(write.sql, *write.args)
