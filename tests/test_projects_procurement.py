"""Projects (registration, approvals, legal status transitions) and procurement
(tender → bids → award → contract) and the things that cannot happen."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.conftest import Org

BUYER = {"id": "EPB", "name": "示范市生态环境局", "type": "government"}


def party(pid: str) -> dict[str, str]:
    return {"id": pid, "name": f"供应商 {pid} 有限公司", "type": "enterprise"}


def entry(kind: str, subject: str, on: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "subject": subject, "occurred_on": on, "body": body}


def registered(code: str, total: str = "5000000.00") -> dict[str, Any]:
    return entry(
        "project.registered",
        f"project/{code}",
        "2026-02-01",
        {
            "project_code": code,
            "name": "城东污水处理厂提标改造工程",
            "category": "污染治理",
            "location": "城东区滨江路",
            "total_investment": total,
            "funding": [{"source": "排污费专项", "amount": total}],
        },
    )


def status(code: str, value: str) -> dict[str, Any]:
    return entry(
        "project.status", f"project/{code}", "2026-03-01", {"project_code": code, "status": value}
    )


def approval(
    code: str, approval_type: str = "eia", doc: str = "环审〔2026〕12号"
) -> dict[str, Any]:
    return entry(
        "project.approval",
        f"project/{code}",
        "2026-02-20",
        {
            "project_code": code,
            "approval_type": approval_type,
            "document_no": doc,
            "authority": "示范市生态环境局",
            "decision": "同意建设",
            "decided_on": "2026-02-18",
        },
    )


def budget_amended(code: str, total: str) -> dict[str, Any]:
    return entry(
        "project.budget_amended",
        f"project/{code}",
        "2026-05-01",
        {"project_code": code, "total_investment": total, "reason": "设计变更，增加深度处理单元"},
    )


def tender(
    tid: str,
    *,
    method: str = "open",
    start: str = "2026-04-01",
    end: str = "2026-04-30",
    project_code: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tender_id": tid,
        "title": "污水处理设备采购",
        "method": method,
        "value": {"amount": "800000.00", "currency": "CNY"},
        "period": {"start": start, "end": end},
        "buyer": BUYER,
    }
    if project_code is not None:
        body["project_code"] = project_code
    return entry("procurement.tender", f"tender/{tid}", "2026-03-25", body)


def bid(tid: str, bidder: str, on: str = "2026-04-10", amount: str = "780000.00") -> dict[str, Any]:
    return entry(
        "procurement.bid",
        f"tender/{tid}",
        on,
        {"tender_id": tid, "bidder": party(bidder), "amount": amount, "submitted_on": on},
    )


def award(tid: str, supplier: str, amount: str = "760000.00") -> dict[str, Any]:
    return entry(
        "procurement.award",
        f"tender/{tid}",
        "2026-05-08",
        {"tender_id": tid, "supplier": party(supplier), "amount": amount, "date": "2026-05-08"},
    )


def contract(tid: str, cid: str, supplier: str) -> dict[str, Any]:
    return entry(
        "procurement.contract",
        f"tender/{tid}",
        "2026-05-20",
        {
            "tender_id": tid,
            "contract_id": cid,
            "supplier": party(supplier),
            "amount": "760000.00",
            "signed_on": "2026-05-20",
        },
    )


def cancelled(tid: str) -> dict[str, Any]:
    return entry(
        "procurement.cancelled",
        f"tender/{tid}",
        "2026-04-15",
        {"tender_id": tid, "reason": "采购需求发生重大变化"},
    )


def amendment(tid: str, changes: dict[str, Any]) -> dict[str, Any]:
    return entry(
        "procurement.amendment",
        f"tender/{tid}",
        "2026-04-20",
        {"tender_id": tid, "rationale": "延长投标截止时间", "changes": changes},
    )


async def post(client: Any, org: Org, e: dict[str, Any], role: str = "clerk") -> Any:
    return await client.post(f"/api/v1/orgs/{org.code}/entries", json=e, headers=org.auth(role))


async def posted(client: Any, org: Org, *entries: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        r = await post(client, org, e)
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


async def project_view(client: Any, org: Org, code: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/orgs/{org.code}/projects/{code}", headers=org.auth("auditor"))
    assert r.status_code == 200, r.text
    view: dict[str, Any] = r.json()
    return view


async def leaf_count(pool: asyncpg.Pool, org: Org) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code)
    return n


# --- projects ---------------------------------------------------------------------------


async def test_registered_project_starts_planned(client: Any, org: Org) -> None:
    await posted(client, org, registered("PRJ-1"))
    view = await project_view(client, org, "PRJ-1")
    assert view["status"] == "planned"
    assert view["budget"] == "5000000.00"
    assert view["disbursed"] == "0.00"
    assert view["approvals"] == [] and view["tenders"] == []


async def test_duplicate_project_is_409(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    await posted(client, org, registered("PRJ-1"))
    r = await post(client, org, registered("PRJ-1"))
    assert r.status_code == 409, r.text
    assert "PRJ-1" in r.json()["detail"]
    assert await leaf_count(pool, org) == 1


async def test_legal_status_transitions_are_accepted(client: Any, org: Org) -> None:
    await posted(client, org, registered("PRJ-1"))
    for value in ("approved", "under_construction", "suspended", "under_construction"):
        await posted(client, org, status("PRJ-1", value))
    await posted(client, org, status("PRJ-1", "completed"))
    assert (await project_view(client, org, "PRJ-1"))["status"] == "completed"


async def test_illegal_status_transition_is_409_naming_the_allowed_ones(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, registered("PRJ-1"))
    r = await post(client, org, status("PRJ-1", "completed"))
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["allowed"] == ["approved", "cancelled"]
    assert "approved" in problem["detail"] and "cancelled" in problem["detail"]
    assert problem["status"] == 409
    assert await leaf_count(pool, org) == 1
    assert (await project_view(client, org, "PRJ-1"))["status"] == "planned"


async def test_final_status_allows_no_transition(client: Any, org: Org) -> None:
    await posted(client, org, registered("PRJ-1"), status("PRJ-1", "cancelled"))
    r = await post(client, org, status("PRJ-1", "approved"))
    assert r.status_code == 409, r.text
    assert r.json()["allowed"] == []


async def test_same_status_again_is_409(client: Any, org: Org) -> None:
    await posted(client, org, registered("PRJ-1"), status("PRJ-1", "approved"))
    r = await post(client, org, status("PRJ-1", "approved"))
    assert r.status_code == 409, r.text
    assert r.json()["allowed"] == ["under_construction", "suspended", "cancelled"]


@pytest.mark.parametrize(
    "e",
    [
        status("GHOST", "approved"),
        approval("GHOST"),
        budget_amended("GHOST", "1.00"),
        tender("T-1", project_code="GHOST"),
    ],
    ids=["status", "approval", "budget_amended", "tender"],
)
async def test_unknown_project_is_422_naming_it(
    client: Any, org: Org, pool: asyncpg.Pool, e: dict[str, Any]
) -> None:
    r = await post(client, org, e)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert "GHOST" in problem["detail"]
    assert problem["errors"][0]["path"] == "$.body.project_code"
    assert await leaf_count(pool, org) == 0


async def test_budget_amendment_changes_the_budget(client: Any, org: Org) -> None:
    await posted(client, org, registered("PRJ-1"), budget_amended("PRJ-1", "6200000.00"))
    assert (await project_view(client, org, "PRJ-1"))["budget"] == "6200000.00"


async def test_project_view_shows_budget_disbursed_approvals_status_and_tenders(
    client: Any, org: Org
) -> None:
    fund = {"fund_code": "SUB", "name": "污染治理补助资金", "category": "subsidy"}
    money = {
        "fund_code": "SUB",
        "amount": "1000000.00",
        "payer": {"id": "CZJ", "name": "示范市财政局", "type": "government"},
        "reference": "财预〔2026〕3号",
    }
    pay = {
        "fund_code": "SUB",
        "amount": "300000.00",
        "payee": party("S1"),
        "project_code": "PRJ-1",
        "purpose": "提标改造工程补助（第一期）",
        "reference": "环拨〔2026〕9号",
    }
    await posted(
        client,
        org,
        registered("PRJ-1"),
        approval("PRJ-1", "site_selection", "选址〔2026〕4号"),
        approval("PRJ-1", "eia", "环审〔2026〕12号"),
        status("PRJ-1", "approved"),
        tender("T-1", project_code="PRJ-1"),
        entry("fund.opened", "fund/SUB", "2026-01-02", fund),
        entry("fund.receipt", "fund/SUB", "2026-01-10", money),
        entry("fund.disbursement", "fund/SUB", "2026-03-10", pay),
    )
    view = await project_view(client, org, "PRJ-1")
    assert view["project_code"] == "PRJ-1"
    assert view["budget"] == "5000000.00"
    assert view["disbursed"] == "300000.00"
    assert view["status"] == "approved"
    assert [a["document_no"] for a in view["approvals"]] == ["选址〔2026〕4号", "环审〔2026〕12号"]
    eia = view["approvals"][1]
    assert eia["approval_type"] == "eia"
    assert eia["authority"] == "示范市生态环境局"
    assert eia["decision"] == "同意建设"
    assert eia["decided_on"] == "2026-02-18"
    assert eia["entry"] == f"{org.code}/2026#2"
    assert view["tenders"] == [
        {"tender_id": "T-1", "title": "污水处理设备采购", "status": "active", "value": "800000.00"}
    ]


async def test_public_cannot_see_an_unreviewed_project(client: Any, org: Org) -> None:
    await posted(client, org, registered("PRJ-1"))
    r = await client.get(f"/api/v1/orgs/{org.code}/projects/PRJ-1")
    assert r.status_code == 404


# --- procurement ------------------------------------------------------------------------


async def test_tender_bids_award_contract_happy_path(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(
        client,
        org,
        tender("T-1"),
        bid("T-1", "S1", on="2026-04-01"),
        bid("T-1", "S2", on="2026-04-30"),
        award("T-1", "S2"),
        contract("T-1", "HT-2026-001", "S2"),
    )
    assert (
        await pool.fetchval(
            "SELECT status FROM tenders WHERE org = $1 AND tender_id = 'T-1'", org.code
        )
        == "contracted"
    )
    events = await pool.fetch(
        """SELECT kind, party_id, contract_id, award_index FROM procurement_events
           WHERE org = $1 AND tender_id = 'T-1' ORDER BY idx""",
        org.code,
    )
    assert [(e["kind"], e["party_id"]) for e in events] == [
        ("bid", "S1"),
        ("bid", "S2"),
        ("award", "S2"),
        ("contract", "S2"),
    ]
    assert events[3]["contract_id"] == "HT-2026-001"
    assert events[3]["award_index"] == 3


async def test_award_moves_tender_to_awarded(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    await posted(client, org, tender("T-1"), bid("T-1", "S1"), award("T-1", "S1"))
    st = await pool.fetchval(
        "SELECT status FROM tenders WHERE org = $1 AND tender_id = 'T-1'", org.code
    )
    assert st == "awarded"


@pytest.mark.parametrize("on", ["2026-03-31", "2026-05-01"], ids=["before", "after"])
async def test_bid_outside_the_tender_period_is_409(
    client: Any, org: Org, pool: asyncpg.Pool, on: str
) -> None:
    await posted(client, org, tender("T-1"))
    r = await post(client, org, bid("T-1", "S1", on=on))
    assert r.status_code == 409, r.text
    assert on in r.json()["detail"]
    assert await leaf_count(pool, org) == 1


async def test_amended_period_admits_a_later_bid(client: Any, org: Org) -> None:
    await posted(
        client,
        org,
        tender("T-1"),
        amendment("T-1", {"period": {"start": "2026-04-01", "end": "2026-05-15"}}),
        bid("T-1", "S1", on="2026-05-10"),
    )


async def test_an_amendment_may_move_only_the_period_s_end(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """``changes.period`` takes the new start, the new end, or both (a deadline
    extended is the common amendment); an empty one changes nothing and is refused."""
    await posted(
        client,
        org,
        tender("T-1"),
        amendment("T-1", {"period": {"end": "2026-05-15"}}),
        bid("T-1", "S1", on="2026-05-10"),
    )
    r = await post(client, org, bid("T-1", "S2", on="2026-05-16"))
    assert r.status_code == 409, r.text
    r = await post(client, org, amendment("T-1", {"period": {"start": "2026-06-01"}}))
    assert r.status_code == 422, r.text  # would end before it starts
    assert r.json()["errors"][0]["path"] == "$.body.changes.period"
    r = await post(client, org, amendment("T-1", {"period": {}}))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "$.body.changes.period"


async def test_bid_on_a_cancelled_tender_is_409(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    await posted(client, org, tender("T-1"), cancelled("T-1"))
    r = await post(client, org, bid("T-1", "S1"))
    assert r.status_code == 409, r.text
    assert "cancelled" in r.json()["detail"]
    assert await leaf_count(pool, org) == 2


async def test_bid_after_the_award_is_409(client: Any, org: Org) -> None:
    await posted(client, org, tender("T-1"), bid("T-1", "S1"), award("T-1", "S1"))
    r = await post(client, org, bid("T-1", "S2", on="2026-04-20"))
    assert r.status_code == 409, r.text


@pytest.mark.parametrize(
    "e",
    [bid("T-404", "S1"), award("T-404", "S1"), contract("T-404", "HT-1", "S1")],
    ids=["bid", "award", "contract"],
)
async def test_event_on_an_unknown_tender_is_422_naming_it(
    client: Any, org: Org, pool: asyncpg.Pool, e: dict[str, Any]
) -> None:
    r = await post(client, org, e)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert "T-404" in problem["detail"]
    assert problem["errors"][0]["path"] == "$.body.tender_id"
    assert await leaf_count(pool, org) == 0


async def test_award_to_a_supplier_who_did_not_bid_is_409(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, tender("T-1"), bid("T-1", "S1"), bid("T-1", "S2"))
    r = await post(client, org, award("T-1", "S9"))
    assert r.status_code == 409, r.text
    problem = r.json()
    assert "S9" in problem["detail"]
    assert problem["bidders"] == ["S1", "S2"]
    assert await leaf_count(pool, org) == 3


async def test_direct_award_without_a_bid_is_accepted(client: Any, org: Org) -> None:
    await posted(client, org, tender("T-1", method="direct"))
    r = await post(client, org, award("T-1", "S9"))
    assert r.status_code == 201, r.text


async def test_second_award_is_409(client: Any, org: Org) -> None:
    await posted(client, org, tender("T-1"), bid("T-1", "S1"), bid("T-1", "S2"), award("T-1", "S1"))
    r = await post(client, org, award("T-1", "S2"))
    assert r.status_code == 409, r.text


async def test_contract_without_an_award_is_409(client: Any, org: Org) -> None:
    await posted(client, org, tender("T-1"), bid("T-1", "S1"))
    r = await post(client, org, contract("T-1", "HT-1", "S1"))
    assert r.status_code == 409, r.text


async def test_contract_with_another_supplier_than_awarded_is_409(client: Any, org: Org) -> None:
    await posted(client, org, tender("T-1"), bid("T-1", "S1"), bid("T-1", "S2"), award("T-1", "S1"))
    r = await post(client, org, contract("T-1", "HT-1", "S2"))
    assert r.status_code == 409, r.text


async def test_second_contract_for_the_same_award_is_409(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(
        client,
        org,
        tender("T-1"),
        bid("T-1", "S1"),
        award("T-1", "S1"),
        contract("T-1", "HT-1", "S1"),
    )
    r = await post(client, org, contract("T-1", "HT-2", "S1"))
    assert r.status_code == 409, r.text
    assert "contract" in r.json()["detail"]
    assert await leaf_count(pool, org) == 4


async def test_duplicate_tender_id_is_409(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    await posted(client, org, tender("T-1"))
    r = await post(client, org, tender("T-1"))
    assert r.status_code == 409, r.text
    assert "T-1" in r.json()["detail"]
    assert await leaf_count(pool, org) == 1


async def test_tender_period_ending_before_it_starts_is_422(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    r = await post(client, org, tender("T-1", start="2026-04-30", end="2026-04-01"))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "$.body.period.end"
    assert await leaf_count(pool, org) == 0


async def test_cancelling_a_contracted_tender_is_409(client: Any, org: Org) -> None:
    await posted(
        client,
        org,
        tender("T-1"),
        bid("T-1", "S1"),
        award("T-1", "S1"),
        contract("T-1", "HT-1", "S1"),
    )
    r = await post(client, org, cancelled("T-1"))
    assert r.status_code == 409, r.text


async def test_a_batch_sees_its_own_tender(client: Any, org: Org) -> None:
    entries = [tender("T-1"), bid("T-1", "S1"), award("T-1", "S1"), contract("T-1", "HT", "S1")]
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 201, r.text
    assert [x["index"] for x in r.json()["receipts"]] == [0, 1, 2, 3]


async def test_a_refused_entry_in_a_batch_is_named_and_writes_nothing(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    entries = [tender("T-1"), bid("T-1", "S1"), award("T-1", "S9")]
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 409, r.text
    assert r.json()["entry"] == 2
    assert await leaf_count(pool, org) == 0


async def test_public_project_view_counts_approved_disbursements_only(
    client: Any, org: Org
) -> None:
    fund = {"fund_code": "SUB", "name": "污染治理补助资金", "category": "subsidy"}
    money = {
        "fund_code": "SUB",
        "amount": "1000.00",
        "payer": {"id": "CZJ", "name": "示范市财政局", "type": "government"},
        "reference": "财预〔2026〕3号",
    }

    def pay(amount: str) -> dict[str, Any]:
        body = {
            "fund_code": "SUB",
            "amount": amount,
            "payee": party("S1"),
            "project_code": "PRJ-1",
            "purpose": "工程补助",
            "reference": "环拨〔2026〕9号",
        }
        return entry("fund.disbursement", "fund/SUB", "2026-03-10", body)

    receipts = await posted(
        client,
        org,
        registered("PRJ-1"),
        entry("fund.opened", "fund/SUB", "2026-01-02", fund),
        entry("fund.receipt", "fund/SUB", "2026-01-10", money),
        pay("300.00"),
        pay("200.00"),
    )
    for i in (receipts[0]["index"], receipts[3]["index"]):
        r = await client.post(
            f"/api/v1/orgs/{org.code}/logs/2026/entries/{i}/review",
            json={"decision": "approve"},
            headers=org.auth("reviewer"),
        )
        assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/orgs/{org.code}/projects/PRJ-1")
    assert r.status_code == 200, r.text
    assert r.json()["disbursed"] == "300.00"
    assert (await project_view(client, org, "PRJ-1"))["disbursed"] == "500.00"
