"""The OCDS export (ledger.ocds) against the official OCDS 1.1.5 schemas, offline.

The schemas come from ``$GONGKAI_CONFORMANCE_DIR/ocds-1.1.5`` (default: ``shared/conformance``
beside the repository). They are draft-04 schemas that refer to each other by URL; a
``referencing`` registry maps those URLs to the local files, so nothing is fetched.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT4

from ledger.ocds import TAGS, build_release_package, ocds_amount

CONFORMANCE_DIR = Path(
    os.environ.get("GONGKAI_CONFORMANCE_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "conformance"
)
OCDS_DIR = CONFORMANCE_DIR / "ocds-1.1.5"

LOG = "sz-epb/2026"
PREFIX = "ocds-gk0001"
BUYER = {"id": "SZEPB", "name": "示范市生态环境局", "type": "government"}
A = {"id": "91440300A", "name": "示范环境监测技术有限公司", "type": "enterprise"}
B = {"id": "91440300B", "name": "华南环保科技股份有限公司", "type": "enterprise"}
C = {"id": "91440300C", "name": "绿源检测服务有限公司", "type": "enterprise"}
D = {"id": "91440300D", "name": "应急物资供应有限公司", "type": "enterprise"}


def leaf(index: int, kind: str, occurred_on: str, body: dict[str, Any]) -> dict[str, Any]:
    """A leaf shaped as ledger.sequencer.build_leaf makes it."""
    tid = body.get("tender_id", "x")
    return {
        "v": 1,
        "log": LOG,
        "index": index,
        "kind": kind,
        "subject": f"tender/{tid}" if kind.startswith("procurement.") else "fund/SUB",
        "occurred_on": occurred_on,
        "recorded_at": f"{occurred_on}T0{index % 10}:15:00.{index * 1111:06d}Z",
        "actor": "clerk-1",
        "visibility": "public",
        "idempotency_key": None,
        "salt": f"{index:032x}",
        "body": body,
    }


def tender(
    tid: str, method: str, amount: str, start: str, end: str, **extra: Any
) -> dict[str, Any]:
    return {
        "tender_id": tid,
        "title": f"{tid} 环境监测设备采购",
        "method": method,
        "value": {"amount": amount, "currency": "CNY"},
        "period": {"start": start, "end": end},
        "buyer": BUYER,
        **extra,
    }


def sequence() -> list[dict[str, Any]]:
    """Three processes: an open tender with 3 bids, an amendment, award and contract;
    a selective tender that is cancelled; a direct award without bids. Other kinds
    are interleaved, as in a real log."""
    fund = {"fund_code": "SUB", "name": "污染治理补助资金", "category": "subsidy"}
    return [
        leaf(0, "fund.opened", "2026-02-20", fund),
        leaf(1, "procurement.tender", "2026-03-01",
             tender("ZC-2026-001", "open", "3080000.00", "2026-03-01", "2026-03-21",
                    project_code="XM-2026-001")),
        leaf(2, "procurement.bid", "2026-03-04",
             {"tender_id": "ZC-2026-001", "bidder": A, "amount": "2980000.00",
              "submitted_on": "2026-03-04"}),
        leaf(3, "procurement.tender", "2026-03-05",
             tender("ZC-2026-002", "selective", "1234567.89", "2026-03-05", "2026-03-25")),
        leaf(4, "procurement.bid", "2026-03-06",
             {"tender_id": "ZC-2026-001", "bidder": B, "amount": "2950000.50",
              "submitted_on": "2026-03-06"}),
        leaf(5, "procurement.amendment", "2026-03-10",
             {"tender_id": "ZC-2026-001", "rationale": "延长投标截止时间",
              "changes": {"period": {"start": "2026-03-01", "end": "2026-03-31"}}}),
        leaf(6, "procurement.bid", "2026-03-12",
             {"tender_id": "ZC-2026-001", "bidder": C, "amount": "3010000.00",
              "submitted_on": "2026-03-12"}),
        leaf(7, "fund.receipt", "2026-03-13",
             {"fund_code": "SUB", "amount": "500000.00", "payer": BUYER, "reference": "R-1"}),
        leaf(8, "procurement.cancelled", "2026-03-15",
             {"tender_id": "ZC-2026-002", "reason": "采购需求发生重大变化，终止本次采购"}),
        leaf(9, "procurement.award", "2026-04-07",
             {"tender_id": "ZC-2026-001", "supplier": B, "amount": "2950000.50",
              "date": "2026-04-07"}),
        leaf(10, "procurement.tender", "2026-04-08",
             tender("ZC-2026-003", "direct", "480000.00", "2026-04-08", "2026-04-08")),
        leaf(11, "procurement.award", "2026-04-09",
             {"tender_id": "ZC-2026-003", "supplier": D, "amount": "479999.99",
              "date": "2026-04-09"}),
        leaf(12, "procurement.contract", "2026-04-17",
             {"tender_id": "ZC-2026-001", "contract_id": "HT-2026-001", "supplier": B,
              "amount": "2950000.50", "signed_on": "2026-04-17"}),
        leaf(13, "procurement.contract", "2026-04-19",
             {"tender_id": "ZC-2026-003", "contract_id": "HT-2026-002", "supplier": D,
              "amount": "479999.99", "signed_on": "2026-04-19"}),
    ]  # fmt: skip


def build(leaves: Any, prefix: str = PREFIX) -> dict[str, Any]:
    return build_release_package(
        leaves,
        ocid_prefix=prefix,
        publisher="示范市生态环境局",
        uri="https://gongkai.example.cn/api/v1/orgs/sz-epb/procurement/ocds?year=2026",
        published_date="2026-12-31T16:00:00Z",
    )


def releases_of(package: dict[str, Any], tid: str) -> list[dict[str, Any]]:
    return [r for r in package["releases"] if r["ocid"] == f"{PREFIX}-{tid}"]


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    if not CONFORMANCE_DIR.is_dir():
        pytest.skip(
            f"conformance directory {CONFORMANCE_DIR} does not exist; "
            "set GONGKAI_CONFORMANCE_DIR to the folder holding ocds-1.1.5/"
        )
    schemas = [json.loads(p.read_text("utf-8")) for p in sorted(OCDS_DIR.glob("*.json"))]
    by_url = {s.get("$id") or s["id"]: s for s in schemas}
    release_schema = json.loads((OCDS_DIR / "release-schema.json").read_text("utf-8"))
    assert (release_schema.get("$id") or release_schema["id"]) in by_url
    registry: Registry[Any] = Registry().with_resources(
        (url, DRAFT4.create_resource(s)) for url, s in by_url.items()
    )
    package_schema = json.loads((OCDS_DIR / "release-package-schema.json").read_text("utf-8"))
    Draft4Validator.check_schema(package_schema)
    checker = FormatChecker()
    # Without rfc3339-validator, jsonschema silently skips "date-time": make that loud.
    assert "date-time" in checker.checkers, "install rfc3339-validator to check date-times"
    return Draft4Validator(package_schema, registry=registry, format_checker=checker)


def problems(validator: Draft4Validator, package: dict[str, Any]) -> list[str]:
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(package)
    )


def test_package_is_valid_ocds_1_1_5(validator: Draft4Validator) -> None:
    package = build(sequence())
    assert problems(validator, package) == []
    assert package["version"] == "1.1"
    assert len(package["releases"]) == 12  # every procurement leaf, nothing else
    # Round-trips through JSON unchanged (plain JSON types only).
    assert json.loads(json.dumps(package, ensure_ascii=False)) == package


def test_validator_really_checks_formats_and_references(validator: Draft4Validator) -> None:
    package = build(sequence())
    bad = copy.deepcopy(package)
    bad["releases"][0]["date"] = "2026-02-30T08:00:00Z"
    bad["releases"][1]["tender"]["procurementMethod"] = "auction"
    bad["releases"][2]["tender"]["value"]["amount"] = "3080000.00"
    found = problems(validator, bad)
    assert any(p.startswith("releases/0/date:") for p in found), found
    assert any(p.startswith("releases/1/tender/procurementMethod:") for p in found), found
    assert any(p.startswith("releases/2/tender/value/amount:") for p in found), found


def test_release_dates_are_the_recorded_at_instants(validator: Draft4Validator) -> None:
    leaves = sequence()
    package = build(leaves)
    recorded = [x["recorded_at"] for x in leaves if x["kind"].startswith("procurement.")]
    assert [r["date"] for r in package["releases"]] == recorded
    assert package["releases"][0]["date"] == "2026-03-01T01:15:00.001111Z"
    first = package["releases"][0]["tender"]["tenderPeriod"]
    assert first == {
        "startDate": "2026-03-01T00:00:00+08:00",
        "endDate": "2026-03-21T23:59:59+08:00",
    }


def test_deterministic() -> None:
    one = build(sequence())
    two = build(iter(copy.deepcopy(sequence())))  # any iterable, fresh objects
    assert one == two
    dump = json.dumps(one, ensure_ascii=False, sort_keys=True).encode()
    assert dump == json.dumps(two, ensure_ascii=False, sort_keys=True).encode()
    assert json.dumps(one, ensure_ascii=False) == json.dumps(two, ensure_ascii=False)


def test_ocid_prefix_is_configurable() -> None:
    package = build(sequence(), prefix="ocds-abc123")
    assert {r["ocid"] for r in package["releases"]} == {
        "ocds-abc123-ZC-2026-001",
        "ocds-abc123-ZC-2026-002",
        "ocds-abc123-ZC-2026-003",
    }
    with pytest.raises(ValueError):
        build(sequence(), prefix="")


def test_release_ids_are_log_and_index_in_log_order() -> None:
    package = build(sequence())
    ids = [r["id"] for r in package["releases"]]
    assert ids == [f"{LOG}-{i}" for i in (1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13)]
    assert len(set(ids)) == len(ids)


def test_tags_per_kind() -> None:
    leaves = [x for x in sequence() if x["kind"].startswith("procurement.")]
    package = build(leaves)
    assert [r["tag"] for r in package["releases"]] == [[TAGS[x["kind"]]] for x in leaves]
    assert TAGS == {
        "procurement.tender": "tender",
        "procurement.bid": "tenderUpdate",
        "procurement.award": "award",
        "procurement.contract": "contract",
        "procurement.amendment": "tenderAmendment",
        "procurement.cancelled": "tenderCancellation",
    }
    assert all(r["initiationType"] == "tender" for r in package["releases"])


def test_open_tender_with_bids_amendment_award_and_contract() -> None:
    releases = releases_of(build(sequence()), "ZC-2026-001")
    assert [r["tag"][0] for r in releases] == [
        "tender", "tenderUpdate", "tenderUpdate", "tenderAmendment", "tenderUpdate",
        "award", "contract",
    ]  # fmt: skip
    last = releases[-1]
    t = last["tender"]
    assert t["status"] == "complete"
    assert t["procurementMethod"] == "open"
    assert t["title"] == "ZC-2026-001 环境监测设备采购"
    assert t["numberOfTenderers"] == 3
    assert [x["id"] for x in t["tenderers"]] == [A["id"], B["id"], C["id"]]
    # The amendment moved the deadline, and says so.
    assert t["tenderPeriod"]["endDate"] == "2026-03-31T23:59:59+08:00"
    (amendment,) = t["amendments"]
    assert amendment["rationale"] == "延长投标截止时间"
    assert amendment["releaseID"] == f"{LOG}-5"
    assert amendment["amendsReleaseID"] == f"{LOG}-4"
    assert json.loads(amendment["description"]) == {
        "period": {"start": "2026-03-01", "end": "2026-03-31"}
    }
    assert releases[1]["tender"]["tenderPeriod"]["endDate"] == "2026-03-21T23:59:59+08:00"
    # Parties and roles.
    roles = {p["id"]: p["roles"] for p in last["parties"]}
    assert roles == {
        BUYER["id"]: ["buyer"],
        A["id"]: ["tenderer"],
        B["id"]: ["tenderer", "supplier"],
        C["id"]: ["tenderer"],
    }
    assert last["buyer"] == {"id": BUYER["id"], "name": BUYER["name"]}
    assert last["planning"] == {"budget": {"projectID": "XM-2026-001"}}
    (award,) = last["awards"]
    assert award["status"] == "active"
    assert award["date"] == "2026-04-07T00:00:00+08:00"
    assert award["suppliers"] == [{"id": B["id"], "name": B["name"]}]
    (contract,) = last["contracts"]
    assert contract["id"] == "HT-2026-001"
    assert contract["status"] == "active"
    assert contract["dateSigned"] == "2026-04-17T00:00:00+08:00"
    # Before the award the tender is still active.
    assert releases[4]["tender"]["status"] == "active"


def test_cancelled_tender() -> None:
    releases = releases_of(build(sequence()), "ZC-2026-002")
    assert [r["tag"] for r in releases] == [["tender"], ["tenderCancellation"]]
    assert releases[0]["tender"]["status"] == "active"
    t = releases[1]["tender"]
    assert t["status"] == "cancelled"
    assert t["procurementMethod"] == "selective"
    (doc,) = t["documents"]
    assert doc["documentType"] == "cancellationDetails"
    assert doc["description"] == "采购需求发生重大变化，终止本次采购"
    assert doc["datePublished"] == releases[1]["date"]


def test_direct_award_without_bids() -> None:
    releases = releases_of(build(sequence()), "ZC-2026-003")
    assert [r["tag"] for r in releases] == [["tender"], ["award"], ["contract"]]
    t = releases[-1]["tender"]
    assert t["procurementMethod"] == "direct"
    assert "tenderers" not in t and "numberOfTenderers" not in t
    roles = {p["id"]: p["roles"] for p in releases[-1]["parties"]}
    assert roles == {BUYER["id"]: ["buyer"], D["id"]: ["supplier"]}


def test_contract_award_id_references_an_award_of_the_same_release() -> None:
    package = build(sequence())
    contracts = 0
    for release in package["releases"]:
        awards = {a["id"]: a for a in release.get("awards", [])}
        parties = {p["id"] for p in release.get("parties", [])}
        for contract in release.get("contracts", []):
            contracts += 1
            award = awards[contract["awardID"]]
            assert award["status"] == "active"
            assert award["value"] == contract["value"]
        for award in awards.values():
            assert {s["id"] for s in award["suppliers"]} <= parties
    assert contracts == 2  # the contract releases of ZC-2026-001 and ZC-2026-003
    last = releases_of(package, "ZC-2026-001")[-1]
    assert last["contracts"][0]["awardID"] == f"ZC-2026-001-award-{LOG}-9"


def walk_values(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if set(node) == {"amount", "currency"}:
            yield node
        for child in node.values():
            yield from walk_values(child)
    elif isinstance(node, list):
        for child in node:
            yield from walk_values(child)


def test_amounts_are_numbers_equal_to_the_decimal_strings() -> None:
    package = build(sequence())
    values = list(walk_values(package))
    assert values
    for value in values:
        assert type(value["amount"]) in (int, float)
        assert value["currency"] == "CNY"
    by_id = {r["id"]: r for r in package["releases"]}
    cases = {
        f"{LOG}-1": (by_id[f"{LOG}-1"]["tender"]["value"]["amount"], "3080000.00"),
        f"{LOG}-3": (by_id[f"{LOG}-3"]["tender"]["value"]["amount"], "1234567.89"),
        f"{LOG}-9": (by_id[f"{LOG}-9"]["awards"][0]["value"]["amount"], "2950000.50"),
        f"{LOG}-13": (by_id[f"{LOG}-13"]["contracts"][0]["value"]["amount"], "479999.99"),
    }
    for number, text in cases.values():
        assert Decimal(repr(number)) == Decimal(text)
        assert Decimal(json.dumps(number)) == Decimal(text)
    assert type(by_id[f"{LOG}-1"]["tender"]["value"]["amount"]) is int
    assert json.dumps(by_id[f"{LOG}-3"]["tender"]["value"]["amount"]) == "1234567.89"


@pytest.mark.parametrize(
    ("text", "number"),
    [("0.00", 0), ("0.01", 0.01), ("0.10", 0.1), ("3080000.00", 3080000),
     ("999999999999.99", 999999999999.99), ("123456789012.34", 123456789012.34)],
)  # fmt: skip
def test_ocds_amount(text: str, number: float) -> None:
    assert ocds_amount(text) == number
    assert Decimal(repr(ocds_amount(text))) == Decimal(text)


@pytest.mark.parametrize("text", ["", "1e3", "NaN", "1.234", "1,000.00", " 1.00"])
def test_ocds_amount_refuses_non_decimals(text: str) -> None:
    with pytest.raises(ValueError):
        ocds_amount(text)


def test_reversals_and_withheld_leaves(validator: Draft4Validator) -> None:
    """A withheld tender and award leave gaps; a reversed award is cancelled, and a
    contract then refers to the award that replaced it."""
    leaves = [
        # index 0 (the tender) and 3 (a bid) were withheld: not given.
        leaf(1, "procurement.bid", "2026-05-02",
             {"tender_id": "ZC-2026-009", "bidder": A, "amount": "100.00",
              "submitted_on": "2026-05-02"}),
        leaf(2, "procurement.bid", "2026-05-03",
             {"tender_id": "ZC-2026-009", "bidder": B, "amount": "90.00",
              "submitted_on": "2026-05-03"}),
        leaf(4, "procurement.award", "2026-05-20",
             {"tender_id": "ZC-2026-009", "supplier": A, "amount": "100.00",
              "date": "2026-05-20"}),
        leaf(5, "correction.reversal", "2026-05-21",
             {"target_log": LOG, "target_index": 4, "reason": "评审结果录入错误"}),
        leaf(6, "correction.reversal", "2026-05-21",
             {"target_log": LOG, "target_index": 1, "reason": "投标人撤回"}),
        leaf(7, "procurement.award", "2026-05-22",
             {"tender_id": "ZC-2026-009", "supplier": B, "amount": "90.00",
              "date": "2026-05-22"}),
        leaf(8, "procurement.contract", "2026-05-30",
             {"tender_id": "ZC-2026-009", "contract_id": "HT-9", "supplier": B,
              "amount": "90.00", "signed_on": "2026-05-30"}),
        leaf(9, "correction.reversal", "2026-05-31",  # not about procurement: ignored
             {"target_log": LOG, "target_index": 0, "reason": "x"}),
        # A contract whose award was withheld.
        leaf(10, "procurement.contract", "2026-06-01",
             {"tender_id": "ZC-2026-010", "contract_id": "HT-10", "supplier": C,
              "amount": "5000.00", "signed_on": "2026-06-01"}),
    ]  # fmt: skip
    package = build(leaves)
    assert problems(validator, package) == []
    releases = releases_of(package, "ZC-2026-009")
    assert [r["tag"][0] for r in releases] == [
        "tenderUpdate", "tenderUpdate", "award", "awardCancellation", "tenderUpdate",
        "award", "contract",
    ]  # fmt: skip
    assert releases[2]["tender"]["status"] == "complete"
    assert releases[3]["tender"]["status"] == "active"
    assert releases[3]["awards"][0]["status"] == "cancelled"
    assert releases[4]["tender"]["numberOfTenderers"] == 1
    assert [t["id"] for t in releases[4]["tender"]["tenderers"]] == [B["id"]]
    last = releases[-1]
    assert "buyer" not in last and "title" not in last["tender"]
    assert [a["status"] for a in last["awards"]] == ["cancelled", "active"]
    assert last["contracts"][0]["awardID"] == last["awards"][1]["id"]
    roles = {p["id"]: p["roles"] for p in last["parties"]}
    assert roles == {A["id"]: ["supplier"], B["id"]: ["tenderer", "supplier"]}
    (orphan,) = releases_of(package, "ZC-2026-010")
    (stand_in,) = orphan["awards"]
    assert orphan["contracts"][0]["awardID"] == stand_in["id"] == "ZC-2026-010-award-for-HT-10"
    assert stand_in["suppliers"] == [{"id": C["id"], "name": C["name"]}]


def test_leaves_out_of_log_order_are_refused() -> None:
    leaves = sequence()
    leaves[2], leaves[4] = leaves[4], leaves[2]
    with pytest.raises(ValueError, match="not in log order"):
        build(leaves)


def test_no_procurement_gives_an_empty_release_list() -> None:
    package = build([x for x in sequence() if not x["kind"].startswith("procurement.")])
    assert package["releases"] == []
