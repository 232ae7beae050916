"""Response shapes of the API. Every field describes itself; the OpenAPI is built from these."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Hex = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", description="SHA-256 as lowercase hex")]


class ReceiptOut(msgspec.Struct):
    """Acceptance of one entry: returned only after it was durably committed."""

    log: Annotated[str, Meta(description="The log it went into: <org>/<year>")]
    index: Annotated[int, Meta(description="Its index in that log, from 0, without gaps")]
    leaf_hash: Annotated[str, Meta(description="SHA-256(0x00 || leaf bytes), lowercase hex")]
    recorded_at: Annotated[str, Meta(description="When the ledger recorded it, UTC")]


class BatchReceiptsOut(msgspec.Struct):
    receipts: Annotated[list[ReceiptOut], Meta(description="One receipt per entry, in order")]


class LeavesOut(msgspec.Struct):
    """A page of leaf hashes, so anyone can recompute the tree's root."""

    start: Annotated[int, Meta(description="Index of the first leaf hash")]
    end: Annotated[int, Meta(description="One past the index of the last leaf hash")]
    leaf_hashes: Annotated[list[str], Meta(description="Leaf hashes, lowercase hex, in order")]


class InclusionProofOut(msgspec.Struct):
    """RFC 9162 inclusion proof of one leaf in the tree of ``tree_size`` leaves."""

    index: int
    tree_size: int
    leaf_hash: Annotated[str, Meta(description="The leaf's hash, lowercase hex")]
    path: Annotated[list[str], Meta(description="Audit path, lowercase hex, leaf to root")]


class ConsistencyProofOut(msgspec.Struct):
    """RFC 9162 consistency proof between two sizes of the same log."""

    first: int
    second: int
    path: Annotated[list[str], Meta(description="Consistency path, lowercase hex")]


class OrgOut(msgspec.Struct):
    code: Annotated[str, Meta(description="The body's code, used in every URL")]
    name: Annotated[str, Meta(description="The body's name")]


class LogOut(msgspec.Struct):
    log: Annotated[str, Meta(description="<org>/<year>")]
    year: int
    size: Annotated[int, Meta(description="Number of leaves")]
    root: Annotated[str, Meta(description="Current root hash, lowercase hex")]
    closed: Annotated[bool, Meta(description="Whether the year has been closed")]


class OrgDetailOut(msgspec.Struct):
    code: str
    name: str
    logs: Annotated[list[LogOut], Meta(description="The body's logs, one per fiscal year")]


class HealthOut(msgspec.Struct):
    status: str
