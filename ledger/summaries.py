"""Summaries: fund flows by period and procurement, read from tables kept as posted.

A summary never scans entries: fund flows come from ``fund_periods`` (one row a
fund and month), procurement from the tenders of the year. Each summary is read
in one snapshot together with the head of its log, and states that head as
``as_of {log, tree_size, checkpoint}``: the numbers are exactly those of the
leaves up to that size. Public summaries count approved entries only and say how
many of the period's entries are pending or withheld; staff see everything.

Public numbers also move when a review is appended, and a review of a year's
entry may sit in a later year's log; ``reviews_as_of`` then names those logs too.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

import asyncpg

from ledger.checkpoint import Checkpoint, NoteSigner
from ledger.errors import FieldError, InvalidInput, NotFound
from ledger.logs import Conn
from ledger.money import from_fen
from ledger.queries import levy_by_payer
from ledger.tree import EMPTY_ROOT
from ledger.workdays import china_today

Period = Literal["month", "quarter", "year"]


@dataclass(frozen=True)
class AsOf:
    log: str
    tree_size: int
    root: str
    checkpoint: str | None


@dataclass(frozen=True)
class FundRow:
    period: str
    opening: str
    receipts: str
    disbursements: str
    closing: str
    target: str | None
    target_ratio: str | None
    pending: int | None = None
    withheld: int | None = None


@dataclass(frozen=True)
class FundSummary:
    org: str
    fund_code: str
    year: int
    period: str
    scope: str
    direction: str | None
    rows: list[FundRow]
    as_of: AsOf
    reviews_as_of: list[AsOf] = field(default_factory=list)


def period_label(month: dt.date, period: Period) -> str:
    if period == "month":
        return f"{month.year}-{month.month:02d}"
    if period == "quarter":
        return f"{month.year}-Q{(month.month - 1) // 3 + 1}"
    return str(month.year)


def ratio(amount: int, target: int | None) -> str | None:
    if not target:
        return None
    return str((Decimal(amount) / Decimal(target)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN))


def _head_as_of(
    org: str, year: int, head: Sequence[Any] | None, signer: NoteSigner | None, origin: str
) -> AsOf:
    """The AsOf of a log head read as (size, root, stored note); None: no log yet."""
    if head is None:
        return AsOf(f"{org}/{year}", 0, EMPTY_ROOT.hex(), None)
    size, root, note = head[0], bytes(head[1]), head[2]
    if note is None and signer is not None and size > 0:
        # The head has no stored checkpoint yet (appended under a second ago): sign it
        # here. Ed25519 is deterministic, so this is the very note the background signer
        # stores for this size if the head is still there when it runs; not storing it
        # keeps this read a pure read of its snapshot.
        note = signer.sign(Checkpoint(f"{origin}/{org}/{year}", size, root))
    return AsOf(f"{org}/{year}", size, root.hex(), note)


#: The heads of the org's logs from year $2 on, as (year, size, root, stored note), in
#: year order. (_FUND_SUMMARY reads the same heads inside its one statement.)
_LOG_HEADS = """SELECT l.year, l.size, l.root, c.note FROM logs l
                LEFT JOIN checkpoints c ON c.org = l.org AND c.year = l.year AND c.size = l.size
                WHERE l.org = $1 AND l.year >= $2 ORDER BY l.year"""


def _heads_as_of(
    org: str, heads: Sequence[Sequence[Any]], signer: NoteSigner | None, origin: str
) -> dict[int, AsOf]:
    """Year to AsOf of rows read as ``_LOG_HEADS`` reads them, in year order."""
    return {h[0]: _head_as_of(org, h[0], tuple(h)[1:], signer, origin) for h in heads}


def _year_and_later(
    org: str, year: int, heads: Sequence[Sequence[Any]], signer: NoteSigner | None, origin: str
) -> tuple[AsOf, list[AsOf]]:
    """The year's AsOf (its empty tree if it has no log yet), and the later years'."""
    by_year = _heads_as_of(org, heads, signer, origin)
    main = by_year.pop(year, None) or _head_as_of(org, year, None, signer, origin)
    return main, list(by_year.values())


async def snapshot_as_of(
    conn: asyncpg.Connection, org: str, year: int, signer: NoteSigner | None, origin: str
) -> tuple[AsOf, list[AsOf]]:
    """The head of the year's log, and of later logs (where its reviews may be)."""
    heads = await conn.fetch(_LOG_HEADS, org, year)
    return _year_and_later(org, year, heads, signer, origin)


async def org_as_of(
    conn: asyncpg.Connection, org: str, signer: NoteSigner | None, origin: str
) -> tuple[AsOf, list[AsOf]]:
    """For numbers summed over every year of the org (a fund's balance, a project's
    disbursements): the head of its newest log, and of each earlier log, oldest first.
    Read in the caller's snapshot (REPEATABLE READ), so they name exactly the leaves
    the numbers were summed from. An org without any log yet answers its current
    year's empty tree."""
    heads = list(_heads_as_of(org, await conn.fetch(_LOG_HEADS, org, 0), signer, origin).values())
    if not heads:
        return _head_as_of(org, china_today().year, None, signer, origin), []
    return heads[-1], heads[:-1]


_FUND_SUMMARY = """
SELECT f.visibility, rv.decision,
    (SELECT coalesce(sum(receipts_fen - disbursements_fen), 0)::bigint FROM fund_periods
     WHERE org = $1 AND fund_code = $2 AND scope = $3 AND month < $4) AS opening,
    ARRAY(SELECT ROW(month, receipts_fen, disbursements_fen, pending_n, withheld_n)
          FROM fund_periods WHERE org = $1 AND fund_code = $2 AND scope = $3
            AND month >= $4 AND month < $5 ORDER BY month) AS months,
    (SELECT ROW(direction, amount_fen) FROM fund_targets
     WHERE org = $1 AND fund_code = $2 AND year = $6
     ORDER BY direction = 'collection' DESC LIMIT 1) AS target,
    ARRAY(SELECT ROW(l.year, l.size, l.root, c.note) FROM logs l
          LEFT JOIN checkpoints c ON c.org = l.org AND c.year = l.year AND c.size = l.size
          WHERE l.org = $1 AND l.year >= $6 ORDER BY l.year) AS heads
FROM funds f
LEFT JOIN reviews rv ON rv.org = f.org AND rv.target_year = f.opened_year
    AND rv.target_index = f.opened_index
WHERE f.org = $1 AND f.fund_code = $2
"""


async def fund_summary(
    conn: Conn,
    org: str,
    code: str,
    *,
    year: int,
    period: Period,
    staff: bool,
    signer: NoteSigner | None,
    origin: str,
) -> FundSummary:
    """The fund's flows of ``year`` by ``period``, against its target, with the heads read.

    One statement: the numbers and the heads they were computed from come from
    the same snapshot without a transaction, in one round trip.
    """
    scope = "all" if staff else "public"
    fund = await conn.fetchrow(
        _FUND_SUMMARY, org, code, scope, dt.date(year, 1, 1), dt.date(year + 1, 1, 1), year
    )
    if fund is None or (
        not staff and (fund["visibility"] != "public" or fund["decision"] != "approved")
    ):
        raise NotFound(f"No fund {code!r} in {org}", fund_code=code)
    opening = fund["opening"]
    months = [
        {"month": m[0], "receipts_fen": m[1], "disbursements_fen": m[2],
         "pending_n": m[3], "withheld_n": m[4]}
        for m in fund["months"]
    ]  # fmt: skip
    counts: dict[dt.date, tuple[int, int]] = {}
    if not staff:
        counts = {r["month"]: (r["pending_n"], r["withheld_n"]) for r in months}
    target_row = fund["target"]
    direction = target_row[0] if target_row else None
    target = target_row[1] if target_row else None
    as_of, later = _year_and_later(org, year, fund["heads"], signer, origin)

    buckets: dict[str, list[int]] = {}
    order: list[str] = []
    last_month = 12
    for m in range(1, last_month + 1):
        label = period_label(dt.date(year, m, 1), period)
        if label not in buckets:
            buckets[label] = [0, 0, 0, 0]
            order.append(label)
    by_month = {r["month"]: r for r in months}
    for m in range(1, 13):
        month = dt.date(year, m, 1)
        r = by_month.get(month)
        if r is None:
            continue
        b = buckets[period_label(month, period)]
        b[0] += r["receipts_fen"]
        b[1] += r["disbursements_fen"]
        pend, withheld = counts.get(month, (0, 0))
        b[2] += pend
        b[3] += withheld
    rows = []
    balance = opening
    cumulative_in = cumulative_out = 0
    for label in order:
        receipts, disbursements, pend, withheld = buckets[label]
        cumulative_in += receipts
        cumulative_out += disbursements
        progress = cumulative_in if direction == "collection" else cumulative_out
        rows.append(
            FundRow(
                period=label,
                opening=from_fen(balance),
                receipts=from_fen(receipts),
                disbursements=from_fen(disbursements),
                closing=from_fen(balance + receipts - disbursements),
                target=from_fen(target) if target is not None else None,
                target_ratio=ratio(progress, target),
                pending=None if staff else pend,
                withheld=None if staff else withheld,
            )
        )
        balance += receipts - disbursements
    return FundSummary(org, code, year, period, scope, direction, rows, as_of,
                       later if not staff else [])  # fmt: skip


# --- procurement -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcurementSummary:
    org: str
    year: int
    scope: str
    tenders: int
    cancelled: int
    awarded: int
    awarded_total: str
    contracted_total: str
    mean_bidders: str | None
    single_bidder_tenders: int
    median_days_to_award: str | None
    pending: int | None
    withheld: int | None
    as_of: AsOf
    reviews_as_of: list[AsOf]


async def procurement_summary(
    conn: asyncpg.Connection,
    org: str,
    *,
    year: int,
    staff: bool,
    signer: NoteSigner | None,
    origin: str,
) -> ProcurementSummary:
    """Tenders of the year (by the year of the tender entry), their bids, awards and contracts.

    Public: tenders and events approved for publication only; withheld and pending
    tenders are counted, not described. MUST run in a REPEATABLE READ transaction.
    """
    rows = await conn.fetch(
        """
        SELECT t.tender_id, t.status, t.period_start, t.year, t.idx, rv.decision
        FROM tenders t
        LEFT JOIN reviews rv
               ON rv.org = t.org AND rv.target_year = t.year AND rv.target_index = t.idx
        WHERE t.org = $1 AND t.year = $2
        """,
        org,
        year,
    )
    visible = [r for r in rows if staff or r["decision"] == "approved"]
    pending = sum(1 for r in rows if r["decision"] is None)
    withheld = sum(1 for r in rows if r["decision"] == "withheld")
    events = await conn.fetch(
        """
        SELECT e.tender_id, e.kind, e.party_id, e.amount_fen, e.on_date, rv.decision
        FROM procurement_events e
        LEFT JOIN reviews rv
               ON rv.org = e.org AND rv.target_year = e.year AND rv.target_index = e.idx
        WHERE e.org = $1 AND e.tender_id = ANY($2) AND NOT e.reversed
        """,
        org,
        [r["tender_id"] for r in visible],
    )
    shown = [e for e in events if staff or e["decision"] == "approved"]
    bidders: dict[str, set[str]] = {r["tender_id"]: set() for r in visible}
    awards: dict[str, tuple[int, dt.date]] = {}
    contracted = 0
    for e in shown:
        if e["kind"] == "bid":
            bidders[e["tender_id"]].add(e["party_id"])
        elif e["kind"] == "award":
            awards[e["tender_id"]] = (e["amount_fen"], e["on_date"])
        else:
            contracted += e["amount_fen"]
    competitive = [t for t in visible if bidders[t["tender_id"]]]
    days = [
        (awards[t["tender_id"]][1] - t["period_start"]).days
        for t in visible
        if t["tender_id"] in awards
    ]
    mean = (
        str(
            (
                Decimal(sum(len(bidders[t["tender_id"]]) for t in competitive)) / len(competitive)
            ).quantize(Decimal("0.01"))
        )
        if competitive
        else None
    )
    as_of, later = await snapshot_as_of(conn, org, year, signer, origin)
    return ProcurementSummary(
        org=org,
        year=year,
        scope="all" if staff else "public",
        tenders=len(visible),
        cancelled=sum(1 for t in visible if t["status"] == "cancelled"),
        awarded=len(awards),
        awarded_total=from_fen(sum(a[0] for a in awards.values())),
        contracted_total=from_fen(contracted),
        mean_bidders=mean,
        single_bidder_tenders=sum(1 for t in competitive if len(bidders[t["tender_id"]]) == 1),
        median_days_to_award=str(statistics.median(days)) if days else None,
        pending=None if staff else pending,
        withheld=None if staff else withheld,
        as_of=as_of,
        reviews_as_of=later if not staff else [],
    )


@dataclass(frozen=True)
class LevyPayers:
    org: str
    fund_code: str
    year: int
    scope: str
    payers: list[dict[str, Any]]
    as_of: AsOf
    reviews_as_of: list[AsOf] = field(default_factory=list)


async def levy_payers(
    conn: asyncpg.Connection,
    org: str,
    fund_code: str,
    *,
    year: int,
    staff: bool,
    signer: NoteSigner | None,
    origin: str,
) -> LevyPayers:
    """A pollution-levy fund's payers for ``year`` (``queries.levy_by_payer``), with the
    log heads they were computed from. MUST run in a REPEATABLE READ transaction."""
    payers = await levy_by_payer(conn, org, fund_code, year=year, staff=staff)
    as_of, later = await snapshot_as_of(conn, org, year, signer, origin)
    return LevyPayers(
        org=org,
        fund_code=fund_code,
        year=year,
        scope="all" if staff else "public",
        payers=payers,
        as_of=as_of,
        reviews_as_of=later if not staff else [],
    )


def check_year(year: int) -> None:
    if not 1900 <= year <= 2999:
        raise InvalidInput(
            "year must be between 1900 and 2999",
            [FieldError("query.year", "must be between 1900 and 2999")],
        )


def as_dict(obj: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(obj)
