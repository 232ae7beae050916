"""The read side of entries and books: what the public and staff may see.

Publication status of an entry: ``internal`` (never public), ``pending`` (public,
awaiting review), ``approved`` or ``withheld`` (reviewed). Entries the ledger
writes itself (year chaining, reviews, publications) are ``approved`` at once.
The public sees bodies of approved entries only; every other entry appears as a
stub ``{index, kind, leaf_hash, status, reason?}``. Staff of the org see all.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from ledger.errors import FieldError, InvalidInput, NotFound
from ledger.kinds import KINDS, SYSTEM_KINDS
from ledger.logs import Conn
from ledger.money import from_fen

MAX_PAGE = 1000
_SYSTEM = sorted(SYSTEM_KINDS)


@dataclass(frozen=True)
class EntryView:
    log: str
    year: int
    index: int
    kind: str
    leaf_hash: str
    status: str
    reason: str | None
    #: None for a stub.
    full: dict[str, Any] | None
    leaf_bytes: bytes | None


def status_of(kind: str, visibility: str, decision: str | None) -> str:
    if visibility != "public":
        return "internal"
    if kind in SYSTEM_KINDS:
        return "approved"
    return decision or "pending"


def _pack_cursor(fmt: str, *values: int) -> str:
    return base64.urlsafe_b64encode(struct.pack(fmt, *values)).decode().rstrip("=")


def _bad_cursor(cursor: str) -> InvalidInput:
    return InvalidInput(
        f"Bad cursor {cursor!r}: use next_cursor as given",
        [FieldError("query.cursor", "not a cursor this service gave")],
    )


def _unpack_cursor(fmt: str, cursor: str) -> tuple[int, ...]:
    """The integers packed in ``cursor``; a 422 naming ``query.cursor`` if it is none."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return tuple(struct.unpack(fmt, raw))
    except (ValueError, struct.error):
        raise _bad_cursor(cursor) from None


def encode_cursor(year: int, index: int) -> str:
    return _pack_cursor(">iq", year, index)


def decode_cursor(cursor: str) -> tuple[int, int]:
    year, index = _unpack_cursor(">iq", cursor)
    return year, index


_ENTRY_SELECT = """
    SELECT l.year, l.idx, l.kind, l.subject, l.occurred_on, l.recorded_at, l.actor,
           l.visibility, l.leaf_hash, l.leaf, r.decision, r.reason, r.legal_basis,
           v.year AS rev_year, v.idx AS rev_idx
    FROM leaves l
    LEFT JOIN reviews r ON r.org = l.org AND r.target_year = l.year AND r.target_index = l.idx
    LEFT JOIN reversals v ON v.org = l.org AND v.target_year = l.year AND v.target_index = l.idx
"""


def _view(org: str, r: asyncpg.Record, staff: bool) -> EntryView:
    status = status_of(r["kind"], r["visibility"], r["decision"])
    log = f"{org}/{r['year']}"
    leaf_hash = bytes(r["leaf_hash"]).hex()
    if not staff and status != "approved":
        return EntryView(log, r["year"], r["idx"], r["kind"], leaf_hash, status,
                         r["reason"], None, None)  # fmt: skip
    leaf = orjson.loads(r["leaf"])
    full: dict[str, Any] = {
        "subject": r["subject"],
        "occurred_on": r["occurred_on"].isoformat(),
        "recorded_at": leaf["recorded_at"],
        "visibility": r["visibility"],
        "actor": r["actor"],
        "body": leaf["body"],
    }
    if r["rev_year"] is not None:
        full["reversed_by"] = f"{org}/{r['rev_year']}#{r['rev_idx']}"
    if r["decision"] == "withheld":
        full["legal_basis"] = r["legal_basis"]
    return EntryView(log, r["year"], r["idx"], r["kind"], leaf_hash, status, r["reason"], full,
                     bytes(r["leaf"]))  # fmt: skip


@dataclass(frozen=True)
class EntryFilter:
    year: int | None = None
    kind: str | None = None
    subject: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None

    def check(self) -> None:
        if self.kind is not None and self.kind not in KINDS:  # a typo, not "none of these"
            raise InvalidInput(
                f"Unknown kind {self.kind!r}",
                [FieldError("query.kind", f"must be one of: {', '.join(sorted(KINDS))}")],
            )
        if self.since and self.until and self.until < self.since:
            raise InvalidInput(
                "until is before since", [FieldError("query.until", "is before since")]
            )


def _entries_sql(
    org: str, flt: EntryFilter, *, staff: bool, cursor: str | None, limit: int | None
) -> tuple[str, list[Any]]:
    flt.check()
    args: list[Any] = [org]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if cursor is not None:
        # Row bounds only, no equality on org or year: PostgreSQL then starts the
        # index scan at the cursor (with an equality it starts at the org's first
        # leaf and filters its way there, which grows with the depth of the page).
        year, index = decode_cursor(cursor)
        low = max((year, index), (flt.year, -1)) if flt.year is not None else (year, index)
        high = (flt.year if flt.year is not None else 9999, 2**62)
        where = [
            f"(l.org, l.year, l.idx) > ($1, {arg(low[0])}, {arg(low[1])})",
            f"(l.org, l.year, l.idx) <= ($1, {arg(high[0])}, {arg(high[1])})",
        ]
    else:
        where = ["l.org = $1"]
        if flt.year is not None:
            where.append(f"l.year = {arg(flt.year)}")
    if flt.kind is not None:
        where.append(f"l.kind = {arg(flt.kind)}")
    if flt.subject is not None:
        where.append(f"l.subject = {arg(flt.subject)}")
    if flt.since is not None:
        where.append(f"l.occurred_on >= {arg(flt.since)}")
    if flt.until is not None:
        where.append(f"l.occurred_on <= {arg(flt.until)}")
    if not staff and (flt.subject is not None or flt.since is not None or flt.until is not None):
        # Filtering on content must not reveal what withheld entries are about.
        where.append(
            f"l.visibility = 'public' AND (r.decision = 'approved' OR l.kind = ANY({arg(_SYSTEM)}))"
        )
    sql = f"{_ENTRY_SELECT} WHERE {' AND '.join(where)} ORDER BY l.org, l.year, l.idx"
    if limit is not None:
        sql += f" LIMIT {arg(limit)}"
    return sql, args


async def list_entries(
    conn: Conn,
    org: str,
    flt: EntryFilter,
    *,
    staff: bool,
    cursor: str | None,
    limit: int,
) -> tuple[list[EntryView], str | None]:
    """A page of entries in (year, index) order, and the cursor of the next page."""
    sql, args = _entries_sql(org, flt, staff=staff, cursor=cursor, limit=limit + 1)
    rows = await conn.fetch(sql, *args)
    items = [_view(org, r, staff) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].year, items[-1].index) if len(rows) > limit else None
    return items, next_cursor


def stream_entries(
    pool: asyncpg.Pool, org: str, flt: EntryFilter, *, staff: bool, cursor: str | None = None
) -> AsyncIterator[EntryView]:
    """Every matching entry (after ``cursor``, a page's ``next_cursor``), read through a
    server-side cursor: constant memory. A bad cursor raises here, before any row."""
    sql, args = _entries_sql(org, flt, staff=staff, cursor=cursor, limit=None)
    return _stream(pool, org, sql, args, staff)


async def _stream(
    pool: asyncpg.Pool, org: str, sql: str, args: list[Any], staff: bool
) -> AsyncIterator[EntryView]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor(sql, *args, prefetch=STREAM_PREFETCH):
            yield _view(org, row, staff)


STREAM_PREFETCH = 1000


async def get_entry(
    conn: asyncpg.Connection | asyncpg.Pool, org: str, year: int, index: int, *, staff: bool
) -> EntryView:
    row = await conn.fetchrow(
        f"{_ENTRY_SELECT} WHERE l.org = $1 AND l.year = $2 AND l.idx = $3", org, year, index
    )
    if row is None:
        raise NotFound(f"No entry {index} in log {org}/{year}")
    return _view(org, row, staff)


@dataclass(frozen=True)
class PendingEntry:
    log: str
    index: int
    kind: str
    subject: str
    actor: str
    recorded_on: dt.date
    age_working_days: int
    overdue: bool


@dataclass(frozen=True)
class PendingPage:
    items: list[PendingEntry]
    total: int  # every entry awaiting review, this page's and the others
    overdue: int  # of those, how many are past PROACTIVE_DISCLOSURE_DAYS
    next_cursor: str | None


def _overdue_before(today: dt.date, calendar: Any) -> dt.datetime:
    """The moment before which a recorded entry is overdue on ``today``: the start
    (China time) of the day after the latest date over PROACTIVE_DISCLOSURE_DAYS
    working days before it."""
    day = today
    while calendar.working_days_between(day, today) <= PROACTIVE_DISCLOSURE_DAYS:
        day -= dt.timedelta(days=1)
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), CHINA)


def _pending_cursor(recorded_at: dt.datetime, year: int, index: int) -> str:
    return _pack_cursor(">qiq", (recorded_at - _EPOCH) // _MICROSECOND, year, index)


def _pending_after(cursor: str) -> tuple[dt.datetime, int, int]:
    micros, year, index = _unpack_cursor(">qiq", cursor)
    try:
        return _EPOCH + micros * _MICROSECOND, year, index
    except OverflowError:  # microseconds past the calendar
        raise _bad_cursor(cursor) from None


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

_PENDING = """
    WITH pending AS MATERIALIZED (
        SELECT l.year, l.idx, l.kind, l.subject, l.actor, l.recorded_at
        FROM leaves l
        LEFT JOIN reviews r
               ON r.org = l.org AND r.target_year = l.year AND r.target_index = l.idx
        WHERE l.org = $1 AND l.visibility = 'public' AND r.org IS NULL
          AND NOT l.kind = ANY($2)
    )
    SELECT p.*, (SELECT count(*) FROM pending) AS total,
           (SELECT count(*) FROM pending WHERE recorded_at < $3) AS overdue
    FROM (SELECT 1) one
    LEFT JOIN pending p ON (p.recorded_at, p.year, p.idx) > ($4, $5, $6)
    ORDER BY p.recorded_at, p.year, p.idx
    LIMIT $7
"""


async def pending_entries(
    conn: asyncpg.Connection | asyncpg.Pool,
    org: str,
    today: dt.date,
    calendar: Any,
    *,
    limit: int = 1000,
    cursor: str | None = None,
) -> PendingPage:
    """Public entries awaiting review, oldest first, with their age in working days:
    ``limit`` of them after ``cursor`` (a page's ``next_cursor``), and how many are
    pending and overdue in all."""
    after = _pending_after(cursor) if cursor is not None else (_EPOCH, 0, -1)
    rows = await conn.fetch(
        _PENDING, org, _SYSTEM, _overdue_before(today, calendar), *after, limit + 1
    )
    total, overdue = (rows[0]["total"], rows[0]["overdue"]) if rows else (0, 0)
    rows = [r for r in rows if r["idx"] is not None]  # none left: the one empty row
    out = []
    for r in rows[:limit]:
        recorded = r["recorded_at"].astimezone(CHINA).date()
        age = calendar.working_days_between(recorded, today)
        out.append(
            PendingEntry(
                f"{org}/{r['year']}",
                r["idx"],
                r["kind"],
                r["subject"],
                r["actor"],
                recorded,
                age,
                age > PROACTIVE_DISCLOSURE_DAYS,
            )
        )
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = _pending_cursor(last["recorded_at"], last["year"], last["idx"]) if last else None
    return PendingPage(out, total, overdue, next_cursor)


#: Proactive disclosure within 20 working days of the record being made.
PROACTIVE_DISCLOSURE_DAYS = 20
CHINA = dt.timezone(dt.timedelta(hours=8))


# --- books ---------------------------------------------------------------------------


async def list_funds(conn: Any, org: str, *, staff: bool) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT f.*, (SELECT status FROM (SELECT CASE WHEN r.decision IS NOT NULL
                    THEN r.decision ELSE 'pending' END AS status
                  FROM leaves l LEFT JOIN reviews r ON r.org = l.org AND r.target_year = l.year
                       AND r.target_index = l.idx
                  WHERE l.org = f.org AND l.year = f.opened_year AND l.idx = f.opened_index) s)
                  AS opened_status
           FROM funds f WHERE f.org = $1 ORDER BY f.fund_code""",
        org,
    )
    # The public see the balance of the approved entries of each fund: its public flows.
    public = (
        {}
        if staff
        else {
            f["fund_code"]: f["balance_fen"]
            for f in await conn.fetch(
                """SELECT fund_code, sum(receipts_fen - disbursements_fen) AS balance_fen
                   FROM fund_periods WHERE org = $1 AND scope = 'public' GROUP BY fund_code""",
                org,
            )
        }
    )
    out = []
    for r in rows:
        if not staff and (r["visibility"] != "public" or r["opened_status"] != "approved"):
            continue
        item = {
            "fund_code": r["fund_code"],
            "name": r["name"],
            "category": r["category"],
            "currency": r["currency"],
            "allow_overdraft": r["allow_overdraft"],
        }
        if staff:
            item["balance"] = from_fen(r["balance_fen"])
            item["visibility"] = r["visibility"]
            item["status"] = "internal" if r["visibility"] != "public" else r["opened_status"]
        else:
            item["balance"] = from_fen(public.get(r["fund_code"]) or 0)
        out.append(item)
    return out


async def get_fund(conn: Any, org: str, code: str, *, staff: bool) -> dict[str, Any]:
    for fund in await list_funds(conn, org, staff=staff):
        if fund["fund_code"] == code:
            return fund
    raise NotFound(f"No fund {code!r} in {org}", fund_code=code)


async def get_project(conn: Any, org: str, code: str, *, staff: bool) -> dict[str, Any]:
    r = await conn.fetchrow(
        """SELECT p.*, rv.decision FROM projects p
           LEFT JOIN reviews rv ON rv.org = p.org AND rv.target_year = p.registered_year
                AND rv.target_index = p.registered_index
           WHERE p.org = $1 AND p.project_code = $2""",
        org,
        code,
    )
    if r is None or (not staff and r["decision"] != "approved"):
        raise NotFound(f"No project {code!r} in {org}", project_code=code)
    approvals = await conn.fetch(
        """SELECT a.*, rv.decision AS review_decision FROM project_approvals a
           LEFT JOIN reviews rv ON rv.org = a.org AND rv.target_year = a.year
                AND rv.target_index = a.idx
           WHERE a.org = $1 AND a.project_code = $2 ORDER BY a.decided_on, a.year, a.idx""",
        org,
        code,
    )
    tenders = await conn.fetch(
        """SELECT t.tender_id, t.title, t.status, t.value_fen, rv.decision FROM tenders t
           LEFT JOIN reviews rv ON rv.org = t.org AND rv.target_year = t.year
                AND rv.target_index = t.idx
           WHERE t.org = $1 AND t.project_code = $2 ORDER BY t.tender_id""",
        org,
        code,
    )
    if staff:
        disbursed = r["disbursed_fen"]
    else:
        disbursed = await conn.fetchval(
            """SELECT coalesce(sum(p.amount_fen), 0) FROM postings p
               JOIN reviews rv ON rv.org = p.org AND rv.target_year = p.year
                    AND rv.target_index = p.idx AND rv.decision = 'approved'
               WHERE p.org = $1 AND p.account = $2 AND p.account LIKE 'project:%'""",
            org,
            f"project:{code}",
        )
    return {
        "project_code": r["project_code"],
        "name": r["name"],
        "category": r["category"],
        "location": r["location"],
        "status": r["status"],
        "budget": from_fen(r["total_investment_fen"]),
        "disbursed": from_fen(disbursed),
        "approvals": [
            {
                "approval_type": a["approval_type"],
                "document_no": a["document_no"],
                "authority": a["authority"],
                "decision": a["decision"],
                "decided_on": a["decided_on"].isoformat(),
                "entry": f"{org}/{a['year']}#{a['idx']}",
            }
            for a in approvals
            if staff or a["review_decision"] == "approved"
        ],
        "tenders": [
            {
                "tender_id": t["tender_id"],
                "title": t["title"],
                "status": t["status"],
                "value": from_fen(t["value_fen"]),
            }
            for t in tenders
            if staff or t["decision"] == "approved"
        ],
    }


async def list_projects(conn: Any, org: str, *, staff: bool) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT p.project_code, p.name, p.status, p.total_investment_fen, p.disbursed_fen,
                  rv.decision
           FROM projects p
           LEFT JOIN reviews rv ON rv.org = p.org AND rv.target_year = p.registered_year
                AND rv.target_index = p.registered_index
           WHERE p.org = $1 ORDER BY p.project_code""",
        org,
    )
    out = []
    for r in rows:
        if not staff and r["decision"] != "approved":
            continue
        out.append(
            {
                "project_code": r["project_code"],
                "name": r["name"],
                "status": r["status"],
                "budget": from_fen(r["total_investment_fen"]),
                # Public: see the project's own route for approved disbursements only.
                "disbursed": from_fen(r["disbursed_fen"]) if staff else None,
            }
        )
    if not staff:
        disbursed = {
            r["account"][8:]: r["total"]
            for r in await conn.fetch(
                """SELECT p.account, sum(p.amount_fen) AS total FROM postings p
                   JOIN reviews rv ON rv.org = p.org AND rv.target_year = p.year
                        AND rv.target_index = p.idx AND rv.decision = 'approved'
                   WHERE p.org = $1 AND p.account LIKE 'project:%' GROUP BY p.account""",
                org,
            )
        }
        for item in out:
            item["disbursed"] = from_fen(disbursed.get(item["project_code"], 0))
    return out


async def list_tenders(
    conn: Any, org: str, *, staff: bool, year: int | None = None
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT t.*, rv.decision FROM tenders t
           LEFT JOIN reviews rv ON rv.org = t.org AND rv.target_year = t.year
                AND rv.target_index = t.idx
           WHERE t.org = $1 AND ($2::int IS NULL OR t.year = $2) ORDER BY t.year, t.idx""",
        org,
        year,
    )
    return [
        {
            "tender_id": r["tender_id"],
            "title": r["title"],
            "method": r["method"],
            "status": r["status"],
            "value": from_fen(r["value_fen"]),
            "currency": r["currency"],
            "period_start": r["period_start"].isoformat(),
            "period_end": r["period_end"].isoformat(),
            "project_code": r["project_code"],
            "entry": f"{org}/{r['year']}#{r['idx']}",
        }
        for r in rows
        if staff or r["decision"] == "approved"
    ]


async def procurement_leaves(
    conn: Any, org: str, *, year: int, staff: bool
) -> list[dict[str, Any]]:
    """The leaves an OCDS export is built from: procurement entries of the year and the
    reversals of them, in log order; for the public, approved ones only."""
    rows = await conn.fetch(
        """SELECT l.leaf, l.kind, l.visibility, rv.decision FROM leaves l
           LEFT JOIN reviews rv ON rv.org = l.org AND rv.target_year = l.year
                AND rv.target_index = l.idx
           WHERE l.org = $1 AND l.year = $2
             AND (l.kind LIKE 'procurement.%' OR l.kind = 'correction.reversal')
           ORDER BY l.idx""",
        org,
        year,
    )
    return [
        orjson.loads(r["leaf"])
        for r in rows
        if staff or status_of(r["kind"], r["visibility"], r["decision"]) == "approved"
    ]


async def levy_by_payer(
    conn: Any, org: str, fund_code: str, *, year: int, staff: bool
) -> list[dict[str, Any]]:
    """Per payer of a pollution-levy fund: assessed, reduced, due, collected, outstanding.

    Assessments of the year (by their entry's year) against receipts from the payer
    into the fund dated in the year; reversals of receipts count against them. The
    public sees approved assessments and approved receipts only.
    """
    await get_fund(conn, org, fund_code, staff=staff)
    approved = "" if staff else "AND rv.decision = 'approved'"
    assessed = await conn.fetch(
        f"""SELECT a.payer_id, max(a.payer_name) AS payer_name, sum(a.assessed_fen) AS assessed,
                   sum(a.reduction_fen) AS reduced, max(a.deferred_until) AS deferred_until,
                   count(*) AS assessments
            FROM levy_assessments a
            LEFT JOIN reviews rv ON rv.org = a.org AND rv.target_year = a.year
                 AND rv.target_index = a.idx
            WHERE a.org = $1 AND a.fund_code = $2 AND a.year = $3 {approved}
            GROUP BY a.payer_id""",
        org,
        fund_code,
        year,
    )
    collected = {
        r["account"][6:]: -int(r["total"])
        for r in await conn.fetch(
            f"""SELECT p.account, sum(p.amount_fen) AS total FROM postings p
                LEFT JOIN reviews rv ON rv.org = p.org AND rv.target_year = p.year
                     AND rv.target_index = p.idx
                WHERE p.org = $1 AND p.fund_code = $2 AND p.account LIKE 'payer:%'
                  AND p.month >= $3 AND p.month < $4 {approved}
                GROUP BY p.account""",
            org,
            fund_code,
            dt.date(year, 1, 1),
            dt.date(year + 1, 1, 1),
        )
    }
    rows = []
    for r in sorted(assessed, key=lambda r: r["payer_id"]):
        due = int(r["assessed"]) - int(r["reduced"])
        got = collected.get(r["payer_id"], 0)
        rows.append(
            {
                "payer_id": r["payer_id"],
                "payer_name": r["payer_name"],
                "assessments": r["assessments"],
                "assessed": from_fen(int(r["assessed"])),
                "reduced": from_fen(int(r["reduced"])),
                "due": from_fen(due),
                "collected": from_fen(got),
                "outstanding": from_fen(max(due - got, 0)),
                "deferred_until": r["deferred_until"].isoformat() if r["deferred_until"] else None,
            }
        )
    return rows
