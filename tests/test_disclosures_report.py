"""Quarterly publication (disclosure.published) and the annual report through HTTP (issue 5).

A published quarter is a snapshot of the quarter's public summaries whose exact bytes
are served for ever; its SHA-256 and the tree size it was computed from are in the
``disclosure.published`` leaf. The annual report (国办公开办函〔2021〕30号) is built from
the ledger's requests: every outcome row, every applicant type, carried-over and
carried-forward requests, and its cross-checks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections import Counter
from typing import Any

import pytest

from api.web import RateLimiter
from ledger.annual_report import APPLICANT_TYPES, BASIS, COLUMNS, OUTCOMES, REASONS
from ledger.settings import Settings
from ledger.tree import root_from_leaf_hashes
from tests.conftest import Org
from tests.test_integrity import run_cli

API = "/api/v1"


@pytest.fixture(autouse=True)
def _no_submission_limit(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared app allows 10 submissions a minute per address; the report needs more."""
    monkeypatch.setattr(client.app.state, "opinion_limiter", RateLimiter(0))


def on(monkeypatch: pytest.MonkeyPatch, day: str) -> None:
    """Make the API's "today" (Asia/Shanghai) be ``day``."""
    monkeypatch.setattr("api.opinions.china_today", lambda: dt.date.fromisoformat(day))


def fund_opened(code: str = "PWF") -> dict[str, Any]:
    return {
        "kind": "fund.opened",
        "subject": f"fund/{code}",
        "occurred_on": "2026-01-05",
        "body": {"fund_code": code, "name": "排污费专项资金", "category": "pollution_levy"},
    }


def fund_receipt(amount: str, on: str, code: str = "PWF") -> dict[str, Any]:
    return {
        "kind": "fund.receipt",
        "subject": f"fund/{code}",
        "occurred_on": on,
        "body": {
            "fund_code": code,
            "amount": amount,
            "payer": {"id": "P1", "name": "示范钢铁有限公司", "type": "enterprise"},
            "reference": f"排征字〔2026〕{on}",
        },
    }


async def post_and_approve(client: Any, org: Org, entries: list[dict[str, Any]]) -> list[int]:
    r = await client.post(
        f"{API}/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 201, r.text
    indices = []
    for receipt in r.json()["receipts"]:
        year = receipt["log"].split("/")[1]
        a = await client.post(
            f"{API}/orgs/{org.code}/logs/{year}/entries/{receipt['index']}/review",
            json={"decision": "approve"},
            headers=org.auth("reviewer"),
        )
        assert a.status_code == 201, a.text
        indices.append(receipt["index"])
    return indices


async def books(client: Any, org: Org) -> None:
    """A fund with receipts in Q1 and Q2 of 2026, all approved for publication."""
    await post_and_approve(
        client,
        org,
        [
            fund_opened(),
            fund_receipt("1000.00", "2026-02-10"),
            fund_receipt("1200.00", "2026-04-08"),
            fund_receipt("300.50", "2026-05-20"),
        ],
    )


async def read_entry(client: Any, org: Org, ref: str) -> dict[str, Any]:
    log, index = ref.split("#")
    year = log.rsplit("/", 1)[1]
    r = await client.get(f"{API}/orgs/{org.code}/logs/{year}/entries/{index}", headers=org.auth())
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- quarterly publication -----------------------------------------------------------


async def test_publish_a_quarter_and_serve_its_exact_bytes(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    await books(client, org)
    on(monkeypatch, "2026-07-06")
    r = await client.post(
        f"{API}/orgs/{org.code}/disclosures", json={"quarter": "2026-Q2"}, headers=org.auth("admin")
    )
    assert r.status_code == 201, r.text
    published = r.json()
    assert published["period"] == "2026-Q2"
    assert re.fullmatch(r"[0-9a-f]{64}", published["sha256"])
    assert published["entry"].startswith(f"{org.code}/2026#")

    listed = await client.get(f"{API}/orgs/{org.code}/disclosures")
    assert listed.status_code == 200
    assert listed.json() == [published]

    r = await client.get(f"{API}/orgs/{org.code}/disclosures/2026-Q2")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    data = r.content
    assert hashlib.sha256(data).hexdigest() == published["sha256"]
    again = await client.get(f"{API}/orgs/{org.code}/disclosures/2026-Q2")
    assert again.content == data

    # The leaf commits to those bytes and to the tree they were computed from.
    entry = await read_entry(client, org, published["entry"])
    assert entry["kind"] == "disclosure.published"
    assert entry["occurred_on"] == "2026-06-30"  # the quarter's last day
    assert entry["body"] == {
        "period": "2026-Q2",
        "summary_sha256": published["sha256"],
        "tree_size": published["tree_size"],
    }
    public_entry = await client.get(
        f"{API}/orgs/{org.code}/logs/2026/entries/{entry['index']}"
    )  # a system entry: public as it is
    assert public_entry.json()["body"] == entry["body"]

    # The snapshot: the quarter's fund rows and the tree it states it was computed from.
    snap = json.loads(data)
    assert snap["period"] == "2026-Q2" and snap["org"] == org.code
    [fund] = snap["funds"]
    assert fund["fund_code"] == "PWF"
    rows = {row["period"]: row for row in fund["rows"]}
    assert sorted(rows) == ["2026-04", "2026-05", "2026-06"]
    assert rows["2026-04"]["opening"] == "1000.00"
    assert rows["2026-04"]["receipts"] == "1200.00"
    assert rows["2026-05"]["receipts"] == "300.50"
    assert rows["2026-06"]["closing"] == "2500.50"
    assert snap["as_of"]["tree_size"] == published["tree_size"] == entry["index"]
    leaves = (
        await client.get(
            f"{API}/orgs/{org.code}/logs/2026/leaves", params={"end": published["tree_size"]}
        )
    ).json()["leaf_hashes"]
    assert len(leaves) == published["tree_size"]
    root = root_from_leaf_hashes([bytes.fromhex(h) for h in leaves])
    assert snap["as_of"]["root"] == root.hex()
    # The signed note of that tree head (SPEC §6: every summary names its checkpoint).
    note = snap["as_of"]["checkpoint"]
    assert f"\n{published['tree_size']}\n{base64.b64encode(root).decode()}\n" in note
    assert "opinions" in snap and snap["opinions"]["total"] == 0

    # Once only.
    r = await client.post(
        f"{API}/orgs/{org.code}/disclosures", json={"quarter": "2026-Q2"}, headers=org.auth("admin")
    )
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert len((await client.get(f"{API}/orgs/{org.code}/disclosures")).json()) == 1


@pytest.mark.parametrize("quarter", ["2026-Q5", "2026-Q0", "2026Q2", "26-Q2", "2026-q2", ""])
async def test_bad_quarter_is_422(client: Any, org: Org, quarter: str) -> None:
    r = await client.post(
        f"{API}/orgs/{org.code}/disclosures", json={"quarter": quarter}, headers=org.auth("admin")
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "$.quarter" in [e["path"] for e in r.json().get("errors") or []]


async def test_a_quarter_not_yet_begun_cannot_be_published(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, "2026-09-30")
    r = await client.post(
        f"{API}/orgs/{org.code}/disclosures", json={"quarter": "2026-Q4"}, headers=org.auth("admin")
    )
    assert r.status_code == 409, r.text
    assert (await client.get(f"{API}/orgs/{org.code}/disclosures")).json() == []


async def test_only_admins_publish(client: Any, org: Org) -> None:
    url = f"{API}/orgs/{org.code}/disclosures"
    for role in ("clerk", "reviewer", "auditor"):
        r = await client.post(url, json={"quarter": "2026-Q1"}, headers=org.auth(role))
        assert r.status_code == 403, (role, r.text)
    assert (await client.post(url, json={"quarter": "2026-Q1"})).status_code == 401
    assert (await client.get(url)).json() == []
    r = await client.get(f"{url}/2026-Q1")
    assert r.status_code == 404


async def test_publish_from_the_command_line(
    client: Any, org: Org, dsn: str, settings: Settings
) -> None:
    await books(client, org)
    out = run_cli(dsn, settings, "publish", "--org", org.code, "--quarter", "2026-Q2")
    assert out.returncode == 0, out.stdout + out.stderr
    m = re.search(
        r"published 2026-Q2: sha256 ([0-9a-f]{64}), tree size (\d+), entry (\S+#\d+)", out.stdout
    )
    assert m, out.stdout
    sha, size, ref = m[1], int(m[2]), m[3]
    listed = (await client.get(f"{API}/orgs/{org.code}/disclosures")).json()
    assert listed == [{"period": "2026-Q2", "sha256": sha, "tree_size": size, "entry": ref}]
    data = (await client.get(f"{API}/orgs/{org.code}/disclosures/2026-Q2")).content
    assert hashlib.sha256(data).hexdigest() == sha
    entry = await read_entry(client, org, ref)
    assert entry["actor"] == "cli"
    assert entry["body"] == {"period": "2026-Q2", "summary_sha256": sha, "tree_size": size}

    again = run_cli(dsn, settings, "publish", "--org", org.code, "--quarter", "2026-Q2")
    assert again.returncode != 0
    assert "already published" in again.stderr
    bad = run_cli(dsn, settings, "publish", "--org", org.code, "--quarter", "2026-Q9")
    assert bad.returncode != 0
    ok = run_cli(dsn, settings, "verify", "--org", org.code)
    assert ok.returncode == 0, ok.stdout + ok.stderr


# --- the annual report ---------------------------------------------------------------

PAIRS: list[tuple[str, str | None]] = [
    (outcome, reason)
    for outcome in OUTCOMES
    for reason in (list(REASONS[outcome]) if outcome in REASONS else [None])
]
TYPES = list(APPLICANT_TYPES)


def leaf_key(outcome: str, reason: str | None) -> str:
    return f"results.{outcome}" if reason is None else f"results.{outcome}.{reason}"


class Requests:
    """Files requests through HTTP and remembers what it posted, for the expected counts."""

    def __init__(self, client: Any, org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
        self.client, self.org, self.monkeypatch = client, org, monkeypatch
        self.posted: list[dict[str, Any]] = []
        self.n = 0

    async def file(self, received: str, applicant_type: str, category: str = "disclosure_request"
                   ) -> str:  # fmt: skip
        on(self.monkeypatch, received)
        self.n += 1
        r = await self.client.post(
            f"{API}/orgs/{self.org.code}/opinions",
            json={"category": category, "text": f"申请公开第 {self.n} 项信息",
                  "applicant_type": applicant_type},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        if category == "disclosure_request":
            self.posted.append({"code": r.json()["tracking_code"], "type": applicant_type,
                                "received": dt.date.fromisoformat(received), "outcome": None,
                                "reason": None, "decided": None})  # fmt: skip
        return str(r.json()["tracking_code"])

    async def event(self, code: str, day: str, **fields: Any) -> dict[str, Any]:
        on(self.monkeypatch, day)
        r = await self.client.post(
            f"{API}/orgs/{self.org.code}/opinions/{code}/events",
            json=fields,
            headers=self.org.auth(),
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def decided(self, code: str, outcome: str, reason: str | None, day: str) -> None:
        for p in self.posted:
            if p["code"] == code:
                p.update(outcome=outcome, reason=reason, decided=dt.date.fromisoformat(day))

    async def respond(self, code: str, day: str, outcome: str, reason: str | None) -> None:
        fields = {"event": "responded", "outcome": outcome}
        if reason is not None:
            fields["reason"] = reason
        await self.event(code, day, **fields)
        self.decided(code, outcome, reason, day)


def expected_rows(posted: list[dict[str, Any]], year: int) -> dict[str, Counter[str]]:
    """Table 三 counted straight from what was posted."""
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    rows: dict[str, Counter[str]] = {}

    def add(key: str, p: dict[str, Any]) -> None:
        rows.setdefault(key, Counter())[p["type"]] += 1
        rows[key]["total"] += 1

    for p in posted:
        received, decided = p["received"], p["decided"]
        if received.year == year:
            add("new", p)
        elif received < start and (decided is None or decided >= start):
            add("carried_over", p)
        else:
            continue
        if decided is not None and start <= decided <= end:
            add(leaf_key(p["outcome"], p["reason"]), p)
            add("results.total", p)
        if decided is None or decided > end:
            add("carried_forward", p)
    return rows


async def test_annual_report_every_outcome_row_and_applicant_type(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    reqs = Requests(client, org, monkeypatch)

    # Received in 2025: one decided in January 2026 (carried over, then decided), one
    # still open at the end of 2026 (carried over and forward), one decided in 2025
    # (not in the 2026 report at all).
    over = await reqs.file("2025-12-15", "natural_person")
    over_open = await reqs.file("2025-12-16", "commercial")
    old = await reqs.file("2025-12-17", "research")
    await reqs.respond(old, "2025-12-22", "not_disclosed", "state_secret")
    await reqs.respond(over, "2026-01-12", "disclosed", None)
    await reqs.event(over_open, "2026-01-05", event="accept")

    # Every (outcome, reason) row, cycling through every applicant type.
    responded = []
    for i, (outcome, reason) in enumerate(PAIRS):
        received = (dt.date(2026, 3, 2) + dt.timedelta(days=7 * i)).isoformat()
        decided = (dt.date(2026, 3, 2) + dt.timedelta(days=7 * i + 14)).isoformat()
        code = await reqs.file(received, TYPES[i % len(TYPES)])
        await reqs.event(code, received, event="accept")
        await reqs.respond(code, decided, outcome, reason)
        responded.append(code)

    # Art. 39: a complaint filed as a request counts as not processed (信访举报投诉类).
    complaint = await reqs.file("2026-09-01", "legal_services")
    case = await reqs.event(complaint, "2026-09-02", event="accept", handled_as="complaint")
    assert case["outcome"] == "not_processed"
    reqs.decided(complaint, "not_processed", "petition_complaint", "2026-09-02")
    await reqs.event(complaint, "2026-09-10", event="responded", outcome="replied")

    # Carried into 2027: one still open, one decided in January 2027.
    await reqs.file("2026-12-20", "public_interest")
    late = await reqs.file("2026-12-21", "other_org")
    await reqs.respond(late, "2027-01-05", "cannot_provide", "not_held")

    # Not requests: they do not appear in table 三.
    for category in ("opinion", "complaint", "report"):
        await reqs.file("2026-04-01", "natural_person", category=category)

    # Table 四: reconsideration and litigation in 2026.
    for code, channel, result in (
        (responded[0], "reconsideration", "upheld"),
        (responded[1], "reconsideration", "corrected"),
        (responded[2], "litigation_direct", "pending"),
        (responded[2], "litigation_after_reconsideration", "other"),
    ):
        await reqs.event(code, "2026-11-02", event="appeal", channel=channel, result=result)

    # Table 二: a licensing decision published through the ledger.
    await post_and_approve(
        client,
        org,
        [
            {"kind": "project.registered", "subject": "project/P1", "occurred_on": "2026-02-01",
             "body": {"project_code": "P1", "name": "城东污水处理厂提标改造工程",
                      "category": "污染治理", "location": "城东区滨江路",
                      "total_investment": "5000000.00",
                      "funding": [{"source": "排污费专项", "amount": "5000000.00"}]}},
            {"kind": "project.approval", "subject": "project/P1", "occurred_on": "2026-02-20",
             "body": {"project_code": "P1", "approval_type": "eia",
                      "document_no": "环审〔2026〕12号", "authority": "示范市生态环境局",
                      "decision": "同意建设", "decided_on": "2026-02-18"}},
        ],
    )  # fmt: skip

    r = await client.get(f"{API}/orgs/{org.code}/annual-report/2026")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["basis"] == BASIS == "国办公开办函〔2021〕30号"
    assert report["year"] == 2026 and report["org"] == org.code
    assert report["title"] == f"测试单位 {org.code}2026年政府信息公开工作年度报告"
    assert report["as_of"]["log"] == f"{org.code}/2026"

    rows = {row["key"]: row["values"] for row in report["requests"]["rows"]}
    expected = expected_rows(reqs.posted, 2026)
    for key, values in rows.items():
        if values is None:
            continue
        want = expected.get(key, Counter())
        assert values == {c: want[c] for c in COLUMNS}, key
    # Every outcome row of the template got a request, every applicant type is present.
    for outcome, reason in PAIRS:
        assert rows[leaf_key(outcome, reason)]["total"] >= 1, (outcome, reason)
    assert all(rows["new"][t] >= 1 for t in TYPES)
    # The numbers by hand: 21 rows + Art. 39 + two in December are new; two carried over;
    # 21 + Art. 39 + the one carried over were decided; three go on into 2027.
    assert rows["new"]["total"] == 24
    assert rows["carried_over"] == {**dict.fromkeys(COLUMNS, 0), "natural_person": 1,
                                    "commercial": 1, "total": 2}  # fmt: skip
    assert rows["results.total"]["total"] == 23
    assert rows["results.disclosed"]["natural_person"] == 2  # PAIRS[0] and the carried over
    assert rows["results.not_processed.petition_complaint"]["total"] == 2
    # PAIRS[2] (a research institute's) only: the same row decided in 2025 is not counted.
    assert rows["results.not_disclosed.state_secret"]["research"] == 1
    assert rows["carried_forward"] == {**dict.fromkeys(COLUMNS, 0), "commercial": 1,
                                       "public_interest": 1, "other_org": 1,
                                       "total": 3}  # fmt: skip

    checks = report["checks"]
    assert checks["holds"] is True
    for group in ("balance", "results_total", "column_total"):
        assert checks[group]["items"] and all(i["holds"] for i in checks[group]["items"]), group
    balance = {i["column"]: i for i in checks["balance"]["items"]}
    assert balance["total"]["new_plus_carried_over"] == 26 == 24 + 2
    assert balance["total"]["results_plus_carried_forward"] == 26 == 23 + 3

    groups = {g["key"]: g["values"] for g in report["appeals"]["groups"]}
    assert groups["reconsideration"] == {"upheld": 1, "corrected": 1, "other": 0, "pending": 0,
                                         "total": 2}  # fmt: skip
    assert groups["litigation_direct"]["pending"] == 1
    assert groups["litigation_direct"]["total"] == 1
    assert groups["litigation_after_reconsideration"]["other"] == 1

    proactive = {
        row["key"]: row["values"] for s in report["proactive"]["sections"] for row in s["rows"]
    }
    assert proactive["licensing"] == {"decisions": 1}
    published = {row["key"]: row["count"] for row in report["ledger_published"]["rows"]}
    assert published["project.approval"] == 1 and published["project.registered"] == 1

    # 2025's report: the three requests received then, one decided, two carried forward.
    r2025 = (await client.get(f"{API}/orgs/{org.code}/annual-report/2025")).json()
    rows2025 = {row["key"]: row["values"] for row in r2025["requests"]["rows"]}
    assert rows2025["new"]["total"] == 3
    assert rows2025["results.not_disclosed.state_secret"]["research"] == 1
    assert rows2025["carried_forward"]["total"] == 2
    assert r2025["checks"]["holds"] is True

    # The readable page in Chinese.
    page = await client.get(f"{API}/orgs/{org.code}/annual-report/2026?format=html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "国办公开办函〔2021〕30号" in text
    assert f"测试单位 {org.code}2026年政府信息公开工作年度报告" in text
    assert "全部成立" in text and "不成立" not in text
    for label in ("本年新收政府信息公开申请数量", "上年结转政府信息公开申请数量",
                  "结转下年度继续办理", "信访举报投诉类申请", "行政复议"):  # fmt: skip
        assert label in text
    accept = await client.get(
        f"{API}/orgs/{org.code}/annual-report/2026", headers={"Accept": "text/html"}
    )
    assert accept.headers["content-type"].startswith("text/html")


async def test_annual_report_of_an_empty_year_and_bad_input(client: Any, org: Org) -> None:
    r = await client.get(f"{API}/orgs/{org.code}/annual-report/2026")
    assert r.status_code == 200
    report = r.json()
    assert report["checks"]["holds"] is True
    assert all(
        v == 0
        for row in report["requests"]["rows"]
        if row["values"]
        for v in row["values"].values()
    )
    assert (await client.get(f"{API}/orgs/{org.code}/annual-report/1800")).status_code == 422
    assert (await client.get(f"{API}/orgs/no-such-org/annual-report/2026")).status_code == 404
