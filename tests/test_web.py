"""A good citizen of the web: caching, compression, CORS, rate limits, metrics, logs."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.web import JsonFormatter, RateLimiter
from ledger.settings import Settings
from tests.conftest import Org, fund_entry


async def test_public_get_has_etag_and_304_on_if_none_match(client: Any, org: Org) -> None:
    r = await client.get(f"/api/v1/orgs/{org.code}")
    assert r.status_code == 200
    etag = r.headers["etag"]
    assert etag.startswith('W/"')
    assert "public" in r.headers["cache-control"]
    again = await client.get(f"/api/v1/orgs/{org.code}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


async def test_etag_changes_when_the_data_does(client: Any, org: Org) -> None:
    first = (await client.get(f"/api/v1/orgs/{org.code}")).headers["etag"]
    await client.post(f"/api/v1/orgs/{org.code}/entries", json=fund_entry("E1"), headers=org.auth())
    second = (await client.get(f"/api/v1/orgs/{org.code}")).headers["etag"]
    assert first != second


async def test_staff_responses_are_not_cached(client: Any, org: Org) -> None:
    r = await client.get(f"/api/v1/orgs/{org.code}/entries", headers=org.auth())
    assert r.headers["cache-control"] == "private, no-store"
    assert "etag" not in r.headers


async def test_large_responses_are_gzipped(client: Any, org: Org) -> None:
    entries = [fund_entry(f"G{i}") for i in range(200)]
    await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    r = await client.get(
        f"/api/v1/orgs/{org.code}/logs/2026/leaves", headers={"Accept-Encoding": "gzip"}
    )
    assert r.headers.get("content-encoding") == "gzip"
    assert len(r.json()["leaf_hashes"]) == 200


async def test_cors_is_open_for_public_gets(client: Any) -> None:
    r = await client.get("/api/v1/orgs", headers={"Origin": "https://example.org"})
    assert r.headers["access-control-allow-origin"] == "*"
    pre = await client.options(
        "/api/v1/orgs",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status_code in (200, 204)
    assert pre.headers["access-control-allow-origin"] == "*"


async def test_every_response_carries_a_request_id(client: Any) -> None:
    r = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5 and all(len(i) == 32 for i in ids)


async def test_what_the_router_answers_itself_has_a_request_id_and_a_log_line(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An unmatched path or method is answered before any route's middleware: it
    had no X-Request-Id and no access-log line."""
    with caplog.at_level(logging.INFO, logger="gongkai.access"):
        r = await client.get("/nope/nope", headers={"X-Request-Id": "mine-404"})
        assert r.status_code == 404 and r.headers["x-request-id"] == "mine-404"
        r = await client.delete("/api/v1/orgs")
        assert r.status_code == 405 and len(r.headers["x-request-id"]) == 32
        # Routed responses keep the one id the middleware gave them.
        r = await client.get("/healthz", headers={"X-Request-Id": "routed-1"})
        assert r.headers.get_list("x-request-id") == ["routed-1"]
    lines = [rec for rec in caplog.records if rec.name == "gongkai.access"]
    unmatched = [(x.request_id, x.status, x.route) for x in lines if x.route == "unmatched"]  # type: ignore[attr-defined]
    assert unmatched[0] == ("mine-404", 404, "unmatched")
    assert unmatched[1][1:] == (405, "unmatched") and len(unmatched) == 2
    metrics = (await client.get("/metrics")).text
    assert 'route="unmatched",method="DELETE",status="405"' in metrics


async def test_metrics_in_prometheus_text(client: Any, org: Org) -> None:
    await client.post(f"/api/v1/orgs/{org.code}/entries", json=fund_entry("M1"), headers=org.auth())
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'gongkai_http_requests_total{route="/api/v1/orgs/{org}/entries",method="POST"' in text
    assert "gongkai_http_request_duration_seconds_bucket" in text
    assert "gongkai_entries_appended_total" in text
    assert "gongkai_checkpoint_size" in text


async def test_public_requests_are_rate_limited_with_retry_after(
    dsn: str, settings: Settings
) -> None:
    from api.app import create_app

    limited = dataclasses.replace(settings, public_rate_limit=3)
    async with AsyncTestClient(app=create_app(limited, dsn)) as c:
        codes = [(await c.get("/api/v1/orgs")).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200]
        r = await c.get("/api/v1/orgs")
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")
        assert (await c.get("/healthz")).status_code == 200


async def test_only_a_known_token_escapes_the_public_rate_limit(
    dsn: str, settings: Settings, org: Org
) -> None:
    """Any Authorization header used to count as staff: a made-up token lifted the
    limit on every public route that does not read the token."""
    from api.app import create_app

    limited = dataclasses.replace(settings, public_rate_limit=3)
    async with AsyncTestClient(app=create_app(limited, dsn)) as c:
        made_up = {"Authorization": "Bearer gk_made_up"}
        codes = [(await c.get("/api/v1/vkey", headers=made_up)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = await c.get("/api/v1/vkey", headers={"Authorization": "Basic eDp5"})
        assert r.status_code == 429
        # Staff with a real token are not limited, and not cached as public.
        for _ in range(5):
            r = await c.get("/api/v1/vkey", headers=org.auth())
            assert r.status_code == 200
            assert r.headers["cache-control"] == "private, no-store"


def test_token_bucket_refills_over_time() -> None:
    limiter = RateLimiter(60)  # one a second
    assert all(limiter.take("a", now=0.0) == 0 for _ in range(60))
    assert limiter.take("a", now=0.0) == pytest.approx(1.0)
    assert limiter.take("a", now=1.0) == 0
    assert limiter.take("b", now=0.0) == 0


def test_json_log_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("gongkai.access", logging.INFO, "", 0, "request", (), None)
    record.request_id = "r1"
    record.status = 201
    doc = json.loads(JsonFormatter().format(record))
    assert doc["request_id"] == "r1" and doc["status"] == 201 and doc["msg"] == "request"


async def test_the_started_server_keeps_the_collector_off_its_long_lived_objects(
    client: Any,
) -> None:
    import gc

    from api.runtime import GC_YOUNG

    assert (await client.get("/healthz")).status_code == 200  # the app has started
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == GC_YOUNG
