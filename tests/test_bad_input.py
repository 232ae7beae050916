"""Bad input gets a clear problem+json with the field path, and writes nothing."""

from __future__ import annotations

import re
from typing import Annotated, Any

import asyncpg
import pytest

from tests.conftest import Org, fund_entry
from tests.test_levy import assessment
from tests.test_projects_procurement import tender


def receipt(**body: Any) -> dict[str, Any]:
    base = {
        "fund_code": "PWF",
        "amount": "100.00",
        "payer": {"id": "P1", "name": "示范钢铁有限公司", "type": "enterprise"},
        "reference": "排征字〔2026〕1号",
    }
    base.update(body)
    return {
        "kind": "fund.receipt",
        "subject": "fund/PWF",
        "occurred_on": "2026-02-01",
        "body": base,
    }


async def _post(client: Any, org: Org, payload: Any = None, content: bytes | None = None) -> Any:
    url = f"/api/v1/orgs/{org.code}/entries"
    if content is not None:
        return await client.post(
            url, content=content, headers={**org.auth(), "Content-Type": "application/json"}
        )
    return await client.post(url, json=payload, headers=org.auth())


async def _assert_nothing_written(pool: asyncpg.Pool, org: Org) -> None:
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == 0


async def test_malformed_json_is_400(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    r = await _post(client, org, content=b'{"kind": "fund.opened", ')
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "urn:gongkai:problem:malformed"
    await _assert_nothing_written(pool, org)


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (receipt(amount=100), "$.body.amount"),
        (receipt(amount="100.5"), "$.body.amount"),
        (receipt(amount="100.000"), "$.body.amount"),
        (receipt(amount="-1.00"), "$.body.amount"),
        (receipt(amount="1e3"), "$.body.amount"),
        (receipt(surprise=1), "$.body.surprise"),
        (receipt(reference="a\x00b"), "$.body.reference"),
        (receipt(reference="x" * 201), "$.body.reference"),
        (receipt(payer={"id": "P1", "name": "n", "type": "alien"}), "$.body.payer.type"),
        ({**receipt(), "occurred_on": "2026-02-30"}, "$.occurred_on"),
        ({**receipt(), "occurred_on": "2026-13-01"}, "$.occurred_on"),
        ({**receipt(), "occurred_on": "0533-05-20"}, "$.occurred_on"),
        ({**receipt(), "occurred_on": "7593-06-16"}, "$.occurred_on"),
        ({**receipt(), "extra": True}, "$.extra"),
        ({**receipt(), "a b": True}, '$["a b"]'),
        ({**receipt(), "visibility": "secret"}, "$.visibility"),
        ({**receipt(), "subject": ""}, "$.subject"),
        ({**receipt(), "kind": "fund.stolen"}, "$.kind"),
        ({**receipt(), "kind": "review.approved"}, "$.kind"),
        ({"kind": "fund.receipt", "subject": "x", "occurred_on": "2026-01-01"}, "$.body"),
        ({k: v for k, v in receipt().items() if k != "kind"}, "$.kind"),
        (
            {**receipt(), "body": {k: v for k, v in receipt()["body"].items() if k != "amount"}},
            "$.body.amount",
        ),
    ],
)
async def test_invalid_entry_is_422_with_field_path(
    client: Any, org: Org, pool: asyncpg.Pool, payload: Any, path: str
) -> None:
    r = await _post(client, org, payload)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["status"] == 422
    assert problem["errors"][0]["path"] == path, problem
    await _assert_nothing_written(pool, org)


async def test_unknown_kind_lists_the_known_ones(client: Any, org: Org) -> None:
    r = await _post(client, org, {**receipt(), "kind": "fund.stolen"})
    assert "fund.receipt" in r.json()["detail"]
    assert "fund.receipt" in r.json()["known_kinds"]


async def test_body_over_one_mebibyte_is_413(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    big = b'{"kind": "fund.opened", "subject": "' + b"x" * (1 << 20) + b'"}'
    r = await _post(client, org, content=big)
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")
    await _assert_nothing_written(pool, org)


async def test_nul_escape_in_subject_is_422(client: Any, org: Org) -> None:
    entry = fund_entry("N1")
    entry["subject"] = "fund/\u0000"
    r = await _post(client, org, entry)
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"] == "$.subject"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/opinions?status=a%00b", "status"),
        ("/opinions?status=nonsense", "status"),
        ("/entries?kind=fund.receipt%00", "kind"),
        ("/entries?subject=fund/%00", "subject"),
        ("/entries?cursor=%00", "cursor"),
        ("/disclosures/2026-Q1%00", "period"),
        ("/opinions/abc%00", "tracking_code"),
        ("/funds/PWF%00", "code"),
        ("/projects/P%00", "code"),
        ("/funds/PWF%00/summary?year=2026", "code"),
    ],
)
async def test_nul_or_unknown_in_a_query_or_path_parameter_is_422(
    client: Any, org: Org, path: str, field: str
) -> None:
    """A NUL byte would make PostgreSQL raise (it was a 500): refused at the edge like
    any other invalid parameter, naming it; so is a status no case can have."""
    r = await client.get(f"/api/v1/orgs/{org.code}{path}", headers=org.auth())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    error = r.json()["errors"][0]
    assert error["path"] in (f"query.{field}", f"path.{field}"), r.text
    if "%00" in path and field != "status":
        assert error["message"] == "must not contain a NUL byte"


@pytest.mark.parametrize(
    ("query", "field", "digits"),
    [
        ("/logs/2026/leaves?start=1e0&end=1", "start", "0"),
        ("/logs/2026/leaves?start=0&end=1.0", "end", "1"),
        ("/logs/2026/leaves?start=0&end=0x1", "end", "1"),
        ("/logs/2026/proofs/inclusion?index=0&tree_size=1e0", "tree_size", "1"),
        ("/entries?year=2026.0", "year", "2026"),
        ("/entries?year=2026&limit=1e1", "limit", "10"),
        ("/funds/PWF/summary?year=2.026e3", "year", "2026"),
        ("/review/pending?limit=5.0", "limit", "5"),
    ],
)
async def test_a_query_integer_not_in_decimal_digits_is_422(
    client: Any, org: Org, query: str, field: str, digits: str
) -> None:
    """The decoder alone read ``1e3`` as 1000 and ``1.0`` as 1: an integer in a query
    is written in digits, or refused naming the parameter."""
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries", json=fund_entry("PWF"), headers=org.auth()
    )
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/orgs/{org.code}{query}", headers=org.auth())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["path"] for e in r.json()["errors"]] == [f"query.{field}"]
    written = re.sub(rf"([?&]{field}=)[^&]*", rf"\g<1>{digits}", query)
    r = await client.get(f"/api/v1/orgs/{org.code}{written}", headers=org.auth())
    assert r.status_code == 200, (written, r.text)


async def test_nul_in_the_org_of_a_path_is_422(client: Any) -> None:
    r = await client.get("/api/v1/orgs/sz%00epb/entries")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["path"] == "path.org"


async def test_every_refusal_names_its_field(client: Any, org: Org) -> None:
    """Bodies Litestar decodes, missing query parameters and values checked against the
    log all answer 422 with the failing field's path, and an undecodable body 400."""
    base = f"/api/v1/orgs/{org.code}"
    r = await _post(client, org, fund_entry("PWF"))
    assert r.status_code == 201, r.text
    review = f"{base}/logs/2026/entries/0/review"
    auth = org.auth("reviewer")
    cases = [
        (client.post(review, json={}, headers=auth), "$.decision"),
        (client.post(review, json={"decision": "approve", "zzz": 1}, headers=auth), "$.zzz"),
        (client.post(review, json={"decision": "maybe"}, headers=auth), "$.decision"),
        (client.get(f"{base}/funds/PWF/summary"), "query.year"),
        (client.get(f"{base}/logs/2026/proofs/inclusion?index=0"), "query.tree_size"),
        (client.get(f"{base}/logs/2026/proofs/inclusion?index=1&tree_size=1"), "query.index"),
        (client.get(f"{base}/logs/2026/proofs/inclusion?index=0&tree_size=9"), "query.tree_size"),
        (client.get(f"{base}/logs/2026/proofs/consistency?first=2&second=1"), "query.first"),
        (client.get(f"{base}/logs/2026/leaves?start=5&end=2"), "query.end"),
        (client.get(f"{base}/logs/2026/leaves?start=0&end=1001"), "query.end"),
        (client.get(f"{base}/entries?since=2026-06-01&until=2026-05-01"), "query.until"),
        # A kind that does not exist is a typo, not "none of these" (it was 200, empty).
        (client.get(f"{base}/entries?kind=fund.reciept"), "query.kind"),
        (client.get(f"{base}/entries?kind=fund.reciept&format=csv"), "query.kind"),
    ]
    for request, path in cases:
        r = await request
        assert r.status_code == 422, (path, r.text)
        assert r.json()["errors"][0]["path"] == path, r.text
    r = await client.post(review, content=b'{"decision":', headers=auth)
    assert r.status_code == 400
    assert r.json()["type"] == "urn:gongkai:problem:malformed"


def _undecodable_bodies() -> list[tuple[str, bytes]]:
    deep = b"[" * 1000 + b"]" * 1000
    return [
        ("not UTF-8", b'{"kind":"fund.opened","subject":"a\xffb"}'),
        ("not UTF-8 in the body", fund_body_with(b'"name":"\xc0\xaf"')),
        ("nested too deeply", deep),
        ("nested too deeply in the body", fund_body_with(b'"name":' + deep)),
    ]


def fund_body_with(field: bytes) -> bytes:
    return (
        b'{"kind":"fund.opened","subject":"fund/U8","occurred_on":"2026-03-15",'
        b'"body":{"fund_code":"U8","category":"other","currency":"CNY",' + field + b"}}"
    )


@pytest.mark.parametrize(("what", "content"), _undecodable_bodies())
async def test_a_body_no_decoder_can_read_is_400_on_every_write_route(
    client: Any, org: Org, pool: asyncpg.Pool, what: str, content: bytes
) -> None:
    """Bytes that are not UTF-8, or JSON nested past the decoder's depth, made the
    decoders raise errors of their own (a 500): every route that takes a JSON body
    answers them 400 malformed (or 422 where the shape is refused before the depth
    is reached: an array where an object is expected), and writes nothing."""
    base = f"/api/v1/orgs/{org.code}"
    assert (await _post(client, org, fund_entry("PWF"))).status_code == 201
    leaves = await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code)
    json_headers = {"Content-Type": "application/json"}
    requests = [
        (f"{base}/entries", content, org.auth()),
        (f"{base}/entries/batch", b'{"entries":[' + content + b"]}", org.auth()),
        (f"{base}/logs/2026/entries/0/review", content, org.auth("reviewer")),
        (f"{base}/opinions", content, {}),
    ]
    for url, body, headers in requests:
        r = await client.post(url, content=body, headers={**headers, **json_headers})
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
        if r.status_code == 422 and what == "nested too deeply":
            assert r.json()["errors"][0]["path"] == "$", r.text
            continue
        assert r.status_code == 400, (what, url, r.text)
        assert r.json()["type"] == "urn:gongkai:problem:malformed", r.text
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == leaves
    assert await pool.fetchval("SELECT count(*) FROM opinions WHERE org = $1", org.code) == 0


async def test_an_empty_body_is_400_where_a_json_body_is_expected(client: Any, org: Org) -> None:
    base = f"/api/v1/orgs/{org.code}"
    assert (await _post(client, org, fund_entry("PWF"))).status_code == 201
    for url, headers in [
        (f"{base}/logs/2026/entries/0/review", org.auth("reviewer")),
        (f"{base}/opinions", {}),
        (f"{base}/entries", org.auth()),
        (f"{base}/entries/batch", org.auth()),
    ]:
        r = await client.post(url, content=b"", headers=headers)
        assert r.status_code == 400, (url, r.text)
        assert r.json()["type"] == "urn:gongkai:problem:malformed", r.text


async def test_nul_in_a_review_s_legal_basis_is_422(client: Any, org: Org) -> None:
    base = f"/api/v1/orgs/{org.code}"
    assert (await _post(client, org, fund_entry("PWF"))).status_code == 201
    r = await client.post(
        f"{base}/logs/2026/entries/0/review",
        json={"decision": "withhold", "reason": "state_secret", "legal_basis": "x\u0000"},
        headers=org.auth("reviewer"),
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0] == {
        "path": "$.legal_basis",
        "message": "must not contain a NUL byte",
    }


async def test_a_balance_past_the_largest_total_is_409_and_writes_nothing(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """A fund's balance is a 64-bit number of fen: past MAX_TOTAL_FEN the entry is
    refused with a 409 (it was a 500 when the write overflowed)."""
    base = f"/api/v1/orgs/{org.code}"
    assert (await _post(client, org, fund_entry("PWF"))).status_code == 201
    largest = receipt(amount="999999999999.99")
    thousand = {"entries": [largest] * 1000}
    r = await client.post(f"{base}/entries/batch", json=thousand, headers=org.auth())
    assert r.status_code == 201, r.text
    leaves = await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code)
    r = await _post(client, org, receipt(amount="10.00"))
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "largest total" in r.json()["detail"]
    two = {"entries": [receipt(amount="5.00"), receipt(amount="5.00")]}
    r = await client.post(f"{base}/entries/batch", json=two, headers=org.auth())
    assert r.status_code == 409, r.text
    assert r.json()["entry"] == 1
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == leaves
    assert (await _post(client, org, receipt(amount="9.99"))).status_code == 201


async def test_a_month_total_past_64_bits_is_409_and_writes_nothing(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """A month's receipts are added up in the database: should they pass a 64-bit
    integer, the append is refused (409), not a 500, and nothing of it is written."""
    assert (await _post(client, org, fund_entry("PWF"))).status_code == 201
    assert (await _post(client, org, receipt())).status_code == 201
    await pool.execute(
        "UPDATE fund_periods SET receipts_fen = $2 WHERE org = $1 AND scope = 'all'",
        org.code,
        2**63 - 100,
    )
    leaves = await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code)
    r = await _post(client, org, receipt())
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await pool.fetchval("SELECT count(*) FROM leaves WHERE org = $1", org.code) == leaves


async def test_nul_in_an_opinion_s_contact_e_mail_is_422(client: Any, org: Org) -> None:
    r = await client.post(
        f"/api/v1/orgs/{org.code}/opinions",
        json={"category": "opinion", "text": "意见", "contact": {"email": "a\u0000@example.cn"}},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "$.contact.email"


async def test_a_batch_of_one_names_its_entry(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    base = f"/api/v1/orgs/{org.code}"
    r = await client.post(
        f"{base}/entries/batch", json={"entries": [receipt(fund_code="NOPE")]}, headers=org.auth()
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "$.entries[0].body.fund_code", r.text
    assert r.json()["entry"] == 0
    await _assert_nothing_written(pool, org)


async def test_a_batch_entry_too_far_ahead_is_named(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    far = fund_entry("FAR", on="2099-01-02")
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch",
        json={"entries": [fund_entry("PWF"), far]},
        headers=org.auth(),
    )
    assert r.status_code == 409, r.text
    assert r.json()["entry"] == 1, r.text
    assert r.json()["log"] == f"{org.code}/2099"
    await _assert_nothing_written(pool, org)


async def test_an_empty_idempotency_key_is_422(client: Any, org: Org, pool: asyncpg.Pool) -> None:
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries",
        json=fund_entry("PWF"),
        headers={**org.auth(), "Idempotency-Key": ""},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "header.Idempotency-Key", r.text
    await _assert_nothing_written(pool, org)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
async def test_an_export_checks_its_cursor_and_resumes_after_it(
    client: Any, org: Org, fmt: str
) -> None:
    base = f"/api/v1/orgs/{org.code}"
    for code in ("A1", "A2", "A3"):
        assert (await _post(client, org, fund_entry(code))).status_code == 201
    r = await client.get(f"{base}/entries?format={fmt}&cursor=!!", headers=org.auth())
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "query.cursor"
    page = (await client.get(f"{base}/entries?limit=1", headers=org.auth())).json()
    r = await client.get(
        f"{base}/entries?format={fmt}&cursor={page['next_cursor']}", headers=org.auth()
    )
    assert r.status_code == 200, r.text
    rows = [line for line in r.text.splitlines() if line]
    assert len(rows) == (3 if fmt == "csv" else 2), r.text  # csv: a header line
    assert "fund/A1" not in r.text and "fund/A3" in r.text


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        (tender("T-D1", start="0001-01-01"), "body.period.start"),
        (tender("T-D2", end="9999-12-31"), "body.period.end"),
        (assessment("E1", "10.00", deferred_until="3000-01-01"), "body.deferred_until"),
        (assessment("E2", "10.00", period="2026-13"), "body.period"),
        (assessment("E3", "10.00", period="0000"), "body.period"),
    ],
)
async def test_a_date_in_a_body_outside_1900_to_2999_is_422(
    client: Any, org: Org, pool: asyncpg.Pool, entry: dict[str, Any], path: str
) -> None:
    """Dates inside a body are held to occurred_on's years (they were taken as they
    came: 0001-01-01, 9999-12-31), and a levy period to a month that exists; on a
    single post and in a batch (whose fast decoder must not let them through)."""
    r = await _post(client, org, entry)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == f"$.{path}", r.text
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch",
        json={"entries": [fund_entry("PWF"), entry]},
        headers=org.auth(),
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == f"$.entries[1].{path}", r.text
    await _assert_nothing_written(pool, org)


async def test_a_balance_already_past_the_largest_total_may_still_come_down(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """A balance stored past the limit before it was kept refuses what would raise
    it further, not what lowers it."""
    from ledger.money import MAX_TOTAL_FEN
    from tests.test_review_corrections import disbursement

    assert (await _post(client, org, fund_entry("F"))).status_code == 201
    await pool.execute(
        "UPDATE funds SET balance_fen = $2 WHERE org = $1 AND fund_code = 'F'",
        org.code,
        MAX_TOTAL_FEN + 1000,
    )
    r = await _post(client, org, disbursement("5.00"))  # still past the limit, but lower
    assert r.status_code == 201, r.text
    more = receipt(fund_code="F", amount="10.01")
    more["subject"] = "fund/F"
    r = await _post(client, org, more)
    assert r.status_code == 409, r.text


def test_query_integers_are_found_by_their_query_names() -> None:
    """The hook looks at what the query string carries: an alias by its alias, a
    list of integers too, and never a header or a cookie."""
    from litestar import Litestar, get
    from litestar.params import (
        CookieParameter,
        FromPath,
        FromQuery,
        HeaderParameter,
        QueryParameter,
    )  # fmt: skip

    from api.params import _integer_names

    @get("/t/{n:int}", sync_to_thread=False)
    def handler(
        n: FromPath[int],
        plain: FromQuery[int],
        maybe: FromQuery[int | None],
        many: FromQuery[list[int]],
        aliased: Annotated[int, QueryParameter(name="other-name")],
        header: Annotated[int, HeaderParameter(name="x-count")],
        cookie: Annotated[int, CookieParameter(name="count")],
        text: FromQuery[str],
        flag: FromQuery[bool],
    ) -> None:
        return None

    Litestar([handler])  # resolves the handler's signature
    names = _integer_names(handler)
    assert names == {"n", "plain", "maybe", "many", "other-name"}
