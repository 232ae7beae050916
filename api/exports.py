"""Streaming exports of entries: CSV and NDJSON, every matching row, constant memory."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
from litestar.response import Stream

from ledger.queries import EntryView


class ExportStream(Stream):
    """A stream whose own media type wins over the route's (JSON) one."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


CSV_COLUMNS = [
    "log",
    "index",
    "kind",
    "status",
    "reason",
    "subject",
    "occurred_on",
    "recorded_at",
    "visibility",
    "actor",
    "leaf_hash",
    "reversed_by",
    "body",
]


def _record(v: EntryView) -> dict[str, object]:
    out: dict[str, object] = {
        "log": v.log,
        "index": v.index,
        "kind": v.kind,
        "leaf_hash": v.leaf_hash,
        "status": v.status,
    }
    if v.reason is not None:
        out["reason"] = v.reason
    if v.full is not None:
        out.update(v.full)
    return out


async def ndjson_lines(views: AsyncIterator[EntryView]) -> AsyncIterator[bytes]:
    async for v in views:
        yield orjson.dumps(_record(v)) + b"\n"


async def csv_lines(views: AsyncIterator[EntryView]) -> AsyncIterator[bytes]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    yield buf.getvalue().encode()
    async for v in views:
        buf.seek(0)
        buf.truncate()
        row = _record(v)
        if "body" in row:
            row["body"] = orjson.dumps(row["body"]).decode()
        writer.writerow(row)
        yield buf.getvalue().encode()
