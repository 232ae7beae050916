"""The annual report on government information disclosure (政府信息公开工作年度报告).

Article 49 of the Regulations on Open Government Information (政府信息公开条例,
2019 revision) requires every body to publish, by 31 January, a report on the
previous year's disclosure work. Its tables follow the template the General
Office of the State Council issued in 国办公开办函〔2021〕30号:

- 二、主动公开政府信息情况 (proactive disclosure: rules, normative documents,
  licensing, penalties, enforcement, fees), here followed by an extra table of
  the records this ledger published during the year;
- 三、收到和处理政府信息公开申请情况 (requests by applicant type: 一 new this
  year, 二 carried over from last year, 三 results by outcome and reason with
  (七) 总计, 四 carried into next year). Every column obeys 一 + 二 = 三(七) + 四;
- 四、政府信息公开行政复议、行政诉讼情况 (reconsideration and litigation).

The prose sections (一 总体情况, 五 存在的主要问题及改进情况, 六 其他需要报告的事项)
are written by the body itself and are not generated.

Everything here is pure: plain records in, a JSON-able ``dict`` out
(:func:`build_annual_report`), and a self-contained Chinese HTML page from that
dict (:func:`render_html`). Stable English snake_case keys sit next to the
template's Chinese labels, so the output is machine-readable and faithful.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

__all__ = [
    "APPEAL_KINDS",
    "APPEAL_RESULTS",
    "APPLICANT_TYPES",
    "BASIS",
    "COLUMNS",
    "KIND_LABELS",
    "OUTCOMES",
    "OUTCOME_NUMBERS",
    "REASONS",
    "AppealRecord",
    "ProactiveCounts",
    "RequestRecord",
    "build_annual_report",
    "render_html",
    "validate_outcome",
]

BASIS = "国办公开办函〔2021〕30号"

# Applicant types: the columns of table 三 (without 总计).
APPLICANT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "natural_person": "自然人",
        "commercial": "商业企业",
        "research": "科研机构",
        "public_interest": "社会公益组织",
        "legal_services": "法律服务机构",
        "other_org": "其他",
    }
)
_LEGAL_PERSON_GROUP = "法人或其他组织"
_LEGAL_PERSON_TYPES = ("commercial", "research", "public_interest", "legal_services", "other_org")

# Table 三 columns, in template order.
COLUMNS: tuple[str, ...] = (*APPLICANT_TYPES, "total")
_COLUMN_LABELS: Mapping[str, str] = MappingProxyType({**APPLICANT_TYPES, "total": "总计"})

# Outcome codes: rows (一)…(六) of 三、本年度办理结果.
OUTCOMES: Mapping[str, str] = MappingProxyType(
    {
        "disclosed": "予以公开",
        "partly_disclosed": "部分公开（区分处理的，只计这一情形，不计其他情形）",
        "not_disclosed": "不予公开",
        "cannot_provide": "无法提供",
        "not_processed": "不予处理",
        "other": "其他处理",
    }
)
OUTCOME_NUMBERS: Mapping[str, str] = MappingProxyType(
    {
        "disclosed": "（一）",
        "partly_disclosed": "（二）",
        "not_disclosed": "（三）",
        "cannot_provide": "（四）",
        "not_processed": "（五）",
        "other": "（六）",
    }
)

# Reasons per outcome, in template order (numbered 1., 2., … in the report).
# Outcomes absent here (disclosed, partly_disclosed) take no reason.
REASONS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "not_disclosed": MappingProxyType(
            {
                "state_secret": "属于国家秘密",
                "prohibited_by_law": "其他法律行政法规禁止公开",
                "three_security_one_stability": "危及“三安全一稳定”",
                "third_party_rights": "保护第三方合法权益",
                "internal_affairs": "属于三类内部事务信息",
                "process_information": "属于四类过程性信息",
                "enforcement_files": "属于行政执法案卷",
                "administrative_query": "属于行政查询事项",
            }
        ),
        "cannot_provide": MappingProxyType(
            {
                "not_held": "本机关不掌握相关政府信息",
                "needs_creation": "没有现成信息需要另行制作",
                "unclear_after_supplement": "补正后申请内容仍不明确",
            }
        ),
        "not_processed": MappingProxyType(
            {
                "petition_complaint": "信访举报投诉类申请",
                "repeated": "重复申请",
                "publications": "要求提供公开出版物",
                "excessive": "无正当理由大量反复申请",
                "confirmation": "要求行政机关确认或重新出具已获取信息",
            }
        ),
        "other": MappingProxyType(
            {
                "no_supplement": ("申请人无正当理由逾期不补正、行政机关不再处理其政府信息公开申请"),
                "unpaid_fee": (
                    "申请人逾期未按收费通知要求缴纳费用、行政机关不再处理其政府信息公开申请"
                ),
                "other": "其他",
            }
        ),
    }
)

# Table 四.
APPEAL_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "reconsideration": "行政复议",
        "litigation_direct": "未经复议直接起诉",
        "litigation_after_reconsideration": "复议后起诉",
    }
)
APPEAL_RESULTS: Mapping[str, str] = MappingProxyType(
    {
        "upheld": "结果维持",
        "corrected": "结果纠正",
        "other": "其他结果",
        "pending": "尚未审结",
    }
)

# Chinese names of the ledger's entry kinds, for the table of records published.
KIND_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "fund.opened": "资金账户开设",
        "fund.target_set": "资金年度目标",
        "fund.receipt": "资金收入",
        "fund.disbursement": "资金支出",
        "project.registered": "项目登记",
        "project.approval": "项目审批",
        "project.status": "项目状态",
        "project.budget_amended": "项目预算调整",
        "procurement.tender": "采购公告",
        "procurement.bid": "投标",
        "procurement.award": "采购结果",
        "procurement.contract": "采购合同",
        "procurement.amendment": "采购变更",
        "procurement.cancelled": "采购终止",
        "correction.reversal": "更正冲销",
        "opinion.responded": "意见答复",
        "disclosure.published": "季度公开",
    }
)


def validate_outcome(outcome: str | None, reason: str | None) -> None:
    """Raise ``ValueError`` unless ``(outcome, reason)`` is a row of table 三.

    ``outcome`` None means still in progress, and then there is no reason.
    ``disclosed`` and ``partly_disclosed`` take no reason; the other outcomes
    need one of their own reasons (see :data:`REASONS`).
    """
    if outcome is None:
        if reason is not None:
            raise ValueError("reason given without an outcome")
        return
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}")
    allowed = REASONS.get(outcome)
    if allowed is None:
        if reason is not None:
            raise ValueError(f"outcome {outcome!r} takes no reason")
        return
    if reason not in allowed:
        raise ValueError(
            f"outcome {outcome!r} needs a reason, one of {sorted(allowed)}; got {reason!r}"
        )


@dataclass(frozen=True)
class RequestRecord:
    """One disclosure request (政府信息公开申请).

    ``outcome`` None means not yet decided; then ``decided_on`` is None too.
    A decided request has ``decided_on`` on or after ``received_on``.
    """

    tracking: str
    applicant_type: str
    received_on: dt.date
    outcome: str | None = None
    reason: str | None = None
    decided_on: dt.date | None = None

    def __post_init__(self) -> None:
        if self.applicant_type not in APPLICANT_TYPES:
            raise ValueError(
                f"unknown applicant_type {self.applicant_type!r}; "
                f"expected one of {list(APPLICANT_TYPES)}"
            )
        validate_outcome(self.outcome, self.reason)
        if (self.outcome is None) != (self.decided_on is None):
            raise ValueError("outcome and decided_on go together: both set or both None")
        if self.decided_on is not None and self.decided_on < self.received_on:
            raise ValueError("decided_on is before received_on")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _decimal_text(name: str, value: int | str | Decimal) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = Decimal(value) if isinstance(value, int | Decimal) else Decimal(value.strip())
    except (InvalidOperation, ValueError, AttributeError):
        raise ValueError(f"{name} must be a decimal number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    text = format(number, "f")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class ProactiveCounts:
    """Table 二 (主动公开政府信息情况) and the ledger's own publication counts.

    ``fee_amount_wan`` is in 万元 (ten thousand yuan), given as an int or a decimal
    string. ``ledger_published`` counts, per entry kind, the entries approved for
    publication this year.
    """

    regulations_issued: int = 0
    regulations_repealed: int = 0
    regulations_in_force: int = 0
    normative_documents_issued: int = 0
    normative_documents_repealed: int = 0
    normative_documents_in_force: int = 0
    licensing_decisions: int = 0
    penalty_decisions: int = 0
    enforcement_decisions: int = 0
    fee_amount_wan: int | str | Decimal = 0
    ledger_published: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (
            "regulations_issued",
            "regulations_repealed",
            "regulations_in_force",
            "normative_documents_issued",
            "normative_documents_repealed",
            "normative_documents_in_force",
            "licensing_decisions",
            "penalty_decisions",
            "enforcement_decisions",
        ):
            _check_count(name, getattr(self, name))
        _decimal_text("fee_amount_wan", self.fee_amount_wan)
        for kind, count in self.ledger_published.items():
            if not isinstance(kind, str) or not kind:
                raise ValueError(f"ledger_published keys must be entry kinds, got {kind!r}")
            _check_count(f"ledger_published[{kind!r}]", count)


@dataclass(frozen=True)
class AppealRecord:
    """One administrative reconsideration or lawsuit about disclosure (table 四)."""

    kind: str
    result: str

    def __post_init__(self) -> None:
        if self.kind not in APPEAL_KINDS:
            raise ValueError(f"unknown appeal kind {self.kind!r}; expected {list(APPEAL_KINDS)}")
        if self.result not in APPEAL_RESULTS:
            raise ValueError(
                f"unknown appeal result {self.result!r}; expected {list(APPEAL_RESULTS)}"
            )


# --------------------------------------------------------------------------- building


def _zero() -> dict[str, int]:
    return dict.fromkeys(COLUMNS, 0)


def _count(records: Sequence[RequestRecord]) -> dict[str, int]:
    values = _zero()
    for r in records:
        values[r.applicant_type] += 1
    values["total"] = len(records)
    return values


def _row(
    key: str, number: str, label: str, level: int, values: dict[str, int] | None
) -> dict[str, Any]:
    return {"key": key, "number": number, "label": label, "level": level, "values": values}


def _requests_table(year: int, requests: Sequence[RequestRecord]) -> dict[str, Any]:
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    new = [r for r in requests if r.received_on.year == year]
    carried_over = [
        r
        for r in requests
        if r.received_on < start and (r.decided_on is None or r.decided_on >= start)
    ]
    cohort = new + carried_over
    decided = [r for r in cohort if r.decided_on is not None and start <= r.decided_on <= end]
    carried_forward = [r for r in cohort if r.decided_on is None or r.decided_on > end]

    rows = [
        _row("new", "一、", "本年新收政府信息公开申请数量", 0, _count(new)),
        _row("carried_over", "二、", "上年结转政府信息公开申请数量", 0, _count(carried_over)),
        _row("results", "三、", "本年度办理结果", 0, None),
    ]
    for outcome, label in OUTCOMES.items():
        with_outcome = [r for r in decided if r.outcome == outcome]
        reasons = REASONS.get(outcome)
        key = f"results.{outcome}"
        if reasons is None:
            rows.append(_row(key, OUTCOME_NUMBERS[outcome], label, 1, _count(with_outcome)))
            continue
        rows.append(_row(key, OUTCOME_NUMBERS[outcome], label, 1, None))
        for i, (reason, reason_label) in enumerate(reasons.items(), start=1):
            counted = _count([r for r in with_outcome if r.reason == reason])
            rows.append(_row(f"{key}.{reason}", f"{i}.", reason_label, 2, counted))
    rows.append(_row("results.total", "（七）", "总计", 1, _count(decided)))
    rows.append(_row("carried_forward", "四、", "结转下年度继续办理", 0, _count(carried_forward)))

    columns = [
        {
            "key": c,
            "label": _COLUMN_LABELS[c],
            "group": _LEGAL_PERSON_GROUP if c in _LEGAL_PERSON_TYPES else None,
        }
        for c in COLUMNS
    ]
    return {
        "number": "三",
        "heading": "收到和处理政府信息公开申请情况",
        "note": "本列数据的勾稽关系为：第一项加第二项之和，等于第三项加第四项之和",
        "columns": columns,
        "rows": rows,
    }


def _checks(table: dict[str, Any]) -> dict[str, Any]:
    by_key = {row["key"]: row for row in table["rows"]}
    leaves = [
        row
        for row in table["rows"]
        if row["key"].startswith("results.")
        and row["key"] != "results.total"
        and row["values"] is not None
    ]
    balance = []
    results_total = []
    for c in COLUMNS:
        new = by_key["new"]["values"][c]
        over = by_key["carried_over"]["values"][c]
        total = by_key["results.total"]["values"][c]
        forward = by_key["carried_forward"]["values"][c]
        balance.append(
            {
                "column": c,
                "label": _COLUMN_LABELS[c],
                "new_plus_carried_over": new + over,
                "results_plus_carried_forward": total + forward,
                "holds": new + over == total + forward,
            }
        )
        sub_rows = sum(row["values"][c] for row in leaves)
        results_total.append(
            {
                "column": c,
                "label": _COLUMN_LABELS[c],
                "sum_of_sub_rows": sub_rows,
                "total": total,
                "holds": sub_rows == total,
            }
        )
    column_sums = []
    for row in table["rows"]:
        values = row["values"]
        if values is None:
            continue
        parts = sum(values[c] for c in APPLICANT_TYPES)
        column_sums.append(
            {
                "row": row["key"],
                "sum_of_columns": parts,
                "total": values["total"],
                "holds": parts == values["total"],
            }
        )
    holds = all(item["holds"] for group in (balance, results_total, column_sums) for item in group)
    return {
        "holds": holds,
        "balance": {
            "description": "一 + 二 = 三（七） + 四",
            "label": "第一项加第二项之和，等于第三项加第四项之和",
            "items": balance,
        },
        "results_total": {
            "description": "三（七） = （一）…（六） 各项之和",
            "label": "（七）总计等于（一）至（六）各项之和",
            "items": results_total,
        },
        "column_total": {
            "description": "总计 = 自然人 + 法人或其他组织各列之和",
            "label": "总计列等于各申请人列之和",
            "items": column_sums,
        },
    }


def _proactive_table(proactive: ProactiveCounts) -> dict[str, Any]:
    p = proactive
    decision = [{"key": "decisions", "label": "本年处理决定数量"}]
    return {
        "number": "二",
        "heading": "主动公开政府信息情况",
        "sections": [
            {
                "key": "article_20_1",
                "label": "第二十条第（一）项",
                "columns": [
                    {"key": "issued", "label": "本年制发件数"},
                    {"key": "repealed", "label": "本年废止件数"},
                    {"key": "in_force", "label": "现行有效件数"},
                ],
                "rows": [
                    {
                        "key": "regulations",
                        "label": "规章",
                        "values": {
                            "issued": p.regulations_issued,
                            "repealed": p.regulations_repealed,
                            "in_force": p.regulations_in_force,
                        },
                    },
                    {
                        "key": "normative_documents",
                        "label": "行政规范性文件",
                        "values": {
                            "issued": p.normative_documents_issued,
                            "repealed": p.normative_documents_repealed,
                            "in_force": p.normative_documents_in_force,
                        },
                    },
                ],
            },
            {
                "key": "article_20_5",
                "label": "第二十条第（五）项",
                "columns": decision,
                "rows": [
                    {
                        "key": "licensing",
                        "label": "行政许可",
                        "values": {"decisions": p.licensing_decisions},
                    },
                ],
            },
            {
                "key": "article_20_6",
                "label": "第二十条第（六）项",
                "columns": decision,
                "rows": [
                    {
                        "key": "penalty",
                        "label": "行政处罚",
                        "values": {"decisions": p.penalty_decisions},
                    },
                    {
                        "key": "enforcement",
                        "label": "行政强制",
                        "values": {"decisions": p.enforcement_decisions},
                    },
                ],
            },
            {
                "key": "article_20_8",
                "label": "第二十条第（八）项",
                "columns": [{"key": "amount_wan", "label": "本年收费金额（单位：万元）"}],
                "rows": [
                    {
                        "key": "fees",
                        "label": "行政事业性收费",
                        "values": {"amount_wan": _decimal_text("fee_amount_wan", p.fee_amount_wan)},
                    },
                ],
            },
        ],
    }


def _ledger_table(published: Mapping[str, int]) -> dict[str, Any]:
    rows = [
        {"key": kind, "label": KIND_LABELS.get(kind, kind), "count": published[kind]}
        for kind in sorted(published)
    ]
    return {
        "heading": "本年通过公开台账主动公开的记录",
        "columns": [
            {"key": "label", "label": "记录类型"},
            {"key": "count", "label": "本年公开条数"},
        ],
        "rows": rows,
        "total": sum(published.values()),
    }


def _appeals_table(appeals: Sequence[AppealRecord]) -> dict[str, Any]:
    groups = []
    for kind, label in APPEAL_KINDS.items():
        values = dict.fromkeys(APPEAL_RESULTS, 0)
        for a in appeals:
            if a.kind == kind:
                values[a.result] += 1
        values["total"] = sum(values.values())
        groups.append(
            {
                "key": kind,
                "label": label,
                "parent": None if kind == "reconsideration" else "行政诉讼",
                "values": values,
            }
        )
    return {
        "number": "四",
        "heading": "政府信息公开行政复议、行政诉讼情况",
        "results": [
            *({"key": k, "label": v} for k, v in APPEAL_RESULTS.items()),
            {"key": "total", "label": "总计"},
        ],
        "groups": groups,
    }


def build_annual_report(
    *,
    org: str,
    org_name: str,
    year: int,
    requests: Sequence[RequestRecord],
    proactive: ProactiveCounts,
    appeals: Sequence[AppealRecord],
    as_of: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the year's report tables as a JSON-able dict.

    Table 三, per applicant-type column:

    - 一 new: requests received in ``year``;
    - 二 carried over: received before ``year`` and not decided before 1 January;
    - 三 results: requests of 一 and 二 decided within ``year``, by outcome and
      reason, with (七) 总计;
    - 四 carried forward: requests of 一 and 二 undecided on 31 December.

    Requests received after ``year``, and those both received and decided before
    it, are not counted. ``checks`` reports (never raises) whether
    一 + 二 = 三（七） + 四 holds per column, whether (七) equals the sum of the
    (一)…(六) rows, and whether 总计 equals the sum of the applicant columns.
    """
    if not 1 <= year <= 9999:
        raise ValueError(f"year out of range: {year}")
    requests_table = _requests_table(year, requests)
    return {
        "title": f"{org_name}{year}年政府信息公开工作年度报告",
        "basis": BASIS,
        "org": org,
        "org_name": org_name,
        "year": year,
        "as_of": None if as_of is None else dict(as_of),
        "proactive": _proactive_table(proactive),
        "ledger_published": _ledger_table(proactive.ledger_published),
        "requests": requests_table,
        "checks": _checks(requests_table),
        "appeals": _appeals_table(appeals),
    }


# --------------------------------------------------------------------------- rendering


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC",
  "Microsoft YaHei", sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em;
  color: #222; line-height: 1.5; }
h1 { font-size: 1.5em; text-align: center; }
h2 { font-size: 1.15em; margin-top: 2em; }
p.meta { text-align: center; color: #555; }
table { border-collapse: collapse; width: 100%; margin: 0.8em 0; font-size: 0.95em; }
th, td { border: 1px solid #888; padding: 0.3em 0.5em; }
th { background: #f0f0f0; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.l1 { padding-left: 1.5em; }
td.l2 { padding-left: 3em; }
td.ok { color: #176117; }
td.bad { color: #a00; font-weight: 600; }
dl.as-of dt { font-weight: 600; }
dl.as-of dd { margin: 0 0 0.5em 1.5em; }
pre { white-space: pre-wrap; word-break: break-all; margin: 0; }
p.note { color: #555; font-size: 0.9em; }
""".strip()


def _render_as_of(as_of: Any) -> list[str]:
    if not as_of:
        return []
    out = ["<h2>数据来源</h2>", '<dl class="as-of">']
    if isinstance(as_of, Mapping):
        for key in as_of:
            value = as_of[key]
            text = (
                value
                if isinstance(value, str)
                else json.dumps(value, ensure_ascii=False, default=str)
            )
            out.append(f"<dt>{_e(key)}</dt><dd><pre>{_e(text)}</pre></dd>")
    else:
        out.append(f"<dd><pre>{_e(as_of)}</pre></dd>")
    out.append("</dl>")
    return out


def _render_proactive(table: Mapping[str, Any]) -> list[str]:
    out = [f"<h2>{_e(table['number'])}、{_e(table['heading'])}</h2>", "<table>"]
    for section in table["sections"]:
        columns = section["columns"]
        out.append(f'<tr><th colspan="{len(columns) + 1}">{_e(section["label"])}</th></tr>')
        out.append(
            "<tr><th>信息内容</th>"
            + "".join(f"<th>{_e(c['label'])}</th>" for c in columns)
            + "</tr>"
        )
        for row in section["rows"]:
            cells = "".join(f'<td class="num">{_e(row["values"][c["key"]])}</td>' for c in columns)
            out.append(f"<tr><td>{_e(row['label'])}</td>{cells}</tr>")
    out.append("</table>")
    return out


def _render_ledger(table: Mapping[str, Any]) -> list[str]:
    out = [f"<h2>{_e(table['heading'])}</h2>", "<table>"]
    out.append("<tr>" + "".join(f"<th>{_e(c['label'])}</th>" for c in table["columns"]) + "</tr>")
    for row in table["rows"]:
        label = row["label"] if row["label"] == row["key"] else f"{row['label']}（{row['key']}）"
        out.append(f'<tr><td>{_e(label)}</td><td class="num">{_e(row["count"])}</td></tr>')
    out.append(f'<tr><th>合计</th><td class="num">{_e(table["total"])}</td></tr>')
    out.append("</table>")
    return out


def _render_requests(table: Mapping[str, Any]) -> list[str]:
    columns = table["columns"]
    persons = [c for c in columns if c["group"] is None and c["key"] != "total"]
    grouped = [c for c in columns if c["group"] is not None]
    total = [c for c in columns if c["key"] == "total"]
    out = [f"<h2>{_e(table['number'])}、{_e(table['heading'])}</h2>", "<table>"]
    out.append(
        f'<tr><th colspan="2" rowspan="3">（{_e(table["note"])}）</th>'
        f'<th colspan="{len(columns)}">申请人情况</th></tr>'
    )
    out.append(
        "<tr>"
        + "".join(f'<th rowspan="2">{_e(c["label"])}</th>' for c in persons)
        + (f'<th colspan="{len(grouped)}">{_e(grouped[0]["group"])}</th>' if grouped else "")
        + "".join(f'<th rowspan="2">{_e(c["label"])}</th>' for c in total)
        + "</tr>"
    )
    out.append("<tr>" + "".join(f"<th>{_e(c['label'])}</th>" for c in grouped) + "</tr>")
    ordered = [*persons, *grouped, *total]
    for row in table["rows"]:
        label = f"{row['number']}{row['label']}"
        level = int(row["level"])
        cls = f' class="l{level}"' if level else ""
        if row["values"] is None:
            cells = "".join("<td></td>" for _ in ordered)
        else:
            cells = "".join(f'<td class="num">{_e(row["values"][c["key"]])}</td>' for c in ordered)
        out.append(f'<tr><td colspan="2"{cls}>{_e(label)}</td>{cells}</tr>')
    out.append("</table>")
    return out


def _render_checks(checks: Mapping[str, Any]) -> list[str]:
    overall = "全部成立" if checks["holds"] else "存在不成立的项目，请核对"
    out = ["<h2>勾稽关系核对</h2>", f"<p>核对结果：{_e(overall)}</p>"]
    for key, left, right in (
        ("balance", "一 + 二", "三（七） + 四"),
        ("results_total", "（一）至（六）之和", "（七）总计"),
    ):
        check = checks[key]
        out.append(f"<table><caption>{_e(check['label'])}</caption>")
        out.append(
            f"<tr><th>申请人情况</th><th>{_e(left)}</th><th>{_e(right)}</th><th>结果</th></tr>"
        )
        for item in check["items"]:
            if key == "balance":
                a, b = item["new_plus_carried_over"], item["results_plus_carried_forward"]
            else:
                a, b = item["sum_of_sub_rows"], item["total"]
            verdict = '<td class="ok">成立</td>' if item["holds"] else '<td class="bad">不成立</td>'
            out.append(
                f'<tr><td>{_e(item["label"])}</td><td class="num">{_e(a)}</td>'
                f'<td class="num">{_e(b)}</td>{verdict}</tr>'
            )
        out.append("</table>")
    failing = [item for item in checks["column_total"]["items"] if not item["holds"]]
    verdict = "成立" if not failing else "不成立：" + "、".join(str(i["row"]) for i in failing)
    out.append(f"<p>{_e(checks['column_total']['label'])}：{_e(verdict)}</p>")
    return out


def _render_appeals(table: Mapping[str, Any]) -> list[str]:
    results = table["results"]
    groups = table["groups"]
    direct = [g for g in groups if g["parent"] is None]
    nested = [g for g in groups if g["parent"] is not None]
    n = len(results)
    out = [f"<h2>{_e(table['number'])}、{_e(table['heading'])}</h2>", "<table>"]
    head = "".join(f'<th colspan="{n}" rowspan="2">{_e(g["label"])}</th>' for g in direct)
    if nested:
        head += f'<th colspan="{n * len(nested)}">{_e(nested[0]["parent"])}</th>'
    out.append(f"<tr>{head}</tr>")
    out.append(
        "<tr>" + "".join(f'<th colspan="{n}">{_e(g["label"])}</th>' for g in nested) + "</tr>"
    )
    ordered = [*direct, *nested]
    out.append(
        "<tr>" + "".join(f"<th>{_e(r['label'])}</th>" for _ in ordered for r in results) + "</tr>"
    )
    out.append(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(g["values"][r["key"]])}</td>' for g in ordered for r in results
        )
        + "</tr>"
    )
    out.append("</table>")
    return out


def render_html(report: Mapping[str, Any]) -> str:
    """Render a report from :func:`build_annual_report` as a self-contained HTML page."""
    title = str(report["title"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">依据：{_e(report["basis"])}　机关代码：{_e(report["org"])}'
        f"　年度：{_e(report['year'])}</p>",
        '<p class="note">本页为年度报告的统计表格部分；一、总体情况，五、存在的主要问题及改进情况，'
        "六、其他需要报告的事项由本机关另行撰写。</p>",
    ]
    parts += _render_proactive(report["proactive"])
    parts += _render_ledger(report["ledger_published"])
    parts += _render_requests(report["requests"])
    parts += _render_appeals(report["appeals"])
    parts += _render_checks(report["checks"])
    parts += _render_as_of(report.get("as_of"))
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
