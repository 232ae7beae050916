"""The OpenAPI document is served and describes the posting bodies by kind."""

from __future__ import annotations

from typing import Any


async def test_openapi_document_describes_entry_bodies(client: Any) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    post = doc["paths"]["/api/v1/orgs/{org}/entries"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/EntryRequest"
    )
    schemas = doc["components"]["schemas"]
    variants = [schemas[v["$ref"].rsplit("/", 1)[1]] for v in schemas["EntryRequest"]["oneOf"]]
    kinds = {v["properties"]["kind"]["const"] for v in variants}
    assert "fund.receipt" in kinds and "review.approved" not in kinds
    assert "FundReceipt" in doc["components"]["schemas"]
    assert "200" in post["responses"] and "201" in post["responses"]


async def test_the_service_routes_answer_under_the_api_prefix_too(client: Any) -> None:
    """SPEC §6 lists them in the section of /api/v1 routes: both paths answer the same,
    and the aliases stay out of the document (no operation listed twice)."""
    root = (await client.get("/schema/openapi.json")).json()
    r = await client.get("/api/v1/schema/openapi.json")
    assert r.status_code == 200, r.text
    assert r.json() == root
    assert not any(p.startswith("/api/v1/healthz") for p in root["paths"])
    for path in ("healthz", "readyz"):
        r = await client.get(f"/api/v1/{path}")
        assert r.status_code == 200, r.text
        assert r.json() == (await client.get(f"/{path}")).json()
    r = await client.get("/api/v1/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    assert "gongkai_" in r.text


async def test_every_summed_number_documents_its_log_heads(client: Any) -> None:
    """Funds, projects (lists and single) and the opinion counts describe as_of and
    earlier_as_of."""
    doc = (await client.get("/schema/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for path in ("/funds", "/funds/{code}", "/projects", "/projects/{code}", "/opinions/stats"):
        ok = doc["paths"][f"/api/v1/orgs/{{org}}{path}"]["get"]["responses"]["200"]
        schema = ok["content"]["application/json"]["schema"]
        name = schema.get("items", schema)["$ref"].rsplit("/", 1)[1]
        props = schemas[name]["properties"]
        assert {"as_of", "earlier_as_of"} <= set(props), (path, sorted(props))
