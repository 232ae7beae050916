"""Posting use cases: entries appended with their meaning applied, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ledger.books import load_books
from ledger.entries import NewEntry
from ledger.errors import FieldError, InvalidInput, LedgerError
from ledger.sequencer import GroupCommitter, Receipt, append_entries, read_back


def group_committer(pool: asyncpg.Pool, **kwargs: int) -> GroupCommitter:
    """The group committer for single posts, with the books applied."""
    return GroupCommitter(pool, effects=load_books, **kwargs)


async def post_entries_pooled(pool: asyncpg.Pool, entries: Sequence[NewEntry]) -> list[Receipt]:
    """``post_entries`` on a connection of ``pool``. A COMMIT that fails is read back
    on another connection: the receipts if it committed after all, the error if it
    did not, ``CommitUnknown`` if that cannot be read."""
    appended: list[Receipt] = []
    receipts: list[Receipt] | None = None
    try:
        async with pool.acquire() as conn:
            receipts = await post_entries(conn, entries, appended=appended)
    except Exception:
        if receipts is not None:
            return receipts  # committed; the connection failed on its way back
        if not appended or not await read_back(pool, entries, appended):
            raise
        return appended
    return receipts


async def post_entries(
    conn: asyncpg.Connection,
    entries: Sequence[NewEntry],
    *,
    appended: list[Receipt] | None = None,
) -> list[Receipt]:
    """Append a batch, all or nothing. An error names the failing entry's position.

    ``appended`` receives the receipts before the COMMIT is sent.
    """
    try:
        async with conn.transaction():
            receipts = await append_entries(conn, entries, effects=load_books)
            if appended is not None:
                appended.extend(receipts)
            return receipts
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
