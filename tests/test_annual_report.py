"""The annual report tables (国办公开办函〔2021〕30号): counts, cross-checks and the HTML page."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.annual_report import (
    APPEAL_KINDS,
    APPEAL_RESULTS,
    APPLICANT_TYPES,
    BASIS,
    COLUMNS,
    OUTCOMES,
    REASONS,
    AppealRecord,
    ProactiveCounts,
    RequestRecord,
    build_annual_report,
    render_html,
)

D = dt.date
YEAR = 2025

# Every (outcome, reason) pair the template has a row for.
PAIRS: list[tuple[str, str | None]] = [
    (outcome, reason)
    for outcome in OUTCOMES
    for reason in (list(REASONS[outcome]) if outcome in REASONS else [None])
]


def leaf_key(outcome: str, reason: str | None) -> str:
    return f"results.{outcome}" if reason is None else f"results.{outcome}.{reason}"


def rows(report: dict[str, Any]) -> dict[str, dict[str, int] | None]:
    return {row["key"]: row["values"] for row in report["requests"]["rows"]}


def build(requests: list[RequestRecord], year: int = YEAR, **kw: Any) -> dict[str, Any]:
    return build_annual_report(
        org=kw.pop("org", "demo"),
        org_name=kw.pop("org_name", "示范县生态环境局"),
        year=year,
        requests=requests,
        proactive=kw.pop("proactive", ProactiveCounts()),
        appeals=kw.pop("appeals", []),
        **kw,
    )


def req(
    tracking: str,
    applicant: str,
    received: dt.date,
    outcome: str | None = None,
    reason: str | None = None,
    decided: dt.date | None = None,
) -> RequestRecord:
    return RequestRecord(tracking, applicant, received, outcome, reason, decided)


# ---------------------------------------------------------------- a small hand-made set


def small_set() -> list[RequestRecord]:
    return [
        # received last year
        req("A", "natural_person", D(2024, 12, 10), "disclosed", None, D(2025, 1, 8)),
        req("B", "commercial", D(2024, 11, 20)),  # still open: carried over and forward
        req("C", "research", D(2024, 6, 1), "disclosed", None, D(2024, 7, 1)),  # ignored
        # received this year
        req("D", "natural_person", D(2025, 3, 1), "disclosed", None, D(2025, 3, 20)),
        req("E", "natural_person", D(2025, 4, 1), "partly_disclosed", None, D(2025, 4, 22)),
        req("F", "public_interest", D(2025, 5, 6), "not_disclosed", "state_secret", D(2025, 6, 3)),
        req("G", "legal_services", D(2025, 7, 1), "cannot_provide", "not_held", D(2025, 7, 9)),
        req("H", "other_org", D(2025, 8, 1), "not_processed", "repeated", D(2025, 8, 2)),
        req("I", "natural_person", D(2025, 9, 1), "other", "no_supplement", D(2025, 10, 30)),
        req("J", "research", D(2025, 12, 20), "disclosed", None, D(2026, 1, 10)),  # forward
        req("K", "commercial", D(2025, 12, 28)),  # forward
        # received next year: ignored
        req("L", "natural_person", D(2026, 1, 5), "disclosed", None, D(2026, 1, 6)),
    ]


def vals(**kw: int) -> dict[str, int]:
    out = dict.fromkeys(COLUMNS, 0)
    out.update(kw)
    out["total"] = sum(v for k, v in out.items() if k != "total")
    return out


def test_small_set_expected_numbers() -> None:
    r = rows(build(small_set()))
    assert r["new"] == vals(
        natural_person=3, commercial=1, research=1, public_interest=1, legal_services=1, other_org=1
    )
    assert r["carried_over"] == vals(natural_person=1, commercial=1)
    assert r["results"] is None  # a heading, as in the template
    assert r["results.disclosed"] == vals(natural_person=2)
    assert r["results.partly_disclosed"] == vals(natural_person=1)
    assert r["results.not_disclosed"] is None
    assert r["results.not_disclosed.state_secret"] == vals(public_interest=1)
    assert r["results.not_disclosed.third_party_rights"] == vals()
    assert r["results.cannot_provide.not_held"] == vals(legal_services=1)
    assert r["results.not_processed.repeated"] == vals(other_org=1)
    assert r["results.other.no_supplement"] == vals(natural_person=1)
    assert r["results.total"] == vals(
        natural_person=4, public_interest=1, legal_services=1, other_org=1
    )
    assert r["carried_forward"] == vals(commercial=2, research=1)
    assert r["new"]["total"] + r["carried_over"]["total"] == 10
    assert r["results.total"]["total"] + r["carried_forward"]["total"] == 10


def test_small_set_checks_hold_per_column() -> None:
    checks = build(small_set())["checks"]
    assert checks["holds"] is True
    balance = checks["balance"]["items"]
    assert [item["column"] for item in balance] == list(COLUMNS)
    assert all(item["holds"] for item in balance)
    assert {i["column"]: i["new_plus_carried_over"] for i in balance}["total"] == 10
    assert all(item["holds"] for item in checks["results_total"]["items"])
    assert all(item["holds"] for item in checks["column_total"]["items"])


def test_row_order_and_labels_follow_the_template() -> None:
    table = build([])["requests"]
    labels = [f"{row['number']}{row['label']}" for row in table["rows"]]
    assert labels[:3] == [
        "一、本年新收政府信息公开申请数量",
        "二、上年结转政府信息公开申请数量",
        "三、本年度办理结果",
    ]
    assert labels[3:5] == [
        "（一）予以公开",
        "（二）部分公开（区分处理的，只计这一情形，不计其他情形）",
    ]
    assert labels[5:14] == [
        "（三）不予公开",
        "1.属于国家秘密",
        "2.其他法律行政法规禁止公开",
        "3.危及“三安全一稳定”",
        "4.保护第三方合法权益",
        "5.属于三类内部事务信息",
        "6.属于四类过程性信息",
        "7.属于行政执法案卷",
        "8.属于行政查询事项",
    ]
    assert labels[14] == "（四）无法提供"
    assert labels[18] == "（五）不予处理"
    assert labels[24] == "（六）其他处理"
    assert labels[-2:] == ["（七）总计", "四、结转下年度继续办理"]
    assert [c["label"] for c in table["columns"]] == [
        "自然人",
        "商业企业",
        "科研机构",
        "社会公益组织",
        "法律服务机构",
        "其他",
        "总计",
    ]
    assert [c["group"] for c in table["columns"]][1:6] == ["法人或其他组织"] * 5


# ---------------------------------------------------------------- every outcome and reason


def full_set() -> list[RequestRecord]:
    """Every applicant type × every outcome row, plus carry-overs in and out."""
    out: list[RequestRecord] = []
    n = 0
    for applicant in APPLICANT_TYPES:
        for outcome, reason in PAIRS:
            n += 1
            out.append(req(f"N{n}", applicant, D(2025, 2, 3), outcome, reason, D(2025, 3, 3)))
            # carried over from 2024 and decided in 2025
            out.append(req(f"O{n}", applicant, D(2024, 12, 1), outcome, reason, D(2025, 1, 20)))
        # carried over from 2024 and still open at the end of 2025
        out.append(req(f"P{applicant}", applicant, D(2024, 12, 15)))
        # received in 2025, decided in 2026
        out.append(
            req(f"Q{applicant}", applicant, D(2025, 12, 22), "disclosed", None, D(2026, 1, 5))
        )
        # received and decided in 2024: not in the 2025 report
        out.append(req(f"R{applicant}", applicant, D(2024, 3, 1), "disclosed", None, D(2024, 4, 1)))
    return out


def test_every_outcome_row_and_the_cross_check() -> None:
    report = build(full_set())
    r = rows(report)
    per_type = len(PAIRS)
    for outcome, reason in PAIRS:
        values = r[leaf_key(outcome, reason)]
        assert values is not None
        for applicant in APPLICANT_TYPES:
            assert values[applicant] == 2, (outcome, reason, applicant)
        assert values["total"] == 2 * len(APPLICANT_TYPES)
    for applicant in APPLICANT_TYPES:
        assert r["new"] is not None and r["new"][applicant] == per_type + 1
        assert r["carried_over"] is not None and r["carried_over"][applicant] == per_type + 1
        assert r["results.total"] is not None and r["results.total"][applicant] == 2 * per_type
        assert r["carried_forward"] is not None and r["carried_forward"][applicant] == 2
    for item in report["checks"]["balance"]["items"]:
        assert item["holds"], item
        assert item["new_plus_carried_over"] == item["results_plus_carried_forward"]
    assert all(i["holds"] for i in report["checks"]["results_total"]["items"])
    assert report["checks"]["holds"] is True


def test_the_check_is_computed_not_assumed() -> None:
    # A valid record can never break the balance; forge one past validation to show
    # the check really compares the rows (received in 2025, "decided" in 2024).
    bad = req("X", "research", D(2025, 2, 1), "disclosed", None, D(2025, 2, 2))
    object.__setattr__(bad, "decided_on", D(2024, 12, 31))
    report = build([*small_set(), bad])
    by_column = {i["column"]: i for i in report["checks"]["balance"]["items"]}
    assert by_column["research"]["holds"] is False
    assert by_column["total"]["holds"] is False
    assert by_column["natural_person"]["holds"] is True
    assert report["checks"]["holds"] is False
    assert "不成立" in render_html(report)


# ---------------------------------------------------------------- property: random sets

DAY0 = D(2024, 1, 1)


@st.composite
def request_records(draw: st.DrawFn) -> RequestRecord:
    received = DAY0 + dt.timedelta(days=draw(st.integers(0, 3 * 366 - 1)))
    applicant = draw(st.sampled_from(list(APPLICANT_TYPES)))
    tracking = draw(st.text("abcdef0123456789", min_size=4, max_size=8))
    if draw(st.booleans()):
        return req(tracking, applicant, received)
    outcome, reason = draw(st.sampled_from(PAIRS))
    decided = received + dt.timedelta(days=draw(st.integers(0, 500)))
    return req(tracking, applicant, received, outcome, reason, decided)


def independent_counts(records: list[RequestRecord], year: int) -> Counter[tuple[str, str]]:
    """Count rows per (row key, applicant) by the year of each date, not by date ranges."""
    counts: Counter[tuple[str, str]] = Counter()
    for r in records:
        ry = r.received_on.year
        dy = None if r.decided_on is None else r.decided_on.year
        is_new = ry == year
        is_over = ry < year and (dy is None or dy >= year)
        if not (is_new or is_over):
            continue
        keys = ["new" if is_new else "carried_over"]
        if dy == year:
            assert r.outcome is not None
            keys += [leaf_key(r.outcome, r.reason), "results.total"]
        else:
            keys.append("carried_forward")
        for key in keys:
            counts[key, r.applicant_type] += 1
            counts[key, "total"] += 1
    return counts


@settings(max_examples=200, deadline=None)
@given(st.lists(request_records(), max_size=60), st.sampled_from([2024, 2025, 2026]))
def test_random_sets_balance_and_match_independent_counts(
    records: list[RequestRecord], year: int
) -> None:
    report = build(records, year=year)
    expected = independent_counts(records, year)
    for row in report["requests"]["rows"]:
        if row["values"] is None:
            continue
        for column in COLUMNS:
            assert row["values"][column] == expected[row["key"], column], (row["key"], column)
    for item in report["checks"]["balance"]["items"]:
        assert item["holds"], item
    assert report["checks"]["holds"] is True
    r = rows(report)
    for column in COLUMNS:
        lhs = r["new"][column] + r["carried_over"][column]  # type: ignore[index]
        rhs = r["results.total"][column] + r["carried_forward"][column]  # type: ignore[index]
        assert lhs == rhs


# ---------------------------------------------------------------- tables 二 and 四


def test_appeals_table() -> None:
    appeals = [
        AppealRecord("reconsideration", "upheld"),
        AppealRecord("reconsideration", "upheld"),
        AppealRecord("reconsideration", "corrected"),
        AppealRecord("reconsideration", "pending"),
        AppealRecord("litigation_direct", "other"),
        AppealRecord("litigation_direct", "upheld"),
        AppealRecord("litigation_after_reconsideration", "corrected"),
    ]
    table = build([], appeals=appeals)["appeals"]
    groups = {g["key"]: g for g in table["groups"]}
    assert list(groups) == list(APPEAL_KINDS)
    assert groups["reconsideration"]["values"] == {
        "upheld": 2,
        "corrected": 1,
        "other": 0,
        "pending": 1,
        "total": 4,
    }
    assert groups["reconsideration"]["parent"] is None
    assert groups["litigation_direct"]["values"] == {
        "upheld": 1,
        "corrected": 0,
        "other": 1,
        "pending": 0,
        "total": 2,
    }
    assert groups["litigation_direct"]["parent"] == "行政诉讼"
    assert groups["litigation_after_reconsideration"]["values"]["corrected"] == 1
    assert groups["litigation_after_reconsideration"]["values"]["total"] == 1
    assert [r["label"] for r in table["results"]] == [
        "结果维持",
        "结果纠正",
        "其他结果",
        "尚未审结",
        "总计",
    ]


def test_proactive_table_and_ledger_records() -> None:
    proactive = ProactiveCounts(
        regulations_issued=1,
        normative_documents_issued=4,
        normative_documents_repealed=2,
        normative_documents_in_force=37,
        licensing_decisions=120,
        penalty_decisions=15,
        enforcement_decisions=3,
        fee_amount_wan="12.50",
        ledger_published={"fund.receipt": 30, "procurement.award": 2, "x.custom": 1},
    )
    report = build([], proactive=proactive)
    sections = {s["key"]: s for s in report["proactive"]["sections"]}
    assert [s["label"] for s in sections.values()] == [
        "第二十条第（一）项",
        "第二十条第（五）项",
        "第二十条第（六）项",
        "第二十条第（八）项",
    ]
    normative = sections["article_20_1"]["rows"][1]
    assert normative["label"] == "行政规范性文件"
    assert normative["values"] == {"issued": 4, "repealed": 2, "in_force": 37}
    assert sections["article_20_5"]["rows"][0]["values"] == {"decisions": 120}
    assert [r["values"] for r in sections["article_20_6"]["rows"]] == [
        {"decisions": 15},
        {"decisions": 3},
    ]
    assert sections["article_20_8"]["rows"][0]["values"] == {"amount_wan": "12.50"}
    ledger = report["ledger_published"]
    assert ledger["heading"] == "本年通过公开台账主动公开的记录"
    assert [(r["key"], r["count"]) for r in ledger["rows"]] == [
        ("fund.receipt", 30),
        ("procurement.award", 2),
        ("x.custom", 1),
    ]
    assert ledger["rows"][0]["label"] == "资金收入"
    assert ledger["total"] == 33
    assert list(report)[:7] == ["title", "basis", "org", "org_name", "year", "as_of", "proactive"]
    assert list(report).index("ledger_published") == list(report).index("proactive") + 1


def test_header_fields_json_and_determinism() -> None:
    as_of = {"log": "demo/2025", "tree_size": 42, "checkpoint": "gongkai/demo/2025\n42\nabc=\n"}
    a = build(small_set(), as_of=as_of, appeals=[AppealRecord("reconsideration", "upheld")])
    b = build(
        list(reversed(small_set())),
        as_of=dict(as_of),
        appeals=[AppealRecord("reconsideration", "upheld")],
    )
    assert a["title"] == "示范县生态环境局2025年政府信息公开工作年度报告"
    assert a["basis"] == BASIS == "国办公开办函〔2021〕30号"
    assert a["org"] == "demo" and a["year"] == 2025
    assert a["as_of"] == as_of
    assert build([])["as_of"] is None
    encoded = json.dumps(a, ensure_ascii=False, sort_keys=False)
    assert encoded == json.dumps(b, ensure_ascii=False, sort_keys=False)
    assert json.loads(encoded) == a
    assert render_html(a) == render_html(b)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("outcome", "reason", "decided"),
    [
        ("granted", None, D(2025, 2, 1)),  # unknown outcome
        ("disclosed", "state_secret", D(2025, 2, 1)),  # disclosed takes no reason
        ("not_disclosed", None, D(2025, 2, 1)),  # needs a reason
        ("not_disclosed", "not_held", D(2025, 2, 1)),  # reason of another outcome
        ("cannot_provide", "repeated", D(2025, 2, 1)),
        (None, "state_secret", None),  # reason without outcome
        ("disclosed", None, None),  # outcome without a date
        (None, None, D(2025, 2, 1)),  # date without an outcome
        ("disclosed", None, D(2025, 1, 1)),  # decided before received
    ],
)
def test_invalid_requests_are_refused(
    outcome: str | None, reason: str | None, decided: dt.date | None
) -> None:
    with pytest.raises(ValueError):
        req("T", "natural_person", D(2025, 1, 10), outcome, reason, decided)


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        req("T", "individual", D(2025, 1, 10))
    with pytest.raises(ValueError):
        AppealRecord("lawsuit", "upheld")
    with pytest.raises(ValueError):
        AppealRecord("reconsideration", "won")
    with pytest.raises(ValueError):
        ProactiveCounts(penalty_decisions=-1)
    with pytest.raises(ValueError):
        ProactiveCounts(fee_amount_wan="twelve")
    with pytest.raises(ValueError):
        ProactiveCounts(fee_amount_wan="NaN")
    with pytest.raises(ValueError):
        ProactiveCounts(ledger_published={"fund.receipt": -3})


# ---------------------------------------------------------------- HTML


def test_html_has_title_basis_and_every_label() -> None:
    report = build(
        full_set(),
        as_of={"log": "demo/2025", "tree_size": 7},
        proactive=ProactiveCounts(ledger_published={"fund.receipt": 3}),
        appeals=[AppealRecord("litigation_direct", "pending")],
    )
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert html.escape(report["title"]) in page
    assert BASIS in page
    for row in report["requests"]["rows"]:
        assert html.escape(f"{row['number']}{row['label']}") in page, row["label"]
    for column in report["requests"]["columns"]:
        assert column["label"] in page
    assert "法人或其他组织" in page
    assert "本列数据的勾稽关系为：第一项加第二项之和，等于第三项加第四项之和" in page
    for heading in (
        "二、主动公开政府信息情况",
        "三、收到和处理政府信息公开申请情况",
        "四、政府信息公开行政复议、行政诉讼情况",
        "本年通过公开台账主动公开的记录",
        "勾稽关系核对",
    ):
        assert heading in page
    for section in report["proactive"]["sections"]:
        assert section["label"] in page
        for row in section["rows"]:
            assert row["label"] in page
        for column in section["columns"]:
            assert column["label"] in page
    for label in [*APPEAL_KINDS.values(), *APPEAL_RESULTS.values(), "行政诉讼"]:
        assert label in page
    assert "资金收入" in page
    assert "demo/2025" in page
    assert "不成立" not in page and "成立" in page


def test_html_escapes_a_hostile_org_name() -> None:
    hostile = '<script>alert("x")</script>&<img src=x onerror=1>'
    report = build(
        small_set(),
        org="<b>o</b>",
        org_name=hostile,
        as_of={"checkpoint": "<i>cp</i>"},
        proactive=ProactiveCounts(ledger_published={"<svg onload=1>": 1}),
    )
    page = render_html(report)
    assert "<script" not in page
    assert "<img" not in page and "<svg" not in page and "<b>o" not in page and "<i>cp" not in page
    assert html.escape(f"{hostile}2025年政府信息公开工作年度报告") in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
