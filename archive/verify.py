#!/usr/bin/env python3
"""Offline verifier for a Gongkai year-end archive bundle (SPEC §7).

Usage::

    python3 -I verify.py BUNDLE [--vkey FILE | --vkey-string VKEY] [--quiet]

``BUNDLE`` is the bag directory ``gongkai-<org>-<year>`` or a ``.zip`` / ``.tar.gz``
holding that one directory. Only the Python 3.11 standard library is needed; the
``cryptography`` package is used for Ed25519 when it is importable, otherwise a
pure-Python RFC 8032 verifier below does the same job.

What is checked, each reported on one line (``ok  ...`` or ``FAIL ...``):

bag
    ``bagit.txt``, the ``bag-info.txt`` fields (identifier, group, variant, origin,
    ``Bagging-Date`` a date after the year) and ``Payload-Oxum`` against the payload
    on disk.
manifest / tagmanifest
    Every payload file is listed in ``manifest-sha256.txt`` exactly once with its
    SHA-256, and nothing else is; the tag files match ``tagmanifest-sha256.txt``.
vkey
    ``data/vkey.txt`` is a well-formed C2SP Ed25519 verifier key. By default the
    key is *taken from the bundle*, which proves integrity but not origin: someone
    who rewrites the whole bundle can re-sign it with their own key. An auditor
    should pin the key obtained out of band with ``--vkey``/``--vkey-string``.
checkpoint
    ``data/checkpoint.txt`` is a C2SP signed note whose origin is
    ``<Gongkai-Origin>/<org>/<year>`` and which carries a valid Ed25519 signature
    by the key.
entries
    Every line of ``data/entries.ndjson`` is the canonical JSON of
    ``{"index", "leaf_hash"[, "leaf"]}``, indexes run 0, 1, 2, ... without gaps,
    each present leaf belongs to this log and its hash
    SHA-256(0x00 || RFC 8785 bytes of the leaf) is recomputed and compared. In the
    ``public`` variant a leaf not approved for publication is carried as index and
    hash only; the ``full`` variant carries every leaf. The lines are checked in
    pieces by one worker process per CPU; from a ``.zip``, while the rest of the
    file is still being extracted.
publication
    In the ``public`` variant: no internal entry is carried in full; an entry
    withheld by a review in this log is carried as hash only, one approved by a
    review in this log in full. (An entry reviewed in a later year's log cannot be
    checked offline.)
root
    The RFC 9162 Merkle root over all leaf hashes equals the signed checkpoint's,
    and the checkpoint's size equals the number of lines.
year.closed
    The last leaf is ``year.closed`` naming the size and root of all leaves before it.
consistency
    ``data/consistency.json``: each quarterly tree head has an RFC 9162 consistency
    proof to the final tree, its root equals the root recomputed from the first
    ``size`` leaf hashes, and its signed checkpoint (when carried) verifies.
disclosures
    For every ``disclosure.published`` leaf present, ``data/disclosures/<period>.json``
    exists and its SHA-256 is the one the leaf commits to.
documents
    Each line of ``opinions.ndjson`` is the opinion event leaf it names, in index
    order, one for each such leaf in ``entries.ndjson``; in the full variant a
    submission's personal data hashes to its leaf's ``commitment``.
    ``annual-report.json`` and the OCDS release package parse.
annual-report
    ``annual-report.json`` is the report of this log at its close: its ``as_of``
    is the final checkpoint, ``org_name`` is ``bag-info.txt``'s
    ``Source-Organization``, its table 三 cross-checks state what its counts give,
    its appeals groups are the template's with totals that are their sums, and its
    records published by kind agree with the leaves: in the ``public`` variant
    exactly the entries of the kind carried in full; in the ``full`` variant at
    least those approved by reviews in this log, at most the kind's public leaves.
    (Table 三's counts come from requests of every year and are not recounted.)
ocds
    The OCDS release package's ``uri``, publisher and ``publishedDate`` are this
    bundle's, and it holds exactly one release for each procurement leaf carried
    in full and each reversal of a bid, award or contract carried before it, in
    index order, each with the leaf's id, its process's ``ocid`` (one prefix for
    all), its tag and its date. (What a release says of its process is not
    rebuilt.)
summaries
    Every CSV in ``data/summaries/`` is recomputed from the leaves present in
    ``entries.ndjson`` and compared byte for byte, and ``datapackage.json`` is the
    expected Frictionless descriptor.

How the summaries are computed (``summary_csvs``) is part of the bundle format;
the definitions are in that function's docstring. Exit status 0 means every check
held; 1 means at least one failed; 2 means the bundle could not be opened, or the
key given with --vkey (--vkey-string) could not be read or is not a vkey.
"""

from __future__ import annotations

import argparse
import array
import base64
import binascii
import bisect
import collections
import csv
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "EMPTY_ROOT",
    "CheckResult",
    "SummaryBuilder",
    "VKey",
    "VerificationError",
    "canonical",
    "check_bag",
    "datapackage",
    "ed25519_verify",
    "ed25519_verify_pure",
    "leaf_hash",
    "main",
    "merkle_root",
    "open_bundle",
    "open_note",
    "summary_csvs",
    "verify_bag",
    "verify_consistency",
]

# ======================================================================================
# Canonical JSON (RFC 8785) for our documents
# ======================================================================================

MAX_SAFE_INTEGER = 2**53 - 1


def _dumps(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _check_jcs(obj: Any, path: str = "$") -> None:
    """Refuse what makes ``_dumps`` differ from RFC 8785: floats, non-ASCII keys, big ints."""
    stack: list[tuple[Any, str]] = [(obj, path)]
    while stack:
        value, where = stack.pop()
        if value is None or value is True or value is False or type(value) is str:
            continue
        if type(value) is int:
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                raise ValueError(f"{where}: integer {value} is outside ±(2**53 - 1)")
        elif type(value) is dict:
            for key, item in value.items():
                if type(key) is not str or not key.isascii():
                    raise ValueError(f"{where}: object key {key!r} is not an ASCII string")
                stack.append((item, f"{where}.{key}"))
        elif type(value) is list:
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
        else:
            raise ValueError(f"{where}: {type(value).__name__} is not allowed in canonical JSON")


def canonical(obj: Any) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON document without floats, with ASCII keys only.

    For such documents JCS is exactly ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` in UTF-8: both escape only ``"``, ``\\`` and U+0000..U+001F
    (short forms for \\b \\t \\n \\f \\r, lowercase ``\\u00xx`` otherwise), sort ASCII keys
    the same way and print integers as plain digits. Anything else raises ValueError.
    """
    _check_jcs(obj)
    try:
        return _dumps(obj)
    except UnicodeEncodeError as exc:
        raise ValueError("string is not valid Unicode (lone surrogate)") from exc


def _no_float(text: str) -> Any:
    raise ValueError(f"number {text} is not an integer (no floats in ledger documents)")


def _strict_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise ValueError(f"integer {text} is outside ±(2**53 - 1)")
    return value


# Entries are parsed and re-encoded with these two, reused for speed. A line is accepted
# only if re-encoding gives back exactly its text, which rules out duplicate keys,
# whitespace, escapes other than JCS's and key order other than sorted.
_DECODER = json.JSONDecoder(parse_float=_no_float, parse_int=_strict_int, parse_constant=_no_float)
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    check_circular=False,  # parsed JSON has no cycles
)  # fmt: skip
# Both are called a line at a time the way their own methods call them, without the
# Python wrappers (whitespace skipping, chunk handling): about a tenth of a line's
# check. The encoder is the json module's C encoder where there is one.
_scan = _DECODER.scan_once  # type: ignore[attr-defined]
_c_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode_chunks = (
    _c_encoder(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",",
               True, False, False)  # markers, …, indent, separators, sort_keys, skipkeys, nan
    if _c_encoder is not None
    else None
)  # fmt: skip


def _stdlib_parse(text: str) -> Any:
    try:
        entry, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("Expecting value at the line's start") from None
    if end != len(text):
        raise ValueError(f"Extra data after the JSON value at {end}")
    return entry


def _stdlib_encode(entry: Any) -> str:
    if _encode_chunks is None:  # pragma: no cover - a Python without the C accelerator
        return _ENCODER.encode(entry)
    return "".join(_encode_chunks(entry, 0))


# Optional acceleration, like ``cryptography`` for signatures: when orjson is importable,
# entry lines are parsed and re-encoded with it (for our documents it gives the same
# canonical bytes). It accepts numbers with a fraction where the standard-library path
# refuses them; that changes nothing of substance, since every leaf hash is computed
# over the line's own bytes and the summaries read amounts as strings only.
_orjson: Any
try:
    import orjson as _orjson  # type: ignore[no-redef,unused-ignore]
except ImportError:  # pragma: no cover - depends on the machine
    _orjson = None


def use_stdlib_json() -> None:
    """Parse entries with the standard library even when orjson is installed."""
    global _orjson
    _orjson = None


def _parse_line(line: bytes) -> tuple[Any, bool]:
    """Parse one entries.ndjson line; also say whether it is in canonical form."""
    if _orjson is not None:
        try:
            entry = _orjson.loads(line)
        except _orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None
        if type(entry) is dict:
            return entry, _orjson.dumps(entry, option=_orjson.OPT_SORT_KEYS) == line
        return entry, False
    text = line.decode("utf-8")
    entry = _stdlib_parse(text)
    return entry, _stdlib_encode(entry) == text


# ======================================================================================
# RFC 9162 Merkle tree
# ======================================================================================

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf bytes)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle tree head of a list of leaf hashes (SHA-256 of b"" when empty)."""
    frontier = _Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


class _Frontier:
    """The perfect subtrees of the binary decomposition of ``size``: enough for the root."""

    __slots__ = ("hashes", "size")

    def __init__(self) -> None:
        self.size = 0
        self.hashes: list[bytes] = []

    def append(self, h: bytes) -> None:
        self.append_subtree(h, 0)

    def append_subtree(self, h: bytes, level: int) -> None:
        """Append the root of 2**level leaves; the size must be a multiple of 2**level."""
        if self.size & ((1 << level) - 1):
            raise ValueError(f"a subtree of 2**{level} leaves cannot start at {self.size}")
        size = self.size >> level
        while size & 1:
            h = _node(self.hashes.pop(), h)
            size >>= 1
        self.hashes.append(h)
        self.size += 1 << level

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = _node(left, h)
        return h


def verify_consistency(
    first: int, second: int, path: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: does (``second``, ``second_root``) extend (``first``, ``first_root``)?

    ``first == second`` needs an empty path and equal roots; ``first == 0`` needs an
    empty path and the empty-tree root.
    """
    if first < 0 or second < 0 or first > second:
        return False
    if not all(isinstance(h, bytes) and len(h) == 32 for h in [first_root, second_root, *path]):
        return False
    if first == 0:
        return not path and first_root == EMPTY_ROOT
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    c = list(path)
    if first & (first - 1) == 0:
        c.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = c[0]
    for p in c[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node(p, fr)
            sr = _node(p, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, p)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


# ======================================================================================
# Ed25519 verification (RFC 8032 §5.1.7), with `cryptography` when available
# ======================================================================================

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z


def _add(a: _Point, b: _Point) -> _Point:
    # add-2008-hwcd-3, complete for a = -1 twisted Edwards curves (also used to double).
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * _D * t1 * t2 % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: _Point) -> _Point:
    q: _Point = (0, 1, 1, 0)
    for bit in bin(s)[2:]:
        q = _add(q, q)
        if bit == "1":
            q = _add(q, p)
    return q


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if x & 1 != sign else x


def _decode_point(s: bytes) -> _Point | None:
    n = int.from_bytes(s, "little")
    y = n & ((1 << 255) - 1)
    x = _recover_x(y, n >> 255)
    return None if x is None else (x, y, 1, x * y % _P)


def _encode_point(p: _Point) -> bytes:
    x, y, z, _ = p
    zi = pow(z, _P - 2, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = _recover_x(_BY, 0)
assert _BX is not None
_B: _Point = (_BX, _BY, 1, _BX * _BY % _P)


def ed25519_verify_pure(pub: bytes, msg: bytes, sig: bytes) -> bool:
    """Pure-Python RFC 8032 Ed25519 verification (cofactorless, like OpenSSL)."""
    if len(pub) != 32 or len(sig) != 64:
        return False
    a = _decode_point(pub)
    if a is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(sig[:32] + pub + msg).digest(), "little") % _L
    x, y, z, t = _mul(k, a)
    r = _add(_mul(s, _B), (-x % _P, y, z, -t % _P))  # [S]B - [k]A
    return _encode_point(r) == sig[:32]


def _ed25519_verify_cryptography(pub: bytes, msg: bytes, sig: bytes) -> bool | None:
    """Verify with `cryptography`; None when it is not importable."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None
    if len(pub) != 32 or len(sig) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def ed25519_backend() -> str:
    """Which implementation :func:`ed25519_verify` uses."""
    try:
        import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401
    except ImportError:
        return "pure-Python RFC 8032"
    return "cryptography"


def ed25519_verify(pub: bytes, msg: bytes, sig: bytes) -> bool:
    """Ed25519 signature check: `cryptography` if importable, else pure Python."""
    result = _ed25519_verify_cryptography(pub, msg, sig)
    if result is None:
        return ed25519_verify_pure(pub, msg, sig)
    return result


# ======================================================================================
# C2SP signed notes, checkpoints and verifier keys
# ======================================================================================

_SIG_PREFIX = "\u2014 "


class VerificationError(Exception):
    """A check failed; the message names the file (line, index) and what broke."""


def _b64_strict(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise VerificationError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise VerificationError(f"{what} is not canonical base64")
    return raw


def _key_id(name: str, pub: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + pub).digest()[:4]


@dataclass(frozen=True)
class VKey:
    """A C2SP Ed25519 verifier key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"

    @classmethod
    def parse(cls, text: str, what: str) -> VKey:
        text = text.strip()
        name, _, rest = text.partition("+")
        hex_id, sep, key_b64 = rest.partition("+")  # base64 may itself contain '+'
        if not sep:
            raise VerificationError(f"{what}: not a vkey '<name>+<key id>+<base64 key>'")
        if not name or any(ch.isspace() or ord(ch) < 0x20 for ch in name):
            raise VerificationError(f"{what}: invalid key name {name!r}")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
            raise VerificationError(f"{what}: key id {hex_id!r} is not 8 hex digits")
        key = _b64_strict(key_b64, f"{what}: public key")
        if len(key) != 33 or key[0] != 0x01:
            raise VerificationError(f"{what}: not an Ed25519 key (type 0x01 and 32 bytes)")
        pub = key[1:]
        if bytes.fromhex(hex_id) != _key_id(name, pub):
            raise VerificationError(
                f"{what}: key id {hex_id.lower()} does not match its key "
                f"(expected {_key_id(name, pub).hex()})"
            )
        return cls(name, bytes.fromhex(hex_id), pub)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def open_note(note: str, key: VKey, what: str) -> Checkpoint:
    """Verify a signed checkpoint note with ``key``; return its origin, size and root."""
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError(f"{what}: no blank line between the checkpoint and its signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    if not sig_block.endswith("\n"):
        raise VerificationError(f"{what}: signature block does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) != 3:
        raise VerificationError(f"{what}: checkpoint body has {len(lines)} lines, expected 3")
    origin, size_text, root_b64 = lines
    if not re.fullmatch(r"0|[1-9][0-9]{0,18}", size_text):
        raise VerificationError(f"{what}: tree size {size_text!r} is not a canonical decimal")
    root = _b64_strict(root_b64, f"{what}: root")
    if len(root) != 32:
        raise VerificationError(f"{what}: root is {len(root)} bytes, expected 32")
    found: list[str] = []
    verified = False
    for number, line in enumerate(sig_block[:-1].split("\n"), start=1):
        if not line.startswith(_SIG_PREFIX):
            raise VerificationError(f"{what}: signature line {number} does not start with '— '")
        name, _, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
        raw = _b64_strict(sig_b64, f"{what}: signature line {number}")
        if len(raw) < 5:
            raise VerificationError(f"{what}: signature line {number} is too short")
        if name != key.name or raw[:4] != key.key_id:
            found.append(f"{name}+{raw[:4].hex()}")
            continue
        if len(raw) != 68 or not ed25519_verify(key.public_key, text.encode("utf-8"), raw[4:]):
            raise VerificationError(f"{what}: the signature by {key} does not verify")
        verified = True
    if not verified:
        raise VerificationError(
            f"{what}: no signature by {key} (found: {', '.join(found) or 'none'})"
        )
    return Checkpoint(origin, int(size_text), root)


# ======================================================================================
# Summaries: the CSVs every bundle carries, recomputed from its leaves
# ======================================================================================

_AMOUNT_RE = re.compile(r"(0|[1-9][0-9]{0,11})\.[0-9]{2}")

FUND_FLOWS_COLUMNS = (
    "fund_code",
    "month",
    "receipts",
    "disbursements",
    "receipts_count",
    "disbursements_count",
)
PROCUREMENT_COLUMNS = (
    "tender_id",
    "title",
    "method",
    "value",
    "currency",
    "bids",
    "bidders",
    "awarded_amount",
    "award_date",
    "contracted_amount",
    "status",
)
ENTRIES_BY_KIND_COLUMNS = ("kind", "entries")
HASH_ONLY_KIND = "(hash only)"
SUMMARY_FILES = ("entries-by-kind.csv", "fund-flows.csv", "procurement.csv")


def _fen(text: Any, where: str) -> int:
    if type(text) is not str or not _AMOUNT_RE.fullmatch(text):
        raise ValueError(f"{where}: {text!r} is not an amount with two decimal places")
    whole, _, part = text.partition(".")
    return int(whole) * 100 + int(part)


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def _str(value: Any, where: str) -> str:
    if type(value) is not str:
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return value


_EVENT_FIELDS = {  # kind -> (event, party field, date field)
    "procurement.bid": ("bid", "bidder", "submitted_on"),
    "procurement.award": ("award", "supplier", "date"),
    "procurement.contract": ("contract", "supplier", "signed_on"),
}


@dataclass
class _Tender:
    title: str = ""
    method: str = ""
    value: str = ""
    currency: str = ""
    cancelled: bool = False
    # index -> (kind, party id, amount fen, date); reversed events are removed
    events: dict[int, tuple[str, str, int, str]] = field(default_factory=dict)


#: Kinds whose leaves the summaries read beyond counting them (with procurement.*).
MONEY_KINDS = frozenset({"fund.receipt", "fund.disbursement"})
SUMMARY_KINDS = MONEY_KINDS | {"correction.reversal"}
_SUMMARY_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def _summary_error(item: Any, exc: Exception) -> ValueError:
    what = f"{exc!r}" if isinstance(exc, KeyError) else str(exc)
    kind = item.get("kind") if isinstance(item, Mapping) else None
    index = item.get("index") if isinstance(item, Mapping) else None
    return ValueError(f"leaf {index} ({kind}): {what}")


class SummaryBuilder:
    """Accumulates the summaries leaf by leaf (index order), in bounded memory.

    Only what a later reversal may need is kept per leaf: fund, month and amount of
    receipts and disbursements, and the tender of bids, awards and contracts.
    """

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}
        self.hash_only = 0
        self.flows: dict[tuple[str, str], list[int]] = {}
        # Receipts and disbursements by leaf index, as two flat arrays (12 bytes a leaf):
        # the fund as +n (receipt) or -n (disbursement) for fund self.funds[n - 1], 0 for
        # any other leaf, and the amount in fen.
        self.funds: list[str] = []
        self._fund_ids: dict[str, int] = {}
        self._money_fund = array.array("q")
        self._money_fen = array.array("q")
        self.tenders: dict[str, _Tender] = {}
        self.events: dict[int, str] = {}  # index -> tender id
        self.reversed: set[int] = set()

    def add(self, item: Mapping[str, Any] | None) -> None:
        """Add one line: a leaf object, an entry ``{"index","leaf_hash"[,"leaf"]}``, or None.

        None, and an entry without ``leaf``, count as a hash-only line. A leaf that
        cannot be summarised raises ValueError naming its index and field.
        """
        if item is not None and "leaf_hash" in item:
            item = item.get("leaf")
        if item is None:
            self.hash_only += 1
            return
        try:
            self._add(item)
        except _SUMMARY_ERRORS as exc:
            raise _summary_error(item, exc) from None

    @staticmethod
    def money(leaf: Mapping[str, Any]) -> tuple[int, str, str, str, int]:
        """What a receipt or disbursement leaf adds: ``(index, kind, fund, month, fen)``.

        Leaves can be read into these in other processes and added in index order
        with ``add_money``; the result is the same as ``add`` of each leaf.
        """
        try:
            kind = _str(leaf["kind"], "kind")
            index = leaf["index"]
            if type(index) is not int:
                raise ValueError("index is not an integer")
            body = leaf["body"]
            if type(body) is not dict and not isinstance(body, Mapping):
                raise ValueError("body is not an object")
            month = _str(leaf["occurred_on"], "occurred_on")[:7]
            return (
                index,
                kind,
                _str(body["fund_code"], "fund_code"),
                month,
                _fen(body["amount"], "amount"),
            )
        except _SUMMARY_ERRORS as exc:
            raise _summary_error(leaf, exc) from None

    def merge(self, first: int, part: SummaryBuilder) -> None:
        """Add ``part``: receipts, disbursements and counted kinds of the leaves from
        index ``first`` on, summarised with indexes counted from ``first``.

        Nothing of this builder may lie at or after ``first`` yet. Flows and counts
        add up; the money of each leaf is kept for later reversals.
        """
        if first < len(self._money_fund):
            raise ValueError(f"cannot merge leaves from {first}: leaf index out of order")
        for kind, n in part.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + n
        self.hash_only += part.hash_only
        for key, row in part.flows.items():
            mine = self.flows.setdefault(key, [0, 0, 0, 0])
            for i in range(4):
                mine[i] += row[i]
        if not part._money_fund:
            return
        ids = [0]
        for fund in part.funds:
            fund_id = self._fund_ids.setdefault(fund, len(self._fund_ids) + 1)
            if fund_id > len(self.funds):
                self.funds.append(fund)
            ids.append(fund_id)
        self._pad_money(to=first)
        self._money_fund.extend([ids[v] if v >= 0 else -ids[-v] for v in part._money_fund])
        self._money_fen.extend(part._money_fen)

    def add_range(
        self,
        first: int,
        end: int,
        kinds: Mapping[str, int],
        money: Iterable[tuple[int, str, str, str, int]],
        hash_only: int = 0,
    ) -> None:
        """Add leaves ``first`` to ``end - 1`` at once (a bundle builder's shortcut).

        ``kinds`` counts, by kind, the leaves of the range that this call adds;
        ``money`` holds the receipts and disbursements among them as ``money`` reads
        them, in index order; ``hash_only`` counts the range's hash-only lines. The
        result is that of ``add_money``, ``count`` and ``add(None)`` of each leaf in
        index order. Leaves of the range that need ``add`` (reversals, procurement)
        are added after this call, in index order.
        """
        if first < len(self._money_fund) or end < first:
            raise ValueError(f"cannot add leaves {first} to {end - 1}: out of order")
        funds = [0] * (end - first)
        fens = [0] * (end - first)
        flows, ids, last, added = self.flows, self._fund_ids, first - 1, 0
        for index, kind, fund, month, fen in money:
            if not last < index < end:
                raise ValueError(f"leaf {index} ({kind}): leaf index out of order")
            last = index
            fund_id = ids.get(fund) or self.fund_id(fund)
            row = flows.get((fund, month))
            if row is None:
                row = flows[(fund, month)] = [0, 0, 0, 0]
            if kind == "fund.receipt":
                funds[index - first] = fund_id
                row[0] += fen
                row[2] += 1
            elif kind == "fund.disbursement":
                funds[index - first] = -fund_id
                row[1] += fen
                row[3] += 1
            else:
                raise ValueError(f"leaf {index} ({kind}): not a receipt or disbursement")
            fens[index - first] = fen
            added += 1
        self._count_range(first, end, kinds, added, hash_only)
        self._pad_money(to=first)
        self._money_fund.extend(funds)
        self._money_fen.extend(fens)

    def add_flows(
        self,
        first: int,
        end: int,
        kinds: Mapping[str, int],
        flows: Iterable[tuple[str, str, str, int, int]],
    ) -> None:
        """Add leaves ``first`` to ``end - 1`` from sums (a bundle builder's shortcut).

        Like ``add_range``, but the receipts and disbursements come summed by fund,
        month and kind: ``(fund, month, kind, fen, count)``. Their amounts are not
        kept leaf by leaf: a later reversal finds its target through ``_money_at``,
        which the builder provides.
        """
        if first < len(self._money_fund) or end < first:
            raise ValueError(f"cannot add leaves {first} to {end - 1}: out of order")
        added = 0
        for fund, month, kind, fen, count in flows:
            if kind not in MONEY_KINDS:
                raise ValueError(f"{kind} is not a receipt or disbursement")
            self._flow(fund, month, kind, fen, count)
            added += count
        self._count_range(first, end, kinds, added, 0)

    def _pad_money(self, to: int) -> None:
        """Extend the per-leaf money arrays with no-money leaves up to index ``to``."""
        pad = to - len(self._money_fund)
        if pad:
            self._money_fund.extend([0] * pad)
            self._money_fen.extend([0] * pad)

    def fund_id(self, fund: str) -> int:
        """The builder's number for a fund code (from 1, in order of first sight)."""
        fund_id = self._fund_ids.get(fund)
        if fund_id is None:
            fund_id = self._fund_ids[fund] = len(self._fund_ids) + 1
            self.funds.append(fund)
        return fund_id

    def _money_at(self, index: int) -> tuple[int, int]:
        """``(fund number, fen)`` of the receipt (+) or disbursement (-) at ``index``,
        ``(0, 0)`` if no present leaf there is one."""
        if 0 <= index < len(self._money_fund):
            return self._money_fund[index], self._money_fen[index]
        return 0, 0

    def _count_range(
        self, first: int, end: int, kinds: Mapping[str, int], money: int, hash_only: int
    ) -> None:
        if money != kinds.get("fund.receipt", 0) + kinds.get("fund.disbursement", 0):
            raise ValueError(f"leaves {first} to {end - 1}: money and kinds disagree")
        for kind, n in kinds.items():
            added_only = kind in SUMMARY_KINDS or kind.startswith("procurement.")
            if added_only and kind not in MONEY_KINDS:
                raise ValueError(f"{kind} leaves must be added, not counted")
            self.kinds[kind] = self.kinds.get(kind, 0) + n
        self.hash_only += hash_only

    def add_money(self, index: int, kind: str, fund: str, month: str, fen: int) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        try:
            self._money(index, kind, fund, month, fen)
        except ValueError as exc:
            raise ValueError(f"leaf {index} ({kind}): {exc}") from None

    def _money(self, index: int, kind: str, fund: str, month: str, fen: int) -> None:
        if index < len(self._money_fund):
            raise ValueError("leaf index out of order")
        fund_id = self.fund_id(fund)
        self._pad_money(to=index)
        self._money_fund.append(fund_id if kind == "fund.receipt" else -fund_id)
        self._money_fen.append(fen)
        self._flow(fund, month, kind, fen, 1)

    def count(self, kind: str) -> None:
        """Count a leaf of a kind that only the per-kind count depends on (not a fund
        flow, procurement or reversal): the builder's shortcut past parsing it."""
        if kind in SUMMARY_KINDS or kind.startswith("procurement."):
            raise ValueError(f"{kind} leaves must be added, not counted")
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def _add(self, leaf: Mapping[str, Any]) -> None:
        kind = _str(leaf["kind"], "kind")
        index = leaf["index"]
        if type(index) is not int:
            raise ValueError("index is not an integer")
        body = leaf["body"]
        if type(body) is not dict and not isinstance(body, Mapping):
            raise ValueError("body is not an object")
        month = _str(leaf["occurred_on"], "occurred_on")[:7]
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if kind in MONEY_KINDS:
            fund = _str(body["fund_code"], "fund_code")
            self._money(index, kind, fund, month, _fen(body["amount"], "amount"))
        elif kind == "correction.reversal":
            target = body.get("target_index")
            if body.get("target_log") != leaf["log"] or type(target) is not int:
                return  # a reversal of another year's entry: not in this bundle
            if target in self.reversed or target >= index:
                return
            code, fen = self._money_at(target)
            if code:
                t_kind = "fund.receipt" if code > 0 else "fund.disbursement"
                self._flow(self.funds[abs(code) - 1], month, t_kind, -fen, -1)
                self.reversed.add(target)
            elif target in self.events:
                self.tenders[self.events[target]].events.pop(target, None)
                self.reversed.add(target)
        elif kind.startswith("procurement."):
            tid = _str(body["tender_id"], "tender_id")
            tender = self.tenders.setdefault(tid, _Tender())
            if kind == "procurement.tender":
                value = body["value"]
                tender.title = _str(body["title"], "title")
                tender.method = _str(body["method"], "method")
                tender.value = _yuan(_fen(value["amount"], "value.amount"))
                tender.currency = _str(value.get("currency", "CNY"), "value.currency")
            elif kind == "procurement.amendment":
                changes = body.get("changes") or {}
                if tender.method:  # only a tender present in this bundle is amended
                    if changes.get("title") is not None:
                        tender.title = _str(changes["title"], "changes.title")
                    if changes.get("value") is not None:
                        value = changes["value"]
                        tender.value = _yuan(_fen(value["amount"], "changes.value.amount"))
                        tender.currency = _str(value.get("currency", "CNY"), "changes.value")
            elif kind == "procurement.cancelled":
                tender.cancelled = True
            elif kind in _EVENT_FIELDS:
                short, party_key, date_key = _EVENT_FIELDS[kind]
                party = _str(body[party_key]["id"], f"{party_key}.id")
                fen = _fen(body["amount"], "amount")
                tender.events[index] = (short, party, fen, _str(body[date_key], date_key))
                self.events[index] = tid

    def _flow(self, fund: str, month: str, kind: str, fen: int, count: int) -> None:
        row = self.flows.setdefault((fund, month), [0, 0, 0, 0])
        if kind == "fund.receipt":
            row[0] += fen
            row[2] += count
        else:
            row[1] += fen
            row[3] += count

    def csvs(self) -> dict[str, bytes]:
        flows = [
            [fund, month, _yuan(r[0]), _yuan(r[1]), r[2], r[3]]
            for (fund, month), r in sorted(self.flows.items())
        ]
        procurement: list[list[Any]] = []
        for tid, t in sorted(self.tenders.items()):
            events = sorted(t.events.items())
            bids = [e for _, e in events if e[0] == "bid"]
            awards = [e for _, e in events if e[0] == "award"]
            contracts = [e for _, e in events if e[0] == "contract"]
            status = (
                "cancelled"
                if t.cancelled
                else "contracted"
                if contracts
                else "awarded"
                if awards
                else "active"
            )
            procurement.append(
                [
                    tid,
                    t.title,
                    t.method,
                    t.value,
                    t.currency,
                    len(bids),
                    len({b[1] for b in bids}),
                    _yuan(awards[-1][2]) if awards else "",
                    awards[-1][3] if awards else "",
                    _yuan(contracts[-1][2]) if contracts else "",
                    status,
                ]
            )
        kinds: list[list[Any]] = [[k, n] for k, n in sorted(self.kinds.items())]
        if self.hash_only:
            kinds.append([HASH_ONLY_KIND, self.hash_only])
        return {
            "entries-by-kind.csv": _csv(ENTRIES_BY_KIND_COLUMNS, kinds),
            "fund-flows.csv": _csv(FUND_FLOWS_COLUMNS, flows),
            "procurement.csv": _csv(PROCUREMENT_COLUMNS, procurement),
        }


def _csv_cell(value: Any) -> str:
    text = str(value)
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """RFC 4180 text with "\\n" line ends: a cell is quoted iff it holds , " CR or LF.

    That is what ``csv.writer(lineterminator="\\n")`` with QUOTE_MINIMAL writes, except
    that it also quotes a lone CR (which the csv module of 3.11 leaves bare), so the
    bytes do not depend on the Python version.
    """
    lines = [",".join(_csv_cell(v) for v in row) + "\n" for row in [header, *rows]]
    return "".join(lines).encode("utf-8")


def summary_csvs(leaves: Iterable[Mapping[str, Any] | None]) -> dict[str, bytes]:
    """The summary CSVs of ``data/summaries/``, computed from the leaves a bundle carries.

    ``leaves`` are the lines of ``entries.ndjson`` in index order, each given as the
    leaf object, as the entry object ``{"index","leaf_hash"[,"leaf"]}``, or as None
    for a hash-only line. CSVs are UTF-8 with a header row, "\\n" line ends and minimal
    RFC 4180 quoting (see ``_csv``); amounts are exact two-place yuan strings computed in
    integer fen.

    ``fund-flows.csv`` — fund_code, month, receipts, disbursements, receipts_count,
    disbursements_count: one row per (fund_code, month = occurred_on[:7]) with any
    flow, sorted. ``fund.receipt`` adds its amount and 1 to receipts,
    ``fund.disbursement`` to disbursements. A ``correction.reversal`` whose target
    (``target_log`` equal to its own log, ``target_index``) is a receipt or
    disbursement present in the bundle subtracts the target's amount and 1 in the
    reversal's own month (so a cell may be negative). Reversals whose target is not
    present (withheld in the public variant, or in another year's log) are ignored,
    and so are reversals carried in other logs: each bundle sums what it carries.

    ``procurement.csv`` — tender_id, title, method, value, currency, bids, bidders,
    awarded_amount, award_date, contracted_amount, status: one row per tender_id named
    by any present ``procurement.*`` leaf, sorted. title/method/value/currency come
    from the present ``procurement.tender`` leaf as changed by present amendments
    (empty when the tender leaf is absent). Present bid, award and contract leaves
    count unless a present reversal (same rule as above) undoes them: bids = number of
    bids, bidders = number of distinct bidder ids, awarded_amount/award_date = the
    last award, contracted_amount = the last contract. status = cancelled if a
    ``procurement.cancelled`` leaf is present, else contracted, awarded or active.

    ``entries-by-kind.csv`` — kind, entries: present leaves per kind, sorted by kind,
    then a row ``(hash only)`` counting lines without a leaf when there are any.
    """
    builder = SummaryBuilder()
    for item in leaves:
        builder.add(item)
    return builder.csvs()


def _field(name: str, type_: str, description: str) -> dict[str, str]:
    return {"name": name, "type": type_, "description": description}


def datapackage(variant: str, org: str, year: int) -> dict[str, Any]:
    """The Frictionless Data Package descriptor of ``data/summaries/`` (deterministic)."""
    scope = (
        "every entry of the log"
        if variant == "full"
        else "the entries approved for publication (withheld ones are hash only)"
    )
    common = {
        "profile": "tabular-data-resource",
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
    }
    amount = "amount in yuan, two decimal places"
    return {
        "profile": "tabular-data-package",
        "name": f"gongkai-{org}-{year}-{variant}-summaries",
        "title": f"Gongkai {org} {year} summaries ({variant} variant)",
        "description": (
            f"Summaries of log {org}/{year} computed from {scope} in entries.ndjson; "
            "verify.py recomputes every file byte for byte."
        ),
        "resources": [
            {
                "name": "entries-by-kind",
                "path": "entries-by-kind.csv",
                **common,
                "schema": {
                    "fields": [
                        _field("kind", "string", "entry kind, or (hash only)"),
                        _field("entries", "integer", "number of lines"),
                    ],
                    "primaryKey": ["kind"],
                },
            },
            {
                "name": "fund-flows",
                "path": "fund-flows.csv",
                **common,
                "schema": {
                    "fields": [
                        _field("fund_code", "string", "fund"),
                        _field("month", "yearmonth", "month of occurred_on"),
                        _field("receipts", "number", f"receipts less reversals, {amount}"),
                        _field(
                            "disbursements", "number", f"disbursements less reversals, {amount}"
                        ),
                        _field("receipts_count", "integer", "receipts less reversals"),
                        _field("disbursements_count", "integer", "disbursements less reversals"),
                    ],
                    "primaryKey": ["fund_code", "month"],
                },
            },
            {
                "name": "procurement",
                "path": "procurement.csv",
                **common,
                "schema": {
                    "fields": [
                        _field("tender_id", "string", "tender"),
                        _field("title", "string", "tender title (empty if not carried)"),
                        _field("method", "string", "open, selective, limited or direct"),
                        _field("value", "number", f"estimated value, {amount}"),
                        _field("currency", "string", "ISO 4217 code of value"),
                        _field("bids", "integer", "bids not reversed"),
                        _field("bidders", "integer", "distinct bidders"),
                        _field("awarded_amount", "number", f"last award, {amount}"),
                        _field("award_date", "date", "date of the last award"),
                        _field("contracted_amount", "number", f"last contract, {amount}"),
                        _field("status", "string", "active, awarded, contracted or cancelled"),
                    ],
                    "primaryKey": ["tender_id"],
                },
            },
        ],
    }


# ======================================================================================
# Opening a bundle
# ======================================================================================


def _safe_member(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if (
        not name
        or name.startswith(("/", "\\"))
        or p.is_absolute()
        or ".." in p.parts
        or "\\" in name
        or ":" in (p.parts[0] if p.parts else "")
    ):
        raise ValueError(f"unsafe member name {name!r} in the archive")
    return p


def _top_dir(dest: Path) -> Path:
    if (dest / "bagit.txt").is_file():
        return dest  # archived from inside the bag directory
    entries = list(dest.iterdir())
    if len(entries) != 1 or not entries[0].is_dir():
        raise ValueError("the archive must hold exactly one top-level directory (the bag)")
    return entries[0]


class _Streamed:
    """A zip's entries.ndjson being extracted in a thread while it is checked.

    The thread writes the file in order, hashes it as it goes (for the manifest
    check) and publishes its pieces once written: pieces cut as ``_pieces`` cuts
    them, each published two pieces behind, so that the last two are published
    together with the file's line count (the tree head before the last line is cut
    at the start of the last line, inside the last piece or at its start). Checking
    the pieces already written while the rest is inflated uses the CPU the
    extraction left idle.
    """

    READ = 1 << 16  # bytes inflated at a time

    def __init__(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, piece_bytes: int):
        """Create ``target`` and extract ``info`` of ``zf`` into it in a thread, which
        closes ``zf`` when it is done."""
        self.path = os.path.realpath(target)
        self.size = info.file_size  # as the zip declares it; checked at the end
        self.cond = threading.Condition()
        self.pieces: list[tuple[int, int, int]] = []  # (start, end, first index), published
        self.lines: int | None = None  # newlines in the file, once written
        self.sha256: str | None = None
        self.done = False
        self.error: BaseException | None = None
        self.cancelled = False  # told to stop: its error then says so, and is not reported
        out = open(target, "xb")  # closed by the thread
        try:
            self._thread = threading.Thread(
                target=self._extract, args=(zf, info, out, piece_bytes), daemon=True
            )
            self._thread.start()
        except BaseException:
            out.close()
            raise

    def _extract(
        self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Any, piece_bytes: int
    ) -> None:
        sha = hashlib.sha256()
        held: list[tuple[int, int, int]] = []  # cut, not yet published
        start = newlines = 0
        piece = bytearray()  # the bytes of the piece being written
        scanned = 0  # ``piece`` holds no newline before this offset past its cut point
        try:
            with out, zf, zf.open(info) as src:
                while True:
                    if self.cancelled:
                        raise VerificationError("the extraction was stopped")
                    chunk = src.read(self.READ)
                    if not chunk:
                        break
                    out.write(chunk)
                    sha.update(chunk)
                    piece += chunk
                    at = 0  # where the piece being cut starts in ``piece``
                    while len(piece) - at >= piece_bytes:
                        # Resume the search where the last one stopped: a long line
                        # read in many chunks is scanned once, not once a chunk.
                        cut = piece.find(b"\n", max(at + piece_bytes - 1, scanned)) + 1
                        if not cut:
                            scanned = len(piece)
                            break
                        held.append((start, start + cut - at, newlines))
                        newlines += piece.count(b"\n", at, cut)
                        start += cut - at
                        at = cut
                    del piece[:at]
                    scanned = max(0, scanned - at)
                    if len(held) > 2:
                        out.flush()  # workers read what is published from the file
                        with self.cond:
                            self.pieces += held[:-2]
                            self.cond.notify_all()
                        del held[:-2]
                if piece:
                    held.append((start, start + len(piece), newlines))
                    newlines += piece.count(b"\n")
                    start += len(piece)
            if start != self.size:
                raise zipfile.BadZipFile(
                    f"{info.filename}: {start} bytes, the zip says {self.size}"
                )
        except BaseException as exc:  # reported by whoever waits for the file
            with self.cond:
                self.error = exc
                self.cond.notify_all()
            return
        with self.cond:
            self.pieces += held
            self.lines, self.sha256, self.done = newlines, sha.hexdigest(), True
            self.cond.notify_all()

    def published(self) -> Iterator[tuple[int, int, int, int | None]]:
        """The pieces as they are published, each with the line count if known yet."""
        i = 0
        while True:
            with self.cond:
                while i == len(self.pieces) and not self.done and self.error is None:
                    self.cond.wait()
                if self.error is not None:
                    raise VerificationError(
                        f"data/entries.ndjson cannot be extracted: {self.error}"
                    )
                if i == len(self.pieces):
                    return
                piece, lines = self.pieces[i], self.lines
            i += 1
            yield (*piece, lines)

    def wait(self) -> tuple[str, int]:
        """The file's SHA-256 and number of newlines, once it is written."""
        with self.cond:
            while not self.done and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise VerificationError(f"data/entries.ndjson cannot be extracted: {self.error}")
            assert self.sha256 is not None and self.lines is not None
            return self.sha256, self.lines

    def close(self) -> BaseException | None:
        """Stop (if still running) and wait for the thread; the extraction's error,
        if it failed before it was told to stop."""
        with self.cond:
            stopped = not self.done and self.error is None
            self.cancelled = True
        self._thread.join()
        return None if stopped else self.error


#: Files being extracted while checked, by their real path (see ``_Streamed``).
_STREAMED: dict[str, _Streamed] = {}
_STREAMED_LOCK = threading.Lock()


def _streamed(path: Path) -> _Streamed | None:
    with _STREAMED_LOCK:
        return _STREAMED.get(os.path.realpath(path))


def _streamed_member(name: str) -> bool:
    parts = _safe_member(name).parts
    return parts[-2:] == ("data", "entries.ndjson") and len(parts) <= 3


def _extract(archive: Path, dest: Path, streams: list[_Streamed] | None = None) -> Path:
    """Extract the archive into ``dest``; its bag directory. With ``streams``, a zip's
    entries.ndjson goes on being extracted in a thread (``_Streamed``, listed there)."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        later: tuple[zipfile.ZipInfo, Path] | None = None
        zf = zipfile.ZipFile(archive)
        try:
            for info in zf.infolist():
                p = _safe_member(info.filename)
                mode = info.external_attr >> 16
                if mode and stat.S_ISLNK(mode):
                    raise ValueError(f"archive member {info.filename!r} is a symbolic link")
                target = dest.joinpath(*p.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if streams is not None and later is None and _streamed_member(info.filename):
                    later = (info, target)
                    continue
                with zf.open(info) as src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out)
            if later is not None:  # the same open zip: its thread closes it
                assert streams is not None
                stream = _Streamed(zf, *later, PIECE_BYTES)
                streams.append(stream)
                with _STREAMED_LOCK:
                    _STREAMED[stream.path] = stream
        except BaseException:
            zf.close()
            raise
        if later is None:
            zf.close()
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                p = _safe_member(member.name)
                target = dest.joinpath(*p.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    member_file = tf.extractfile(member)
                    assert member_file is not None
                    with member_file, open(target, "xb") as out:
                        shutil.copyfileobj(member_file, out)
                else:
                    raise ValueError(f"archive member {member.name!r} is not a file or directory")
    else:
        raise ValueError(f"{archive}: not a bag directory, .zip or .tar.gz")
    return _top_dir(dest)


@contextmanager
def open_bundle(path: Path) -> Iterator[Path]:
    """``with open_bundle(path) as bag_dir:`` — a directory, or an extracted archive.

    A zip's entries.ndjson may still be being extracted when the body starts (see
    ``_Streamed``); an error of that extraction is raised on leaving.
    """
    path = Path(path)
    if path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gongkai-verify-") as tmp:
        streams: list[_Streamed] = []
        try:
            yield _extract(path, Path(tmp), streams)
            errors = [e for e in (s.close() for s in streams) if e is not None]
            if errors:  # as extracting it before the checks would have
                raise zipfile.BadZipFile(f"data/entries.ndjson: {errors[0]!r}") from errors[0]
        finally:
            for stream in streams:
                stream.close()
                with _STREAMED_LOCK:
                    _STREAMED.pop(stream.path, None)


# ======================================================================================
# The checks
# ======================================================================================


@dataclass(frozen=True)
class CheckResult:
    status: str  # "ok", "FAIL", "note" or "skip"
    check: str
    message: str

    def __str__(self) -> str:
        return f"{'ok ' if self.status == 'ok' else self.status} {self.check}: {self.message}"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise VerificationError(f"{what} is missing") from None
    except UnicodeDecodeError:
        raise VerificationError(f"{what} is not valid UTF-8") from None


_HASH_RE = re.compile(r"[0-9a-f]{64}")


def _unhex(text: Any, what: str) -> bytes:
    if type(text) is not str or not _HASH_RE.fullmatch(text):
        raise VerificationError(f"{what}: {text!r} is not a 64-digit lowercase hex hash")
    return bytes.fromhex(text)


def _bag_path(text: str) -> str:
    # RFC 8493 §2.1.3: CR, LF and % in manifest paths are percent-encoded.
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def _read_manifest(path: Path, name: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    text = _read_text(path, name)
    if text and not text.endswith("\n"):
        raise VerificationError(f"{name}: last line does not end with a newline")
    for number, line in enumerate(text[:-1].split("\n") if text else [], start=1):
        m = re.fullmatch(r"([0-9a-fA-F]{64})[ \t]+(\*?)(.+)", line)
        if not m:
            raise VerificationError(f"{name} line {number}: not '<sha256>  <path>': {line!r}")
        rel = _bag_path(m.group(3))
        p = PurePosixPath(rel)
        if p.is_absolute() or ".." in p.parts:
            raise VerificationError(f"{name} line {number}: unsafe path {rel!r}")
        if rel in entries:
            raise VerificationError(f"{name} line {number}: {rel} is listed twice")
        entries[rel] = m.group(1).lower()
    return entries


#: The OCDS release tag of a procurement leaf, and of a reversal of a bid, award or
#: contract leaf (ledger/ocds.py, whose mapping of the rest is not repeated here).
OCDS_TAGS = {
    "procurement.tender": "tender",
    "procurement.bid": "tenderUpdate",
    "procurement.award": "award",
    "procurement.contract": "contract",
    "procurement.amendment": "tenderAmendment",
    "procurement.cancelled": "tenderCancellation",
}
OCDS_REVERSAL_TAGS = {
    "procurement.bid": "tenderUpdate",
    "procurement.award": "awardCancellation",
    "procurement.contract": "contractUpdate",
}


class _Releases:
    """The releases the OCDS package must hold, from the leaves carried in full (in
    index order): one a procurement leaf, and one a reversal of a bid, award or
    contract leaf carried before it; each as (id, tender_id, tag, date)."""

    def __init__(self) -> None:
        self.expected: list[tuple[str, str, str, str]] = []
        self.latest = ""  # the newest recorded_at of a procurement or reversal leaf
        self._events: dict[int, tuple[str, str]] = {}  # index -> (tender_id, kind)

    def add(self, leaf: Mapping[str, Any]) -> None:
        kind, body, index = leaf["kind"], leaf["body"], leaf["index"]
        recorded = _str(leaf["recorded_at"], "recorded_at")
        if kind == "correction.reversal" or kind.startswith("procurement."):
            self.latest = max(self.latest, recorded)  # the builder's input, all of it
        if kind == "correction.reversal":
            target = body.get("target_index")
            same_log = body.get("target_log") == leaf["log"] and type(target) is int
            found = self._events.get(target) if same_log else None
            if found is None:
                return
            tender_id, tag = found[0], OCDS_REVERSAL_TAGS[found[1]]
        elif kind in OCDS_TAGS:
            tender_id, tag = str(body["tender_id"]), OCDS_TAGS[kind]
            if kind in OCDS_REVERSAL_TAGS:
                self._events[index] = (tender_id, kind)
        else:
            return
        when = datetime.datetime.fromisoformat(recorded)
        if when.tzinfo is None:
            raise ValueError(f"recorded_at {recorded!r} has no time zone")
        when = when.astimezone(datetime.UTC)
        date = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.expected.append((f"{leaf['log']}-{index}", tender_id, tag, date))


@dataclass
class _Bag:
    root: Path
    info: dict[str, str] = field(default_factory=dict)
    org: str | None = None
    year: int | None = None
    variant: str | None = None
    origin: str | None = None
    key: VKey | None = None
    checkpoint: Checkpoint | None = None
    proofs: list[dict[str, Any]] | None = None
    final: tuple[int, bytes] | None = None
    # filled by the entries pass
    entries_ok: bool = False
    size: int = 0
    root_hash: bytes = b""
    roots_at: dict[int, bytes] = field(default_factory=dict)
    last_leaf: dict[str, Any] | None = None
    root_before_last: bytes | None = None
    disclosures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    opinions: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    summaries: SummaryBuilder = field(default_factory=SummaryBuilder)
    summary_error: str | None = None
    hash_only: int = 0
    stubs: array.array[int] = field(default_factory=lambda: array.array("q"))
    reviews: list[tuple[int, int, bool]] = field(default_factory=list)
    # Each piece's first index, kinds and codes (``_Piece``): a leaf's kind by index.
    coded: list[tuple[int, list[str], array.array[int]]] = field(default_factory=list)
    releases: _Releases = field(default_factory=_Releases)
    carried: collections.Counter[str] = field(default_factory=collections.Counter)
    internal: collections.Counter[str] = field(default_factory=collections.Counter)

    def kind_at(self, index: int) -> str | None:
        """The kind of the leaf at ``index``, None if it is carried as hash only."""
        first, kinds, codes = self.coded[bisect.bisect_right(self.coded, index, key=_first) - 1]
        code = codes[index - first]
        return kinds[code - 1] if code else None

    @property
    def log(self) -> str | None:
        return f"{self.org}/{self.year}" if self.org and self.year else None

    def data(self, rel: str) -> Path:
        return self.root / "data" / rel


def _first(coded: tuple[int, Any, Any]) -> int:
    return coded[0]


_INFO_REQUIRED = (
    "Source-Organization",
    "External-Identifier",
    "Bagging-Date",
    "Payload-Oxum",
    "Bag-Group-Identifier",
    "Gongkai-Variant",
    "Gongkai-Origin",
)


def _payload_files(bag: _Bag) -> list[str]:
    data = bag.root / "data"
    if not data.is_dir():
        raise VerificationError("data/ (the payload directory) is missing")
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(data):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            if full.is_symlink():
                raise VerificationError(
                    f"{full.relative_to(bag.root).as_posix()} is a symbolic link"
                )
        for name in filenames:
            files.append((Path(dirpath) / name).relative_to(bag.root).as_posix())
    return sorted(files)


def _payload_size(path: Path) -> int:
    """A payload file's size; of one still being extracted, the size the zip declares
    (its extraction fails if the bytes differ)."""
    stream = _streamed(path)
    return path.stat().st_size if stream is None else stream.size


def _payload_sha256(path: Path) -> str:
    stream = _streamed(path)
    return _sha256_file(path) if stream is None else stream.wait()[0]


def _check_bag(bag: _Bag) -> str:
    text = _read_text(bag.root / "bagit.txt", "bagit.txt")
    if text != "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n":
        raise VerificationError(f"bagit.txt is not the BagIt 1.0 declaration: {text!r}")
    info_text = _read_text(bag.root / "bag-info.txt", "bag-info.txt")
    for number, line in enumerate(info_text.splitlines(), start=1):
        key, sep, value = line.partition(": ")
        if not sep or not key or key[0].isspace():
            raise VerificationError(f"bag-info.txt line {number}: not 'Key: value': {line!r}")
        if key in bag.info:
            raise VerificationError(f"bag-info.txt line {number}: {key} given twice")
        bag.info[key] = value
    for key in _INFO_REQUIRED:
        if key not in bag.info:
            raise VerificationError(f"bag-info.txt has no {key}")
    m = re.fullmatch(
        r"gongkai:([a-z0-9][a-z0-9-]{0,62}):([0-9]{4})", bag.info["External-Identifier"]
    )
    if not m:
        raise VerificationError(
            f"bag-info.txt External-Identifier {bag.info['External-Identifier']!r} "
            "is not gongkai:<org>:<year>"
        )
    org, year = m.group(1), int(m.group(2))
    if bag.info["Bag-Group-Identifier"] != f"gongkai:{org}":
        raise VerificationError(f"bag-info.txt Bag-Group-Identifier is not gongkai:{org}")
    bagged = bag.info["Bagging-Date"]
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", bagged):
            raise ValueError
        closed_on = datetime.date.fromisoformat(bagged)
    except ValueError:
        raise VerificationError("bag-info.txt Bagging-Date is not a date YYYY-MM-DD") from None
    if closed_on.year <= year:
        raise VerificationError(
            f"bag-info.txt Bagging-Date {bagged} is not after {year}: "
            "a year is closed once it is over"
        )
    variant = bag.info["Gongkai-Variant"]
    if variant not in ("full", "public"):
        raise VerificationError(
            f"bag-info.txt Gongkai-Variant {variant!r} is neither full nor public"
        )
    origin = bag.info["Gongkai-Origin"]
    if not origin or any(ch.isspace() for ch in origin):
        raise VerificationError(
            f"bag-info.txt Gongkai-Origin {origin!r} is not a valid origin prefix"
        )
    bag.org, bag.year, bag.variant, bag.origin = org, year, variant, origin
    files = _payload_files(bag)
    total = sum(_payload_size(bag.root / f) for f in files)
    oxum = f"{total}.{len(files)}"
    if bag.info["Payload-Oxum"] != oxum:
        raise VerificationError(
            f"bag-info.txt Payload-Oxum is {bag.info['Payload-Oxum']} but the payload "
            f"on disk is {oxum} (bytes.files)"
        )
    return f"BagIt 1.0 bag of log {org}/{year}, {variant} variant, {len(files)} payload files"


def _check_manifest(bag: _Bag) -> str:
    listed = _read_manifest(bag.root / "manifest-sha256.txt", "manifest-sha256.txt")
    files = _payload_files(bag)
    for rel in listed:
        if not rel.startswith("data/"):
            raise VerificationError(f"manifest-sha256.txt lists {rel}, which is not under data/")
        if rel not in files:
            raise VerificationError(f"manifest-sha256.txt lists {rel}, which is not in the bag")
    for rel in files:
        if rel not in listed:
            raise VerificationError(f"{rel} is not listed in manifest-sha256.txt")
        digest = _payload_sha256(bag.root / rel)
        if digest != listed[rel]:
            raise VerificationError(
                f"{rel}: SHA-256 is {digest}, manifest-sha256.txt says {listed[rel]} "
                "(the file or its manifest entry was changed)"
            )
    return f"{len(files)} payload files match manifest-sha256.txt"


def _check_tagmanifest(bag: _Bag) -> str:
    listed = _read_manifest(bag.root / "tagmanifest-sha256.txt", "tagmanifest-sha256.txt")
    for rel in ("bagit.txt", "bag-info.txt", "manifest-sha256.txt"):
        if rel not in listed:
            raise VerificationError(f"tagmanifest-sha256.txt does not list {rel}")
    for rel, expected in listed.items():
        if rel.startswith("data/"):
            raise VerificationError(f"tagmanifest-sha256.txt lists payload file {rel}")
        path = bag.root / rel
        if not path.is_file():
            raise VerificationError(f"tagmanifest-sha256.txt lists {rel}, which is not in the bag")
        digest = _sha256_file(path)
        if digest != expected:
            raise VerificationError(
                f"{rel}: SHA-256 is {digest}, tagmanifest-sha256.txt says {expected} "
                f"({rel} or its tag manifest entry was changed)"
            )
    return f"{len(listed)} tag files match tagmanifest-sha256.txt"


def _check_vkey(bag: _Bag, pinned: str | None) -> list[CheckResult]:
    in_bag = VKey.parse(_read_text(bag.data("vkey.txt"), "data/vkey.txt"), "data/vkey.txt")
    if pinned is None:
        bag.key = in_bag
        return [
            CheckResult("ok", "vkey", f"data/vkey.txt is the Ed25519 key {in_bag}"),
            CheckResult(
                "note",
                "vkey",
                "the key was taken from the bundle itself, not pinned: this proves the "
                "bundle is intact, not who signed it; pass --vkey with the key obtained "
                "out of band to check that",
            ),
        ]
    key = VKey.parse(pinned, "pinned vkey")
    bag.key = key
    if in_bag != key:
        raise VerificationError(f"data/vkey.txt holds {in_bag}, which is not the pinned key {key}")
    return [CheckResult("ok", "vkey", f"data/vkey.txt is the pinned key {key}")]


def _check_checkpoint(bag: _Bag) -> str:
    if bag.key is None:
        raise _Skip("no usable verifier key")
    note = _read_text(bag.data("checkpoint.txt"), "data/checkpoint.txt")
    cp = open_note(note, bag.key, "data/checkpoint.txt")
    if bag.origin is not None and bag.log is not None:
        expected = f"{bag.origin}/{bag.log}"
        if cp.origin != expected:
            raise VerificationError(
                f"data/checkpoint.txt: origin is {cp.origin!r}, expected {expected!r}"
            )
    bag.checkpoint = cp
    return (
        f"data/checkpoint.txt signed by {bag.key} ({ed25519_backend()}): "
        f"{cp.origin}, size {cp.size}, root {cp.root.hex()}"
    )


class _Skip(Exception):
    """A check cannot run because something it depends on failed."""


def _load_consistency(bag: _Bag) -> None:
    """Parse data/consistency.json (the sizes are needed during the entries pass)."""
    try:
        doc = json.loads(_read_text(bag.data("consistency.json"), "data/consistency.json"))
    except ValueError as exc:
        raise VerificationError(f"data/consistency.json is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("proofs"), list):
        raise VerificationError("data/consistency.json has no 'proofs' list")
    final = doc.get("final")
    if not isinstance(final, dict) or type(final.get("size")) is not int:
        raise VerificationError("data/consistency.json has no 'final' {size, root}")
    bag.final = (final["size"], _unhex(final.get("root"), "data/consistency.json final.root"))
    proofs: list[dict[str, Any]] = []
    for i, p in enumerate(doc["proofs"]):
        what = f"data/consistency.json proofs[{i}]"
        if not isinstance(p, dict):
            raise VerificationError(f"{what} is not an object")
        size = p.get("size")
        if type(size) is not int or size < 0:
            raise VerificationError(f"{what}: size {size!r} is not a tree size")
        if not isinstance(p.get("path"), list):
            raise VerificationError(f"{what}: no 'path' list")
        proofs.append(p)
    bag.proofs = proofs


_ENTRY_KEYS = {"index", "leaf_hash", "leaf"}
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LEAF_KEYS = {
    "v",
    "log",
    "index",
    "kind",
    "subject",
    "occurred_on",
    "recorded_at",
    "actor",
    "visibility",
    "idempotency_key",
    "salt",
    "body",
}


def _check_leaf(leaf: Any, index: int, log: str | None) -> None:
    if not isinstance(leaf, dict):
        raise VerificationError("'leaf' is not an object")
    if leaf.keys() != _LEAF_KEYS:
        missing = sorted(_LEAF_KEYS - set(leaf))
        extra = sorted(set(leaf) - _LEAF_KEYS)
        raise VerificationError(
            f"leaf fields differ from SPEC §4 (missing {missing}, extra {extra})"
        )
    if leaf["v"] != 1:
        raise VerificationError(f"leaf version {leaf['v']!r}, expected 1")
    if leaf["index"] != index:
        raise VerificationError(f"the leaf says index {leaf['index']!r}, the line is index {index}")
    if log is not None and leaf["log"] != log:
        raise VerificationError(f"leaf of log {leaf['log']!r}, not of {log}")
    if type(leaf["kind"]) is not str or type(leaf["body"]) is not dict:
        raise VerificationError("leaf kind or body malformed")
    occurred_on = leaf["occurred_on"]
    if type(occurred_on) is not str or not _DATE_RE.fullmatch(occurred_on):
        raise VerificationError(f"occurred_on {occurred_on!r} is not YYYY-MM-DD")
    if leaf["visibility"] not in ("public", "internal"):
        raise VerificationError(f"visibility {leaf['visibility']!r}")


#: entries.ndjson is checked in pieces of about this many bytes, cut at line ends.
#: Pieces are checked in worker processes, one per CPU, and folded in order: the
#: per-line work (parse, canonical form, hash) runs in parallel, the tree and the
#: summaries are built from the pieces' results in index order.
PIECE_BYTES = 8 << 20


@dataclass
class _Piece:
    """What checking one piece of entries.ndjson found."""

    first: int  # index of its first line
    lines: int = 0  # lines checked (up to an error)
    # The checked lines' hashes as aligned perfect subtrees (level, root), in order;
    # ranges are cut at the tree sizes whose roots are wanted.
    subtrees: list[tuple[int, bytes]] = field(default_factory=list)
    hash_only: int = 0
    # Summaries of the piece's receipts, disbursements and counted kinds, built by a
    # SummaryBuilder with indexes counted from ``first`` (SummaryBuilder.merge).
    summary: SummaryBuilder = field(default_factory=SummaryBuilder)
    # Leaves the summaries must read in index order (reversals, procurement), or
    # (index, message) for a leaf that cannot be summarised (the piece stops there).
    records: list[Any] = field(default_factory=list)
    disclosures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    opinions: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    # Public variant: the indexes carried as hash only, ascending; and the reviews
    # of this log's entries found among the leaves (review index, target, approved).
    stubs: array.array[int] = field(default_factory=lambda: array.array("q"))
    reviews: list[tuple[int, int, bool]] = field(default_factory=list)
    # Each line's kind as a code: 0 hash only, n for kinds[n - 1]; and how many leaves
    # of each kind were carried in full, and of those how many were internal.
    kinds: list[str] = field(default_factory=list)
    codes: array.array[int] = field(default_factory=lambda: array.array("I"))
    carried: dict[str, int] = field(default_factory=dict)
    internal: dict[str, int] = field(default_factory=dict)
    last: dict[str, Any] | None = None
    error: tuple[int, str] | None = None  # (index, message): the piece stopped there
    pid: int = field(default_factory=os.getpid)  # the process that checked it


def _subtree_root(hashes: list[bytes]) -> bytes:
    """Root of a perfect subtree (len(hashes) is a power of two)."""
    sha = hashlib.sha256
    while len(hashes) > 1:
        hashes = [
            sha(b"\x01" + a + b).digest() for a, b in zip(hashes[::2], hashes[1::2], strict=True)
        ]
    return hashes[0]


def _subtrees(first: int, hashes: list[bytes], cuts: Iterable[int]) -> list[tuple[int, bytes]]:
    """Leaves ``first …`` as aligned perfect subtrees, none crossing a cut."""
    out: list[tuple[int, bytes]] = []
    end = first + len(hashes)
    bounds = [c for c in sorted(set(cuts)) if first < c < end] + [end]
    a = first
    for b in bounds:
        while a < b:
            level = (a & -a).bit_length() - 1 if a else 62
            while (1 << level) > b - a:
                level -= 1
            out.append((level, _subtree_root(hashes[a - first : a - first + (1 << level)])))
            a += 1 << level
    return out


def _pieces(path: Path, piece_bytes: int) -> tuple[list[tuple[int, int, int]], int]:
    """``(start, end, first index)`` of each piece, and the number of newlines.

    Every piece but a truncated last one ends just after a newline.
    """
    pieces: list[tuple[int, int, int]] = []
    start = newlines = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(piece_bytes)
            if not block:
                break
            if not block.endswith(b"\n"):
                block += fh.readline()
            pieces.append((start, start + len(block), newlines))
            start += len(block)
            newlines += block.count(b"\n")
    return pieces, newlines


def _review_target(leaf: dict[str, Any], log: str | None) -> int | None:
    """The index a review leaf names in this log, or None (another log's entry)."""
    body = leaf["body"]
    target = body.get("target_index")
    if body.get("target_log") != log or type(target) is not int:
        return None
    return target


def _check_piece(
    path: str, start: int, end: int, first: int, wanted: tuple[int, ...], log: str | None,
    full: bool, stdlib: bool,
) -> _Piece:  # fmt: skip
    """Check the lines of one piece (runs in a worker process)."""
    if stdlib:
        use_stdlib_json()
    piece = _Piece(first)
    summary = piece.summary
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    lines = data.split(b"\n")
    last_line = lines.pop()  # b"" after a final newline, else a truncated line
    hashes: list[bytes] = []
    summarising = True
    index = first
    code_of: dict[str, int] = {}
    codes = piece.codes
    for index, line in enumerate(lines, start=first):
        try:
            h, leaf = _entry_line(line, index, log, full)
        except VerificationError as exc:
            piece.error = (index, str(exc))
            break
        hashes.append(h)
        if leaf is None:
            piece.hash_only += 1
            piece.stubs.append(index)
            codes.append(0)
            piece.last = {"index": index}
            if summarising:
                summary.add(None)
            continue
        piece.last = leaf
        kind = leaf["kind"]
        code = code_of.get(kind)
        if code is None:
            piece.kinds.append(kind)
            code = code_of[kind] = len(piece.kinds)
        codes.append(code)
        if leaf["visibility"] != "public":
            piece.internal[kind] = piece.internal.get(kind, 0) + 1
        if kind == "disclosure.published":
            piece.disclosures.append((index, leaf))
        elif kind.startswith("opinion."):
            piece.opinions.append((index, leaf))
        elif kind == "review.approved" or kind == "review.withheld":
            target = _review_target(leaf, log)
            if target is not None:
                piece.reviews.append((index, target, kind == "review.approved"))
        if not summarising:
            continue
        if kind == "fund.receipt" or kind == "fund.disbursement":
            try:
                _, kind, fund, month, fen = SummaryBuilder.money(leaf)
            except ValueError as exc:
                piece.records.append((index, str(exc)))
                summarising = False
                continue
            summary.add_money(index - first, kind, fund, month, fen)
        elif kind == "correction.reversal" or kind.startswith("procurement."):
            piece.records.append(leaf)
        else:
            summary.count(kind)
    else:
        if last_line:
            index = first + len(lines)
            piece.error = (index, "the line does not end with a newline (truncated file?)")
    piece.lines = len(hashes)
    for code, n in collections.Counter(codes).items():
        if code:
            piece.carried[piece.kinds[code - 1]] = n
    piece.subtrees = _subtrees(first, hashes, wanted)
    return piece


def _checked_pieces(
    path: Path, planned: Iterator[tuple[int, int, int, tuple[int, ...]]], count: int,
    log: str | None, full: bool,
) -> Iterator[_Piece]:  # fmt: skip
    """The results of the ``planned`` pieces ``(start, end, first index, cuts)`` (about
    ``count`` of them) in file order; in worker processes when that can help."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(cpus or 1, count)
    # Planned pieces submitted and not yet yielded, each with its worker's result.
    inflight: list[tuple[tuple[int, int, int, tuple[int, ...]], Any]] = []
    if workers > 1:
        import multiprocessing
        from concurrent.futures import Future, ProcessPoolExecutor

        # spawn, not fork: the caller may have threads (a test runner, a server).
        ctx = multiprocessing.get_context("spawn")
        failed: list[BaseException] = []  # of the plan, not of the workers

        def next_plan() -> tuple[int, int, int, tuple[int, ...]] | None:
            try:
                return next(planned, None)
            except BaseException as exc:
                failed.append(exc)
                raise

        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                while True:
                    # At most two pieces a worker in flight: memory stays bounded.
                    while len(inflight) < 2 * workers:
                        plan = next_plan()
                        if plan is None:
                            break
                        future: Future[_Piece] = pool.submit(
                            _check_piece, str(path), *plan, log, full, _orjson is None
                        )
                        inflight.append((plan, future))
                    if not inflight:
                        return
                    piece = inflight[0][1].result()
                    del inflight[0]
                    yield piece
                    if piece.error is not None:
                        for _, f in inflight:
                            f.cancel()
                        return
        except Exception:  # no worker processes here: go on in this one
            if failed:
                raise
    for plan in [*(plan for plan, _ in inflight), *planned]:
        piece = _check_piece(str(path), *plan, log, full, _orjson is None)
        yield piece
        if piece.error is not None:
            return


def _fold_summaries(bag: _Bag, piece: _Piece) -> None:
    s = bag.summaries
    s.merge(piece.first, piece.summary)
    for rec in piece.records:
        if type(rec) is tuple:
            index, message = rec
        else:
            index = rec["index"]
            try:
                s.add(rec)
                bag.releases.add(rec)
                continue
            except _SUMMARY_ERRORS as exc:
                message = str(exc)
        bag.summary_error = f"data/entries.ndjson line {index + 1}: cannot be summarised: {message}"
        return


def _check_entries(bag: _Bag, piece_bytes: int | None = None) -> str:
    path = bag.data("entries.ndjson")
    stream = _streamed(path)
    source: Iterator[tuple[int, int, int, int | None]]
    if stream is not None:  # still being extracted: pieces as they are written
        source = stream.published()
        count = stream.size // (piece_bytes or PIECE_BYTES) + 1  # about
    elif not path.is_file():
        raise VerificationError("data/entries.ndjson is missing")
    else:
        pieces, newlines = _pieces(path, piece_bytes or PIECE_BYTES)
        source, count = ((*p, newlines) for p in pieces), len(pieces)
    # Tree heads needed later: each quarterly size, and all leaves but the last
    # (year.closed), once the number of lines is known.
    wanted = {p["size"] for p in bag.proofs or []}
    if 0 in wanted:
        bag.roots_at[0] = EMPTY_ROOT

    def planned() -> Iterator[tuple[int, int, int, tuple[int, ...]]]:
        for start, end, first, lines in source:
            if lines is not None and lines - 1 not in wanted:
                wanted.add(lines - 1)
                if lines == 1:
                    bag.roots_at[0] = EMPTY_ROOT
            yield start, end, first, tuple(sorted(w for w in wanted if w > 0))

    frontier = _Frontier()
    full = bag.variant == "full"
    for piece in _checked_pieces(path, planned(), count, bag.log, full):
        for level, h in piece.subtrees:
            frontier.append_subtree(h, level)
            if frontier.size in wanted:
                bag.roots_at[frontier.size] = frontier.root()
        bag.hash_only += piece.hash_only
        bag.stubs.extend(piece.stubs)
        bag.reviews.extend(piece.reviews)
        bag.coded.append((piece.first, piece.kinds, piece.codes))
        bag.carried.update(piece.carried)
        bag.internal.update(piece.internal)
        bag.disclosures.extend(piece.disclosures)
        bag.opinions.extend(piece.opinions)
        if piece.last is not None:
            bag.last_leaf = piece.last
        if bag.summary_error is None:
            _fold_summaries(bag, piece)
        if piece.error is not None:
            index, message = piece.error
            raise VerificationError(
                f"data/entries.ndjson line {index + 1} (index {index}): {message}"
            )
    total = newlines if stream is None else stream.wait()[1]
    if frontier.size != total:  # every line is checked, or the pass fails above
        raise VerificationError(f"data/entries.ndjson: {frontier.size} of {total} lines checked")
    bag.size = frontier.size
    bag.root_hash = frontier.root()
    bag.roots_at[bag.size] = bag.root_hash
    bag.root_before_last = bag.roots_at.get(bag.size - 1)
    bag.entries_ok = True
    present = bag.size - bag.hash_only
    note = f", {bag.hash_only} hash only" if bag.hash_only else ""
    return f"{bag.size} lines, {present} leaves carried{note}, every leaf hash recomputed"


def _entry_line(
    line: bytes, index: int, log: str | None, full: bool
) -> tuple[bytes, dict[str, Any] | None]:
    """Check one line of entries.ndjson (without its newline): its hash and its leaf."""
    try:
        entry, canonical_form = _parse_line(line)
    except (ValueError, RecursionError) as exc:  # incl. UnicodeDecodeError, JSONDecodeError
        raise VerificationError(f"not canonical-able JSON: {exc}") from None
    if type(entry) is not dict or "index" not in entry or "leaf_hash" not in entry:
        raise VerificationError("not an object with 'index' and 'leaf_hash'")
    if len(entry) > 3 or (len(entry) == 3 and "leaf" not in entry):
        raise VerificationError(f"unexpected fields {sorted(set(entry) - _ENTRY_KEYS)}")
    if type(entry["index"]) is not int or entry["index"] != index:
        raise VerificationError(
            f"carries index {entry['index']!r}, expected {index} "
            "(a line is missing, duplicated or out of order)"
        )
    if not canonical_form:
        raise VerificationError("the line is not in canonical JSON form")
    stated = _unhex(entry["leaf_hash"], "leaf_hash")
    leaf = entry.get("leaf")
    if leaf is None:
        if "leaf" in entry:
            raise VerificationError("'leaf' is null")
        if full:
            raise VerificationError("hash only, but the full variant carries every leaf")
        return stated, None
    _check_leaf(leaf, index, log)
    if not full and leaf["visibility"] != "public":
        raise VerificationError(
            "an internal entry carried in full: the public variant carries it as hash only"
        )
    # The line is canonical, so it is '{"index":N,"leaf":' + the leaf's canonical
    # bytes + ',"leaf_hash":"<64 hex>"}': hash the leaf bytes without re-encoding.
    h = leaf_hash(line[len(f'{{"index":{index},"leaf":') : -80])
    if h != stated:
        raise VerificationError(
            f"leaf hash recomputed as {h.hex()} but the line says {stated.hex()} "
            "(the leaf or its hash was changed)"
        )
    return h, leaf


def _check_publication(bag: _Bag) -> str:
    """Public variant: what is carried in full agrees with the reviews in the log.

    An entry withheld by a review in this log must be carried as hash only, and one
    approved by a review in this log in full (reviews come before ``year.closed``,
    so before the bundle was built; an entry is reviewed once, and only a public
    one). Internal entries carried in full fail the entries check. An entry whose
    review sits in a later year's log, or that was never reviewed, cannot be told
    apart offline: it is carried in full only if approved by the close.
    """
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    if bag.variant == "full":
        return "full variant: every leaf carried"
    stubs = bag.stubs
    for at, target, approved in bag.reviews:
        what = f"review.{'approved' if approved else 'withheld'} (index {at})"
        if not 0 <= target < at:
            raise VerificationError(f"{what} names index {target}, not an earlier entry")
        k = bisect.bisect_left(stubs, target)
        stub = k < len(stubs) and stubs[k] == target
        if approved and stub:
            raise VerificationError(
                f"index {target} was approved for publication by {what} but is carried as hash only"
            )
        if not approved and not stub:
            raise VerificationError(f"index {target} was withheld by {what} but is carried in full")
    n_approved = sum(1 for _, _, approved in bag.reviews if approved)
    return (
        f"{bag.size - bag.hash_only} leaves in full, {bag.hash_only} hash only; "
        f"{n_approved} approved and {len(bag.reviews) - n_approved} withheld "
        "by reviews in this log agree; no internal entry in full"
    )


def _check_root(bag: _Bag) -> str:
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    if bag.checkpoint is None:
        raise _Skip("no verified checkpoint")
    cp = bag.checkpoint
    if cp.size != bag.size:
        raise VerificationError(
            f"data/entries.ndjson has {bag.size} lines but the signed checkpoint has size {cp.size}"
        )
    if cp.root != bag.root_hash:
        raise VerificationError(
            f"the Merkle root of data/entries.ndjson is {bag.root_hash.hex()}, "
            f"the signed checkpoint says {cp.root.hex()}"
        )
    return f"Merkle root of {bag.size} leaves equals the signed checkpoint's"


def _check_closed(bag: _Bag) -> str:
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    last = bag.last_leaf
    if last is None:
        raise VerificationError("data/entries.ndjson is empty; a closed year ends with year.closed")
    n = bag.size
    root_before_last = bag.root_before_last
    if "kind" not in last:
        raise VerificationError(
            f"data/entries.ndjson last line (index {n - 1}) is hash only, not year.closed"
        )
    if last["kind"] != "year.closed":
        raise VerificationError(
            f"data/entries.ndjson last leaf (index {n - 1}) is {last['kind']}, not year.closed"
        )
    body = last["body"]
    if body.get("size") != n - 1:
        raise VerificationError(
            f"year.closed (index {n - 1}) names size {body.get('size')!r}, expected {n - 1}"
        )
    root = _unhex(body.get("root"), f"year.closed (index {n - 1}) root")
    if root != root_before_last:
        raise VerificationError(
            f"year.closed (index {n - 1}) names root {root.hex()}, but the first {n - 1} "
            f"leaves give {root_before_last.hex() if root_before_last else '?'}"
        )
    return f"year.closed at index {n - 1} names size {n - 1} and its root"


def _check_consistency(bag: _Bag) -> str:
    if bag.proofs is None or bag.final is None:
        raise _Skip("data/consistency.json did not load")
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    n, final_root = bag.final
    if n != bag.size or final_root != bag.root_hash:
        raise VerificationError(
            f"data/consistency.json final is size {n} root {final_root.hex()}, but the "
            f"entries give size {bag.size} root {bag.root_hash.hex()}"
        )
    for i, p in enumerate(bag.proofs):
        period = p.get("period")
        what = f"data/consistency.json proofs[{i}] ({period})"
        m = p["size"]
        root = _unhex(p.get("root"), f"{what} root")
        path = [_unhex(h, f"{what} path[{j}]") for j, h in enumerate(p["path"])]
        if m > n:
            raise VerificationError(f"{what}: size {m} exceeds the final size {n}")
        if bag.roots_at.get(m) != root:
            raise VerificationError(
                f"{what}: root {root.hex()} is not the root of the first {m} leaves "
                f"({bag.roots_at[m].hex() if m in bag.roots_at else '?'})"
            )
        if not verify_consistency(m, n, path, root, bag.root_hash):
            raise VerificationError(
                f"{what}: the consistency proof from size {m} to {n} does not verify"
            )
        note = p.get("checkpoint")
        if note is not None:
            if type(note) is not str:
                raise VerificationError(f"{what}: checkpoint is not a string")
            if bag.key is None:
                raise _Skip("no usable verifier key")
            cp = open_note(note, bag.key, f"{what} checkpoint")
            if bag.checkpoint is not None and cp.origin != bag.checkpoint.origin:
                raise VerificationError(f"{what}: checkpoint origin {cp.origin!r} is not the log's")
            if cp.size != m or cp.root != root:
                raise VerificationError(
                    f"{what}: the signed checkpoint is size {cp.size}, not this tree head"
                )
    # One proof for each quarter published in this log (at a size within it), none else.
    published = sorted(
        (leaf["body"].get("period"), leaf["body"].get("tree_size"))
        for _, leaf in bag.disclosures
        if type(leaf["body"].get("tree_size")) is int and 0 < leaf["body"]["tree_size"] <= n
    )
    proved = sorted((p.get("period"), p["size"]) for p in bag.proofs)
    if proved != published:
        raise VerificationError(
            f"data/consistency.json proves the tree heads {proved}, but the log's "
            f"disclosure.published leaves name {published}"
        )
    signed = sum(1 for p in bag.proofs if p.get("checkpoint") is not None)
    return (
        f"{len(bag.proofs)} quarterly tree heads are prefixes of the final tree "
        f"({signed} with signed checkpoints)"
    )


def _check_disclosures(bag: _Bag) -> str:
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    for index, leaf in bag.disclosures:
        body = leaf["body"]
        period = body.get("period")
        what = f"disclosure.published (index {index})"
        if type(period) is not str or not re.fullmatch(r"[0-9]{4}-Q[1-4]", period):
            raise VerificationError(f"{what}: period {period!r} is not YYYY-Qn")
        expected = _unhex(body.get("summary_sha256"), f"{what} summary_sha256").hex()
        path = bag.data(f"disclosures/{period}.json")
        if not path.is_file():
            raise VerificationError(f"{what}: data/disclosures/{period}.json is missing")
        digest = _sha256_file(path)
        if digest != expected:
            raise VerificationError(
                f"data/disclosures/{period}.json: SHA-256 {digest}, "
                f"but {what} commits to {expected}"
            )
    return f"{len(bag.disclosures)} published disclosures match the hashes their leaves commit to"


#: The payload files of a bag, besides summaries/*.csv (``_check_summaries``) and the
#: quarters' disclosures/<year>-Q<n>.json (``_check_disclosures``).
_PAYLOAD = {
    "entries.ndjson", "checkpoint.txt", "vkey.txt", "consistency.json", "opinions.ndjson",
    "annual-report.json", "procurement/ocds-release-package.json", "verify.py",
    "summaries/datapackage.json",
}  # fmt: skip


def _check_documents(bag: _Bag) -> str:
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    for rel in _payload_files(bag):
        name = rel.removeprefix("data/")
        if name in _PAYLOAD or re.fullmatch(r"summaries/[^/]+\.csv", name):
            continue
        if re.fullmatch(rf"disclosures/{bag.year}-Q[1-4]\.json", name):
            continue
        raise VerificationError(f"{rel} is not a file a Gongkai bundle carries")
    done: list[str] = []
    opinions = bag.data("opinions.ndjson")
    if not opinions.is_file():
        raise VerificationError("data/opinions.ndjson is missing")
    _check_opinions(bag, opinions)
    done.append(f"opinions.ndjson ({len(bag.opinions)} events, as their leaves)")
    procurement = any(k.startswith("procurement.") for k in bag.summaries.kinds)
    for rel, key in (
        ("annual-report.json", None),
        ("procurement/ocds-release-package.json", "releases"),
    ):
        path = bag.data(rel)
        if not path.is_file():
            # Bundles built before 2026-11-27 left out the package of a year without
            # procurement; a year with procurement always had it.
            if key is None or procurement:
                raise VerificationError(f"data/{rel} is missing")
            continue
        try:
            doc = json.loads(path.read_bytes())
        except ValueError as exc:
            raise VerificationError(f"data/{rel} is not JSON: {exc}") from None
        if key is not None and not (isinstance(doc, dict) and isinstance(doc.get(key), list)):
            raise VerificationError(f"data/{rel} has no '{key}' list")
        done.append(rel)
    return ("parse: " + ", ".join(done)) if done else "none carried"


#: Table 四 of the annual report: its groups and their results (ledger/annual_report.py).
APPEAL_KINDS = ("reconsideration", "litigation_direct", "litigation_after_reconsideration")
APPEAL_RESULTS = ("upheld", "corrected", "other", "pending")


def _system_kind(kind: str) -> bool:
    """A kind the ledger writes itself (never reviewed; public without review)."""
    return kind.startswith(("review.", "year.", "opinion.")) or kind == "disclosure.published"


def _count(value: Any, where: str) -> int:
    if type(value) is not int or value < 0:
        raise VerificationError(f"data/annual-report.json: {where} is {value!r}, not a count")
    return value


def _report_part(doc: Any, key: str, kind: type) -> Any:
    part = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(part, kind):
        raise VerificationError(f"data/annual-report.json: '{key}' is missing or malformed")
    return part


def _request_checks(table: dict[str, Any]) -> dict[str, Any]:
    """The cross-checks of table 三 recomputed from its counts, as the report states them
    (numbers and verdicts; the labels are not compared)."""
    columns = [c["key"] for c in table["columns"]]
    rows = {row["key"]: row for row in table["rows"]}
    subs = [
        row for row in table["rows"]
        if row["key"].startswith("results.") and row["key"] != "results.total"
        and row["values"] is not None
    ]  # fmt: skip

    def at(row: dict[str, Any], c: str) -> int:
        return _count(row["values"][c], f"requests row {row['key']} column {c}")

    balance, totals, sums = [], [], []
    for c in columns:
        new, over = at(rows["new"], c), at(rows["carried_over"], c)
        total, forward = at(rows["results.total"], c), at(rows["carried_forward"], c)
        balance.append((c, new + over, total + forward, new + over == total + forward))
        parts = sum(at(row, c) for row in subs)
        totals.append((c, parts, total, parts == total))
    for row in table["rows"]:
        if row["values"] is not None:
            parts = sum(at(row, c) for c in columns if c != "total")
            sums.append((row["key"], parts, at(row, "total"), parts == at(row, "total")))
    verdict = all(item[3] for group in (balance, totals, sums) for item in group)
    return {"holds": verdict, "balance": balance, "results_total": totals, "column_total": sums}


def _stated_checks(checks: dict[str, Any]) -> dict[str, Any]:
    fields = {
        "balance": ("column", "new_plus_carried_over", "results_plus_carried_forward"),
        "results_total": ("column", "sum_of_sub_rows", "total"),
        "column_total": ("row", "sum_of_columns", "total"),
    }
    out: dict[str, Any] = {"holds": checks["holds"]}
    for group, names in fields.items():
        out[group] = [(*(item[n] for n in names), item["holds"]) for item in checks[group]["items"]]
    return out


def _check_annual_report(bag: _Bag) -> str:
    """annual-report.json was made from this log at its close: it names the final
    checkpoint, its table 三 cross-checks state what its counts give, and the records
    it says were published agree with the leaves (public variant: exactly those of each
    kind carried in full; full variant: at least those approved by reviews in this log,
    at most the public leaves of the kind). Table 三's counts themselves come from the
    requests of every year and are not recounted."""
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    doc = _read_json(bag.data("annual-report.json"), "data/annual-report.json")
    if not isinstance(doc, dict) or doc.get("org") != bag.org or doc.get("year") != bag.year:
        raise VerificationError(f"data/annual-report.json is not the report of {bag.log}")
    if doc.get("org_name") != bag.info.get("Source-Organization"):
        raise VerificationError(
            f"data/annual-report.json is the report of {doc.get('org_name')!r}, "
            f"bag-info.txt's Source-Organization is {bag.info.get('Source-Organization')!r}"
        )
    as_of = {
        "log": bag.log,
        "tree_size": bag.size,
        "root": bag.root_hash.hex(),
        "checkpoint": _read_text(bag.data("checkpoint.txt"), "data/checkpoint.txt"),
    }
    if doc.get("as_of") != as_of:
        raise VerificationError(
            "data/annual-report.json: as_of is not the final checkpoint "
            f"(size {bag.size}, root {bag.root_hash.hex()})"
        )
    try:
        requests = _report_part(doc, "requests", dict)
        stated, recomputed = _stated_checks(doc["checks"]), _request_checks(requests)
    except (KeyError, TypeError, AttributeError) as exc:
        raise VerificationError(f"data/annual-report.json: table 三 malformed ({exc!r})") from None
    for group in ("balance", "results_total", "column_total"):
        if stated[group] != recomputed[group]:
            raise VerificationError(
                f"data/annual-report.json: checks.{group} states {stated[group]}, "
                f"its table gives {recomputed[group]}"
            )
    if stated["holds"] is not recomputed["holds"]:
        raise VerificationError(f"data/annual-report.json: checks.holds is {stated['holds']!r}")
    table = _report_part(doc, "ledger_published", dict)
    rows = table.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise VerificationError("data/annual-report.json: ledger_published.rows malformed")
    published: dict[str, int] = {}
    for row in rows:
        kind = row.get("key")
        if type(kind) is not str or kind in published or _system_kind(kind):
            raise VerificationError(f"data/annual-report.json: ledger_published row {kind!r}")
        published[kind] = _count(row.get("count"), f"ledger_published count of {kind}")
    if _count(table.get("total"), "ledger_published total") != sum(published.values()):
        raise VerificationError("data/annual-report.json: ledger_published total is not its sum")
    approved = collections.Counter(
        bag.kind_at(target) for _, target, yes in bag.reviews if yes and 0 <= target < bag.size
    )
    for kind in sorted({*published, *(k for k in bag.carried if not _system_kind(k))}):
        said = published.get(kind, 0)
        shown = bag.carried[kind] - bag.internal[kind]
        if bag.variant == "public":
            low = high = shown
        else:
            low, high = approved[kind], shown
        if not low <= said <= high:
            want = f"{low}" if low == high else f"between {low} and {high}"
            raise VerificationError(
                f"data/annual-report.json: {said} {kind} records published, the leaves give {want}"
            )
    licensing = [
        row
        for section in _report_part(doc, "proactive", dict).get("sections", [])
        for row in section.get("rows", [])
        if row.get("key") == "licensing"
    ]
    if [r.get("values", {}).get("decisions") for r in licensing] != [
        published.get("project.approval", 0)
    ]:
        raise VerificationError(
            "data/annual-report.json: licensing decisions are not the project.approval "
            "records published"
        )
    groups = _report_part(doc, "appeals", dict).get("groups")
    shape = [(kind, sorted([*APPEAL_RESULTS, "total"])) for kind in APPEAL_KINDS]
    if not isinstance(groups, list) or shape != [
        (g.get("key"), sorted(g.get("values") or ())) if isinstance(g, dict) else None
        for g in groups
    ]:
        raise VerificationError(
            "data/annual-report.json: the appeals groups are not the template's "
            f"({', '.join(APPEAL_KINDS)}, each by {', '.join(APPEAL_RESULTS)} and total)"
        )
    for group in groups:
        values = group["values"]
        parts = [_count(values[r], f"appeals {group['key']} {r}") for r in APPEAL_RESULTS]
        if _count(values["total"], f"appeals {group['key']} total") != sum(parts):
            raise VerificationError(
                f"data/annual-report.json: appeals {group['key']}: total is not its sum"
            )
    return (
        f"names the final checkpoint; table 三 cross-checks as stated; "
        f"{sum(published.values())} records published agree with the leaves"
    )


def _check_ocds(bag: _Bag) -> str:
    """The OCDS package's envelope is the bundle's, and its releases are those of the
    leaves carried in full (``_Releases``), in order, each with its process's ocid
    (one prefix for all), tag and date. What a release says of its process (parties,
    amounts, awards) is not rebuilt here."""
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    if bag.summary_error is not None:
        raise _Skip("the leaves could not be summarised")
    rel = "data/procurement/ocds-release-package.json"
    path = bag.data("procurement/ocds-release-package.json")
    expected = bag.releases.expected
    if not path.is_file():
        if expected:
            raise VerificationError(f"{rel} is missing")
        return "no procurement: no package (a bundle built before 2026-11-27)"
    doc = _read_json(path, rel)
    envelope = {
        "uri": f"urn:gongkai:{bag.org}:{bag.year}:ocds:{bag.variant}",
        "publisher": {"name": bag.info.get("Source-Organization")},
        "publishedDate": bag.releases.latest or f"{bag.year}-12-31T00:00:00Z",
    }
    for key, want in envelope.items():
        if not isinstance(doc, dict) or doc.get(key) != want:
            got = doc.get(key) if isinstance(doc, dict) else None
            raise VerificationError(f"{rel}: {key} is {got!r}, expected {want!r}")
    releases = doc.get("releases")
    if not isinstance(releases, list) or not all(isinstance(r, dict) for r in releases):
        raise VerificationError(f"{rel}: 'releases' is not a list of objects")
    prefix = ""
    if releases and expected:
        ocid, tender_id = releases[0].get("ocid"), expected[0][1]
        if isinstance(ocid, str) and ocid.endswith(f"-{tender_id}"):
            prefix = ocid[: -len(tender_id) - 1]
    for n, (release, want) in enumerate(zip(releases, expected, strict=False)):
        release_id, tender_id, tag, date = want
        got = (release.get("id"), release.get("ocid"), release.get("tag"), release.get("date"))
        if not prefix or got != (release_id, f"{prefix}-{tender_id}", [tag], date):
            raise VerificationError(
                f"{rel}: release {n} is {got}, the leaves give id {release_id!r}, "
                f"ocid <prefix>-{tender_id}, tag [{tag!r}], date {date!r}"
            )
    if len(releases) != len(expected):
        raise VerificationError(
            f"{rel}: {len(releases)} releases, the leaves carried give {len(expected)}"
        )
    return (
        f"{len(releases)} releases, one for each procurement leaf carried and each "
        "reversal of a bid, award or contract, in order, with ocid, tag and date"
    )


#: The opinion events whose leaf commits to the citizen's words and contact.
_COMMITTED = ("opinion.submitted", "opinion.supplied")


def _check_opinions(bag: _Bag, path: Path) -> None:
    """Each line is the opinion leaf it names, in index order, one a leaf present in
    ``entries.ndjson``; in the full variant a submission's or supplement's
    ``personal_data`` (unless erased) is what its leaf's ``commitment`` hashes:
    SHA-256(salt || canonical JSON of the data)."""
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    expected = bag.opinions
    number = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            where = f"data/opinions.ndjson line {number}"
            try:
                line = json.loads(raw)
            except ValueError:
                line = None
            if not isinstance(line, dict):
                raise VerificationError(f"{where} is not a JSON object")
            if number > len(expected):
                raise VerificationError(
                    f"{where}: entries.ndjson holds only {len(expected)} opinion events"
                )
            index, leaf = expected[number - 1]
            personal = line.pop("personal_data", None)
            want = {"index": index, "kind": leaf["kind"], "occurred_on": leaf["occurred_on"],
                    "body": leaf["body"]}  # fmt: skip
            if line != want:
                raise VerificationError(f"{where} is not the opinion event at index {index}")
            if personal is None:
                if bag.variant == "full" and leaf["kind"] in _COMMITTED:
                    raise VerificationError(f"{where}: the full bundle lacks its personal_data")
                continue
            if bag.variant != "full" or leaf["kind"] not in _COMMITTED:
                raise VerificationError(f"{where}: personal_data has no place here")
            if personal == {"erased": True}:
                continue
            try:
                salt = bytes.fromhex(personal["salt"])
                digest = hashlib.sha256(salt + canonical(personal["data"])).hexdigest()
            except (KeyError, TypeError, ValueError) as exc:
                raise VerificationError(f"{where}: personal_data is malformed ({exc})") from None
            if digest != leaf["body"].get("commitment"):
                raise VerificationError(
                    f"{where}: personal_data does not hash to the leaf's commitment"
                )
    if number != len(expected):
        raise VerificationError(
            f"data/opinions.ndjson has {number} lines for {len(expected)} opinion events"
        )


def _first_difference(name: str, got: bytes, want: bytes) -> str:
    try:
        got_rows = list(csv.reader(io.StringIO(got.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return f"data/summaries/{name} is not UTF-8 CSV"
    want_rows = list(csv.reader(io.StringIO(want.decode("utf-8"), newline="")))
    header = want_rows[0] if want_rows else []
    for number, (g, w) in enumerate(zip(got_rows, want_rows, strict=False), start=1):
        if g != w:
            for col, (gc, wc) in enumerate(zip(g, w, strict=False)):
                if gc != wc:
                    column = header[col] if col < len(header) else f"#{col + 1}"
                    return (
                        f"data/summaries/{name} row {number} column {column}: file has {gc!r}, "
                        f"the leaves give {wc!r}"
                    )
            return f"data/summaries/{name} row {number}: file has {g}, the leaves give {w}"
    if len(got_rows) != len(want_rows):
        return f"data/summaries/{name} has {len(got_rows)} rows, the leaves give {len(want_rows)}"
    return (
        f"data/summaries/{name} differs from the recomputation in formatting (quoting, line ends)"
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s object hook for a document compared as parsed: a key given
    twice would hide its first value."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _read_json(path: Path, what: str) -> Any:
    """A JSON document to be compared as parsed (no key given twice)."""
    try:
        return json.loads(path.read_bytes(), object_pairs_hook=_no_duplicate_keys)
    except FileNotFoundError:
        raise VerificationError(f"{what} is missing") from None
    except ValueError as exc:
        raise VerificationError(f"{what} is not JSON: {exc}") from None


def _check_summaries(bag: _Bag) -> str:
    if not bag.entries_ok:
        raise _Skip("data/entries.ndjson did not verify")
    if bag.summary_error is not None:
        raise VerificationError(bag.summary_error)
    folder = bag.data("summaries")
    if not folder.is_dir():
        raise VerificationError("data/summaries/ is missing")
    expected = bag.summaries.csvs()
    present = sorted(p.name for p in folder.iterdir() if p.name != "datapackage.json")
    for name in present:
        if name not in expected:
            raise VerificationError(
                f"data/summaries/{name} is not a summary this verifier can recompute"
            )
    for name, want in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            raise VerificationError(f"data/summaries/{name} is missing")
        got = path.read_bytes()
        if got != want:
            raise VerificationError(_first_difference(name, got, want))
    package = _read_json(folder / "datapackage.json", "data/summaries/datapackage.json")
    if bag.variant and bag.org and bag.year:
        if package != datapackage(bag.variant, bag.org, bag.year):
            raise VerificationError(
                "data/summaries/datapackage.json is not the expected descriptor"
            )
    return f"{len(expected)} CSVs recomputed from the leaves, byte for byte; datapackage.json ok"


def _run(results: list[CheckResult], name: str, fn: Any, *args: Any) -> bool:
    try:
        out = fn(*args)
    except VerificationError as exc:
        results.append(CheckResult("FAIL", name, str(exc)))
        return False
    except _Skip as exc:
        results.append(CheckResult("skip", name, f"not checked: {exc}"))
        return False
    except Exception as exc:  # a malformed bundle must fail, not crash the verifier
        results.append(CheckResult("FAIL", name, f"cannot be checked: {exc!r}"))
        return False
    if isinstance(out, list):
        results.extend(out)
    else:
        results.append(CheckResult("ok", name, str(out)))
    return True


#: The bag's top holds these tag files and data/, nothing else.
_TAG_FILES = ("bagit.txt", "bag-info.txt", "manifest-sha256.txt", "tagmanifest-sha256.txt")


def _check_layout(root: Path) -> str:
    """Only directories and regular files anywhere (a FIFO would hang a reader, a
    device or socket has no bytes to check), and at the top only the tag files and
    data/."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            mode = os.lstat(full).st_mode
            rel = full.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                raise VerificationError(f"{rel} is a symbolic link")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise VerificationError(f"{rel} is not a regular file or a directory")
    if not (root / "bagit.txt").is_file():
        raise VerificationError("no bagit.txt: this is not a BagIt bag (nor a Gongkai bundle)")
    for entry in sorted(root.iterdir()):
        if entry.name not in (*_TAG_FILES, "data"):
            raise VerificationError(
                f"{entry.name} is not part of a Gongkai bag (its top holds "
                f"{', '.join(_TAG_FILES)} and data/ only)"
            )
    return "directories and regular files only; the tag files and data/ at the top"


def check_bag(bag_dir: Path, pinned_vkey: str | None = None) -> list[CheckResult]:
    """Run every check on an unpacked bag directory; one or more results per check."""
    bag = _Bag(Path(bag_dir))
    results: list[CheckResult] = []
    if not _run(results, "layout", _check_layout, bag.root):
        return results  # nothing is read from a bag whose files may not be files
    _run(results, "bag", _check_bag, bag)
    # Hashing every payload file takes as long as reading it: do it in a thread while
    # the entries are checked (hashlib lets other threads run), report it in its place.
    manifest: list[CheckResult] = []
    hashing = threading.Thread(target=_run, args=(manifest, "manifest", _check_manifest, bag))
    hashing.start()
    at = len(results)
    _run(results, "tagmanifest", _check_tagmanifest, bag)
    _run(results, "vkey", _check_vkey, bag, pinned_vkey)
    _run(results, "checkpoint", _check_checkpoint, bag)
    consistency_loaded: list[CheckResult] = []
    _run(consistency_loaded, "consistency", _load_consistency, bag)
    consistency_failed = [r for r in consistency_loaded if r.status == "FAIL"]
    _run(results, "entries", _check_entries, bag)
    _run(results, "root", _check_root, bag)
    _run(results, "year.closed", _check_closed, bag)
    _run(results, "publication", _check_publication, bag)
    if consistency_failed:
        results.extend(consistency_failed)
    else:
        _run(results, "consistency", _check_consistency, bag)
    _run(results, "disclosures", _check_disclosures, bag)
    _run(results, "documents", _check_documents, bag)
    _run(results, "annual-report", _check_annual_report, bag)
    _run(results, "ocds", _check_ocds, bag)
    _run(results, "summaries", _check_summaries, bag)
    hashing.join()
    results[at:at] = manifest
    return results


#: What opening a damaged archive raises: a truncated .tar.gz (EOFError), a zip
#: member that is encrypted (RuntimeError), compressed by an unknown method
#: (NotImplementedError) or whose deflate data is broken (zlib.error).
_UNOPENABLE = (
    OSError, ValueError, zipfile.BadZipFile, tarfile.TarError, EOFError, RuntimeError,
    NotImplementedError, zlib.error,
)  # fmt: skip


class _Crashed(Exception):
    """An error of the checks themselves (not of the archive): a bug, kept apart from
    the archive's errors so it is not reported as an archive that cannot be opened."""


def _checked(path: Path, pinned_vkey: str | None) -> list[CheckResult] | Exception:
    """Every check's results, or the error that kept the archive from being opened.
    An error raised by the checks' own code propagates as itself (a bug)."""
    try:
        with open_bundle(path) as bag_dir:
            try:
                return check_bag(bag_dir, pinned_vkey)
            except Exception as exc:
                raise _Crashed() from exc
    except _Crashed as crashed:
        raise crashed.__cause__ from None  # type: ignore[misc]
    except _UNOPENABLE as exc:
        return exc


def verify_bag(path: Path, pinned_vkey: str | None = None) -> list[str]:
    """Verify a bag directory, .zip or .tar.gz; return failure messages (empty = verified)."""
    results = _checked(Path(path), pinned_vkey)
    if isinstance(results, Exception):
        return [f"bundle: cannot open {path}: {results!r}"]
    return [f"{r.check}: {r.message}" for r in results if r.status == "FAIL"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verify.py",
        description="Verify a Gongkai year-end archive bundle offline (see the module docstring).",
    )
    parser.add_argument("bundle", type=Path, help="bag directory, .zip or .tar.gz")
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument("--vkey", type=Path, help="file holding the verifier key to pin")
    pin.add_argument("--vkey-string", help="the verifier key to pin, as text")
    parser.add_argument("--quiet", action="store_true", help="print failures only")
    parser.add_argument(
        "--stdlib-json",
        action="store_true",
        help="parse with the standard library's json even when orjson is installed",
    )
    args = parser.parse_args(argv)
    if args.stdlib_json:
        use_stdlib_json()
    pinned: str | None = args.vkey_string
    if args.vkey is not None:
        try:
            pinned = args.vkey.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"FAIL vkey: cannot read {args.vkey}: {exc}", file=sys.stderr)
            return 2
    if pinned is not None:  # a key given wrong is a usage error, not a bundle that fails
        try:
            VKey.parse(pinned, str(args.vkey or "--vkey-string"))
        except VerificationError as exc:
            print(f"FAIL vkey: {exc}", file=sys.stderr)
            return 2
    results = _checked(args.bundle, pinned)
    if isinstance(results, Exception):
        print(f"FAIL bundle: cannot open {args.bundle}: {results!r}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.status == "FAIL"]
    for r in results:
        if not args.quiet or r.status == "FAIL":
            print(r)
    if not args.quiet:
        if failed:
            print(f"NOT VERIFIED: {len(failed)} check(s) failed")
        else:
            pinned_note = "pinned key" if pinned is not None else "key from the bundle"
            print(f"VERIFIED ({pinned_note})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
