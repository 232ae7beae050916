"""The bundle's zip writer: parallel deflate chunks make one valid deflate stream."""

from __future__ import annotations

import hashlib
import os
import random
import zipfile
from pathlib import Path
from typing import Any

import pytest

from archive import bundle


@pytest.mark.parametrize("chunk", [7, 1000, 1 << 16])
def test_streamed_member_round_trips(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle._Member, "CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    lines = [
        (b'{"index":%d,"salt":"%s","text":"%s"}\n'
         % (i, os.urandom(8).hex().encode(), ("示范" * rng.randint(0, 40)).encode()))
        for i in range(3000)
    ]  # fmt: skip
    out = tmp_path / "b.zip"
    payload = _write_bag(out, lines)
    data = b"".join(lines)
    assert payload.files["data/entries.ndjson"] == (hashlib.sha256(data).hexdigest(), len(data))
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None  # every CRC checks
        assert z.read("bag/data/entries.ndjson") == data
        assert z.read("bag/data/small.txt") == b"small\n"
        info = z.getinfo("bag/data/entries.ndjson")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert chunk < 1000 or info.compress_size < len(data)
    # The same bytes give the same zip, however the writes split them: chunks are cut
    # at whole multiples of CHUNK_BYTES.
    again = tmp_path / "c.zip"
    _write_bag(again, lines)
    assert again.read_bytes() == out.read_bytes()
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    split = tmp_path / "d.zip"
    _write_bag(split, pieces)
    assert split.read_bytes() == out.read_bytes()
    whole = tmp_path / "e.zip"
    _write_bag(whole, [data])
    assert whole.read_bytes() == out.read_bytes()


def _write_bag(out: Path, lines: list[bytes]) -> bundle._Payload:
    """A bag zip of ``lines`` as entries.ndjson (streamed) and one small file."""
    payload = bundle._Payload(out, "bag")
    member = payload.open("entries.ndjson")
    for line in lines:
        member.write(line)
    payload.done("entries.ndjson", member)
    payload.put("small.txt", b"small\n")
    payload.close()
    return payload


# --------------------------------------------------------------------------------------
# summaries made range by range, from fund postings, equal the verifier's from leaves
# --------------------------------------------------------------------------------------


def _year_of_leaves(rng: random.Random, n: int) -> list[dict[str, Any]]:
    from tests.test_archive_verify import LOG, _leaf, _money

    leaves: list[dict[str, Any]] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.12 and i:  # reverse any earlier leaf: money, a bid, another reversal
            body = {"target_log": LOG, "target_index": rng.randrange(i), "reason": "twice"}
            spec = ("correction.reversal", f"entry:{i}", "2026-05-01", "public", body)
            leaves.append(_leaf(i, spec))
        elif roll < 0.2:
            bid = {"tender_id": f"T-{i % 3}", "amount": "5.00", "submitted_on": "2026-01-01",
                   "bidder": {"id": f"b{i % 5}", "name": "B", "type": "enterprise"}}  # fmt: skip
            leaves.append(_leaf(i, ("procurement.bid", "tender:T", "2026-01-01", "public", bid)))
        elif roll < 0.3:
            body = {"code": f"P-{i}", "name": "Road"}
            leaves.append(_leaf(i, ("project.registered", f"project:P-{i}", "2026-02-01",
                                    rng.choice(["public", "internal"]), body)))  # fmt: skip
        else:
            kind = rng.choice(["fund.receipt", "fund.disbursement"])
            amount = f"{rng.randrange(1, 10**6)}.{rng.randrange(100):02d}"
            leaves.append(_money(i, kind, f"F-{rng.randrange(3)}", amount, rng.randrange(1, 13)))
    return leaves


def _flows(leaves: list[dict[str, Any]]) -> list[tuple[str, Any, str, int, int]]:
    """(fund_code, month, flow, count, fen) of the receipts and disbursements: their
    fund postings summed, as ``_EntryRows.FLOWS`` reads them."""
    import datetime as dt

    sums: dict[tuple[str, Any, str], list[int]] = {}
    for leaf in leaves:
        if leaf["kind"] in ("fund.receipt", "fund.disbursement"):
            month = dt.date.fromisoformat(leaf["occurred_on"]).replace(day=1)
            key = (leaf["body"]["fund_code"], month, leaf["kind"].removeprefix("fund."))
            row = sums.setdefault(key, [0, 0])
            row[0] += 1
            row[1] += _fund_fen(leaf)
    return [(*key, n, fen) for key, (n, fen) in sums.items()]


def _fund_fen(leaf: dict[str, Any]) -> int:
    whole, _, part = leaf["body"]["amount"].partition(".")
    fen = int(whole) * 100 + int(part)
    return fen if leaf["kind"] == "fund.receipt" else -fen


@pytest.mark.parametrize("seed", range(6))
def test_range_summaries_equal_the_verifiers(seed: int) -> None:
    """``_Carried.add_range`` (money from postings, kinds counted, the rest parsed) gives
    the summaries ``summary_csvs`` computes from the leaves shown: whatever the ranges,
    with withheld leaves, reversals reaching back across ranges, and money leaves whose
    posting is missing (read from the leaf instead)."""
    import datetime as dt

    import orjson

    from archive import verify as V
    from ledger.canonical import canonical_bytes

    rng = random.Random(seed)
    leaves = _year_of_leaves(rng, 400)
    public = seed % 2 == 1
    shown = [not public or rng.random() < 0.7 for _ in leaves]
    carried = bundle._Carried()
    start = 0
    while start < len(leaves):
        end = min(len(leaves), start + rng.randrange(1, 60))
        rows = []
        for leaf in leaves[start:end]:
            raw = canonical_bytes(leaf)
            line = b'{"index":%d,"leaf":%s,"leaf_hash":"%s"}\n' % (
                leaf["index"], raw, hashlib.sha256(b"\0" + raw).hexdigest().encode(),
            )  # fmt: skip
            assert orjson.loads(line)["leaf"] == leaf
            rows.append((leaf["index"], line, leaf["kind"], leaf["visibility"]))
        money = [
            (leaf["index"], leaf["body"]["fund_code"], _fund_fen(leaf),
             dt.date.fromisoformat(leaf["occurred_on"]).replace(day=1))
            for leaf in leaves[start:end]
            if leaf["kind"] in ("fund.receipt", "fund.disbursement") and rng.random() < 0.9
        ]  # fmt: skip
        part = bundle._Range(start, rows, money, set())
        if not public:  # the full variant: the money of reversals' targets from postings
            part.targets = {
                t: (leaves[t]["body"]["fund_code"], _fund_fen(leaves[t]))
                for leaf in leaves[start:end]
                if leaf["kind"] == "correction.reversal"
                and leaves[t := leaf["body"]["target_index"]]["kind"] in V.MONEY_KINDS
            }
            if rng.random() < 0.5:  # and sums of postings (_EntryRows.FLOWS)
                part.money, part.flows = [], _flows(leaves[start:end])
            carried.add_range(part, rows)
        else:
            carried.add_range(part, [r for r in rows if shown[r[0]]])
        start = end
    present = [leaf if ok else None for leaf, ok in zip(leaves, shown, strict=True)]
    expected = V.summary_csvs(present)
    assert carried.summaries.csvs() == expected
    unreversed = V.summary_csvs(
        [leaf if ok and leaf["kind"] != "correction.reversal" else None
         for leaf, ok in zip(leaves, shown, strict=True)]
    )  # fmt: skip
    assert unreversed["fund-flows.csv"] != expected["fund-flows.csv"]  # reversals counted
