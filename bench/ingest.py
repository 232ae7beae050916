"""Writing: bulk ingest through the batch route, and single posts under load.

bulk_ingest
    4 concurrent clients POST ``/entries/batch`` with 1000 entries a request
    against ``copy_records_to_table`` of the same number of entry-shaped rows
    (1000 rows a transaction, 4 connections) into a bare table.
single_posts
    wrk, 64 connections, one entry a request, against ``gongkai serve`` and
    against the bare Litestar + asyncpg app of ``bench.baseline_app``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from typing import Any

import asyncpg
import httpx

from bench import infra, workload, wrk
from bench.context import Bench
from bench.profile import Profile
from bench.result import Result, median, ratio

CLIENTS = 4
WARMUP_BATCHES = 2


async def _open_funds(b: Bench, org: str, codes: list[str], on: dt.date) -> None:
    await workload.post(b.dsn, org, b.actor("clerk"), [workload.fund_opened(c, on) for c in codes])


async def _post_batches(url: str, token: str, bodies: list[bytes]) -> tuple[float, list[float]]:
    """POST every body with CLIENTS concurrent clients; return wall time and latencies."""
    queue = list(reversed(bodies))
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def client() -> None:
        async with httpx.AsyncClient(timeout=300.0, headers=headers) as http:
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                r = await http.post(url, content=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 201 or len(r.json()["receipts"]) != workload.BATCH:
                    raise RuntimeError(f"batch answered {r.status_code}: {r.text[:500]}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return time.perf_counter() - started, latencies


async def _copy_baseline(
    dsn: str,
    batches: list[list[tuple[Any, ...]]],
    clients: int = CLIENTS,
    table: str = "bench_bulk",
) -> float:
    """copy_records_to_table, one batch a transaction, over ``clients`` connections."""
    conns = [await asyncpg.connect(dsn) for _ in range(clients)]
    try:
        await conns[0].execute(workload.BASELINE_TABLE_SQL.format(name=table))
        queue = list(reversed(batches))

        async def worker(conn: asyncpg.Connection) -> None:
            while queue:
                rows = queue.pop()
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        table, records=rows, columns=workload.BASELINE_COLUMNS
                    )

        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        return time.perf_counter() - started
    finally:
        for c in conns:
            await c.close()


async def bulk_ingest(b: Bench) -> dict[str, Any]:
    res = Result("bulk_ingest", "Bulk ingest: batch route vs COPY of the same rows")
    org, total = "bench-bulk", b.sizes.bulk_entries
    tokens = await b.org(org)
    year, funds = b.today.year, [f"BULK-{i}" for i in range(4)]
    await _open_funds(b, org, funds, dt.date(year, 1, 2))
    mix = workload.Mix(year, tuple(funds), secrets.token_hex(3), last_month=b.today.month)
    n_batches = total // workload.BATCH
    t0 = time.perf_counter()
    specs = [mix.batch(n) for n in range(n_batches + WARMUP_BATCHES)]
    bodies = [workload.batch_body(s) for s in specs]
    rows = [
        workload.baseline_rows(s, org, b.actor("clerk"), n * workload.BATCH)
        for n, s in enumerate(specs[WARMUP_BATCHES:])
    ]
    b.log(
        f"bulk_ingest: {n_batches} batch bodies and baseline rows made in "
        f"{time.perf_counter() - t0:.1f} s ({len(bodies[-1]) / 1024:.0f} KiB a body)"
    )

    app = await b.app()
    url = f"{app.url}/api/v1/orgs/{org}/entries/batch"
    await _post_batches(url, tokens["clerk"], bodies[:WARMUP_BATCHES])
    b.log(f"bulk_ingest: posting {total:,} entries, {CLIENTS} clients")
    async with Profile(app.proc.pid, b.work / "bulk.prof", enabled=b.profile) as prof:
        app_s, latencies = await _post_batches(url, tokens["clerk"], bodies[WARMUP_BATCHES:])
    b.log(f"bulk_ingest: app {total / app_s:,.0f} entries/s; COPY baseline")
    base_s = await _copy_baseline(b.dsn, rows)
    serial_s = await _copy_baseline(b.dsn, rows, clients=1, table="bench_bulk_serial")

    app_rate, base_rate = total / app_s, total / base_s
    latencies.sort()
    res.table(
        f"{total:,} entries, {CLIENTS} concurrent clients, 1000 entries a request/transaction",
        [
            {
                "": "Gongkai POST /entries/batch",
                "seconds": round(app_s, 2),
                "entries/s": round(app_rate),
                "request p50 ms": _ms(latencies, 0.5),
                "request p99 ms": _ms(latencies, 0.99),
            },
            {
                "": "baseline copy_records_to_table",
                "seconds": round(base_s, 2),
                "entries/s": round(base_rate),
                "request p50 ms": "",
                "request p99 ms": "",
            },
            {
                "": "reference: the same COPY on one connection",
                "seconds": round(serial_s, 2),
                "entries/s": round(total / serial_s),
                "request p50 ms": "",
                "request p99 ms": "",
            },
        ],
    )
    r = ratio(app_rate, base_rate)
    res.target("≥ 0.5 of the baseline's rows/s", f"{r:.2f}", r >= 0.5)
    res.note(
        f"Mix: ~90% fund.receipt into {len(funds)} funds opened beforehand, ~5% fund.opened, "
        "~5% project.registered (unique codes), 1 in 20 internal; "
        f"{len(bodies[-1]) / 1024:.0f} KiB a request body. {WARMUP_BATCHES} warm-up batches "
        "were posted first and are not counted. The baseline rows carry a leaf of the same "
        "fields and size (salt included) and its SHA-256, into a bare table with the same "
        "primary key as `leaves` (org, year, idx), no triggers or other indexes. "
        "The reference row is the same COPY on one connection: one org's writes are ordered "
        f"by one lock (SPEC §8), so {ratio(total / serial_s, base_rate):.2f} of the baseline "
        "is what even a bare COPY reaches when its batches go one at a time, as one org's "
        "batches must."
    )
    if b.profile:
        res.profile = prof.summary()
        res.note("Profiled with py-spy during the measured run (figures slightly lower).")
    return res.as_dict()


def _ms(sorted_seconds: list[float], q: float) -> float:
    if not sorted_seconds:
        return 0.0
    i = min(len(sorted_seconds) - 1, int(q * len(sorted_seconds)))
    return round(sorted_seconds[i] * 1000, 1)


async def _wrk_posts(
    b: Bench, server: infra.Server, path: str, token: str | None, fund: str, tag: str
) -> wrk.WrkResult:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    args = [path, fund, b.today.isoformat(), tag]
    await wrk.run(
        server.url,
        "post.lua",
        [path, fund, b.today.isoformat(), tag + "w"],
        connections=64,
        seconds=b.sizes.warmup_seconds,
        headers=headers,
    )
    return await wrk.run(
        server.url,
        "post.lua",
        args,
        connections=64,
        seconds=b.sizes.single_seconds,
        headers=headers,
    )


async def _count(dsn: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args) or 0)
    finally:
        await conn.close()


async def single_posts(b: Bench) -> dict[str, Any]:
    res = Result("single_posts", "Single posts: one entry a request, 64 concurrent clients")
    org, fund, tag = "bench-single", "SP-1", secrets.token_hex(3)
    tokens = await b.org(org)
    await _open_funds(b, org, [fund], dt.date(b.today.year, 1, 2))
    # Not measured in what bulk_ingest left (autovacuum of its rows, its dirty pages).
    await infra.settle(b.dsn)
    app = await b.app()
    size_sql = "SELECT coalesce(sum(size), 0) FROM logs WHERE org = $1"
    path = f"/api/v1/orgs/{org}/entries"
    baseline = await b.start(
        "baseline", [str(infra.VENV_BIN / "python"), "-m", "bench.baseline_app"]
    )
    rounds = b.sizes.single_rounds
    mine: list[wrk.WrkResult] = []
    bases: list[wrk.WrkResult] = []
    profiles: list[Profile] = []
    # Alternately, baseline first, so that a machine whose speed drifts (these
    # vary by a quarter from minute to minute) weighs on both sides alike.
    try:
        for i in range(rounds):
            b.log(f"single_posts: round {i + 1}/{rounds}, wrk against the baseline app")
            bases.append(await _wrk_posts(b, baseline, "/ingest", None, fund, f"{tag}b{i}"))
            b.log(f"single_posts: round {i + 1}/{rounds}, wrk against gongkai")
            async with Profile(
                app.proc.pid, b.work / f"single-{i}.prof", enabled=b.profile and i == 0
            ) as prof:
                mine.append(await _wrk_posts(b, app, path, tokens["clerk"], fund, f"{tag}{i}"))
            profiles.append(prof)
    finally:
        b.stop(baseline)
    written = await _count(b.dsn, size_sql, org)
    ours = median(mine, key=lambda w: w.rps)
    theirs = median(bases, key=lambda w: w.rps)

    res.table(
        f"wrk -t2 -c64 -d{b.sizes.single_seconds}s --latency -s bench/lua/post.lua "
        f"(each after a {b.sizes.warmup_seconds} s warm-up), {rounds} round(s) each, "
        "alternately, baseline first; the run of median requests/s of each",
        [
            {"": "Gongkai POST /entries", **ours.as_dict()},
            {"": "baseline POST /ingest", **theirs.as_dict()},
        ],
    )
    res.note(
        "Every round, requests/s (p99 ms): Gongkai "
        + ", ".join(f"{w.rps:,.0f} ({w.p99_ms:.1f})" for w in mine)
        + "; baseline "
        + ", ".join(f"{w.rps:,.0f} ({w.p99_ms:.1f})" for w in bases)
        + "."
    )
    r = ratio(ours.rps, theirs.rps)
    res.target("≥ 0.8 of the baseline's requests/s", f"{r:.2f}", r >= 0.8)
    res.target("p99 ≤ 50 ms", f"{ours.p99_ms:.1f} ms", ours.p99_ms <= 50)
    errors = ours.non2xx + ours.socket_errors + theirs.non2xx + theirs.socket_errors
    res.target("no non-2xx responses or socket errors", str(errors), errors == 0)
    res.note(
        "VACUUM (ANALYZE) and CHECKPOINT ran first (after bulk_ingest's writes). "
        "Each request is one entry: three in four a fund.receipt into one opened fund, the "
        "fourth a fund.opened with a unique code. The baseline decodes the same JSON and "
        "inserts it as one row of a bare table (bigserial key), answering after the commit; "
        f"same uvicorn settings, pool of 20. Entries in the log after the run: {written:,} "
        "(warm-up included)."
    )
    res.note(
        "Closed loop: with 64 connections each waiting for its answer, the mean latency is "
        "64 / throughput (Little's law), so p99 ≤ 50 ms needs at least "
        f"{64 / 0.050:,.0f} requests/s even with no variance at all; the baseline does "
        f"{theirs.rps:,.0f}/s on this machine (mean {64 / theirs.rps * 1000:.0f} ms)."
    )
    if b.profile:
        res.profile = profiles[0].summary()
        res.note("Profiled with py-spy during the first round (its figures slightly lower).")
    return res.as_dict()
