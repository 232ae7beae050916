"""The full variant's lines come as binary COPY rows (lines, count, first index);
``_CopyLines`` takes the framing off as the bytes arrive, however the stream is split,
and refuses rows that do not follow each other."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest

from archive import bundle
from ledger.errors import Conflict

ROWS = """SELECT lines, n, first
          FROM (VALUES (1, convert_to(E'a\\n', 'UTF8'), 1::bigint, 0::bigint),
                       (2, NULL, 0, NULL), (3, ''::bytea, 0, NULL),
                       (4, convert_to(E'bc\\nde\\n', 'UTF8'), 2, 1)) v(i, lines, n, first)
          ORDER BY i"""


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | memoryview) -> None:
        self.data += data


async def _stream(pool: asyncpg.Pool, sql: str = ROWS) -> bytes:
    chunks: list[bytes] = []

    async def keep(chunk: bytes) -> None:
        chunks.append(chunk)

    async with pool.acquire() as conn:
        await conn.copy_from_query(sql, output=keep, format="binary")
    return b"".join(chunks)


async def _feed(stream: bytes, cuts: list[int]) -> tuple[bundle._CopyLines, Sink]:
    sink = Sink()
    lines = bundle._CopyLines(sink, "o/2025")  # type: ignore[arg-type]
    at = 0
    for cut in [*cuts, len(stream)]:
        await lines.feed(stream[at:cut])
        at = cut
    return lines, sink


async def test_the_lines_pass_through_whatever_the_chunks(pool: asyncpg.Pool) -> None:
    stream = await _stream(pool)
    rng = random.Random(7)
    splits = [[], list(range(1, len(stream))), *(
        sorted(rng.sample(range(1, len(stream)), k)) for k in (1, 2, 5, 20) for _ in range(20)
    )]  # fmt: skip
    for cuts in splits:
        lines, sink = await _feed(stream, cuts)
        lines.done()
        assert bytes(sink.data) == b"a\nbc\nde\n", cuts
        assert lines.count == 3


async def test_a_header_extension_is_skipped(pool: asyncpg.Pool) -> None:
    stream = await _stream(pool)
    extended = stream[:15] + (3).to_bytes(4, "big") + b"xyz" + stream[19:]
    lines, sink = await _feed(extended, [16, 20])
    lines.done()
    assert bytes(sink.data) == b"a\nbc\nde\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s[:-1], "ended early"),  # the trailer cut
        (lambda s: s[:-9], "ended early"),  # inside the last row's lines
        (lambda s: s + b"\x00", "goes on after its end"),
        (lambda s: b"PGCOPY\n\xff\r\n\x01" + s[11:], "not binary COPY"),
        (lambda s: s.replace(b"\x00\x00\x00\x08", b"\x00\x00\x00\x04", 1), "no count"),
    ],
)
async def test_a_broken_stream_is_refused(pool: asyncpg.Pool, change: Any, message: str) -> None:
    stream = change(await _stream(pool))
    lines, _ = await _feed(stream, [5, 30])  # feed never raises: asyncpg needs it so
    with pytest.raises(Conflict, match=message):
        lines.done()


async def test_rows_of_another_shape_are_refused(pool: asyncpg.Pool) -> None:
    stream = await _stream(pool, "SELECT convert_to(E'x\\n', 'UTF8'), 1::bigint, 0::bigint, 2")
    lines, sink = await _feed(stream, [])
    with pytest.raises(Conflict, match=r"o/2025: .* has 4 fields a row"):
        lines.done()
    assert not sink.data


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("(1, 'a', 1, 0), (2, 'c', 1, 2)", "went on at index 2, not 1"),  # a leaf missing
        ("(1, 'b', 1, 1), (2, 'a', 1, 0)", "went on at index 1, not 0"),  # out of order
        ("(1, 'a', 1, NULL)", "has no first index"),
    ],
)
async def test_rows_that_do_not_follow_each_other_are_refused(
    pool: asyncpg.Pool, rows: str, message: str
) -> None:
    stream = await _stream(
        pool,
        f"SELECT lines::bytea, n::bigint, first::bigint FROM (VALUES {rows}) v(i, lines, n, first)"
        " ORDER BY i",
    )
    lines, _ = await _feed(stream, [])
    with pytest.raises(Conflict, match=message):
        lines.done()
