"""Verify a ledger from its storage, trusting nothing but the signing key.

For every log: each stored leaf's bytes are canonical and hash to the stored
leaf hash; its indexed columns agree with the bytes; indices run 0..n-1 with
no gap; every stored subtree hash equals the one recomputed from the leaves;
every signed checkpoint's signature verifies and its root equals the root
recomputed at its size; the head equals the recomputed tree. The first
failure of each log is reported with its log and index. Then the books:
postings balance per entry and add up to every fund's balance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ledger.canonical import canonical_bytes, canonical_loads
from ledger.checkpoint import NoteError, NoteVerifier
from ledger.logs import stored_level
from ledger.tree import CompactRange, leaf_hash

CHUNK = 5000


@dataclass(frozen=True)
class Problem:
    log: str
    index: int | None
    message: str

    def __str__(self) -> str:
        where = self.log if self.index is None else f"{self.log} index {self.index}"
        return f"{where}: {self.message}"


@dataclass
class Report:
    logs: int = 0
    leaves: int = 0
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _LogFailed(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _check_columns(row: asyncpg.Record, leaf: dict[str, Any], name: str, index: int) -> None:
    recorded = row["recorded_at"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    expected = {
        "log": name,
        "index": index,
        "kind": row["kind"],
        "subject": row["subject"],
        "occurred_on": row["occurred_on"].isoformat(),
        "recorded_at": recorded,
        "actor": row["actor"],
        "visibility": row["visibility"],
        "idempotency_key": row["idempotency_key"],
    }
    for key, value in expected.items():
        if leaf.get(key) != value:
            raise _LogFailed(
                Problem(name, index, f"stored column {key} ({value!r}) disagrees with the leaf")
            )


async def _verify_log(
    conn: asyncpg.Connection,
    org: str,
    year: int,
    verifier: NoteVerifier,
    origin_prefix: str,
    report: Report,
    progress: Callable[[int], None] | None,
) -> None:
    name = f"{org}/{year}"
    head = await conn.fetchrow(
        "SELECT size, root, frontier FROM logs WHERE org = $1 AND year = $2", org, year
    )
    checkpoints = await conn.fetch(
        "SELECT size, root, note FROM checkpoints WHERE org = $1 AND year = $2 ORDER BY size",
        org,
        year,
    )
    origin = f"{origin_prefix}/{name}"
    for cp in checkpoints:
        try:
            signed = verifier.verify(cp["note"])
        except NoteError as exc:
            raise _LogFailed(
                Problem(name, None, f"checkpoint at size {cp['size']}: {exc}")
            ) from None
        if (signed.origin, signed.size, signed.root) != (origin, cp["size"], bytes(cp["root"])):
            raise _LogFailed(
                Problem(name, None, f"checkpoint at size {cp['size']} disagrees with its note")
            )
    pending = [(cp["size"], bytes(cp["root"])) for cp in checkpoints]
    pending.reverse()

    tree = CompactRange()
    nodes: dict[tuple[int, int], bytes] = {}

    async def check_nodes() -> None:
        if not nodes:
            return
        keys = list(nodes)
        rows = await conn.fetch(
            """SELECT level, idx, hash FROM tree_nodes WHERE org = $1 AND year = $2
               AND (level, idx) IN (SELECT * FROM unnest($3::smallint[], $4::bigint[]))""",
            org,
            year,
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        stored = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
        for key in sorted(keys, key=lambda k: (k[1] + 1) << k[0]):
            if stored.get(key) != nodes[key]:
                last_leaf = ((key[1] + 1) << key[0]) - 1
                raise _LogFailed(
                    Problem(name, last_leaf, f"stored subtree hash {key} is wrong or missing")
                )
        nodes.clear()

    while pending and pending[-1][0] == 0:
        pending.pop()
    async for row in conn.cursor(
        """SELECT idx, leaf_hash, leaf, kind, subject, occurred_on, recorded_at, actor,
                  visibility, idempotency_key
           FROM leaves WHERE org = $1 AND year = $2 ORDER BY idx""",
        org,
        year,
        prefetch=CHUNK,
    ):
        index = tree.size
        if row["idx"] != index:
            raise _LogFailed(Problem(name, index, f"index {index} is missing"))
        raw = bytes(row["leaf"])
        computed = leaf_hash(raw)
        if computed != bytes(row["leaf_hash"]):
            raise _LogFailed(Problem(name, index, "leaf bytes do not hash to the stored leaf hash"))
        try:
            leaf = canonical_loads(raw)
        except ValueError:
            raise _LogFailed(Problem(name, index, "leaf bytes are not JSON")) from None
        if canonical_bytes(leaf) != raw:
            raise _LogFailed(Problem(name, index, "leaf bytes are not canonical JSON"))
        _check_columns(row, leaf, name, index)
        for level, idx, h in tree.append(computed):
            if stored_level(level):
                nodes[(level, idx)] = h
        report.leaves += 1
        while pending and pending[-1][0] == tree.size:
            size, root = pending.pop()
            if tree.root() != root:
                raise _LogFailed(
                    Problem(name, size - 1, f"checkpoint at size {size} does not match the leaves")
                )
            report.checkpoints += 1
        if len(nodes) >= CHUNK:
            await check_nodes()
        if progress is not None and tree.size % CHUNK == 0:
            progress(CHUNK)
    await check_nodes()
    if progress is not None:
        progress(tree.size % CHUNK)
    if pending:
        raise _LogFailed(
            Problem(name, tree.size, f"checkpoint at size {pending[-1][0]} is beyond the leaves")
        )
    if head["size"] != tree.size or bytes(head["root"]) != tree.root():
        raise _LogFailed(Problem(name, None, "the log head disagrees with its leaves"))
    if [bytes(h) for h in head["frontier"]] != tree.hashes:
        raise _LogFailed(Problem(name, None, "the log head's frontier disagrees with its leaves"))


async def verify_ledger(
    conn: asyncpg.Connection,
    verifier: NoteVerifier,
    origin_prefix: str,
    *,
    org: str | None = None,
    year: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Check every selected log; the report lists the first problem of each bad log."""
    logs = await conn.fetch(
        """SELECT org, year FROM logs
           WHERE ($1::text IS NULL OR org = $1) AND ($2::int IS NULL OR year = $2)
           ORDER BY org, year""",
        org,
        year,
    )
    report = Report()
    for row in logs:
        report.logs += 1
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await _verify_log(
                    conn, row["org"], row["year"], verifier, origin_prefix, report, progress
                )
        except _LogFailed as failed:
            report.problems.append(failed.problem)
    await _verify_books(conn, org, report)
    return report


async def _verify_books(conn: asyncpg.Connection, org: str | None, report: Report) -> None:
    """Double entry holds: every entry's postings sum to zero, every monetary leaf has
    postings, and every fund's balance is the sum of its fund postings."""
    unbalanced = await conn.fetchrow(
        """SELECT org, year, idx, sum(amount_fen) AS total FROM postings
           WHERE $1::text IS NULL OR org = $1
           GROUP BY org, year, idx HAVING sum(amount_fen) <> 0 ORDER BY org, year, idx LIMIT 1""",
        org,
    )
    if unbalanced is not None:
        report.problems.append(
            Problem(
                f"{unbalanced['org']}/{unbalanced['year']}",
                unbalanced["idx"],
                f"postings do not balance (they sum to {unbalanced['total']} fen)",
            )
        )
    missing = await conn.fetchrow(
        """SELECT l.org, l.year, l.idx FROM leaves l
           WHERE ($1::text IS NULL OR l.org = $1)
             AND l.kind IN ('fund.receipt', 'fund.disbursement')
             AND NOT EXISTS (SELECT 1 FROM postings p
                             WHERE p.org = l.org AND p.year = l.year AND p.idx = l.idx)
           ORDER BY l.org, l.year, l.idx LIMIT 1""",
        org,
    )
    if missing is not None:
        report.problems.append(
            Problem(
                f"{missing['org']}/{missing['year']}",
                missing["idx"],
                "monetary entry has no postings",
            )
        )
    drift = await conn.fetchrow(
        """SELECT f.org, f.fund_code, f.balance_fen, coalesce(sum(p.amount_fen), 0) AS posted
           FROM funds f LEFT JOIN postings p
             ON p.org = f.org AND p.fund_code = f.fund_code AND p.account = 'fund:' || f.fund_code
           WHERE $1::text IS NULL OR f.org = $1
           GROUP BY f.org, f.fund_code, f.balance_fen
           HAVING f.balance_fen <> coalesce(sum(p.amount_fen), 0) LIMIT 1""",
        org,
    )
    if drift is not None:
        report.problems.append(
            Problem(
                drift["org"],
                None,
                f"fund {drift['fund_code']} balance {drift['balance_fen']} fen differs from "
                f"its postings {drift['posted']} fen",
            )
        )


async def total_leaves(
    conn: asyncpg.Connection, org: str | None = None, year: int | None = None
) -> int:
    value = await conn.fetchval(
        """SELECT coalesce(sum(size), 0) FROM logs
           WHERE ($1::text IS NULL OR org = $1) AND ($2::int IS NULL OR year = $2)""",
        org,
        year,
    )
    return int(value)
