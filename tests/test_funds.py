"""Funds as double-entry books: postings, balances kept as posted, refused overdrafts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.money import from_fen
from tests.conftest import Org, make_org

PAYER = {"id": "P1", "name": "示范钢铁有限公司", "type": "enterprise"}
PAYEE = {"id": "Q1", "name": "清源环保工程有限公司", "type": "enterprise"}


def opened(code: str, *, allow_overdraft: bool | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "fund_code": code,
        "name": f"排污费 {code}",
        "category": "pollution_levy",
    }
    if allow_overdraft is not None:
        body["allow_overdraft"] = allow_overdraft
    return {
        "kind": "fund.opened",
        "subject": f"fund/{code}",
        "occurred_on": "2026-01-05",
        "body": body,
    }


def receipt(code: str, amount: str, on: str = "2026-03-10") -> dict[str, Any]:
    return {
        "kind": "fund.receipt",
        "subject": f"fund/{code}",
        "occurred_on": on,
        "body": {
            "fund_code": code,
            "amount": amount,
            "payer": PAYER,
            "reference": "排征字〔2026〕1号",
        },
    }


def disbursement(
    code: str, amount: str, on: str = "2026-03-20", project_code: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "fund_code": code,
        "amount": amount,
        "payee": PAYEE,
        "purpose": "污染治理项目补助",
        "reference": "环拨〔2026〕7号",
    }
    if project_code is not None:
        body["project_code"] = project_code
    return {"kind": "fund.disbursement", "subject": f"fund/{code}", "occurred_on": on, "body": body}


def target_set(code: str, amount: str, direction: str = "collection") -> dict[str, Any]:
    return {
        "kind": "fund.target_set",
        "subject": f"fund/{code}",
        "occurred_on": "2026-01-06",
        "body": {"fund_code": code, "year": 2026, "direction": direction, "amount": amount},
    }


def project(code: str) -> dict[str, Any]:
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


def reversal(log: str, index: int) -> dict[str, Any]:
    return {
        "kind": "correction.reversal",
        "subject": f"entry/{log}/{index}",
        "occurred_on": "2026-06-01",
        "body": {"target_log": log, "target_index": index, "reason": "录入错误"},
    }


async def post(client: Any, org: Org, entry: dict[str, Any], role: str = "clerk") -> Any:
    return await client.post(f"/api/v1/orgs/{org.code}/entries", json=entry, headers=org.auth(role))


async def posted(client: Any, org: Org, entry: dict[str, Any]) -> dict[str, Any]:
    r = await post(client, org, entry)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def lines(pool: asyncpg.Pool, org: Org, index: int) -> list[tuple[str, int, str]]:
    rows = await pool.fetch(
        """SELECT account, amount_fen, flow FROM postings
           WHERE org = $1 AND year = 2026 AND idx = $2 ORDER BY line""",
        org.code,
        index,
    )
    return [(r["account"], r["amount_fen"], r["flow"]) for r in rows]


async def balance_fen(pool: asyncpg.Pool, org: Org, code: str) -> int:
    value: int = await pool.fetchval(
        "SELECT balance_fen FROM funds WHERE org = $1 AND fund_code = $2", org.code, code
    )
    return value


async def counts(pool: asyncpg.Pool, org: Org, code: str) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM leaves WHERE org = $1) AS leaves,
                  (SELECT count(*) FROM postings WHERE org = $1) AS postings,
                  (SELECT balance_fen FROM funds WHERE org = $1 AND fund_code = $2) AS balance""",
        org.code,
        code,
    )
    return row["leaves"], row["postings"], row["balance"]


# --- postings ---------------------------------------------------------------------------


async def test_receipt_is_posted_as_balanced_lines(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    r = await posted(client, org, receipt("F", "1200.50"))
    assert await lines(pool, org, r["index"]) == [
        ("fund:F", 120050, "receipt"),
        ("payer:P1", -120050, "receipt"),
    ]


async def test_disbursement_is_posted_as_balanced_lines(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, receipt("F", "1000.00"))
    r = await posted(client, org, disbursement("F", "300.00"))
    got = await lines(pool, org, r["index"])
    assert got == [("fund:F", -30000, "disbursement"), ("payee:Q1", 30000, "disbursement")]
    assert sum(amount for _, amount, _ in got) == 0


async def test_disbursement_naming_a_project_posts_to_the_project_account(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, project("PRJ-1"))
    await posted(client, org, receipt("F", "1000.00"))
    r = await posted(client, org, disbursement("F", "250.00", project_code="PRJ-1"))
    assert await lines(pool, org, r["index"]) == [
        ("fund:F", -25000, "disbursement"),
        ("project:PRJ-1", 25000, "disbursement"),
    ]


async def test_fund_opened_and_target_set_post_nothing(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, target_set("F", "2550000.00"))
    assert await pool.fetchval("SELECT count(*) FROM postings WHERE org = $1", org.code) == 0


async def test_every_entry_lines_sum_to_zero(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    await posted(client, org, opened("F"))
    for amount in ("10.00", "0.01", "99999.99"):
        await posted(client, org, receipt("F", amount))
    await posted(client, org, disbursement("F", "500.00"))
    sums = await pool.fetch(
        "SELECT idx, sum(amount_fen) AS s FROM postings WHERE org = $1 GROUP BY idx", org.code
    )
    assert len(sums) == 4
    assert all(r["s"] == 0 for r in sums)


# --- balances ---------------------------------------------------------------------------


async def test_balance_is_kept_as_posted(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    await posted(client, org, opened("F"))
    assert await balance_fen(pool, org, "F") == 0
    await posted(client, org, receipt("F", "1000.00"))
    assert await balance_fen(pool, org, "F") == 100000
    await posted(client, org, receipt("F", "234.56"))
    await posted(client, org, disbursement("F", "534.56"))
    assert await balance_fen(pool, org, "F") == 70000


async def test_staff_fund_view_shows_the_balance(client: Any, org: Org) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, receipt("F", "1000.00"))
    await posted(client, org, disbursement("F", "300.00"))
    r = await client.get(f"/api/v1/orgs/{org.code}/funds/F", headers=org.auth("auditor"))
    assert r.status_code == 200, r.text
    fund = r.json()
    assert fund["fund_code"] == "F"
    assert fund["balance"] == "700.00"
    assert fund["allow_overdraft"] is False


async def test_funds_are_kept_apart(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, opened("G"))
    await posted(client, org, receipt("F", "100.00"))
    await posted(client, org, receipt("G", "5.00"))
    assert await balance_fen(pool, org, "F") == 10000
    assert await balance_fen(pool, org, "G") == 500


async def test_disbursement_beyond_balance_is_409_stating_balance_and_shortfall(
    client: Any, org: Org
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, receipt("F", "100.00"))
    r = await post(client, org, disbursement("F", "150.25"))
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert "100.00" in problem["detail"]
    assert "50.25" in problem["detail"]
    assert problem["balance"] == "100.00"
    assert problem["shortfall"] == "50.25"


async def test_refused_disbursement_leaves_no_trace(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, receipt("F", "100.00"))
    before = await counts(pool, org, "F")
    r = await post(client, org, disbursement("F", "100.01"))
    assert r.status_code == 409
    assert await counts(pool, org, "F") == before


async def test_disbursement_of_the_whole_balance_is_allowed(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, receipt("F", "100.00"))
    await posted(client, org, disbursement("F", "100.00"))
    assert await balance_fen(pool, org, "F") == 0


async def test_overdraft_fund_allows_disbursement_beyond_balance(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F", allow_overdraft=True))
    await posted(client, org, receipt("F", "100.00"))
    await posted(client, org, disbursement("F", "150.00"))
    assert await balance_fen(pool, org, "F") == -5000
    r = await client.get(f"/api/v1/orgs/{org.code}/funds/F", headers=org.auth())
    assert r.json()["balance"] == "-50.00"
    assert r.json()["allow_overdraft"] is True


# --- bad references and amounts ---------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [receipt("NOPE", "1.00"), disbursement("NOPE", "1.00"), target_set("NOPE", "1.00")],
    ids=["receipt", "disbursement", "target_set"],
)
async def test_unknown_fund_is_422_naming_it(
    client: Any, org: Org, pool: asyncpg.Pool, entry: dict[str, Any]
) -> None:
    r = await post(client, org, entry)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert "NOPE" in problem["detail"]
    assert problem["errors"][0]["path"] == "$.body.fund_code"
    assert "NOPE" in problem["errors"][0]["message"]
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == 0


async def test_disbursement_to_unknown_project_is_422_naming_it(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, receipt("F", "100.00"))
    before = await counts(pool, org, "F")
    r = await post(client, org, disbursement("F", "10.00", project_code="GHOST-9"))
    assert r.status_code == 422, r.text
    problem = r.json()
    assert "GHOST-9" in problem["detail"]
    assert problem["errors"][0]["path"] == "$.body.project_code"
    assert await counts(pool, org, "F") == before


@pytest.mark.parametrize("make", [receipt, disbursement], ids=["receipt", "disbursement"])
async def test_amount_of_zero_is_422(client: Any, org: Org, make: Any) -> None:
    await posted(client, org, opened("F", allow_overdraft=True))
    r = await post(client, org, make("F", "0.00"))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "$.body.amount"


async def test_duplicate_fund_opened_is_409(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    await posted(client, org, opened("F"))
    r = await post(client, org, opened("F"))
    assert r.status_code == 409, r.text
    assert "F" in r.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == 1


# --- targets and periods ----------------------------------------------------------------


async def test_target_set_is_kept_and_a_later_one_replaces_it(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, target_set("F", "2500000.00"))
    second = await posted(client, org, target_set("F", "2550000.00"))
    await posted(client, org, target_set("F", "900000.00", direction="spending"))
    rows = await pool.fetch(
        """SELECT direction, amount_fen, set_index FROM fund_targets
           WHERE org = $1 AND fund_code = 'F' AND year = 2026 ORDER BY direction""",
        org.code,
    )
    assert [(r["direction"], r["amount_fen"]) for r in rows] == [
        ("collection", 255000000),
        ("spending", 90000000),
    ]
    assert rows[0]["set_index"] == second["index"]


async def test_monthly_periods_are_updated_as_posted(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, receipt("F", "100.00", on="2026-03-02"))
    await posted(client, org, receipt("F", "50.00", on="2026-03-31"))
    await posted(client, org, receipt("F", "20.00", on="2026-04-01"))
    await posted(client, org, disbursement("F", "30.00", on="2026-04-15"))
    rows = await pool.fetch(
        """SELECT month, receipts_fen, disbursements_fen, receipts_n, disbursements_n
           FROM fund_periods WHERE org = $1 AND fund_code = 'F' AND scope = 'all'
           ORDER BY month""",
        org.code,
    )
    assert [tuple(r) for r in rows] == [
        (dt.date(2026, 3, 1), 15000, 0, 2, 0),
        (dt.date(2026, 4, 1), 2000, 3000, 1, 1),
    ]


async def test_unreviewed_entries_do_not_move_public_amounts(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    await posted(client, org, opened("F"))
    await posted(client, org, receipt("F", "100.00"))
    await posted(client, org, receipt("F", "10.00"))
    await posted(client, org, disbursement("F", "30.00"))
    row = await pool.fetchrow(
        """SELECT coalesce(sum(receipts_fen), 0) AS r, coalesce(sum(disbursements_fen), 0) AS d,
                  coalesce(sum(receipts_n + disbursements_n), 0) AS n
           FROM fund_periods WHERE org = $1 AND scope = 'public'""",
        org.code,
    )
    assert (row["r"], row["d"], row["n"]) == (0, 0, 0)


# --- property: balances equal their postings; refusals leave no trace ---------------------

_amounts = st.integers(min_value=1, max_value=200_000)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("receipt"), _amounts, st.integers(1, 11)),
        st.tuples(st.just("disbursement"), _amounts, st.integers(1, 11)),
        st.tuples(st.just("reversal"), st.integers(0, 10_000), st.integers(1, 11)),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops, overdraft=st.booleans())
async def test_random_postings_keep_balance_equal_to_postings(
    client: Any, pool: asyncpg.Pool, ops: list[tuple[str, int, int]], overdraft: bool
) -> None:
    org = await make_org("h")
    await posted(client, org, opened("F", allow_overdraft=overdraft))
    log = f"{org.code}/2026"
    model = 0
    # (index, signed effect on the fund in fen, reversed?) of each monetary entry posted.
    monetary: list[list[int]] = []
    for op, n, month in ops:
        on = f"2026-{month:02d}-15"
        if op == "receipt":
            entry, expect = receipt("F", from_fen(n), on=on), 201
            effect = n
        elif op == "disbursement":
            entry = disbursement("F", from_fen(n), on=on)
            expect = 201 if overdraft or n <= model else 409
            effect = -n
        else:
            if not monetary:
                continue
            target = monetary[n % len(monetary)]
            entry = reversal(log, target[0])
            entry["occurred_on"] = on
            effect = -target[1]
            if target[2]:
                expect = 409
            elif effect < 0 and not overdraft and -effect > model:
                expect = 409  # reversing a receipt whose money was already spent
            else:
                expect = 201
        event(f"{op} {expect}")
        before = await counts(pool, org, "F")
        r = await post(client, org, entry)
        assert r.status_code == expect, (op, n, model, r.text)
        if expect == 409:
            assert await counts(pool, org, "F") == before
            continue
        model += effect
        if op == "reversal":
            target[2] = 1
        else:
            monetary.append([r.json()["index"], effect, 0])
        balance = await balance_fen(pool, org, "F")
        from_postings = await pool.fetchval(
            """SELECT coalesce(sum(amount_fen), 0) FROM postings
               WHERE org = $1 AND account = 'fund:F'""",
            org.code,
        )
        assert balance == from_postings == model
    unbalanced = await pool.fetchval(
        """SELECT count(*) FROM (SELECT 1 FROM postings WHERE org = $1
           GROUP BY year, idx HAVING sum(amount_fen) <> 0) s""",
        org.code,
    )
    assert unbalanced == 0
    periods = await pool.fetchval(
        """SELECT coalesce(sum(receipts_fen - disbursements_fen), 0) FROM fund_periods
           WHERE org = $1 AND fund_code = 'F' AND scope = 'all'""",
        org.code,
    )
    assert periods == model
