"""Opinions, complaints, reports and disclosure requests (issue 5, SPEC §5–6).

Submitting without a token, the unguessable tracking code, personal data kept out of
the ledger behind a salted commitment, the statutory clock in working days (China's
holidays and 调休 from ``chinese-calendar``, a loaded schedule for 2027), extension,
supplement pauses, transitions, outcomes, Art. 39, overdue cases and erasure (PIPL).

"Today" is simulated by monkeypatching ``api.opinions.china_today``. Every expected
due date below was counted by hand from the State Council's 2026 schedule as the
``chinese-calendar`` package (1.11) carries it:

- 2026 adjusted working days (调休上班): Sun 01-04, Sat 02-14, Sat 02-28, Sat 05-09,
  Sun 09-20, Sat 10-10;
- weekday holidays: 01-01/02, 02-16…20 and 02-23 (春节), 04-06 (清明), 05-01/04/05,
  06-19, 09-25 (中秋), 10-01/02/05/06/07 (国庆).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from api.web import RateLimiter
from ledger import opinions
from ledger.annual_report import OUTCOMES, REASONS
from ledger.checkpoint import NoteVerifier, signer_for
from ledger.logs import sign_due
from ledger.settings import Settings
from ledger.tree import leaf_hash, verify_inclusion
from tests.conftest import Org, fund_entry, make_org
from tests.test_integrity import run_cli

API = "/api/v1"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
CODE = re.compile(r"^[A-Z2-7]{6}(-[A-Z2-7]{6}){3}$")

# Personal data of one citizen: none of it may ever appear on a public route or in a leaf.
NAME = "张三丰"
PHONE = "+86 138-0013-8000"
EMAIL = "zhang.sanfeng@example.cn"
TEXT = "城东排污口每晚偷排黑水，请公开该企业的排污许可 marker-7f3a9c"
CONTACT = {"name": NAME, "phone": PHONE, "email": EMAIL}
SECRETS = (NAME, PHONE, EMAIL, TEXT, "marker-7f3a9c", "13800138000", "138-0013-8000")


@pytest.fixture(autouse=True)
def _no_submission_limit(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared app allows 10 submissions a minute per address (the default); these
    tests submit far more from the one test address. The limit itself is tested on an
    app of its own (test_submissions_are_rate_limited_with_retry_after)."""
    monkeypatch.setattr(client.app.state, "opinion_limiter", RateLimiter(0))


def on(monkeypatch: pytest.MonkeyPatch, day: str) -> None:
    """Make the API's "today" (Asia/Shanghai) be ``day``."""
    monkeypatch.setattr("api.opinions.china_today", lambda: dt.date.fromisoformat(day))


_counter = iter(range(10**9))


async def submit(
    client: Any,
    org: Org,
    *,
    category: str = "disclosure_request",
    text: str | None = None,
    expect: int = 201,
    **extra: Any,
) -> dict[str, Any]:
    body = {"category": category, "text": text or f"请公开 2026 年排污费征收明细 #{next(_counter)}"}
    body.update(extra)
    r = await client.post(f"{API}/orgs/{org.code}/opinions", json=body)
    assert r.status_code == expect, r.text
    return dict(r.json())


async def event(
    client: Any, org: Org, code: str, name: str, *, role: str = "clerk", expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:  # fmt: skip
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{code}/events",
        json={"event": name, **fields},
        headers=org.auth(role),
    )
    assert r.status_code == expect, r.text
    return dict(r.json())


async def public_case(client: Any, code: str) -> dict[str, Any]:
    r = await client.get(f"{API}/opinions/{code}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def staff_case(client: Any, org: Org, code: str, role: str = "clerk") -> dict[str, Any]:
    r = await client.get(f"{API}/orgs/{org.code}/opinions/{code}", headers=org.auth(role))
    assert r.status_code == 200, r.text
    return dict(r.json())


def entry_of(case: dict[str, Any], kind: str) -> tuple[int, int]:
    """(year, index) of the case's first event of ``kind``."""
    for e in case["events"]:
        if e["kind"] == kind:
            log, index = e["entry"].split("#")
            return int(log.rsplit("/", 1)[1]), int(index)
    raise AssertionError(f"no {kind} event in {case['events']}")


async def leaf(client: Any, org: Org, year: int, index: int, **kw: Any) -> dict[str, Any]:
    r = await client.get(f"{API}/orgs/{org.code}/logs/{year}/entries/{index}", **kw)
    assert r.status_code == 200, r.text
    return dict(r.json())


def jcs(value: Any) -> bytes:
    """RFC 8785 for the plain strings/objects/null used here, written independently."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def problem_paths(r: Any) -> list[str]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [e["path"] for e in r.json().get("errors") or []]


def assert_no_personal_data(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} shown by {where}"


# --- submitting ----------------------------------------------------------------------


async def test_submission_returns_unguessable_code_and_due_date(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, "2026-03-02")
    a = await submit(client, org)
    b = await submit(client, org, category="opinion")
    for s in (a, b):
        code = s["tracking_code"]
        assert CODE.match(code), code
        # 24 base32 characters: 120 random bits, far beyond guessing.
        assert len(code.replace("-", "")) * 5 >= 120
        assert s["received_on"] == "2026-03-02"
        assert s["due_on"] == "2026-03-30"  # 20 working days, no holiday in between
        assert s["due_estimated"] is False
        assert "due_note" not in s
        assert s.get("duplicate", False) is False
    assert a["tracking_code"] != b["tracking_code"]
    # Two codes share no 6-character group: they come from fresh randomness.
    assert not set(a["tracking_code"].split("-")) & set(b["tracking_code"].split("-"))

    case = await public_case(client, a["tracking_code"])
    assert case["status"] == "submitted"
    assert case["due_on"] == "2026-03-30"
    assert case["category"] == "disclosure_request"
    assert [e["kind"] for e in case["events"]] == ["opinion.submitted"]
    # Codes are read out on the phone: case and surrounding blanks do not matter.
    again = await public_case(client, a["tracking_code"].lower())
    assert again["events"] == case["events"]
    r = await client.get(f"{API}/opinions/AAAAAA-AAAAAA-AAAAAA-AAAAAA")
    assert r.status_code == 404


async def test_public_routes_never_show_contact_or_text(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, "2026-03-02")
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions",
        json={"category": "disclosure_request", "text": TEXT, "contact": CONTACT},
    )
    assert r.status_code == 201, r.text
    assert_no_personal_data(r.text, "POST /opinions")
    code = r.json()["tracking_code"]
    await event(client, org, code, "accept")
    await event(client, org, code, "respond", outcome="disclosed", response="已公开，见附件。")

    # Staff see it (the positive control for the checks below) …
    staff = await staff_case(client, org, code)
    assert staff["personal_data"] == [{"text": TEXT, "contact": CONTACT}]

    # … and no public route does.
    pub = await client.get(f"{API}/opinions/{code}")
    assert pub.status_code == 200
    assert "personal_data" not in pub.json()
    assert pub.json()["response"] == "已公开，见附件。"
    routes = [
        f"{API}/opinions/{code}",
        f"{API}/orgs/{org.code}/opinions/stats",
        f"{API}/orgs/{org.code}/entries",
        f"{API}/orgs/{org.code}/entries?format=ndjson",
        f"{API}/orgs/{org.code}/entries?format=csv",
        f"{API}/orgs/{org.code}/annual-report/2026",
        f"{API}/orgs/{org.code}/annual-report/2026?format=html",
    ]
    year, index = entry_of(staff, "opinion.submitted")
    size = (await client.get(f"{API}/orgs/{org.code}")).json()["logs"][0]["size"]
    routes += [f"{API}/orgs/{org.code}/logs/{year}/entries/{i}" for i in range(size)]
    for url in routes:
        r = await client.get(url)
        assert r.status_code == 200, (url, r.text)
        assert_no_personal_data(r.text, url)
    # Staff listings do not carry personal data either; only the one-case route does.
    r = await client.get(f"{API}/orgs/{org.code}/opinions", headers=org.auth())
    assert_no_personal_data(r.text, "staff list")

    # The ndjson export has the submission, with its commitment and nothing personal.
    r = await client.get(f"{API}/orgs/{org.code}/entries?format=ndjson")
    rows = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    submitted = [row for row in rows if row["kind"] == "opinion.submitted"]
    assert len(submitted) == 1
    assert HEX64.match(submitted[0]["body"]["commitment"])

    # The leaf of opinion.submitted: a commitment, not the words.
    item = await leaf(client, org, year, index)
    assert item["kind"] == "opinion.submitted"
    body = item["body"]
    assert HEX64.match(body["commitment"])
    assert body["tracking_sha256"] == hashlib.sha256(code.encode()).hexdigest()
    assert set(body) <= {
        "tracking_sha256", "category", "applicant_type", "received_on", "due_on",
        "due_estimated", "commitment", "reference",
    }  # fmt: skip
    assert_no_personal_data(item["leaf_bytes"], "leaf bytes")
    assert code not in item["leaf_bytes"]  # only its hash
    assert item["leaf_hash"] == leaf_hash(item["leaf_bytes"].encode()).hex()


async def test_commitment_is_sha256_of_salt_and_canonical_json(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    contact = {"name": NAME, "phone": PHONE, "email": None}
    s = await submit(client, org, text=TEXT, contact={"name": NAME, "phone": PHONE})
    code = s["tracking_code"]
    case = await staff_case(client, org, code)
    year, index = entry_of(case, "opinion.submitted")
    commitment = (await leaf(client, org, year, index))["body"]["commitment"]

    row = await pool.fetchrow(
        """SELECT salt, payload FROM opinion_private
           WHERE org = $1 AND tracking_sha256 = $2 AND part = 0""",
        org.code,
        hashlib.sha256(code.encode()).digest(),
    )
    salt, payload = bytes(row["salt"]), bytes(row["payload"])
    assert len(salt) == 16
    assert payload == jcs({"text": TEXT, "contact": contact})
    assert hashlib.sha256(salt + payload).hexdigest() == commitment
    # Without the salt the words cannot be confirmed by hashing guesses.
    assert hashlib.sha256(payload).hexdigest() != commitment


async def test_duplicate_within_window_is_answered_idempotently(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool
) -> None:
    on(monkeypatch, "2026-09-28")
    body = {"category": "complaint", "text": "重复提交测试：噪声扰民", "contact": {"name": NAME}}
    first = await client.post(f"{API}/orgs/{org.code}/opinions", json=body)
    assert first.status_code == 201, first.text
    assert first.json().get("duplicate", False) is False
    second = await client.post(f"{API}/orgs/{org.code}/opinions", json=body)
    assert second.status_code == 200, second.text
    dup = second.json()
    assert dup["duplicate"] is True
    assert dup["tracking_code"] == first.json()["tracking_code"]
    assert dup["due_on"] == first.json()["due_on"] == "2026-10-30"
    assert dup["received_on"] == "2026-09-28"

    # Not the same submission: a new case.
    other = await submit(client, org, category="opinion", text=body["text"],
                         contact={"name": NAME})  # fmt: skip
    assert other["tracking_code"] != first.json()["tracking_code"]

    r = await client.get(f"{API}/orgs/{org.code}/opinions", headers=org.auth())
    assert len(r.json()) == 2
    entries = (await client.get(f"{API}/orgs/{org.code}/entries?kind=opinion.submitted")).json()
    assert len(entries["items"]) == 2

    # Once the ten minutes have passed, the same words are a new case.
    await pool.execute(
        """UPDATE opinion_submissions SET created_at = now() - interval '11 minutes'
           WHERE org = $1""",
        org.code,
    )
    later = await client.post(f"{API}/orgs/{org.code}/opinions", json=body)
    assert later.status_code == 201, later.text
    assert later.json()["tracking_code"] != first.json()["tracking_code"]

    # An org with no later submission: the server's sweep deletes its stale codes.
    await pool.execute(
        "UPDATE opinion_submissions SET created_at = now() - interval '11 minutes' WHERE org = $1",
        org.code,
    )
    assert await opinions.expire_submissions(pool) >= 1
    assert not await pool.fetchval("SELECT count(*) FROM opinion_submissions WHERE org = $1",
                                   org.code)  # fmt: skip


async def test_text_length_is_bounded(client: Any, org: Org) -> None:
    ok = await submit(client, org, text="字" * 5000)
    assert CODE.match(ok["tracking_code"])
    for text in ("字" * 5001, "", "   "):
        r = await client.post(
            f"{API}/orgs/{org.code}/opinions", json={"category": "opinion", "text": text}
        )
        assert r.status_code == 422, r.text
        assert "$.text" in problem_paths(r)


@pytest.mark.parametrize(
    ("contact", "path"),
    [
        ({"phone": "call me maybe"}, "$.contact.phone"),
        ({"phone": "12345"}, "$.contact.phone"),
        ({"phone": "1" * 21}, "$.contact.phone"),
        ({"email": "not-an-email"}, "$.contact.email"),
        ({"email": "a b@example.cn"}, "$.contact.email"),
    ],
)
async def test_bad_phone_or_email_is_422(
    client: Any, org: Org, contact: dict[str, str], path: str
) -> None:
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions",
        json={"category": "complaint", "text": "联系方式校验", "contact": contact},
    )
    assert r.status_code == 422, r.text
    assert path in problem_paths(r)


async def test_reference_must_exist(client: Any, org: Org) -> None:
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions",
        json={
            "category": "report",
            "text": "举报",
            "reference": {"type": "project", "code": "NOPE"},
        },
    )
    assert r.status_code == 422, r.text
    assert "$.reference.code" in problem_paths(r)
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions",
        json={"category": "report", "text": "举报", "reference": {"type": "tender", "code": "T-0"}},
    )
    assert r.status_code == 422
    assert "$.reference.code" in problem_paths(r)

    posted = await client.post(
        f"{API}/orgs/{org.code}/entries", json=fund_entry("PWF"), headers=org.auth()
    )
    assert posted.status_code == 201, posted.text
    s = await submit(client, org, category="opinion", reference={"type": "fund", "code": "PWF"})
    case = await public_case(client, s["tracking_code"])
    assert case["reference"] == {"type": "fund", "code": "PWF"}


async def test_submissions_are_rate_limited_with_retry_after(
    dsn: str, settings: Settings, org: Org
) -> None:
    import dataclasses

    from litestar.testing import AsyncTestClient

    from api.app import create_app

    limited = dataclasses.replace(settings, opinion_rate_limit=2)
    async with AsyncTestClient(app=create_app(limited, dsn)) as c:
        url = f"{API}/orgs/{org.code}/opinions"
        codes = [
            (await c.post(url, json={"category": "opinion", "text": f"限流 {i}"})).status_code
            for i in range(2)
        ]
        assert codes == [201, 201]
        r = await c.post(url, json={"category": "opinion", "text": "限流 2"})
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 429
        # Reading is not limited by the submission limit.
        assert (await c.get(f"{API}/orgs/{org.code}/opinions/stats")).status_code == 200


# --- the clock -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "due"),
    [
        # National Day: 09-29, 09-30 (2), 10-01…07 off, 10-08, 10-09, Sat 10-10 调休 (5),
        # then 15 weekdays 10-12 … 10-30.
        ("2026-09-28", "2026-10-30"),
        # Spring Festival: 02-11…13 (3), Sat 02-14 调休 (4), 02-15…23 off, 02-24…27 (8),
        # Sat 02-28 调休 (9), then 11 weekdays 03-02 … 03-16.
        ("2026-02-10", "2026-03-16"),
        # Due on the 调休 Saturday itself, having counted the 调休 Sunday 09-20 and
        # skipped 中秋 09-25 and the National Day week: 09-08…18 (9), Sun 09-20 (10),
        # 09-21…24 (14), 09-28…30 (17), 10-08, 10-09, Sat 10-10 (20).
        ("2026-09-07", "2026-10-10"),
        # Received on a holiday (Sat 10-03 of National Day): 10-08, 10-09, Sat 10-10 (3),
        # 10-12 … 10-30 (18), 11-02, 11-03.
        ("2026-10-03", "2026-11-03"),
        # Received on 初一 (02-17): 02-24…27 (4), Sat 02-28 (5), 03-02 … 03-20 (20).
        ("2026-02-17", "2026-03-20"),
    ],
)
async def test_due_date_across_holidays_and_tiaoxiu(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch, received: str, due: str
) -> None:
    on(monkeypatch, received)
    s = await submit(client, org)
    assert (s["received_on"], s["due_on"], s["due_estimated"]) == (received, due, False)
    case = await public_case(client, s["tracking_code"])
    assert (case["received_on"], case["due_on"], case["due_estimated"]) == (received, due, False)
    # The leaf records the due date it promised.
    year, index = entry_of(case, "opinion.submitted")
    body = (await leaf(client, org, year, index))["body"]
    assert (body["received_on"], body["due_on"], body["due_estimated"]) == (received, due, False)


async def test_loaded_2027_schedule_makes_a_december_deadline_exact(
    client: Any,
    org: Org,
    monkeypatch: pytest.MonkeyPatch,
    dsn: str,
    settings: Settings,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    # TEST DATA, not the State Council's 2027 notice (unpublished when this was written):
    # 元旦 01-01…01-04 off (Mon 01-04 invented), Sat 01-09 a make-up working day.
    schedule = {
        "year": 2027,
        "source": "TEST DATA for the Gongkai test suite, not an official schedule",
        "holidays": [{"name": "元旦（测试数据）", "days": [
            "2027-01-01", "2027-01-02", "2027-01-03", "2027-01-04"]}],
        "workdays": ["2027-01-09"],
    }  # fmt: skip
    path = tmp_path / "holidays-2027-TEST-DATA.json"
    path.write_text(json.dumps(schedule, ensure_ascii=False), encoding="utf-8")
    await pool.execute("DELETE FROM calendar_years WHERE year = 2027")
    try:
        on(monkeypatch, "2026-12-10")
        before = await submit(client, org)
        # Monday–Friday only for 2027: 12-11…12-31 (15), 01-01, 01-04…01-07 (20).
        assert before["due_on"] == "2027-01-07"
        assert before["due_estimated"] is True
        assert "2027" in before["due_note"] and "calendar load" in before["due_note"]
        case = await public_case(client, before["tracking_code"])
        assert case["due_estimated"] is True and "2027" in case["due_note"]

        out = run_cli(dsn, settings, "calendar", "load", str(path))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "loaded 2027: 4 holidays, 1 adjusted working days" in out.stdout

        # With the schedule: 12-31 (15), 01-05…01-08 (19), Sat 01-09 (20).
        case = await public_case(client, before["tracking_code"])
        assert case["due_on"] == "2027-01-09"
        assert case["due_estimated"] is False
        assert "due_note" not in case
        after = await submit(client, org)
        assert (after["due_on"], after["due_estimated"]) == ("2027-01-09", False)
        assert "due_note" not in after
    finally:
        await pool.execute("DELETE FROM calendar_years WHERE year = 2027")


async def test_bad_schedule_file_is_refused(
    dsn: str, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "bad-TEST-DATA.json"
    path.write_text(json.dumps({"year": 2028, "holidays": ["2027-12-31"]}), encoding="utf-8")
    out = run_cli(dsn, settings, "calendar", "load", str(path))
    assert out.returncode != 0
    assert "2027-12-31" in out.stderr
    assert await pool.fetchval("SELECT count(*) FROM calendar_years WHERE year = 2028") == 0


async def test_one_extension_of_at_most_20_working_days(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, "2026-09-28")
    code = (await submit(client, org))["tracking_code"]
    on(monkeypatch, "2026-09-29")
    await event(client, org, code, "accept")
    on(monkeypatch, "2026-10-20")
    for bad, path in (({"days": 21}, "$.days"), ({"days": 0}, "$.days"), ({}, "$.days")):
        r = await client.post(
            f"{API}/orgs/{org.code}/opinions/{code}/events",
            json={"event": "extended", "reason": "需要征求第三方意见", **bad},
            headers=org.auth(),
        )
        assert r.status_code == 422, r.text
        assert path in problem_paths(r)
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{code}/events",
        json={"event": "extended", "days": 20},
        headers=org.auth(),
    )
    assert r.status_code == 422 and "$.reason" in problem_paths(r)

    # The SPEC's verb (extend) and the event's name (extended) are the same event.
    case = await event(client, org, code, "extend", days=20, reason="需要征求第三方意见")
    # 10-30 plus 20 working days: 11-02 … 11-27.
    assert (case["status"], case["due_on"], case["due_estimated"]) == ("extended", "2026-11-27",
                                                                       False)  # fmt: skip
    assert (await public_case(client, code))["due_on"] == "2026-11-27"
    year, index = entry_of(case, "opinion.extended")
    body = (await leaf(client, org, year, index))["body"]
    assert body == {"tracking_sha256": body["tracking_sha256"], "days": 20,
                    "reason": "需要征求第三方意见", "due_on": "2026-11-27"}  # fmt: skip

    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{code}/events",
        json={"event": "extended", "days": 5, "reason": "再次延期"},
        headers=org.auth(),
    )
    assert r.status_code == 409, r.text
    assert "extended" not in r.json()["allowed"]

    # Still only once after a supplement round trip brings the case back to "extended".
    await event(client, org, code, "supplement_requested", what="请补充申请内容的文号")
    r = await client.post(
        f"{API}/opinions/{code}/supplement", json={"text": "文号：示环〔2026〕7号"}
    )
    assert r.status_code == 201, r.text
    assert (await public_case(client, code))["status"] == "extended"
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{code}/events",
        json={"event": "extended", "days": 5, "reason": "再次延期"},
        headers=org.auth(),
    )
    assert r.status_code == 409


async def test_a_shorter_extension(client: Any, org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    on(monkeypatch, "2026-09-28")
    code = (await submit(client, org))["tracking_code"]
    await event(client, org, code, "accept")
    case = await event(client, org, code, "extended", days=10, reason="需要会商")
    assert case["due_on"] == "2026-11-13"  # 10-30 + 11-02…06, 11-09…13


async def test_supplement_request_stops_the_clock(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, "2026-03-02")
    code = (await submit(client, org, contact={"email": EMAIL}))["tracking_code"]
    assert (await public_case(client, code))["due_on"] == "2026-03-30"
    r = await client.post(f"{API}/opinions/{code}/supplement", json={"text": "没人要我补"})
    assert r.status_code == 409, r.text  # nothing was asked
    on(monkeypatch, "2026-03-03")
    await event(client, org, code, "accept")

    on(monkeypatch, "2026-03-05")  # 03-03 and 03-04 counted: 2 of 20
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{code}/events",
        json={"event": "supplement_requested"},
        headers=org.auth(),
    )
    assert r.status_code == 422 and "$.what" in problem_paths(r)
    await event(client, org, code, "supplement_requested", what="请写明所需信息的名称和文号")
    paused = await public_case(client, code)
    assert paused["status"] == "awaiting_supplement"
    assert paused["due_on"] is None
    assert "stopped" in paused["due_note"]
    assert paused["overdue"] is False

    on(monkeypatch, "2026-04-20")  # long after the original due date: the clock is stopped
    assert (await public_case(client, code))["overdue"] is False
    stats = (await client.get(f"{API}/orgs/{org.code}/opinions/stats")).json()
    assert stats["overdue"] == 0

    on(monkeypatch, "2026-03-12")  # the citizen supplies on Thursday a week later
    r = await client.post(
        f"{API}/opinions/{code}/supplement", json={"text": "文号：示环〔2026〕7号"}
    )
    assert r.status_code == 201, r.text
    resumed = await public_case(client, code)
    assert resumed["status"] == "accepted"
    # Paused working days 03-05, 03-06, 03-09, 03-10, 03-11 (5): 03-30 moves 5 working
    # days on, skipping 清明 04-06: 03-31, 04-01, 04-02, 04-03, 04-07.
    assert resumed["due_on"] == "2026-04-07"
    assert resumed["due_estimated"] is False
    kinds = [e["kind"] for e in resumed["events"]]
    assert kinds == ["opinion.submitted", "opinion.accepted", "opinion.supplement_requested",
                     "opinion.supplied"]  # fmt: skip

    # The supplement is personal data too: staff see it, the leaf holds a commitment.
    staff = await staff_case(client, org, code)
    assert staff["personal_data"][1] == {"supplement": "文号：示环〔2026〕7号"}
    year, index = entry_of(staff, "opinion.supplied")
    item = await leaf(client, org, year, index)
    assert "示环〔2026〕7号" not in item["leaf_bytes"]
    assert HEX64.match(item["body"]["commitment"])
    r = await client.post(f"{API}/opinions/{code}/supplement", json={"text": "再补一次"})
    assert r.status_code == 409


async def test_supplement_text_is_bounded(client: Any, org: Org) -> None:
    code = (await submit(client, org))["tracking_code"]
    await event(client, org, code, "supplement_requested", what="请补正")
    for text in ("字" * 5001, " "):
        r = await client.post(f"{API}/opinions/{code}/supplement", json={"text": text})
        assert r.status_code == 422, r.text
        assert "$.text" in problem_paths(r)
    assert (await public_case(client, code))["status"] == "awaiting_supplement"
    r = await client.post(f"{API}/opinions/{code}/supplement", json={"text": "字" * 5000})
    assert r.status_code == 201, r.text


async def test_illegal_transitions_are_409_naming_the_allowed_ones(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, "2026-06-01")
    code = (await submit(client, org))["tracking_code"]

    async def refused(name: str, status: str, allowed: list[str], **fields: Any) -> None:
        r = await client.post(
            f"{API}/orgs/{org.code}/opinions/{code}/events",
            json={"event": name, **fields},
            headers=org.auth(),
        )
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        doc = r.json()
        assert doc["type"] == "urn:gongkai:problem:conflict"
        assert doc["allowed"] == allowed
        assert doc["current_status"] == status
        for a in allowed:
            assert a in doc["detail"]

    await refused("closed", "submitted", ["accept", "supplement_requested", "referred",
                                          "responded"])  # fmt: skip
    await refused("extended", "submitted", ["accept", "supplement_requested", "referred",
                                            "responded"], days=5, reason="x")  # fmt: skip
    await event(client, org, code, "accept")
    await refused("accept", "accepted", ["supplement_requested", "extended", "responded",
                                         "referred"])  # fmt: skip
    await event(client, org, code, "supplement_requested", what="请补正")
    await refused("extended", "awaiting_supplement", ["responded"], days=5, reason="x")
    await refused("closed", "awaiting_supplement", ["responded"])
    await event(client, org, code, "responded", outcome="other", reason="no_supplement")
    await refused("accept", "responded", ["closed", "appeal"])
    await refused("responded", "responded", ["closed", "appeal"], outcome="disclosed")
    await event(client, org, code, "closed")
    await refused("closed", "closed", ["appeal"])

    # Referral: to whom and why are required; afterwards only closing.
    other = (await submit(client, org, category="complaint"))["tracking_code"]
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{other}/events",
        json={"event": "referred"},
        headers=org.auth(),
    )
    assert r.status_code == 422
    assert {"$.to", "$.reason"} <= set(problem_paths(r))
    case = await event(client, org, other, "referred", to="示范市住房和城乡建设局",
                       reason="属于住建部门职责")  # fmt: skip
    assert (case["status"], case["referred_to"]) == ("referred", "示范市住房和城乡建设局")
    code = other
    await refused("responded", "referred", ["closed"], outcome="replied")

    # Auditors read but do not handle cases; a token of another org cannot either.
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{other}/events",
        json={"event": "closed"},
        headers=org.auth("auditor"),
    )
    assert r.status_code == 403
    stranger = await make_org("x")
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{other}/events",
        json={"event": "closed"},
        headers=stranger.auth("admin"),
    )
    assert r.status_code == 403


PAIRS: list[tuple[str, str | None]] = [
    (outcome, reason)
    for outcome in OUTCOMES
    for reason in (list(REASONS[outcome]) if outcome in REASONS else [None])
]


async def test_every_outcome_and_reason_is_accepted(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(PAIRS) == 21  # 2 without a reason + 8 + 3 + 5 + 3
    on(monkeypatch, "2026-06-01")
    for outcome, reason in PAIRS:
        code = (await submit(client, org))["tracking_code"]
        await event(client, org, code, "accept")
        fields: dict[str, Any] = {"outcome": outcome, "response": f"答复：{outcome}/{reason}"}
        if reason is not None:
            fields["reason"] = reason
        case = await event(client, org, code, "responded", **fields)
        assert (case["status"], case["outcome"], case.get("reason")) == ("responded", outcome,
                                                                         reason)  # fmt: skip
        assert case["decided_on"] == "2026-06-01"
        pub = await public_case(client, code)
        assert (pub["outcome"], pub.get("reason"), pub["response"]) == (
            outcome, reason, f"答复：{outcome}/{reason}")  # fmt: skip
        year, index = entry_of(case, "opinion.responded")
        body = (await leaf(client, org, year, index))["body"]
        assert (body["outcome"], body.get("reason")) == (outcome, reason)


@pytest.mark.parametrize(
    ("category", "outcome", "reason", "path"),
    [
        ("disclosure_request", "disclosed", "state_secret", "$.reason"),
        ("disclosure_request", "partly_disclosed", "not_held", "$.reason"),
        ("disclosure_request", "not_disclosed", None, "$.reason"),
        ("disclosure_request", "not_disclosed", "not_held", "$.reason"),
        ("disclosure_request", "cannot_provide", "state_secret", "$.reason"),
        ("disclosure_request", "not_processed", "bogus", "$.reason"),
        ("disclosure_request", "other", None, "$.reason"),
        ("disclosure_request", "approved", None, "$.outcome"),
        ("disclosure_request", None, None, "$.outcome"),
        ("disclosure_request", "replied", None, "$.outcome"),
        ("opinion", "disclosed", None, "$.outcome"),
        ("complaint", None, None, "$.outcome"),
    ],
)
async def test_invalid_outcome_combinations_are_422(
    client: Any, org: Org, category: str, outcome: str | None, reason: str | None, path: str
) -> None:
    code = (await submit(client, org, category=category))["tracking_code"]
    fields = {k: v for k, v in (("outcome", outcome), ("reason", reason)) if v is not None}
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{code}/events",
        json={"event": "responded", **fields},
        headers=org.auth(),
    )
    assert r.status_code == 422, r.text
    assert path in problem_paths(r)
    case = await public_case(client, code)
    assert case["status"] == "submitted" and "outcome" not in case
    assert [e["kind"] for e in case["events"]] == ["opinion.submitted"]


async def test_opinions_are_replied_to(client: Any, org: Org) -> None:
    for category in ("opinion", "complaint", "report"):
        code = (await submit(client, org, category=category))["tracking_code"]
        case = await event(client, org, code, "responded", outcome="replied", response="已收悉。")
        assert (case["status"], case["outcome"]) == ("responded", "replied")


async def test_art_39_complaint_filed_as_request_is_not_processed_as_a_request(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, "2026-06-01")
    code = (await submit(client, org, text="举报某企业夜间偷排，要求查处并公开"))["tracking_code"]
    on(monkeypatch, "2026-06-02")
    case = await event(client, org, code, "accept", handled_as="complaint")
    assert case["category"] == "disclosure_request"
    assert case["handled_as"] == "complaint"
    assert (case["outcome"], case["reason"], case["decided_on"]) == (
        "not_processed", "petition_complaint", "2026-06-02")  # fmt: skip
    year, index = entry_of(case, "opinion.accepted")
    assert (await leaf(client, org, year, index))["body"]["handled_as"] == "complaint"

    # It goes on as a complaint: a reply, not a disclosure outcome.
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions/{code}/events",
        json={"event": "responded", "outcome": "disclosed"},
        headers=org.auth(),
    )
    assert r.status_code == 422
    on(monkeypatch, "2026-06-10")
    case = await event(client, org, code, "responded", outcome="replied", response="已转执法队查处")
    assert case["status"] == "responded"
    # As a request it stays not processed, decided when it was accepted.
    assert (case["outcome"], case["reason"], case["decided_on"]) == (
        "not_processed", "petition_complaint", "2026-06-02")  # fmt: skip

    stats = (await client.get(f"{API}/orgs/{org.code}/opinions/stats")).json()
    assert stats["by_category"] == {"complaint": 1}
    # The counts name the log head they were read with: every event of the case so far.
    size = (await client.get(f"{API}/orgs/{org.code}")).json()["logs"][0]["size"]
    assert stats["as_of"]["log"] == f"{org.code}/2026"
    assert stats["as_of"]["tree_size"] == size and stats["earlier_as_of"] == []
    assert stats["as_of"]["checkpoint"].startswith(f"test.gongkai.local/{org.code}/2026\n{size}\n")
    report = (await client.get(f"{API}/orgs/{org.code}/annual-report/2026")).json()
    values = {row["key"]: row["values"] for row in report["requests"]["rows"]}
    assert values["new"]["total"] == 1
    assert values["results.not_processed.petition_complaint"]["natural_person"] == 1
    assert values["results.total"]["total"] == 1
    assert report["checks"]["holds"] is True


async def test_overdue_cases_listed_for_staff_and_counted_publicly(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, "2026-03-02")
    late = (await submit(client, org))["tracking_code"]  # due 03-30
    on(monkeypatch, "2026-03-20")
    fresh = (await submit(client, org, category="opinion"))["tracking_code"]  # due 04-20
    url = f"{API}/orgs/{org.code}/opinions"

    on(monkeypatch, "2026-03-30")  # the due day itself is not late
    r = await client.get(f"{url}?overdue=true", headers=org.auth())
    assert r.status_code == 200 and r.json() == []
    assert (await client.get(f"{url}/stats")).json()["overdue"] == 0

    on(monkeypatch, "2026-03-31")
    r = await client.get(f"{url}?overdue=true", headers=org.auth("auditor"))
    assert r.status_code == 200
    [item] = r.json()
    assert (item["due_on"], item["overdue"], item["status"]) == ("2026-03-30", True, "submitted")
    assert item["tracking_sha256"] == hashlib.sha256(late.encode()).hexdigest()
    r = await client.get(f"{url}?overdue=false", headers=org.auth())
    assert [c["tracking_sha256"] for c in r.json()] == [hashlib.sha256(fresh.encode()).hexdigest()]
    assert (await public_case(client, late))["overdue"] is True
    assert (await public_case(client, fresh))["overdue"] is False

    stats = await client.get(f"{url}/stats")  # public: no token
    assert stats.status_code == 200
    counts = {k: v for k, v in stats.json().items() if not k.endswith("as_of")}
    assert counts == {
        "total": 2,
        "by_status": {"submitted": 2},
        "by_category": {"disclosure_request": 1, "opinion": 1},
        "open": 2,
        "overdue": 1,
        "answered_late": 0,
    }
    assert (await client.get(url)).status_code == 401  # the list is for staff

    # Answered late: no longer overdue, but counted as answered late.
    await event(client, org, late, "responded", outcome="disclosed")
    stats = (await client.get(f"{url}/stats")).json()
    assert (stats["open"], stats["overdue"], stats["answered_late"]) == (1, 0, 1)
    r = await client.get(f"{url}?status=responded", headers=org.auth())
    assert [c["status"] for c in r.json()] == ["responded"]
    assert r.json()[0]["overdue"] is True


# --- erasure -------------------------------------------------------------------------


async def test_erasure_keeps_verification_intact(
    client: Any, pool: asyncpg.Pool, dsn: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await make_org("e")
    on(monkeypatch, "2026-05-11")
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions",
        json={"category": "disclosure_request", "text": TEXT, "contact": CONTACT},
    )
    assert r.status_code == 201
    code = r.json()["tracking_code"]
    await event(client, org, code, "accept")
    code_hash = hashlib.sha256(code.encode()).digest()
    signer = signer_for(settings.signing_key, settings.key_name)
    await sign_due(pool, signer, settings.origin)
    ok = run_cli(dsn, settings, "verify", "--org", org.code)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    before = await staff_case(client, org, code)
    year, index = entry_of(before, "opinion.submitted")
    leaf_before = await leaf(client, org, year, index)

    r = await client.post(f"{API}/orgs/{org.code}/opinions/{code}/erase", headers=org.auth())
    assert r.status_code == 403, r.text  # a clerk may not erase
    r = await client.post(f"{API}/orgs/{org.code}/opinions/{code}/erase")
    assert r.status_code == 401
    r = await client.post(f"{API}/orgs/{org.code}/opinions/{code}/erase", headers=org.auth("admin"))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "erased"

    staff = await staff_case(client, org, code, role="admin")
    assert staff["erased"] is True
    assert staff.get("personal_data") is None
    pub = await public_case(client, code)
    assert pub["erased"] is True
    assert pub["status"] == "accepted"  # the case itself goes on
    assert "opinion.erased" in [e["kind"] for e in pub["events"]]
    rows = await pool.fetch(
        """SELECT salt, payload, erased_at FROM opinion_private
           WHERE org = $1 AND tracking_sha256 = $2""",
        org.code,
        code_hash,
    )
    assert rows and all(
        r["salt"] is None and r["payload"] is None and r["erased_at"] is not None for r in rows
    )
    raw = await pool.fetch(
        "SELECT convert_from(leaf, 'UTF8') AS t FROM leaves WHERE org = $1", org.code
    )
    for row in raw:
        assert_no_personal_data(row["t"], "stored leaves")

    # The leaf is untouched and still proven by a signed checkpoint.
    leaf_after = await leaf(client, org, year, index)
    assert leaf_after["leaf_hash"] == leaf_before["leaf_hash"]
    assert leaf_after["leaf_bytes"] == leaf_before["leaf_bytes"]
    await sign_due(pool, signer, settings.origin)
    note = (await client.get(f"{API}/orgs/{org.code}/logs/{year}/checkpoint")).text
    cp = NoteVerifier.from_vkey(signer.vkey()).verify(note)
    proof = (
        await client.get(
            f"{API}/orgs/{org.code}/logs/{year}/proofs/inclusion",
            params={"index": index, "tree_size": cp.size},
        )
    ).json()
    assert verify_inclusion(
        bytes.fromhex(leaf_after["leaf_hash"]), index, cp.size,
        [bytes.fromhex(p) for p in proof["path"]], cp.root,
    )  # fmt: skip
    ok = run_cli(dsn, settings, "verify", "--org", org.code)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    r = await client.post(f"{API}/orgs/{org.code}/opinions/{code}/erase", headers=org.auth("admin"))
    assert r.status_code == 409, r.text
    # The same words again are a new case, not an answer revealing the erased one.
    r = await client.post(
        f"{API}/orgs/{org.code}/opinions",
        json={"category": "disclosure_request", "text": TEXT, "contact": CONTACT},
    )
    assert r.status_code == 201
    assert r.json()["tracking_code"] != code


async def test_an_event_field_that_does_not_validate_is_named(client: Any, org: Org) -> None:
    """An event's text fields are checked as its entry's body: a failure names the
    field (it came back with no path)."""
    code = (await submit(client, org))["tracking_code"]
    for fields, path in [
        ({"what": "a\u0000"}, "$.what"),
        ({"what": "x" * 2001}, "$.what"),
    ]:
        r = await client.post(
            f"{API}/orgs/{org.code}/opinions/{code}/events",
            json={"event": "request_supplement", **fields},
            headers=org.auth(),
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["path"] == path, r.text


async def test_staff_act_on_a_case_by_the_hash_their_list_shows(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """The staff list names a case by its ``tracking_sha256`` only (the code is the
    citizen's secret), so staff routes take that too; public routes do not: the
    hash is in the public leaf of opinion.submitted."""
    words = "请公开 2026 年排污费征收明细（按hash处理）"
    code = (await submit(client, org, text=words))["tracking_code"]
    listed = (await client.get(f"{API}/orgs/{org.code}/opinions", headers=org.auth())).json()
    mine = opinions.tracking_sha256(code).hex()
    [item] = [i for i in listed if i["tracking_sha256"] == mine]
    h = item["tracking_sha256"]

    r = await client.get(f"{API}/orgs/{org.code}/opinions/{h}", headers=org.auth())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "submitted" and words in r.text
    case = await event(client, org, h, "accept")
    assert case["status"] == "accepted"
    assert (await public_case(client, code))["status"] == "accepted"  # the same case

    # Not a key to the public, nor to another org's staff.
    assert (await client.get(f"{API}/opinions/{h}")).status_code == 404
    r = await client.post(f"{API}/opinions/{h}/supplement", json={"text": "补充"})
    assert r.status_code == 404, r.text
    other = await make_org()
    r = await client.get(f"{API}/orgs/{other.code}/opinions/{h}", headers=other.auth())
    assert r.status_code == 404, r.text

    held = "SELECT count(*) FROM opinion_submissions WHERE org = $1"
    assert await pool.fetchval(held, org.code) == 1  # the code, for resubmissions
    r = await client.post(f"{API}/orgs/{org.code}/opinions/{h}/erase", headers=org.auth("admin"))
    assert r.status_code == 201, r.text
    assert await pool.fetchval(held, org.code) == 0  # erased with the rest
    r = await client.get(f"{API}/orgs/{org.code}/opinions/{h}", headers=org.auth())
    assert r.status_code == 200 and words not in r.text
