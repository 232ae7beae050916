"""Fund and procurement summaries: as posted, stated as_of a signed tree, public vs staff."""

from __future__ import annotations

from typing import Any

import asyncpg

from ledger.checkpoint import NoteVerifier
from ledger.tree import root_from_leaf_hashes
from tests.conftest import Org


def receipt(amount: str, on: str, fund: str = "PWF") -> dict[str, Any]:
    return {
        "kind": "fund.receipt",
        "subject": f"fund/{fund}",
        "occurred_on": on,
        "body": {
            "fund_code": fund,
            "amount": amount,
            "payer": {"id": "P1", "name": "示范钢铁有限公司", "type": "enterprise"},
            "reference": "排征字〔2026〕1号",
        },
    }


def disbursement(amount: str, on: str, fund: str = "PWF") -> dict[str, Any]:
    return {
        "kind": "fund.disbursement",
        "subject": f"fund/{fund}",
        "occurred_on": on,
        "body": {
            "fund_code": fund,
            "amount": amount,
            "payee": {"id": "Q1", "name": "示范环保工程有限公司", "type": "enterprise"},
            "purpose": "污染治理项目补助",
            "reference": "示环补〔2026〕1号",
        },
    }


async def post(client: Any, org: Org, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 201, r.text
    return list(r.json()["receipts"])


async def approve(client: Any, org: Org, receipt: dict[str, Any]) -> None:
    year = receipt["log"].split("/")[1]
    r = await client.post(
        f"/api/v1/orgs/{org.code}/logs/{year}/entries/{receipt['index']}/review",
        json={"decision": "approve"},
        headers=org.auth("reviewer"),
    )
    assert r.status_code == 201, r.text


async def withhold(client: Any, org: Org, receipt: dict[str, Any]) -> None:
    year = receipt["log"].split("/")[1]
    r = await client.post(
        f"/api/v1/orgs/{org.code}/logs/{year}/entries/{receipt['index']}/review",
        json={"decision": "withhold", "reason": "third_party_rights", "legal_basis": "第十五条"},
        headers=org.auth("reviewer"),
    )
    assert r.status_code == 201, r.text


async def _books(client: Any, org: Org) -> list[dict[str, Any]]:
    return await post(
        client,
        org,
        [
            {
                "kind": "fund.opened",
                "subject": "fund/PWF",
                "occurred_on": "2026-01-02",
                "body": {
                    "fund_code": "PWF",
                    "name": "排污费专项资金",
                    "category": "pollution_levy",
                },
            },
            {
                "kind": "fund.target_set",
                "subject": "fund/PWF",
                "occurred_on": "2026-01-02",
                "body": {
                    "fund_code": "PWF",
                    "year": 2026,
                    "direction": "collection",
                    "amount": "1000.00",
                },
            },
            receipt("2025.50", "2025-12-20"),
            receipt("300.00", "2026-01-15"),
            receipt("200.00", "2026-02-10"),
            receipt("700.00", "2026-04-01"),
            disbursement("150.25", "2026-04-20"),
        ],
    )


async def test_staff_summary_by_quarter_from_the_books(client: Any, org: Org) -> None:
    await _books(client, org)
    r = await client.get(
        f"/api/v1/orgs/{org.code}/funds/PWF/summary?year=2026&period=quarter",
        headers=org.auth("auditor"),
    )
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["scope"] == "all"
    q1, q2, _q3, q4 = s["rows"]
    assert q1 == {
        "period": "2026-Q1",
        "opening": "2025.50",
        "receipts": "500.00",
        "disbursements": "0.00",
        "closing": "2525.50",
        "target": "1000.00",
        "target_ratio": "0.5000",
    }
    assert (q2["receipts"], q2["disbursements"], q2["closing"]) == ("700.00", "150.25", "3075.25")
    assert q2["target_ratio"] == "1.2000"
    assert q4["closing"] == "3075.25"


async def test_summary_as_of_names_a_signed_tree_of_the_year(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await _books(client, org)
    r = await client.get(
        f"/api/v1/orgs/{org.code}/funds/PWF/summary?year=2026", headers=org.auth("auditor")
    )
    as_of = r.json()["as_of"]
    assert as_of["log"] == f"{org.code}/2026"
    assert as_of["tree_size"] == 7  # year.opened + six 2026 entries
    vkey = (await client.get("/api/v1/vkey")).text.strip()
    cp = NoteVerifier.from_vkey(vkey).verify(as_of["checkpoint"])
    assert cp.size == 7 and cp.root.hex() == as_of["root"]
    hashes = await pool.fetch(
        "SELECT leaf_hash FROM leaves WHERE org = $1 AND year = 2026 ORDER BY idx", org.code
    )
    assert root_from_leaf_hashes([bytes(h["leaf_hash"]) for h in hashes]) == cp.root


async def test_public_summary_counts_approved_amounts_and_pending_withheld(
    client: Any, org: Org
) -> None:
    receipts = await _books(client, org)
    for r in receipts[:2]:
        await approve(client, org, r)  # fund.opened and target
    await approve(client, org, receipts[3])  # 300.00 in January
    await withhold(client, org, receipts[4])  # 200.00 in February
    r = await client.get(f"/api/v1/orgs/{org.code}/funds/PWF/summary?year=2026&period=month")
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["scope"] == "public"
    jan, feb, _, apr = s["rows"][:4]
    assert (jan["receipts"], jan["pending"], jan["withheld"]) == ("300.00", 0, 0)
    assert (feb["receipts"], feb["pending"], feb["withheld"]) == ("0.00", 0, 1)
    assert (apr["receipts"], apr["disbursements"], apr["pending"]) == ("0.00", "0.00", 2)
    assert jan["opening"] == "0.00"  # the 2025 receipt is still pending


async def test_unknown_fund_summary_is_404_and_until_before_since_422(
    client: Any, org: Org
) -> None:
    r = await client.get(f"/api/v1/orgs/{org.code}/funds/NOPE/summary?year=2026")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.get(f"/api/v1/orgs/{org.code}/entries?since=2026-03-01&until=2026-02-01")
    assert r.status_code == 422


async def test_limit_out_of_range_and_bad_cursor_are_422(client: Any, org: Org) -> None:
    r = await client.get(f"/api/v1/orgs/{org.code}/entries?limit=1001")
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "query.limit"
    r = await client.get(f"/api/v1/orgs/{org.code}/entries?cursor=%%%")
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "query.cursor"
    r = await client.get("/api/v1/orgs/no-such-org/entries")
    assert r.status_code == 404


async def test_keyset_pages_cover_every_entry_once(client: Any, org: Org) -> None:
    await _books(client, org)
    seen, cursor = [], None
    while True:
        url = f"/api/v1/orgs/{org.code}/entries?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=org.auth("auditor"))).json()
        seen += [(i["log"], i["index"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 8  # 1 in 2025, year.opened + 6 in 2026


async def test_csv_and_ndjson_stream_every_row(client: Any, org: Org) -> None:
    await _books(client, org)
    r = await client.get(f"/api/v1/orgs/{org.code}/entries?format=ndjson", headers=org.auth())
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = r.text.strip().split("\n")
    assert len(lines) == 8
    r = await client.get(f"/api/v1/orgs/{org.code}/entries?format=csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = r.text.strip().split("\n")
    assert rows[0].startswith("log,index,kind,status")
    assert len(rows) == 9
    assert "示范钢铁" not in r.text  # nothing approved yet: stubs only


async def test_procurement_summary(client: Any, org: Org) -> None:
    def party(pid: str) -> dict[str, str]:
        return {"id": pid, "name": f"公司{pid}", "type": "enterprise"}

    tender = {
        "kind": "procurement.tender",
        "subject": "tender/T1",
        "occurred_on": "2026-03-01",
        "body": {
            "tender_id": "T1",
            "title": "水质在线监测设备采购",
            "method": "open",
            "value": {"amount": "100000.00"},
            "period": {"start": "2026-03-01", "end": "2026-03-21"},
            "buyer": party("B"),
        },
    }
    bids = [
        {
            "kind": "procurement.bid",
            "subject": "tender/T1",
            "occurred_on": "2026-03-05",
            "body": {
                "tender_id": "T1",
                "bidder": party(p),
                "amount": a,
                "submitted_on": "2026-03-05",
            },
        }
        for p, a in (("S1", "95000.00"), ("S2", "91000.00"))
    ]
    award = {
        "kind": "procurement.award",
        "subject": "tender/T1",
        "occurred_on": "2026-03-31",
        "body": {"tender_id": "T1", "supplier": party("S2"), "amount": "91000.00",
                 "date": "2026-03-31"},
    }  # fmt: skip
    await post(client, org, [tender, *bids, award])
    r = await client.get(
        f"/api/v1/orgs/{org.code}/procurement/summary?year=2026", headers=org.auth("auditor")
    )
    s = r.json()
    assert (s["tenders"], s["awarded"], s["awarded_total"]) == (1, 1, "91000.00")
    assert (s["mean_bidders"], s["single_bidder_tenders"], s["median_days_to_award"]) == (
        "2.00",
        0,
        "30",
    )
    public = (await client.get(f"/api/v1/orgs/{org.code}/procurement/summary?year=2026")).json()
    assert (public["tenders"], public["pending"]) == (0, 1)


async def test_keyset_pages_with_a_year_filter_stay_in_that_year(client: Any, org: Org) -> None:
    await _books(client, org)
    seen, cursor = [], None
    while True:
        url = f"/api/v1/orgs/{org.code}/entries?year=2026&limit=2"
        url += f"&cursor={cursor}" if cursor else ""
        page = (await client.get(url, headers=org.auth("auditor"))).json()
        seen += [(i["log"], i["index"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(f"{org.code}/2026", i) for i in range(7)]
    # A cursor from 2025 with a 2026 filter starts at the year's first entry.
    from ledger.queries import encode_cursor

    url = f"/api/v1/orgs/{org.code}/entries?year=2026&limit=3&cursor={encode_cursor(2025, 0)}"
    page = (await client.get(url, headers=org.auth("auditor"))).json()
    assert [i["index"] for i in page["items"]] == [0, 1, 2]


async def _assert_heads(client: Any, pool: asyncpg.Pool, org: Org, heads: list[Any]) -> None:
    """Each head is a signed tree of its log, at the log's size when it was read."""
    vkey = (await client.get("/api/v1/vkey")).text.strip()
    for head in heads:
        year = int(head["log"].split("/")[1])
        cp = NoteVerifier.from_vkey(vkey).verify(head["checkpoint"])
        assert (cp.size, cp.root.hex()) == (head["tree_size"], head["root"])
        hashes = await pool.fetch(
            "SELECT leaf_hash FROM leaves WHERE org = $1 AND year = $2 AND idx < $3 ORDER BY idx",
            org.code, year, head["tree_size"],
        )  # fmt: skip
        assert root_from_leaf_hashes([bytes(h["leaf_hash"]) for h in hashes]) == cp.root


async def test_fund_and_project_state_the_heads_of_every_log_they_sum(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """A balance sums every year: it names the newest log's head and each earlier one."""
    opened = {
        "kind": "fund.opened",
        "subject": "fund/PWF",
        "occurred_on": "2025-01-02",
        "body": {"fund_code": "PWF", "name": "排污费专项资金", "category": "pollution_levy"},
    }
    project = {
        "kind": "project.registered",
        "subject": "project/PRJ-1",
        "occurred_on": "2025-02-01",
        "body": {
            "project_code": "PRJ-1", "name": "城东污水处理厂提标改造工程", "category": "污染治理",
            "location": "城东区", "total_investment": "900.00",
            "funding": [{"source": "排污费专项", "amount": "900.00"}],
        },
    }  # fmt: skip
    pay = disbursement("40.00", "2026-03-01")
    pay["body"]["project_code"] = "PRJ-1"
    done = await post(client, org, [opened, project, receipt("100.00", "2025-02-01")])
    done += await post(client, org, [receipt("25.00", "2026-01-15"), pay])
    for path in ("funds/PWF", "projects/PRJ-1"):
        r = await client.get(f"/api/v1/orgs/{org.code}/{path}", headers=org.auth("auditor"))
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["as_of"]["log"] == f"{org.code}/2026"
        assert got["as_of"]["tree_size"] == 3  # year.opened and the two 2026 entries
        assert [h["log"] for h in got["earlier_as_of"]] == [f"{org.code}/2025"]
        assert got["earlier_as_of"][0]["tree_size"] == 3  # the org's first log: three entries
        await _assert_heads(client, pool, org, [got["as_of"], *got["earlier_as_of"]])
    fund = (await client.get(f"/api/v1/orgs/{org.code}/funds/PWF", headers=org.auth())).json()
    assert fund["balance"] == "85.00"
    # The public see the same heads over approved entries only, in the lists too.
    for r in done[:3]:
        await approve(client, org, r)
    public = (await client.get(f"/api/v1/orgs/{org.code}/funds/PWF")).json()
    assert public["balance"] == "100.00"
    assert public["as_of"]["log"] == f"{org.code}/2026"
    assert public["as_of"]["tree_size"] == 6  # the three reviews are 2026 entries
    await _assert_heads(client, pool, org, [public["as_of"], *public["earlier_as_of"]])
    for path in ("funds", "projects"):
        [listed] = (await client.get(f"/api/v1/orgs/{org.code}/{path}")).json()
        assert (listed["as_of"], listed["earlier_as_of"]) == (
            public["as_of"],
            public["earlier_as_of"],
        ), path
    assert listed["disbursed"] == "0.00"  # the disbursement is not approved
    [fund] = (await client.get(f"/api/v1/orgs/{org.code}/funds")).json()
    assert fund["balance"] == public["balance"] == "100.00"  # approved entries only
    project_view = (await client.get(f"/api/v1/orgs/{org.code}/projects/PRJ-1")).json()
    assert project_view["disbursed"] == "0.00"
    assert project_view["as_of"] == public["as_of"]
