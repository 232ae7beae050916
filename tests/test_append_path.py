"""The append path's shortcuts equal the careful paths: leaf splice and batch decoding."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import entries as entries_mod
from ledger import sequencer
from ledger.canonical import canonical_bytes, canonical_typed
from ledger.entries import NewEntry, decode_entry
from ledger.kinds import KINDS
from ledger.sequencer import LeafParts, append_entries, build_leaf
from tests.conftest import Org, fund_entry, make_org

texts = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1, max_size=40
)
codes = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,20}", fullmatch=True)


@st.composite
def entries(draw: st.DrawFn) -> NewEntry:
    body = msgspec.convert(
        {
            "fund_code": draw(codes),
            "amount": f"{draw(st.integers(0, 10**11))}.{draw(st.integers(0, 99)):02d}",
            "payer": {"id": draw(codes), "name": draw(texts), "type": "enterprise"},
            "reference": draw(texts),
        },
        KINDS["fund.receipt"],
    )
    return NewEntry(
        org=draw(st.from_regex(r"[a-z][a-z0-9-]{1,30}", fullmatch=True)),
        kind="fund.receipt",
        subject=draw(texts),
        occurred_on=draw(st.dates(dt.date(1900, 1, 1), dt.date(2999, 12, 31))),
        visibility=draw(st.sampled_from(["public", "internal"])),
        body=body,
        actor=draw(texts),
        idempotency_key=draw(st.none() | texts),
    )


@settings(max_examples=300)
@given(entries(), st.integers(0, 2**53 - 1), st.datetimes())
def test_spliced_leaf_is_the_canonical_leaf(entry: NewEntry, index: int, when: dt.datetime) -> None:
    recorded_at = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parts = LeafParts(entry)
    spliced = parts.leaf_bytes(index, recorded_at.encode())
    leaf = orjson.loads(spliced)
    # The salt is random per entry: take the one the parts drew.
    expected = build_leaf(entry, index=index, recorded_at=recorded_at)
    expected["salt"] = leaf["salt"]
    assert spliced == canonical_typed(expected)
    assert spliced == canonical_bytes(expected)
    assert leaf["index"] == index and leaf["recorded_at"] == recorded_at


def test_batch_fast_path_decodes_as_the_per_entry_path() -> None:
    """The one-pass batch decoder gives the same entries as decoding entry by entry."""
    from bench.workload import Mix, batch_body

    raw = batch_body(Mix(2026, ("F-1", "F-2"), "t").batch(0, 300))
    fast = entries_mod._decode_typed(raw, "org", "clerk")
    assert fast is not None and len(fast) == 300
    slow = [
        entries_mod._decode_one(r, "$", "org", "clerk")
        for r in entries_mod._batch.decode(raw).entries
    ]
    assert fast == slow
    assert {e.kind for e in fast} == {"fund.receipt", "fund.opened", "project.registered"}


def test_batch_fast_path_leaves_errors_to_the_per_entry_path() -> None:
    good = {"kind": "fund.opened", "subject": "fund/A", "occurred_on": "2026-01-02",
            "body": {"fund_code": "A", "name": "n", "category": "subsidy"}}  # fmt: skip
    bad_year = {**good, "occurred_on": "3001-01-01"}
    bad_kind = {**good, "kind": "year.closed"}
    for batch in ([good, bad_year], [bad_kind, good], [good] * 1001, []):
        raw = orjson.dumps({"entries": batch})
        assert entries_mod._decode_typed(raw, "org", "clerk") is None


async def test_every_leaf_of_a_batch_has_its_own_salt(client: Any, org: Org, pool: Any) -> None:
    """The salts of a batch are drawn in one call and cut per entry, never shared."""
    entries = [fund_entry(f"S{secrets.token_hex(3)}-{i}") for i in range(50)]
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 201, r.text
    leaves = await pool.fetch("SELECT leaf FROM leaves WHERE org = $1", org.code)
    salts = [orjson.loads(row["leaf"])["salt"] for row in leaves]
    assert len(salts) == 50 and len(set(salts)) == 50
    assert all(len(s) == 32 and int(s, 16) >= 0 for s in salts)


async def test_a_log_is_taken_as_known_only_once_committed_before(
    client: Any, org: Org, pool: Any
) -> None:
    """The cache of existing logs skips their creation; it never holds an uncommitted one."""
    key = (org.code, 2026)
    raw = orjson.dumps(fund_entry("K0"))
    entry = decode_entry(raw, org=org.code, actor="clerk", idempotency_key=None)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await append_entries(conn, [entry])  # creates the log, then rolls back
        await tx.rollback()
    assert key not in sequencer._KNOWN_LOGS

    for n, code in enumerate(["K1", "K2"]):
        r = await client.post(
            f"/api/v1/orgs/{org.code}/entries", json=fund_entry(code), headers=org.auth()
        )
        assert r.status_code == 201, r.text
        assert r.json()["index"] == n
        # created by the first post: known from the second, which found it committed
        assert (key in sequencer._KNOWN_LOGS) == (n == 1)


async def test_a_log_taken_as_known_but_missing_is_created_with_its_opener(
    client: Any, org: Org, pool: Any
) -> None:
    """Another database behind the same process: the log is created after all."""
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries", json=fund_entry("M1"), headers=org.auth()
    )
    assert r.status_code == 201
    sequencer._KNOWN_LOGS.add((org.code, 2027))
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries",
        json=fund_entry("M2", on="2027-01-04"),
        headers=org.auth(),
    )
    assert r.status_code == 201, r.text
    assert r.json()["index"] == 1
    rows = await pool.fetch(
        "SELECT idx, kind FROM leaves WHERE org = $1 AND year = 2027 ORDER BY idx", org.code
    )
    assert [(row["idx"], row["kind"]) for row in rows] == [(0, "year.opened"), (1, "fund.opened")]


async def test_a_year_before_the_first_log_cannot_start_a_log_later(client: Any) -> None:
    """Each year's log begins by naming the year before (year.opened): once 2026 has a
    log, an entry dated 2025 cannot start one. Both years in one batch can."""
    org = await make_org("yc")
    url = f"/api/v1/orgs/{org.code}/entries"
    r = await client.post(url, json=fund_entry("A", on="2026-02-01"), headers=org.auth())
    assert r.status_code == 201, r.text
    r = await client.post(url, json=fund_entry("B", on="2025-12-01"), headers=org.auth())
    assert r.status_code == 409, r.text
    assert r.json()["first_year"] == 2026

    both = await make_org("yd")
    batch = {"entries": [fund_entry("C", on="2026-02-01"), fund_entry("D", on="2025-12-01")]}
    r = await client.post(f"{url.replace(org.code, both.code)}/batch", json=batch,
                          headers=both.auth())  # fmt: skip
    assert r.status_code == 201, r.text
    first = await client.get(f"/api/v1/orgs/{both.code}/logs/2026/entries/0")
    assert first.json()["kind"] == "year.opened", first.text


async def _chain(client: Any, org: Org) -> list[tuple[int, str | None]]:
    """Each of ``org``'s logs with the log its first leaf (year.opened) names."""
    out = []
    for year in range(2020, 2029):
        first = await client.get(f"/api/v1/orgs/{org.code}/logs/{year}/entries/0")
        if first.status_code == 404:
            continue
        assert first.status_code == 200, first.text
        body = first.json()
        named = body["body"]["previous_log"] if body["kind"] == "year.opened" else None
        out.append((year, named))
    return out


async def test_a_log_after_a_skipped_year_opens_the_years_between(client: Any) -> None:
    """The years form one chain (SPEC §4): after 2023, an entry dated 2026 opens 2024
    and 2025 as well, each naming the year before. The close of 2023 and a late 2025
    entry then go into those logs, and no log is named twice."""
    gap = await make_org("ye")
    url = f"/api/v1/orgs/{gap.code}/entries"
    for on in ("2023-05-01", "2026-02-01"):
        r = await client.post(url, json=fund_entry(f"G{on[:4]}", on=on), headers=gap.auth())
        assert r.status_code == 201, r.text
    assert r.json()["index"] == 1  # 2026: year.opened, then the entry
    chain = [(2023, None)] + [(y, f"{gap.code}/{y - 1}") for y in (2024, 2025, 2026)]
    assert await _chain(client, gap) == chain
    r = await client.post(f"/api/v1/orgs/{gap.code}/logs/2023/close", headers=gap.auth("admin"))
    assert r.status_code == 201, r.text
    assert r.json()["archived_entry"] == f"{gap.code}/2024#1"
    r = await client.post(url, json=fund_entry("G2025", on="2025-05-01"), headers=gap.auth())
    assert r.status_code == 201, r.text
    assert (r.json()["log"], r.json()["index"]) == (f"{gap.code}/2025", 1)
    assert await _chain(client, gap) == chain

    # One batch that skips a year, for an org without logs: the same chain.
    batch = await make_org("yf")
    body = {"entries": [fund_entry("B1", on="2024-02-01"), fund_entry("B2", on="2026-02-01")]}
    r = await client.post(f"/api/v1/orgs/{batch.code}/entries/batch", json=body,
                          headers=batch.auth())  # fmt: skip
    assert r.status_code == 201, r.text
    assert await _chain(client, batch) == [
        (2024, None), (2025, f"{batch.code}/2024"), (2026, f"{batch.code}/2025")
    ]  # fmt: skip


async def test_no_log_opens_more_than_a_year_ahead(client: Any, pool: Any) -> None:
    """A mistyped year would open its log and, with the years between, many more."""
    import datetime as dt

    org = await make_org("yg")
    url = f"/api/v1/orgs/{org.code}/entries"
    r = await client.post(url, json=fund_entry("N", on="2026-02-01"), headers=org.auth())
    assert r.status_code == 201, r.text
    ahead = dt.datetime.now(dt.UTC).year + 1
    r = await client.post(url, json=fund_entry("F", on=f"{ahead + 1}-02-01"), headers=org.auth())
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["latest_year"] == ahead
    years = await pool.fetch("SELECT year FROM logs WHERE org = $1 ORDER BY year", org.code)
    assert [row["year"] for row in years] == [2026]  # nothing opened, not even between
    r = await client.post(url, json=fund_entry("A", on=f"{ahead}-02-01"), headers=org.auth())
    assert r.status_code == 201, r.text


def test_a_retry_fingerprint_leaves_out_defaults_the_leaf_now_carries() -> None:
    """fund.opened leaves carry currency and allow_overdraft since 2026-11-27; the
    fingerprint of an Idempotency-Key's request is what it was before."""
    entry = decode_entry(orjson.dumps(fund_entry("F")), org="o", actor="a", idempotency_key="k")
    assert b'"currency":"CNY"' in build_leaf_bytes(entry)
    before = {
        "kind": "fund.opened", "subject": "fund/F", "occurred_on": "2026-03-15",
        "visibility": "public", "body": fund_entry("F")["body"],
    }  # fmt: skip
    assert entry.request_sha256() == hashlib.sha256(canonical_bytes(before)).digest()
    explicit = decode_entry(
        orjson.dumps({**fund_entry("F"), "body": {**fund_entry("F")["body"], "currency": "CNY"}}),
        org="o", actor="a", idempotency_key="k",
    )  # fmt: skip
    assert explicit.request_sha256() == entry.request_sha256()


def build_leaf_bytes(entry: NewEntry) -> bytes:
    return LeafParts(entry, b"\0" * 16).leaf_bytes(0, b"2026-03-15T00:00:00.000000Z")


async def test_the_year_ahead_is_the_append_clocks(org: Org, pool: Any) -> None:
    """The limit on opening logs ahead follows the ``now`` the append is given."""
    import pytest

    from ledger.errors import Conflict

    raw = orjson.dumps(fund_entry("AH", on="2031-02-01"))
    entry = decode_entry(raw, org=org.code, actor="clerk", idempotency_key=None)
    for year, allowed in ((2029, False), (2030, True)):
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                when = dt.datetime(year, 6, 1, tzinfo=dt.UTC)
                if allowed:
                    receipts = await append_entries(conn, [entry], now=when)
                    assert receipts[0].log == f"{org.code}/2031"
                else:
                    with pytest.raises(Conflict) as refused:
                        await append_entries(conn, [entry], now=when)
                    assert refused.value.extra["latest_year"] == 2030
            finally:
                await tx.rollback()
