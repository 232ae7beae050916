"""The demo data set, posted through the same append path as any client.

Two bodies: a city environmental protection bureau and a county health bureau.
Every demo entry carries a fixed Idempotency-Key, so loading twice changes
nothing: entries already present are skipped.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import asyncpg
import msgspec

from ledger import access
from ledger.checkpoint import signer_for
from ledger.entries import NewEntry
from ledger.kinds import KINDS
from ledger.logs import sign_due
from ledger.sequencer import append_entries
from ledger.settings import Settings

EPB = ("sz-epb", "示范市环境保护局")
HEALTH = ("qx-health", "示范县卫生局")
BATCH = 500


class ProgressLike(Protocol):
    def __call__(self, n: int) -> None: ...
    def close(self) -> None: ...


def _entry(
    org: str, key: str, kind: str, subject: str, on: dt.date, body: dict[str, Any], **kw: Any
) -> NewEntry:
    return NewEntry(
        org=org,
        kind=kind,
        subject=subject,
        occurred_on=on,
        visibility=kw.get("visibility", "public"),
        body=msgspec.convert(body, KINDS[kind]),
        actor=kw.get("actor", "demo.clerk"),
        idempotency_key=f"demo:{key}",
    )


def _fen(rng: random.Random, low: int, high: int) -> str:
    return f"{rng.randint(low, high)}.{rng.randint(0, 99):02d}"


def _epb_entries(year: int) -> Iterator[NewEntry]:
    org = EPB[0]
    rng = random.Random(f"epb-{year}")
    fund = "PWF"
    yield _entry(
        org,
        f"{org}-{year}-fund",
        "fund.opened",
        f"fund/{fund}",
        dt.date(year, 1, 4),
        {
            "fund_code": fund,
            "name": "排污费专项资金",
            "category": "pollution_levy",
            "currency": "CNY",
        },
    )
    yield _entry(
        org,
        f"{org}-{year}-target",
        "fund.target_set",
        f"fund/{fund}",
        dt.date(year, 1, 5),
        {"fund_code": fund, "year": year, "direction": "collection", "amount": "2550000.00"},
    )
    payers = [
        "示范钢铁有限公司",
        "东方化工股份有限公司",
        "长江水泥厂",
        "华光造纸有限公司",
        "新城热电厂",
    ]
    remaining = 308_000_000  # fen: collections reach 3,080,000.00
    for i in range(24):
        amount = remaining if i == 23 else rng.randint(8_000_000, 17_000_000)
        remaining -= amount
        payer = payers[i % len(payers)]
        yield _entry(
            org,
            f"{org}-{year}-rcpt-{i}",
            "fund.receipt",
            f"fund/{fund}",
            dt.date(year, 1 + i // 2, 10 + i % 2 * 10),
            {
                "fund_code": fund,
                "amount": f"{amount // 100}.{amount % 100:02d}",
                "payer": {"id": f"P{i % len(payers):03d}", "name": payer, "type": "enterprise"},
                "reference": f"排征字〔{year}〕{i + 1:03d}号",
            },
        )
    for i in range(110):
        code = f"XM-{year}-{i + 1:03d}"
        on = dt.date(year, 1 + i % 12, 1 + i % 27)
        if i < 40:
            yield _entry(
                org,
                f"{org}-{year}-proj-{i}",
                "project.registered",
                f"project/{code}",
                on,
                {
                    "project_code": code,
                    "name": f"{payers[i % 5][:4]}污染治理工程{i + 1}期",
                    "category": "污染治理",
                    "location": "示范市高新区",
                    "total_investment": _fen(rng, 500_000, 9_000_000),
                    "funding": [{"source": "企业自筹", "amount": _fen(rng, 100_000, 400_000)}],
                },
            )
        yield _entry(
            org,
            f"{org}-{year}-appr-{i}",
            "project.approval",
            f"project/XM-{year}-{i % 40 + 1:03d}",
            on,
            {
                "project_code": f"XM-{year}-{i % 40 + 1:03d}",
                "approval_type": [
                    "eia",
                    "site_selection",
                    "trial_production",
                    "completion_acceptance",
                    "construction_review",
                ][i % 5],
                "document_no": f"示环审〔{year}〕{i + 1}号",
                "authority": "示范市环境保护局",
                "decision": "同意",
                "decided_on": on.isoformat(),
            },
        )
    yield _entry(
        org,
        f"{org}-{year}-fuel",
        "fund.opened",
        "fund/OFFICE",
        dt.date(year, 1, 6),
        {"fund_code": "OFFICE", "name": "机关运行经费", "category": "other"},
        visibility="internal",
    )


def _health_entries(year: int) -> Iterator[NewEntry]:
    org = HEALTH[0]
    rng = random.Random(f"health-{year}")
    fund = "NCMS"
    yield _entry(
        org,
        f"{org}-{year}-fund",
        "fund.opened",
        f"fund/{fund}",
        dt.date(year, 1, 3),
        {"fund_code": fund, "name": "新型农村合作医疗基金", "category": "rural_coop_medical"},
    )
    towns = ["城关镇", "河口乡", "石桥镇", "柳林乡", "新店镇"]
    for i in range(60):
        yield _entry(
            org,
            f"{org}-{year}-contrib-{i}",
            "fund.receipt",
            f"fund/{fund}",
            dt.date(year, 1 + i // 6, 2 + i % 6),
            {
                "fund_code": fund,
                "amount": _fen(rng, 50_000, 300_000),
                "payer": {
                    "id": f"T{i % 5:02d}",
                    "name": f"{towns[i % 5]}参合农民缴费",
                    "type": "other",
                },
                "reference": f"合医缴〔{year}〕{i + 1}号",
            },
        )


async def load_demo(
    dsn: str,
    settings: Settings,
    *,
    year: int | None = None,
    progress_factory: Callable[[str, int], ProgressLike] | None = None,
) -> str:
    """Load the demo set; entries already present (by their key) are skipped."""
    year = year or dt.date.today().year
    for code, name in (EPB, HEALTH):
        await access.ensure_org(code, name)
    entries = [*_epb_entries(year), *_health_entries(year)]
    conn = await asyncpg.connect(dsn)
    try:
        present = {
            (r["org"], r["key"])
            for r in await conn.fetch(
                "SELECT org, key FROM idempotency_keys WHERE key LIKE 'demo:%'"
            )
        }
        todo = [e for e in entries if (e.org, e.idempotency_key) not in present]
        progress = progress_factory("demo", len(todo)) if progress_factory else None
        for i in range(0, len(todo), BATCH):
            chunk = todo[i : i + BATCH]
            async with conn.transaction():
                await append_entries(conn, chunk)
            if progress:
                progress(len(chunk))
        if progress:
            progress.close()
        await sign_due(conn, signer_for(settings.signing_key, settings.key_name), settings.origin)
    finally:
        await conn.close()
    return f"demo data: {len(todo)} entries loaded, {len(entries) - len(todo)} already present"
