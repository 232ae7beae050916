"""Public log routes: leaf hashes, signed checkpoints, proofs, the verifier key."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from ledger.checkpoint import NoteVerifier
from ledger.tree import root_from_leaf_hashes, verify_consistency, verify_inclusion
from tests.conftest import Org, fund_entry


async def _fill(client: Any, org: Org, n: int) -> None:
    batch = secrets.token_hex(3)
    entries = [fund_entry(f"L{batch}-{i}") for i in range(n)]
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 201, r.text


async def _checkpoint(client: Any, org: Org, year: int = 2026, size: int | None = None) -> str:
    # A checkpoint is signed at most a second after an append.
    for _ in range(40):
        r = await client.get(f"/api/v1/orgs/{org.code}/logs/{year}/checkpoint")
        if r.status_code == 200 and (size is None or f"\n{size}\n" in r.text):
            return str(r.text)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no checkpoint: {r.status_code} {r.text}")


async def test_checkpoint_is_signed_within_a_second_and_verifies(client: Any, org: Org) -> None:
    await _fill(client, org, 37)
    note = await _checkpoint(client, org, size=37)
    vkey = (await client.get("/api/v1/vkey")).text.strip()
    cp = NoteVerifier.from_vkey(vkey).verify(note)
    for path in (f"/api/v1/orgs/{org.code}/logs/2026/checkpoint", "/api/v1/vkey", "/metrics"):
        kind = (await client.get(path)).headers["content-type"]
        assert kind.startswith("text/plain") and kind.count("charset") == 1, (path, kind)
    assert cp.origin == f"test.gongkai.local/{org.code}/2026"
    assert cp.size == 37
    r = await client.get(f"/api/v1/orgs/{org.code}/logs/2026/leaves?start=0&end=37")
    hashes = [bytes.fromhex(h) for h in r.json()["leaf_hashes"]]
    assert root_from_leaf_hashes(hashes) == cp.root


async def test_leaves_are_paged_at_most_1000(client: Any, org: Org) -> None:
    await _fill(client, org, 1000)
    await _fill(client, org, 5)
    r = await client.get(f"/api/v1/orgs/{org.code}/logs/2026/leaves")
    body = r.json()
    assert (body["start"], body["end"], len(body["leaf_hashes"])) == (0, 1000, 1000)
    r = await client.get(f"/api/v1/orgs/{org.code}/logs/2026/leaves?start=1000")
    assert r.json()["end"] == 1005
    r = await client.get(f"/api/v1/orgs/{org.code}/logs/2026/leaves?start=0&end=1001")
    assert r.status_code == 422


async def test_every_inclusion_proof_verifies_against_the_checkpoint(client: Any, org: Org) -> None:
    await _fill(client, org, 21)
    note = await _checkpoint(client, org, size=21)
    vkey = (await client.get("/api/v1/vkey")).text.strip()
    cp = NoteVerifier.from_vkey(vkey).verify(note)
    for index in range(21):
        r = await client.get(
            f"/api/v1/orgs/{org.code}/logs/2026/proofs/inclusion?index={index}&tree_size=21"
        )
        assert r.status_code == 200, r.text
        p = r.json()
        path = [bytes.fromhex(h) for h in p["path"]]
        assert verify_inclusion(bytes.fromhex(p["leaf_hash"]), index, 21, path, cp.root)


async def test_consistency_proofs_link_old_checkpoints_to_new(client: Any, org: Org) -> None:
    await _fill(client, org, 6)
    old = await _checkpoint(client, org, size=6)
    await _fill(client, org, 11)
    new = await _checkpoint(client, org, size=17)
    vkey = (await client.get("/api/v1/vkey")).text.strip()
    verifier = NoteVerifier.from_vkey(vkey)
    a, b = verifier.verify(old), verifier.verify(new)
    r = await client.get(f"/api/v1/orgs/{org.code}/logs/2026/proofs/consistency?first=6&second=17")
    path = [bytes.fromhex(h) for h in r.json()["path"]]
    assert verify_consistency(6, 17, path, a.root, b.root)
    path[0] = bytes(32)
    assert not verify_consistency(6, 17, path, a.root, b.root)


async def test_proof_beyond_the_log_is_422_and_unknown_log_404(client: Any, org: Org) -> None:
    await _fill(client, org, 3)
    base = f"/api/v1/orgs/{org.code}/logs"
    r = await client.get(f"{base}/2026/proofs/inclusion?index=0&tree_size=4")
    assert r.status_code == 422
    r = await client.get(f"{base}/2026/proofs/inclusion?index=3&tree_size=3")
    assert r.status_code == 422
    r = await client.get(f"{base}/2026/proofs/inclusion?index=-1&tree_size=3")
    assert r.status_code == 422
    r = await client.get(f"{base}/2019/proofs/inclusion?index=0&tree_size=1")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_public_log_routes_reveal_no_bodies(client: Any, org: Org) -> None:
    await _fill(client, org, 3)
    await _checkpoint(client, org, size=3)
    urls = [
        f"/api/v1/orgs/{org.code}",
        f"/api/v1/orgs/{org.code}/logs/2026/leaves",
        f"/api/v1/orgs/{org.code}/logs/2026/checkpoint",
        f"/api/v1/orgs/{org.code}/logs/2026/proofs/inclusion?index=1&tree_size=3",
    ]
    for url in urls:
        text = (await client.get(url)).text
        assert "专项资金" not in text and "salt" not in text


async def test_year_opened_chains_a_new_year_to_the_previous_log(
    client: Any, org: Org, pool: Any
) -> None:
    import orjson

    await _fill(client, org, 4)
    note_2026 = await _checkpoint(client, org, size=4)
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries",
        json=fund_entry("NY", on="2027-01-05"),
        headers=org.auth(),
    )
    assert r.status_code == 201
    assert r.json()["index"] == 1  # index 0 is year.opened
    vkey = (await client.get("/api/v1/vkey")).text.strip()
    cp = NoteVerifier.from_vkey(vkey).verify(note_2026)
    raw = await pool.fetchval(
        "SELECT leaf FROM leaves WHERE org = $1 AND year = 2027 AND idx = 0", org.code
    )
    opener = orjson.loads(raw)
    assert opener["kind"] == "year.opened"
    assert opener["body"] == {
        "previous_log": f"{org.code}/2026",
        "previous_size": cp.size,
        "previous_root": cp.root.hex(),
    }
