"""The sequencer: the one place an index is assigned.

Contract (read it before changing anything here):

- An entry's ``index`` is assigned while holding the row lock on its log's head
  (``logs`` row ``FOR UPDATE``), in the same transaction that inserts the leaf,
  its new subtree hashes and the new head. Indices are therefore gap-free and
  the tree can never fork, whatever the concurrency or the number of processes.
- Locks are always taken in ``(org, year)`` order, so two transactions touching
  several logs cannot deadlock.
- A ``Receipt`` MUST NOT be handed to a client before its transaction has
  committed. ``append_entries`` returns receipts inside the transaction; the
  caller returns them only after the commit. ``GroupCommitter`` resolves a
  poster's future only after the group's commit returned (and may hold it a
  moment longer, until the next group holds the lock: see ``_Held``).
- ``GroupCommitter`` coalesces concurrent single posts into one transaction (at
  most ``max_group`` entries). If the group fails, each entry is retried in a
  transaction of its own, so one bad entry never takes another's place. A
  group whose COMMIT failed is first looked up in the log (``was_committed``):
  if it committed, its receipts stand; if that cannot be read, the posters are
  told the outcome is unknown rather than the entries appended twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ledger.canonical import canonical_typed
from ledger.entries import NewEntry, batch_request_sha256
from ledger.errors import CommitUnknown, Conflict, FieldError, IdempotencyMismatch, InvalidInput
from ledger.kinds import YearOpened
from ledger.logs import stored_level
from ledger.tree import EMPTY_ROOT, CompactRange, leaf_hash
from ledger.writes import Rows, Statement, Write, send

log = logging.getLogger(__name__)

LEAF_VERSION = 1


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of acceptance: where the entry sits and what it hashes to."""

    log: str
    index: int
    leaf_hash: bytes
    recorded_at: str


@dataclass(frozen=True, slots=True)
class Sequenced:
    """An entry with its place in the log, handed to the domain's effects."""

    entry: NewEntry
    year: int
    index: int
    recorded_at: dt.datetime
    leaf_hash: bytes


#: Applies sequenced entries to the domain (postings, balances, state machines)
#: in memory and returns the writes that record it. Raising aborts the append.
Applier = Callable[[Sequence[Sequenced]], Sequence[Write]]

#: Domain effects: called inside the append transaction once the org's lock is
#: held and before indices are assigned, to load the state the entries touch;
#: returns the ``Applier`` the append calls with the sequenced entries.
Effects = Callable[[asyncpg.Connection, Sequence[NewEntry]], Awaitable[Applier]]


class IdempotencyRace(Conflict):
    """Two requests with the same Idempotency-Key raced; the loser re-reads."""


def format_recorded_at(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


SALT_BYTES = 16


def build_leaf(
    entry: NewEntry,
    *,
    index: int,
    recorded_at: str,
    body: dict[str, Any] | None = None,
    salt: bytes | None = None,
) -> dict[str, Any]:
    """The leaf object of SPEC §4; its canonical bytes are what the tree commits to.

    ``salt``: SALT_BYTES random bytes, drawn here when not given.
    """
    return {
        "v": LEAF_VERSION,
        "log": f"{entry.org}/{entry.year}",
        "index": index,
        "kind": entry.kind,
        "subject": entry.subject,
        "occurred_on": entry.occurred_on.isoformat(),
        "recorded_at": recorded_at,
        "actor": entry.actor,
        "visibility": entry.visibility,
        "idempotency_key": entry.idempotency_key,
        # Random per entry, so a withheld entry's hash reveals nothing of it.
        "salt": (salt if salt is not None else os.urandom(SALT_BYTES)).hex(),
        "body": body if body is not None else entry.body_json(),
    }


class LeafParts:
    """A leaf's canonical bytes, made before its index and time are known.

    Canonical JSON sorts keys, so ``index`` and ``recorded_at`` fall at fixed
    places: the bytes are ``head + index + middle + recorded_at + tail``. The
    Python work of a leaf (body to JSON values, canonical encoding, the salt) is
    done before the log's lock is taken; under the lock only the splice and the
    hash remain. ``tests/test_append_path.py`` proves the splice equal to
    ``canonical_typed(build_leaf(...))``.
    """

    __slots__ = ("head", "middle", "tail")

    def __init__(self, entry: NewEntry, salt: bytes | None = None) -> None:
        items = build_leaf(entry, index=0, recorded_at="", salt=salt).items()
        parts = (
            {k: v for k, v in items if k < "index"},
            {k: v for k, v in items if "index" < k < "recorded_at"},
            {k: v for k, v in items if k > "recorded_at"},
        )
        try:
            head, middle, tail = (canonical_typed(part) for part in parts)
        except (TypeError, ValueError) as exc:
            # Typed bodies cannot get here; if one ever does, refuse it, never a 500.
            raise InvalidInput(
                f"The entry cannot be canonicalized: {exc}", [FieldError("$.body", str(exc))]
            ) from None
        self.head = head[:-1] + b',"index":'
        self.middle = b"," + middle[1:-1] + b',"recorded_at":"'
        self.tail = b'",' + tail[1:]

    def leaf_bytes(self, index: int, recorded_at: bytes) -> bytes:
        return b"".join((self.head, str(index).encode(), self.middle, recorded_at, self.tail))


@dataclass
class _Head:
    org: str
    year: int
    frontier: CompactRange
    closed: bool


_LEAF_TYPES = (
    "text", "int", "bigint", "bytea", "bytea", "text", "text", "date", "timestamptz", "text",
    "text", "text",
)  # fmt: skip
_NODE_TYPES = ("text", "int", "smallint", "bigint", "bytea")

_LEAF_COLUMNS = (
    "org",
    "year",
    "idx",
    "leaf_hash",
    "leaf",
    "kind",
    "subject",
    "occurred_on",
    "recorded_at",
    "actor",
    "visibility",
    "idempotency_key",
)


#: Logs this process has seen committed. A log is never deleted (a trigger
#: refuses it), so an append whose logs are all here skips the statement that
#: creates missing ones: a round trip less under the org lock. A log taken as
#: known that the database does not hold (another database behind the same
#: process) is created after all; see ``_heads_of``.
_KNOWN_LOGS: set[tuple[str, int]] = set()


async def _heads_of(
    conn: asyncpg.Connection, keys: list[tuple[str, int]], this_year: int
) -> tuple[list[NewEntry], dict[tuple[str, int], _Head]]:
    """Create the logs of ``keys`` that are missing and lock every head, in key order.

    Returns the ``year.opened`` entries the new logs must start with, and the heads.
    """
    created, openers = await _open_logs(conn, [k for k in keys if k not in _KNOWN_LOGS], this_year)
    # The logs of the years skipped between (see _open_logs) are locked too: their
    # year.opened leaves are appended with the rest.
    heads = await _lock_heads(conn, sorted({*keys, *created}))
    if any(k not in heads for k in keys):
        more_created, more_openers = await _open_logs(
            conn, [k for k in keys if k not in heads], this_year
        )
        created |= more_created
        openers = sorted([*openers, *more_openers], key=lambda e: (e.org, e.year))
        heads = await _lock_heads(conn, sorted({*keys, *created}))
    # Only logs that existed before this transaction: it may still roll back.
    _KNOWN_LOGS.update(k for k in heads if k not in created)
    return openers, heads


async def _open_logs(
    conn: asyncpg.Connection, keys: list[tuple[str, int]], this_year: int
) -> tuple[set[tuple[str, int]], list[NewEntry]]:
    """Create missing logs; return them and the ``year.opened`` entries they must start with.

    A log after the org's latest brings the logs of the years between, so that the
    years form one chain (SPEC §4): after 2024, an entry dated 2026 opens 2025 (its
    year.opened naming 2024) and 2026 (naming 2025). Otherwise 2024 would be named
    by 2026's year.opened, and again by 2025's once 2025 opened (a late entry, or
    the year.archived of 2024's close): a chain with a fork. So that a mistyped date
    does not open decades of logs, no log opens more than a year after
    ``this_year``. A gap left by an earlier version stays: a year opened inside it
    names the year before, as the later log does.
    """
    if not keys:
        return set(), []
    keys = await _with_years_between(conn, keys, this_year)
    created = await conn.fetch(
        """
        INSERT INTO logs (org, year, root)
        SELECT k.org, k.year, $3::bytea FROM unnest($1::text[], $2::int[]) AS k(org, year)
        ON CONFLICT DO NOTHING
        RETURNING org, year
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        EMPTY_ROOT,
    )
    openers: list[NewEntry] = []
    new = {(r["org"], r["year"]) for r in created}
    for row in sorted(created, key=lambda r: (r["org"], r["year"])):
        first = await conn.fetchval(
            "SELECT min(year) FROM logs WHERE org = $1 AND NOT year = ANY($2::int[])",
            row["org"],
            [y for o, y in new if o == row["org"]],
        )
        if first is not None and row["year"] < first:
            # The org's first log began without year.opened (there was no year
            # before it): a year put before it afterwards would stand outside the
            # chain of years (SPEC §4).
            raise Conflict(
                f"{row['org']}'s logs begin with {first}; an entry dated in {row['year']} "
                "cannot start a log before the first one, because every later year's log "
                "begins by naming the year before. Post it into an open year, as an "
                "adjustment that says so.",
                log=f"{row['org']}/{row['year']}",
                first_year=first,
            )
        prev = await conn.fetchrow(
            """
            SELECT l.year, c.size, c.root
            FROM logs l
            LEFT JOIN LATERAL (
                SELECT size, root FROM checkpoints c
                WHERE c.org = l.org AND c.year = l.year ORDER BY size DESC LIMIT 1
            ) c ON true
            WHERE l.org = $1 AND l.year < $2
            ORDER BY l.year DESC LIMIT 1
            """,
            row["org"],
            row["year"],
        )
        if prev is None:
            continue
        body = YearOpened(
            previous_log=f"{row['org']}/{prev['year']}",
            previous_size=prev["size"] or 0,
            previous_root=(prev["root"] or EMPTY_ROOT).hex(),
        )
        openers.append(
            NewEntry(
                org=row["org"],
                kind="year.opened",
                subject=f"log/{row['org']}/{row['year']}",
                occurred_on=dt.date(row["year"], 1, 1),
                visibility="public",
                body=body,
                actor="system",
            )
        )
    return {(r["org"], r["year"]) for r in created}, openers


async def _with_years_between(
    conn: asyncpg.Connection, keys: list[tuple[str, int]], this_year: int
) -> list[tuple[str, int]]:
    """``keys`` with the years between each org's latest log and its latest key."""
    orgs = sorted({org for org, _ in keys})
    latest = dict(
        await conn.fetch(
            "SELECT org, max(year) FROM logs WHERE org = ANY($1::text[]) GROUP BY org", orgs
        )
    )
    ahead = this_year + 1
    out = set(keys)
    for org in orgs:
        years = [y for o, y in keys if o == org]
        top, last = max(years), latest.get(org)
        if last is not None and top <= last:
            continue  # a log there already, or before the latest (see _open_logs)
        if top > ahead:
            raise Conflict(
                f"An entry dated in {top} would open {org}'s {top} log; no log opens more "
                f"than a year ahead (the latest that may open now is {ahead}). Check the "
                "entry's occurred_on.",
                log=f"{org}/{top}",
                latest_year=ahead,
            )
        out.update((org, y) for y in range(min(years) if last is None else last + 1, top))
    return sorted(out)


_LOCK_ORGS = "SELECT 1 FROM orgs WHERE code = ANY($1::text[]) ORDER BY code FOR NO KEY UPDATE"

_LOCK_HEADS = """
    SELECT org, year, size, frontier, closed_at FROM logs
    WHERE (org, year) IN (SELECT * FROM unnest($1::text[], $2::int[]))
    ORDER BY org, year
    FOR UPDATE
"""

# The org lock and the heads in one round trip. The org lock is the one-time filter,
# run before the logs are read; the statement's snapshot is older than the lock (it
# is taken before the statement waits), but a head locked FOR UPDATE is read at its
# latest committed version (READ COMMITTED follows a row's updates to lock it). A
# log opened by the transaction waited for is not seen: it is missing from the
# answer, and the append takes the long way (_heads_of).
_LOCK_ORG_AND_HEADS = """
    SELECT org, year, size, frontier, closed_at FROM logs
    WHERE (org, year) IN (SELECT * FROM unnest($1::text[], $2::int[]))
      AND (SELECT count(*) FROM (SELECT 1 FROM orgs WHERE code = ANY($3::text[])
                                 ORDER BY code FOR NO KEY UPDATE) locked) >= 0
    ORDER BY org, year
    FOR UPDATE OF logs
"""


async def _lock_org_and_heads(
    conn: asyncpg.Connection, orgs: list[str], keys: list[tuple[str, int]]
) -> dict[tuple[str, int], _Head]:
    """The orgs' lock, then the heads of ``keys`` (those there are), in one statement."""
    return _heads(
        await conn.fetch(_LOCK_ORG_AND_HEADS, [k[0] for k in keys], [k[1] for k in keys], orgs)
    )


async def _lock_heads(
    conn: asyncpg.Connection, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], _Head]:
    return _heads(await conn.fetch(_LOCK_HEADS, [k[0] for k in keys], [k[1] for k in keys]))


def _heads(rows: list[Any]) -> dict[tuple[str, int], _Head]:
    return {
        (r["org"], r["year"]): _Head(
            r["org"],
            r["year"],
            CompactRange(r["size"], list(r["frontier"])),
            r["closed_at"] is not None,
        )
        for r in rows
    }


async def append_entries(
    conn: asyncpg.Connection,
    entries: Sequence[NewEntry],
    *,
    effects: Effects | None = None,
    now: dt.datetime | None = None,
    on_locked: Callable[[], None] | None = None,
    batch_key: str | None = None,
) -> list[Receipt]:
    """Append ``entries`` to their logs. MUST run inside a transaction on ``conn``.

    Returns one receipt per entry, in order. The receipts are valid only once the
    caller's transaction commits. ``on_locked`` is called once the org's lock is
    held and the effects have loaded what they need: from there on, the append
    is Python work and one round trip of writes (``ledger.writes``). ``batch_key``
    is the Idempotency-Key of the batch ``entries`` are: looked up under the lock
    with the entries' own keys, and recorded with them.
    """
    if not entries:
        return []
    # The Python work, before any lock; the salts drawn in one call for the batch.
    salts = os.urandom(SALT_BYTES * len(entries))
    parts = [
        LeafParts(e, salts[i * SALT_BYTES : (i + 1) * SALT_BYTES]) for i, e in enumerate(entries)
    ]
    keys = sorted({(e.org, e.year) for e in entries})
    # One lock orders everything an org writes (its logs and its books), taken
    # first and in code order so that transactions never wait on each other in a
    # cycle (SPEC §8: one org's writes are ordered by one lock).
    orgs = sorted({k[0] for k in keys})
    heads = await _lock_org_and_heads(conn, orgs, keys) if _KNOWN_LOGS.issuperset(keys) else {}
    if len(heads) == len(keys):
        openers: list[NewEntry] = []
    else:  # a log to open, or one this process has not seen yet
        await conn.execute(_LOCK_ORGS, orgs)
        try:
            openers, heads = await _heads_of(conn, keys, (now or dt.datetime.now(dt.UTC)).year)
        except Conflict as exc:  # a log too far ahead: name the first entry dated in it
            logs = [f"{e.org}/{e.year}" for e in entries]
            if exc.extra.get("log") in logs:
                exc.position = logs.index(exc.extra["log"])  # type: ignore[attr-defined]
            raise
    for key in keys:
        if heads[key].closed:
            org, year = key
            raise Conflict(
                f"The {year} books of {org} are closed; post corrections into the open year "
                "as adjustments that reference the closed entry.",
                log=f"{org}/{year}",
            )
    await _refuse_taken_keys(conn, entries, batch_key)
    apply = await effects(conn, [*openers, *entries]) if effects is not None else None
    if on_locked is not None:
        on_locked()

    recorded_at = format_recorded_at(now or dt.datetime.now(dt.UTC))
    recorded_dt = dt.datetime.strptime(recorded_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    leaf_rows: list[tuple[Any, ...]] = []
    node_rows: list[tuple[Any, ...]] = []
    sequenced: list[Sequenced] = []
    receipts: list[Receipt] = []

    stamp = recorded_at.encode()
    for entry, part in zip(
        [*openers, *entries], [*(LeafParts(o) for o in openers), *parts], strict=True
    ):
        head = heads[(entry.org, entry.year)]
        index = head.frontier.size
        leaf_bytes = part.leaf_bytes(index, stamp)
        lh = leaf_hash(leaf_bytes)
        for level, idx, h in head.frontier.append_trusted(lh):
            if stored_level(level):
                node_rows.append((entry.org, entry.year, level, idx, h))
        leaf_rows.append(
            (
                entry.org,
                entry.year,
                index,
                lh,
                leaf_bytes,
                entry.kind,
                entry.subject,
                entry.occurred_on,
                recorded_dt,
                entry.actor,
                entry.visibility,
                entry.idempotency_key,
            )
        )
        sequenced.append(Sequenced(entry, entry.year, index, recorded_dt, lh))
        receipts.append(Receipt(f"{entry.org}/{entry.year}", index, lh, recorded_at))

    writes: list[Write] = [
        Rows("leaves", _LEAF_COLUMNS, _LEAF_TYPES, leaf_rows),
        Rows("tree_nodes", ("org", "year", "level", "idx", "hash"), _NODE_TYPES, node_rows),
    ]
    writes += [
        Statement(
            "UPDATE logs SET size = $3, root = $4, frontier = $5 WHERE org = $1 AND year = $2",
            (h.org, h.year, h.frontier.size, h.frontier.root(), h.frontier.hashes),
        )
        for h in heads.values()
    ]
    if apply is not None:
        writes += apply(sequenced)  # raises before anything is written
    try:
        await send(conn, writes)
    except asyncpg.NumericValueOutOfRangeError:
        # A total the books add up in the database (a month's receipts of a fund)
        # would pass a 64-bit integer: nothing of the append is written.
        raise Conflict(
            "The entries would take a total of the books past the largest it can hold "
            "(a signed 64-bit number of fen)"
        ) from None
    await _record_idempotency(conn, sequenced[len(openers) :], batch_key)
    # Receipts for the entries asked for, not the year.opened leaves put before them.
    return receipts[len(openers) :]


async def _refuse_taken_keys(
    conn: asyncpg.Connection, entries: Sequence[NewEntry], batch_key: str | None
) -> None:
    """Under the org's lock, before the books see the entries: a key taken meanwhile
    (an entry's, or the batch's) makes this a request that raced another under the
    key (the same request sent twice at once), to be answered from the key, not
    refused by the books as a second opening of a fund or a second spending."""
    keys = [(e.org, e.idempotency_key) for e in entries if e.idempotency_key is not None]
    if batch_key is not None:
        keys.append((entries[0].org, batch_key))
    if keys and await conn.fetchval(
        """
        SELECT EXISTS (SELECT FROM idempotency_keys k
                       JOIN unnest($1::text[], $2::text[]) AS u(org, key)
                         ON k.org = u.org AND k.key = u.key)
        """,
        [org for org, _ in keys],
        [key for _, key in keys],
    ):
        raise IdempotencyRace("Idempotency-Key was used concurrently; retry to get the receipt")


async def _record_idempotency(
    conn: asyncpg.Connection, sequenced: Sequence[Sequenced], batch_key: str | None
) -> None:
    """Record the keys of the entries asked for (``sequenced``, in order) and, for a
    keyed batch, the batch's own key: with the fingerprint of the whole batch
    (``ledger.entries.batch_request_sha256``), at its first entry."""
    keyed = [s for s in sequenced if s.entry.idempotency_key is not None]
    shas = [s.entry.request_sha256() for s in keyed]
    rows = [
        (s.entry.org, s.entry.idempotency_key, sha, s.year, s.index)
        for s, sha in zip(keyed, shas, strict=True)
    ]
    if batch_key is not None:  # a keyed batch's entries all carry keys (decode_batch)
        assert len(keyed) == len(sequenced)
        first = sequenced[0]
        rows.append(
            (first.entry.org, batch_key, batch_request_sha256(shas), first.year, first.index)
        )
    await _record_keys(conn, rows)


async def _record_keys(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str | None, bytes, int, int]]
) -> None:
    if not rows:
        return
    inserted = await conn.fetch(
        """
        INSERT INTO idempotency_keys (org, key, request_sha256, log_year, log_index)
        SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::bigint[])
        ON CONFLICT DO NOTHING
        RETURNING key
        """,
        *(list(column) for column in zip(*rows, strict=True)),
    )
    if len(inserted) != len(rows):
        raise IdempotencyRace("Idempotency-Key was used concurrently; retry to get the receipt")


async def find_idempotent(
    conn: asyncpg.Connection | asyncpg.Pool, org: str, asked: Sequence[tuple[str, bytes]]
) -> list[Receipt] | None:
    """The original receipts of a retried request, or None if none of its keys was used.

    ``asked`` is each key with the fingerprint of what it asks for: a single post's key
    and entry (``NewEntry.request_sha256``); a batch's key and the whole batch
    (``ledger.entries.batch_request_sha256``), then each entry's key
    (``ledger.entries.batch_key``) and entry. Raises IdempotencyMismatch, naming the
    first key, when some of the keys were used and others not, or for other requests.
    """
    rows = await conn.fetch(
        """
        SELECT k.key, k.request_sha256, k.log_year, k.log_index, l.leaf_hash, l.recorded_at
        FROM idempotency_keys k
        JOIN leaves l ON l.org = k.org AND l.year = k.log_year AND l.idx = k.log_index
        WHERE k.org = $1 AND k.key = ANY($2::text[])
        """,
        org,
        [key for key, _ in asked],
    )
    if not rows:
        return None
    found = {row["key"]: row for row in rows}
    if any(key not in found or bytes(found[key]["request_sha256"]) != sha for key, sha in asked):
        raise IdempotencyMismatch(
            "This Idempotency-Key was already used for a different request",
            idempotency_key=asked[0][0],
        )
    return [
        Receipt(
            f"{org}/{row['log_year']}",
            row["log_index"],
            bytes(row["leaf_hash"]),
            format_recorded_at(row["recorded_at"]),
        )
        for row in (found[key] for key, _ in asked)
    ]


#: How long reading back a failed commit waits for the org's lock: a transaction
#: whose client is gone holds it until the server notices.
COMMIT_CHECK_LOCK_TIMEOUT = "30s"


async def was_committed(
    pool: asyncpg.Pool, entries: Sequence[NewEntry], receipts: Sequence[Receipt]
) -> bool:
    """Whether the transaction that returned ``receipts`` for ``entries`` committed.

    For a COMMIT whose answer was lost. The org's lock is taken first, as an
    append takes it, so a transaction still in flight on the server (its client
    gone) has ended, one way or the other, before the leaves are read. A leaf's
    salt is random, so its hash at its index tells whether it is that entry.
    Raises when the database cannot be read: then the outcome stays unknown.
    """
    orgs = sorted({e.org for e in entries})
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{COMMIT_CHECK_LOCK_TIMEOUT}'")
            await conn.execute(
                "SELECT 1 FROM orgs WHERE code = ANY($1::text[]) ORDER BY code FOR NO KEY UPDATE",
                orgs,
            )
            rows = await conn.fetch(
                """
                SELECT k.i, l.leaf_hash
                FROM unnest($1::text[], $2::int[], $3::bigint[])
                    WITH ORDINALITY AS k(org, year, idx, i)
                JOIN leaves l ON l.org = k.org AND l.year = k.year AND l.idx = k.idx
                """,
                [e.org for e in entries],
                [e.year for e in entries],
                [r.index for r in receipts],
            )
    found = {row["i"] - 1: bytes(row["leaf_hash"]) for row in rows}
    ours = [found.get(i) == r.leaf_hash for i, r in enumerate(receipts)]
    if all(ours):
        return True
    if not any(ours):
        return False
    raise RuntimeError("a group's transaction is in the log only in part")  # pragma: no cover


async def read_back(
    pool: asyncpg.Pool, entries: Sequence[NewEntry], receipts: Sequence[Receipt]
) -> bool:
    """``was_committed`` for a COMMIT that failed; raises ``CommitUnknown`` when the
    log cannot be read, so that nobody appends the entries a second time."""
    try:
        return await was_committed(pool, entries, receipts)
    except Exception as exc:
        log.error("a commit failed and could not be read back: %s", exc)
        raise CommitUnknown(
            "The database did not confirm the commit, and whether it happened could not "
            "be read back. Look the entries up in the log before posting them again (a "
            "post or a batch can be repeated with the same Idempotency-Key).",
        ) from exc


#: One attempt at an append on a connection: it puts the receipts into the list it
#: is given before the COMMIT is sent, and returns them once committed.
Attempt = Callable[[asyncpg.Connection, list[Receipt]], Awaitable[list[Receipt]]]


async def append_once(
    pool: asyncpg.Pool, entries: Sequence[NewEntry], attempt: Attempt
) -> list[Receipt]:
    """``attempt`` on a connection of ``pool``, its outcome known even when the
    COMMIT's answer is lost: the receipts if it committed (read back if need be),
    else its error; ``CommitUnknown`` if the log cannot be read."""
    appended: list[Receipt] = []
    receipts: list[Receipt] | None = None
    try:
        async with pool.acquire() as conn:
            receipts = await attempt(conn, appended)
    except Exception as exc:
        if receipts is None and not (appended and await read_back(pool, entries, appended)):
            raise
        # Committed, then the COMMIT's answer or the connection's return to the
        # pool failed: the receipts stand, and a retry would append them twice.
        log.warning("an append committed, then its connection failed: %s", exc)
        return appended
    return receipts


@dataclass
class _Pending:
    entry: NewEntry
    future: asyncio.Future[Receipt]


class GroupCommitter:
    """Coalesces concurrent single posts into few transactions (group commit).

    While one group's transaction is in flight, new posts queue up; the next
    group takes everything queued, up to ``max_group``. Under light load a post
    commits alone at once; under heavy load commits are shared, so throughput
    does not collapse to one fsync per entry.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        effects: Effects | None = None,
        max_group: int = 500,
        workers: int = 1,
    ) -> None:
        self._pool = pool
        self.effects = effects
        self._max_group = max_group
        self._workers = workers
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self.on_commit: Callable[[int], None] | None = None

    def start(self) -> None:
        for _ in range(self._workers):
            self._tasks.append(asyncio.create_task(self._run()))

    async def stop(self) -> None:
        # Drain what was queued and what is being committed: those posters are
        # still waiting for receipts.
        while not self._queue.empty() or self._in_flight:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def submit(self, entry: NewEntry) -> Receipt:
        """Sequence one entry; returns only after its transaction committed."""
        if not self._tasks:
            raise RuntimeError("GroupCommitter.start() was not called")
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(entry, future))
        # A poster that goes away cancels its future only; the entry is still
        # appended with its group, and settling skips a future already done.
        return await future

    async def _run(self) -> None:
        held = _Held(HOLD_AT_MOST)
        try:
            while True:
                if self._queue.empty():
                    held.release()  # nothing follows: the receipts go out at once
                first = await self._queue.get()
                group = [first]
                while len(group) < self._max_group and not self._queue.empty():
                    group.append(self._queue.get_nowait())
                self._in_flight += 1
                try:
                    await self._commit(group, held)
                except Exception as exc:  # pragma: no cover - _commit settles every future
                    log.exception("group commit failed")
                    held.release()
                    for p in group:
                        if not p.future.done():
                            p.future.set_exception(exc)
                finally:
                    self._in_flight -= 1
        finally:
            held.release()

    async def _commit(self, group: list[_Pending], held: _Held) -> None:
        entries = [p.entry for p in group]

        async def attempt(conn: asyncpg.Connection, out: list[Receipt]) -> list[Receipt]:
            async with conn.transaction():
                out += await append_entries(
                    conn, entries, effects=self.effects, on_locked=held.release
                )
            return out

        try:
            receipts = await append_once(self._pool, entries, attempt)
        except CommitUnknown as unknown:
            held.release()
            for p in group:
                if not p.future.done():
                    p.future.set_exception(unknown)
            return
        except Exception as exc:
            held.release()
            if len(group) == 1:
                if not group[0].future.done():
                    group[0].future.set_exception(exc)
            else:
                # Isolate the culprit: every other entry still gets its own chance.
                for p in group:
                    await self._commit([p], held)
            return
        if self.on_commit is not None:
            self.on_commit(len(group))

        def settle() -> None:
            for p, receipt in zip(group, receipts, strict=True):
                if not p.future.done():
                    p.future.set_result(receipt)

        held.hold(settle)


#: The longest a committed group's receipts wait for the next group's lock.
HOLD_AT_MOST = 0.002


class _Held:
    """A committed group's receipts, held until the next group holds its lock.

    The receipts wake a task per poster, and the event loop then spends a few
    milliseconds answering them and reading the posters' next requests. The
    next group's first round trips (BEGIN, the locks, the books' reads) would
    each wait behind all of that; holding the receipts until those are done
    lets the database work on the next group while the loop answers this one.
    They are committed already; they are held at most ``HOLD_AT_MOST`` seconds,
    and not at all when no group follows.
    """

    def __init__(self, at_most: float) -> None:
        self._at_most = at_most
        self._settle: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def hold(self, settle: Callable[[], None]) -> None:
        self.release()
        self._settle = settle
        self._timer = asyncio.get_running_loop().call_later(self._at_most, self.release)

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        settle, self._settle = self._settle, None
        if settle is not None:
            settle()
