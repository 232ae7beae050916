"""The demo data set, posted through the same path as any client's entries.

Two bodies: a city environmental protection bureau (示范市环境保护局) with its
pollution-levy fund, pollution-control subsidies to named projects, about 110
construction-project approvals and tenders with bids, awards and contracts; and
a county health bureau (示范县卫生局) with the rural cooperative medical fund.
Most public entries are approved by a reviewer, a few are withheld, a few are
internal, a few stay pending.

Every demo entry carries a fixed Idempotency-Key (``demo:…``), so loading twice
changes nothing: entries already present are skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable
from typing import Any, Protocol

import asyncpg
import msgspec

from ledger import access
from ledger.checkpoint import signer_for
from ledger.entries import NewEntry
from ledger.kinds import KINDS
from ledger.logs import sign_due
from ledger.posting import post_entries
from ledger.review import review_entry
from ledger.settings import Settings

EPB = ("sz-epb", "示范市环境保护局")
HEALTH = ("qx-health", "示范县卫生局")
CLERK = "demo.clerk"
REVIEWER = "demo.reviewer"
BATCH = 500

ENTERPRISES = [
    ("91330100MA001", "示范钢铁有限公司"),
    ("91330100MA002", "东方化工股份有限公司"),
    ("91330100MA003", "长江水泥厂"),
    ("91330100MA004", "华光造纸有限公司"),
    ("91330100MA005", "新城热电厂"),
    ("91330100MA006", "绿源印染有限公司"),
]
CONTRACTORS = [
    ("91330100JZ01", "示范环保工程有限公司"),
    ("91330100JZ02", "清源水务科技股份有限公司"),
    ("91330100JZ03", "蓝天大气治理有限公司"),
    ("91330100JZ04", "华东环境监测设备有限公司"),
]
APPROVAL_TYPES = ["site_selection", "eia", "construction_review", "trial_production",
                  "completion_acceptance"]  # fmt: skip


class ProgressLike(Protocol):
    def __call__(self, n: int) -> None: ...
    def close(self) -> None: ...


@dataclasses.dataclass
class Plan:
    """Entries of one body, and what the reviewer decides for each (by key)."""

    org: str
    year: int
    entries: list[NewEntry] = dataclasses.field(default_factory=list)
    decisions: dict[str, tuple[str, str | None, str | None]] = dataclasses.field(
        default_factory=dict
    )

    def add(
        self,
        key: str,
        kind: str,
        subject: str,
        on: dt.date,
        body: dict[str, Any],
        *,
        visibility: str = "public",
        review: str = "approve",
        reason: str | None = None,
        basis: str | None = None,
    ) -> None:
        full_key = f"demo:{self.org}:{self.year}:{key}"
        self.entries.append(
            NewEntry(
                org=self.org,
                kind=kind,
                subject=subject,
                occurred_on=on,
                visibility=visibility,
                body=msgspec.convert(body, KINDS[kind]),
                actor=CLERK,
                idempotency_key=full_key,
            )
        )
        if visibility == "public" and review != "pending":
            self.decisions[full_key] = (review, reason, basis)


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _date(year: int, rng: random.Random, last_month: int) -> dt.date:
    return dt.date(year, rng.randint(1, last_month), rng.randint(1, 28))


def _epb(year: int, last_month: int) -> Plan:
    plan = Plan(EPB[0], year)
    rng = random.Random(f"epb-{year}")
    y = year
    plan.add("fund-pwf", "fund.opened", "fund/PWF", dt.date(y, 1, 4),
             {"fund_code": "PWF", "name": "排污费专项资金", "category": "pollution_levy"})  # fmt: skip
    plan.add("target-pwf", "fund.target_set", "fund/PWF", dt.date(y, 1, 5),
             {"fund_code": "PWF", "year": y, "direction": "collection",
              "amount": "2550000.00"})  # fmt: skip
    plan.add("fund-sub", "fund.opened", "fund/WZBZ", dt.date(y, 1, 4),
             {"fund_code": "WZBZ", "name": "污染治理项目补助资金", "category": "subsidy"})  # fmt: skip
    plan.add("fund-office", "fund.opened", "fund/OFFICE", dt.date(y, 1, 4),
             {"fund_code": "OFFICE", "name": "机关运行经费（车辆燃油、办公费）",
              "category": "other"}, visibility="internal")  # fmt: skip

    # Assessments per enterprise (排污费核定): reductions and a deferral among them.
    for n, (pid, name) in enumerate(ENTERPRISES):
        plan.add(f"assess-{n}", "fund.levy_assessed", "fund/PWF", dt.date(y, 1, 8),
                 {"fund_code": "PWF", "period": str(y), "amount": _yuan(58_000_000 - n * 1_000_000),
                  "payer": {"id": pid, "name": name, "type": "enterprise"},
                  "reference": f"示环核字〔{y}〕{n + 1:03d}号",
                  **({"reduction": "30000.00", "reduction_basis": "《排污费征收使用管理条例》第十五条"}
                     if n == 2 else {}),
                  **({"deferred_until": f"{y}-12-31"} if n == 4 else {})})  # fmt: skip
    # Pollution levy collected from 24 assessments: 3,080,000.00 in all.
    remaining = 308_000_000
    for i in range(24):
        fen = remaining if i == 23 else rng.randint(9_000_000, 16_000_000)
        remaining -= fen
        pid, name = ENTERPRISES[i % len(ENTERPRISES)]
        on = dt.date(y, 1 + i * last_month // 24, 10 + i % 3 * 5)
        plan.add(f"levy-{i}", "fund.receipt", "fund/PWF", on,
                 {"fund_code": "PWF", "amount": _yuan(fen),
                  "payer": {"id": pid, "name": name, "type": "enterprise"},
                  "reference": f"示环征字〔{y}〕{i + 1:03d}号"},
                 review="withhold" if i == 7 else "pending" if i == 23 else "approve",
                 reason="third_party_rights" if i == 7 else None,
                 basis="《中华人民共和国政府信息公开条例》第十五条" if i == 7 else None)  # fmt: skip
    plan.add("transfer-sub", "fund.receipt", "fund/WZBZ", dt.date(y, 2, 1),
             {"fund_code": "WZBZ", "amount": "1800000.00",
              "payer": {"id": "CZJ", "name": "示范市财政局", "type": "government"},
              "reference": f"示财建〔{y}〕12号"})  # fmt: skip
    plan.add("office-budget", "fund.receipt", "fund/OFFICE", dt.date(y, 1, 6),
             {"fund_code": "OFFICE", "amount": "200000.00",
              "payer": {"id": "CZJ", "name": "示范市财政局", "type": "government"},
              "reference": f"示财行〔{y}〕3号"}, visibility="internal")  # fmt: skip
    for i in range(6):
        plan.add(f"fuel-{i}", "fund.disbursement", "fund/OFFICE", _date(y, rng, last_month),
                 {"fund_code": "OFFICE", "amount": _yuan(rng.randint(80_000, 300_000)),
                  "payee": {"id": "SYSH", "name": "中石化示范分公司", "type": "enterprise"},
                  "purpose": "公务用车燃油费", "reference": f"办支〔{y}〕{i + 1}号"},
                 visibility="internal")  # fmt: skip

    # 40 pollution-control projects, 110 approvals, status changes.
    for p in range(40):
        code = f"XM-{y}-{p + 1:03d}"
        ent = ENTERPRISES[p % len(ENTERPRISES)][1]
        on = dt.date(y, 1 + p * (last_month - 1) // 40, 1 + p % 20)
        plan.add(f"proj-{p}", "project.registered", f"project/{code}", on,
                 {"project_code": code, "name": f"{ent}{['脱硫', '污水处理', '除尘', '在线监测'][p % 4]}改造工程",
                  "category": "污染治理", "location": f"示范市{['高新区', '经开区', '滨江区', '北城区'][p % 4]}",
                  "total_investment": _yuan(rng.randint(50_000_000, 900_000_000)),
                  "funding": [{"source": "企业自筹", "amount": _yuan(rng.randint(10_000_000, 40_000_000))}]})  # fmt: skip
    for a in range(110):
        p = a % 40
        code = f"XM-{y}-{p + 1:03d}"
        stage = a // 40
        on = dt.date(y, min(last_month, 1 + p * (last_month - 1) // 40 + stage), 1 + a % 27)
        plan.add(f"appr-{a}", "project.approval", f"project/{code}", on,
                 {"project_code": code, "approval_type": APPROVAL_TYPES[stage + (p % 2)],
                  "document_no": f"示环{['选', '审', '建', '试', '验'][stage + (p % 2)]}〔{y}〕{a + 1}号",
                  "authority": "示范市环境保护局", "decision": "同意",
                  "decided_on": on.isoformat()})  # fmt: skip
        if stage == 0:
            plan.add(f"status-{p}-a", "project.status", f"project/{code}", on,
                     {"project_code": code, "status": "approved"})  # fmt: skip
        if stage == 1:
            plan.add(f"status-{p}-b", "project.status", f"project/{code}", on,
                     {"project_code": code, "status": "under_construction"})  # fmt: skip
    # Subsidies to named projects.
    for s in range(12):
        code = f"XM-{y}-{s * 3 + 1:03d}"
        plan.add(f"subsidy-{s}", "fund.disbursement", "fund/WZBZ",
                 dt.date(y, min(last_month, 3 + s * (last_month - 3) // 12), 15),
                 {"fund_code": "WZBZ", "amount": _yuan(rng.randint(5_000_000, 15_000_000)),
                  "payee": {"id": ENTERPRISES[s % 6][0], "name": ENTERPRISES[s % 6][1],
                            "type": "enterprise"},
                  "project_code": code, "purpose": "污染治理项目补助",
                  "reference": f"示环补〔{y}〕{s + 1}号"})  # fmt: skip

    # Tenders with several bids each, awards and contracts.
    for t in range(8):
        tid = f"ZC-{y}-{t + 1:03d}"
        start = dt.date(y, min(last_month, 2 + t), 1)
        end = start + dt.timedelta(days=20)
        value = rng.randint(20_000_000, 90_000_000)
        method = "direct" if t == 7 else "open"
        plan.add(f"tender-{t}", "procurement.tender", f"tender/{tid}", start,
                 {"tender_id": tid, "title": ["环境空气自动监测站运维服务", "水质在线监测设备采购",
                                               "污染源普查技术服务", "环境执法车辆采购",
                                               "重点企业排污口规范化整治", "环境监测实验室设备",
                                               "危险废物处置服务", "应急监测物资"][t],
                  "method": method, "value": {"amount": _yuan(value)},
                  "period": {"start": start.isoformat(), "end": end.isoformat()},
                  "buyer": {"id": "SZEPB", "name": EPB[1], "type": "government"},
                  "project_code": f"XM-{y}-{t + 2:03d}" if t < 3 else None},
                 review="withhold" if t == 5 else "approve",
                 reason="process_information" if t == 5 else None,
                 basis="《中华人民共和国政府信息公开条例》第十六条" if t == 5 else None)  # fmt: skip
        bidders = CONTRACTORS[: 1 if t == 6 else 3 + t % 2] if method == "open" else []
        bids = []
        for n, (bid_id, bid_name) in enumerate(bidders):
            amount = value - rng.randint(0, value // 10)
            bids.append((amount, bid_id, bid_name))
            plan.add(f"bid-{t}-{n}", "procurement.bid", f"tender/{tid}",
                     start + dt.timedelta(days=3 + n),
                     {"tender_id": tid, "bidder": {"id": bid_id, "name": bid_name,
                                                   "type": "enterprise"},
                      "amount": _yuan(amount),
                      "submitted_on": (start + dt.timedelta(days=3 + n)).isoformat()})  # fmt: skip
        if t == 4:
            continue  # still open for bids
        amount, sid, sname = min(bids) if bids else (value, *CONTRACTORS[0])
        award_on = end + dt.timedelta(days=7)
        plan.add(f"award-{t}", "procurement.award", f"tender/{tid}", award_on,
                 {"tender_id": tid, "supplier": {"id": sid, "name": sname, "type": "enterprise"},
                  "amount": _yuan(amount), "date": award_on.isoformat()})  # fmt: skip
        if t != 3:
            sign_on = award_on + dt.timedelta(days=10)
            plan.add(f"contract-{t}", "procurement.contract", f"tender/{tid}", sign_on,
                     {"tender_id": tid, "contract_id": f"HT-{y}-{t + 1:03d}",
                      "supplier": {"id": sid, "name": sname, "type": "enterprise"},
                      "amount": _yuan(amount), "signed_on": sign_on.isoformat()})  # fmt: skip
    return plan


def _health(year: int, last_month: int) -> Plan:
    plan = Plan(HEALTH[0], year)
    rng = random.Random(f"health-{year}")
    y = year
    plan.add("fund-ncms", "fund.opened", "fund/NCMS", dt.date(y, 1, 3),
             {"fund_code": "NCMS", "name": "新型农村合作医疗基金",
              "category": "rural_coop_medical"})  # fmt: skip
    plan.add("target-ncms", "fund.target_set", "fund/NCMS", dt.date(y, 1, 3),
             {"fund_code": "NCMS", "year": y, "direction": "spending",
              "amount": "6000000.00"})  # fmt: skip
    towns = ["城关镇", "河口乡", "石桥镇", "柳林乡", "新店镇"]
    for i in range(30):
        plan.add(f"contrib-{i}", "fund.receipt", "fund/NCMS", dt.date(y, 1 + i // 10, 2 + i % 20),
                 {"fund_code": "NCMS", "amount": _yuan(rng.randint(15_000_000, 30_000_000)),
                  "payer": {"id": f"XZ{i % 5:02d}", "name": f"{towns[i % 5]}参合农民个人缴费",
                            "type": "other"},
                  "reference": f"合医缴〔{y}〕{i + 1}号"})  # fmt: skip
    for i in range(8):
        plan.add(f"subsidy-{i}", "fund.receipt", "fund/NCMS", dt.date(y, 2 + i, 5),
                 {"fund_code": "NCMS", "amount": _yuan(rng.randint(40_000_000, 60_000_000)),
                  "payer": {"id": "XCZ", "name": "示范县财政局（各级财政补助）",
                            "type": "government"},
                  "reference": f"县财社〔{y}〕{i + 1}号"})  # fmt: skip
    hospitals = [("YY01", "示范县人民医院"), ("YY02", "示范县中医院"), ("YY03", "城关镇卫生院")]
    for i in range(60):
        hid, hname = hospitals[i % 3]
        plan.add(f"reimb-{i}", "fund.disbursement", "fund/NCMS",
                 dt.date(y, min(last_month, 2 + i * (last_month - 2) // 60), 1 + i % 27),
                 {"fund_code": "NCMS", "amount": _yuan(rng.randint(3_000_000, 9_000_000)),
                  "payee": {"id": hid, "name": hname, "type": "institution"},
                  "purpose": "参合农民住院费用补偿（按月结算）",
                  "reference": f"合医补〔{y}〕{i + 1}号"},
                 review="pending" if i >= 57 else "approve")  # fmt: skip
    return plan


async def load_demo(
    dsn: str,
    settings: Settings,
    *,
    year: int | None = None,
    progress_factory: Callable[[str, int], ProgressLike] | None = None,
) -> str:
    """Load the demo set; entries already present (by their key) are skipped."""
    today = dt.date.today()
    year = year or today.year
    # Nothing dated in the future: this year's demo runs up to last month.
    last_month = max(1, today.month - 1) if year == today.year else 12
    for code, name in (EPB, HEALTH):
        await access.ensure_org(code, name)
    plans = [_epb(year, last_month), _health(year, last_month)]
    conn = await asyncpg.connect(dsn)
    loaded = skipped = 0
    try:
        present = {
            r["key"]: (r["log_year"], r["log_index"])
            for r in await conn.fetch(
                "SELECT key, log_year, log_index FROM idempotency_keys WHERE key LIKE 'demo:%'"
            )
        }
        total = sum(len(p.entries) + len(p.decisions) for p in plans)
        progress = progress_factory("demo", total) if progress_factory else None
        for plan in plans:
            # Funds outlive years: a fund opened by an earlier year's demo stays open.
            funds = {
                r["fund_code"]
                for r in await conn.fetch("SELECT fund_code FROM funds WHERE org = $1", plan.org)
            }
            todo = [
                e
                for e in plan.entries
                if e.idempotency_key not in present
                and not (e.kind == "fund.opened" and getattr(e.body, "fund_code", None) in funds)
            ]
            for e in plan.entries:
                if e.kind == "fund.opened" and e.idempotency_key not in present:
                    if getattr(e.body, "fund_code", None) in funds:
                        plan.decisions.pop(e.idempotency_key or "", None)
            skipped += len(plan.entries) - len(todo)
            for i in range(0, len(todo), BATCH):
                chunk = todo[i : i + BATCH]
                receipts = await post_entries(conn, chunk)
                for entry, receipt in zip(chunk, receipts, strict=True):
                    assert entry.idempotency_key is not None
                    present[entry.idempotency_key] = (int(receipt.log[-4:]), receipt.index)
                loaded += len(chunk)
                if progress:
                    progress(len(chunk))
            reviews = []
            for key, (decision, reason, basis) in plan.decisions.items():
                review_key = f"{key}:review"
                if review_key in present:
                    skipped += 1
                    continue
                target_year, target_index = present[key]
                entry = review_entry(
                    org=plan.org,
                    year=target_year,
                    index=target_index,
                    decision="approve" if decision == "approve" else "withhold",
                    reason=reason,
                    legal_basis=basis,
                    reviewer=REVIEWER,
                    today=today,
                )
                reviews.append(dataclasses.replace(entry, idempotency_key=review_key))
            for i in range(0, len(reviews), BATCH):
                await post_entries(conn, reviews[i : i + BATCH])
                loaded += len(reviews[i : i + BATCH])
                if progress:
                    progress(len(reviews[i : i + BATCH]))
        if progress:
            progress.close()
        await sign_due(conn, signer_for(settings.signing_key, settings.key_name), settings.origin)
    finally:
        await conn.close()
    return f"demo data: {loaded} entries loaded, {skipped} already present"
