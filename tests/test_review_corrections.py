"""Corrections (reversals negate, nothing is edited) and review before publication (保密审查)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from tests.conftest import Org, fund_entry, make_org

PAYER = {"id": "P1", "name": "示范钢铁有限公司", "type": "enterprise"}
PAYEE = {"id": "Q1", "name": "清源环保工程有限公司", "type": "enterprise"}
WITHHOLD = {
    "decision": "withhold",
    "reason": "third_party_rights",
    "legal_basis": "《政府信息公开条例》第十五条",
}
STUB_KEYS = {"log", "index", "kind", "leaf_hash", "status"}


def receipt(amount: str, code: str = "F") -> dict[str, Any]:
    return {
        "kind": "fund.receipt",
        "subject": f"fund/{code}",
        "occurred_on": "2026-03-10",
        "body": {
            "fund_code": code,
            "amount": amount,
            "payer": PAYER,
            "reference": "排征〔2026〕1号",
        },
    }


def disbursement(amount: str, project_code: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "fund_code": "F",
        "amount": amount,
        "payee": PAYEE,
        "purpose": "污染治理项目补助",
        "reference": "环拨〔2026〕7号",
    }
    if project_code:
        body["project_code"] = project_code
    return {
        "kind": "fund.disbursement",
        "subject": "fund/F",
        "occurred_on": "2026-03-20",
        "body": body,
    }


def internal_expense() -> dict[str, Any]:
    """An internal (内部公开) entry: office running costs paid from an internal fund."""
    return {**receipt("88.00", code="OFFICE"), "visibility": "internal"}


def reversal(log: str, index: int) -> dict[str, Any]:
    return {
        "kind": "correction.reversal",
        "subject": f"entry/{log}/{index}",
        "occurred_on": "2026-04-02",
        "body": {"target_log": log, "target_index": index, "reason": "金额录入错误，予以冲正"},
    }


def registered(code: str) -> dict[str, Any]:
    return {
        "kind": "project.registered",
        "subject": f"project/{code}",
        "occurred_on": "2026-02-01",
        "body": {
            "project_code": code,
            "name": "城东污水处理厂提标改造",
            "category": "污染治理",
            "location": "城东区",
            "total_investment": "5000000.00",
        },
    }


def procurement(kind: str, **body: Any) -> dict[str, Any]:
    return {
        "kind": f"procurement.{kind}",
        "subject": f"tender/{body['tender_id']}",
        "occurred_on": "2026-04-10",
        "body": body,
    }


def supplier(pid: str) -> dict[str, str]:
    return {"id": pid, "name": f"供应商 {pid}", "type": "enterprise"}


TENDER = procurement(
    "tender",
    tender_id="T-1",
    title="监测设备采购",
    method="open",
    value={"amount": "100000.00"},
    period={"start": "2026-04-01", "end": "2026-04-30"},
    buyer={"id": "EPB", "name": "示范市生态环境局", "type": "government"},
)


def bid(pid: str) -> dict[str, Any]:
    return procurement(
        "bid", tender_id="T-1", bidder=supplier(pid), amount="90000.00", submitted_on="2026-04-10"
    )


def award(pid: str) -> dict[str, Any]:
    return procurement(
        "award", tender_id="T-1", supplier=supplier(pid), amount="90000.00", date="2026-05-01"
    )


def contract(pid: str) -> dict[str, Any]:
    return procurement(
        "contract",
        tender_id="T-1",
        contract_id="HT-1",
        supplier=supplier(pid),
        amount="90000.00",
        signed_on="2026-05-10",
    )


async def post(client: Any, org: Org, e: dict[str, Any], role: str = "clerk") -> Any:
    return await client.post(f"/api/v1/orgs/{org.code}/entries", json=e, headers=org.auth(role))


async def posted(client: Any, org: Org, e: dict[str, Any], role: str = "clerk") -> int:
    r = await post(client, org, e, role)
    assert r.status_code == 201, r.text
    index: int = r.json()["index"]
    return index


async def review(
    client: Any, org: Org, index: int, decision: dict[str, Any], role: str = "reviewer"
) -> Any:
    return await client.post(
        f"/api/v1/orgs/{org.code}/logs/2026/entries/{index}/review",
        json=decision,
        headers=org.auth(role),
    )


APPROVE = {"decision": "approve"}


async def get_entry(client: Any, org: Org, index: int, role: str | None = None) -> dict[str, Any]:
    headers = org.auth(role) if role else {}
    r = await client.get(f"/api/v1/orgs/{org.code}/logs/2026/entries/{index}", headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def with_fund(client: Any, org: Org, balance: str | None = "1000.00") -> None:
    """Open fund F (and the internal fund OFFICE) and, if given, receive ``balance``."""
    await posted(client, org, fund_entry("F"))
    await posted(client, org, {**fund_entry("OFFICE"), "visibility": "internal"})
    if balance:
        await posted(client, org, receipt(balance))


async def leaf_count(pool: asyncpg.Pool, org: Org) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code)
    return n


async def balance(pool: asyncpg.Pool, org: Org, code: str = "F") -> int:
    fen: int = await pool.fetchval(
        "SELECT balance_fen FROM funds WHERE org = $1 AND fund_code = $2", org.code, code
    )
    return fen


# --- corrections ------------------------------------------------------------------------


async def test_reversal_negates_the_target_postings(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await with_fund(client, org, balance=None)
    target = await posted(client, org, receipt("120.00"))
    rev = await posted(client, org, reversal(f"{org.code}/2026", target))
    rows = await pool.fetch(
        """SELECT idx, account, amount_fen, flow FROM postings
           WHERE org = $1 AND idx = ANY($2::bigint[]) ORDER BY idx, line""",
        org.code,
        [target, rev],
    )
    original = [(r["account"], r["amount_fen"], r["flow"]) for r in rows if r["idx"] == target]
    negated = [(r["account"], r["amount_fen"], r["flow"]) for r in rows if r["idx"] == rev]
    assert original == [("fund:F", 12000, "receipt"), ("payer:P1", -12000, "receipt")]
    assert negated == [(a, -amount, flow) for a, amount, flow in original]
    assert await balance(pool, org) == 0


async def test_reversed_entry_stays_visible_with_a_link_to_its_reversal(
    client: Any, org: Org
) -> None:
    await with_fund(client, org, balance=None)
    target = await posted(client, org, receipt("120.00"))
    rev = await posted(client, org, reversal(f"{org.code}/2026", target))
    view = await get_entry(client, org, target, role="auditor")
    assert view["kind"] == "fund.receipt"
    assert view["body"]["amount"] == "120.00"
    assert view["reversed_by"] == f"{org.code}/2026#{rev}"
    assert "reversed_by" not in await get_entry(client, org, rev, role="auditor")


async def test_second_reversal_of_the_same_entry_is_409(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await with_fund(client, org, balance=None)
    target = await posted(client, org, receipt("120.00"))
    await posted(client, org, reversal(f"{org.code}/2026", target))
    before = await leaf_count(pool, org)
    r = await post(client, org, reversal(f"{org.code}/2026", target))
    assert r.status_code == 409, r.text
    assert await leaf_count(pool, org) == before
    assert await balance(pool, org) == 0


async def test_reversing_a_non_reversible_kind_is_422(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await with_fund(client, org, balance=None)
    r = await post(client, org, reversal(f"{org.code}/2026", 0))  # the fund.opened entry
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["errors"][0]["path"] == "$.body.target_index"
    assert "fund.opened" in problem["errors"][0]["message"]
    assert await leaf_count(pool, org) == 2


async def test_reversing_a_reversal_is_422(client: Any, org: Org) -> None:
    await with_fund(client, org, balance=None)
    target = await posted(client, org, receipt("5.00"))
    rev = await posted(client, org, reversal(f"{org.code}/2026", target))
    r = await post(client, org, reversal(f"{org.code}/2026", rev))
    assert r.status_code == 422, r.text


async def test_reversing_a_missing_entry_is_422(client: Any, org: Org) -> None:
    await with_fund(client, org)
    r = await post(client, org, reversal(f"{org.code}/2026", 999))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "$.body.target_index"


async def test_reversing_into_another_orgs_log_is_422(client: Any, org: Org) -> None:
    other = await make_org()
    await with_fund(client, other)
    await with_fund(client, org)
    r = await post(client, org, reversal(f"{other.code}/2026", 2))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "$.body.target_log"


async def test_reversing_a_disbursement_restores_fund_and_project(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await with_fund(client, org, balance="1000.00")
    await posted(client, org, registered("PRJ-1"))
    target = await posted(client, org, disbursement("400.00", project_code="PRJ-1"))
    assert await balance(pool, org) == 60000
    await posted(client, org, reversal(f"{org.code}/2026", target))
    assert await balance(pool, org) == 100000
    r = await client.get(f"/api/v1/orgs/{org.code}/projects/PRJ-1", headers=org.auth())
    assert r.json()["disbursed"] == "0.00"


async def test_reversing_a_receipt_already_spent_is_409(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await with_fund(client, org, balance=None)
    target = await posted(client, org, receipt("100.00"))
    await posted(client, org, disbursement("80.00"))
    r = await post(client, org, reversal(f"{org.code}/2026", target))
    assert r.status_code == 409, r.text
    assert r.json()["balance"] == "20.00"
    assert r.json()["shortfall"] == "80.00"
    assert await balance(pool, org) == 2000


async def test_reversing_an_award_allows_a_new_award(client: Any, org: Org) -> None:
    for e in (TENDER, bid("S1"), bid("S2")):
        await posted(client, org, e)
    first = await posted(client, org, award("S1"))
    assert (await post(client, org, award("S2"))).status_code == 409
    await posted(client, org, reversal(f"{org.code}/2026", first))
    assert (await post(client, org, award("S2"))).status_code == 201


async def test_reversing_an_award_with_a_contract_is_409(client: Any, org: Org) -> None:
    for e in (TENDER, bid("S1")):
        await posted(client, org, e)
    awarded = await posted(client, org, award("S1"))
    await posted(client, org, contract("S1"))
    r = await post(client, org, reversal(f"{org.code}/2026", awarded))
    assert r.status_code == 409, r.text


# --- review -----------------------------------------------------------------------------


async def test_reviewer_approves_a_pending_entry(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    await with_fund(client, org)
    r = await review(client, org, 2, APPROVE)
    assert r.status_code == 201, r.text
    receipt_out = r.json()
    assert receipt_out["log"] == f"{org.code}/2026"
    kind = await pool.fetchval(
        "SELECT kind FROM leaves WHERE org = $1 AND idx = $2", org.code, receipt_out["index"]
    )
    assert kind == "review.approved"
    assert (await get_entry(client, org, 2, role="auditor"))["status"] == "approved"


async def test_reviewer_withholds_with_reason_and_legal_basis(client: Any, org: Org) -> None:
    await with_fund(client, org)
    r = await review(client, org, 2, WITHHOLD)
    assert r.status_code == 201, r.text
    view = await get_entry(client, org, 2, role="auditor")
    assert view["status"] == "withheld"
    assert view["reason"] == "third_party_rights"
    assert view["legal_basis"] == "《政府信息公开条例》第十五条"


async def test_admin_may_review_what_someone_else_posted(client: Any, org: Org) -> None:
    await with_fund(client, org)
    assert (await review(client, org, 2, APPROVE, role="admin")).status_code == 201


async def test_reviewer_who_posted_the_entry_is_403(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await with_fund(client, org, balance=None)
    index = await posted(client, org, receipt("100.00"), role="admin")
    before = await leaf_count(pool, org)
    r = await review(client, org, index, APPROVE, role="admin")
    assert r.status_code == 403, r.text
    assert "poster" in r.json()["detail"]
    assert await leaf_count(pool, org) == before
    assert (await get_entry(client, org, index, role="admin"))["status"] == "pending"


@pytest.mark.parametrize("role", ["clerk", "auditor"])
async def test_only_reviewers_may_review(
    client: Any, org: Org, pool: asyncpg.Pool, role: str
) -> None:
    await with_fund(client, org)
    before = await leaf_count(pool, org)
    r = await review(client, org, 2, APPROVE, role=role)
    assert r.status_code == 403, r.text
    assert await leaf_count(pool, org) == before


async def test_reviewer_of_another_org_is_403(client: Any, org: Org) -> None:
    other = await make_org()
    await with_fund(client, org)
    r = await client.post(
        f"/api/v1/orgs/{org.code}/logs/2026/entries/2/review",
        json=APPROVE,
        headers=other.auth("reviewer"),
    )
    assert r.status_code == 403, r.text


async def test_review_without_a_token_is_401(client: Any, org: Org) -> None:
    await with_fund(client, org)
    r = await client.post(f"/api/v1/orgs/{org.code}/logs/2026/entries/2/review", json=APPROVE)
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("second", [APPROVE, WITHHOLD], ids=["approve", "withhold"])
async def test_second_review_is_409(
    client: Any, org: Org, pool: asyncpg.Pool, second: dict[str, Any]
) -> None:
    await with_fund(client, org)
    assert (await review(client, org, 2, APPROVE)).status_code == 201
    before = await leaf_count(pool, org)
    r = await review(client, org, 2, second, role="admin")
    assert r.status_code == 409, r.text
    assert await leaf_count(pool, org) == before


async def test_reviewing_an_internal_entry_is_409(client: Any, org: Org) -> None:
    await with_fund(client, org)
    index = await posted(client, org, internal_expense())
    r = await review(client, org, index, APPROVE)
    assert r.status_code == 409, r.text
    assert "internal" in r.json()["detail"]


async def test_reviewing_a_review_entry_is_409(client: Any, org: Org) -> None:
    await with_fund(client, org)
    first = (await review(client, org, 2, APPROVE)).json()
    r = await review(client, org, first["index"], APPROVE, role="admin")
    assert r.status_code == 409, r.text


async def test_reviewing_a_missing_entry_is_404(client: Any, org: Org) -> None:
    await with_fund(client, org)
    r = await review(client, org, 999, APPROVE)
    assert r.status_code == 404, r.text
    assert r.json()["type"] == "urn:gongkai:problem:not-found"


async def test_withholding_without_legal_basis_is_422(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await with_fund(client, org)
    before = await leaf_count(pool, org)
    r = await review(client, org, 2, {"decision": "withhold", "reason": "third_party_rights"})
    assert r.status_code == 422, r.text
    assert [e["path"] for e in r.json()["errors"]] == ["$.legal_basis"]
    assert await leaf_count(pool, org) == before


async def test_withholding_with_an_unknown_reason_is_422(client: Any, org: Org) -> None:
    await with_fund(client, org)
    r = await review(client, org, 2, {**WITHHOLD, "reason": "embarrassing"})
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert [e["path"] for e in errors] == ["$.reason"]
    assert "third_party_rights" in errors[0]["message"]


async def test_approval_with_a_reason_is_422(client: Any, org: Org) -> None:
    await with_fund(client, org)
    r = await review(client, org, 2, {"decision": "approve", "reason": "state_secret"})
    assert r.status_code == 422, r.text


# --- what the public and staff see ------------------------------------------------------


async def test_public_sees_the_body_of_an_approved_entry(client: Any, org: Org) -> None:
    await with_fund(client, org)
    await review(client, org, 2, APPROVE)
    view = await get_entry(client, org, 2)
    assert view["status"] == "approved"
    assert view["body"]["amount"] == "1000.00"
    assert view["leaf_bytes"]


async def test_public_sees_a_pending_entry_as_a_stub(client: Any, org: Org) -> None:
    await with_fund(client, org)
    view = await get_entry(client, org, 2)
    assert set(view) == STUB_KEYS
    assert view["status"] == "pending"
    assert view["kind"] == "fund.receipt"
    assert view["log"] == f"{org.code}/2026" and view["index"] == 2


async def test_public_sees_a_withheld_entry_as_a_stub_with_its_reason(
    client: Any, org: Org
) -> None:
    await with_fund(client, org)
    await review(client, org, 2, WITHHOLD)
    view = await get_entry(client, org, 2)
    assert set(view) == STUB_KEYS | {"reason"}
    assert view["status"] == "withheld"
    assert view["reason"] == "third_party_rights"


async def test_public_never_sees_the_body_of_an_internal_entry(client: Any, org: Org) -> None:
    await with_fund(client, org)
    index = await posted(client, org, internal_expense())
    view = await get_entry(client, org, index)
    assert set(view) == STUB_KEYS
    assert view["status"] == "internal"
    listed = await client.get(f"/api/v1/orgs/{org.code}/entries")
    for item in listed.json()["items"]:
        if item["status"] == "internal":
            assert "body" not in item


async def test_public_list_shows_bodies_of_approved_entries_only(client: Any, org: Org) -> None:
    await with_fund(client, org)
    await posted(client, org, receipt("1.00"))  # 3, stays pending
    await posted(client, org, receipt("2.00"))  # 4, withheld
    await review(client, org, 0, APPROVE)
    await review(client, org, 2, APPROVE)
    await review(client, org, 4, WITHHOLD)
    r = await client.get(f"/api/v1/orgs/{org.code}/entries", params={"kind": "fund.receipt"})
    items = {i["index"]: i for i in r.json()["items"]}
    assert sorted(items) == [2, 3, 4]
    assert items[2]["body"]["amount"] == "1000.00"
    assert set(items[3]) == STUB_KEYS and items[3]["status"] == "pending"
    assert set(items[4]) == STUB_KEYS | {"reason"} and items[4]["status"] == "withheld"


async def test_staff_see_every_entry_with_its_status(client: Any, org: Org) -> None:
    await with_fund(client, org)
    await posted(client, org, internal_expense())  # 3
    await posted(client, org, receipt("2.00"))  # 4
    await review(client, org, 2, APPROVE)
    await review(client, org, 4, WITHHOLD)
    r = await client.get(
        f"/api/v1/orgs/{org.code}/entries", params={"year": 2026}, headers=org.auth("auditor")
    )
    items = {i["index"]: i for i in r.json()["items"]}
    assert {i: items[i]["status"] for i in range(5)} == {
        0: "pending",
        1: "internal",
        2: "approved",
        3: "internal",
        4: "withheld",
    }
    assert all("body" in item for item in items.values())
    assert items[4]["legal_basis"] == "《政府信息公开条例》第十五条"


async def test_a_token_of_another_org_sees_only_stubs(client: Any, org: Org) -> None:
    other = await make_org()
    await with_fund(client, org)
    view = (
        await client.get(
            f"/api/v1/orgs/{org.code}/logs/2026/entries/2", headers=other.auth("auditor")
        )
    ).json()
    assert set(view) == STUB_KEYS


async def test_public_fund_balance_counts_approved_entries_only(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await with_fund(client, org)
    await posted(client, org, receipt("50.00"))  # 3, pending
    url = f"/api/v1/orgs/{org.code}/funds/F"
    assert (await client.get(url)).status_code == 404  # its opening is not approved yet
    await review(client, org, 0, APPROVE)
    await review(client, org, 2, APPROVE)
    public = (await client.get(url)).json()
    assert public["balance"] == "1000.00"
    assert (await client.get(url, headers=org.auth())).json()["balance"] == "1050.00"
    n = await pool.fetchval(
        """SELECT receipts_n FROM fund_periods
           WHERE org = $1 AND fund_code = 'F' AND scope = 'public'""",
        org.code,
    )
    assert n == 1


# --- pending review -----------------------------------------------------------------------


async def test_pending_lists_unreviewed_public_entries_with_their_age(
    client: Any, org: Org
) -> None:
    await with_fund(client, org)  # 0 public, 1 internal, 2 public
    await review(client, org, 0, APPROVE)
    r = await client.get(f"/api/v1/orgs/{org.code}/review/pending", headers=org.auth("reviewer"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert [i["index"] for i in out["items"]] == [2]
    item = out["items"][0]
    assert item["log"] == f"{org.code}/2026"
    assert item["kind"] == "fund.receipt"
    assert item["actor"] == "clerk.one"
    assert item["age_working_days"] == 0
    assert item["overdue"] is False
    assert out["overdue"] == 0


async def test_entry_pending_over_20_working_days_is_overdue(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.staff
    from ledger.queries import CHINA

    await with_fund(client, org)
    today = dt.datetime.now(CHINA).date()
    monkeypatch.setattr(api.staff, "china_today", lambda: today + dt.timedelta(days=45))
    r = await client.get(f"/api/v1/orgs/{org.code}/review/pending", headers=org.auth())
    out = r.json()
    assert [i["index"] for i in out["items"]] == [0, 2]
    assert all(i["age_working_days"] > 20 and i["overdue"] for i in out["items"])
    assert out["overdue"] == 2


async def test_pending_list_needs_a_staff_token(client: Any, org: Org) -> None:
    r = await client.get(f"/api/v1/orgs/{org.code}/review/pending")
    assert r.status_code == 401


# --- kinds ------------------------------------------------------------------------------


async def test_unknown_kind_is_422_listing_the_known_kinds(client: Any, org: Org) -> None:
    r = await post(client, org, {**fund_entry("F"), "kind": "fund.lottery"})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["errors"][0]["path"] == "$.kind"
    assert "fund.receipt" in problem["known_kinds"]
    assert "correction.reversal" in problem["known_kinds"]
    assert "fund.disbursement" in problem["detail"]


async def test_review_kinds_cannot_be_posted_as_entries(client: Any, org: Org) -> None:
    await with_fund(client, org)
    e = {
        "kind": "review.approved",
        "subject": "entry/x",
        "occurred_on": "2026-03-10",
        "body": {"target_log": f"{org.code}/2026", "target_index": 2},
    }
    r = await post(client, org, e, role="admin")
    assert r.status_code == 422, r.text
    assert "review.approved" not in r.json()["known_kinds"]


async def test_pending_pages_oldest_first_and_counts_them_all(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue comes in pages (it was one answer of every pending entry: 15 MB at
    ninety thousand); ``total`` and ``overdue`` count every page's."""
    import api.staff
    from ledger.queries import CHINA

    await with_fund(client, org)  # 0 public, 1 internal, 2 public
    await post(client, org, receipt("10.00"))  # 3
    url = f"/api/v1/orgs/{org.code}/review/pending"
    seen, cursor = [], None
    while True:
        r = await client.get(url, params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                             headers=org.auth())  # fmt: skip
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == 3 and page["overdue"] == 0
        seen += [i["index"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [0, 2, 3]
    today = dt.datetime.now(CHINA).date()
    monkeypatch.setattr(api.staff, "china_today", lambda: today + dt.timedelta(days=45))
    page = (await client.get(url, params={"limit": 1}, headers=org.auth())).json()
    assert (len(page["items"]), page["total"], page["overdue"]) == (1, 3, 3)
    r = await client.get(url, params={"cursor": "!!"}, headers=org.auth())
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "query.cursor", r.text
