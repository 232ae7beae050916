"""Remembered lookups: one lookup however many ask at once; and the server's lookups
of orgs and tokens run on its pool, not on a new connection each (Piccolo's way)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from piccolo.engine.postgres import PostgresEngine

import api.auth
from ledger import access
from ledger.cache import Remembered
from tests.conftest import Org, fund_entry, make_org


class Lookups:
    def __init__(self, answer: Any = "v", *, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.answer, self.fail = answer, fail
        self.gate = asyncio.Event()

    async def __call__(self, key: str) -> Any:
        self.calls.append(key)
        await self.gate.wait()
        if self.fail:
            raise LookupError(key)
        return self.answer


async def test_concurrent_misses_look_up_once() -> None:
    cache: Remembered[str, Any] = Remembered(60.0)
    look = Lookups()
    asks = [asyncio.ensure_future(cache.get("k", look)) for _ in range(50)]
    await asyncio.sleep(0)
    look.gate.set()
    assert await asyncio.gather(*asks) == ["v"] * 50
    assert look.calls == ["k"]
    assert await cache.get("k", look) == "v"  # remembered
    assert await cache.get("other", look) == "v"
    assert look.calls == ["k", "other"]


async def test_an_expired_value_is_looked_up_again() -> None:
    cache: Remembered[str, Any] = Remembered(0.0)
    look = Lookups()
    look.gate.set()
    await cache.get("k", look)
    await cache.get("k", look)
    assert look.calls == ["k", "k"]


async def test_a_failed_lookup_reaches_every_asker_and_is_not_remembered() -> None:
    cache: Remembered[str, Any] = Remembered(60.0)
    look = Lookups(fail=True)
    asks = [asyncio.ensure_future(cache.get("k", look)) for _ in range(5)]
    await asyncio.sleep(0)
    look.gate.set()
    results = await asyncio.gather(*asks, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert look.calls == ["k"]
    look.fail = False
    assert await cache.get("k", look) == "v"
    assert look.calls == ["k", "k"]


async def test_a_cancelled_asker_does_not_cancel_the_others() -> None:
    cache: Remembered[str, Any] = Remembered(60.0)
    look = Lookups()
    first = asyncio.ensure_future(cache.get("k", look))
    second = asyncio.ensure_future(cache.get("k", look))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    look.gate.set()
    assert await second == "v"
    assert first.cancelled()
    assert look.calls == ["k"]


async def test_concurrent_requests_with_a_new_token_look_it_up_once(
    pool: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What happened every 30 s under load: every request in flight looked its
    token up at once (64 queries, each on a new connection)."""
    looked_up: list[str] = []

    async def counted(conn: Any, token: str) -> Any:
        looked_up.append(token)
        await asyncio.sleep(0.05)  # still looking while the others arrive
        return await access.principal_for(conn, token)

    monkeypatch.setattr(api.auth, "principal_for", counted)
    token = await access.create_token(org.code, "clerk", "clerk.burst")
    request = SimpleNamespace(
        headers={"authorization": f"Bearer {token}"},
        app=SimpleNamespace(state=SimpleNamespace(runtime=SimpleNamespace(pool=pool))),
    )
    found = await asyncio.gather(*(api.auth.optional_principal(request) for _ in range(20)))  # type: ignore[arg-type]
    assert {p.name for p in found} == {"clerk.burst"} and len(found) == 20
    assert looked_up == [token]


async def test_the_server_looks_up_orgs_and_tokens_on_its_pool(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No request makes Piccolo open a connection of its own (it has no pool here)."""
    other = await make_org("pool")  # before the patch: creating orgs is a command's work
    token = await access.create_token(other.code, "clerk", "clerk.pooled")

    async def refused(self: PostgresEngine) -> Any:
        raise AssertionError("a request opened a connection of its own")

    monkeypatch.setattr(PostgresEngine, "get_new_connection", refused)
    assert other.code in {o["code"] for o in (await client.get("/api/v1/orgs")).json()}
    assert (await client.get(f"/api/v1/orgs/{other.code}")).status_code == 200
    r = await client.post(
        f"/api/v1/orgs/{other.code}/entries",
        json=fund_entry("P-1"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/orgs/{other.code}/funds")
    assert r.status_code == 200
    assert (await client.get("/api/v1/orgs/no-such-org/funds")).status_code == 404
