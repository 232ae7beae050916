"""The bundle's zip writer: parallel deflate chunks make one valid deflate stream."""

from __future__ import annotations

import hashlib
import os
import random
import zipfile
from pathlib import Path

import pytest

from archive import bundle


@pytest.mark.parametrize("chunk", [1, 1000, 1 << 16])
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
        assert info.compress_type == zipfile.ZIP_DEFLATED and info.compress_size < len(data)
    # The same writes give the same bytes.
    again = tmp_path / "c.zip"
    _write_bag(again, lines)
    assert again.read_bytes() == out.read_bytes()


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
