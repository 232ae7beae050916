"""Pollution levy: assessed vs collected per payer, with reductions and deferrals."""

from __future__ import annotations

from typing import Any

from tests.conftest import Org
from tests.test_summaries import approve, post, receipt


def assessment(payer: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "fund.levy_assessed",
        "subject": "fund/PWF",
        "occurred_on": "2026-01-10",
        "body": {
            "fund_code": "PWF",
            "payer": {"id": payer, "name": f"企业{payer}", "type": "enterprise"},
            "period": "2026",
            "amount": amount,
            "reference": f"示环核字〔2026〕{payer}号",
            **extra,
        },
    }


async def _levy_fund(client: Any, org: Org) -> list[dict[str, Any]]:
    opened = {
        "kind": "fund.opened",
        "subject": "fund/PWF",
        "occurred_on": "2026-01-02",
        "body": {"fund_code": "PWF", "name": "排污费专项资金", "category": "pollution_levy"},
    }
    return await post(client, org, [opened])


async def test_assessed_reduced_collected_outstanding_per_payer(client: Any, org: Org) -> None:
    await _levy_fund(client, org)
    await post(
        client,
        org,
        [
            assessment("P1", "1000.00", reduction="100.00", reduction_basis="减免依据"),
            assessment("P2", "500.00", deferred_until="2026-12-31"),
            receipt("600.00", "2026-03-01"),  # payer P1
        ],
    )
    r = await client.get(
        f"/api/v1/orgs/{org.code}/funds/PWF/payers?year=2026", headers=org.auth("auditor")
    )
    assert r.status_code == 200, r.text
    p1, p2 = r.json()["payers"]
    # Like every summary, it says what it was computed from (SPEC §6).
    assert r.json()["as_of"]["log"] == f"{org.code}/2026"
    assert r.json()["as_of"]["tree_size"] == 4
    assert r.json()["as_of"]["checkpoint"].startswith(f"test.gongkai.local/{org.code}/2026\n4\n")
    assert r.json()["scope"] == "all"
    assert (p1["assessed"], p1["reduced"], p1["due"], p1["collected"], p1["outstanding"]) == (
        "1000.00", "100.00", "900.00", "600.00", "300.00",
    )  # fmt: skip
    assert (p2["outstanding"], p2["deferred_until"]) == ("500.00", "2026-12-31")


async def test_public_sees_approved_assessments_only(client: Any, org: Org) -> None:
    opened = await _levy_fund(client, org)
    await approve(client, org, opened[0])
    rs = await post(client, org, [assessment("P1", "1000.00"), assessment("P2", "300.00")])
    await approve(client, org, rs[0])
    r = await client.get(f"/api/v1/orgs/{org.code}/funds/PWF/payers?year=2026")
    assert [p["payer_id"] for p in r.json()["payers"]] == ["P1"]
    assert r.json()["scope"] == "public"


async def test_reduction_beyond_the_assessment_or_without_basis_is_422(
    client: Any, org: Org
) -> None:
    await _levy_fund(client, org)
    url = f"/api/v1/orgs/{org.code}/entries"
    r = await client.post(
        url, json=assessment("P1", "100.00", reduction="200.00", reduction_basis="x"),
        headers=org.auth(),
    )  # fmt: skip
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "$.body.reduction"
    r = await client.post(
        url, json=assessment("P1", "100.00", reduction="20.00"), headers=org.auth()
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "$.body.reduction_basis"


async def test_assessment_needs_a_pollution_levy_fund(client: Any, org: Org) -> None:
    other = {
        "kind": "fund.opened",
        "subject": "fund/PWF",
        "occurred_on": "2026-01-02",
        "body": {"fund_code": "PWF", "name": "补助资金", "category": "subsidy"},
    }
    await post(client, org, [other])
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries", json=assessment("P1", "100.00"), headers=org.auth()
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "$.body.fund_code"
