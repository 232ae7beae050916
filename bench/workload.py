"""What the benchmarks post: a realistic mix of entries, and the loaders that post it.

One generator (``Mix``) makes entry requests as plain dicts, the shape a client
posts. They become JSON batch bodies for the HTTP scenarios, ``NewEntry`` values
for loading in-process through ``ledger.posting.post_entries`` (the code path the
batch route runs), and entry-shaped rows for the raw ``COPY`` baseline.

The mix, per 100 entries: about 90 ``fund.receipt`` into funds opened beforehand,
5 ``fund.opened`` and 5 ``project.registered`` with unique codes; one entry in 20
is internal. Payers, references and names carry Chinese text as real ones do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import multiprocessing
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import orjson

from ledger.entries import NewEntry
from ledger.kinds import KINDS
from ledger.posting import post_entries
from ledger.sequencer import Receipt

ENTERPRISES = [
    ("91330100MA001", "示范钢铁有限公司"),
    ("91330100MA002", "东方化工股份有限公司"),
    ("91330100MA003", "长江水泥厂"),
    ("91330100MA004", "华光造纸有限公司"),
    ("91330100MA005", "新城热电厂"),
    ("91330100MA006", "绿源印染有限公司"),
]
BATCH = 1000

Spec = dict[str, Any]


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def fund_opened(code: str, on: dt.date, *, name: str = "污染治理项目补助资金") -> Spec:
    return {
        "kind": "fund.opened",
        "subject": f"fund/{code}",
        "occurred_on": on.isoformat(),
        "body": {"fund_code": code, "name": name, "category": "subsidy"},
    }


def fund_receipt(code: str, on: dt.date, fen: int, payer: int, ref: str) -> Spec:
    pid, pname = ENTERPRISES[payer % len(ENTERPRISES)]
    return {
        "kind": "fund.receipt",
        "subject": f"fund/{code}",
        "occurred_on": on.isoformat(),
        "body": {
            "fund_code": code,
            "amount": _yuan(fen),
            "payer": {"id": pid, "name": pname, "type": "enterprise"},
            "reference": f"示环征字〔{on.year}〕{ref}号",
        },
    }


def project_registered(code: str, on: dt.date, fen: int) -> Spec:
    return {
        "kind": "project.registered",
        "subject": f"project/{code}",
        "occurred_on": on.isoformat(),
        "body": {
            "project_code": code,
            "name": "示范钢铁有限公司脱硫改造工程",
            "category": "污染治理",
            "location": "示范市高新区",
            "total_investment": _yuan(fen),
            "funding": [{"source": "企业自筹", "amount": _yuan(fen // 4)}],
        },
    }


@dataclass(frozen=True)
class Mix:
    """Parameters of the entry mix: the year, its months, the open funds, a unique tag."""

    year: int
    funds: tuple[str, ...]
    tag: str
    last_month: int = 12

    def entry(self, rng: random.Random, n: int) -> Spec:
        """The ``n``-th entry of the mix (``n`` makes codes unique within the tag)."""
        on = dt.date(self.year, rng.randint(1, self.last_month), rng.randint(1, 28))
        r = rng.random()
        if r < 0.05:
            spec = fund_opened(f"F-{self.tag}-{n}", on)
        elif r < 0.10:
            spec = project_registered(f"P-{self.tag}-{n}", on, rng.randint(10**7, 10**9))
        else:
            fund = self.funds[n % len(self.funds)]
            spec = fund_receipt(fund, on, rng.randint(10_000, 99_999_999), n, f"{self.tag}-{n}")
        if rng.random() < 0.05:
            spec["visibility"] = "internal"
        return spec

    def batch(self, number: int, size: int = BATCH) -> list[Spec]:
        """Batch ``number`` of the mix: deterministic, codes unique across batches."""
        rng = random.Random(f"{self.tag}:{number}")
        return [self.entry(rng, number * BATCH + i) for i in range(size)]


def batch_body(specs: list[Spec]) -> bytes:
    """The JSON body of ``POST /entries/batch``."""
    return orjson.dumps({"entries": specs})


def new_entries(specs: list[Spec], org: str, actor: str) -> list[NewEntry]:
    """Specs as ``NewEntry`` values, typed exactly as the route's decoder makes them."""
    return [
        NewEntry(
            org=org,
            kind=s["kind"],
            subject=s["subject"],
            occurred_on=dt.date.fromisoformat(s["occurred_on"]),
            visibility=s.get("visibility", "public"),
            body=msgspec.convert(s["body"], KINDS[s["kind"]]),
            actor=actor,
        )
        for s in specs
    ]


# --- the raw baseline's rows ----------------------------------------------------------

BASELINE_COLUMNS = (
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
)

BASELINE_TABLE_SQL = """
CREATE TABLE {name} (
    org text NOT NULL, year integer NOT NULL, idx bigint NOT NULL,
    leaf_hash bytea NOT NULL, leaf bytea NOT NULL, kind text NOT NULL,
    subject text NOT NULL, occurred_on date NOT NULL, recorded_at timestamptz NOT NULL,
    actor text NOT NULL, visibility text NOT NULL,
    PRIMARY KEY (org, year, idx)
)
"""


def baseline_rows(specs: list[Spec], org: str, actor: str, first: int) -> list[tuple[Any, ...]]:
    """Entry-shaped rows with a leaf of the same fields and size as the ledger's."""
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows = []
    for i, s in enumerate(specs):
        on = dt.date.fromisoformat(s["occurred_on"])
        vis = s.get("visibility", "public")
        leaf = orjson.dumps(
            {
                "v": 1,
                "log": f"{org}/{on.year}",
                "index": first + i,
                "kind": s["kind"],
                "subject": s["subject"],
                "occurred_on": s["occurred_on"],
                "recorded_at": stamp,
                "actor": actor,
                "visibility": vis,
                "idempotency_key": None,
                "salt": os.urandom(16).hex(),
                "body": s["body"],
            },
            option=orjson.OPT_SORT_KEYS,
        )
        digest = hashlib.sha256(b"\x00" + leaf).digest()
        rows.append(
            (org, on.year, first + i, digest, leaf, s["kind"], s["subject"], on, now, actor, vis)
        )
    return rows


# --- loading in-process through post_entries -----------------------------------------


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await conn.execute("SET TIME ZONE 'UTC'")
    return conn


async def append(dsn: str, entries: list[NewEntry]) -> list[Receipt]:
    """Post ``entries`` as one batch in-process, as the batch route does."""
    conn = await connect(dsn)
    try:
        return await post_entries(conn, entries)
    finally:
        await conn.close()


async def post(dsn: str, org: str, actor: str, specs: list[Spec]) -> list[Receipt]:
    """Post one batch of specs in-process; returns the receipts."""
    return await append(dsn, new_entries(specs, org, actor))


async def _load_part(
    dsn: str, org: str, actor: str, mix: Mix, batches: list[tuple[int, int]], conns: int
) -> int:
    """Post the (number, size) batches of ``mix`` over ``conns`` connections."""
    queue = list(reversed(batches))

    async def run() -> int:
        conn = await connect(dsn)
        done = 0
        try:
            while queue:
                number, size = queue.pop()
                entries = new_entries(mix.batch(number, size), org, actor)
                done += len(await post_entries(conn, entries))
        finally:
            await conn.close()
        return done

    return sum(await asyncio.gather(*(run() for _ in range(conns))))


def _load_part_sync(*args: Any) -> int:
    return asyncio.run(_load_part(*args))


@dataclass(frozen=True)
class LoadResult:
    entries: int
    seconds: float
    processes: int
    connections: int

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        return (
            f"{self.entries:,} entries in {self.seconds:.1f} s ({self.rate:,.0f}/s) by in-process "
            f"`ledger.posting.post_entries`, 1000-entry batches, {self.processes} process(es) × "
            f"{self.connections} connection(s)"
        )


def load(
    dsn: str,
    org: str,
    actor: str,
    mix: Mix,
    total: int,
    *,
    processes: int = 2,
    connections: int = 2,
    log: Callable[[str], None] = print,
) -> LoadResult:
    """Post ``total`` entries of ``mix`` into ``org`` through ``post_entries``.

    Batches are dealt out to ``processes`` worker processes (each with
    ``connections`` connections), so building the next batch overlaps the one
    committing; the org's lock still orders every append.
    """
    batches = [(n, min(BATCH, total - n * BATCH)) for n in range((total + BATCH - 1) // BATCH)]
    # Parts of 50 batches, so progress shows on long loads.
    parts = [batches[i : i + 50] for i in range(0, len(batches), 50)]
    started = last_log = time.monotonic()
    done = 0
    ctx = multiprocessing.get_context("spawn")  # the caller may run an event loop
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        futures = [
            pool.submit(_load_part_sync, dsn, org, actor, mix, part, connections) for part in parts
        ]
        try:
            for fut in futures:
                done += fut.result()
                now = time.monotonic()
                if now - last_log > 10:
                    last_log = now
                    log(f"  loading {org}: {done:,}/{total:,} ({done / (now - started):,.0f}/s)")
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a failed load stops at once
            raise
    return LoadResult(done, time.monotonic() - started, processes, connections)
