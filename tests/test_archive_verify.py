"""Tests for archive/verify.py, the standalone verifier shipped in every year-end bundle.

The bags here are built by a compact builder in this file from the ledger's own
tree, checkpoint and canonical modules, so the verifier is checked against the
definitions it must agree with, not against itself.
"""

from __future__ import annotations

import base64
import collections
import csv
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bagit
import frictionless
import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from archive import verify as V
from ledger.annual_report import (
    APPEAL_KINDS,
    APPEAL_RESULTS,
    AppealRecord,
    ProactiveCounts,
    RequestRecord,
    build_annual_report,
)
from ledger.canonical import canonical_bytes
from ledger.checkpoint import Checkpoint, NoteSigner
from ledger.kinds import KINDS, SYSTEM_KINDS
from ledger.ocds import _REVERSAL_TAGS, TAGS, build_release_package
from ledger.tree import consistency_proof, leaf_hash, root_from_leaf_hashes

ROOT_DIR = Path(__file__).resolve().parent.parent
VERIFY_PY = ROOT_DIR / "archive" / "verify.py"
ORG, YEAR, ORIGIN = "demo-county", 2026, "gongkai.local"
ORG_NAME = "示范县人民政府"
LOG = f"{ORG}/{YEAR}"

# --------------------------------------------------------------------------------------
# a compact bundle builder
# --------------------------------------------------------------------------------------

BUYER = {"id": "demo-county-gov", "name": "Demo County Government", "type": "government"}


def _specs(disclosure_sha: str, q2_sha: str) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(kind, subject, occurred_on, visibility, body) of the synthetic log, in index order."""
    return [
        ("fund.opened", "fund:PL-01", "2026-01-02", "public",
         {"fund_code": "PL-01", "name": "排污费专项资金", "category": "pollution_levy",
          "currency": "CNY", "allow_overdraft": False}),
        ("fund.receipt", "fund:PL-01", "2026-01-15", "public",
         {"fund_code": "PL-01", "amount": "100000.00", "reference": "R-1",
          "payer": {"id": "acme", "name": "Acme Chemicals", "type": "enterprise"}}),
        ("fund.receipt", "fund:PL-01", "2026-02-03", "public",
         {"fund_code": "PL-01", "amount": "2500.50", "reference": "R-2",
          "payer": {"id": "beta", "name": "Beta \"Dyes\", Ltd", "type": "enterprise"}}),
        ("fund.disbursement", "fund:PL-01", "2026-02-20", "public",
         {"fund_code": "PL-01", "amount": "30000.00", "reference": "D-1",
          "purpose": "River dredging", "project_code": "P-1",
          "payee": {"id": "river-co", "name": "River Works", "type": "enterprise"}}),
        ("correction.reversal", "fund:PL-01", "2026-03-05", "public",
         {"target_log": LOG, "target_index": 2, "reason": "Duplicate receipt"}),
        ("procurement.tender", "tender:T-1", "2026-03-10", "public",
         {"tender_id": "T-1", "title": "Road, \"phase 1\"", "method": "open",
          "value": {"amount": "500000.00", "currency": "CNY"},
          "period": {"start": "2026-03-10", "end": "2026-04-10"}, "buyer": BUYER}),
        ("procurement.bid", "tender:T-1", "2026-03-20", "public",
         {"tender_id": "T-1", "amount": "480000.00", "submitted_on": "2026-03-20",
          "bidder": {"id": "b1", "name": "Builder One"}}),
        ("procurement.bid", "tender:T-1", "2026-03-21", "public",
         {"tender_id": "T-1", "amount": "470000.00", "submitted_on": "2026-03-21",
          "bidder": {"id": "b2", "name": "Builder Two"}}),
        ("procurement.bid", "tender:T-1", "2026-03-22", "public",
         {"tender_id": "T-1", "amount": "465000.00", "submitted_on": "2026-03-22",
          "bidder": {"id": "b2", "name": "Builder Two"}}),
        ("procurement.award", "tender:T-1", "2026-04-15", "public",
         {"tender_id": "T-1", "amount": "465000.00", "date": "2026-04-15",
          "supplier": {"id": "b2", "name": "Builder Two"}}),
        ("procurement.contract", "tender:T-1", "2026-04-20", "public",
         {"tender_id": "T-1", "contract_id": "C-1", "amount": "465000.00",
          "signed_on": "2026-04-20", "supplier": {"id": "b2", "name": "Builder Two"}}),
        ("procurement.tender", "tender:T-2", "2026-05-01", "public",
         {"tender_id": "T-2", "title": "Office chairs", "method": "direct",
          "value": {"amount": "12000.00", "currency": "CNY"},
          "period": {"start": "2026-05-01", "end": "2026-05-10"}, "buyer": BUYER}),
        ("procurement.cancelled", "tender:T-2", "2026-05-05", "public",
         {"tender_id": "T-2", "reason": "No longer needed"}),
        ("fund.receipt", "fund:PL-01", "2026-06-30", "internal",
         {"fund_code": "PL-01", "amount": "7.05", "reference": "R-3",
          "payer": {"id": "gamma", "name": "Gamma", "type": "enterprise"}}),
        ("disclosure.published", "disclosure:2026-Q1", "2026-04-05", "public",
         {"period": "2026-Q1", "summary_sha256": disclosure_sha, "tree_size": 5}),
        ("opinion.submitted", f"opinion:{TRACKING}", "2026-07-01", "public",
         {"tracking_sha256": TRACKING, "category": "opinion", "applicant_type": "citizen",
          "received_on": "2026-07-01", "due_on": "2026-07-29", "due_estimated": False,
          "commitment": hashlib.sha256(OPINION_SALT + canonical_bytes(OPINION)).hexdigest()}),
        ("opinion.accepted", f"opinion:{TRACKING}", "2026-07-02", "public",
         {"tracking_sha256": TRACKING}),
        ("disclosure.published", "disclosure:2026-Q2", "2026-07-05", "public",
         {"period": "2026-Q2", "summary_sha256": q2_sha, "tree_size": 13}),
    ]  # fmt: skip


# A citizen's opinion: its words and contact, committed to by the submission's leaf.
TRACKING = hashlib.sha256(b"GK-TRACKING").hexdigest()
OPINION = {"text": "请公开排污费使用明细", "contact": {"name": "张三", "phone": "13800000000"}}
OPINION_SALT = bytes(range(16))


def _opinion_lines(leaves: list[dict[str, Any]], variant: str) -> bytes:
    out = b""
    for leaf in leaves:
        if not leaf["kind"].startswith("opinion."):
            continue
        line = {k: leaf[k] for k in ("index", "kind", "occurred_on", "body")}
        if variant == "full" and leaf["kind"] == "opinion.submitted":
            line["personal_data"] = {"salt": OPINION_SALT.hex(), "data": OPINION}
        out += canonical_bytes(line) + b"\n"
    return out


# In the public variant these are carried as index and hash only: an internal
# receipt and a withheld bid.
PUBLIC_HIDDEN = frozenset({7, 13})


def _report(
    leaves: list[dict[str, Any]], hidden: frozenset[int], as_of: dict[str, Any]
) -> dict[str, Any]:
    """The annual report as the close makes it: published are the entries the public
    variant carries in full (those not ``hidden``) of the kinds a review decides."""
    published = collections.Counter(
        leaf["kind"]
        for leaf in leaves
        if leaf["kind"] not in SYSTEM_KINDS
        and leaf["visibility"] == "public"
        and leaf["index"] not in hidden
    )
    return build_annual_report(
        org=ORG,
        org_name=ORG_NAME,
        year=YEAR,
        requests=[RequestRecord("r1", "natural_person", dt.date(2026, 3, 1), "disclosed",
                                None, dt.date(2026, 3, 20)),
                  RequestRecord("r2", "commercial", dt.date(2026, 12, 1))],
        proactive=ProactiveCounts(
            licensing_decisions=published["project.approval"], ledger_published=published
        ),
        appeals=[AppealRecord("reconsideration", "upheld")],
        as_of=as_of,
    )  # fmt: skip


def _ocds(leaves: list[dict[str, Any]], hidden: frozenset[int], variant: str) -> dict[str, Any]:
    """The package as the builder makes it, from the leaves carried in full."""
    carried = [leaf for leaf in leaves if leaf["index"] not in hidden]
    procurement = [
        leaf
        for leaf in carried
        if leaf["kind"].startswith("procurement.") or leaf["kind"] == "correction.reversal"
    ]
    return build_release_package(
        procurement,
        ocid_prefix="ocds-gk0001",
        publisher=ORG_NAME,
        uri=f"urn:gongkai:{ORG}:{YEAR}:ocds:{variant}",
        published_date=max(
            (p["recorded_at"] for p in procurement), default=f"{YEAR}-12-31T00:00:00Z"
        ),
    )


@dataclass
class Bundle:
    path: Path
    signer: NoteSigner
    leaves: list[dict[str, Any]]


def _leaf(index: int, spec: tuple[str, str, str, str, dict[str, Any]]) -> dict[str, Any]:
    kind, subject, occurred_on, visibility, body = spec
    return {
        "v": 1,
        "log": LOG,
        "index": index,
        "kind": kind,
        "subject": subject,
        "occurred_on": occurred_on,
        "recorded_at": f"{occurred_on}T08:00:{index:02d}.000000Z",
        "actor": "clerk-1",
        "visibility": visibility,
        "idempotency_key": None if index % 2 else f"key-{index}",
        "salt": hashlib.md5(str(index).encode()).hexdigest(),
        "body": body,
    }


def _write_manifests(bag: Path) -> None:
    """(Re)write Payload-Oxum and both manifests, as the builder (or an attacker) would."""
    files = sorted(p for p in (bag / "data").rglob("*") if p.is_file())
    rels = [p.relative_to(bag).as_posix() for p in files]
    total = sum(p.stat().st_size for p in files)
    info = (bag / "bag-info.txt").read_text().splitlines()
    info = [f"Payload-Oxum: {total}.{len(files)}" if x.startswith("Payload-Oxum") else x
            for x in info]  # fmt: skip
    (bag / "bag-info.txt").write_text("\n".join(info) + "\n")
    manifest = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {r}\n"
        for p, r in zip(files, rels, strict=True)
    )
    (bag / "manifest-sha256.txt").write_text(manifest)
    tags = "".join(
        f"{hashlib.sha256((bag / t).read_bytes()).hexdigest()}  {t}\n"
        for t in ("bag-info.txt", "bagit.txt", "manifest-sha256.txt")
    )
    (bag / "tagmanifest-sha256.txt").write_text(tags)


def build_bundle(
    parent: Path,
    variant: str = "full",
    signer: NoteSigner | None = None,
    *,
    extra: Sequence[tuple[str, str, str, str, dict[str, Any]]] = (),
    hidden: frozenset[int] = PUBLIC_HIDDEN,
) -> Bundle:
    """The synthetic bag; ``extra`` leaves go after the specs' (before year.closed),
    and the public variant carries the ``hidden`` indexes as hash only."""
    signer = signer or NoteSigner(Ed25519PrivateKey.generate(), ORIGIN)
    disclosure = canonical_bytes({"period": "2026-Q1", "funds": [{"PL-01": "72500.50"}]})
    q2 = canonical_bytes({"period": "2026-Q2", "funds": [{"PL-01": "72500.50"}]})
    specs = _specs(hashlib.sha256(disclosure).hexdigest(), hashlib.sha256(q2).hexdigest())
    specs += extra
    leaves = [_leaf(i, s) for i, s in enumerate(specs)]
    hashes = [leaf_hash(canonical_bytes(x)) for x in leaves]
    closed = _leaf(
        len(leaves),
        ("year.closed", f"log:{LOG}", "2026-12-31", "public",
         {"size": len(leaves), "root": root_from_leaf_hashes(hashes).hex()}),
    )  # fmt: skip
    leaves.append(closed)
    hashes.append(leaf_hash(canonical_bytes(closed)))
    n, root = len(leaves), root_from_leaf_hashes(hashes)
    origin = f"{ORIGIN}/{LOG}"

    bag = parent / f"gongkai-{ORG}-{YEAR}"
    data = bag / "data"
    (data / "disclosures").mkdir(parents=True)
    (data / "summaries").mkdir()
    (data / "procurement").mkdir()

    entries: list[dict[str, Any]] = []
    for i, (leaf, h) in enumerate(zip(leaves, hashes, strict=True)):
        stub = variant == "public" and i in hidden
        entry = {"index": i, "leaf_hash": h.hex()} | ({} if stub else {"leaf": leaf})
        entries.append(entry)
    (data / "entries.ndjson").write_bytes(b"".join(canonical_bytes(e) + b"\n" for e in entries))
    (data / "vkey.txt").write_text(signer.vkey() + "\n")
    proofs = []
    for period, m, signed in (("2026-Q1", 5, True), ("2026-Q2", 13, False)):
        m_root = root_from_leaf_hashes(hashes[:m])
        proofs.append(
            {
                "period": period,
                "size": m,
                "root": m_root.hex(),
                "checkpoint": signer.sign(Checkpoint(origin, m, m_root)) if signed else None,
                "path": [h.hex() for h in consistency_proof(m, n, hashes)],
            }
        )
    consistency = {"final": {"size": n, "root": root.hex()}, "proofs": proofs}
    (data / "consistency.json").write_bytes(canonical_bytes(consistency))
    (data / "opinions.ndjson").write_bytes(_opinion_lines(leaves, variant))
    (data / "disclosures" / "2026-Q1.json").write_bytes(disclosure)
    (data / "disclosures" / "2026-Q2.json").write_bytes(q2)
    note = signer.sign(Checkpoint(origin, n, root))
    (data / "checkpoint.txt").write_text(note)
    as_of = {"log": LOG, "tree_size": n, "root": root.hex(), "checkpoint": note}
    (data / "annual-report.json").write_bytes(canonical_bytes(_report(leaves, hidden, as_of)))
    (data / "procurement" / "ocds-release-package.json").write_bytes(
        canonical_bytes(_ocds(leaves, hidden if variant == "public" else frozenset(), variant))
    )
    for name, content in V.summary_csvs(entries).items():
        (data / "summaries" / name).write_bytes(content)
    package = V.datapackage(variant, ORG, YEAR)
    (data / "summaries" / "datapackage.json").write_text(json.dumps(package, indent=2))
    shutil.copyfile(VERIFY_PY, data / "verify.py")

    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    (bag / "bag-info.txt").write_text(
        f"Source-Organization: {ORG_NAME}\n"
        f"External-Identifier: gongkai:{ORG}:{YEAR}\n"
        "Bagging-Date: 2027-01-04\n"
        "Payload-Oxum: 0.0\n"
        f"Bag-Group-Identifier: gongkai:{ORG}\n"
        f"Gongkai-Variant: {variant}\n"
        f"Gongkai-Origin: {ORIGIN}\n"
    )
    _write_manifests(bag)
    return Bundle(bag, signer, leaves)


@pytest.fixture(params=["full", "public"])
def bundle(request: pytest.FixtureRequest, tmp_path: Path) -> Bundle:
    return build_bundle(tmp_path, request.param)


@pytest.fixture
def full(tmp_path: Path) -> Bundle:
    return build_bundle(tmp_path, "full")


def _fails(path: Path, pinned: str | None = None) -> list[str]:
    return V.verify_bag(path, pinned)


def _only(fails: list[str], check: str) -> str:
    hits = [f for f in fails if f.startswith(check + ":")]
    assert hits, f"no {check} failure in {fails}"
    return hits[0]


# --------------------------------------------------------------------------------------
# the untouched bundle
# --------------------------------------------------------------------------------------


def test_untouched_bundle_verifies(bundle: Bundle) -> None:
    assert _fails(bundle.path) == []
    assert _fails(bundle.path, bundle.signer.vkey()) == []
    results = V.check_bag(bundle.path)
    checks = {r.check for r in results if r.status == "ok"}
    assert {"bag", "manifest", "tagmanifest", "vkey", "checkpoint", "entries", "root"} <= checks
    assert {"year.closed", "consistency", "disclosures", "documents", "summaries"} <= checks
    assert any(r.status == "note" and "pinned" in r.message for r in results)
    assert not any(r.status in ("FAIL", "skip") for r in results)


def test_zip_and_tar_gz_verify(full: Bundle, tmp_path: Path) -> None:
    zpath = tmp_path / "bundle.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(full.path.rglob("*")):
            zf.write(p, p.relative_to(full.path.parent).as_posix())
    tpath = tmp_path / "bundle.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        tf.add(full.path, arcname=full.path.name)
    assert _fails(zpath) == []
    assert _fails(tpath) == []
    inside = tmp_path / "inside.tar.gz"  # archived from within the bag directory
    with tarfile.open(inside, "w:gz") as tf:
        tf.add(full.path, arcname=".")
    assert _fails(inside) == []


def test_archives_with_unsafe_members_are_refused(tmp_path: Path) -> None:
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("../escape.txt", b"x")
    assert "unsafe member" in _fails(zpath)[0]
    tpath = tmp_path / "evil.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        info = tarfile.TarInfo("/abs.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    assert "unsafe member" in _fails(tpath)[0]
    lpath = tmp_path / "link.tar.gz"
    with tarfile.open(lpath, "w:gz") as tf:
        link = tarfile.TarInfo("bag/data/x")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    assert "not a file or directory" in _fails(lpath)[0]
    assert not (tmp_path / "escape.txt").exists()


def test_bagit_library_accepts_the_bag(bundle: Bundle) -> None:
    bag = bagit.Bag(str(bundle.path))
    bag.validate()
    assert bag.info["Gongkai-Variant"] in ("full", "public")


def test_frictionless_accepts_the_datapackage(bundle: Bundle) -> None:
    report = frictionless.validate(str(bundle.path / "data/summaries/datapackage.json"))
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


def test_summary_contents(full: Bundle, tmp_path: Path) -> None:
    s = full.path / "data/summaries"
    assert (s / "fund-flows.csv").read_text() == (
        "fund_code,month,receipts,disbursements,receipts_count,disbursements_count\n"
        "PL-01,2026-01,100000.00,0.00,1,0\n"
        "PL-01,2026-02,2500.50,30000.00,1,1\n"
        "PL-01,2026-03,-2500.50,0.00,-1,0\n"
        "PL-01,2026-06,7.05,0.00,1,0\n"
    )
    assert (s / "procurement.csv").read_text() == (
        "tender_id,title,method,value,currency,bids,bidders,awarded_amount,award_date,"
        "contracted_amount,status\n"
        'T-1,"Road, ""phase 1""",open,500000.00,CNY,3,2,465000.00,2026-04-15,465000.00,'
        "contracted\n"
        "T-2,Office chairs,direct,12000.00,CNY,0,0,,,,cancelled\n"
    )
    public = build_bundle(tmp_path / "p", "public").path / "data/summaries"
    by_kind = (public / "entries-by-kind.csv").read_text()
    assert by_kind.startswith("kind,entries\ncorrection.reversal,1\n")
    assert "procurement.bid,2\n" in by_kind
    assert "fund.receipt,2\n" in by_kind
    assert by_kind.endswith("year.closed,1\n(hash only),2\n")
    assert (
        'T-1,"Road, ""phase 1""",open,500000.00,CNY,2,2,'
        in (public / "procurement.csv").read_text()
    )
    assert "2026-06" not in (public / "fund-flows.csv").read_text()


def test_summary_reversal_rules() -> None:
    base = {"v": 1, "log": LOG, "subject": "s", "recorded_at": "x", "actor": "a",
            "visibility": "public", "idempotency_key": None, "salt": "0" * 32}  # fmt: skip

    def leaf(i: int, kind: str, on: str, body: dict[str, Any]) -> dict[str, Any]:
        return base | {"index": i, "kind": kind, "occurred_on": on, "body": body}

    receipt = {"fund_code": "F", "amount": "10.00", "payer": {"id": "p", "name": "P"}}
    bid = {"tender_id": "T", "amount": "5.00", "submitted_on": "2026-01-01",
           "bidder": {"id": "b", "name": "B"}}  # fmt: skip
    award = {"tender_id": "T", "amount": "5.00", "date": "2026-01-02",
             "supplier": {"id": "b", "name": "B"}}  # fmt: skip
    leaves: list[dict[str, Any] | None] = [
        leaf(0, "fund.receipt", "2026-01-01", receipt),
        leaf(1, "procurement.bid", "2026-01-01", bid),
        leaf(2, "procurement.award", "2026-01-02", award),
        None,  # a withheld receipt
        # reversal of the withheld leaf 3: ignored
        leaf(4, "correction.reversal", "2026-02-01", {"target_log": LOG, "target_index": 3}),
        # reversal of another year's leaf 0: ignored
        leaf(
            5, "correction.reversal", "2026-02-01", {"target_log": f"{ORG}/2025", "target_index": 0}
        ),
        leaf(6, "correction.reversal", "2026-02-01", {"target_log": LOG, "target_index": 2}),
        leaf(7, "correction.reversal", "2026-03-01", {"target_log": LOG, "target_index": 0}),
        # a second reversal of the same target: ignored
        leaf(8, "correction.reversal", "2026-03-01", {"target_log": LOG, "target_index": 0}),
    ]
    out = V.summary_csvs(leaves)
    assert out["fund-flows.csv"].decode() == (
        "fund_code,month,receipts,disbursements,receipts_count,disbursements_count\n"
        "F,2026-01,10.00,0.00,1,0\n"
        "F,2026-03,-10.00,0.00,-1,0\n"
    )
    assert out["procurement.csv"].decode().splitlines()[1] == "T,,,,,1,1,,,,active"
    assert out["entries-by-kind.csv"].decode().endswith("(hash only),1\n")
    # the same result from entry objects instead of leaves
    entries = [
        {"index": i, "leaf_hash": "00" * 32} | ({"leaf": x} if x else {})
        for i, x in enumerate(leaves)
    ]
    assert V.summary_csvs(entries) == out


@given(rows=st.lists(st.lists(st.text().filter(lambda t: "\r" not in t), min_size=2, max_size=4)))
def test_csv_bytes_are_the_csv_module_quote_minimal(rows: list[list[str]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerows([["h", "i"], *rows])
    assert V._csv(["h", "i"], rows) == buf.getvalue().encode()
    assert V._csv(["h"], [["a\rb"]]) == b'h\n"a\rb"\n'


def test_datapackage_is_deterministic() -> None:
    assert V.datapackage("public", ORG, YEAR) == V.datapackage("public", ORG, YEAR)
    assert V.datapackage("public", ORG, YEAR) != V.datapackage("full", ORG, YEAR)


# --------------------------------------------------------------------------------------
# tampering
# --------------------------------------------------------------------------------------


def _entries(bag: Path) -> list[bytes]:
    return (bag / "data/entries.ndjson").read_bytes().splitlines(keepends=True)


def _set_entries(bag: Path, lines: list[bytes], rebag: bool = True) -> None:
    (bag / "data/entries.ndjson").write_bytes(b"".join(lines))
    if rebag:
        _write_manifests(bag)


def test_one_byte_changed_in_entries(full: Bundle) -> None:
    lines = _entries(full.path)
    lines[3] = lines[3].replace(b"30000.00", b"30000.01")
    _set_entries(full.path, lines, rebag=False)
    fails = _fails(full.path)
    assert "data/entries.ndjson" in _only(fails, "manifest")
    msg = _only(fails, "entries")
    assert "line 4 (index 3)" in msg and "leaf hash" in msg
    _write_manifests(full.path)  # an attacker also fixing the manifests gains nothing
    assert "line 4 (index 3)" in _only(_fails(full.path), "entries")


def test_one_byte_changed_in_a_hash_only_line(tmp_path: Path) -> None:
    b = build_bundle(tmp_path, "public")
    lines = _entries(b.path)
    assert b'"leaf"' not in lines[13]
    lines[13] = lines[13][:30] + (b"0" if lines[13][30:31] != b"0" else b"1") + lines[13][31:]
    _set_entries(b.path, lines)
    fails = _fails(b.path)
    assert "Merkle root" in _only(fails, "root")


def test_line_removed(full: Bundle) -> None:
    lines = _entries(full.path)
    del lines[6]
    _set_entries(full.path, lines)
    msg = _only(_fails(full.path), "entries")
    assert "line 7 (index 6)" in msg and "carries index 7" in msg


def test_last_line_removed(full: Bundle) -> None:
    lines = _entries(full.path)
    _set_entries(full.path, lines[:-1])
    fails = _fails(full.path)
    assert "18 lines but the signed checkpoint has size 19" in _only(fails, "root")
    assert "not year.closed" in _only(fails, "year.closed")


def test_two_lines_swapped(full: Bundle) -> None:
    lines = _entries(full.path)
    lines[8], lines[9] = lines[9], lines[8]
    _set_entries(full.path, lines)
    msg = _only(_fails(full.path), "entries")
    assert "line 9 (index 8)" in msg and "carries index 9" in msg


def test_swapped_lines_with_rewritten_indexes_break_the_hash(full: Bundle) -> None:
    lines = [json.loads(x) for x in _entries(full.path)]
    lines[8]["leaf"], lines[9]["leaf"] = lines[9]["leaf"], lines[8]["leaf"]
    lines[8]["leaf"]["index"], lines[9]["leaf"]["index"] = 8, 9
    lines[8]["leaf_hash"], lines[9]["leaf_hash"] = lines[9]["leaf_hash"], lines[8]["leaf_hash"]
    _set_entries(full.path, [canonical_bytes(x) + b"\n" for x in lines])
    assert "line 9 (index 8)" in _only(_fails(full.path), "entries")


def test_summary_cell_changed(bundle: Bundle) -> None:
    path = bundle.path / "data/summaries/fund-flows.csv"
    path.write_text(path.read_text().replace("2500.50,30000.00", "2500.50,3000.00"))
    _write_manifests(bundle.path)
    msg = _only(_fails(bundle.path), "summaries")
    assert "data/summaries/fund-flows.csv row 3 column disbursements" in msg
    assert "'3000.00'" in msg and "'30000.00'" in msg


def test_summary_row_added_and_file_added(full: Bundle) -> None:
    path = full.path / "data/summaries/procurement.csv"
    path.write_bytes(path.read_bytes() + b"T-9,x,open,1.00,CNY,0,0,,,,active\n")
    (full.path / "data/summaries/extra.csv").write_text("a\n1\n")
    _write_manifests(full.path)
    msg = _only(_fails(full.path), "summaries")
    assert "extra.csv" in msg
    (full.path / "data/summaries/extra.csv").unlink()
    _write_manifests(full.path)
    assert "procurement.csv has 4 rows" in _only(_fails(full.path), "summaries")


def _resign(bag: Path, signer: NoteSigner) -> None:
    """Re-sign the final checkpoint with another key (same key name)."""
    note = (bag / "data/checkpoint.txt").read_text()
    body = note[: note.rindex("\n\n") + 1]
    (bag / "data/checkpoint.txt").write_text(signer.sign_text(body))


def test_checkpoint_resigned_with_another_key(full: Bundle, tmp_path: Path) -> None:
    other = NoteSigner(Ed25519PrivateKey.generate(), ORIGIN)
    _resign(full.path, other)
    _write_manifests(full.path)
    msg = _only(_fails(full.path), "checkpoint")
    assert "data/checkpoint.txt" in msg and f"no signature by {ORIGIN}+" in msg
    assert other.key_id.hex() in msg

    # The forger also replaces vkey.txt: a pinned key catches it.
    (full.path / "data/vkey.txt").write_text(other.vkey() + "\n")
    _write_manifests(full.path)
    fails = _fails(full.path, full.signer.vkey())
    assert "not the pinned key" in _only(fails, "vkey")
    assert "no signature by" in _only(fails, "checkpoint")
    # Without a pinned key the consistency checkpoints, signed by the real key, still fail;
    # and the output says that the key was not pinned.
    assert "no signature by" in _only(_fails(full.path), "consistency")
    notes = [r for r in V.check_bag(full.path) if r.status == "note"]
    assert notes and "--vkey" in notes[0].message


def test_checkpoint_signature_bytes_changed(full: Bundle) -> None:
    path = full.path / "data/checkpoint.txt"
    note = path.read_text()
    line = note.splitlines()[-1]
    _name, sig = line[2:].split(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 1
    path.write_text(note.replace(sig, base64.b64encode(bytes(raw)).decode()))
    _write_manifests(full.path)
    assert "does not verify" in _only(_fails(full.path), "checkpoint")


def test_manifest_entry_edited(full: Bundle) -> None:
    path = full.path / "manifest-sha256.txt"
    lines = path.read_text().splitlines(keepends=True)
    i = next(i for i, x in enumerate(lines) if x.endswith("data/vkey.txt\n"))
    digest = lines[i][:64]
    lines[i] = ("0" if digest[0] != "0" else "1") + lines[i][1:]
    path.write_text("".join(lines))
    fails = _fails(full.path)
    assert "data/vkey.txt" in _only(fails, "manifest")
    assert "manifest-sha256.txt" in _only(fails, "tagmanifest")


def test_consistency_proof_tampered(full: Bundle) -> None:
    path = full.path / "data/consistency.json"
    doc = json.loads(path.read_text())
    doc["proofs"][1]["path"][0] = "ab" * 32
    path.write_text(json.dumps(doc))
    _write_manifests(full.path)
    assert "proofs[1] (2026-Q2)" in _only(_fails(full.path), "consistency")


def test_disclosure_file_changed(full: Bundle) -> None:
    (full.path / "data/disclosures/2026-Q1.json").write_bytes(b"{}")
    _write_manifests(full.path)
    msg = _only(_fails(full.path), "disclosures")
    assert "data/disclosures/2026-Q1.json" in msg and "index 14" in msg


def test_full_variant_must_carry_every_leaf(full: Bundle) -> None:
    lines = [json.loads(x) for x in _entries(full.path)]
    del lines[5]["leaf"]
    _set_entries(full.path, [canonical_bytes(x) + b"\n" for x in lines])
    assert "full variant carries every leaf" in _only(_fails(full.path), "entries")


def test_bag_info_and_payload_oxum(full: Bundle) -> None:
    (full.path / "data/new.txt").write_text("x")
    fails = _fails(full.path)
    assert "Payload-Oxum" in _only(fails, "bag")
    assert "data/new.txt is not listed" in _only(fails, "manifest")


# --------------------------------------------------------------------------------------
# the command line, with and without `cryptography`
# --------------------------------------------------------------------------------------

_BLOCK_CRYPTOGRAPHY = """
import runpy, sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError("cryptography is blocked for this test")
        return None
sys.meta_path.insert(0, _Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_cli_runs_isolated_from_the_bundle(bundle: Bundle) -> None:
    script = bundle.path / "data/verify.py"
    proc = _run([sys.executable, "-I", str(script), str(bundle.path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok  entries:" in proc.stdout and "VERIFIED" in proc.stdout
    assert "(cryptography)" in proc.stdout
    vkey = bundle.path.parent / "pinned.vkey"
    vkey.write_text(bundle.signer.vkey() + "\n")
    proc = _run([sys.executable, "-I", str(script), str(bundle.path), "--vkey", str(vkey)])
    assert proc.returncode == 0 and "is the pinned key" in proc.stdout
    # A key given that is not a vkey is a usage error (2), as an unreadable one is, not
    # a bundle that fails its checks (1).
    vkey.write_text("hello\n")
    for pin in (["--vkey", str(vkey)], ["--vkey-string", "hello"]):
        proc = _run([sys.executable, "-I", str(script), str(bundle.path), *pin])
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.startswith("FAIL vkey: ") and "not a vkey" in proc.stderr
        assert proc.stdout == ""


def test_cli_without_cryptography(full: Bundle) -> None:
    script = full.path / "data/verify.py"
    cmd = [sys.executable, "-I", "-c", _BLOCK_CRYPTOGRAPHY, str(script), str(full.path)]
    proc = _run(cmd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(pure-Python RFC 8032)" in proc.stdout
    _resign(full.path, NoteSigner(Ed25519PrivateKey.generate(), "other"))
    proc = _run([*cmd, "--quiet"])
    assert proc.returncode == 1
    assert "FAIL manifest: data/checkpoint.txt: SHA-256" in proc.stdout
    assert all(x.startswith("FAIL ") for x in proc.stdout.splitlines())
    assert "FAIL checkpoint: data/checkpoint.txt: no signature by" in proc.stdout


def test_cli_reports_failures(full: Bundle) -> None:
    lines = _entries(full.path)
    lines[2], lines[3] = lines[3], lines[2]
    _set_entries(full.path, lines)
    proc = _run([sys.executable, "-I", str(VERIFY_PY), str(full.path)])
    assert proc.returncode == 1
    fail_lines = [x for x in proc.stdout.splitlines() if x.startswith("FAIL")]
    assert fail_lines == [
        "FAIL entries: data/entries.ndjson line 3 (index 2): carries index 3, expected 2 "
        "(a line is missing, duplicated or out of order)"
    ]
    assert "NOT VERIFIED" in proc.stdout
    assert _run([sys.executable, "-I", str(VERIFY_PY), "/nonexistent.zip"]).returncode == 2


# --------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------

RFC8032 = [  # RFC 8032 §7.1 TEST 1, 2, 3: (secret key, public key, message, signature)
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]  # fmt: skip


@pytest.mark.parametrize(("sk", "pk", "msg", "sig"), RFC8032)
def test_ed25519_rfc8032_vectors(sk: str, pk: str, msg: str, sig: str) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sk))
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert pub.hex() == pk
    assert key.sign(bytes.fromhex(msg)).hex() == sig
    p, m, s = bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)
    assert V.ed25519_verify_pure(p, m, s)
    assert V.ed25519_verify(p, m, s)
    assert not V.ed25519_verify_pure(p, m + b"x", s)
    assert not V.ed25519_verify_pure(p, m, s[:63] + bytes([s[63] ^ 0x10]))
    # S + L (non-canonical scalar) is rejected, as RFC 8032 §5.1.7 requires
    s_plus_l = (int.from_bytes(s[32:], "little") + V._L).to_bytes(32, "little")
    assert not V.ed25519_verify_pure(p, m, s[:32] + s_plus_l)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    msg=st.binary(max_size=200),
    flip=st.integers(min_value=0, max_value=64 * 8 + 32 * 8 - 1),
    junk=st.binary(min_size=64, max_size=64),
)
def test_ed25519_pure_agrees_with_cryptography(
    seed: bytes, msg: bytes, flip: int, junk: bytes
) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sig = key.sign(msg)
    assert V.ed25519_verify_pure(pub, msg, sig) is True
    # one bit flipped in the signature or the public key
    if flip < 512:
        bad_sig = bytearray(sig)
        bad_sig[flip // 8] ^= 1 << (flip % 8)
        cases = [(pub, msg, bytes(bad_sig))]
    else:
        bad_pub = bytearray(pub)
        bad_pub[(flip - 512) // 8] ^= 1 << (flip % 8)
        cases = [(bytes(bad_pub), msg, sig)]
    cases += [(pub, msg + b"\x00", sig), (pub, msg, junk)]
    for p, m, s in cases:
        expected = V._ed25519_verify_cryptography(p, m, s)
        assert expected is not None
        assert V.ed25519_verify_pure(p, m, s) is expected


_json_leaf = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(doc=_json)
def test_canonical_equals_rfc8785(doc: Any) -> None:
    assert V.canonical(doc) == rfc8785.dumps(doc) == canonical_bytes(doc)


@given(doc=st.dictionaries(st.text(max_size=3), st.floats(), min_size=1))
def test_canonical_refuses_floats_and_non_ascii_keys(doc: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        V.canonical(doc)


def test_leaf_json_covers_every_control_character() -> None:
    text = "".join(chr(c) for c in range(0x80)) + "\u2028\u2029é中😀"
    assert V.canonical({"s": text}) == rfc8785.dumps({"s": text})


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 70), m=st.integers(0, 70), data=st.data())
def test_merkle_root_and_consistency_agree_with_ledger_tree(n: int, m: int, data: Any) -> None:
    m = min(m, n)
    hashes = [leaf_hash(str(i).encode()) for i in range(n)]
    assert V.merkle_root(hashes) == root_from_leaf_hashes(hashes)
    assert V.leaf_hash(b"x") == leaf_hash(b"x")
    if n == 0:
        return
    proof = consistency_proof(m, n, hashes)
    old, new = root_from_leaf_hashes(hashes[:m]), root_from_leaf_hashes(hashes)
    assert V.verify_consistency(m, n, proof, old, new)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof]
        bad[i] = hashlib.sha256(bad[i]).digest()
        assert not V.verify_consistency(m, n, bad, old, new)


def test_public_hidden_lines_carry_hash_only(tmp_path: Path) -> None:
    b = build_bundle(tmp_path, "public")
    rows = [json.loads(x) for x in _entries(b.path)]
    assert [r["index"] for r in rows if "leaf" not in r] == sorted(PUBLIC_HIDDEN)
    for r in rows:
        assert set(r) <= {"index", "leaf_hash", "leaf"}
    reader = csv.reader(io.StringIO((b.path / "data/summaries/entries-by-kind.csv").read_text()))
    assert ["(hash only)", "2"] in list(reader)


def test_malformed_inputs_fail_without_crashing(full: Bundle) -> None:
    lines = _entries(full.path)
    lines[4] = lines[4].replace(b'{"index":4,', b'{"index": 4,')
    _set_entries(full.path, lines)
    assert "line 5 (index 4): the line is not in canonical JSON form" in _only(
        _fails(full.path), "entries"
    )
    lines[4] = b'{"index":4,"leaf":' + b"[" * 100000 + b"]" * 100000 + b',"leaf_hash":"00"}\n'
    _set_entries(full.path, lines)
    assert "line 5 (index 4)" in _only(_fails(full.path), "entries")
    lines[4] = b'{"index":4,"leaf_hash":"' + b"0" * 64 + b'","x":1.5}\n'
    _set_entries(full.path, lines)
    # Refused either way: by the standard-library parser (a fraction is not an integer)
    # or, with orjson, by the unexpected field.
    failure = _only(_fails(full.path), "entries")
    assert "line 5 (index 4)" in failure
    assert "not an integer" in failure or "unexpected fields" in failure
    (full.path / "data/consistency.json").write_text("{not json")
    (full.path / "data/entries.ndjson").unlink()
    _write_manifests(full.path)
    fails = _fails(full.path)
    assert "data/entries.ndjson is missing" in _only(fails, "entries")
    assert "data/consistency.json is not JSON" in _only(fails, "consistency")


def test_cli_pinned_key_string_mismatch(full: Bundle) -> None:
    other = NoteSigner(Ed25519PrivateKey.generate(), ORIGIN)
    args = [str(full.path), "--vkey-string", other.vkey(), "--quiet"]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", out)
        assert V.main(args) == 1
    assert out.getvalue().startswith("FAIL vkey: data/vkey.txt holds gongkai.local+")
    assert "FAIL checkpoint: data/checkpoint.txt: no signature by" in out.getvalue()


# --------------------------------------------------------------------------------------
# entries checked in pieces by worker processes
# --------------------------------------------------------------------------------------


def _tampered(bag: Path, how: str) -> None:
    lines = _entries(bag)
    if how == "byte":
        lines[3] = lines[3].replace(b"30000.00", b"30000.01")
    elif how == "removed":
        del lines[6]
    elif how == "swapped":
        lines[8], lines[9] = lines[9], lines[8]
    elif how == "truncated":
        lines[-1] = lines[-1][:-1]
    elif how == "summary":
        lines[3] = lines[3].replace(b'"amount":"30000.00"', b'"amount":"30000"')
    _set_entries(bag, lines)


@pytest.mark.parametrize("how", ["none", "byte", "removed", "swapped", "truncated", "summary"])
@pytest.mark.parametrize("variant", ["full", "public"])
def test_pieces_in_worker_processes_give_the_same_results(
    how: str, variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut into pieces of a few lines (so a process pool checks them), the verifier
    reports exactly what it reports reading the file in one piece."""
    b = build_bundle(tmp_path, variant)
    _tampered(b.path, how)
    one = V.check_bag(b.path)
    monkeypatch.setattr(V, "PIECE_BYTES", 700)
    pieces, lines = V._pieces(b.path / "data/entries.ndjson", V.PIECE_BYTES)
    assert len(pieces) >= 4 and lines == len(_entries(b.path)) - (how == "truncated")
    many = V.check_bag(b.path)
    assert [str(r) for r in many] == [str(r) for r in one]
    plans = iter([(*p, ()) for p in pieces])
    checked = list(V._checked_pieces(b.path / "data/entries.ndjson", plans, len(pieces), LOG, True))
    assert os.getpid() not in {p.pid for p in checked}  # worker processes did the work
    assert (how == "none") == all(r.status != "FAIL" for r in one)


def _entries_member(zf: zipfile.ZipFile) -> zipfile.ZipInfo:
    return next(i for i in zf.infolist() if i.filename.endswith("data/entries.ndjson"))


def _slow_reads(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Extraction reads 100 bytes at a time, each after a pause: slower than checking."""
    read = zipfile.ZipExtFile.read

    def slow_read(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        time.sleep(seconds)
        return read(self, n)

    monkeypatch.setattr(zipfile.ZipExtFile, "read", slow_read)
    monkeypatch.setattr(V._Streamed, "READ", 100)


def _zipped(bag: Path, zpath: Path) -> Path:
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(bag.rglob("*")):
            zf.write(p, p.relative_to(bag.parent).as_posix())
    return zpath


@pytest.mark.parametrize("piece_bytes", [1, 700, 1 << 20])
@pytest.mark.parametrize("how", ["none", "byte", "removed", "swapped", "truncated", "summary"])
def test_a_zip_checked_while_it_is_extracted_gives_the_same_results(
    how: str, piece_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """entries.ndjson checked piece by piece as a thread extracts it (pieces of one
    line each, of a few lines, or one piece) reports what the unpacked bag reports."""
    b = build_bundle(tmp_path, "full")
    _tampered(b.path, how)
    want = [str(r) for r in V.check_bag(b.path)]
    zpath = _zipped(b.path, tmp_path / "bundle.zip")
    monkeypatch.setattr(V, "PIECE_BYTES", piece_bytes)
    streamed: list[V._Streamed] = []
    extract = V._extract

    def spy(archive: Path, dest: Path, streams: list[V._Streamed] | None = None) -> Path:
        bag = extract(archive, dest, streams)
        streamed.extend(streams or [])
        return bag

    monkeypatch.setattr(V, "_extract", spy)
    with V.open_bundle(zpath) as bag_dir:
        got = [str(r) for r in V.check_bag(bag_dir)]
    assert len(streamed) == 1 and streamed[0].done
    assert [p[2] for p in streamed[0].pieces] == [p[2] for p in V._pieces(
        b.path / "data/entries.ndjson", piece_bytes)[0]]  # fmt: skip
    assert got == want
    assert not V._STREAMED  # nothing left registered


def test_the_last_two_pieces_come_with_the_line_count(
    full: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces are published as they are written, but the last two only with the file's
    line count: the tree head before the last line may fall at the start of the last
    piece, and the pieces before it are folded without knowing where that is."""
    zpath = _zipped(full.path, tmp_path / "bundle.zip")
    _slow_reads(monkeypatch, 0.002)
    zf = zipfile.ZipFile(zpath)
    stream = V._Streamed(zf, _entries_member(zf), tmp_path / "entries.ndjson", 1)
    try:
        got = list(stream.published())
    finally:
        assert stream.close() is None
    written = (tmp_path / "entries.ndjson").read_bytes()
    lines = written.count(b"\n")
    assert [g[2] for g in got] == list(range(lines))  # a line a piece
    assert got[0][3] is None  # published before the end was written
    assert [g[3] for g in got[-2:]] == [lines, lines]
    assert stream.wait() == (hashlib.sha256(written).hexdigest(), lines)


def test_a_stream_cuts_long_lines_as_an_unpacked_file_is_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines shorter and far longer than a piece and than a read, cut where ``_pieces``
    cuts them (a long line is searched for its end once, not once a read)."""
    lines = [b"x" * n + b"\n" for n in (5, 3000, 1, 40, 9000, 2, 700, 65, 0, 12000, 3)]
    data = b"".join(lines) + b"tail without newline"
    zpath = tmp_path / "e.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bag/data/entries.ndjson", data)
    (tmp_path / "plain.ndjson").write_bytes(data)
    monkeypatch.setattr(V._Streamed, "READ", 256)
    for piece_bytes in (1, 100, 2500, 1 << 20):
        zf = zipfile.ZipFile(zpath)
        target = tmp_path / f"streamed-{piece_bytes}.ndjson"
        stream = V._Streamed(zf, zf.infolist()[0], target, piece_bytes)
        got = [p[:3] for p in stream.published()]
        assert stream.close() is None
        want, newlines = V._pieces(tmp_path / "plain.ndjson", piece_bytes)
        assert got == want and stream.wait() == (hashlib.sha256(data).hexdigest(), newlines)
        assert target.read_bytes() == data


def test_a_stream_told_to_stop_is_not_taken_as_complete(
    full: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zpath = _zipped(full.path, tmp_path / "bundle.zip")
    _slow_reads(monkeypatch, 0.01)
    zf = zipfile.ZipFile(zpath)
    stream = V._Streamed(zf, _entries_member(zf), tmp_path / "entries.ndjson", 1)
    assert stream.close() is None  # stopped: not an error of the zip
    assert not stream.done
    with pytest.raises(V.VerificationError, match="stopped"):
        stream.wait()


def test_a_failing_plan_is_not_taken_for_missing_worker_processes(full: Bundle) -> None:
    """Only the worker pool's failures send the check into this process; an error of
    the pieces' plan (here after the first piece) is the verifier's, not a shorter
    pass."""
    path = full.path / "data/entries.ndjson"
    pieces, _ = V._pieces(path, 700)

    def plan() -> Iterator[tuple[int, int, int, tuple[int, ...]]]:
        yield (*pieces[0], ())
        raise RuntimeError("the plan broke")

    with pytest.raises(RuntimeError, match="the plan broke"):
        list(V._checked_pieces(path, plan(), 4, LOG, True))


def test_a_zip_whose_entries_do_not_inflate_cannot_be_opened(full: Bundle, tmp_path: Path) -> None:
    """A bad CRC in entries.ndjson, found while it is checked, fails as it did when the
    zip was unpacked first: the bundle cannot be opened."""
    zpath = _zipped(full.path, tmp_path / "bundle.zip")
    raw = bytearray(zpath.read_bytes())
    at = raw.find(b"PK\x01\x02")  # the central directory's entries: CRC-32 at +16
    while not raw[at + 46 : at + 46 + int.from_bytes(raw[at + 28 : at + 30], "little")].endswith(
        b"data/entries.ndjson"
    ):
        at = raw.find(b"PK\x01\x02", at + 4)
    raw[at + 16] ^= 0xFF
    zpath.write_bytes(bytes(raw))
    (fail,) = _fails(zpath)
    assert fail.startswith("bundle: cannot open") and "CRC" in fail, fail
    assert not V._STREAMED


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_subtrees_fold_to_the_merkle_roots(n: int, data: Any) -> None:
    """Pieces cut anywhere, as aligned subtrees cut at wanted sizes, give every root."""
    hashes = [hashlib.sha256(str(i).encode()).digest() for i in range(n)]
    starts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=6)) if n > 1 else []))
    wanted = set(data.draw(st.lists(st.integers(1, n), max_size=5))) | {n}
    frontier = V._Frontier()
    roots = {}
    for a, b in zip([0, *starts], [*starts, n], strict=True):
        for level, h in V._subtrees(a, hashes[a:b], wanted):
            frontier.append_subtree(h, level)
            if frontier.size in wanted:
                roots[frontier.size] = frontier.root()
    assert roots == {w: root_from_leaf_hashes(hashes[:w]) for w in wanted}


def _entries_bag(tmp_path: Path, leaves: list[dict[str, Any]]) -> Path:
    bag = tmp_path / "bag"
    (bag / "data").mkdir(parents=True)
    lines = [
        canonical_bytes({"index": i, "leaf": x, "leaf_hash": leaf_hash(canonical_bytes(x)).hex()})
        + b"\n"
        for i, x in enumerate(leaves)
    ]
    (bag / "data/entries.ndjson").write_bytes(b"".join(lines))
    return bag


def _entries_pass(bag_dir: Path, piece_bytes: int | None) -> V._Bag:
    bag = V._Bag(bag_dir, org=ORG, year=YEAR, variant="full")
    try:
        V._check_entries(bag, piece_bytes)
    except V.VerificationError as exc:
        bag.summary_error = f"entries: {exc}"
    return bag


def _money(i: int, kind: str, fund: str, amount: str, month: int) -> dict[str, Any]:
    party = "payer" if kind == "fund.receipt" else "payee"
    body = {
        "fund_code": fund,
        "amount": amount,
        party: {"id": "p", "name": "P", "type": "enterprise"},
    }
    return _leaf(i, (kind, f"fund:{fund}", f"2026-{month:02d}-01", "public", body))


@pytest.mark.parametrize("bad", [None, 37])
def test_summaries_merged_from_pieces_equal_one_pass(tmp_path: Path, bad: int | None) -> None:
    """Receipts, disbursements and reversals across piece boundaries sum as in one pass;
    a leaf that cannot be summarised is named the same way."""
    leaves: list[dict[str, Any]] = []
    for i in range(60):
        if i % 7 == 6:  # reverse an earlier receipt or disbursement, often in another piece
            body = {"target_log": LOG, "target_index": i - 5, "reason": "entered twice"}
            leaves.append(_leaf(i, ("correction.reversal", f"entry:{i - 5}", "2026-03-01",
                                    "public", body)))  # fmt: skip
        else:
            kind = "fund.receipt" if i % 3 else "fund.disbursement"
            amount = "12" if i == bad else f"{i * 10 + 1}.{i % 100:02d}"
            leaves.append(_money(i, kind, f"F-{i % 4}", amount, 1 + i % 12))
    bag = _entries_bag(tmp_path, leaves)
    one, many = _entries_pass(bag, None), _entries_pass(bag, 1500)
    assert len(V._pieces(bag / "data/entries.ndjson", 1500)[0]) >= 4
    assert many.summary_error == one.summary_error
    if bad is None:
        assert one.summary_error is None and one.entries_ok
        assert many.summaries.csvs() == one.summaries.csvs()
        assert one.summaries.csvs() == V.summary_csvs(leaves)
        assert many.roots_at == one.roots_at
    else:
        assert one.summary_error is not None and f"line {bad + 1}:" in one.summary_error


@pytest.mark.parametrize(
    ("line", "canonical"),
    [
        (b'{"index":4,"leaf_hash":"ab"}', True),
        ('{"a":"示范\\n\\u001f","b":[1,-2,{"c":null}]}'.encode(), True),
        (b'{"index": 4,"leaf_hash":"ab"}', False),  # whitespace
        (b'{"leaf_hash":"ab","index":4}', False),  # key order
        (b'{"a":1,"a":1}', False),  # duplicate key
        (b'{"a":"\\u0041"}', False),  # an escape JCS does not use
        (b'{"a":1} ', ValueError),  # trailing data
        (b' {"a":1}', ValueError),  # leading whitespace
        (b'{"a":1}{"b":2}', ValueError),
        (b"", ValueError),
        (b'{"a":', ValueError),
        (b'{"a":1.5}', ValueError),  # no floats
        (b'{"a":NaN}', ValueError),
        (b'{"a":9007199254740992}', ValueError),  # beyond ±(2**53 - 1)
        (b'{"a":"\xff"}', ValueError),  # not UTF-8
    ],
)
def test_standard_library_line_parsing(
    line: bytes, canonical: bool | type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standard-library path calls the json module's scanner and C encoder directly:
    it accepts exactly one JSON value filling the line, and says whether the line is in
    canonical form; with and without the C encoder."""
    assert V._encode_chunks is not None  # CPython has the C encoder
    monkeypatch.setattr(V, "_orjson", None)
    for encoder in (V._encode_chunks, None):
        monkeypatch.setattr(V, "_encode_chunks", encoder)
        if canonical is ValueError:
            with pytest.raises(ValueError):
                V._parse_line(line)
            continue
        entry, is_canonical = V._parse_line(line)
        assert is_canonical is canonical
        assert entry == json.loads(line)
        if canonical:
            assert rfc8785.dumps(entry) == line


def _opinions(bag: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (bag / "data/opinions.ndjson").read_bytes().splitlines()]


def _set_opinions(bag: Path, lines: list[dict[str, Any]]) -> None:
    (bag / "data/opinions.ndjson").write_bytes(b"".join(canonical_bytes(x) + b"\n" for x in lines))
    _write_manifests(bag)


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (lambda ls: [*ls, {"index": 99, "kind": "opinion.closed"}], "2 opinion events"),
        (lambda ls: ls[:1], "1 lines for 2 opinion events"),
        (lambda ls: [ls[1], ls[0]], "is not the opinion event at index 15"),
        (lambda ls: [{**ls[0], "body": {**ls[0]["body"], "category": "request"}}, ls[1]],
         "is not the opinion event at index 15"),
        (lambda ls: [{**ls[0], "personal_data": {**ls[0]["personal_data"],
                      "data": {**OPINION, "text": "改过的意见"}}}, ls[1]],
         "does not hash to the leaf's commitment"),
        (lambda ls: [{k: v for k, v in ls[0].items() if k != "personal_data"}, ls[1]],
         "lacks its personal_data"),
        (lambda ls: [ls[0], {**ls[1], "personal_data": {"erased": True}}],
         "personal_data has no place here"),
    ],
)  # fmt: skip
def test_opinions_are_their_leaves(full: Bundle, tamper: Any, words: str) -> None:
    _set_opinions(full.path, tamper(_opinions(full.path)))
    assert words in _only(_fails(full.path), "documents")


def test_erased_personal_data_still_verifies(full: Bundle) -> None:
    lines = _opinions(full.path)
    lines[0]["personal_data"] = {"erased": True}
    _set_opinions(full.path, lines)
    assert _fails(full.path) == []


# --- what a bag may hold (found by an adversarial review) ----------------------------


def test_a_fifo_in_the_bag_fails_the_layout_without_reading_anything(full: Bundle) -> None:
    """A FIFO where a file should be made the verifier wait for ever."""
    (full.path / "data/annual-report.json").unlink()
    os.mkfifo(full.path / "data/annual-report.json")
    fails = _fails(full.path)
    assert fails == ["layout: data/annual-report.json is not a regular file or a directory"], fails


@pytest.mark.parametrize(
    ("change", "check", "words"),
    [
        (lambda bag: (bag / "README-evil.txt").write_text("x"), "layout", "README-evil.txt"),
        (lambda bag: (bag / "data/evil.sh").write_text("x"), "documents", "data/evil.sh"),
        (
            lambda bag: (bag / "data/disclosures/2026-Q5.json").write_text("{}"),
            "documents",
            "data/disclosures/2026-Q5.json",
        ),
        (lambda bag: (bag / "data/opinions.ndjson").unlink(), "documents", "opinions.ndjson"),
        (
            lambda bag: (bag / "data/procurement/ocds-release-package.json").unlink(),
            "documents",
            "ocds-release-package.json is missing",
        ),
        (lambda bag: (bag / "data/annual-report.json").unlink(), "documents", "annual-report"),
        (
            lambda bag: (bag / "data/summaries/datapackage.json").write_bytes(
                b'{"name":"FORGED",' + (bag / "data/summaries/datapackage.json").read_bytes()[1:]
            ),
            "summaries",
            "appears twice",
        ),
    ],
    ids=[
        "top-level file",
        "payload file",
        "fifth quarter",
        "no opinions",
        "no ocds",
        "no annual report",
        "duplicate key",
    ],
)
def test_a_file_added_or_removed_with_the_manifests_rewritten_fails(
    full: Bundle, change: Any, check: str, words: str
) -> None:
    """The manifests say only that the files are the ones listed: what a bag must
    and may hold is the verifier's to know."""
    change(full.path)
    _write_manifests(full.path)
    fails = _fails(full.path)
    assert any(f.startswith(f"{check}: ") and words in f for f in fails), fails


def test_consistency_must_prove_every_published_quarter(full: Bundle) -> None:
    path = full.path / "data/consistency.json"
    doc = json.loads(path.read_bytes())
    doc["proofs"] = doc["proofs"][:1]
    path.write_bytes(canonical_bytes(doc))
    _write_manifests(full.path)
    msg = _only(_fails(full.path), "consistency")
    assert "('2026-Q2', 13)" in msg, msg


@pytest.mark.parametrize("damage", ["truncated tar.gz", "encrypted zip member"])
def test_a_damaged_archive_is_a_clean_failure(full: Bundle, tmp_path: Path, damage: str) -> None:
    """Errors of the archive libraries besides their own (EOFError, RuntimeError, …)
    came out as a traceback."""
    if damage == "truncated tar.gz":
        path = tmp_path / "bundle.tar.gz"
        with tarfile.open(path, "w:gz") as tf:
            tf.add(full.path, arcname=full.path.name)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path = tmp_path / "bundle.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for p in sorted(full.path.rglob("*")):
                zf.write(p, p.relative_to(full.path.parent).as_posix())
        raw = bytearray(path.read_bytes())
        at = raw.index(b"PK\x01\x02")  # the central directory's first entry
        while not raw[at + 46 : at + 46 + raw[at + 28]].endswith(b"bagit.txt"):
            at = raw.index(b"PK\x01\x02", at + 4)
        raw[at + 8] |= 1  # bagit.txt's "encrypted" flag
        path.write_bytes(bytes(raw))
    fails = _fails(path)
    assert len(fails) == 1 and fails[0].startswith("bundle: cannot open"), fails
    out = subprocess.run(
        [sys.executable, "-I", str(VERIFY_PY), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr


def test_a_folder_that_is_no_bag_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert _fails(tmp_path / "empty") == [
        "layout: no bagit.txt: this is not a BagIt bag (nor a Gongkai bundle)"
    ]


def test_a_bug_in_the_checks_is_not_reported_as_an_archive_that_cannot_open(
    full: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive's own errors (OSError, ValueError, …) mean "cannot open"; the same
    classes raised by the checks' own code are a bug and keep their traceback."""

    def broken(bag_dir: Path, pinned: str | None = None) -> list[Any]:
        raise ValueError("a bug in the checks")

    monkeypatch.setattr(V, "check_bag", broken)
    with pytest.raises(ValueError, match="a bug in the checks"):
        _fails(full.path)


def _review(kind: str, target: int, log: str = LOG) -> tuple[str, str, str, str, dict[str, Any]]:
    body: dict[str, Any] = {"target_log": log, "target_index": target}
    if kind == "review.withheld":
        body |= {"reason": "third_party_rights", "legal_basis": "第十五条"}
    return (kind, f"entry:{log}#{target}", "2026-08-01", "public", body)


# The withheld bid (7) and an approved receipt (1) reviewed in the log itself, and an
# entry of another year's log approved there.
_REVIEWS = [
    _review("review.withheld", 7),
    _review("review.approved", 1),
    _review("review.approved", 3, log=f"{ORG}/2025"),
]


def test_public_variant_agrees_with_the_reviews_in_its_log(tmp_path: Path) -> None:
    b = build_bundle(tmp_path, "public", extra=_REVIEWS)
    assert _fails(b.path) == []
    [result] = [r for r in V.check_bag(b.path) if r.check == "publication"]
    assert result.status == "ok"
    assert "1 approved and 1 withheld by reviews in this log agree" in result.message


@pytest.mark.parametrize(
    ("hidden", "extra", "check", "says"),
    [
        # a withheld bid carried in full
        (frozenset({13}), _REVIEWS, "publication", "index 7 was withheld by review.withheld"),
        # an approved receipt carried as hash only
        (PUBLIC_HIDDEN | {1}, _REVIEWS, "publication", "index 1 was approved for publication"),
        # a review naming an entry that does not come before it
        (PUBLIC_HIDDEN, [_review("review.approved", 99)], "publication", "names index 99"),
        # an internal receipt carried in full
        (frozenset({7}), (), "entries", "an internal entry carried in full"),
    ],
)
def test_a_public_variant_showing_what_it_may_not_or_hiding_what_it_must_fails(
    tmp_path: Path,
    hidden: frozenset[int],
    extra: list[tuple[str, str, str, str, dict[str, Any]]],
    check: str,
    says: str,
) -> None:
    """Each bag is consistent in every other way (manifests, summaries and opinions
    made from what it carries): only what it publishes is wrong."""
    b = build_bundle(tmp_path, "public", extra=extra, hidden=hidden)
    fails = _fails(b.path)
    assert says in _only(fails, check), fails
    assert all(f.startswith((check, "root", "year.closed", "consistency", "disclosures",
                             "documents", "summaries", "publication")) for f in fails)  # fmt: skip
    if check == "publication":
        assert len(fails) == 1, fails
    # The full variant of the same log carries everything, and verifies.
    assert _fails(build_bundle(tmp_path / "full", "full", extra=extra).path) == []


# --------------------------------------------------------------------------------------
# the annual report against the log
# --------------------------------------------------------------------------------------


def _rewritten(b: Bundle, rel: str, change: Any) -> list[str]:
    """The failures once the JSON file ``rel`` is changed and the manifests made again."""
    path = b.path / rel
    doc = json.loads(path.read_bytes())
    change(doc)
    path.write_bytes(canonical_bytes(doc))
    _write_manifests(b.path)
    return _fails(b.path)


def _published(doc: dict[str, Any], kind: str, by: int) -> None:
    table = doc["ledger_published"]
    [row] = [r for r in table["rows"] if r["key"] == kind] or [None]
    if row is None:
        row = {"key": kind, "label": kind, "count": 0}
        table["rows"].append(row)
    row["count"] += by
    table["total"] += by


def _requests_new(doc: dict[str, Any]) -> None:
    [row] = [r for r in doc["requests"]["rows"] if r["key"] == "new"]
    row["values"]["natural_person"] += 1
    row["values"]["total"] += 1


def _licensing(doc: dict[str, Any]) -> None:
    [section] = [s for s in doc["proactive"]["sections"] if s["key"] == "article_20_5"]
    section["rows"][0]["values"]["decisions"] = 1


@pytest.mark.parametrize(
    ("variant", "extra", "change", "says"),
    [
        (
            "full",
            (),
            lambda d: d["as_of"].update(tree_size=d["as_of"]["tree_size"] - 1),
            "as_of is not the final checkpoint",
        ),
        ("public", (), lambda d: d.update(year=2025), "is not the report of demo-county/2026"),
        # a count changed without the cross-checks that depend on it
        ("full", (), _requests_new, "checks.balance states"),
        ("public", (), lambda d: d["checks"].update(holds=False), "checks.holds is False"),
        # one record more than the public variant shows
        (
            "public",
            (),
            lambda d: _published(d, "fund.receipt", 1),
            "3 fund.receipt records published, the leaves give 2",
        ),
        # fewer than this log's own reviews approved
        (
            "full",
            _REVIEWS,
            lambda d: _published(d, "fund.receipt", -2),
            "0 fund.receipt records published, the leaves give between 1 and 2",
        ),
        # more than the log's public leaves of the kind (the internal one counted)
        (
            "full",
            (),
            lambda d: _published(d, "fund.receipt", 1),
            "3 fund.receipt records published, the leaves give between 0 and 2",
        ),
        (
            "full",
            (),
            lambda d: _published(d, "project.approval", 1),
            "1 project.approval records published, the leaves give 0",
        ),
        ("public", (), lambda d: d["ledger_published"].update(total=0), "total is not its sum"),
        (
            "public",
            (),
            lambda d: _published(d, "review.approved", 0),
            "ledger_published row 'review.approved'",
        ),
        ("public", (), _licensing, "licensing decisions are not the project.approval"),
        (
            "full",
            (),
            lambda d: d["appeals"]["groups"][0]["values"].update(total=2),
            "appeals reconsideration: total is not its sum",
        ),
        ("full", (), lambda d: d["requests"]["rows"].pop(0), "table 三 malformed"),
        ("public", (), lambda d: d["appeals"]["groups"].pop(), "groups are not the template's"),
        (
            "public",
            (),
            lambda d: d["appeals"]["groups"][1]["values"].pop("pending"),
            "groups are not the template's",
        ),
    ],
)
def test_an_annual_report_that_does_not_match_its_log_fails(
    tmp_path: Path,
    variant: str,
    extra: list[tuple[str, str, str, str, dict[str, Any]]],
    change: Any,
    says: str,
) -> None:
    """The report is rewritten and the manifests made again: only the report is wrong."""
    b = build_bundle(tmp_path, variant, extra=extra)
    assert _fails(b.path) == []
    fails = _rewritten(b, "data/annual-report.json", change)
    assert len(fails) == 1 and says in _only(fails, "annual-report"), fails


def test_the_annual_report_check_reports_what_it_compared(tmp_path: Path) -> None:
    b = build_bundle(tmp_path, "public")
    [result] = [r for r in V.check_bag(b.path) if r.check == "annual-report"]
    assert result.status == "ok", result
    # A fund, 2 receipts (not the internal one), a disbursement, a reversal, 2 tenders,
    # 2 bids (not the withheld one), an award, a contract and a cancellation.
    assert result.message.endswith("12 records published agree with the leaves"), result


def test_the_verifier_knows_the_ledgers_system_kinds_and_appeals() -> None:
    """A system kind is never reviewed, so never counted as published; table 四 has
    the template's groups and results."""
    assert {k for k in KINDS if V._system_kind(k)} == SYSTEM_KINDS
    assert V.APPEAL_KINDS == tuple(APPEAL_KINDS) and V.APPEAL_RESULTS == tuple(APPEAL_RESULTS)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("Bagging-Date: 2026-12-31", "bag: bag-info.txt Bagging-Date 2026-12-31 is not after 2026"),
        ("Bagging-Date: 2027-02-30", "bag: bag-info.txt Bagging-Date is not a date"),
        ("Source-Organization: 别的单位", "annual-report: data/annual-report.json is the report"),
    ],
)
def test_bag_info_that_disagrees_with_the_bundle_fails(
    tmp_path: Path, line: str, says: str
) -> None:
    b = build_bundle(tmp_path, "public")
    info = (b.path / "bag-info.txt").read_text().splitlines()
    key = line.split(":")[0]
    info = [line if x.startswith(key + ":") else x for x in info]
    (b.path / "bag-info.txt").write_text("\n".join(info) + "\n")
    _write_manifests(b.path)
    fails = _fails(b.path)
    assert any(f.startswith(says) for f in fails), fails


# --------------------------------------------------------------------------------------
# the OCDS package against the log
# --------------------------------------------------------------------------------------


def _reversal(target: int) -> tuple[str, str, str, str, dict[str, Any]]:
    body = {"target_log": LOG, "target_index": target, "reason": "录入错误"}
    return ("correction.reversal", "tender:T-1", "2026-08-02", "public", body)


def test_the_ocds_package_has_a_release_for_each_procurement_leaf_it_carries(
    tmp_path: Path,
) -> None:
    """Reversals of a bid, an award and a contract add releases; of a receipt, none,
    though the package's publishedDate is its time (the builder's input is every
    procurement and reversal leaf)."""
    extra = [_reversal(6), _reversal(9), _reversal(10), _reversal(1)]
    for variant in ("full", "public"):
        b = build_bundle(tmp_path / variant, variant, extra=extra)
        assert _fails(b.path) == []
        [result] = [r for r in V.check_bag(b.path) if r.check == "ocds"]
        # 2 tenders, 3 bids, an award, a contract, a cancellation, 3 reversals; the
        # public variant carries one bid (7) as hash only.
        n = 11 if variant == "full" else 10
        assert result.status == "ok" and result.message.startswith(f"{n} releases"), result


def _release(index: int) -> Any:
    def change(doc: dict[str, Any]) -> None:
        [release] = [r for r in doc["releases"] if r["id"] == f"{LOG}-{index}"]
        doc["releases"].remove(release)

    return change


@pytest.mark.parametrize(
    ("change", "says"),
    [
        # a bid's release dropped, as if the bid were not in the ledger
        (_release(6), "release 1 is ('demo-county/2026-7'"),
        # a release with no leaf behind it
        (lambda d: d["releases"].append(dict(d["releases"][0], id="demo-county/2026-99")),
         "9 releases, the leaves carried give 8"),
        (lambda d: d["releases"][0].update(tag=["planning"]), "release 0 is"),
        (lambda d: d["releases"][3].update(ocid="ocds-gk0001-T-2"), "release 3 is"),
        (lambda d: d["releases"][1].update(date="2026-03-20T00:00:00.000000Z"), "release 1 is"),
        (lambda d: d.update(uri="urn:gongkai:elsewhere"), "uri is 'urn:gongkai:elsewhere'"),
        (lambda d: d["publisher"].update(name="别的单位"), "publisher is"),
        (lambda d: d.update(publishedDate="2026-12-31T00:00:00Z"), "publishedDate is"),
    ],
)  # fmt: skip
def test_an_ocds_package_that_does_not_match_its_log_fails(
    tmp_path: Path, change: Any, says: str
) -> None:
    b = build_bundle(tmp_path, "full")
    fails = _rewritten(b, "data/procurement/ocds-release-package.json", change)
    assert len(fails) == 1 and says in _only(fails, "ocds"), fails


def test_the_verifier_tags_releases_as_the_ledger_does() -> None:
    assert V.OCDS_TAGS == TAGS and V.OCDS_REVERSAL_TAGS == _REVERSAL_TAGS
