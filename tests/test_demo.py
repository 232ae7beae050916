"""The demo data set: realistic, posted through the normal path, and idempotent."""

from __future__ import annotations

from typing import Any

import asyncpg

from ledger.demo import load_demo
from ledger.settings import Settings


async def test_demo_loads_once_and_twice_changes_nothing(
    dsn: str, pool: asyncpg.Pool, settings: Settings, client: Any, demo: str
) -> None:
    assert "0 already present" in demo
    count = await pool.fetchval("SELECT count(*) FROM leaves WHERE org IN ('sz-epb', 'qx-health')")
    second = await load_demo(dsn, settings, year=2025)
    assert second.startswith("demo data: 0 entries loaded")
    again = await pool.fetchval("SELECT count(*) FROM leaves WHERE org IN ('sz-epb', 'qx-health')")
    assert again == count

    levy = await pool.fetchrow(
        """SELECT sum(receipts_fen) AS collected FROM fund_periods
           WHERE org = 'sz-epb' AND fund_code = 'PWF' AND scope = 'all'"""
    )
    assert levy["collected"] == 308_000_000
    target = await pool.fetchval(
        "SELECT amount_fen FROM fund_targets WHERE org = 'sz-epb' AND fund_code = 'PWF'"
    )
    assert target == 255_000_000
    approvals = await pool.fetchval("SELECT count(*) FROM project_approvals WHERE org = 'sz-epb'")
    assert approvals == 110
    withheld = await pool.fetchval("SELECT count(*) FROM reviews WHERE decision = 'withheld'")
    assert withheld >= 2
    internal = await pool.fetchval(
        "SELECT count(*) FROM leaves WHERE org = 'sz-epb' AND visibility = 'internal'"
    )
    assert internal >= 3
    bids = await pool.fetchval(
        "SELECT count(*) FROM procurement_events WHERE org = 'sz-epb' AND kind = 'bid'"
    )
    contracts = await pool.fetchval(
        "SELECT count(*) FROM procurement_events WHERE org = 'sz-epb' AND kind = 'contract'"
    )
    assert bids >= 15 and contracts >= 5
    reimbursements = await pool.fetchval(
        "SELECT count(*) FROM leaves WHERE org = 'qx-health' AND kind = 'fund.disbursement'"
    )
    assert reimbursements == 60

    # The public sees approved content, stubs for the rest.
    r = await client.get("/api/v1/orgs/sz-epb/entries?year=2025&kind=fund.receipt&limit=1000")
    items = r.json()["items"]
    statuses = {i["status"] for i in items}
    assert {"approved", "withheld", "internal"} <= statuses
    assert all(("body" in i) == (i["status"] == "approved") for i in items)
