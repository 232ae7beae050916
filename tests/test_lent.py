"""Read statements on connections kept from the pool (ledger.db.Lent): they reuse
their connections, fall back to the pool when all are busy, and give a connection
back to the pool when its statement fails, is cancelled or loses its server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ledger import db


@pytest.fixture
async def small_pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(dsn, min_size=0, max_size=3)
    yield p
    try:  # a failed test may have left connections kept, which close() waits for
        await asyncio.wait_for(p.close(), 10)
    except TimeoutError:
        p.terminate()
        raise


class Counting:
    """The pool, counting its acquires."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool, self.acquired = pool, 0

    def acquire(self) -> object:
        self.acquired += 1
        return self.pool.acquire()

    def __getattr__(self, name: str) -> object:
        return getattr(self.pool, name)


async def test_statements_reuse_kept_connections(small_pool: asyncpg.Pool) -> None:
    counting = Counting(small_pool)
    lent = db.Lent(counting, keep=2)  # type: ignore[arg-type]
    pids = {await lent.fetchval("SELECT pg_backend_pid()") for _ in range(50)}
    assert len(pids) == 1 and counting.acquired == 1 and lent.taken == 1
    assert await lent.fetchrow("SELECT 1 AS a, 2 AS b") == (1, 2)
    assert [tuple(r) for r in await lent.fetch("SELECT generate_series(1, 3)")] == [
        (1,),
        (2,),
        (3,),
    ]
    await lent.close()
    assert lent.taken == 0
    # The pool has every connection back: all three can be acquired at once.
    conns = [await small_pool.acquire() for _ in range(3)]
    for c in conns:
        await small_pool.release(c)


async def test_more_statements_at_once_than_kept_use_the_pool(small_pool: asyncpg.Pool) -> None:
    lent = db.Lent(small_pool, keep=1)
    results = await asyncio.gather(*(lent.fetchval("SELECT pg_sleep(0.05), $1::int", i)
                                     for i in range(3)))  # fmt: skip
    assert lent.taken == 1
    assert len(results) == 3
    await lent.close()
    assert lent.taken == 0


async def test_a_cancelled_statement_gives_its_connection_back(
    small_pool: asyncpg.Pool,
) -> None:
    lent = db.Lent(small_pool, keep=3)
    for _ in range(10):  # more cancellations than the pool has connections
        task = asyncio.ensure_future(lent.fetchval("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert lent.taken == 0
    assert await asyncio.wait_for(lent.fetchval("SELECT 41 + 1"), 5) == 42
    await lent.close()


async def _terminate(dsn: str, *pids: int) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        for pid in pids:
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await admin.close()


async def test_a_failed_statement_gives_its_connection_back(small_pool: asyncpg.Pool) -> None:
    lent = db.Lent(small_pool, keep=1)
    with pytest.raises(asyncpg.PostgresError):
        await lent.fetchval("SELECT 1 / 0")
    assert lent.taken == 0
    assert await lent.fetchval("SELECT 2") == 2
    await lent.close()


async def test_kept_connections_whose_server_went_away_are_replaced(
    small_pool: asyncpg.Pool, dsn: str
) -> None:
    """Killed while idle (a restart, a failover): the next reads answer, on new
    connections, and none of them fails."""
    lent = db.Lent(small_pool, keep=2)
    first = await asyncio.gather(*(lent.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.05)")
                                   for _ in range(2)))  # fmt: skip
    assert lent.taken == 2 and len(set(first)) == 2
    await _terminate(dsn, *first)
    await asyncio.sleep(0.1)  # the client sees the connections closed
    after = [await lent.fetchval("SELECT pg_backend_pid()") for _ in range(5)]
    assert not set(after) & set(first)
    assert lent.taken == 1
    await lent.close()


async def test_a_statement_on_a_connection_lost_unnoticed_runs_again(
    small_pool: asyncpg.Pool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lost between two statements and not yet seen so: the statement fails on it and
    runs once more on a connection of the pool."""
    lent = db.Lent(small_pool, keep=1)
    pid = await lent.fetchval("SELECT pg_backend_pid()")
    await _terminate(dsn, pid)
    monkeypatch.setattr(db, "_usable", lambda conn: True)  # not seen closed yet
    assert await lent.fetchval("SELECT pg_backend_pid()") != pid  # at once: no sleep
    await lent.close()


async def test_closed_it_sends_a_busy_connection_back_when_done(
    small_pool: asyncpg.Pool,
) -> None:
    lent = db.Lent(small_pool, keep=2)
    busy = asyncio.ensure_future(lent.fetchval("SELECT pg_sleep(0.1), 1"))
    await asyncio.sleep(0.02)
    await lent.close()
    assert lent.taken == 1
    await busy
    assert lent.taken == 0
    # And after closing, statements still run, on the pool's connections.
    assert await lent.fetchval("SELECT 7") == 7
    assert lent.taken == 0


async def test_the_server_keeps_at_most_half_its_pool_and_never_the_last_two(dsn: str) -> None:
    from api.runtime import _kept

    for size, kept in [(1, 0), (2, 0), (3, 1), (4, 2), (5, 2), (20, 10)]:
        p = await db.create_pool(dsn, min_size=0, max_size=size)
        try:
            assert _kept(p, 2) == kept, size
        finally:
            await p.close()
    lent = db.Lent(await db.create_pool(dsn, min_size=0, max_size=1), keep=0)
    try:
        assert await lent.fetchval("SELECT 3") == 3 and lent.taken == 0
    finally:
        await lent.pool.close()


async def test_a_connection_kept_past_keep_for_goes_back_to_the_pool(dsn: str) -> None:
    """Given back, a connection is recycled by the pool's own rules (here: after
    three statements); kept for ever, it never would be."""
    pool = await db.create_pool(dsn, min_size=0, max_size=2, max_queries=3)
    try:
        kept = db.Lent(pool, keep=1)
        pids = {await kept.fetchval("SELECT pg_backend_pid()") for _ in range(10)}
        assert len(pids) == 1 and kept.taken == 1
        await kept.close()

        lent = db.Lent(pool, keep=1, keep_for=0)
        pids = {await lent.fetchval("SELECT pg_backend_pid()") for _ in range(10)}
        assert len(pids) >= 3, pids
        assert lent.taken == 0  # each statement gave its connection back

        later = db.Lent(pool, keep=1, keep_for=0.3)
        await later.fetchval("SELECT 1")
        assert later.taken == 1  # kept, not yet past keep_for
        await later.fetchval("SELECT pg_sleep(0.4)")  # ends past keep_for: given back
        assert later.taken == 0
        await later.close()
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def test_idle_kept_connections_go_back_without_more_reads(small_pool: asyncpg.Pool) -> None:
    """With no read to end past ``keep_for``, a sweep gives the idle ones back."""
    lent = db.Lent(small_pool, keep=2, keep_for=0.1)
    await asyncio.gather(*(lent.fetchval("SELECT pg_sleep(0.02)") for _ in range(2)))
    assert lent.taken == 2
    await asyncio.sleep(0.35)  # the first sweep may find them just short of keep_for
    assert lent.taken == 0
    conns = [await small_pool.acquire() for _ in range(3)]  # all back in the pool
    for c in conns:
        await small_pool.release(c)
    await lent.close()
