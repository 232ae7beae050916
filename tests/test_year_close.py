"""Closing a year and its archive bundle, end to end over HTTP and the command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import secrets
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from archive import bundle
from ledger import opinions
from ledger.checkpoint import signer_for
from ledger.errors import Conflict
from ledger.settings import Settings
from tests.conftest import Org, fund_entry, make_org
from tests.test_integrity import run_cli
from tests.test_summaries import approve, disbursement, post, receipt, withhold


def party(pid: str) -> dict[str, str]:
    return {"id": pid, "name": f"公司{pid}", "type": "enterprise"}


async def _year(client: Any, org: Org) -> None:
    """A small 2025: a fund with flows, a reversal, a tender, one withheld, one internal."""
    opened = fund_entry("PWF", on="2025-01-02")
    rs = await post(
        client,
        org,
        [
            opened,
            receipt("1000.00", "2025-02-01"),
            receipt("250.50", "2025-03-01"),
            disbursement("100.00", "2025-04-01"),
            {**receipt("77.77", "2025-05-01"), "visibility": "internal"},
            {
                "kind": "procurement.tender",
                "subject": "tender/T1",
                "occurred_on": "2025-03-01",
                "body": {
                    "tender_id": "T1",
                    "title": "监测设备采购",
                    "method": "open",
                    "value": {"amount": "5000.00"},
                    "period": {"start": "2025-03-01", "end": "2025-03-20"},
                    "buyer": party("B"),
                },
            },
            {
                "kind": "procurement.bid",
                "subject": "tender/T1",
                "occurred_on": "2025-03-05",
                "body": {"tender_id": "T1", "bidder": party("S1"), "amount": "4800.00",
                         "submitted_on": "2025-03-05"},
            },
            {
                "kind": "procurement.award",
                "subject": "tender/T1",
                "occurred_on": "2025-03-30",
                "body": {"tender_id": "T1", "supplier": party("S1"), "amount": "4800.00",
                         "date": "2025-03-30"},
            },
        ],
    )  # fmt: skip
    reversal = {
        "kind": "correction.reversal",
        "subject": "fund/PWF",
        "occurred_on": "2025-06-01",
        "body": {"target_log": f"{org.code}/2025", "target_index": 2, "reason": "重复入账"},
    }
    rs += await post(client, org, [reversal])
    for r in rs:
        if r["index"] in (0, 2, 3, 5, 6, 7):  # the reversal (8) stays pending
            await approve(client, org, r)
    await withhold(client, org, rs[1])


async def _close(client: Any, org: Org) -> dict[str, Any]:
    r = await client.post(f"/api/v1/orgs/{org.code}/logs/2025/close", headers=org.auth("admin"))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _download(client: Any, org: Org, variant: str, tmp: Path) -> Path:
    headers = org.auth("auditor") if variant == "full" else {}
    r = await client.get(
        f"/api/v1/orgs/{org.code}/archives/2025?variant={variant}", headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/zip")
    assert len(r.headers.get_list("etag")) == 1, r.headers  # the file's own, not a second
    path = tmp / f"{org.code}-{variant}.zip"
    path.write_bytes(r.content)
    return path


def _ocds_package(path: Path, org: Org) -> Any:
    with zipfile.ZipFile(path) as z:
        return json.loads(
            z.read(f"gongkai-{org.code}-2025/data/procurement/ocds-release-package.json")
        )


def _rebuilt_public(
    dsn: str, settings: Settings, org: Org, tmp: Path, closed: dict[str, Any]
) -> Path:
    """The public bundle of 2025 built again by the command line: byte for byte the
    one the close built."""
    rebuilt = run_cli(dsn, settings, "archive", "build", "--org", org.code, "--year", "2025",
                      "--variant", "public", "--out", str(tmp / "rebuilt"))  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    public_sha = next(b["sha256"] for b in closed["bundles"] if b["variant"] == "public")
    zipped = tmp / "rebuilt" / f"gongkai-{org.code}-2025-public.zip"
    assert hashlib.sha256(zipped.read_bytes()).hexdigest() == public_sha
    return zipped


def _verify(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with zipfile.ZipFile(path) as z:
        source = z.read(next(n for n in z.namelist() if n.endswith("/data/verify.py")))
    script = path.parent / "verify.py"
    script.write_bytes(source)
    return subprocess.run([sys.executable, "-I", str(script), str(path), *extra],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


async def test_close_seals_the_year_and_both_bundles_verify_offline(
    client: Any, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    org = await make_org("c")
    await _year(client, org)
    result = await _close(client, org)
    assert result["final_size"] == 10  # nine entries and year.closed
    assert result["open_items"]["pending_review"], "an unreviewed entry is carried forward"
    assert result["open_items"]["pending_review_count"] == len(
        result["open_items"]["pending_review"]
    )
    last = await pool.fetchval(
        "SELECT kind FROM leaves WHERE org = $1 AND year = 2025 ORDER BY idx DESC LIMIT 1",
        org.code,
    )
    assert last == "year.closed"
    archived = await pool.fetchrow(
        "SELECT leaf FROM leaves WHERE org = $1 AND year = 2026 AND kind = 'year.archived'",
        org.code,
    )
    body = json.loads(archived["leaf"])["body"]
    assert body["size"] == result["final_size"] and body["root"] == result["final_root"]
    full_sha = next(b["sha256"] for b in result["bundles"] if b["variant"] == "full")
    assert body["bundle_sha256"] == full_sha
    public_sha = next(b["sha256"] for b in result["bundles"] if b["variant"] == "public")
    assert body["public_bundle_sha256"] == public_sha

    for variant in ("full", "public"):
        path = await _download(client, org, variant, tmp_path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == next(
            b["sha256"] for b in result["bundles"] if b["variant"] == variant
        )
        out = _verify(path)
        assert out.returncode == 0, out.stdout + out.stderr
    # The public bundle holds no content of the withheld or internal entries.
    with zipfile.ZipFile(tmp_path / f"{org.code}-public.zip") as z:
        entries = z.read(f"gongkai-{org.code}-2025/data/entries.ndjson").decode()
    assert "77.77" not in entries and "1000.00" not in entries
    assert "250.50" in entries


async def test_posting_into_a_closed_year_is_409(client: Any) -> None:
    org = await make_org("c")
    await post(client, org, [fund_entry("A", on="2025-03-01")])
    await _close(client, org)
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries", json=fund_entry("B", on="2025-05-01"),
        headers=org.auth(),
    )  # fmt: skip
    assert r.status_code == 409
    assert "closed" in r.json()["detail"]
    again = await client.post(f"/api/v1/orgs/{org.code}/logs/2025/close", headers=org.auth("admin"))
    assert again.status_code == 409


async def test_the_current_year_cannot_be_closed_and_only_admins_close(client: Any) -> None:
    org = await make_org("c")
    await post(client, org, [fund_entry("A")])
    r = await client.post(f"/api/v1/orgs/{org.code}/logs/2026/close", headers=org.auth("admin"))
    assert r.status_code == 409
    r = await client.post(f"/api/v1/orgs/{org.code}/logs/2026/close", headers=org.auth("clerk"))
    assert r.status_code == 403


async def test_full_bundle_is_for_auditors(client: Any) -> None:
    org = await make_org("c")
    await post(client, org, [fund_entry("A", on="2025-03-01")])
    await _close(client, org)
    r = await client.get(f"/api/v1/orgs/{org.code}/archives/2025?variant=full")
    assert r.status_code == 401
    r = await client.get(
        f"/api/v1/orgs/{org.code}/archives/2025?variant=full", headers=org.auth("clerk")
    )
    assert r.status_code == 403


async def test_rebuilding_gives_byte_identical_bundles(
    client: Any, dsn: str, settings: Settings, tmp_path: Path
) -> None:
    org = await make_org("c")
    await _year(client, org)
    result = await _close(client, org)
    out = run_cli(dsn, settings, "archive", "build", "--org", org.code, "--year", "2025",
                  "--out", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    for b in result["bundles"]:
        rebuilt = tmp_path / f"gongkai-{org.code}-2025-{b['variant']}.zip"
        assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == b["sha256"]
    check = run_cli(
        dsn, settings, "archive", "verify", str(tmp_path / f"gongkai-{org.code}-2025-full.zip")
    )
    assert check.returncode == 0, check.stdout + check.stderr


async def test_bundle_passes_bagit_and_frictionless(client: Any, tmp_path: Path) -> None:
    bagit = pytest.importorskip("bagit")
    frictionless = pytest.importorskip("frictionless")
    org = await make_org("c")
    await _year(client, org)
    await _close(client, org)
    path = await _download(client, org, "public", tmp_path)
    with zipfile.ZipFile(path) as z:
        z.extractall(tmp_path / "x")
    bag_dir = tmp_path / "x" / f"gongkai-{org.code}-2025"
    bagit.Bag(str(bag_dir)).validate()
    report = frictionless.validate(str(bag_dir / "data" / "summaries" / "datapackage.json"))
    assert report.valid, report.flatten(["rowNumber", "fieldNumber", "type", "message"])


async def test_a_tampered_bundle_fails_naming_what_broke(client: Any, tmp_path: Path) -> None:
    org = await make_org("c")
    await _year(client, org)
    await _close(client, org)
    path = await _download(client, org, "full", tmp_path)
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    name = f"gongkai-{org.code}-2025/data/entries.ndjson"
    files[name] = files[name].replace(b"250.50", b"250.51")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    out = _verify(bad)
    assert out.returncode != 0
    assert "entries.ndjson" in out.stdout + out.stderr


async def test_the_bundles_ocds_package_is_valid_ocds_1_1_5(client: Any, tmp_path: Path) -> None:
    from tests.test_public_demo import _ocds_validator

    validator = _ocds_validator()
    org = await make_org("c")
    await _year(client, org)
    await _close(client, org)
    for variant in ("full", "public"):
        path = await _download(client, org, variant, tmp_path)
        package = _ocds_package(path, org)
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(package)]
        assert not errors, errors[:5]


@pytest.mark.parametrize(("chunk", "per_row"), [(1, None), (3, None), (None, None), (None, 1),
                                               (None, 3)])  # fmt: skip
async def test_bundles_read_in_small_ranges_are_the_same_bytes(
    client: Any,
    pool: asyncpg.Pool,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int | None,
    per_row: int | None,
) -> None:
    """Leaves, postings and reviews read range by range (one read ahead) merge by index;
    and the full variant's lines copied, its summaries from the year's sums (as the
    close built it, with a helper connection) are the same bytes as read range by range,
    or copied without a helper, one or a few leaves a row of the copy."""
    org = await make_org("r")
    await _year(client, org)
    result = await _close(client, org)
    if chunk is not None:
        monkeypatch.setattr(bundle, "CHUNK", chunk)
        monkeypatch.setattr(bundle, "FULL_FROM_SUMS", False)
    if per_row is not None:  # the full variant's lines copied a few leaves a row
        monkeypatch.setattr(bundle._FullYear, "PER_ROW", per_row)
    signer = signer_for(settings.signing_key, settings.key_name)
    async with pool.acquire() as conn:
        for b in result["bundles"]:
            built = await bundle.build_bundle(conn, settings, signer, org.code, 2025, b["variant"])
            assert built.sha256 == b["sha256"], b["variant"]


async def test_a_full_year_whose_sums_do_not_hold_is_summed_leaf_by_leaf(
    client: Any, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A receipt without its fund posting: the year's sums would miss it, so the full
    variant's summaries are read range by range, its money from the leaf itself."""
    org = await make_org("s")
    await _year(client, org)
    result = await _close(client, org)
    full = next(b for b in result["bundles"] if b["variant"] == "full")
    signer = signer_for(settings.signing_key, settings.key_name)
    async with pool.acquire() as conn, pool.acquire() as helper:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # no triggers
            await conn.execute(
                "DELETE FROM postings WHERE org = $1 AND year = 2025 AND idx = 1", org.code
            )
        whole = bundle._FullYear(bundle._EntryRows(conn, org.code, 2025, 10, None, decisions=False))
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            assert await whole.sums(conn) is None
        built = await bundle.build_bundle(
            conn, settings, signer, org.code, 2025, "full", helper=helper
        )
    assert built.sha256 == full["sha256"]


async def test_the_build_reads_each_range_by_primary_key_whatever_the_statistics(
    pool: asyncpg.Pool,
) -> None:
    """No other index of the org and no sort: statistics that have not seen an org yet
    (one row estimated) made the planner scan the whole org for every range."""
    async with pool.acquire() as conn:
        tx = conn.transaction()  # rolled back: the rows and the statistics are the test's
        await tx.start()
        # Statistics that know other orgs' rows and not the one being read.
        other = f"stats-{secrets.token_hex(3)}"
        await conn.execute(
            """INSERT INTO postings (org, year, idx, line, fund_code, account, amount_fen,
                   flow, month)
               SELECT $1, 2024, i, l, 'F' || (i % 7), 'fund', 1, 'receipt', '2024-01-01'
               FROM generate_series(0, 24999) i, generate_series(0, 1) l""",
            other,
        )
        await conn.execute("ANALYZE postings")
        await conn.execute(bundle._EntryRows.PLAN)
        for sql, args, pkey in [
            (bundle._EntryRows.LEAVES, ("unseen-org", 2024, 5000, 10000), "leaves_pkey"),
            (bundle._FullYear.PARSED, ("unseen-org", "procurement.bid", 2024, 9), "leaves_kind"),
            (bundle._EntryRows.POSTINGS, ("unseen-org", 2024, 5000, 10000), "postings_pkey"),
            (bundle._EntryRows.TARGETS, ("unseen-org", 2024, [5, 7000]), "postings_pkey"),
            (
                bundle._EntryRows.REVIEWS,
                ("unseen-org", 2024, 5000, 10000, dt.datetime.now(dt.UTC), '{"2025": 10}'),
                "reviews_pkey",
            ),
        ]:
            plan = json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))[0]
            node = plan["Plan"]
            assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (pkey, node)
            assert node["Index Name"] == pkey
            assert "Plans" not in node  # nothing above or below the scan: no sort
        # The full variant's lines: PER_ROW leaves a row, each row one range of the key.
        plan = json.loads(
            await conn.fetchval(
                "EXPLAIN (FORMAT JSON) " + bundle._FullYear.LINES, "unseen-org", 2024, 10000, 512
            )
        )[0]
        node = plan["Plan"]
        assert node["Node Type"] == "Nested Loop", node
        series, rows = node["Plans"]
        assert series["Node Type"] == "Function Scan" and rows["Node Type"] == "Aggregate"
        (scan,) = rows["Plans"]
        while scan["Node Type"] == "Subquery Scan":
            (scan,) = scan["Plans"]
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
        assert scan["Index Name"] == "leaves_pkey" and "Plans" not in scan
        # The full variant's sums: hashed, over the range of the primary key.
        plan = json.loads(
            await conn.fetchval(
                "EXPLAIN (FORMAT JSON) " + bundle._EntryRows.FLOWS, "unseen-org", 2024, 5000, 10000
            )
        )[0]
        node = plan["Plan"]
        assert node["Node Type"] == "Aggregate" and node["Strategy"] == "Hashed", node
        (scan,) = node["Plans"]
        while scan["Node Type"] == "Subquery Scan":
            (scan,) = scan["Plans"]
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
        assert scan["Index Name"] == "postings_pkey" and "Plans" not in scan
        # The year's counts by kind: each one a range of the kind index.
        plan = json.loads(
            await conn.fetchval(
                "EXPLAIN (FORMAT JSON) " + bundle._FullYear.KINDS, "unseen-org", 2024, ["a"], 9
            )
        )[0]
        (count,) = plan["Plan"]["Plans"]
        assert count["Node Type"] == "Aggregate", count
        (scan,) = count["Plans"]
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
        assert scan["Index Name"] == "leaves_kind" and "Plans" not in scan
        await tx.rollback()


async def test_a_copy_short_of_leaves_stops_the_helper_and_says_so(
    client: Any, pool: asyncpg.Pool
) -> None:
    """Fewer lines than the year's size: 409, with the helper's read stopped first, so
    both transactions end cleanly and the connections stay usable."""
    org = await make_org("h")
    await _year(client, org)
    await _close(client, org)
    async with pool.acquire() as conn, pool.acquire() as helper:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            final = await conn.fetchval(
                "SELECT final_size FROM year_closes WHERE org = $1 AND year = 2025", org.code
            )
            rows = bundle._EntryRows(conn, org.code, 2025, final + 1, None, decisions=False)

            class Sink:
                def write(self, data: bytes) -> None:
                    pass

            async with bundle._same_snapshot(conn, helper) as side:
                with pytest.raises(Conflict, match="not all there"):
                    await bundle._FullYear(rows).write(Sink(), side)  # type: ignore[arg-type]
        assert await conn.fetchval("SELECT 1") == 1
        assert await helper.fetchval("SELECT 1") == 1


async def test_a_failed_build_reports_its_own_error_and_leaves_nothing(
    client: Any, pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await make_org("f")
    await _year(client, org)
    await _close(client, org)

    def broken(self: Any, data: bytes) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(bundle._Member, "write", broken)
    signer = signer_for(settings.signing_key, settings.key_name)
    async with pool.acquire() as conn:
        for variant in ("full", "public"):
            # (A COPY whose sink raised used to leave the connection waiting for ever.)
            with pytest.raises(OSError, match="disk full"):
                async with asyncio.timeout(60):
                    await bundle.build_bundle(conn, settings, signer, org.code, 2025, variant)
        assert await conn.fetchval("SELECT 1") == 1
    assert not list(settings.archive_dir.glob(".build-*"))


async def test_a_build_takes_a_helper_connection_only_if_one_is_free(dsn: str) -> None:
    """A build never waits for a second connection of the pool: builds each holding one
    and waiting for another could take the whole pool."""
    from ledger import db

    small = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with small.acquire(), bundle.spare_connection(small) as helper:
            assert helper is not None
            async with bundle.spare_connection(small) as none_left:
                assert none_left is None
        async with bundle.spare_connection(small) as again:  # released
            assert again is not None
    finally:
        await small.close()


async def test_the_close_lists_the_first_open_items_and_counts_them_all(client: Any) -> None:
    from api.archives import OPEN_ITEMS_LISTED

    org = await make_org("cl")
    many = OPEN_ITEMS_LISTED + 20
    entries = [fund_entry("PWF", on="2025-01-02")]
    entries += [receipt(f"{i + 1}.00", "2025-02-01") for i in range(many - 1)]
    await post(client, org, entries)
    items = (await _close(client, org))["open_items"]
    assert items["pending_review_count"] == many
    assert [i["index"] for i in items["pending_review"]] == list(range(OPEN_ITEMS_LISTED))
    assert items["open_cases"] == [] and items["open_cases_count"] == 0


async def test_a_closed_year_with_opinions_verifies_offline(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder's opinions.ndjson is what data/verify.py checks against the leaves:
    the events in index order, and in the full variant the words each submission's
    leaf commits to."""
    from tests.test_opinions import event, on, submit

    org = await make_org("co")
    on(monkeypatch, "2025-06-02")
    code = (await submit(client, org))["tracking_code"]
    await event(client, org, code, "accept")
    await _close(client, org)
    for variant in ("full", "public"):
        path = await _download(client, org, variant, tmp_path)
        out = _verify(path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "opinions.ndjson (2 events, as their leaves)" in out.stdout, out.stdout
        with zipfile.ZipFile(path) as z:
            lines = z.read(f"gongkai-{org.code}-2025/data/opinions.ndjson").splitlines()
        assert ("personal_data" in lines[0].decode()) == (variant == "full")


async def test_a_year_without_procurement_carries_an_empty_ocds_package(
    client: Any, tmp_path: Path
) -> None:
    """SPEC §7 lists the package among the payload: it is there for every year; with
    no procurement its ``releases`` is empty, and the bundle verifies."""
    org = await make_org("c")
    await post(client, org, [fund_entry("PWF", on="2025-01-02"), receipt("10.00", "2025-02-01")])
    await _close(client, org)
    for variant in ("full", "public"):
        path = await _download(client, org, variant, tmp_path)
        package = _ocds_package(path, org)
        assert package["releases"] == []
        assert {"uri", "publisher", "publishedDate", "version"} <= package.keys()
        out = _verify(path)
        assert out.returncode == 0, out.stdout + out.stderr


async def test_the_public_bundle_agrees_with_reviews_made_in_its_year(
    client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pool: asyncpg.Pool,
    dsn: str,
    settings: Settings,
) -> None:
    """Reviews made during the year are leaves of its own log: the offline verifier
    holds the public bundle to them (one approved, one withheld, one internal). A
    review that is a leaf of the closed log counts whatever its time says: a review
    taking the org's lock while the close waited for it is recorded after the
    close's start."""
    org = await make_org("cr")
    internal = {**receipt("30.00", "2025-02-03"), "visibility": "internal"}
    rs = await post(
        client,
        org,
        [
            fund_entry("PWF", on="2025-01-02"),
            receipt("10.00", "2025-02-01"),
            receipt("20.00", "2025-02-02"),
            internal,
        ],
    )
    monkeypatch.setattr("api.staff.china_today", lambda: dt.date(2025, 12, 30))
    for r in rs[:2]:
        await approve(client, org, r)
    await withhold(client, org, rs[2])
    monkeypatch.undo()
    result = await _close(client, org)
    path = await _download(client, org, "public", tmp_path)
    out = _verify(path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 approved and 1 withheld by reviews in this log agree" in out.stdout, out.stdout
    async with pool.acquire() as conn, conn.transaction():  # past the append-only guard
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            """UPDATE reviews SET reviewed_at = c.closed_at + interval '1 second'
               FROM year_closes c WHERE c.org = reviews.org AND c.year = 2025
                 AND reviews.org = $1 AND reviews.year = 2025""",
            org.code,
        )
    _rebuilt_public(dsn, settings, org, tmp_path, result)
    with zipfile.ZipFile(path) as z:
        entries = z.read(f"gongkai-{org.code}-2025/data/entries.ndjson").decode()
    assert "10.00" in entries and "20.00" not in entries and "30.00" not in entries


async def test_a_review_after_the_close_is_not_the_closed_years_whatever_its_clock(
    client: Any, pool: asyncpg.Pool, dsn: str, settings: Settings, tmp_path: Path
) -> None:
    """The close records the sizes of the org's later logs under its lock: a review
    below them was made by the close, one above after it, whatever the app's clock
    said (here an hour behind the database's). The report frozen at the close and
    every rebuild of the public bundle agree on it, and the rebuild is byte for byte
    the bundle built at the close."""
    org = await make_org("cq")
    await _year(client, org)  # its six approvals are made today: leaves of 2026
    result = await _close(client, org)
    close = await pool.fetchrow(
        "SELECT closed_at, annual_report, later_heads FROM year_closes "
        "WHERE org = $1 AND year = 2025",
        org.code,
    )
    size_2026 = await pool.fetchval(
        "SELECT size FROM logs WHERE org = $1 AND year = 2026", org.code
    )
    # year.archived came after the close took the heads.
    assert json.loads(close["later_heads"]) == {"2026": size_2026 - 1}
    stored = json.loads(bytes(close["annual_report"]))["ledger_published"]
    assert stored["total"] == 6, stored
    # The pending reversal (index 8) is approved after the close, by a clock behind.
    await approve(client, org, {"log": f"{org.code}/2025", "index": 8})
    async with pool.acquire() as conn, conn.transaction():  # past the append-only guard
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            """UPDATE reviews SET reviewed_at = $2::timestamptz - interval '1 hour'
               WHERE org = $1 AND target_year = 2025 AND target_index = 8""",
            org.code,
            close["closed_at"],
        )
    async with pool.acquire() as conn:
        now = await opinions.annual_report(conn, org.code, "c", 2025, None)
        at_close = await opinions.annual_report(
            conn, org.code, "c", 2025, None, close["later_heads"]
        )
    assert now["ledger_published"]["total"] == 7
    assert at_close["ledger_published"] == stored
    zipped = _rebuilt_public(dsn, settings, org, tmp_path, result)
    out = _verify(zipped)
    assert out.returncode == 0, out.stdout + out.stderr


async def test_the_bundles_ocds_releases_are_those_of_their_procurement_leaves(
    client: Any, tmp_path: Path
) -> None:
    """A year with every procurement kind, a withheld bid and reversals of a bid and an
    award: data/verify.py finds one release for each procurement leaf each variant
    carries and for each reversal of a bid, award or contract carried before it."""
    org = await make_org("cp")
    t = "tender/T9"

    def proc(kind: str, on: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"kind": f"procurement.{kind}", "subject": t, "occurred_on": on,
                "body": {"tender_id": "T9", **body}}  # fmt: skip

    def bid(pid: str, amount: str, on: str) -> dict[str, Any]:
        return proc("bid", on, {"bidder": party(pid), "amount": amount, "submitted_on": on})

    rs = await post(
        client,
        org,
        [
            proc("tender", "2025-03-01", {
                "title": "水质监测站建设", "method": "open", "value": {"amount": "9000.00"},
                "period": {"start": "2025-03-01", "end": "2025-03-20"}, "buyer": party("B")}),
            bid("S1", "8800.00", "2025-03-05"),
            bid("S2", "8700.00", "2025-03-06"),
            bid("S3", "8600.00", "2025-03-07"),
            proc("amendment", "2025-03-08", {
                "rationale": "延长投标期", "changes": {"period": {"end": "2025-03-25"}}}),
            proc("award", "2025-03-30", {"supplier": party("S2"), "amount": "8700.00",
                                         "date": "2025-03-30"}),
        ],
    )  # fmt: skip
    log = f"{org.code}/2025"

    def reversal(target: int) -> dict[str, Any]:
        body = {"target_log": log, "target_index": target, "reason": "录入错误"}
        return {"kind": "correction.reversal", "subject": t, "occurred_on": "2025-04-01",
                "body": body}  # fmt: skip

    rs += await post(client, org, [reversal(rs[3]["index"]), reversal(rs[5]["index"])])
    rs += await post(
        client,
        org,
        [
            proc("award", "2025-04-10", {"supplier": party("S1"), "amount": "8800.00",
                                         "date": "2025-04-10"}),
            proc("contract", "2025-04-20", {"contract_id": "HT-9", "supplier": party("S1"),
                                            "amount": "8800.00", "signed_on": "2025-04-20"}),
        ],
    )  # fmt: skip
    for r in rs:
        if r is rs[2]:
            await withhold(client, org, r)
        else:
            await approve(client, org, r)
    await _close(client, org)
    # Full: 8 procurement leaves and the 2 reversals (of the S3 bid and of the first
    # award); public: the same but the withheld S2 bid.
    for variant, releases in (("full", 10), ("public", 9)):
        path = await _download(client, org, variant, tmp_path)
        out = _verify(path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"ok  ocds: {releases} releases, one for each" in out.stdout, out.stdout
        assert "ok  annual-report: names the final checkpoint" in out.stdout, out.stdout
        assert len(_ocds_package(path, org)["releases"]) == releases


async def test_a_year_closed_before_later_heads_keeps_the_clock_rule(
    client: Any, pool: asyncpg.Pool, dsn: str, settings: Settings, tmp_path: Path
) -> None:
    """A close made before year_closes.later_heads existed (NULL) decides "by the
    close" as its bundles were built: the review's reviewed_at by closed_at."""
    org = await make_org("cn")
    await _year(client, org)  # fund.opened (0) among the six approved, in 2026
    await _close(client, org)
    async with pool.acquire() as conn, conn.transaction():  # past the append-only guard
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE year_closes SET later_heads = NULL WHERE org = $1 AND year = 2025", org.code
        )
        await conn.execute(
            """UPDATE reviews SET reviewed_at = c.closed_at + interval '1 second'
               FROM year_closes c WHERE c.org = reviews.org AND c.year = 2025
                 AND reviews.org = $1 AND reviews.target_index = 0""",
            org.code,
        )
    rebuilt = run_cli(dsn, settings, "archive", "build", "--org", org.code, "--year", "2025",
                      "--variant", "public", "--out", str(tmp_path / "rebuilt"))  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    with zipfile.ZipFile(tmp_path / "rebuilt" / f"gongkai-{org.code}-2025-public.zip") as z:
        lines = z.read(f"gongkai-{org.code}-2025/data/entries.ndjson").splitlines()
    assert "leaf" not in json.loads(lines[0])  # reviewed after closed_at: hash only
    assert "leaf" in json.loads(lines[2])  # reviewed before it: in full


async def test_a_bundle_download_is_tagged_by_its_sha256(client: Any) -> None:
    """The ETag was the file's modification time and size, with no Cache-Control,
    and If-None-Match was not answered: an auditor fetched the whole zip again."""
    org = await make_org("c")
    await post(client, org, [fund_entry("A", on="2025-03-01")])
    shas = {b["variant"]: b["sha256"] for b in (await _close(client, org))["bundles"]}
    url = f"/api/v1/orgs/{org.code}/archives/2025"
    r = await client.get(url)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == shas["public"]
    assert r.headers["etag"] == f'"{shas["public"]}"'
    assert r.headers["cache-control"] == "public, max-age=5"
    for tag in (r.headers["etag"], f"W/{r.headers['etag']}", f'"x", {r.headers["etag"]}', "*"):
        again = await client.get(url, headers={"If-None-Match": tag})
        assert again.status_code == 304, tag
        assert again.content == b"" and again.headers["etag"] == r.headers["etag"]
    other = await client.get(url, headers={"If-None-Match": f'"{shas["full"]}"'})
    assert other.status_code == 200 and other.content == r.content

    auditor = org.auth("auditor")
    r = await client.get(f"{url}?variant=full", headers=auditor)
    assert r.status_code == 200 and r.headers["etag"] == f'"{shas["full"]}"'
    assert r.headers["cache-control"] == "private, no-store"
    r = await client.get(
        f"{url}?variant=full", headers={**auditor, "If-None-Match": f'"{shas["full"]}"'}
    )
    assert r.status_code == 304
