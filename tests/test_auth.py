"""Tokens: 401 without or with a bad token, 403 for another org or a role that may not post."""

from __future__ import annotations

from typing import Any

from tests.conftest import Org, fund_entry, make_org


async def test_missing_token_is_401(client: Any, org: Org) -> None:
    r = await client.post(f"/api/v1/orgs/{org.code}/entries", json=fund_entry("X"))
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_unknown_token_is_401(client: Any, org: Org) -> None:
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries",
        json=fund_entry("X"),
        headers={"Authorization": "Bearer gk_not-a-token"},
    )
    assert r.status_code == 401


async def test_token_of_another_org_is_403(client: Any, org: Org) -> None:
    other = await make_org("o")
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries", json=fund_entry("X"), headers=other.auth()
    )
    assert r.status_code == 403


async def test_auditor_may_not_post(client: Any, org: Org) -> None:
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries", json=fund_entry("X"), headers=org.auth("auditor")
    )
    assert r.status_code == 403


async def test_only_the_token_hash_is_stored(org: Org, pool: Any) -> None:
    import hashlib

    token = org.tokens["clerk"]
    rows = await pool.fetch("SELECT token_sha256 FROM tokens WHERE org = $1", org.code)
    stored = {bytes(r["token_sha256"]) for r in rows}
    assert hashlib.sha256(token.encode()).digest() in stored
    dump = str(await pool.fetch("SELECT * FROM tokens WHERE org = $1", org.code))
    assert token not in dump
