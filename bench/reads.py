"""Reading at scale: the same requests when the org's log is small, then grown large.

One org's log for last year is loaded to the small size (``read_small``), every
endpoint is measured with wrk (8 connections), then the same log is grown to the
large size (``read_big``) through ``ledger.posting.post_entries`` and measured
again. Endpoints: the fund summary by quarter (public, and with a staff token),
a page of 100 entries from the middle of the log (public, where entries awaiting
review are stubs; and staff, who see every entry in full), and an inclusion proof
of a random leaf at the current tree size. At the full size each size is measured
in three rounds, the endpoints in turn, and each endpoint's run of median p99 is
the one compared (every round's p99 is reported), as single posts and the
archives run alternating rounds: one run's tail moves with the machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from bench import infra, workload, wrk
from bench.context import Bench
from bench.infra import Server
from bench.profile import Profile
from bench.result import Result, median, ratio
from ledger.queries import encode_cursor
from ledger.review import review_entry

FUND = "RS-1"
CONNECTIONS = 8
SUMMARY_P99_MS = 10.0
PROOF_P99_MS = 5.0
SCALING = 1.5


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    staff: bool
    random_n: int = 1  # "{i}" in the path becomes a random integer below this


def endpoints(org: str, year: int, size: int) -> list[Endpoint]:
    base = f"/api/v1/orgs/{org}"
    summary = f"{base}/funds/{FUND}/summary?year={year}&period=quarter"
    page = f"{base}/entries?year={year}&limit=100&cursor={encode_cursor(year, size // 2)}"
    proof = f"{base}/logs/{year}/proofs/inclusion?index={{i}}&tree_size={size}"
    return [
        Endpoint("fund summary (public)", summary, False),
        Endpoint("fund summary (staff)", summary, True),
        Endpoint("entry page (public)", page, False),
        Endpoint("entry page (staff)", page, True),
        Endpoint("inclusion proof", proof, False, size),
    ]


async def _setup(b: Bench, org: str, year: int) -> None:
    """The fund, its target, and a reviewer's approval so the public sees its summary."""
    on = dt.date(year, 1, 2)
    target = {
        "kind": "fund.target_set",
        "subject": f"fund/{FUND}",
        "occurred_on": on.isoformat(),
        "body": {
            "fund_code": FUND,
            "year": year,
            "direction": "collection",
            "amount": "90000000000.00",
        },
    }
    receipts = await workload.post(
        b.dsn, org, b.actor("clerk"), [workload.fund_opened(FUND, on), target]
    )
    opened = receipts[0]
    approval = review_entry(
        org=org,
        year=year,
        index=opened.index,
        decision="approve",
        reason=None,
        legal_basis=None,
        reviewer=b.actor("reviewer"),
        today=b.today,
    )
    await workload.append(b.dsn, [approval])


async def _log_size(dsn: str, org: str, year: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval("SELECT size FROM logs WHERE org = $1 AND year = $2", org, year)
        return int(size)
    finally:
        await conn.close()


async def _grow(b: Bench, org: str, mix: workload.Mix, to: int, year: int) -> workload.LoadResult:
    have = await _log_size(b.dsn, org, year)
    mix = dataclasses.replace(mix, tag=f"{mix.tag}-{to}")  # codes stay unique across loads
    return await asyncio.to_thread(
        workload.load, b.dsn, org, b.actor("clerk"), mix, to - have, log=b.log
    )


WARMUP_REQUESTS = 20


async def _check(base_url: str, token: str, eps: list[Endpoint]) -> None:
    """Every endpoint must answer 200; a few sequential requests each warm it up."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for ep in eps:
            headers = _auth(token) if ep.staff else {}
            for i in range(WARMUP_REQUESTS):
                r = await http.get(ep.path.replace("{i}", str(i % ep.random_n)), headers=headers)
                if r.status_code != 200:
                    raise RuntimeError(f"{ep.name}: {r.status_code} {r.text[:300]}")


async def _measure(
    b: Bench, app: Server, token: str, eps: list[Endpoint], profile: list[str] | None = None
) -> dict[str, list[Any]]:
    """wrk each endpoint, ``read_rounds`` times in turn: every endpoint's runs, in order.

    The endpoints take turns round by round, so a drift of the machine's speed falls on
    all of them alike. With ``profile`` given, py-spy samples the server during the
    first round.
    """
    base_url = app.url
    await _check(base_url, token, eps)
    out: dict[str, list[Any]] = {ep.name: [] for ep in eps}
    for round_ in range(b.sizes.read_rounds):
        for number, ep in enumerate(eps):
            headers = _auth(token) if ep.staff else {}
            args = [ep.path, str(ep.random_n)]
            if b.sizes.read_warmup_seconds and round_ == 0:
                await wrk.run(
                    base_url,
                    "get.lua",
                    args,
                    connections=CONNECTIONS,
                    seconds=b.sizes.read_warmup_seconds,
                    headers=headers,
                )
            prof_path = b.work / f"read-{number}.prof"
            sampled = profile is not None and round_ == 0
            async with Profile(app.proc.pid, prof_path, enabled=sampled) as prof:
                out[ep.name].append(
                    await wrk.run(
                        base_url,
                        "get.lua",
                        args,
                        connections=CONNECTIONS,
                        seconds=b.sizes.read_seconds,
                        headers=headers,
                    )
                )
            if sampled:
                assert profile is not None
                profile += [f"--- {ep.name}", *prof.summary(top=8)]
    return out


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def read_scaling(b: Bench) -> dict[str, Any]:
    small, big = b.sizes.read_small, b.sizes.read_big
    res = Result("read_scaling", f"Reads at {small:,} entries and at {big:,} entries")
    org, year = "bench-reads", b.today.year - 1
    tokens = await b.org(org, ("clerk", "reviewer", "auditor"))
    await _setup(b, org, year)
    mix = workload.Mix(year, (FUND,), secrets.token_hex(3))
    app = await b.app()

    loads = []
    measured: dict[int, dict[str, Any]] = {}
    for size in (small, big):
        b.log(f"read_scaling: loading {org}/{year} to {size:,} entries")
        loads.append(await _grow(b, org, mix, size, year))
        await infra.settle(b.dsn)
        n = await _log_size(b.dsn, org, year)
        await asyncio.sleep(1.0)  # the server signs a checkpoint for the new size
        b.log(f"read_scaling: measuring at {n:,} entries")
        # With --profile, the server is sampled while the large size is measured.
        profile = res.profile if b.profile and size == big else None
        measured[size] = await _measure(b, app, tokens["auditor"], endpoints(org, year, n), profile)

    rows = []
    for name in measured[small]:
        s, g = (median(measured[n][name], key=lambda w: w.p99_ms) for n in (small, big))
        rows.append(
            {
                "endpoint": name,
                f"p50 ms @{small:,}": s.p50_ms,
                f"p99 ms @{small:,}": s.p99_ms,
                f"p50 ms @{big:,}": g.p50_ms,
                f"p99 ms @{big:,}": g.p99_ms,
                "p99 ratio": round(ratio(g.p99_ms, s.p99_ms), 2),
                f"req/s @{big:,}": round(g.rps),
                "non-2xx": sum(w.non2xx for w in [*measured[small][name], *measured[big][name]]),
            }
        )
        res.target(
            f"{name}: p99 at {big:,} ≤ {SCALING} × p99 at {small:,}",
            f"{g.p99_ms:.2f} / {s.p99_ms:.2f} ms = {ratio(g.p99_ms, s.p99_ms):.2f}",
            g.p99_ms <= SCALING * s.p99_ms,
        )
        if name.startswith("fund summary"):
            res.target(
                f"{name}: p99 ≤ {SUMMARY_P99_MS:g} ms",
                f"{g.p99_ms:.2f} ms",
                g.p99_ms <= SUMMARY_P99_MS,
            )
        if name == "inclusion proof":
            res.target(
                f"{name}: p99 ≤ {PROOF_P99_MS:g} ms", f"{g.p99_ms:.2f} ms", g.p99_ms <= PROOF_P99_MS
            )
        every = [*measured[small][name], *measured[big][name]]
        if any(w.non2xx + w.socket_errors for w in every):
            res.target(f"{name}: no errors", str(sum(w.non2xx for w in every)), False)
    res.table(
        f"wrk -t2 -c{CONNECTIONS} -d{b.sizes.read_seconds}s --latency -s bench/lua/get.lua, "
        f"each after {WARMUP_REQUESTS} sequential requests"
        + (
            f" and a {b.sizes.read_warmup_seconds} s wrk warm-up"
            if b.sizes.read_warmup_seconds
            else ""
        )
        + (
            f"; {b.sizes.read_rounds} rounds at each size, the endpoints in turn, and each "
            "endpoint's run of median p99 shown"
            if b.sizes.read_rounds > 1
            else ""
        ),
        rows,
    )
    if b.sizes.read_rounds > 1:
        res.note(
            "Every round's p99 in ms, at "
            f"{small:,} and at {big:,} entries: "
            + "; ".join(
                f"{name} {', '.join(f'{w.p99_ms:.2f}' for w in measured[small][name])} and "
                f"{', '.join(f'{w.p99_ms:.2f}' for w in measured[big][name])}"
                for name in measured[small]
            )
            + "."
        )
    res.load_seconds = sum(load.seconds for load in loads)
    res.table(
        "Loading",
        [
            {"to": f"{size:,}", "how": load.describe()}
            for size, load in zip((small, big), loads, strict=True)
        ],
    )
    res.note(
        f"One org, log {org}/{year}: the fund {FUND} is opened, given a collection target and "
        "approved by a reviewer; the rest is the mix of bulk_ingest (receipts into the fund "
        "over twelve months, new funds, projects), none of it reviewed, so the public page "
        "shows stubs for pending entries and staff see them in full. The same log is measured "
        f"at {small:,} entries, then grown to {big:,} and measured again. VACUUM (ANALYZE) "
        "and CHECKPOINT run after each load (see `bench.infra.settle`). The proof is for a random "
        "index at the current tree size; the page starts from a cursor in the middle of the log."
    )
    res.note(
        f"Closed loop: with {CONNECTIONS} connections the mean latency is {CONNECTIONS} / "
        f"throughput (Little's law), so a p99 of {SUMMARY_P99_MS:g} ms needs more than "
        f"{CONNECTIONS / SUMMARY_P99_MS * 1000:,.0f} requests/s and one of {PROOF_P99_MS:g} ms "
        f"more than {CONNECTIONS / PROOF_P99_MS * 1000:,.0f}/s from the one server process."
    )
    return res.as_dict()
