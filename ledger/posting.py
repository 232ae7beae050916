"""Posting use cases: entries appended with their meaning applied, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ledger.books import load_books
from ledger.entries import NewEntry
from ledger.errors import FieldError, InvalidInput, LedgerError
from ledger.sequencer import GroupCommitter, Receipt, append_entries


def group_committer(pool: asyncpg.Pool, **kwargs: int) -> GroupCommitter:
    """The group committer for single posts, with the books applied."""
    return GroupCommitter(pool, effects=load_books, **kwargs)


async def post_entries(conn: asyncpg.Connection, entries: Sequence[NewEntry]) -> list[Receipt]:
    """Append a batch, all or nothing. An error names the failing entry's position."""
    try:
        async with conn.transaction():
            return await append_entries(conn, entries, effects=load_books)
    except LedgerError as exc:
        position = getattr(exc, "position", None)
        if position is None or len(entries) == 1:
            raise
        prefix = f"$.entries[{position}]"
        exc.detail = f"Entry {position} of the batch: {exc.detail}"
        exc.extra["entry"] = position
        if isinstance(exc, InvalidInput):
            exc.errors = [FieldError(prefix + e.path[1:], e.message) for e in exc.errors]
        raise
