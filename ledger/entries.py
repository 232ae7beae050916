"""Entry requests: decoding and validating what a client posts, once, at the edge.

A request becomes a ``NewEntry``: a typed, trusted value the sequencer can
append without looking at it again. Validation errors name the failing field
as a JSONPath (``$.entries[3].body.amount``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, Union

import msgspec
import msgspec.inspect

from ledger.canonical import canonical_bytes
from ledger.errors import UNDECODABLE, FieldError, InvalidInput, field_path, undecodable
from ledger.kinds import KINDS, POSTABLE_KINDS, SYSTEM_KINDS, Body, body_decoder, body_to_builtins

MAX_BATCH = 1000
#: Fiscal years a log may have.
MIN_YEAR, MAX_YEAR = 1900, 2999

Visibility = Literal["public", "internal"]

Subject = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f]*$",
        description="What the entry is about, e.g. a fund, project or tender code",
        examples=["fund/PWF-2026"],
    ),
]


class EntryRequest(msgspec.Struct, forbid_unknown_fields=True):
    """One entry as a client posts it."""

    kind: Annotated[str, msgspec.Meta(description="Entry kind, e.g. fund.receipt")]
    subject: Subject
    occurred_on: Annotated[
        dt.date, msgspec.Meta(description="Date the fact happened; its year picks the log")
    ]
    body: Annotated[msgspec.Raw, msgspec.Meta(description="The kind's body")]
    visibility: Visibility = "public"


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    entries: list[msgspec.Raw]


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A validated entry, ready to be sequenced into its org's log for its year."""

    org: str
    kind: str
    subject: str
    occurred_on: dt.date
    visibility: str
    body: Body
    actor: str
    idempotency_key: str | None = None

    @property
    def year(self) -> int:
        return self.occurred_on.year

    def body_json(self) -> dict[str, Any]:
        return body_to_builtins(self.body)

    def request_sha256(self) -> bytes:
        """Fingerprint of what was asked, to tell a retry from a different request.

        The body's top-level fields at their defaults are left out, as they were
        before some kinds began to write them into the leaf (2026-11-27), so a
        retry across that change still finds its key's request.
        """
        doc = {
            "kind": self.kind,
            "subject": self.subject,
            "occurred_on": self.occurred_on.isoformat(),
            "visibility": self.visibility,
            "body": _without_defaults(self.body, self.body_json()),
        }
        return hashlib.sha256(canonical_bytes(doc)).digest()


def _without_defaults(body: Body, doc: dict[str, Any]) -> dict[str, Any]:
    for f in msgspec.structs.fields(type(body)):
        if f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT:
            continue
        default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
        if getattr(body, f.name) == default:
            doc.pop(f.encode_name, None)
    return doc


_envelope = msgspec.json.Decoder(EntryRequest)
_batch = msgspec.json.Decoder(BatchRequest)


def _typed_envelope(kind: str) -> type[msgspec.Struct]:
    """``EntryRequest`` with the body typed for ``kind``, tagged by ``kind``."""
    fields = [
        (f.name, KINDS[kind] if f.name == "body" else f.type)
        if f.default is msgspec.NODEFAULT
        else (f.name, f.type, f.default)
        for f in msgspec.structs.fields(EntryRequest)
        if f.name != "kind"
    ]
    return msgspec.defstruct(
        f"EntryRequest_{kind.replace('.', '_')}",
        fields,
        tag_field="kind",
        tag=kind,
        forbid_unknown_fields=True,
    )


#: A whole batch in one pass: a tagged union of every postable kind. It accepts
#: exactly what the per-entry path does; when it refuses, the batch is decoded
#: again entry by entry, which names every failing field.
_ANY_ENTRY: Any = Union[tuple(_typed_envelope(k) for k in POSTABLE_KINDS)]  # noqa: UP007
_typed_batch: msgspec.json.Decoder[dict[str, list[Any]]] = msgspec.json.Decoder(
    dict[Literal["entries"], list[_ANY_ENTRY]]
)
#: A body no decoder can read (a ValidationError, a DecodeError too, is caught first).
_UNREADABLE = (msgspec.DecodeError, *UNDECODABLE)

_PATH_RE = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)


def _date_fields(t: msgspec.inspect.Type, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The attribute paths of the dates in a body type (in structs within structs)."""
    if isinstance(t, msgspec.inspect.Metadata):
        return _date_fields(t.type, at)
    if isinstance(t, msgspec.inspect.DateType):
        return [at]
    if isinstance(t, msgspec.inspect.UnionType):
        return [p for member in t.types for p in _date_fields(member, at)]
    if isinstance(t, msgspec.inspect.StructType):
        return [p for f in t.fields for p in _date_fields(f.type, (*at, f.name))]
    return []


#: Per kind, where its body holds dates: each must fall in MIN_YEAR..MAX_YEAR, as
#: occurred_on must (a date the calendar has, but in the year 1 or 9999, is a typo).
_DATES = {
    kind: paths
    for kind, t in KINDS.items()
    if (paths := _date_fields(msgspec.inspect.type_info(t)))
}


def _date_out_of_range(kind: str, body: Body) -> tuple[str, ...] | None:
    for path in _DATES.get(kind, ()):
        value: Any = body
        for name in path:
            value = getattr(value, name)
            if value is None:
                break
        if value is not None and not MIN_YEAR <= value.year <= MAX_YEAR:
            return path
    return None


def validation_error(exc: msgspec.ValidationError, prefix: str) -> FieldError:
    """The failing field of a msgspec ValidationError, its path under ``prefix``."""
    m = _PATH_RE.match(str(exc))
    assert m is not None
    path = m.group("path") or "$"
    return FieldError(field_path(prefix + path[1:], m.group("msg")), m.group("msg"))


def _decode_one(raw: bytes | msgspec.Raw, prefix: str, org: str, actor: str) -> NewEntry:
    try:
        req = _envelope.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidInput("The entry does not validate", [validation_error(exc, prefix)]) from None
    except _UNREADABLE as exc:
        raise undecodable(exc) from None
    if not MIN_YEAR <= req.occurred_on.year <= MAX_YEAR:
        raise InvalidInput(
            f"occurred_on must be in the years {MIN_YEAR} to {MAX_YEAR}",
            [FieldError(prefix + ".occurred_on", f"year outside {MIN_YEAR}..{MAX_YEAR}")],
        )
    if req.kind not in KINDS or req.kind in SYSTEM_KINDS:
        what = "is written by the ledger itself" if req.kind in SYSTEM_KINDS else "is unknown"
        raise InvalidInput(
            f"Entry kind {req.kind!r} {what}; postable kinds: {', '.join(POSTABLE_KINDS)}",
            [FieldError(prefix + ".kind", f"must be one of: {', '.join(POSTABLE_KINDS)}")],
            known_kinds=list(POSTABLE_KINDS),
        )
    try:
        body = body_decoder(req.kind).decode(req.body)
    except msgspec.ValidationError as exc:
        raise InvalidInput(
            f"The body of a {req.kind} entry does not validate",
            [validation_error(exc, prefix + ".body")],
        ) from None
    except UNDECODABLE as exc:  # a Raw body is not read (nor its UTF-8 checked) before
        raise undecodable(exc) from None
    bad = _date_out_of_range(req.kind, body)
    if bad is not None:
        path = ".".join((prefix + ".body", *bad))
        raise InvalidInput(
            f"{path[2:]} must be in the years {MIN_YEAR} to {MAX_YEAR}",
            [FieldError(path, f"year outside {MIN_YEAR}..{MAX_YEAR}")],
        )
    return NewEntry(
        org=org,
        kind=req.kind,
        subject=req.subject,
        occurred_on=req.occurred_on,
        visibility=req.visibility,
        body=body,
        actor=actor,
    )


def decode_entry(raw: bytes, *, org: str, actor: str, idempotency_key: str | None) -> NewEntry:
    """Decode one posted entry; raise MalformedInput (400) or InvalidInput (422)."""
    entry = _decode_one(raw, "$", org, actor)
    if idempotency_key is not None:
        entry = NewEntry(
            org=entry.org,
            kind=entry.kind,
            subject=entry.subject,
            occurred_on=entry.occurred_on,
            visibility=entry.visibility,
            body=entry.body,
            actor=entry.actor,
            idempotency_key=idempotency_key,
        )
    return entry


def _decode_typed(raw: bytes, org: str, actor: str) -> list[NewEntry] | None:
    """The fast path of ``decode_batch``: None when anything needs the careful path."""
    try:
        doc = _typed_batch.decode(raw)
    except _UNREADABLE:  # ValidationError included
        return None
    reqs = doc.get("entries")
    if not reqs or len(reqs) > MAX_BATCH:
        return None
    out = []
    for req in reqs:
        on = req.occurred_on
        kind = req.__struct_config__.tag
        if not MIN_YEAR <= on.year <= MAX_YEAR or _date_out_of_range(kind, req.body):
            return None
        out.append(
            NewEntry(
                org=org,
                kind=kind,
                subject=req.subject,
                occurred_on=on,
                visibility=req.visibility,
                body=req.body,
                actor=actor,
            )
        )
    return out


def batch_key(key: str, position: int) -> str:
    """The Idempotency-Key an entry of a keyed batch carries: the batch's key, ``#``
    and the entry's position (``"march-import#0"``). Read from the right, it names
    one batch and one position, whatever the batch's key holds."""
    return f"{key}#{position}"


def batch_request_sha256(fingerprints: Sequence[bytes]) -> bytes:
    """Fingerprint of a whole batch, to tell its retry from another batch under the
    same key: its entries' fingerprints (``NewEntry.request_sha256``), in order."""
    return hashlib.sha256(b"batch\n" + b"".join(fingerprints)).digest()


def decode_batch(
    raw: bytes, *, org: str, actor: str, idempotency_key: str | None = None
) -> list[NewEntry]:
    """Decode a batch of 1..1000 entries; every failing entry is named in the error.

    With the batch's ``idempotency_key``, each entry carries ``batch_key`` of it."""
    entries = _decode_batch(raw, org, actor)
    if idempotency_key is None:
        return entries
    return [
        replace(e, idempotency_key=batch_key(idempotency_key, i)) for i, e in enumerate(entries)
    ]


def _decode_batch(raw: bytes, org: str, actor: str) -> list[NewEntry]:
    fast = _decode_typed(raw, org, actor)
    if fast is not None:
        return fast
    try:
        batch = _batch.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidInput("The batch does not validate", [validation_error(exc, "$")]) from None
    except _UNREADABLE as exc:
        raise undecodable(exc) from None
    if not batch.entries:
        raise InvalidInput("A batch needs at least one entry", [FieldError("$.entries", "empty")])
    if len(batch.entries) > MAX_BATCH:
        raise InvalidInput(
            f"A batch holds at most {MAX_BATCH} entries; this one has {len(batch.entries)}",
            [FieldError("$.entries", f"more than {MAX_BATCH} entries")],
        )
    out: list[NewEntry] = []
    errors: list[FieldError] = []
    for i, raw_entry in enumerate(batch.entries):
        try:
            out.append(_decode_one(raw_entry, f"$.entries[{i}]", org, actor))
        except InvalidInput as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidInput(f"{len(errors)} entries of the batch do not validate", errors)
    return out
