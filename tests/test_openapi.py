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
