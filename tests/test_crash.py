"""Kill the server with SIGKILL in the middle of a load: nothing acknowledged is lost.

A real ``gongkai serve`` process on a free port takes single posts and batches
from concurrent clients; it is killed without warning; after a restart every
acknowledged receipt is in its log at its index, no batch is partly present,
and ``gongkai verify`` passes.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import asyncpg
import httpx

from ledger.settings import Settings
from tests.conftest import free_port, fund_entry, make_org, start_server, wait_ready
from tests.test_integrity import run_cli


async def test_sigkill_mid_load_loses_nothing_acknowledged(
    dsn: str, pool: asyncpg.Pool, settings: Settings
) -> None:
    org = await make_org("k")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(dsn, settings, port)
    acked: list[dict[str, Any]] = []
    batches_sent: list[str] = []
    try:
        await wait_ready(base, proc)
        stop = asyncio.Event()

        async def single(c: httpx.AsyncClient, w: int) -> None:
            i = 0
            while not stop.is_set():
                try:
                    r = await c.post(
                        f"{base}/api/v1/orgs/{org.code}/entries",
                        json=fund_entry(f"S{w}-{i}"),
                        headers=org.auth(),
                    )
                except httpx.TransportError:
                    return
                if r.status_code == 201:
                    acked.append(r.json())
                i += 1

        async def batch(c: httpx.AsyncClient, w: int) -> None:
            i = 0
            while not stop.is_set():
                tag = f"B{w}x{i}"
                batches_sent.append(tag)
                entries = [fund_entry(f"{tag}-{j}") for j in range(50)]
                try:
                    r = await c.post(
                        f"{base}/api/v1/orgs/{org.code}/entries/batch",
                        json={"entries": entries},
                        headers=org.auth(),
                    )
                except httpx.TransportError:
                    return
                if r.status_code == 201:
                    acked.extend(r.json()["receipts"])
                i += 1

        async with httpx.AsyncClient(timeout=30) as c:
            workers = [asyncio.create_task(single(c, w)) for w in range(12)]
            workers += [asyncio.create_task(batch(c, w)) for w in range(3)]
            await asyncio.sleep(1.5)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert len(acked) > 50, "the load did not get going before the kill"
    rows = await pool.fetch(
        "SELECT idx, leaf_hash FROM leaves WHERE org = $1 AND year = 2026", org.code
    )
    stored = {r["idx"]: bytes(r["leaf_hash"]).hex() for r in rows}
    for receipt in acked:
        assert stored.get(receipt["index"]) == receipt["leaf_hash"], receipt

    # No batch is partly present: each has all 50 entries or none.
    counts = await pool.fetch(
        """SELECT split_part(subject, '-', 1) AS tag, count(*) FROM leaves
           WHERE org = $1 AND subject LIKE 'fund/B%' GROUP BY 1""",
        org.code,
    )
    for row in counts:
        assert row["count"] == 50, row

    # After a restart the checkpoints catch up and the whole ledger verifies.
    proc = start_server(dsn, settings, port)
    try:
        await wait_ready(base, proc)
        async with httpx.AsyncClient() as c:
            for _ in range(50):
                r = await c.get(f"{base}/api/v1/orgs/{org.code}/logs/2026/checkpoint")
                if r.status_code == 200 and f"\n{len(stored)}\n" in r.text:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("no checkpoint after restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    result = run_cli(dsn, settings, "verify", "--org", org.code)
    assert result.returncode == 0, result.stdout + result.stderr
