"""Posting entries over HTTP: receipts, indices, batches, idempotency, bad input."""

from __future__ import annotations

from typing import Any

import asyncpg

from ledger.canonical import canonical_bytes
from ledger.tree import leaf_hash
from tests.conftest import Org, fund_entry


async def test_post_returns_receipt_after_commit(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries", json=fund_entry("A1"), headers=org.auth()
    )
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert receipt["log"] == f"{org.code}/2026"
    assert receipt["index"] == 0
    row = await pool.fetchrow(
        "SELECT leaf, leaf_hash FROM leaves WHERE org = $1 AND year = 2026 AND idx = 0", org.code
    )
    assert bytes(row["leaf_hash"]).hex() == receipt["leaf_hash"]
    assert leaf_hash(bytes(row["leaf"])) == bytes(row["leaf_hash"])


async def test_leaf_has_the_spec_fields(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries", json=fund_entry("A2"), headers=org.auth()
    )
    assert r.status_code == 201
    import orjson

    raw = await pool.fetchval("SELECT leaf FROM leaves WHERE org = $1 AND idx = 0", org.code)
    leaf = orjson.loads(raw)
    assert list(leaf) == sorted(leaf)
    assert set(leaf) == {
        "v",
        "log",
        "index",
        "kind",
        "subject",
        "occurred_on",
        "recorded_at",
        "actor",
        "visibility",
        "idempotency_key",
        "salt",
        "body",
    }
    assert leaf["v"] == 1 and leaf["actor"] == "clerk.one" and leaf["visibility"] == "public"
    assert len(leaf["salt"]) == 32 and int(leaf["salt"], 16) >= 0
    assert leaf["recorded_at"].endswith("Z") and len(leaf["recorded_at"]) == 27
    assert canonical_bytes(leaf) == bytes(raw)


async def test_indices_follow_each_other(client: Any, org: Org) -> None:
    indices = []
    for i in range(5):
        r = await client.post(
            f"/api/v1/orgs/{org.code}/entries", json=fund_entry(f"S{i}"), headers=org.auth()
        )
        indices.append(r.json()["index"])
    assert indices == [0, 1, 2, 3, 4]


async def test_fiscal_year_is_the_year_of_occurred_on(client: Any, org: Org) -> None:
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries",
        json=fund_entry("Y1", on="2025-12-31"),
        headers=org.auth(),
    )
    assert r.status_code == 201
    assert r.json()["log"] == f"{org.code}/2025"


async def test_batch_is_one_transaction_with_consecutive_indices(client: Any, org: Org) -> None:
    entries = [fund_entry(f"B{i}") for i in range(250)]
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 201, r.text
    receipts = r.json()["receipts"]
    assert [x["index"] for x in receipts] == list(range(250))


async def test_batch_with_one_bad_entry_writes_nothing(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    entries = [fund_entry(f"C{i}") for i in range(10)]
    entries[7]["body"]["category"] = "lottery"
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 422
    problem = r.json()
    assert problem["errors"][0]["path"] == "$.entries[7].body.category"
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == 0


async def test_batch_over_1000_entries_is_refused(client: Any, org: Org) -> None:
    entries = [fund_entry(f"D{i}") for i in range(1001)]
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "$.entries"


async def _leaf_keys(pool: asyncpg.Pool, org: str) -> list[str | None]:
    import orjson

    rows = await pool.fetch("SELECT leaf FROM leaves WHERE org = $1 ORDER BY year, idx", org)
    return [orjson.loads(bytes(r["leaf"]))["idempotency_key"] for r in rows]


async def test_a_retried_batch_with_its_key_answers_the_first_receipts(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """Before, the batch route refused a key (and before that dropped it, so a
    retried batch was written twice)."""
    url = f"/api/v1/orgs/{org.code}/entries/batch"
    entries = [fund_entry(f"K{i}") for i in range(3)]
    headers = {**org.auth(), "Idempotency-Key": "march-import"}
    first = await client.post(url, json={"entries": entries}, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(url, json={"entries": entries}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert [r["index"] for r in first.json()["receipts"]] == [0, 1, 2]
    assert await _leaf_keys(pool, org.code) == [f"march-import#{i}" for i in range(3)]
    # Each entry's key is its own: a single post of the second entry with its key is
    # a retry of that entry.
    one = await client.post(
        f"/api/v1/orgs/{org.code}/entries",
        json=entries[1],
        headers={**org.auth(), "Idempotency-Key": "march-import#1"},
    )
    assert one.status_code == 200, one.text
    assert one.json() == first.json()["receipts"][1]
    # Another key is another batch.
    april = [fund_entry(f"L{i}") for i in range(3)]
    other = await client.post(
        url, json={"entries": april}, headers={**org.auth(), "Idempotency-Key": "april"}
    )
    assert other.status_code == 201, other.text
    assert [r["index"] for r in other.json()["receipts"]] == [3, 4, 5]


async def test_a_key_reused_for_another_batch_is_409_and_writes_nothing(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    url = f"/api/v1/orgs/{org.code}/entries/batch"
    entries = [fund_entry(f"M{i}") for i in range(3)]
    headers = {**org.auth(), "Idempotency-Key": "b-1"}
    assert (await client.post(url, json={"entries": entries}, headers=headers)).status_code == 201
    changed = [*entries[:2], fund_entry("M9")]
    for other in (changed, entries[:2], [*entries, fund_entry("M3")], entries[::-1]):
        r = await client.post(url, json={"entries": other}, headers=headers)
        assert r.status_code == 409, r.text
        assert r.json()["type"] == "urn:gongkai:problem:idempotency-key-reused"
        assert r.json()["idempotency_key"] == "b-1"
    # The batch's own key is taken too: a single post under it is another request.
    single = f"/api/v1/orgs/{org.code}/entries"
    r = await client.post(single, json=fund_entry("N1"), headers=headers)
    assert r.status_code == 409, r.text
    r = await client.post(
        single, json=fund_entry("M9"), headers={**org.auth(), "Idempotency-Key": "b-1#0"}
    )
    assert r.status_code == 409, r.text
    # Nor may a batch take a single post's key, or keys single posts took as key#i.
    for code, single_key, batch_key in (("P1", "p", "p"), ("Q1", "q#0", "q")):
        r = await client.post(
            single, json=fund_entry(code), headers={**org.auth(), "Idempotency-Key": single_key}
        )
        assert r.status_code == 201, r.text
        r = await client.post(
            url,
            json={"entries": [fund_entry(code)]},
            headers={**org.auth(), "Idempotency-Key": batch_key},
        )
        assert r.status_code == 409, r.text
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == 5


async def test_a_key_taken_after_a_batch_does_not_stop_its_retry(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """A stranger's single post under ``s#2`` after a batch ``s`` of two entries made the
    batch's retry 409: the retry looked at ``s#2`` to tell a shorter batch from it."""
    url = f"/api/v1/orgs/{org.code}/entries/batch"
    entries = [fund_entry(f"S{i}") for i in range(2)]
    headers = {**org.auth(), "Idempotency-Key": "s"}
    first = await client.post(url, json={"entries": entries}, headers=headers)
    assert first.status_code == 201, first.text
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries",
        json=fund_entry("S2"),
        headers={**org.auth(), "Idempotency-Key": "s#2"},
    )
    assert r.status_code == 201, r.text
    again = await client.post(url, json={"entries": entries}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    r = await client.post(url, json={"entries": [*entries, fund_entry("S2")]}, headers=headers)
    assert r.status_code == 409, r.text


async def test_a_batch_key_leaves_room_for_its_entries_keys(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """A batch key of 200 characters gave its entries keys of up to 204, which a
    single post's retry of the entry could not send (422)."""
    url = f"/api/v1/orgs/{org.code}/entries/batch"
    r = await client.post(
        url,
        json={"entries": [fund_entry("W0")]},
        headers={**org.auth(), "Idempotency-Key": "k" * 197},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "header.Idempotency-Key"
    key = "k" * 196
    entries = [fund_entry(f"W{i}") for i in range(12)]
    first = await client.post(
        url, json={"entries": entries}, headers={**org.auth(), "Idempotency-Key": key}
    )
    assert first.status_code == 201, first.text
    one = await client.post(
        f"/api/v1/orgs/{org.code}/entries",
        json=entries[11],
        headers={**org.auth(), "Idempotency-Key": f"{key}#11"},
    )
    assert one.status_code == 200, one.text
    assert one.json() == first.json()["receipts"][11]


async def test_keyed_posts_racing_under_the_lock_are_retries_not_conflicts(
    dsn: str, pool: asyncpg.Pool, settings: Any
) -> None:
    """Identical keyed requests that all passed the key lookup before the first
    committed: the books refused the others (a fund opened twice, 409 conflict)
    before the key was looked at again. They are now answered from the key."""
    import asyncio

    import httpx

    from tests.conftest import free_port, make_org, start_server, wait_ready
    from tests.test_writes import _lock_org

    org = await make_org("race")
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1/orgs/{org.code}"
    proc = start_server(dsn, settings, port)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
        async with httpx.AsyncClient(timeout=30) as c:
            for url, body, key in (
                (f"{base}/entries/batch", {"entries": [fund_entry("R1"), fund_entry("R2")]}, "rb"),
                (f"{base}/entries", fund_entry("R3"), "rs"),
            ):
                unlock = await _lock_org(pool, org.code)
                try:
                    posts = [
                        asyncio.ensure_future(
                            c.post(url, json=body, headers={**org.auth(), "Idempotency-Key": key})
                        )
                        for _ in range(4)
                    ]
                    await asyncio.sleep(1.0)  # all four wait for the org's lock
                finally:
                    await unlock()
                rs = await asyncio.gather(*posts)
                assert sorted(r.status_code for r in rs) == [200, 200, 200, 201], [
                    r.text for r in rs
                ]
                assert len({r.text for r in rs}) == 1
            # A single post and a batch under one key, the post first: the batch is
            # another request under a taken key, not a second opening of the fund.
            headers = {**org.auth(), "Idempotency-Key": "mk"}
            unlock = await _lock_org(pool, org.code)
            try:
                single = asyncio.ensure_future(
                    c.post(f"{base}/entries", json=fund_entry("MZ"), headers=headers)
                )
                await asyncio.sleep(0.5)
                batch = asyncio.ensure_future(
                    c.post(
                        f"{base}/entries/batch",
                        json={"entries": [fund_entry("MZ")]},
                        headers=headers,
                    )
                )
                await asyncio.sleep(0.5)
            finally:
                await unlock()
            assert (await single).status_code == 201
            r = await batch
            assert r.status_code == 409, r.text
            assert r.json()["type"] == "urn:gongkai:problem:idempotency-key-reused", r.text
        assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == 4
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_concurrent_retries_of_a_keyed_batch_write_it_once(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    import asyncio

    url = f"/api/v1/orgs/{org.code}/entries/batch"
    body = {"entries": [fund_entry(f"C{i}") for i in range(5)]}
    headers = {**org.auth(), "Idempotency-Key": "b-race"}
    rs = await asyncio.gather(*[client.post(url, json=body, headers=headers) for _ in range(6)])
    assert sorted(r.status_code for r in rs) == [200] * 5 + [201], [r.text for r in rs]
    assert len({str(r.json()) for r in rs}) == 1
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == 5


async def test_same_idempotency_key_and_request_returns_original_receipt(
    client: Any, org: Org
) -> None:
    url = f"/api/v1/orgs/{org.code}/entries"
    headers = {**org.auth(), "Idempotency-Key": "k-1"}
    first = await client.post(url, json=fund_entry("I1"), headers=headers)
    again = await client.post(url, json=fund_entry("I1"), headers=headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()


async def test_same_idempotency_key_with_other_request_is_409(client: Any, org: Org) -> None:
    url = f"/api/v1/orgs/{org.code}/entries"
    headers = {**org.auth(), "Idempotency-Key": "k-2"}
    assert (await client.post(url, json=fund_entry("I2"), headers=headers)).status_code == 201
    r = await client.post(url, json=fund_entry("I3"), headers=headers)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "urn:gongkai:problem:idempotency-key-reused"


async def test_concurrent_retries_with_one_key_make_one_entry(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    import asyncio

    url = f"/api/v1/orgs/{org.code}/entries"
    headers = {**org.auth(), "Idempotency-Key": "k-race"}
    rs = await asyncio.gather(
        *[client.post(url, json=fund_entry("R1"), headers=headers) for _ in range(8)]
    )
    assert sorted(r.status_code for r in rs) == [200] * 7 + [201]
    assert len({r.json()["index"] for r in rs}) == 1
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == 1
