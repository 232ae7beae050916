"""Quarterly publication: a snapshot of the quarter's public summaries, committed to.

``publish_quarter`` freezes the org's writes (its lock), builds the snapshot of the
public summaries of the quarter (fund flows by month, procurement of the year to
date, opinion counts) as canonical JSON bytes, stores them, and appends
``disclosure.published {period, summary_sha256, tree_size}`` to the quarter's log.
``tree_size`` is the log's size the snapshot was computed from; the snapshot's
bytes are served unchanged for ever and go into the year's archive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from typing import Any

import asyncpg

from ledger import opinions, summaries
from ledger.books import load_books
from ledger.canonical import canonical_bytes
from ledger.checkpoint import NoteSigner
from ledger.entries import NewEntry
from ledger.errors import Conflict, FieldError, InvalidInput, NotFound
from ledger.kinds import DisclosurePublished
from ledger.sequencer import Receipt, append_entries

QUARTER = re.compile(r"^(?P<year>[0-9]{4})-Q(?P<q>[1-4])$")


@dataclasses.dataclass(frozen=True)
class Disclosure:
    org: str
    period: str
    sha256: str
    tree_size: int
    entry: str


def parse_quarter(period: str) -> tuple[int, int]:
    m = QUARTER.match(period)
    if m is None or not 1900 <= int(m["year"]) <= 2999:
        raise InvalidInput(
            f"quarter must look like 2026-Q3, not {period!r}", [FieldError("$.quarter", "YYYY-Qn")]
        )
    return int(m["year"]), int(m["q"])


async def publish_quarter(
    pool: asyncpg.Pool,
    org: str,
    period: str,
    *,
    signer: NoteSigner | None,
    origin: str,
    today: dt.date,
    actor: str,
) -> tuple[Disclosure, Receipt]:
    year, q = parse_quarter(period)
    quarter_end = dt.date(year, 3 * q, 1) + dt.timedelta(days=31)
    quarter_end = quarter_end.replace(day=1) - dt.timedelta(days=1)
    if today < dt.date(year, 3 * q - 2, 1):
        raise Conflict(f"{period} has not begun yet")
    async with pool.acquire() as conn, conn.transaction():
        # Freeze the org's writes so the snapshot and its tree size agree.
        org_name = await conn.fetchval(
            "SELECT name FROM orgs WHERE code = $1 FOR NO KEY UPDATE", org
        )
        if org_name is None:
            raise NotFound(f"no org {org!r}")
        if await conn.fetchval(
            "SELECT 1 FROM disclosures WHERE org = $1 AND period = $2", org, period
        ):
            raise Conflict(f"{period} was already published")
        snapshot = await _snapshot(conn, org, org_name, year, q, signer=signer, origin=origin,
                                   today=today)  # fmt: skip
        data = canonical_bytes(snapshot)
        digest = hashlib.sha256(data).hexdigest()
        tree_size = snapshot["as_of"]["tree_size"]
        entry = NewEntry(
            org=org,
            kind="disclosure.published",
            subject=f"disclosure/{period}",
            occurred_on=min(today, quarter_end),
            visibility="public",
            body=DisclosurePublished(period=period, summary_sha256=digest, tree_size=tree_size),
            actor=actor,
        )
        receipt = (await append_entries(conn, [entry], effects=load_books))[0]
        await conn.execute(
            """INSERT INTO disclosures (org, period, year, idx, tree_size, sha256, snapshot)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            org,
            period,
            year,
            receipt.index,
            tree_size,
            bytes.fromhex(digest),
            data,
        )
    return Disclosure(org, period, digest, tree_size, f"{receipt.log}#{receipt.index}"), receipt


async def _snapshot(
    conn: Any, org: str, org_name: str, year: int, q: int, *, signer: NoteSigner | None,
    origin: str, today: dt.date,
) -> dict[str, Any]:  # fmt: skip
    months = {f"{year}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)}
    funds = []
    for row in await conn.fetch(
        """SELECT f.fund_code FROM funds f
           JOIN reviews rv ON rv.org = f.org AND rv.target_year = f.opened_year
                AND rv.target_index = f.opened_index AND rv.decision = 'approved'
           WHERE f.org = $1 AND f.visibility = 'public' ORDER BY f.fund_code""",
        org,
    ):
        s = await summaries.fund_summary(conn, org, row["fund_code"], year=year, period="month",
                                         staff=False, signer=None, origin=origin)  # fmt: skip
        funds.append(
            {
                "fund_code": s.fund_code,
                "direction": s.direction,
                "rows": [dataclasses.asdict(r) for r in s.rows if r.period in months],
            }
        )
    procurement = await summaries.procurement_summary(conn, org, year=year, staff=False,
                                                      signer=None, origin=origin)  # fmt: skip
    proc = dataclasses.asdict(procurement)
    proc.pop("as_of")
    proc.pop("reviews_as_of")
    calendar = await opinions.load_calendar(conn)
    as_of, _ = await summaries.snapshot_as_of(conn, org, year, signer, origin)
    return {
        "org": org,
        "org_name": org_name,
        "period": f"{year}-Q{q}",
        "funds": funds,
        "procurement_year_to_date": proc,
        "opinions": await opinions.counts(conn, org, calendar=calendar, today=today),
        "as_of": {
            "log": as_of.log,
            "tree_size": as_of.tree_size,
            "root": as_of.root,
            "checkpoint": as_of.checkpoint,
        },
    }


async def list_disclosures(conn: Any, org: str) -> list[Disclosure]:
    rows = await conn.fetch(
        """SELECT period, sha256, tree_size, year, idx FROM disclosures
           WHERE org = $1 ORDER BY period""",
        org,
    )
    return [
        Disclosure(
            org,
            r["period"],
            bytes(r["sha256"]).hex(),
            r["tree_size"],
            f"{org}/{r['year']}#{r['idx']}",
        )
        for r in rows
    ]


async def snapshot_bytes(conn: Any, org: str, period: str) -> bytes:
    data = await conn.fetchval(
        "SELECT snapshot FROM disclosures WHERE org = $1 AND period = $2", org, period
    )
    if data is None:
        raise NotFound(f"{org} has not published {period}")
    return bytes(data)
