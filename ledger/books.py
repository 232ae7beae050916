"""The books: what each entry means, and the rules it must obey.

``load_books`` runs inside the append transaction (``sequencer.append_entries``
calls it as its effects) while the org's lock is held. For a whole group or
batch it loads the state the entries touch in a few queries; once indices are
assigned, it applies every entry in index order in memory — so an entry sees
the effect of the ones before it in the same batch — and hands back the changes
as writes (``ledger.writes``), which the append sends with its own. Any rule
broken raises before anything is written, and the whole transaction rolls back:
a refused entry leaves no trace.

Money: every fund receipt and disbursement becomes balanced double-entry
postings (the lines of one entry sum to zero). A fund's balance is the sum of
its ``fund:<code>`` lines. A reversal posts the negation of its target's lines.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ledger import kinds as k
from ledger.entries import NewEntry
from ledger.errors import Conflict, FieldError, Forbidden, InvalidInput, LedgerError, NotFound
from ledger.money import MAX_TOTAL_FEN, from_fen, to_fen
from ledger.sequencer import Applier, Sequenced
from ledger.writes import Each, Rows, Statement, Write, columns

#: Legal project status transitions.
PROJECT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "planned": ("approved", "cancelled"),
    "approved": ("under_construction", "suspended", "cancelled"),
    "under_construction": ("completed", "suspended", "cancelled"),
    "suspended": ("approved", "under_construction", "cancelled"),
    "completed": (),
    "cancelled": (),
}

MONETARY_KINDS = frozenset({"fund.receipt", "fund.disbursement"})
PROCUREMENT_EVENT_KINDS = frozenset(
    {"procurement.bid", "procurement.award", "procurement.contract"}
)
REVERSIBLE_KINDS = MONETARY_KINDS | PROCUREMENT_EVENT_KINDS


def _check_total(before: int, after: int, what: str) -> None:
    """Refuse a move that takes a total past MAX_TOTAL_FEN, or further past it (one
    stored before the limit was kept may still come down)."""
    if abs(after) > MAX_TOTAL_FEN and abs(after) > abs(before):
        raise Conflict(
            f"The entry would take {what} past {from_fen(MAX_TOTAL_FEN)}, the largest total "
            "the books keep",
            limit=from_fen(MAX_TOTAL_FEN),
        )


def _invalid(path: str, message: str, detail: str | None = None) -> InvalidInput:
    return InvalidInput(detail or message, [FieldError(path, message)])


def _month(d: dt.date) -> dt.date:
    return d.replace(day=1)


@dataclass
class Fund:
    code: str
    name: str
    category: str
    currency: str
    allow_overdraft: bool
    visibility: str
    balance: int
    new: bool = False
    dirty: bool = False


@dataclass
class Project:
    code: str
    name: str
    category: str
    location: str
    total: int
    status: str
    disbursed: int
    year: int
    index: int
    new: bool = False
    dirty: bool = False


@dataclass
class Event:
    """A bid, award or contract of a tender."""

    year: int
    index: int
    kind: str
    party_id: str
    amount: int
    contract_id: str | None = None
    award: tuple[int, int] | None = None
    reversed: bool = False


@dataclass
class Tender:
    tender_id: str
    title: str
    method: str
    value: int
    currency: str
    start: dt.date
    end: dt.date
    status: str
    project_code: str | None
    year: int
    index: int
    events: list[Event] = field(default_factory=list)
    new: bool = False
    dirty: bool = False

    def active(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind and not e.reversed]


@dataclass
class Posting:
    fund_code: str
    account: str
    amount: int
    flow: str
    month: dt.date


@dataclass
class Target:
    """An existing entry that a reversal or a review points at."""

    year: int
    index: int
    kind: str
    actor: str
    visibility: str
    occurred_on: dt.date
    postings: list[Posting]
    tender_id: str | None
    project_code: str | None
    reviewed: bool
    reversed: bool


# What the books load, one lookup a key. Each is a LATERAL subquery with LIMIT
# or OFFSET, which the planner cannot flatten into a join of its choosing: with
# statistics taken while an org had one fund, ``fund_code = ANY($2)`` was
# planned as a scan of all the org's funds filtered by code, and a group of
# single posts read 45 thousand index entries (10 ms) where it needed two.
# Where the primary key is the table's only index (funds, projects, reviews,
# reversals), tests/test_writes.py checks the plans under such statistics. A
# target's project comes from its postings, not from the partial index of
# project lines, which such statistics made the planner scan for the whole org.
_FUNDS = """
SELECT f.* FROM unnest($2::text[]) AS k(fund_code)
CROSS JOIN LATERAL (
    SELECT * FROM funds WHERE org = $1 AND fund_code = k.fund_code LIMIT 1) f
"""
# One statement a fund (``Each``), not one over unnest: see ``ledger.writes.Each``.
_FUND_BALANCE = "UPDATE funds SET balance_fen = $3 WHERE org = $1 AND fund_code = $2"
_PROJECTS = """
SELECT p.* FROM unnest($2::text[]) AS k(project_code)
CROSS JOIN LATERAL (
    SELECT * FROM projects WHERE org = $1 AND project_code = k.project_code LIMIT 1) p
"""
_TENDERS = """
SELECT t.* FROM unnest($2::text[]) AS k(tender_id)
CROSS JOIN LATERAL (
    SELECT * FROM tenders WHERE org = $1 AND tender_id = k.tender_id LIMIT 1) t
"""
_EVENTS = """
SELECT e.* FROM unnest($2::text[]) AS k(tender_id)
CROSS JOIN LATERAL (
    SELECT * FROM procurement_events WHERE org = $1 AND tender_id = k.tender_id OFFSET 0) e
ORDER BY e.year, e.idx
"""
_TARGETS = """
SELECT l.year, l.idx, l.kind, l.actor, l.visibility, l.occurred_on, e.tender_id,
       r.target_index IS NOT NULL AS reviewed, v.target_index IS NOT NULL AS reversed
FROM unnest($2::int[], $3::bigint[]) AS t(year, idx)
CROSS JOIN LATERAL (
    SELECT year, idx, kind, actor, visibility, occurred_on FROM leaves
    WHERE org = $1 AND year = t.year AND idx = t.idx LIMIT 1) l
LEFT JOIN LATERAL (
    SELECT tender_id FROM procurement_events
    WHERE org = $1 AND year = t.year AND idx = t.idx LIMIT 1) e ON true
LEFT JOIN LATERAL (
    SELECT target_index FROM reviews
    WHERE org = $1 AND target_year = t.year AND target_index = t.idx LIMIT 1) r ON true
LEFT JOIN LATERAL (
    SELECT target_index FROM reversals
    WHERE org = $1 AND target_year = t.year AND target_index = t.idx LIMIT 1) v ON true
"""
_TARGET_POSTINGS = """
SELECT p.year, p.idx, p.fund_code, p.account, p.amount_fen, p.flow, p.month
FROM unnest($2::int[], $3::bigint[]) AS t(year, idx)
CROSS JOIN LATERAL (
    SELECT * FROM postings WHERE org = $1 AND year = t.year AND idx = t.idx OFFSET 0) p
ORDER BY p.year, p.idx, p.line
"""


class Books:
    """One transaction's view of one org's books."""

    def __init__(self, conn: asyncpg.Connection, org: str) -> None:
        self.conn = conn
        self.org = org
        self.funds: dict[str, Fund | None] = {}
        self.projects: dict[str, Project | None] = {}
        self.tenders: dict[str, Tender | None] = {}
        self.targets: dict[tuple[int, int], Target | None] = {}
        self.postings: list[tuple[Any, ...]] = []
        self.periods: dict[tuple[str, str, dt.date], list[int]] = defaultdict(
            lambda: [0, 0, 0, 0, 0, 0]
        )
        self.fund_targets: dict[tuple[str, int, str], tuple[int, int, int]] = {}
        self.approvals: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.reversed_events: list[tuple[int, int]] = []
        self.reviews: list[tuple[Any, ...]] = []
        self.reversals: list[tuple[Any, ...]] = []
        self.assessments: list[tuple[Any, ...]] = []
        #: (year, index) of the fund.opened entry of each fund opened here.
        self.opened: dict[str, tuple[int, int]] = {}

    # --- loading ------------------------------------------------------------------

    async def preload(self, entries: Sequence[NewEntry]) -> None:
        fund_codes: set[str] = set()
        project_codes: set[str] = set()
        tender_ids: set[str] = set()
        targets: set[tuple[int, int]] = set()
        for e in entries:
            b = e.body
            if code := getattr(b, "fund_code", None):
                fund_codes.add(code)
            if code := getattr(b, "project_code", None):
                project_codes.add(code)
            if tid := getattr(b, "tender_id", None):
                tender_ids.add(tid)
            if isinstance(b, k.CorrectionReversal | k.ReviewApproved | k.ReviewWithheld):
                org, _, year = b.target_log.partition("/")
                if org == self.org:
                    targets.add((int(year), b.target_index))
        await self._load_targets(targets)
        for t in self.targets.values():
            if t is not None:
                fund_codes.update(p.fund_code for p in t.postings)
                if t.tender_id:
                    tender_ids.add(t.tender_id)
                if t.project_code:
                    project_codes.add(t.project_code)
        await self._load_funds(fund_codes)
        await self._load_projects(project_codes)
        await self._load_tenders(tender_ids)

    async def _load_funds(self, codes: set[str]) -> None:
        if not codes:
            return
        for code in codes:
            self.funds.setdefault(code, None)
        for r in await self.conn.fetch(_FUNDS, self.org, list(codes)):
            self.funds[r["fund_code"]] = Fund(
                r["fund_code"],
                r["name"],
                r["category"],
                r["currency"],
                r["allow_overdraft"],
                r["visibility"],
                r["balance_fen"],
            )

    async def _load_projects(self, codes: set[str]) -> None:
        if not codes:
            return
        for code in codes:
            self.projects.setdefault(code, None)
        for r in await self.conn.fetch(_PROJECTS, self.org, list(codes)):
            self.projects[r["project_code"]] = Project(
                r["project_code"],
                r["name"],
                r["category"],
                r["location"],
                r["total_investment_fen"],
                r["status"],
                r["disbursed_fen"],
                r["registered_year"],
                r["registered_index"],
            )

    async def _load_tenders(self, ids: set[str]) -> None:
        if not ids:
            return
        for tid in ids:
            self.tenders.setdefault(tid, None)
        for r in await self.conn.fetch(_TENDERS, self.org, list(ids)):
            self.tenders[r["tender_id"]] = Tender(
                r["tender_id"],
                r["title"],
                r["method"],
                r["value_fen"],
                r["currency"],
                r["period_start"],
                r["period_end"],
                r["status"],
                r["project_code"],
                r["year"],
                r["idx"],
            )
        for r in await self.conn.fetch(_EVENTS, self.org, list(ids)):
            tender = self.tenders.get(r["tender_id"])
            if tender is not None:
                award = (r["award_year"], r["award_index"]) if r["award_year"] is not None else None
                tender.events.append(
                    Event(
                        r["year"],
                        r["idx"],
                        r["kind"],
                        r["party_id"],
                        r["amount_fen"],
                        r["contract_id"],
                        award,
                        r["reversed"],
                    )
                )

    async def _load_targets(self, targets: set[tuple[int, int]]) -> None:
        if not targets:
            return
        years = [t[0] for t in targets]
        idxs = [t[1] for t in targets]
        for t in targets:
            self.targets.setdefault(t, None)
        rows = await self.conn.fetch(_TARGETS, self.org, years, idxs)
        postings: dict[tuple[int, int], list[Posting]] = defaultdict(list)
        for r in await self.conn.fetch(_TARGET_POSTINGS, self.org, years, idxs):
            postings[(r["year"], r["idx"])].append(
                Posting(r["fund_code"], r["account"], r["amount_fen"], r["flow"], r["month"])
            )
        for r in rows:
            key = (r["year"], r["idx"])
            self.targets[key] = Target(
                r["year"],
                r["idx"],
                r["kind"],
                r["actor"],
                r["visibility"],
                r["occurred_on"],
                postings.get(key, []),
                r["tender_id"],
                next(
                    (
                        p.account[8:]
                        for p in postings.get(key, [])
                        if p.account.startswith("project:")
                    ),
                    None,
                ),
                r["reviewed"],
                r["reversed"],
            )

    # --- applying -----------------------------------------------------------------

    def apply(self, s: Sequenced) -> None:
        start = len(self.postings)
        handler = _HANDLERS.get(s.entry.kind)
        if handler is not None:
            handler(self, s)
        # Later entries of the same batch may point at this one.
        self.targets[(s.year, s.index)] = Target(
            s.year,
            s.index,
            s.entry.kind,
            s.entry.actor,
            s.entry.visibility,
            s.entry.occurred_on,
            [Posting(p[4], p[5], p[6], p[7], p[8]) for p in self.postings[start:]],
            getattr(s.entry.body, "tender_id", None),
            getattr(s.entry.body, "project_code", None),
            False,
            False,
        )

    def _fund(self, code: str) -> Fund:
        fund = self.funds.get(code)
        if fund is None:
            raise _invalid("$.body.fund_code", f"unknown fund {code!r}", f"No fund {code!r}")
        return fund

    def _project(self, code: str, path: str = "$.body.project_code") -> Project:
        project = self.projects.get(code)
        if project is None:
            raise _invalid(path, f"unknown project {code!r}", f"No project {code!r}")
        return project

    def _tender(self, tid: str) -> Tender:
        tender = self.tenders.get(tid)
        if tender is None:
            raise _invalid("$.body.tender_id", f"unknown tender {tid!r}", f"No tender {tid!r}")
        return tender

    def _post(self, s: Sequenced, lines: Iterable[tuple[str, str, int, str]]) -> None:
        month = _month(s.entry.occurred_on)
        lines = list(lines)
        for fund_code, account, amount, _ in lines:  # refused before anything moves
            if account.startswith("fund:"):
                balance = self._fund(fund_code).balance
                _check_total(balance, balance + amount, f"fund {fund_code}'s balance")
        start = len(self.postings)
        for n, (fund_code, account, amount, flow) in enumerate(lines):
            self.postings.append(
                (self.org, s.year, s.index, n, fund_code, account, amount, flow, month)
            )
            if account.startswith("fund:"):
                fund = self._fund(fund_code)
                fund.balance += amount
                fund.dirty = True
                period = self.periods[(fund_code, "all", month)]
                if flow == "receipt":
                    period[0] += amount
                    period[2] += 1 if amount > 0 else -1
                else:
                    period[1] -= amount
                    period[3] += 1 if amount < 0 else -1
        # Double entry: the lines of one entry always sum to zero.
        assert sum(p[6] for p in self.postings[start:]) == 0
        if s.entry.visibility == "public":
            # Public summaries say how many of the month's entries await review.
            fund_code = self.postings[start][4]
            self.periods[(fund_code, "public", month)][4] += 1

    def _check_balance(self, fund: Fund, outflow: int, what: str) -> None:
        if outflow <= fund.balance or fund.allow_overdraft:
            return
        raise Conflict(
            f"{what} of {from_fen(outflow)} exceeds the balance of fund {fund.code} "
            f"({from_fen(fund.balance)}); shortfall {from_fen(outflow - fund.balance)}",
            fund_code=fund.code,
            balance=from_fen(fund.balance),
            shortfall=from_fen(outflow - fund.balance),
        )

    # --- writing ------------------------------------------------------------------

    def writes(self) -> list[Write]:
        """What applying the entries changed, for ``ledger.writes.send``."""
        org = self.org
        out: list[Write] = [
            Rows(
                "funds",
                ("org", "fund_code", "name", "category", "currency", "allow_overdraft",
                 "visibility", "opened_year", "opened_index", "balance_fen"),
                ("text", "text", "text", "text", "text", "bool", "text", "int", "bigint", "bigint"),
                [
                    (org, f.code, f.name, f.category, f.currency, f.allow_overdraft,
                     f.visibility, *self.opened[f.code], f.balance)
                    for f in self.funds.values()
                    if f is not None and f.new
                ],
            ),
            Rows(
                "postings",
                ("org", "year", "idx", "line", "fund_code", "account", "amount_fen", "flow",
                 "month"),
                ("text", "int", "bigint", "smallint", "text", "text", "bigint", "text", "date"),
                self.postings,
            ),
            Rows(
                "project_approvals",
                ("org", "year", "idx", "project_code", "approval_type", "document_no",
                 "authority", "decision", "decided_on"),
                ("text", "int", "bigint", "text", "text", "text", "text", "text", "date"),
                self.approvals,
            ),
            Rows(
                "procurement_events",
                ("org", "year", "idx", "tender_id", "kind", "party_id", "party_name",
                 "amount_fen", "on_date", "contract_id", "award_year", "award_index"),
                ("text", "int", "bigint", "text", "text", "text", "text", "bigint", "date",
                 "text", "int", "bigint"),
                self.events,
            ),
            Rows(
                "reviews",
                ("org", "target_year", "target_index", "decision", "reason", "legal_basis",
                 "reviewer", "year", "idx", "reviewed_at"),
                ("text", "int", "bigint", "text", "text", "text", "text", "int", "bigint",
                 "timestamptz"),
                self.reviews,
            ),
            Rows(
                "levy_assessments",
                ("org", "year", "idx", "fund_code", "payer_id", "payer_name", "period",
                 "assessed_fen", "reduction_fen", "deferred_until", "reference"),
                ("text", "int", "bigint", "text", "text", "text", "text", "bigint", "bigint",
                 "date", "text"),
                self.assessments,
            ),
            Rows(
                "reversals",
                ("org", "target_year", "target_index", "year", "idx"),
                ("text", "int", "bigint", "int", "bigint"),
                self.reversals,
            ),
        ]  # fmt: skip
        out.append(
            Each(
                _FUND_BALANCE,
                [
                    (org, f.code, f.balance)
                    for f in self.funds.values()
                    if f is not None and f.dirty and not f.new
                ],
            )
        )
        if self.periods:
            out.append(
                Statement(
                    """
                    INSERT INTO fund_periods AS p (org, fund_code, scope, month, receipts_fen,
                        disbursements_fen, receipts_n, disbursements_n, pending_n, withheld_n)
                    SELECT $1, * FROM unnest($2::text[], $3::text[], $4::date[], $5::bigint[],
                        $6::bigint[], $7::int[], $8::int[], $9::int[], $10::int[])
                    ON CONFLICT (org, fund_code, scope, month) DO UPDATE SET
                        receipts_fen = p.receipts_fen + EXCLUDED.receipts_fen,
                        disbursements_fen = p.disbursements_fen + EXCLUDED.disbursements_fen,
                        receipts_n = p.receipts_n + EXCLUDED.receipts_n,
                        disbursements_n = p.disbursements_n + EXCLUDED.disbursements_n,
                        pending_n = p.pending_n + EXCLUDED.pending_n,
                        withheld_n = p.withheld_n + EXCLUDED.withheld_n
                    """,
                    (org, *columns((*key, *v) for key, v in self.periods.items())),
                )
            )
        if self.fund_targets:
            out.append(
                Statement(
                    """INSERT INTO fund_targets AS t (org, fund_code, year, direction, amount_fen,
                           set_year, set_index)
                       SELECT $1, * FROM unnest($2::text[], $3::int[], $4::text[], $5::bigint[],
                           $6::int[], $7::bigint[])
                       ON CONFLICT (org, fund_code, year, direction) DO UPDATE SET
                           amount_fen = EXCLUDED.amount_fen, set_year = EXCLUDED.set_year,
                           set_index = EXCLUDED.set_index""",
                    (org, *columns((*key, *v) for key, v in self.fund_targets.items())),
                )
            )
        projects = [p for p in self.projects.values() if p is not None and (p.new or p.dirty)]
        if projects:
            out.append(
                Statement(
                    """INSERT INTO projects AS p (org, project_code, name, category, location,
                           total_investment_fen, status, disbursed_fen, registered_year,
                           registered_index)
                       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],
                           $6::bigint[], $7::text[], $8::bigint[], $9::int[], $10::bigint[])
                       ON CONFLICT (org, project_code) DO UPDATE SET
                           total_investment_fen = EXCLUDED.total_investment_fen,
                           status = EXCLUDED.status, disbursed_fen = EXCLUDED.disbursed_fen""",
                    (org, *columns(
                        (p.code, p.name, p.category, p.location, p.total, p.status, p.disbursed,
                         p.year, p.index)
                        for p in projects
                    )),
                )
            )  # fmt: skip
        tenders = [t for t in self.tenders.values() if t is not None and (t.new or t.dirty)]
        if tenders:
            out.append(
                Statement(
                    """INSERT INTO tenders AS t (org, tender_id, title, method, value_fen, currency,
                           period_start, period_end, status, project_code, year, idx)
                       SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[],
                           $6::text[], $7::date[], $8::date[], $9::text[], $10::text[], $11::int[],
                           $12::bigint[])
                       ON CONFLICT (org, tender_id) DO UPDATE SET title = EXCLUDED.title,
                           value_fen = EXCLUDED.value_fen, period_start = EXCLUDED.period_start,
                           period_end = EXCLUDED.period_end, status = EXCLUDED.status""",
                    (org, *columns(
                        (t.tender_id, t.title, t.method, t.value, t.currency, t.start, t.end,
                         t.status, t.project_code, t.year, t.index)
                        for t in tenders
                    )),
                )
            )  # fmt: skip
        if self.reversed_events:
            # A reversal may target an event inserted by this same append: sent after it.
            out.append(
                Each(
                    """UPDATE procurement_events SET reversed = true
                       WHERE org = $1 AND year = $2 AND idx = $3""",
                    [(org, year, idx) for year, idx in self.reversed_events],
                    alone=True,
                )
            )
        return out


# --- the rules, one handler per kind -----------------------------------------------------


def _fund_opened(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.FundOpened)
    if b.funds.get(body.fund_code) is not None:
        raise Conflict(f"Fund {body.fund_code!r} is already open", fund_code=body.fund_code)
    b.funds[body.fund_code] = Fund(
        body.fund_code,
        body.name,
        body.category,
        body.currency,
        body.allow_overdraft,
        s.entry.visibility,
        0,
        new=True,
    )
    b.opened[body.fund_code] = (s.year, s.index)


def _fund_target_set(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.FundTargetSet)
    b._fund(body.fund_code)
    b.fund_targets[(body.fund_code, body.year, body.direction)] = (
        to_fen(body.amount),
        s.year,
        s.index,
    )


def _positive(amount: str) -> int:
    fen = to_fen(amount)
    if fen <= 0:
        raise _invalid("$.body.amount", "must be greater than 0.00")
    return fen


def _fund_receipt(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.FundReceipt)
    fen = _positive(body.amount)
    b._fund(body.fund_code)
    code = body.fund_code
    b._post(
        s,
        [(code, f"fund:{code}", fen, "receipt"), (code, f"payer:{body.payer.id}", -fen, "receipt")],
    )


def _fund_disbursement(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.FundDisbursement)
    fen = _positive(body.amount)
    fund = b._fund(body.fund_code)
    project = b._project(body.project_code) if body.project_code else None
    b._check_balance(fund, fen, "Disbursement")
    if project is not None:
        disbursed = project.disbursed
        _check_total(disbursed, disbursed + fen, f"project {project.code}'s disbursed amount")
    code = body.fund_code
    counter = f"project:{project.code}" if project else f"payee:{body.payee.id}"
    b._post(s, [(code, f"fund:{code}", -fen, "disbursement"), (code, counter, fen, "disbursement")])
    if project is not None:
        project.disbursed += fen
        project.dirty = True


def _fund_levy_assessed(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.FundLevyAssessed)
    fund = b._fund(body.fund_code)
    if fund.category != "pollution_levy":
        raise _invalid("$.body.fund_code", f"fund {fund.code} is not a pollution-levy fund")
    assessed = _positive(body.amount)
    reduction = to_fen(body.reduction) if body.reduction else 0
    if reduction > assessed:
        raise _invalid("$.body.reduction", "a reduction cannot exceed the amount assessed")
    if reduction and not body.reduction_basis:
        raise _invalid("$.body.reduction_basis", "a reduction needs its basis")
    b.assessments.append(
        (b.org, s.year, s.index, body.fund_code, body.payer.id, body.payer.name, body.period,
         assessed, reduction, body.deferred_until, body.reference)
    )  # fmt: skip


def _project_registered(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProjectRegistered)
    if b.projects.get(body.project_code) is not None:
        raise Conflict(f"Project {body.project_code!r} is already registered")
    b.projects[body.project_code] = Project(
        body.project_code,
        body.name,
        body.category,
        body.location,
        to_fen(body.total_investment),
        "planned",
        0,
        s.year,
        s.index,
        new=True,
    )


def _project_approval(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProjectApproval)
    b._project(body.project_code)
    b.approvals.append(
        (b.org, s.year, s.index, body.project_code, body.approval_type, body.document_no,
         body.authority, body.decision, body.decided_on)
    )  # fmt: skip


def _project_status(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProjectStatus)
    project = b._project(body.project_code)
    allowed = PROJECT_TRANSITIONS[project.status]
    if body.status not in allowed:
        raise Conflict(
            f"Project {project.code} is {project.status}; it can become "
            + (", ".join(allowed) if allowed else "nothing else (final)"),
            current_status=project.status,
            allowed=list(allowed),
        )
    project.status = body.status
    project.dirty = True


def _project_budget_amended(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProjectBudgetAmended)
    project = b._project(body.project_code)
    project.total = to_fen(body.total_investment)
    project.dirty = True


def _procurement_tender(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProcurementTender)
    if b.tenders.get(body.tender_id) is not None:
        raise Conflict(f"Tender {body.tender_id!r} already exists", tender_id=body.tender_id)
    if body.period.end < body.period.start:
        raise _invalid("$.body.period.end", "the tender period ends before it starts")
    if body.project_code:
        b._project(body.project_code)
    b.tenders[body.tender_id] = Tender(
        body.tender_id,
        body.title,
        body.method,
        to_fen(body.value.amount),
        body.value.currency,
        body.period.start,
        body.period.end,
        "active",
        body.project_code,
        s.year,
        s.index,
        new=True,
    )


def _open_tender(b: Books, tid: str, what: str) -> Tender:
    tender = b._tender(tid)
    if tender.status == "cancelled":
        raise Conflict(f"Tender {tid} was cancelled; no {what} can follow", tender_id=tid)
    return tender


def _event(b: Books, s: Sequenced, tender: Tender, kind: str, party: k.Party, amount: int,
           on: dt.date, contract_id: str | None = None,
           award: tuple[int, int] | None = None) -> None:  # fmt: skip
    tender.events.append(Event(s.year, s.index, kind, party.id, amount, contract_id, award))
    b.events.append(
        (b.org, s.year, s.index, tender.tender_id, kind, party.id, party.name, amount, on,
         contract_id, award[0] if award else None, award[1] if award else None)
    )  # fmt: skip
    tender.dirty = True


def _procurement_bid(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProcurementBid)
    tender = _open_tender(b, body.tender_id, "bid")
    if tender.active("award"):
        raise Conflict(f"Tender {tender.tender_id} was already awarded; bidding is closed")
    if not tender.start <= body.submitted_on <= tender.end:
        raise Conflict(
            f"Bid submitted on {body.submitted_on} is outside the tender period "
            f"{tender.start} to {tender.end}",
            tender_id=tender.tender_id,
        )
    _event(b, s, tender, "bid", body.bidder, _positive(body.amount), body.submitted_on)


def _procurement_award(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProcurementAward)
    tender = _open_tender(b, body.tender_id, "award")
    if tender.active("award"):
        raise Conflict(f"Tender {tender.tender_id} was already awarded")
    bidders = {e.party_id for e in tender.active("bid")}
    if tender.method != "direct" and body.supplier.id not in bidders:
        raise Conflict(
            f"Supplier {body.supplier.id} did not bid on tender {tender.tender_id}; "
            "only a direct procurement may award without a bid",
            bidders=sorted(bidders),
        )
    _event(b, s, tender, "award", body.supplier, _positive(body.amount), body.date)
    tender.status = "awarded"


def _procurement_contract(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProcurementContract)
    tender = _open_tender(b, body.tender_id, "contract")
    awards = tender.active("award")
    if not awards:
        raise Conflict(f"Tender {tender.tender_id} has no award to sign a contract for")
    award = awards[-1]
    if body.supplier.id != award.party_id:
        raise Conflict(
            f"The award of tender {tender.tender_id} went to {award.party_id}, "
            f"not to {body.supplier.id}"
        )
    if any(c.award == (award.year, award.index) for c in tender.active("contract")):
        raise Conflict(f"The award of tender {tender.tender_id} already has a contract")
    _event(b, s, tender, "contract", body.supplier, _positive(body.amount), body.signed_on,
           body.contract_id, (award.year, award.index))  # fmt: skip
    tender.status = "contracted"


def _procurement_amendment(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProcurementAmendment)
    tender = _open_tender(b, body.tender_id, "amendment")
    changes = body.changes
    if changes.title is None and changes.value is None and changes.period is None:
        if changes.description is None:
            raise _invalid("$.body.changes", "an amendment must change something")
    if changes.title is not None:
        tender.title = changes.title
    if changes.value is not None:
        tender.value = to_fen(changes.value.amount)
    if changes.period is not None:
        if changes.period.start is None and changes.period.end is None:
            raise _invalid("$.body.changes.period", "give the new start, the new end, or both")
        tender.start = changes.period.start or tender.start
        tender.end = changes.period.end or tender.end
    if tender.end < tender.start:
        raise _invalid("$.body.changes.period", "the tender period ends before it starts")
    tender.dirty = True


def _procurement_cancelled(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ProcurementCancelled)
    tender = _open_tender(b, body.tender_id, "cancellation")
    if tender.active("contract"):
        raise Conflict(
            f"Tender {tender.tender_id} has a signed contract; reverse the contract first"
        )
    tender.status = "cancelled"
    tender.dirty = True


def _target(b: Books, body: k.CorrectionReversal | k.ReviewApproved | k.ReviewWithheld) -> Target:
    org, _, year = body.target_log.partition("/")
    if org != b.org:
        raise _invalid("$.body.target_log", f"an entry of {b.org} can only point into its own logs")
    target = b.targets.get((int(year), body.target_index))
    if target is None:
        if isinstance(body, k.CorrectionReversal):
            raise _invalid(
                "$.body.target_index", f"no entry {body.target_index} in log {body.target_log}"
            )
        # A review's entry is named by the route's path, not by a body: not found.
        raise NotFound(
            f"{body.target_log} has no entry {body.target_index}",
            log=body.target_log,
            index=body.target_index,
        )
    return target


def _correction_reversal(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.CorrectionReversal)
    target = _target(b, body)
    if target.kind not in REVERSIBLE_KINDS:
        raise _invalid(
            "$.body.target_index",
            f"a {target.kind} entry cannot be reversed; reversible: "
            + ", ".join(sorted(REVERSIBLE_KINDS)),
        )
    if target.reversed:
        raise Conflict(f"Entry {body.target_log}#{body.target_index} was already reversed")
    if target.kind in MONETARY_KINDS:
        # What the target put into its fund; the reversal takes exactly that out.
        target_in = sum(p.amount for p in target.postings if p.account.startswith("fund:"))
        fund = b._fund(target.postings[0].fund_code)
        if target_in > 0:
            b._check_balance(fund, target_in, "Reversal")
        b._post(s, [(p.fund_code, p.account, -p.amount, p.flow) for p in target.postings])
        if target.kind == "fund.disbursement" and target.project_code:
            project = b._project(target.project_code)
            project.disbursed += target_in  # target_in is minus the disbursed amount
            project.dirty = True
    else:
        assert target.tender_id is not None
        tender = b._tender(target.tender_id)
        event = next(e for e in tender.events if (e.year, e.index) == (target.year, target.index))
        if event.kind == "award" and any(
            c.award == (event.year, event.index) for c in tender.active("contract")
        ):
            raise Conflict("This award has a contract; reverse the contract first")
        event.reversed = True
        b.reversed_events.append((event.year, event.index))
        if tender.status != "cancelled":
            tender.status = (
                "contracted"
                if tender.active("contract")
                else "awarded"
                if tender.active("award")
                else "active"
            )
        tender.dirty = True
    target.reversed = True
    b.reversals.append((b.org, target.year, target.index, s.year, s.index))


def _review(b: Books, s: Sequenced) -> None:
    body = s.entry.body
    assert isinstance(body, k.ReviewApproved | k.ReviewWithheld)
    target = _target(b, body)
    if target.kind in k.SYSTEM_KINDS or target.visibility != "public":
        raise Conflict(
            f"Entry {body.target_log}#{body.target_index} is "
            + ("internal" if target.visibility != "public" else f"a {target.kind} record")
            + "; only public entries are reviewed for publication"
        )
    if target.reviewed:
        raise Conflict(f"Entry {body.target_log}#{body.target_index} was already reviewed")
    if target.actor == s.entry.actor:
        raise Forbidden("The reviewer must not be the entry's poster")
    target.reviewed = True
    approved = isinstance(body, k.ReviewApproved)
    b.reviews.append(
        (
            b.org,
            target.year,
            target.index,
            "approved" if approved else "withheld",
            None if approved else body.reason,  # type: ignore[union-attr]
            None if approved else body.legal_basis,  # type: ignore[union-attr]
            s.entry.actor,
            s.year,
            s.index,
            s.recorded_at,
        )
    )
    for p in target.postings:
        if not p.account.startswith("fund:"):
            continue
        period = b.periods[(p.fund_code, "public", p.month)]
        period[4] -= 1
        if not approved:
            period[5] += 1
            continue
        # The public summaries' amounts move only when an entry is approved.
        if p.flow == "receipt":
            period[0] += p.amount
            period[2] += 1 if p.amount > 0 else -1
        else:
            period[1] -= p.amount
            period[3] += 1 if p.amount < 0 else -1


_HANDLERS = {
    "fund.opened": _fund_opened,
    "fund.target_set": _fund_target_set,
    "fund.receipt": _fund_receipt,
    "fund.disbursement": _fund_disbursement,
    "fund.levy_assessed": _fund_levy_assessed,
    "project.registered": _project_registered,
    "project.approval": _project_approval,
    "project.status": _project_status,
    "project.budget_amended": _project_budget_amended,
    "procurement.tender": _procurement_tender,
    "procurement.bid": _procurement_bid,
    "procurement.award": _procurement_award,
    "procurement.contract": _procurement_contract,
    "procurement.amendment": _procurement_amendment,
    "procurement.cancelled": _procurement_cancelled,
    "correction.reversal": _correction_reversal,
    "review.approved": _review,
    "review.withheld": _review,
}


async def load_books(conn: asyncpg.Connection, entries: Sequence[NewEntry]) -> Applier:
    """The append's effects. Loads, under the org's lock, the state ``entries`` touch.

    Returns what applies the sequenced entries in memory and gives back the
    writes to send; it raises on the first rule broken, before anything is
    written. A LedgerError raised for an entry carries ``position``: its place
    among the entries the caller asked for (year.opened leaves excluded), so a
    batch can name the failing entry.
    """
    books: dict[str, Books] = {}
    for e in entries:
        if e.org not in books:
            books[e.org] = Books(conn, e.org)
    for org, b in books.items():
        await b.preload([e for e in entries if e.org == org])

    def apply(sequenced: Sequence[Sequenced]) -> list[Write]:
        positions = {
            id(s): n for n, s in enumerate(x for x in sequenced if x.entry.kind != "year.opened")
        }
        for s in sequenced:
            try:
                books[s.entry.org].apply(s)
            except LedgerError as exc:
                exc.position = positions.get(id(s))  # type: ignore[attr-defined]
                raise
        return [w for b in books.values() for w in b.writes()]

    return apply
