"""Posting use cases: entries appended with their meaning applied, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ledger.books import load_books
from ledger.entries import NewEntry
from ledger.errors import FieldError, InvalidInput, LedgerError
from ledger.sequencer import GroupCommitter, Receipt, append_entries, append_once


def group_committer(pool: asyncpg.Pool, **kwargs: int) -> GroupCommitter:
    """The group committer for single posts, with the books applied."""
    return GroupCommitter(pool, effects=load_books, **kwargs)


async def post_entries_pooled(
    pool: asyncpg.Pool, entries: Sequence[NewEntry], *, batch_key: str | None = None
) -> list[Receipt]:
    """``post_entries`` on a connection of ``pool``, with ``append_once``'s read-back
    of a COMMIT that fails."""

    async def attempt(conn: asyncpg.Connection, out: list[Receipt]) -> list[Receipt]:
        return await post_entries(conn, entries, appended=out, batch_key=batch_key)

    return await append_once(pool, entries, attempt)


async def post_entries(
    conn: asyncpg.Connection,
    entries: Sequence[NewEntry],
    *,
    appended: list[Receipt] | None = None,
    batch_key: str | None = None,
) -> list[Receipt]:
    """Append a batch, all or nothing. An error names the failing entry's position.

    ``appended`` receives the receipts before the COMMIT is sent. ``batch_key`` is
    the batch's Idempotency-Key, recorded with it (its entries carry their own).
    """
    try:
        async with conn.transaction():
            receipts = await append_entries(conn, entries, effects=load_books, batch_key=batch_key)
            if appended is not None:
                appended.extend(receipts)
            return receipts
    except LedgerError as exc:
        position = getattr(exc, "position", None)
        if position is None:
            raise
        prefix = f"$.entries[{position}]"
        exc.detail = f"Entry {position} of the batch: {exc.detail}"
        exc.extra["entry"] = position
        if isinstance(exc, InvalidInput):
            exc.errors = [FieldError(prefix + e.path[1:], e.message) for e in exc.errors]
        raise
