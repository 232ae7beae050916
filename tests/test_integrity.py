"""Integrity: gap-free indices under concurrency, append-only storage, tamper detection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ledger.checkpoint import NoteVerifier, signer_for
from ledger.fsck import verify_ledger
from ledger.logs import sign_due
from ledger.settings import Settings
from ledger.tree import leaf_hash, root_from_leaf_hashes
from tests.conftest import ROOT, Org, fund_entry, make_org


def run_cli(dsn: str, settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "GONGKAI_DATA_DIR": str(settings.data_dir),
        "GONGKAI_ORIGIN": settings.origin,
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


async def test_50_concurrent_posters_2000_entries_gap_free(
    client: Any, org: Org, pool: asyncpg.Pool, settings: Settings
) -> None:
    url = f"/api/v1/orgs/{org.code}/entries"

    async def poster(p: int) -> list[int]:
        out = []
        for i in range(40):
            r = await client.post(url, json=fund_entry(f"C{p}-{i}"), headers=org.auth())
            assert r.status_code == 201, r.text
            out.append(r.json()["index"])
        return out

    results = await asyncio.gather(*[poster(p) for p in range(50)])
    indices = sorted(i for r in results for i in r)
    assert indices == list(range(2000))

    rows = await pool.fetch(
        "SELECT leaf, leaf_hash FROM leaves WHERE org = $1 AND year = 2026 ORDER BY idx", org.code
    )
    hashes = [leaf_hash(bytes(r["leaf"])) for r in rows]
    assert hashes == [bytes(r["leaf_hash"]) for r in rows]
    head = await pool.fetchrow("SELECT size, root FROM logs WHERE org = $1", org.code)
    assert head["size"] == 2000
    assert bytes(head["root"]) == root_from_leaf_hashes(hashes)

    signer = signer_for(settings.signing_key, settings.key_name)
    await sign_due(pool, signer, settings.origin)
    note = await pool.fetchval(
        "SELECT note FROM checkpoints WHERE org = $1 AND size = 2000", org.code
    )
    cp = NoteVerifier.from_vkey(signer.vkey()).verify(note)
    assert cp.root == root_from_leaf_hashes(hashes)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE leaves SET subject = 'x' WHERE org = $1",
        "DELETE FROM leaves WHERE org = $1",
        "UPDATE tree_nodes SET hash = hash WHERE org = $1",
        "DELETE FROM checkpoints WHERE org = $1",
        "UPDATE logs SET size = 0 WHERE org = $1",
    ],
)
async def test_storage_refuses_update_and_delete(
    client: Any, org: Org, pool: asyncpg.Pool, settings: Settings, sql: str
) -> None:
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch",
        # 20 entries: enough for a stored subtree hash (level 4) to exist
        json={"entries": [fund_entry(f"U{i}") for i in range(20)]},
        headers=org.auth(),
    )
    assert r.status_code == 201
    await sign_due(pool, signer_for(settings.signing_key, settings.key_name), settings.origin)
    with pytest.raises(asyncpg.PostgresError, match=r"append-only|may only grow"):
        await pool.execute(sql, org.code)


@pytest.mark.parametrize("table", ["leaves", "tree_nodes", "checkpoints", "idempotency_keys"])
async def test_storage_refuses_truncate(pool: asyncpg.Pool, table: str) -> None:
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await pool.execute(f"TRUNCATE {table} CASCADE")


async def _signed_log(
    client: Any, pool: asyncpg.Pool, settings: Settings, prefix: str, n: int
) -> Org:
    """A new org with ``n`` entries in its 2026 log, signed at its head."""
    org = await make_org(prefix.lower())
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch",
        json={"entries": [fund_entry(f"{prefix}{i}") for i in range(n)]},
        headers=org.auth(),
    )
    assert r.status_code == 201
    await sign_due(pool, signer_for(settings.signing_key, settings.key_name), settings.origin)
    return org


async def test_verify_passes_then_names_a_tampered_leaf(
    client: Any, dsn: str, pool: asyncpg.Pool, settings: Settings
) -> None:
    org = await _signed_log(client, pool, settings, "V", 12)

    ok = run_cli(dsn, settings, "verify", "--org", org.code)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "12 leaves" in ok.stdout
    # An org or year that is not there is a usage error, not "ok: 0 logs".
    for args in (["--org", "no-such-org"], ["--org", org.code, "--year", "2031"]):
        nothing = run_cli(dsn, settings, "verify", *args)
        assert nothing.returncode == 2, nothing.stdout + nothing.stderr
        assert "no " in nothing.stderr

    # A superuser switches the guard off and edits one body.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE leaves DISABLE TRIGGER leaves_append_only")
        await conn.execute(
            """UPDATE leaves SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'),
                   '专项资金 V7', '专项资金 V8'), 'UTF8')
               WHERE org = $1 AND idx = 7""",
            org.code,
        )
        await conn.execute("ALTER TABLE leaves ENABLE TRIGGER leaves_append_only")

    bad = run_cli(dsn, settings, "verify", "--org", org.code)
    assert bad.returncode != 0
    assert f"{org.code}/2026 index 7" in bad.stderr


async def test_verify_detects_a_rehashed_leaf_against_the_checkpoint(
    client: Any, dsn: str, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Rewriting bytes and hash together still breaks the signed root."""
    org = await make_org("w")
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch",
        json={"entries": [fund_entry(f"W{i}") for i in range(5)]},
        headers=org.auth(),
    )
    assert r.status_code == 201
    await sign_due(pool, signer_for(settings.signing_key, settings.key_name), settings.origin)
    raw = bytes(await pool.fetchval("SELECT leaf FROM leaves WHERE org = $1 AND idx = 2", org.code))
    forged = raw.replace("专项资金 W2".encode(), "专项资金 W9".encode())
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE leaves DISABLE TRIGGER leaves_append_only")
        await conn.execute(
            "UPDATE leaves SET leaf = $2, leaf_hash = $3 WHERE org = $1 AND idx = 2",
            org.code,
            forged,
            leaf_hash(forged),
        )
        await conn.execute("ALTER TABLE leaves ENABLE TRIGGER leaves_append_only")
    bad = run_cli(dsn, settings, "verify", "--org", org.code)
    assert bad.returncode != 0
    assert f"{org.code}/2026" in bad.stderr


def test_cli_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(Path(ROOT) / "cli.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "verify" in out.stdout


@pytest.mark.parametrize("change", ["altered", "missing"])
async def test_verify_names_a_stored_subtree_hash_altered_or_missing(
    client: Any, pool: asyncpg.Pool, settings: Settings, change: str
) -> None:
    org = await _signed_log(client, pool, settings, "N", 40)
    verifier = NoteVerifier.from_vkey(signer_for(settings.signing_key, settings.key_name).vkey())
    async with pool.acquire() as conn:
        report = await verify_ledger(conn, verifier, settings.origin, org=org.code)
    assert report.ok, report.problems

    # The second level-4 subtree covers leaves 16..31; a proof for any of them reads it.
    edit = {
        "altered": "UPDATE tree_nodes SET hash = sha256(hash)",
        "missing": "DELETE FROM tree_nodes",
    }[change]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE tree_nodes DISABLE TRIGGER tree_nodes_append_only")
        done = await conn.execute(
            edit + " WHERE org = $1 AND year = 2026 AND level = 4 AND idx = 1", org.code
        )
        assert done.endswith(" 1")
        await conn.execute("ALTER TABLE tree_nodes ENABLE TRIGGER tree_nodes_append_only")
    async with pool.acquire() as conn:
        report = await verify_ledger(conn, verifier, settings.origin, org=org.code)
    assert [str(p) for p in report.problems] == [
        f"{org.code}/2026 index 31: stored subtree hash (4, 1) is wrong or missing"
    ]


async def test_concurrent_transactions_read_the_heads_and_books_the_last_one_left(
    org: Org, pool: asyncpg.Pool
) -> None:
    """Appends on connections of their own wait for the org's lock in turn: each
    must see the head and the balance the transaction before it committed (a
    stale head would reuse an index; a stale balance would let a disbursement
    overdraw). 100.00 in, then 30 disbursements of 10.00 at once and 20.00 of
    receipts among them: exactly as many disbursements pass as the money allows."""
    import orjson

    from ledger.entries import decode_entry
    from ledger.errors import LedgerError
    from ledger.posting import post_entries_pooled
    from tests.test_funds import disbursement, receipt

    def entry(d: dict[str, Any]) -> Any:
        return decode_entry(orjson.dumps(d), org=org.code, actor="t", idempotency_key=None)

    await post_entries_pooled(pool, [entry(fund_entry("CB")), entry(receipt("CB", "100.00"))])
    waits = 0

    async def post(d: dict[str, Any]) -> bool:
        try:
            await post_entries_pooled(pool, [entry(d)])
        except LedgerError:
            return False
        return True

    async def watch(conn: Any) -> None:  # that the appends did wait for each other's lock
        nonlocal waits
        while True:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            )
            waits = max(waits, waiting)
            await asyncio.sleep(0.002)

    posts = [disbursement("CB", "10.00") for _ in range(30)]
    posts[5:5] = [receipt("CB", "5.00") for _ in range(4)]
    async with pool.acquire() as conn:
        watcher = asyncio.ensure_future(watch(conn))
        await asyncio.sleep(0.01)
        passed = await asyncio.gather(*(post(d) for d in posts))
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert waits >= 2, "the appends never waited for one another"
    assert all(passed[5:9])
    assert sum(passed[:5] + passed[9:]) == 12, passed  # 120.00 / 10.00
    balance = await pool.fetchval(
        "SELECT balance_fen FROM funds WHERE org = $1 AND fund_code = 'CB'", org.code
    )
    assert balance == 0
    rows = await pool.fetch(
        "SELECT idx, leaf_hash FROM leaves WHERE org = $1 AND year = 2026 ORDER BY idx", org.code
    )
    assert [r["idx"] for r in rows] == list(range(2 + 4 + 12))
    head = await pool.fetchrow("SELECT size, root FROM logs WHERE org = $1", org.code)
    assert head["size"] == len(rows)
    assert bytes(head["root"]) == root_from_leaf_hashes([bytes(r["leaf_hash"]) for r in rows])
