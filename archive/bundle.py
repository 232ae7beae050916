"""The year's archive bundle: a BagIt bag an auditor verifies offline (SPEC §7).

``build_bundle`` writes ``gongkai-<org>-<year>`` for one variant — ``full`` (every
leaf, withheld and internal ones included, personal data as stored) or ``public``
(leaves not approved for publication by the close keep index and hash only; no
personal data) — streaming the leaves from a server-side cursor to disk, so memory
stays bounded whatever the year's size. Everything it writes is a function of what
the close froze (leaves, the final checkpoint, reviews made up to the close, the
stored disclosures and annual report), so the same closed year builds
byte-identical payload files every time. The bag is written straight into its zip
(payload members first, in a fixed order, then the tag files, all with fixed times
and modes), so the zip is byte-identical too; deflate and hashing of the entries run
in a writer thread while the next lines are made.

The bundle is stored under ``$GONGKAI_DATA_DIR/archives/<sha256>.zip``: immutable,
addressed by its SHA-256.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import gc
import hashlib
import json
import operator
import os
import tempfile
import zipfile
import zlib
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import asyncpg
import orjson
from isal import isal_zlib

from archive import verify as verifier
from ledger import logs as log_reads
from ledger.books import MONETARY_KINDS
from ledger.canonical import canonical_bytes
from ledger.checkpoint import NoteSigner
from ledger.errors import Conflict, NotFound
from ledger.kinds import KINDS
from ledger.ocds import build_release_package
from ledger.queries import status_of
from ledger.review import by_the_close
from ledger.settings import Settings

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# Streamed members (entries.ndjson, opinions.ndjson) are deflated in parallel
# chunks by ISA-L (python-isal, pinned) at its level 1: on leaf-shaped lines about
# 4.7x the speed of zlib's level 1 with a smaller output (4.8x against 4.3x). The
# stream is standard deflate; any unzip reads it. Small members keep zipfile's zlib.
ZIP_LEVEL = 1
DEFLATE_LEVEL = 1
VERIFY_SOURCE = Path(verifier.__file__)
CHUNK = 5000
FULL_FROM_SUMS = True  # the full variant's entries in one COPY where the sums hold (_FullYear)


def _parsed(kind: str) -> bool:
    """Whether the builder needs a leaf of this kind parsed (else it only counts it)."""
    return (
        kind in verifier.SUMMARY_KINDS
        or kind.startswith(("procurement.", "opinion."))
        or kind == "disclosure.published"
    )


@dataclasses.dataclass(frozen=True)
class BuiltBundle:
    variant: str
    sha256: str
    size: int
    path: Path
    payload_oxum: str


def _deflate(chunk: bytes | memoryview, window: bytes) -> bytes:
    """Raw deflate of one chunk, primed with the 32 KiB before it, ending byte-aligned.

    Chunks deflated this way, one after another, make one deflate stream (as pigz
    does it): each ends with a sync flush, and a back reference may reach into the
    window, which a decompressor holds anyway.
    """
    c = (
        isal_zlib.compressobj(DEFLATE_LEVEL, isal_zlib.DEFLATED, -15, zdict=window)
        if window
        else isal_zlib.compressobj(DEFLATE_LEVEL, isal_zlib.DEFLATED, -15)
    )
    return c.compress(chunk) + c.flush(isal_zlib.Z_SYNC_FLUSH)


#: The deflate stream's last block: empty, final.
_FINAL_BLOCK = zlib.compressobj(ZIP_LEVEL, zlib.DEFLATED, -15).flush()


class _Deflated:
    """Stands in for a zip member's compressor: hands out the chunks deflated in
    parallel, in order."""

    def __init__(self) -> None:
        self.ready: collections.deque[Future[bytes]] = collections.deque()

    def compress(self, data: bytes | memoryview) -> bytes:
        return self.ready.popleft().result()

    def flush(self) -> bytes:
        return _FINAL_BLOCK


class _Member:
    """One payload file written into the zip, hashed and measured as it goes.

    Writes are gathered into chunks of ``CHUNK_BYTES``. Each chunk is deflated on the
    bag's deflate threads and then hashed and written, in order, by its writer
    thread (ISA-L and hashlib let other threads run) while the caller makes the next
    chunks; a few chunks are in flight at most.
    """

    CHUNK_BYTES = 1 << 20
    IN_FLIGHT = 4

    def __init__(self, dst: IO[bytes], payload: _Payload) -> None:
        self._dst, self._payload = dst, payload
        self._deflated: _Deflated | None = None
        if isinstance(getattr(dst, "_compressor", None), type(zlib.compressobj())):
            self._deflated = _Deflated()
            dst._compressor = self._deflated  # type: ignore[attr-defined]
        self._sha = hashlib.sha256()
        self._buf: list[bytes | memoryview] = []
        self._buffered = 0
        self._window = b""
        self._pending: collections.deque[Future[None]] = collections.deque()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._buf.append(data)
        self._buffered += len(data)
        if self._buffered >= self.CHUNK_BYTES:
            # Cut at whole multiples of CHUNK_BYTES, whatever the writes' sizes, so
            # the deflate stream does not depend on how the caller split its writes.
            whole = b"".join(self._buf)
            cut = len(whole) - len(whole) % self.CHUNK_BYTES
            view = memoryview(whole)  # chunks are views of it, not copies
            for at in range(0, cut, self.CHUNK_BYTES):
                self._flush(view[at : at + self.CHUNK_BYTES])
            self._buf = [whole[cut:]] if cut < len(whole) else []
            self._buffered = len(whole) - cut

    def _flush(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if self._deflated is not None:
            self._deflated.ready.append(
                self._payload.deflaters.submit(_deflate, chunk, self._window)
            )
            self._window = bytes(chunk[-32768:])
        self._pending.append(self._payload.writer.submit(self._write_chunk, chunk))
        while len(self._pending) > self.IN_FLIGHT:
            self._pending.popleft().result()

    def _write_chunk(self, chunk: bytes | memoryview) -> None:
        self._sha.update(chunk)
        if self._deflated is None:
            self._dst.write(chunk)
            return
        # What zipfile's member writer does, with ISA-L's CRC-32 (about ten times the
        # speed of zlib's, the same checksum).
        dst: Any = self._dst
        dst._file_size += len(chunk)
        dst._crc = isal_zlib.crc32(chunk, dst._crc)
        data = self._deflated.compress(chunk)
        dst._compress_size += len(data)
        dst._fileobj.write(data)

    def abandon(self) -> None:
        """Close the member as it stands: the build failed (its threads have stopped)
        and the zip is thrown away."""
        self._dst.close()

    def close(self) -> tuple[str, int]:
        if self._buf:
            self._flush(b"".join(self._buf))
            self._buf.clear()
        while self._pending:
            self._pending.popleft().result()
        self._dst.close()
        return self._sha.hexdigest(), self.size


class _Payload:
    """The bag as a zip being written: payload members, then (``put_tag``) tag files.

    Every payload file's SHA-256 and size are kept for the manifests.
    """

    def __init__(self, out: Path, top: str) -> None:
        self.top = top
        self.file = open(out, "wb")  # closed by close()
        self.zip = zipfile.ZipFile(
            self.file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL
        )
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-writer")
        self.deflaters = ThreadPoolExecutor(
            max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="bundle-deflate"
        )
        self.files: dict[str, tuple[str, int]] = {}
        self.open_members: list[_Member] = []

    def _member(self, rel: str, *, big: bool = False) -> IO[bytes]:
        info = zipfile.ZipInfo(f"{self.top}/{rel}", date_time=ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        info.create_system = 3
        return self.zip.open(info, "w", force_zip64=big)

    def open(self, rel: str) -> _Member:
        # entries.ndjson may pass 4 GiB: streamed members carry zip64 sizes.
        member = _Member(self._member(f"data/{rel}", big=True), self)
        self.open_members.append(member)
        return member

    def done(self, rel: str, member: _Member) -> None:
        self.open_members.remove(member)
        self.files[f"data/{rel}"] = member.close()

    def put(self, rel: str, data: bytes) -> None:
        with self._member(f"data/{rel}") as dst:
            dst.write(data)
        self.files[f"data/{rel}"] = (hashlib.sha256(data).hexdigest(), len(data))

    def put_tag(self, name: str, data: bytes) -> None:
        with self._member(name) as dst:
            dst.write(data)

    def close(self, *, failed: bool = False) -> None:
        """Finish the zip; or (``failed``) just let go of it and its threads, whatever
        member was left open (its file is thrown away)."""
        self.writer.shutdown()
        self.deflaters.shutdown()
        try:
            if not failed:
                self.zip.close()
                return
            # A member left open: closed (into the file thrown away) so that neither
            # it nor the zip is left to write into a closed file when collected.
            with contextlib.suppress(Exception):
                for member in self.open_members:
                    member.abandon()
                self.zip.close()
        finally:
            self.file.close()


def _json_file(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True).encode() + b"\n"


@contextlib.asynccontextmanager
async def spare_connection(pool: asyncpg.Pool) -> AsyncGenerator[Any, None]:
    """A second connection of ``pool`` to be ``build_bundle``'s helper, if one is free
    within a moment, else None: builds that each held one connection and waited for
    another could take the whole pool and wait for ever."""
    try:
        conn = await pool.acquire(timeout=0.1)
    except TimeoutError:
        yield None
        return
    try:
        yield conn
    finally:
        await pool.release(conn)


@contextlib.asynccontextmanager
async def _same_snapshot(conn: Any, helper: Any) -> AsyncGenerator[Any, None]:
    """``helper`` in a read-only transaction that sees what ``conn``'s (open,
    REPEATABLE READ) transaction sees; None if there is no helper."""
    if helper is None:
        yield None
        return
    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
    async with helper.transaction(isolation="repeatable_read", readonly=True):
        await helper.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        yield helper


async def build_bundle(
    conn: asyncpg.Connection,
    settings: Settings,
    signer: NoteSigner,
    org: str,
    year: int,
    variant: str,
    *,
    helper: asyncpg.Connection | None = None,
) -> BuiltBundle:
    """Build, zip and store one variant of a closed year's bundle.

    With a ``helper`` connection, the full variant reads the year's sums on it while
    its lines stream from ``conn`` (in the same snapshot).
    """
    if variant not in ("full", "public"):
        raise ValueError(variant)
    # Not open_items: for a large year it is tens of megabytes the bundle does not carry.
    closed = await conn.fetchrow(
        """SELECT final_size, closed_at, closed_on, annual_report, later_heads
           FROM year_closes WHERE org = $1 AND year = $2""",
        org,
        year,
    )
    if closed is None:
        if await conn.fetchval("SELECT 1 FROM logs WHERE org = $1 AND year = $2", org, year):
            raise Conflict(f"{org}'s {year} is not closed; close the year first")
        raise NotFound(f"{org} has no log for {year}")
    org_name = await conn.fetchval("SELECT name FROM orgs WHERE code = $1", org)
    archives = settings.archive_dir
    archives.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archives, prefix=".build-") as tmp:
        zip_tmp = Path(tmp) / "bundle.zip"
        payload = _Payload(zip_tmp, f"gongkai-{org}-{year}")
        try:
            async with (
                conn.transaction(isolation="repeatable_read", readonly=True),
                _same_snapshot(conn, helper) as side,
            ):
                await _write_payload(conn, side, settings, signer, payload, org, org_name,
                                     year, variant, closed)  # fmt: skip
            _write_tags(payload, settings, org, org_name, year, variant, closed["closed_on"])
        except BaseException:
            payload.close(failed=True)
            raise
        payload.close()
        sha = hashlib.sha256()
        with open(zip_tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        digest = sha.hexdigest()
        final = archives / f"{digest}.zip"
        if not final.exists():
            os.replace(zip_tmp, final)
        size = final.stat().st_size
    oxum = f"{sum(s for _, s in payload.files.values())}.{len(payload.files)}"
    await conn.execute(
        """INSERT INTO archives (org, year, variant, sha256, size) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (org, year, variant) DO UPDATE SET sha256 = EXCLUDED.sha256,
               size = EXCLUDED.size, built_at = now()""",
        org,
        year,
        variant,
        bytes.fromhex(digest),
        size,
    )
    return BuiltBundle(variant, digest, size, final, oxum)


@dataclasses.dataclass
class _Range:
    """Leaves ``start`` to ``start + len(leaves) - 1`` of the closed year, as read."""

    start: int
    leaves: list[Any]  # (idx, line of entries.ndjson, kind, visibility), in index order
    money: list[Any]  # (idx, fund_code, amount_fen, month as a date): posting line 0
    approved: set[int]  # indexes approved by a review made up to the close (public only)
    # Full variant: the receipts' and disbursements' postings summed, (fund_code, month,
    # flow, count, fen), instead of ``money``; and the money of the leaves its
    # reversals target, {idx: (fund_code, amount_fen)}.
    flows: list[Any] | None = None
    targets: dict[int, tuple[str, int]] = dataclasses.field(default_factory=dict)


# A leaf's line of entries.ndjson, made by the database: the stored leaf is canonical
# already, so it is spliced into the canonical line (keys sort as index < leaf <
# leaf_hash) instead of being encoded again.
_LINE = """'{"index":'::bytea || idx::text::bytea || ',"leaf":'::bytea || leaf
           || ',"leaf_hash":"'::bytea || encode(leaf_hash, 'hex')::bytea || '"}\n'::bytea"""


class _EntryRows:
    """The closed year's leaves in ranges of CHUNK, in index order, each leaf with its
    line of entries.ndjson; with the range's fund flows summed (full variant), or
    with each leaf's fund posting (line 0) and the approved indexes (public).

    Each range is range scans of primary keys (leaves; postings summed, or postings
    and reviews), handed to the caller as lists that it merges by index a whole
    range at a time (a join probing postings and reviews once a leaf cost about
    6 µs of database time a leaf, most of a build). The next range is read while the
    caller writes this one. Every read is in the caller's REPEATABLE READ
    transaction, so the year is read as of one snapshot.

        async with contextlib.aclosing(_EntryRows(…).ranges()) as ranges:
            async for part in ranges:
                …
    """

    # Each read is ordered as its table's primary key and sorting is off while they
    # run, so the planner cannot pick another index of the org and sort: right after
    # a large year is loaded, statistics that have not seen the org yet estimate one
    # row, and a smaller index (leaves_occurred, postings_account) scanned the whole
    # org for every range. No parallel workers either: the build's two connections
    # already keep two cores busy, and the year's sums summed by three processes and
    # merged in order took twice the CPU of one scan (and JIT, 15 ms, bought nothing).
    PLAN = (
        "SET LOCAL enable_sort = off; SET LOCAL max_parallel_workers_per_gather = 0; "
        "SET LOCAL jit = off"
    )
    LEAVES = f"""SELECT idx, {_LINE}, kind, visibility
                 FROM leaves WHERE org = $1 AND year = $2 AND idx >= $3 AND idx < $4
                 ORDER BY org, year, idx"""
    POSTINGS = """SELECT idx, fund_code, amount_fen, month FROM postings
                  WHERE org = $1 AND year = $2 AND idx >= $3 AND idx < $4 AND line = 0
                  ORDER BY org, year, idx, line"""
    # A receipt's fund posting (line 0) is positive with flow receipt, a disbursement's
    # negative with flow disbursement; a reversal's mirrors its target's, so it has the
    # other sign (ledger.books). Summed by fund, month and flow, these are the range's
    # fund flows, and the counts are checked against the range's kinds.
    # (Read as its primary key's range too: ordered in a subquery, which is not
    # flattened, so the smaller postings_account cannot serve it.)
    FLOWS = """SELECT fund_code, month, flow, count(*), sum(amount_fen)::bigint
               FROM (SELECT fund_code, month, flow, amount_fen FROM postings
                     WHERE org = $1 AND year = $2 AND idx >= $3 AND idx < $4 AND line = 0
                       AND (amount_fen > 0) = (flow = 'receipt')
                     ORDER BY org, year, idx, line) range
               GROUP BY fund_code, month, flow"""
    TARGETS = """SELECT idx, fund_code, amount_fen FROM postings
                 WHERE org = $1 AND year = $2 AND idx = ANY($3::bigint[]) AND line = 0
                   AND (amount_fen > 0) = (flow = 'receipt')
                 ORDER BY org, year, idx, line"""
    # Approved by the close (ledger.review.by_the_close).
    REVIEWS = f"""SELECT target_index FROM reviews r
                 WHERE org = $1 AND target_year = $2 AND target_index >= $3
                   AND target_index < $4 AND {by_the_close("r", "$6", "$5")}
                   AND decision = 'approved'
                 ORDER BY org, target_year, target_index"""

    def __init__(
        self, conn: Any, org: str, year: int, size: int, closed: Any, *, decisions: bool
    ) -> None:
        self.conn, self.org, self.year, self.size = conn, org, year, size
        # The close's time and its later logs' sizes: which reviews came before it
        # (the public variant's decisions; None where none are read).
        self.closed = (
            (None, None) if closed is None else (closed["closed_at"], closed["later_heads"])
        )
        self.decisions = decisions

    async def _range(self, start: int) -> _Range:
        end = min(start + CHUNK, self.size)
        args = (self.org, self.year, start, end)
        # The small sums first: then the leaves stream in while the caller writes the
        # range before.
        flows = None if self.decisions else await self.conn.fetch(self.FLOWS, *args)
        leaves = await self.conn.fetch(self.LEAVES, *args)
        if len(leaves) != end - start or (leaves and leaves[-1][0] != end - 1):
            raise Conflict(f"{self.org}/{self.year}: leaves {start} to {end - 1} are not all there")
        if self.decisions:  # public: money and decisions leaf by leaf
            money = await self.conn.fetch(self.POSTINGS, *args)
            approved = {r[0] for r in await self.conn.fetch(self.REVIEWS, *args, *self.closed)}
            return _Range(start, leaves, money, approved)
        part = _Range(start, leaves, [], set(), flows)
        if not _one_posting_each(flows or [], collections.Counter(map(_KIND, leaves))):
            # Not one posting each (a leaf without its posting): leaf by leaf.
            part.flows, part.money = None, await self.conn.fetch(self.POSTINGS, *args)
        part.targets = await self.targets(leaves)
        return part

    async def targets(self, rows: list[Any], conn: Any = None) -> dict[int, tuple[str, int]]:
        """The fund and signed amount of each leaf a reversal among ``rows`` targets."""
        targets = {
            t
            for r in rows
            if r[2] == "correction.reversal" and (t := _target_index(r[1])) is not None
        }
        if not targets:
            return {}
        found = await (conn or self.conn).fetch(self.TARGETS, self.org, self.year, sorted(targets))
        return {r[0]: (r[1], r[2]) for r in found}

    async def ranges(self) -> AsyncGenerator[_Range, None]:
        await self.conn.execute(self.PLAN)
        ahead = asyncio.ensure_future(self._range(0)) if self.size else None
        start = 0
        try:
            while ahead is not None:
                part = await ahead
                start += CHUNK
                ahead = asyncio.ensure_future(self._range(start)) if start < self.size else None
                await asyncio.sleep(0)  # let the next range's first query start
                yield part
            await self.conn.execute("SET LOCAL enable_sort = on")  # for the rest of the build
        finally:
            if ahead is not None:  # the caller stopped early: let the read finish first
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead


def _one_posting_each(flows: list[Any], kinds: collections.Counter[str]) -> bool:
    """Whether summed flows count one fund posting for each receipt and disbursement."""
    counted = collections.Counter({"receipt": 0, "disbursement": 0})
    for r in flows:
        counted[r[2]] += r[3]
    return counted == {f: kinds[f"fund.{f}"] for f in ("receipt", "disbursement")}


_YearSums = tuple[collections.Counter[str], _Range]  # see _FullYear.sums


class _FullYear:
    """The full variant's entries.ndjson in one COPY, and its summaries from sums.

    The full variant shows every leaf, so its lines need no decision: the database
    makes them (``LINES``: the lines of ``_LINE``, ``PER_ROW`` leaves joined to a
    row in index order, with their count and first index) and streams them as
    binary COPY, whose framing ``_CopyLines`` takes off as the bytes arrive (checking
    that each row starts where the one before ended), so the build only deflates and
    hashes the stream. (One row a leaf, or the lines as CSV text, cost the database
    a third more: a message a row, a scan of every character.) A row is held whole
    by the database and by the client, so ``PER_ROW`` bounds it: a leaf is at most
    about a request's size (1 MiB).

    The summaries come from sums over the year: leaves counted by kind on the
    ``leaves_kind`` index, fund flows summed from the postings
    (``_EntryRows.FLOWS``), and only the leaves of the kinds the payload parses
    (procurement, reversals, opinions, disclosures) read one by one; on a helper
    connection in the same snapshot, these are read while the lines stream. Where the
    sums do not hold (a kind this version does not know, a receipt without its
    posting) ``sums`` answers None and the build reads the year's ranges
    (``_EntryRows``) for its summaries instead.
    """

    PER_ROW = 64  # lines a row: a row is at most 64 leaves' bytes (see above)
    # The inner ORDER BY keeps each range on the primary key (sorting is off); the
    # aggregate's own ORDER BY is what guarantees the lines' order within a row.
    LINES = f"""SELECT part.lines, part.n, part.first
                FROM generate_series(0::bigint, $3::bigint - 1, $4::bigint) start,
                LATERAL (SELECT string_agg(line, ''::bytea ORDER BY idx) AS lines,
                                count(*) AS n, min(idx) AS first
                         FROM (SELECT idx, {_LINE} AS line FROM leaves
                               WHERE org = $1 AND year = $2 AND idx >= start
                                 AND idx < least(start + $4::bigint, $3::bigint)
                               ORDER BY org, year, idx) ranged) part"""
    # Each kind as a range of one value, not an equality, in an ordered read: then only
    # leaves_kind gives that order (sorting is off), whatever the statistics; the
    # primary key (with the kind a filter) would read every leaf of the year.
    KINDS = """SELECT k, (SELECT count(*) FROM (
                             SELECT FROM leaves
                             WHERE org = $1 AND kind >= k AND kind <= k AND year = $2
                               AND idx < $4
                             ORDER BY org, kind, year, idx) one_kind)
               FROM unnest($3::text[]) k"""
    PARSED = f"""SELECT idx, {_LINE}, kind, visibility
                 FROM leaves WHERE org = $1 AND kind >= $2 AND kind <= $2 AND year = $3
                   AND idx < $4
                 ORDER BY org, kind, year, idx"""

    def __init__(self, rows: _EntryRows) -> None:
        self.rows = rows
        self.conn, self.org, self.year, self.size = rows.conn, rows.org, rows.year, rows.size

    async def sums(self, conn: Any) -> _YearSums | None:
        """The year's leaves counted by kind, and the year as one range whose
        ``leaves`` are only those of the kinds the payload parses, in index order.

        Read on ``conn``: the build's connection, or a helper in the same snapshot.
        Receipts and disbursements are not counted on the index (nine leaves in ten
        of a year can be receipts): they are the leaves of no other kind, and each
        must have its one fund posting in the sums, by flow.
        """
        org, year = self.org, self.year
        await conn.execute(_EntryRows.PLAN)
        others = sorted(k for k in KINDS if k not in MONETARY_KINDS)
        kinds = collections.Counter(
            {k: n for k, n in await conn.fetch(self.KINDS, org, year, others, self.size) if n}
        )
        flows = await conn.fetch(_EntryRows.FLOWS, org, year, 0, self.size)
        for r in flows:
            kinds[f"fund.{r[2]}"] += r[3]
        if kinds.total() != self.size:  # a receipt without its posting, an unknown kind
            return None
        parsed = []
        for kind in sorted(k for k in kinds if k not in MONETARY_KINDS and _parsed(k)):
            parsed += await conn.fetch(self.PARSED, org, kind, year, self.size)
        parsed.sort(key=_INDEX)
        targets = await self.rows.targets(parsed, conn)
        return kinds, _Range(0, parsed, [], set(), flows, targets)

    async def write(self, w: _Member, helper: Any) -> _YearSums | None:
        """Stream the year's lines into ``w``; with a helper connection, read the
        year's sums (``sums``) on it meanwhile, and answer them."""
        lines = _CopyLines(w, f"{self.org}/{self.year}")
        sums = None if helper is None else asyncio.ensure_future(self.sums(helper))
        try:
            await self.conn.execute(_EntryRows.PLAN)
            await self.conn.copy_from_query(
                self.LINES, self.org, self.year, self.size, self.PER_ROW,
                output=lines.feed, format="binary",
            )  # fmt: skip
            lines.done()
            if lines.count != self.size:  # a range of PER_ROW holds at most PER_ROW
                raise Conflict(
                    f"{self.org}/{self.year}: leaves 0 to {self.size - 1} are not all there"
                )
        except BaseException:
            if sums is not None:  # let the helper's read stop first
                sums.cancel()
                with contextlib.suppress(BaseException):
                    await sums
            raise
        year = await (self.sums(self.conn) if sums is None else sums)
        await self.conn.execute("SET LOCAL enable_sort = on")  # for the rest of the build
        return year


class _CopyLines:
    """A sink for ``COPY (SELECT lines bytea, n bigint, first bigint …) TO STDOUT (FORMAT
    binary)``: writes each row's ``lines`` (``n`` lines, of the leaves from index
    ``first`` on) to ``w`` as the bytes arrive, without the framing, and adds up ``n``
    in ``count``. Each row must start where the one before ended: a row whose leaves
    are not all there, or rows out of order, fail the copy.

    The stream (PostgreSQL's binary COPY format) is a 19-byte header (signature, flags,
    extension length) and its extension, then per row a 16-bit field count and each
    field as a 32-bit length (-1 for NULL) and its bytes, and -1 as the trailer; all
    big-endian. Chunks may split it anywhere. ``feed`` never raises: asyncpg leaves a
    connection whose COPY sink raised waiting for ever (reading stays paused), so a
    failure is kept, the rest of the copy dropped, and the failure raised by ``done``.
    """

    SIGNATURE = b"PGCOPY\n\xff\r\n\x00"

    def __init__(self, w: _Member, what: str) -> None:
        self.w, self.what = w, what
        self.count = 0
        self.failed: list[Exception] = []
        self._buf = bytearray()
        self._need = 19  # bytes to gather in _buf before the next _step
        self._step = self._header
        self._left = 0  # bytes of a row's lines still to pass on
        self._n = 0  # the row's count
        self._next = 0  # the index the next row's leaves start at

    async def feed(self, chunk: bytes) -> None:
        if self.failed:
            return
        try:
            view, at, end = memoryview(chunk), 0, len(chunk)
            while at < end:
                if self._left:
                    take = min(self._left, end - at)
                    self.w.write(view[at : at + take])
                    at += take
                    self._left -= take
                    continue
                take = min(self._need - len(self._buf), end - at)
                self._buf += view[at : at + take]
                at += take
                if len(self._buf) == self._need:
                    data = bytes(self._buf)
                    self._buf.clear()
                    self._step(data)
        except Exception as exc:
            self.failed.append(exc)

    def done(self) -> None:
        if self.failed:
            raise self.failed[0]
        if self._step != self._ended or self._buf or self._left:
            raise self._broken("ended early")

    def _expect(self, need: int, step: Any) -> None:
        self._need, self._step = need, step

    def _broken(self, how: str) -> Conflict:
        return Conflict(f"{self.what}: the database's COPY of the leaves {how}")

    def _header(self, data: bytes) -> None:
        if data[:11] != self.SIGNATURE:
            raise self._broken("is not binary COPY")
        extension = int.from_bytes(data[15:19], "big")
        if extension:
            self._expect(extension, lambda _: self._expect(2, self._row))
        else:
            self._expect(2, self._row)

    def _row(self, data: bytes) -> None:
        fields = int.from_bytes(data, "big", signed=True)
        if fields == -1:
            self._expect(1, self._ended)  # nothing may follow the trailer
        elif fields != 3:
            raise self._broken(f"has {fields} fields a row")
        else:
            self._expect(4, self._lines)

    def _lines(self, data: bytes) -> None:
        # A range without leaves has NULL lines (a count of 0, NULL first).
        self._left = max(int.from_bytes(data, "big", signed=True), 0)
        self._expect(12, self._count)  # after the lines: length 8, then the count

    def _count(self, data: bytes) -> None:
        if data[:4] != b"\x00\x00\x00\x08":
            raise self._broken("has no count")
        self._n = int.from_bytes(data[4:], "big", signed=True)
        self.count += self._n
        self._expect(4, self._first_length)

    def _first_length(self, data: bytes) -> None:
        length = int.from_bytes(data, "big", signed=True)
        if length == 8:
            self._expect(8, self._first)
        elif length == -1 and self._n == 0:  # no leaves in the range: see the count
            self._expect(2, self._row)
        else:
            raise self._broken("has no first index")

    def _first(self, data: bytes) -> None:
        first = int.from_bytes(data, "big", signed=True)
        if first != self._next:
            raise self._broken(
                f"went on at index {first}, not {self._next}: leaves are missing or out of order"
            )
        self._next = first + self._n
        self._expect(2, self._row)

    def _ended(self, data: bytes) -> None:
        raise self._broken("goes on after its end")


_STUB_LINE = b'{"index":%d,"leaf_hash":"%s"}\n'


_INDEX = operator.itemgetter(0)  # of a row of _EntryRows.LEAVES
_KIND = operator.itemgetter(2)


def _target_index(line: bytes) -> int | None:
    body = _leaf(line).get("body")
    target = body.get("target_index") if isinstance(body, dict) else None
    return target if type(target) is int else None


class _Summaries(verifier.SummaryBuilder):
    """The verifier's summaries, told the money of reversal targets by the database
    when ranges are added from sums (``add_flows``) rather than leaf by leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: dict[int, tuple[str, int]] = {}  # idx -> (fund_code, amount_fen)

    def _money_at(self, index: int) -> tuple[int, int]:
        posted = self.targets.get(index)
        if posted is None:
            return super()._money_at(index)
        fund, fen = posted
        return (self.fund_id(fund) if fen > 0 else -self.fund_id(fund)), abs(fen)


@dataclasses.dataclass
class _Carried:
    """What the build keeps of the year's leaves beside entries.ndjson."""

    summaries: _Summaries = dataclasses.field(default_factory=_Summaries)
    procurement: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    opinions: list[tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=list)
    disclosures: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    _months: dict[dt.date, str] = dataclasses.field(default_factory=dict)  # "YYYY-MM"

    def add_range(self, part: _Range, present: list[Any]) -> None:
        """Summarise a range's present leaves (``present``: its rows shown in full).

        A receipt's or disbursement's summary comes from its fund posting (line 0:
        the fund's side, same fund code, amount and month as the body; the verifier
        recomputes it from the leaf), not from parsing. Only the kinds the summaries
        or the other payload files read are parsed (procurement, reversals, opinions,
        disclosures).
        """
        kinds = collections.Counter(map(_KIND, present))
        if part.flows is not None:  # every leaf present, money summed by the database
            self.add_sums(part.start + len(part.leaves), kinds, part)
            return
        parsed = [k for k in kinds if k not in MONETARY_KINDS and _parsed(k)]
        for kind in parsed:
            del kinds[kind]
        self.summaries.targets.update(part.targets)
        self._add_money(part, present, kinds)
        if parsed:
            self._parse(present)

    def add_sums(self, end: int, kinds: collections.Counter[str], part: _Range) -> None:
        """Summarise leaves ``part.start`` to ``end - 1``, every one present, from sums:
        ``kinds`` counts them by kind, ``part.flows`` sums their fund flows, and
        ``part.leaves`` holds (at least) those of the kinds that are parsed, in index
        order."""
        kinds = collections.Counter(kinds)
        parsed = [k for k in kinds if k not in MONETARY_KINDS and _parsed(k)]
        for kind in parsed:
            del kinds[kind]
        self.summaries.targets.update(part.targets)
        flows = [
            (fund, self._months.get(month) or self._month(month),
             "fund.receipt" if flow == "receipt" else "fund.disbursement", abs(fen), n)
            for fund, month, flow, n, fen in part.flows or ()
        ]  # fmt: skip
        self.summaries.add_flows(part.start, end, kinds, flows)
        if parsed:
            self._parse(part.leaves)

    def _add_money(self, part: _Range, present: list[Any], kinds: collections.Counter[str]) -> None:
        """Add a range leaf by leaf: money from ``part.money``, counts from ``kinds``."""
        leaves, start, months = part.leaves, part.start, self._months
        shown = None  # every leaf is present, or: 1 where it is
        if len(present) != len(leaves):
            shown = bytearray(len(leaves))
            for r in present:
                shown[r[0] - start] = 1
        money = [
            (i, kind, fund, months.get(month) or self._month(month), abs(fen))
            for i, fund, fen, month in part.money
            if (kind := leaves[i - start][2]) in MONETARY_KINDS
            and (shown is None or shown[i - start])
        ]
        if len(money) != kinds["fund.receipt"] + kinds["fund.disbursement"]:
            # A receipt or disbursement without its posting: read it from the leaf.
            posted = {m[0] for m in money}
            money += [
                verifier.SummaryBuilder.money(_leaf(r[1]))
                for r in present
                if r[2] in MONETARY_KINDS and r[0] not in posted
            ]
            money.sort()
        end = start + len(leaves)
        self.summaries.add_range(start, end, kinds, money, len(leaves) - len(present))

    def _parse(self, present: list[Any]) -> None:
        for r in present:
            kind = r[2]
            if kind in MONETARY_KINDS or not _parsed(kind):
                continue
            leaf = _leaf(r[1])
            if kind in verifier.SUMMARY_KINDS or kind.startswith("procurement."):
                self.summaries.add(leaf)
            else:
                self.summaries.count(kind)
            if kind.startswith("procurement.") or kind == "correction.reversal":
                self.procurement.append(leaf)
            elif kind.startswith("opinion."):
                self.opinions.append((r[0], leaf))
            elif kind == "disclosure.published":
                self.disclosures.append((leaf["body"]["period"], leaf["body"]["tree_size"]))

    def _month(self, month: dt.date) -> str:
        text = self._months[month] = month.strftime("%Y-%m")
        return text


def _leaf(line: bytes) -> Any:
    """The leaf of an entries.ndjson line made by ``_EntryRows.LEAVES``."""
    return orjson.loads(line)["leaf"]


def _entry_lines(part: _Range, variant: str) -> tuple[bytes, list[Any]]:
    """A range's lines of entries.ndjson, and its rows shown in full.

    The public variant shows a leaf only if it was approved for publication by the
    close; any other leaf's line keeps its index and leaf hash only.
    """
    if variant == "full":
        return b"".join([r[1] for r in part.leaves]), part.leaves
    lines, present = [], []
    for r in part.leaves:
        index, line, kind, visibility = r
        decision = "approved" if index in part.approved else None
        if status_of(kind, visibility, decision) == "approved":
            lines.append(line)
            present.append(r)
        else:  # the line ends with "leaf_hash":"<64 hex digits>"}\n
            lines.append(_STUB_LINE % (index, line[-67:-3]))
    return b"".join(lines), present


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused while the year's rows stream through.

    Each range is ten thousand fresh records that the collector would traverse again
    and again (a sixth of the build's main thread in py-spy), though they make no
    cycles and are freed by reference counting as the next range replaces them.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


async def _write_payload(
    conn: Any, helper: Any, settings: Settings, signer: NoteSigner, payload: _Payload,
    org: str, org_name: str, year: int, variant: str, closed: Any,
) -> None:  # fmt: skip
    size = closed["final_size"]
    carried = _Carried()
    summaries = carried.summaries

    # entries.ndjson: the full variant's in one COPY where the year's sums hold (see
    # _FullYear), else read in index ranges of CHUNK leaves (see _EntryRows).
    w = payload.open("entries.ndjson")
    reader = _EntryRows(conn, org, year, size, closed, decisions=variant != "full")
    copied = variant == "full" and FULL_FROM_SUMS
    with _no_cycle_collection():
        sums = await _FullYear(reader).write(w, helper) if copied else None
        if sums is not None:
            carried.add_sums(size, *sums)
        else:  # the lines read range by range (unless copied), the summaries leaf by leaf
            async with contextlib.aclosing(reader.ranges()) as ranges:
                async for part in ranges:
                    lines, present = _entry_lines(part, variant)
                    if not copied:
                        w.write(lines)
                    carried.add_range(part, present)
    payload.done("entries.ndjson", w)

    final = await conn.fetchrow(
        "SELECT note, root FROM checkpoints WHERE org = $1 AND year = $2 AND size = $3",
        org,
        year,
        size,
    )
    payload.put("checkpoint.txt", final["note"].encode())
    payload.put("vkey.txt", (signer.vkey() + "\n").encode())

    proofs = []
    for period, tree_size in sorted(carried.disclosures):
        if not 0 < tree_size <= size:
            continue
        path = await log_reads.consistency_proof(conn, org, year, tree_size, size)
        note = await conn.fetchval(
            "SELECT note FROM checkpoints WHERE org = $1 AND year = $2 AND size = $3",
            org,
            year,
            tree_size,
        )
        proofs.append(
            {
                "period": period,
                "size": tree_size,
                "root": (await log_reads.root_at(conn, org, year, tree_size)).hex(),
                "checkpoint": note,
                "path": [p.hex() for p in path],
            }
        )
    payload.put(
        "consistency.json",
        _json_file({"final": {"size": size, "root": bytes(final["root"]).hex()}, "proofs": proofs}),
    )

    # Opinions: the events of the year's log; the full variant adds personal data as stored.
    w = payload.open("opinions.ndjson")
    for index, leaf in carried.opinions:
        line = {"index": index, "kind": leaf["kind"], "occurred_on": leaf["occurred_on"],
                "body": leaf["body"]}  # fmt: skip
        if variant == "full" and leaf["kind"] in ("opinion.submitted", "opinion.supplied"):
            line["personal_data"] = await _personal(conn, org, leaf)
        w.write(canonical_bytes(line) + b"\n")
    payload.done("opinions.ndjson", w)

    for r in await conn.fetch(
        "SELECT period, snapshot FROM disclosures WHERE org = $1 AND year = $2 ORDER BY period",
        org,
        year,
    ):
        payload.put(f"disclosures/{r['period']}.json", bytes(r["snapshot"]))

    for name, data in summaries.csvs().items():
        payload.put(f"summaries/{name}", data)
    payload.put("summaries/datapackage.json", _json_file(verifier.datapackage(variant, org, year)))

    procurement = carried.procurement
    package = build_release_package(
        procurement,
        ocid_prefix=settings.ocid_prefix,
        publisher=org_name,
        uri=f"urn:gongkai:{org}:{year}:ocds:{variant}",
        published_date=max(
            (p["recorded_at"] for p in procurement), default=f"{year}-12-31T00:00:00Z"
        ),
    )
    # Always there (SPEC §7). A year without procurement has an empty ``releases``,
    # which OCDS's schema (one or more releases) does not admit: the one rule a
    # package of nothing cannot meet; the API's /procurement/ocds answers it 404.
    payload.put("procurement/ocds-release-package.json", _json_file(package))
    payload.put("annual-report.json", _json_file(json.loads(bytes(closed["annual_report"]))))
    payload.put("verify.py", VERIFY_SOURCE.read_bytes())


async def _personal(conn: Any, org: str, leaf: dict[str, Any]) -> Any:
    code_hash = bytes.fromhex(leaf["body"]["tracking_sha256"])
    rows = await conn.fetch(
        """SELECT part, salt, payload, erased_at FROM opinion_private
           WHERE org = $1 AND tracking_sha256 = $2 ORDER BY part""",
        org,
        code_hash,
    )
    # Match the part to the leaf by its commitment.
    for r in rows:
        if r["erased_at"] is not None or r["payload"] is None:
            continue
        commitment = hashlib.sha256(bytes(r["salt"]) + bytes(r["payload"])).hexdigest()
        if commitment == leaf["body"]["commitment"]:
            return {"salt": bytes(r["salt"]).hex(), "data": json.loads(r["payload"])}
    return {"erased": True}


def _write_tags(
    payload: _Payload, settings: Settings, org: str, org_name: str, year: int,
    variant: str, closed_on: dt.date,
) -> None:  # fmt: skip
    files = dict(sorted(payload.files.items()))
    total = sum(size for _, size in files.values())
    tags = {
        "bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        "bag-info.txt": (
            f"Source-Organization: {org_name}\n"
            f"External-Identifier: gongkai:{org}:{year}\n"
            f"Bagging-Date: {closed_on.isoformat()}\n"
            f"Payload-Oxum: {total}.{len(files)}\n"
            f"Bag-Group-Identifier: gongkai:{org}\n"
            f"Gongkai-Variant: {variant}\n"
            f"Gongkai-Origin: {settings.origin}\n"
        ).encode(),
        "manifest-sha256.txt": "".join(
            f"{sha}  {path}\n" for path, (sha, _) in files.items()
        ).encode(),
    }
    tags["tagmanifest-sha256.txt"] = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(tags.items())
    ).encode()
    for name, data in sorted(tags.items()):
        payload.put_tag(name, data)


def stored_bundle(settings: Settings, sha256: str) -> Path:
    return settings.archive_dir / f"{sha256}.zip"
