"""An append's writes: one statement when few, COPY when many, the same tables either way;
and a group's receipts are held for the next group's lock only briefly."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import msgspec
import pytest

from ledger import writes
from ledger.demo import _epb
from ledger.entries import NewEntry
from ledger.kinds import KINDS
from ledger.posting import post_entries
from ledger.review import review_entry
from ledger.sequencer import GroupCommitter, _Held
from ledger.writes import Rows, Statement, combined
from tests.conftest import make_org

YEAR = 2025
BOOKS = {
    "funds": "fund_code",
    "postings": "year, idx, line",
    "fund_periods": "fund_code, scope, month",
    "fund_targets": "fund_code, year, direction",
    "projects": "project_code",
    "project_approvals": "year, idx",
    "tenders": "tender_id",
    "procurement_events": "year, idx",
    "reviews": "year, idx",
    "reversals": "year, idx",
    "levy_assessments": "year, idx",
}


def test_combined_renumbers_each_writes_parameters() -> None:
    sql, args = combined(
        [
            Rows("t", ("a", "b"), ("text", "int"), [("x", 1), ("y", 2)]),
            Statement("UPDATE u SET a = $2 WHERE b = $1 AND c = $10", tuple(range(1, 11))),
        ]
    )
    assert sql == (
        "WITH w0 AS (INSERT INTO t (a, b) SELECT * FROM unnest($1::text[], $2::int[])), "
        "w1 AS (UPDATE u SET a = $4 WHERE b = $3 AND c = $12) SELECT 1"
    )
    assert args == [["x", "y"], [1, 2], *range(1, 11)]


def test_each_is_one_statement_a_row_together_and_apart() -> None:
    each = writes.Each("UPDATE f SET b = $2 WHERE k = $1", [("a", 1), ("b", 2)])
    sql, args = combined([each])
    assert sql == (
        "WITH w0 AS (UPDATE f SET b = $2 WHERE k = $1), "
        "w1 AS (UPDATE f SET b = $4 WHERE k = $3) SELECT 1"
    )
    assert args == ["a", 1, "b", 2]


def _entry(org: str, kind: str, subject: str, on: dt.date, body: dict[str, Any]) -> NewEntry:
    return NewEntry(
        org=org,
        kind=kind,
        subject=subject,
        occurred_on=on,
        visibility="public",
        body=msgspec.convert(body, KINDS[kind]),
        actor="test.clerk",
    )


def _opened(org: str, code: str) -> NewEntry:
    return _entry(org, "fund.opened", f"fund/{code}", dt.date(YEAR, 1, 2), {
        "fund_code": code, "name": "测试资金", "category": "other",
    })  # fmt: skip


async def _lock_org(pool: asyncpg.Pool, org: str) -> Callable[[], Awaitable[None]]:
    """Hold ``org``'s lock on a connection of its own; returns what lets it go."""
    blocker = await pool.acquire()
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("SELECT 1 FROM orgs WHERE code = $1 FOR NO KEY UPDATE", org)

    async def unlock() -> None:
        await tx.rollback()
        await pool.release(blocker)

    return unlock


def _tender_bid_and_its_reversal(org: str, size: int) -> list[NewEntry]:
    """A tender, a bid on it and the bid's reversal: the reversal marks a row of the same append."""
    on = dt.date(YEAR, 12, 1)
    party = {"id": "91330100TB01", "name": "同批投标有限公司", "type": "enterprise"}
    return [
        _entry(org, "procurement.tender", "tender/T-SAME", on, {
            "tender_id": "T-SAME", "title": "同批招标", "method": "open",
            "value": {"amount": "1000.00", "currency": "CNY"},
            "period": {"start": on.isoformat(), "end": on.isoformat()},
            "buyer": {"id": "11330100EPB", "name": "示范市环境保护局", "type": "government"},
        }),
        _entry(org, "procurement.bid", "tender/T-SAME", on, {
            "tender_id": "T-SAME", "bidder": party, "amount": "900.00",
            "submitted_on": on.isoformat(),
        }),
        _entry(org, "correction.reversal", "tender/T-SAME", on, {
            "target_log": f"{org}/{YEAR}", "target_index": size + 1, "reason": "投标撤回",
        }),
    ]  # fmt: skip


async def _post_demo(conn: asyncpg.Connection, org: str, batch: int) -> None:
    """The demo's bureau, posted into ``org`` in batches of ``batch``, reviewed, then more."""
    plan = _epb(YEAR, 12)
    entries = [dataclasses.replace(e, org=org) for e in plan.entries]
    where: dict[str | None, int] = {}
    for i in range(0, len(entries), batch):
        chunk = entries[i : i + batch]
        async with conn.transaction():
            receipts = await post_entries(conn, chunk)
        where.update((e.idempotency_key, r.index) for e, r in zip(chunk, receipts, strict=True))
    reviews = [
        review_entry(
            org=org,
            year=YEAR,
            index=where[key],
            decision="approve" if decision == "approve" else "withhold",
            reason=reason,
            legal_basis=basis,
            reviewer="test.reviewer",
            today=dt.date(YEAR, 12, 31),
        )
        for key, (decision, reason, basis) in plan.decisions.items()
    ]
    for i in range(0, len(reviews), batch):
        async with conn.transaction():
            await post_entries(conn, reviews[i : i + batch])
    size = await conn.fetchval("SELECT size FROM logs WHERE org = $1 AND year = $2", org, YEAR)
    async with conn.transaction():
        await post_entries(conn, _tender_bid_and_its_reversal(org, size))


async def _books(conn: asyncpg.Connection, org: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, order in BOOKS.items():
        rows = await conn.fetch(f"SELECT * FROM {table} WHERE org = $1 ORDER BY {order}", org)
        skip = ("org", "reviewed_at")
        out[table] = [tuple(v for k, v in r.items() if k not in skip) for r in rows]
    out["leaves"] = [
        (*r[:3], r["subject"].replace(org, "ORG"), *r[4:])
        for r in await conn.fetch(
            "SELECT year, idx, kind, subject, occurred_on, visibility FROM leaves WHERE org = $1 "
            "ORDER BY year, idx",
            org,
        )
    ]
    return out


async def test_both_ways_of_sending_write_the_same_books(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    together, apart = (await make_org("wt")).code, (await make_org("wa")).code
    sent: list[int] = []
    real_execute = asyncpg.Connection.execute

    async def counting(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> str:
        if query.startswith("WITH w0 AS"):
            sent.append(1)
        return await real_execute(self, query, *args, **kw)

    monkeypatch.setattr(asyncpg.Connection, "execute", counting)
    async with pool.acquire() as conn:
        monkeypatch.setattr(writes, "COMBINE_ROWS", 10**6)
        await _post_demo(conn, together, batch=40)
        combined_statements = len(sent)
        monkeypatch.setattr(writes, "COMBINE_ROWS", 0)
        await _post_demo(conn, apart, batch=40)
        assert len(sent) == combined_statements  # none more: the second org went apart
        assert combined_statements > 10
        a, b = await _books(conn, together), await _books(conn, apart)
    for table in a:
        assert a[table] == b[table], table
    # Every kind of write was exercised, and the reversed bid is marked reversed.
    assert all(a[table] for table in a), [t for t in a if not a[t]]
    bid = [e for e in a["procurement_events"] if e[2:4] == ("T-SAME", "bid")]
    assert bid and bid[0][-1] is True


async def test_a_write_that_must_see_the_others_is_sent_after_them(pool: asyncpg.Pool) -> None:
    org = (await make_org("wr")).code
    async with pool.acquire() as conn, conn.transaction():
        await post_entries(conn, _tender_bid_and_its_reversal(org, 0))  # a new log
        reversed_ = await conn.fetchval(
            "SELECT reversed FROM procurement_events WHERE org = $1 AND kind = 'bid'", org
        )
    assert reversed_ is True


def test_held_receipts_go_out_on_release_or_after_at_most_the_bound() -> None:
    async def main() -> None:
        released: list[str] = []
        held = _Held(0.05)
        held.hold(lambda: released.append("a"))
        assert released == []
        held.hold(lambda: released.append("b"))  # holding the next releases the one before
        assert released == ["a"]
        held.release()
        held.release()  # once only
        assert released == ["a", "b"]
        held.hold(lambda: released.append("c"))
        await asyncio.sleep(0.2)
        assert released == ["a", "b", "c"]

    asyncio.run(main())


async def test_receipts_do_not_wait_for_a_slow_next_group(pool: asyncpg.Pool) -> None:
    """The next group holds the receipts only until its lock; a slow one does not delay them."""
    org = (await make_org("wh")).code
    from ledger.books import load_books

    async def effects(conn: asyncpg.Connection, entries: Sequence[NewEntry]) -> Any:
        if any(e.subject == "fund/SLOW" for e in entries):
            await asyncio.sleep(2.0)  # the lock is held; on_locked is not called yet
        return await load_books(conn, entries)

    committer = GroupCommitter(pool, effects=effects)
    committer.start()
    try:
        unlock = await _lock_org(pool, org)
        first = asyncio.ensure_future(committer.submit(_opened(org, "FAST")))
        await asyncio.sleep(0.3)  # the first group now waits for the org's lock
        slow = asyncio.ensure_future(committer.submit(_opened(org, "SLOW")))
        await asyncio.sleep(0.05)
        await unlock()
        started = time.monotonic()
        receipt = await first
        assert time.monotonic() - started < 1.0  # not the slow group's 2 s
        assert (await slow).index == receipt.index + 1
    finally:
        await committer.stop()


async def test_a_poster_that_goes_away_does_not_stop_its_group(pool: asyncpg.Pool) -> None:
    org = (await make_org("wc")).code
    committer = GroupCommitter(pool, effects=None)
    committer.start()
    try:
        unlock = await _lock_org(pool, org)
        gone = asyncio.ensure_future(committer.submit(_opened(org, "GONE")))
        stays = asyncio.ensure_future(committer.submit(_opened(org, "STAYS")))
        await asyncio.sleep(0.2)
        gone.cancel()
        await unlock()
        receipt = await stays
        with pytest.raises(asyncio.CancelledError):
            await gone
        subjects = await pool.fetch("SELECT subject FROM leaves WHERE org = $1 ORDER BY idx", org)
        assert [r["subject"] for r in subjects] == ["fund/GONE", "fund/STAYS"]
        assert receipt.index == 1
    finally:
        await committer.stop()


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node] if "Scan" in node["Node Type"] and "Index Name" in node else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


async def test_the_books_load_by_primary_key_whatever_the_statistics(pool: asyncpg.Pool) -> None:
    """Statistics taken while an org had one fund made ``fund_code = ANY(…)`` a scan of
    all the org's funds, filtered by code: each lookup must use the whole key."""
    from ledger import books

    org = (await make_org("wp")).code
    async with pool.acquire() as conn:
        tx = conn.transaction()  # rolled back: the rows and the statistics are the test's
        await tx.start()
        other = (await make_org("wq")).code
        await conn.execute(
            """INSERT INTO funds (org, fund_code, name, category, currency, allow_overdraft,
                   visibility, opened_year, opened_index)
               SELECT $1, 'F-' || i, 'f', 'other', 'CNY', false, 'public', 2025, i
               FROM generate_series(0, 49999) i
               UNION ALL SELECT $2, 'ONLY', 'f', 'other', 'CNY', false, 'public', 2025, 0""",
            other,
            org,
        )
        # The same for projects: many of another org's, one of this org's.
        await conn.execute(
            """INSERT INTO projects (org, project_code, name, category, location,
                   total_investment_fen, status, registered_year, registered_index)
               SELECT o, 'P-' || i, 'p', 'other', 'x', 1, 'planned', 2025, i
               FROM generate_series(0, 49999) i, (VALUES ($1), ($2)) AS v(o)
               WHERE o = $1 OR i = 0""",
            other,
            org,
        )
        await conn.execute("ANALYZE funds, projects")
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        # Tables whose only index is the primary key: the plan must look each key up.
        # (Tenders, events, leaves and postings have other indexes that also lead
        # with the org; under such statistics the planner's choice among them is
        # a near tie and is not asserted.)
        cases = [
            (books._FUNDS, (org, ["A", "B", "C"]), {"funds_pkey"}),
            (books._FUND_BALANCE, (org, "A", 1), {"funds_pkey"}),
            (books._PROJECTS, (org, ["A", "B"]), {"projects_pkey"}),
            (books._TARGETS, (org, [2025, 2025], [1, 2]), {"reviews_pkey", "reversals_pkey"}),
        ]
        for sql, args, indexes in cases:
            plan = json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))[0]
            scans = [s for s in _scans(plan["Plan"]) if s["Index Name"] in indexes]
            assert {s["Index Name"] for s in scans} == indexes, (sql, scans)
            for scan in scans:
                # Every key column in the index condition, none left to a filter.
                cond, rest = scan.get("Index Cond", ""), scan.get("Filter", "")
                assert cond.count(" = ") >= 2 and " = " not in rest, (scan["Index Name"], cond)
        await tx.rollback()


async def test_a_group_committed_before_its_connection_fails_is_not_appended_twice(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = (await make_org("wf")).code
    real_release = asyncpg.pool.Pool.release
    failed: list[int] = []

    async def release(self: asyncpg.Pool, conn: Any, *args: Any, **kw: Any) -> None:
        await real_release(self, conn, *args, **kw)
        if not failed:
            failed.append(1)
            raise ConnectionError("the connection broke on its way back to the pool")

    monkeypatch.setattr(asyncpg.pool.Pool, "release", release)
    committer = GroupCommitter(pool, effects=None)
    committer.start()
    try:
        receipt = await committer.submit(_opened(org, "ONCE"))
    finally:
        await committer.stop()
    assert failed
    rows = await pool.fetch("SELECT idx FROM leaves WHERE org = $1", org)
    assert [r["idx"] for r in rows] == [receipt.index]


async def test_stop_waits_for_the_group_being_committed(pool: asyncpg.Pool) -> None:
    org = (await make_org("ws")).code
    committer = GroupCommitter(pool, effects=None)
    committer.start()
    unlock = await _lock_org(pool, org)
    posted = asyncio.ensure_future(committer.submit(_opened(org, "LAST")))
    await asyncio.sleep(0.2)  # taken from the queue, waiting for the org's lock
    stopping = asyncio.ensure_future(committer.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done()
    await unlock()
    await asyncio.wait_for(stopping, 10)
    assert (await posted).index == 0


async def test_a_review_of_a_later_entry_of_the_same_batch_is_refused(pool: asyncpg.Pool) -> None:
    """The books load under the lock, before the batch is written: an entry can refer to
    an earlier one of its batch, not to a later one."""
    from ledger.errors import InvalidInput

    org = (await make_org("wl")).code
    reversal = _entry(org, "correction.reversal", "fund/LATER", dt.date(YEAR, 1, 3), {
        "target_log": f"{org}/{YEAR}", "target_index": 1, "reason": "提前冲销",
    })  # fmt: skip
    async with pool.acquire() as conn:
        with pytest.raises(InvalidInput) as refused:
            async with conn.transaction():
                await post_entries(conn, [reversal, _opened(org, "LATER")])
        size = await conn.fetchval("SELECT size FROM logs WHERE org = $1", org)
    assert refused.value.errors[0].path.endswith("target_index")
    assert not size


class _LostCommit:
    """Makes the next COMMIT after an append fail on the client as a lost connection
    does, ``remaining`` times; with ``happened`` the server committed first, without
    it rolled back."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, happened: bool) -> None:
        import asyncpg.transaction

        from ledger import posting, sequencer

        self.armed, self.lost, self.remaining = False, 0, 1
        real_append, real_exit = sequencer.append_entries, asyncpg.transaction.Transaction.__aexit__

        async def append(*args: Any, **kw: Any) -> Any:
            receipts = await real_append(*args, **kw)
            self.armed = self.remaining > 0
            return receipts

        async def aexit(tx: Any, extype: Any, ex: Any, tb: Any) -> None:
            if extype is not None or not self.armed:
                return await real_exit(tx, extype, ex, tb)
            self.armed = False
            self.remaining -= 1
            self.lost += 1
            if happened:
                await real_exit(tx, None, None, None)
            else:
                await real_exit(tx, RuntimeError, RuntimeError(), None)
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )

        monkeypatch.setattr(sequencer, "append_entries", append)
        monkeypatch.setattr(posting, "append_entries", append)
        monkeypatch.setattr(asyncpg.transaction.Transaction, "__aexit__", aexit)


async def _hashes(pool: asyncpg.Pool, org: str) -> list[tuple[str, int, bytes]]:
    rows = await pool.fetch("SELECT subject, idx, leaf_hash FROM leaves WHERE org = $1", org)
    return sorted((r["subject"], r["idx"], bytes(r["leaf_hash"])) for r in rows)


@pytest.mark.parametrize("happened", [True, False], ids=["committed", "rolled-back"])
async def test_a_group_whose_commit_answer_is_lost_is_appended_once(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, happened: bool
) -> None:
    """Committed: the receipts stand (read back). Not: the retry appends each once."""
    org = (await make_org("wk")).code
    lost = _LostCommit(monkeypatch, happened=happened)
    committer = GroupCommitter(pool, effects=None)
    committer.start()
    try:
        unlock = await _lock_org(pool, org)  # the two posts queue up into one group
        posts = [asyncio.ensure_future(committer.submit(_opened(org, c))) for c in ("K1", "K2")]
        await asyncio.sleep(0.2)
        await unlock()
        receipts = await asyncio.gather(*posts)
    finally:
        await committer.stop()
    assert lost.lost == 1
    assert await _hashes(pool, org) == [
        ("fund/K1", receipts[0].index, receipts[0].leaf_hash),
        ("fund/K2", receipts[1].index, receipts[1].leaf_hash),
    ]


async def test_the_read_back_waits_for_a_transaction_that_still_holds_the_lock(
    pool: asyncpg.Pool,
) -> None:
    """A COMMIT still running on the server after its client went away must end before
    the log is read, or a retry could append what is about to be committed."""
    from ledger.sequencer import append_entries, was_committed

    org = (await make_org("wr")).code
    for commit in (True, False):
        entry = _opened(org, f"R{int(commit)}")
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            receipts = await append_entries(conn, [entry])
            reading = asyncio.ensure_future(was_committed(pool, [entry], receipts))
            await asyncio.sleep(0.3)
            assert not reading.done()  # waits for the org's lock
            await (tx.commit() if commit else tx.rollback())
            assert await asyncio.wait_for(reading, 10) is commit


async def test_a_lost_commit_over_http_answers_the_receipt_or_503(
    client: Any, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger import sequencer
    from tests.conftest import fund_entry

    org = await make_org("wh")
    url = f"/api/v1/orgs/{org.code}/entries"
    lost = _LostCommit(monkeypatch, happened=True)
    r = await client.post(url, json=fund_entry("H1"), headers=org.auth())
    assert r.status_code == 201, r.text
    assert lost.lost == 1
    assert [(s, i) for s, i, _ in await _hashes(pool, org.code)] == [("fund/H1", r.json()["index"])]

    async def unreadable(*args: Any) -> bool:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(sequencer, "was_committed", unreadable)
    lost.remaining = 1
    r = await client.post(url, json=fund_entry("H2"), headers=org.auth())
    assert r.status_code == 503, r.text
    assert r.json()["type"] == "urn:gongkai:problem:commit-unknown"
    assert lost.lost == 2
    subjects = [s for s, _, _ in await _hashes(pool, org.code)]
    assert subjects == ["fund/H1", "fund/H2"]  # committed once, not retried


async def test_a_lost_batch_commit_answers_its_receipts_or_503(
    client: Any, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch route reads a failed COMMIT back: receipts if it happened, 503 if not."""
    from tests.conftest import fund_entry

    org = await make_org("wb")
    url = f"/api/v1/orgs/{org.code}/entries/batch"
    batch = {"entries": [fund_entry("B1"), fund_entry("B2")]}
    lost = _LostCommit(monkeypatch, happened=True)
    r = await client.post(url, json=batch, headers=org.auth())
    assert r.status_code == 201, r.text
    assert lost.lost == 1
    got = [(x["index"], x["leaf_hash"]) for x in r.json()["receipts"]]
    assert [(i, h.hex()) for _, i, h in await _hashes(pool, org.code)] == got

    monkeypatch.undo()
    lost = _LostCommit(monkeypatch, happened=False)
    r = await client.post(url, json={"entries": [fund_entry("B3")]}, headers=org.auth())
    assert r.status_code == 503, r.text
    assert r.json()["type"] == "urn:gongkai:problem:unavailable"
    assert lost.lost == 1
    assert [s for s, _, _ in await _hashes(pool, org.code)] == ["fund/B1", "fund/B2"]
