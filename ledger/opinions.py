"""Opinions, complaints, reports and disclosure requests, and the statutory clock.

A citizen submits without a token and gets an unguessable tracking code; only its
SHA-256 is stored. What the citizen wrote and their contact details go to the
erasable store (``opinion_private``); the ``opinion.submitted`` leaf holds a salted
SHA-256 commitment to them, so erasing them (PIPL) leaves every leaf, proof and
``gongkai verify`` intact.

The clock: a reply is due within 20 working days of receipt (China's holidays and
adjusted working days; see ``ledger.workdays``); one extension of at most 20
working days with a reason; a request for supplement (补正) stops the clock until
the citizen supplies it. Every staff event is an entry; illegal transitions are
409 naming the allowed ones.

Petitions, complaints and reports filed as disclosure requests are handled as
such (Regulations Art. 39): accepting one ``handled_as`` another category records
the request as not processed (信访举报投诉类申请) and the case goes on as that
category.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import msgspec

from ledger import annual_report as ar
from ledger import kinds as k
from ledger.books import load_books
from ledger.canonical import canonical_bytes
from ledger.entries import NewEntry, validation_error
from ledger.errors import Conflict, ErrorList, FieldError, InvalidInput, NotFound
from ledger.review import by_the_close
from ledger.sequencer import Receipt, append_entries
from ledger.workdays import (
    EXTENSION_MAX_WORKING_DAYS,
    REPLY_WORKING_DAYS,
    WorkCalendar,
    YearSchedule,
    parse_schedule,
)

MAX_TEXT = 5000
DUPLICATE_WINDOW = dt.timedelta(minutes=10)

#: Which event may follow which status.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "submitted": ("accept", "supplement_requested", "referred", "responded"),
    "accepted": ("supplement_requested", "extended", "responded", "referred"),
    "awaiting_supplement": ("responded",),
    "extended": ("supplement_requested", "responded", "referred"),
    "responded": ("closed", "appeal"),
    "referred": ("closed",),
    "closed": ("appeal",),
}
OPEN_STATUSES = ("submitted", "accepted", "awaiting_supplement", "extended")


def new_tracking_code() -> str:
    """120 random bits, base32 in groups: unguessable, easy to read out on the phone."""
    raw = base64.b32encode(secrets.token_bytes(15)).decode().rstrip("=")
    return "-".join(raw[i : i + 6] for i in range(0, len(raw), 6))


def tracking_sha256(code: str | bytes) -> bytes:
    """The case's key: the SHA-256 of its tracking code; bytes are that key already
    (staff name a case by the ``tracking_sha256`` their list shows)."""
    if isinstance(code, bytes):
        return code
    return hashlib.sha256(code.strip().upper().encode()).digest()


_CASE_HASH = re.compile(r"[0-9a-f]{64}")


def staff_case_ref(text: str) -> str | bytes:
    """What staff wrote in a case's URL: its tracking code, or the hex
    ``tracking_sha256`` the staff list shows (staff routes only: to the public
    the hash is not a key)."""
    return bytes.fromhex(text) if _CASE_HASH.fullmatch(text) else text


# --- the calendar --------------------------------------------------------------------


async def load_calendar(conn: Any) -> WorkCalendar:
    """The working-day calendar with every schedule an admin loaded."""
    rows = await conn.fetch("SELECT schedule FROM calendar_years ORDER BY year")
    schedules: dict[int, YearSchedule] = {}
    for r in rows:
        schedule = parse_schedule(json.loads(r["schedule"]))
        schedules[schedule.year] = schedule
    return WorkCalendar(schedules)


async def store_schedule(conn: Any, data: dict[str, Any]) -> YearSchedule:
    """Validate and store the State Council's schedule for a year (replacing an older one)."""
    try:
        schedule = parse_schedule(data)
    except ValueError as exc:
        raise InvalidInput(f"Not a valid holiday schedule: {exc}", []) from None
    await conn.execute(
        """INSERT INTO calendar_years (year, schedule, source) VALUES ($1, $2, $3)
           ON CONFLICT (year) DO UPDATE SET schedule = EXCLUDED.schedule,
               source = EXCLUDED.source, loaded_at = now()""",
        schedule.year,
        json.dumps(data, ensure_ascii=False),
        data.get("source"),
    )
    return schedule


# --- submitting ----------------------------------------------------------------------


class Contact(msgspec.Struct, forbid_unknown_fields=True):
    name: k.Name | None = None
    phone: str | None = msgspec.field(default=None)
    email: str | None = None


class OpinionIn(msgspec.Struct, forbid_unknown_fields=True):
    """What a citizen submits."""

    category: k.OpinionCategory
    text: str
    contact: Contact | None = None
    applicant_type: k.ApplicantType = "natural_person"
    reference: k.OpinionReference | None = None


@dataclass(frozen=True)
class Submitted:
    tracking_code: str
    received_on: dt.date
    due_on: dt.date | None
    due_estimated: bool
    due_note: str | None
    duplicate: bool


def _validate(data: OpinionIn) -> None:
    errors = ErrorList()
    if not data.text.strip():
        errors.add("$.text", "must not be empty")
    if len(data.text) > MAX_TEXT:
        errors.add("$.text", f"at most {MAX_TEXT} characters")
    if "\x00" in data.text:
        errors.add("$.text", "must not contain NUL")
    c = data.contact
    if c is not None:
        if c.phone is not None and not (
            6 <= len(c.phone) <= 20 and all(ch.isdigit() or ch in "+- " for ch in c.phone)
        ):
            errors.add("$.contact.phone", "digits, spaces, '+' and '-', 6 to 20 characters")
        if c.email is not None and (
            len(c.email) > 200
            or "@" not in c.email
            or any(ch.isspace() or ch == "\x00" for ch in c.email)
        ):
            errors.add("$.contact.email", "not an e-mail address")
    errors.raise_if_any("The submission does not validate")


def _commit(salt: bytes, private: dict[str, Any]) -> bytes:
    return hashlib.sha256(salt + canonical_bytes(private)).digest()


async def _append(conn: asyncpg.Connection, entry: NewEntry) -> Receipt:
    receipts = await append_entries(conn, [entry], effects=load_books)
    return receipts[0]


def _system_entry(org: str, kind: str, code_hash: bytes, on: dt.date, body: k.Body) -> NewEntry:
    return NewEntry(
        org=org,
        kind=kind,
        subject=f"opinion/{code_hash.hex()[:16]}",
        occurred_on=on,
        visibility="public",
        body=body,
        actor="system",
    )


async def submit(
    pool: asyncpg.Pool,
    org: str,
    data: OpinionIn,
    *,
    client: str,
    today: dt.date,
    calendar: WorkCalendar,
) -> Submitted:
    """File a submission; a duplicate from the same client within minutes gets the same case."""
    _validate(data)
    private = {"text": data.text, "contact": msgspec.to_builtins(data.contact)}
    fingerprint = hashlib.sha256(
        canonical_bytes({"org": org, "client": client, "category": data.category, **private})
    ).digest()
    async with pool.acquire() as conn, conn.transaction():
        # Serialise duplicates of the same text from the same client.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", fingerprint.hex()
        )
        earlier = await conn.fetchrow(
            """SELECT tracking_code FROM opinion_submissions
               WHERE org = $1 AND fingerprint = $2 AND created_at > now() - $3::interval""",
            org,
            fingerprint,
            DUPLICATE_WINDOW,
        )
        if earlier is not None:
            case = await get_case(conn, earlier["tracking_code"], calendar=calendar, today=today)
            return Submitted(earlier["tracking_code"], case.received_on, case.due_on,
                             case.due_estimated, case.due_note, True)  # fmt: skip
        if data.reference is not None:
            await _check_reference(conn, org, data.reference)
        code = new_tracking_code()
        code_hash = tracking_sha256(code)
        salt = os.urandom(16)
        deadline = calendar.deadline(today, REPLY_WORKING_DAYS)
        body = k.OpinionSubmitted(
            tracking_sha256=code_hash.hex(),
            category=data.category,
            applicant_type=data.applicant_type,
            received_on=today,
            due_on=deadline.due_on,
            due_estimated=deadline.estimated,
            commitment=_commit(salt, private).hex(),
            reference=data.reference,
        )
        receipt = await _append(
            conn, _system_entry(org, "opinion.submitted", code_hash, today, body)
        )
        year = int(receipt.log.rsplit("/", 1)[1])
        await conn.execute(
            """INSERT INTO opinions (org, tracking_sha256, category, handled_as, applicant_type,
                   status, received_on, reference, submitted_year, submitted_index)
               VALUES ($1, $2, $3, $3, $4, 'submitted', $5, $6, $7, $8)""",
            org,
            code_hash,
            data.category,
            data.applicant_type,
            today,
            json.dumps(msgspec.to_builtins(data.reference)) if data.reference else None,
            year,
            receipt.index,
        )
        await conn.execute(
            """INSERT INTO opinion_private (org, tracking_sha256, part, salt, payload)
               VALUES ($1, $2, 0, $3, $4)""",
            org,
            code_hash,
            salt,
            canonical_bytes(private),
        )
        await _event(conn, org, code_hash, year, receipt.index, "opinion.submitted", today)
        await conn.execute(
            """INSERT INTO opinion_submissions (fingerprint, org, tracking_code) VALUES ($1, $2, $3)
               ON CONFLICT (org, fingerprint) DO UPDATE SET tracking_code = EXCLUDED.tracking_code,
                   created_at = now()""",
            fingerprint,
            org,
            code,
        )
        await conn.execute(
            "DELETE FROM opinion_submissions WHERE org = $1 AND created_at < now() - $2::interval",
            org,
            DUPLICATE_WINDOW,
        )
    return Submitted(code, today, deadline.due_on, deadline.estimated, deadline.note, False)


async def expire_submissions(pool: asyncpg.Pool) -> int:
    """Delete every org's duplicate-submission codes older than the window.

    A submission deletes its own org's; this sweep (the server runs it every
    minute) deletes those of an org that has had no submission since, so that a
    tracking code does not stay stored in plain text beyond the window by much.
    """
    status = await pool.execute(
        "DELETE FROM opinion_submissions WHERE created_at < now() - $1::interval",
        DUPLICATE_WINDOW,
    )
    return int(status.split()[-1])


async def _check_reference(conn: Any, org: str, ref: k.OpinionReference) -> None:
    table, column = {
        "project": ("projects", "project_code"),
        "fund": ("funds", "fund_code"),
        "tender": ("tenders", "tender_id"),
    }[ref.type]
    found = await conn.fetchval(
        f"SELECT 1 FROM {table} WHERE org = $1 AND {column} = $2", org, ref.code
    )
    if not found:
        raise InvalidInput(
            f"No {ref.type} {ref.code!r} in {org}",
            [FieldError("$.reference.code", f"unknown {ref.type} {ref.code!r}")],
        )


async def _event(
    conn: Any, org: str, code_hash: bytes, year: int, index: int, kind: str, on: dt.date
) -> None:
    await conn.execute(
        """INSERT INTO opinion_events (org, tracking_sha256, year, idx, kind, on_date)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        org,
        code_hash,
        year,
        index,
        kind,
        on,
    )


# --- the case and its clock ----------------------------------------------------------


@dataclass(frozen=True)
class Case:
    org: str
    tracking_sha256: bytes
    category: str
    handled_as: str
    applicant_type: str
    status: str
    received_on: dt.date
    due_on: dt.date | None
    due_estimated: bool
    due_note: str | None
    overdue: bool
    extension_days: int
    outcome: str | None
    reason: str | None
    decided_on: dt.date | None
    response: str | None
    referred_to: str | None
    erased: bool
    events: list[tuple[str, dt.date, str]]
    reference: dict[str, Any] | None


def _pauses(raw: Any) -> list[tuple[dt.date, dt.date | None]]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    return [(dt.date.fromisoformat(a), dt.date.fromisoformat(b) if b else None) for a, b in items]


def _clock(row: Any, calendar: WorkCalendar, today: dt.date) -> tuple[
    dt.date | None, bool, str | None, bool
]:  # fmt: skip
    """(due_on, estimated, note, overdue) of a case."""
    n = REPLY_WORKING_DAYS + row["extension_days"]
    try:
        d = calendar.deadline_with_pauses(row["received_on"], n, _pauses(row["pauses"]))
    except ValueError:
        return None, False, "The clock is stopped until the requested supplement arrives", False
    if row["status"] in OPEN_STATUSES:
        overdue = today > d.due_on
    else:  # answered: was it late?
        overdue = row["decided_on"] is not None and row["decided_on"] > d.due_on
    return d.due_on, d.estimated, d.note, overdue


async def _case_row(conn: Any, code_hash: bytes, org: str | None = None) -> Any:
    row = await conn.fetchrow(
        "SELECT * FROM opinions WHERE tracking_sha256 = $1 AND ($2::text IS NULL OR org = $2)",
        code_hash,
        org,
    )
    if row is None:
        raise NotFound("No case with this tracking code")
    return row


def _case(
    row: Any, calendar: WorkCalendar, today: dt.date, events: list[tuple[str, dt.date, str]]
) -> Case:
    due, estimated, note, overdue = _clock(row, calendar, today)
    return Case(
        org=row["org"],
        tracking_sha256=bytes(row["tracking_sha256"]),
        category=row["category"],
        handled_as=row["handled_as"],
        applicant_type=row["applicant_type"],
        status=row["status"],
        received_on=row["received_on"],
        due_on=due,
        due_estimated=estimated,
        due_note=note,
        overdue=overdue,
        extension_days=row["extension_days"],
        outcome=row["outcome"],
        reason=row["reason"],
        decided_on=row["decided_on"],
        response=row["response"],
        referred_to=row["referred_to"],
        erased=row["erased_on"] is not None,
        events=events,
        reference=json.loads(row["reference"]) if row["reference"] else None,
    )


async def get_case(
    conn: Any, code: str | bytes, *, calendar: WorkCalendar, today: dt.date, org: str | None = None
) -> Case:
    code_hash = tracking_sha256(code)
    row = await _case_row(conn, code_hash, org)
    events = await conn.fetch(
        """SELECT kind, on_date, year, idx FROM opinion_events
           WHERE org = $1 AND tracking_sha256 = $2 ORDER BY year, idx""",
        row["org"],
        code_hash,
    )
    return _case(
        row,
        calendar,
        today,
        [(e["kind"], e["on_date"], f"{row['org']}/{e['year']}#{e['idx']}") for e in events],
    )


async def private_data(conn: Any, org: str, code_hash: bytes) -> list[dict[str, Any]] | None:
    """The citizen's words and contact (staff only); None once erased."""
    rows = await conn.fetch(
        """SELECT payload, erased_at FROM opinion_private
           WHERE org = $1 AND tracking_sha256 = $2 ORDER BY part""",
        org,
        code_hash,
    )
    if not rows or rows[0]["erased_at"] is not None:
        return None
    return [json.loads(r["payload"]) for r in rows]


# --- staff events --------------------------------------------------------------------


#: The SPEC names events by their verbs (accept, extend, respond, …); the events
#: whose names are their outcome take the verb too.
EVENT_ALIASES = {
    "extend": "extended",
    "respond": "responded",
    "refer": "referred",
    "close": "closed",
    "request_supplement": "supplement_requested",
}


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """A staff event on a case."""

    event: Literal[
        "accept", "supplement_requested", "extended", "responded", "referred", "closed", "appeal",
        "extend", "respond", "refer", "close", "request_supplement",
    ]  # fmt: skip
    handled_as: k.OpinionCategory | None = None
    what: str | None = None
    days: int | None = None
    reason: str | None = None
    outcome: str | None = None
    response: str | None = None
    to: str | None = None
    channel: str | None = None
    result: str | None = None


def _need(errors: ErrorList, value: Any, path: str, message: str) -> None:
    if value is None or (isinstance(value, str) and not value.strip()):
        errors.add(path, message)


async def record_event(
    pool: asyncpg.Pool,
    org: str,
    code: str | bytes,
    data: EventIn,
    *,
    actor: str,
    today: dt.date,
    calendar: WorkCalendar,
) -> Receipt:
    """Apply one staff event to a case: validate, append its entry, move the case."""
    if data.event in EVENT_ALIASES:
        data = msgspec.structs.replace(data, event=EVENT_ALIASES[data.event])
    code_hash = tracking_sha256(code)
    h = code_hash.hex()
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM opinions WHERE org = $1 AND tracking_sha256 = $2 FOR UPDATE",
            org,
            code_hash,
        )
        if row is None:
            raise NotFound("No case with this tracking code in this org")
        allowed = TRANSITIONS.get(row["status"], ())
        if data.event not in allowed:
            raise Conflict(
                f"The case is {row['status']}; allowed now: "
                + (", ".join(allowed) if allowed else "nothing (final)"),
                current_status=row["status"],
                allowed=list(allowed),
            )
        errors = ErrorList()
        updates: dict[str, Any] = {}
        body: k.Body
        kind = f"opinion.{data.event}"
        if data.event == "accept":
            kind = "opinion.accepted"
            handled_as = data.handled_as or row["category"]
            body = k.OpinionAccepted(tracking_sha256=h, handled_as=handled_as)
            updates["status"] = "accepted"
            updates["handled_as"] = handled_as
            if row["category"] == "disclosure_request" and handled_as != "disclosure_request":
                # Art. 39: handled as what it is; as a request it is not processed.
                updates.update(outcome="not_processed", reason="petition_complaint",
                               decided_on=today)  # fmt: skip
        elif data.event == "supplement_requested":
            _need(errors, data.what, "$.what", "say what the citizen must supply")
            errors.raise_if_any()
            assert data.what is not None
            body = k.OpinionSupplementRequested(tracking_sha256=h, what=data.what)
            pauses = [*_pauses(row["pauses"]), (today, None)]
            updates["pauses"] = pauses
            updates["status"] = "awaiting_supplement"
        elif data.event == "extended":
            if row["extension_days"]:
                raise Conflict("The deadline was already extended once")
            if data.days is None or not 1 <= data.days <= EXTENSION_MAX_WORKING_DAYS:
                errors.add("$.days", f"1 to {EXTENSION_MAX_WORKING_DAYS} working days")
            _need(errors, data.reason, "$.reason", "an extension needs its reason")
            errors.raise_if_any()
            assert data.days is not None and data.reason is not None
            due = calendar.deadline_with_pauses(
                row["received_on"], REPLY_WORKING_DAYS + data.days, _pauses(row["pauses"])
            )
            body = k.OpinionExtended(tracking_sha256=h, days=data.days, reason=data.reason,
                                     due_on=due.due_on)  # fmt: skip
            updates.update(extension_days=data.days, status="extended")
        elif data.event == "responded":
            _check_outcome(errors, row["handled_as"], data.outcome, data.reason)
            errors.raise_if_any("The response does not validate")
            assert data.outcome is not None
            body = k.OpinionResponded(tracking_sha256=h, outcome=data.outcome,
                                      reason=data.reason, response=data.response)  # fmt: skip
            updates.update(status="responded", response=data.response)
            if row["outcome"] is None:
                updates.update(outcome=data.outcome, reason=data.reason, decided_on=today)
            pauses = _pauses(row["pauses"])
            if pauses and pauses[-1][1] is None:
                pauses[-1] = (pauses[-1][0], today)
                updates["pauses"] = pauses
        elif data.event == "referred":
            _need(errors, data.to, "$.to", "name the body it is referred to")
            _need(errors, data.reason, "$.reason", "say why")
            errors.raise_if_any()
            assert data.to is not None and data.reason is not None
            body = k.OpinionReferred(tracking_sha256=h, to=data.to, reason=data.reason)
            updates.update(status="referred", referred_to=data.to)
        elif data.event == "closed":
            body = k.OpinionClosed(tracking_sha256=h)
            updates.update(status="closed", closed_on=today)
        elif data.event == "appeal":
            kind = "opinion.appealed"
            if data.channel not in ("reconsideration", "litigation_direct",
                                    "litigation_after_reconsideration"):  # fmt: skip
                errors.add("$.channel", "reconsideration, litigation_direct or "
                           "litigation_after_reconsideration")  # fmt: skip
            if data.result not in ("upheld", "corrected", "other", "pending"):
                errors.add("$.result", "upheld, corrected, other or pending")
            errors.raise_if_any()
            body = msgspec.convert(
                {"tracking_sha256": h, "channel": data.channel, "result": data.result},
                k.OpinionAppealed,
            )
        else:  # pragma: no cover - TRANSITIONS only name the events above
            raise InvalidInput(f"unknown event {data.event!r}", [FieldError("$.event", "unknown")])
        try:
            body = msgspec.convert(msgspec.to_builtins(body), type(body))
        except msgspec.ValidationError as exc:  # the body's fields are the event's own
            raise InvalidInput(
                "The event does not validate", [validation_error(exc, "$")]
            ) from None
        entry = _system_entry(org, kind, code_hash, today, body)
        entry = dataclasses.replace(entry, actor=actor)
        receipt = await _append(conn, entry)
        year = int(receipt.log.rsplit("/", 1)[1])
        await _event(conn, org, code_hash, year, receipt.index, kind, today)
        if data.event == "appeal":
            await conn.execute(
                """INSERT INTO opinion_appeals (org, tracking_sha256, channel, result, year)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (org, tracking_sha256, channel) DO UPDATE SET
                       result = EXCLUDED.result, year = EXCLUDED.year""",
                org,
                code_hash,
                data.channel,
                data.result,
                today.year,
            )
        if "pauses" in updates:
            updates["pauses"] = json.dumps(
                [[a.isoformat(), b.isoformat() if b else None] for a, b in updates["pauses"]]
            )
        if updates:
            sets = ", ".join(f"{col} = ${i + 3}" for i, col in enumerate(updates))
            await conn.execute(
                f"UPDATE opinions SET {sets} WHERE org = $1 AND tracking_sha256 = $2",
                org,
                code_hash,
                *updates.values(),
            )
    return receipt


def _check_outcome(errors: ErrorList, handled_as: str, outcome: str | None,
                   reason: str | None) -> None:  # fmt: skip
    if handled_as != "disclosure_request":
        # Opinions, complaints and reports get a reply, not a disclosure outcome.
        if outcome not in ("replied", "other"):
            errors.add("$.outcome", "for an opinion, complaint or report: replied or other")
        return
    if outcome is None:
        errors.add("$.outcome", "one of: " + ", ".join(ar.OUTCOMES))
        return
    try:
        ar.validate_outcome(outcome, reason)
    except ValueError as exc:
        errors.add("$.reason" if outcome in ar.OUTCOMES else "$.outcome", str(exc))


async def supply(pool: asyncpg.Pool, code: str, text: str, *, today: dt.date) -> None:
    """The citizen supplies what was asked: stored privately, committed to, clock resumes."""
    if not text.strip() or len(text) > MAX_TEXT or "\x00" in text:
        raise InvalidInput("The supplement does not validate",
                           [FieldError("$.text", f"1 to {MAX_TEXT} characters")])  # fmt: skip
    code_hash = tracking_sha256(code)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM opinions WHERE tracking_sha256 = $1 FOR UPDATE", code_hash
        )
        if row is None:
            raise NotFound("No case with this tracking code")
        if row["status"] != "awaiting_supplement":
            raise Conflict("Nothing was asked to be supplied", current_status=row["status"])
        org = row["org"]
        salt = os.urandom(16)
        private = {"supplement": text}
        part = await conn.fetchval(
            """SELECT coalesce(max(part), 0) + 1 FROM opinion_private
               WHERE org = $1 AND tracking_sha256 = $2""",
            org,
            code_hash,
        )
        await conn.execute(
            """INSERT INTO opinion_private (org, tracking_sha256, part, salt, payload)
               VALUES ($1, $2, $3, $4, $5)""",
            org,
            code_hash,
            part,
            salt,
            canonical_bytes(private),
        )
        body = k.OpinionSupplied(tracking_sha256=code_hash.hex(),
                                 commitment=_commit(salt, private).hex())  # fmt: skip
        receipt = await _append(
            conn, _system_entry(org, "opinion.supplied", code_hash, today, body)
        )
        await _event(conn, org, code_hash, int(receipt.log[-4:]), receipt.index,
                     "opinion.supplied", today)  # fmt: skip
        pauses = _pauses(row["pauses"])
        pauses[-1] = (pauses[-1][0], today)
        await conn.execute(
            """UPDATE opinions SET status = $3, pauses = $4
               WHERE org = $1 AND tracking_sha256 = $2""",
            org,
            code_hash,
            "extended"
            if row["extension_days"]
            else "accepted"
            if await conn.fetchval(
                """SELECT 1 FROM opinion_events WHERE org = $1 AND tracking_sha256 = $2
                   AND kind = 'opinion.accepted'""",
                org,
                code_hash,
            )
            else "submitted",
            json.dumps([[a.isoformat(), b.isoformat() if b else None] for a, b in pauses]),
        )


async def erase(
    pool: asyncpg.Pool, org: str, code: str | bytes, *, actor: str, today: dt.date
) -> Receipt:
    """Erase a person's data (PIPL): the store rows go, a tombstone and an entry remain."""
    code_hash = tracking_sha256(code)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT erased_on FROM opinions WHERE org = $1 AND tracking_sha256 = $2 FOR UPDATE",
            org,
            code_hash,
        )
        if row is None:
            raise NotFound("No case with this tracking code in this org")
        if row["erased_on"] is not None:
            raise Conflict("This person's data was already erased")
        await conn.execute(
            """UPDATE opinion_private SET salt = NULL, payload = NULL, erased_at = now()
               WHERE org = $1 AND tracking_sha256 = $2""",
            org,
            code_hash,
        )
        # The code as stored is the one issued (tracking_sha256's form), so this finds it
        # whether the admin typed the code in any case, or gave its hash.
        await conn.execute(
            """DELETE FROM opinion_submissions
               WHERE org = $1 AND sha256(convert_to(tracking_code, 'UTF8')) = $2""",
            org,
            code_hash,
        )
        entry = _system_entry(org, "opinion.erased", code_hash, today,
                              k.OpinionErased(tracking_sha256=code_hash.hex()))  # fmt: skip
        receipt = await _append(conn, dataclasses.replace(entry, actor=actor))
        await _event(conn, org, code_hash, int(receipt.log[-4:]), receipt.index,
                     "opinion.erased", today)  # fmt: skip
        await conn.execute(
            "UPDATE opinions SET erased_on = $3 WHERE org = $1 AND tracking_sha256 = $2",
            org,
            code_hash,
            today,
        )
    return receipt


# --- lists, counts and the annual report ---------------------------------------------


async def list_cases(
    conn: Any, org: str, *, calendar: WorkCalendar, today: dt.date, status: str | None = None
) -> list[Case]:
    rows = await conn.fetch(
        """SELECT * FROM opinions WHERE org = $1 AND ($2::text IS NULL OR status = $2)
           ORDER BY received_on, submitted_year, submitted_index""",
        org,
        status,
    )
    return [_case(row, calendar, today, []) for row in rows]


async def counts(conn: Any, org: str, *, calendar: WorkCalendar, today: dt.date) -> dict[str, Any]:
    """Public numbers: cases by status and category, and how many are overdue."""
    cases = await list_cases(conn, org, calendar=calendar, today=today)
    by_status: dict[str, int] = {}
    by_category: dict[str, int] = {}
    for c in cases:
        by_status[c.status] = by_status.get(c.status, 0) + 1
        by_category[c.handled_as] = by_category.get(c.handled_as, 0) + 1
    return {
        "total": len(cases),
        "by_status": dict(sorted(by_status.items())),
        "by_category": dict(sorted(by_category.items())),
        "open": sum(1 for c in cases if c.status in OPEN_STATUSES),
        "overdue": sum(1 for c in cases if c.overdue and c.status in OPEN_STATUSES),
        "answered_late": sum(1 for c in cases if c.overdue and c.status not in OPEN_STATUSES),
    }


async def annual_report(conn: Any, org: str, org_name: str, year: int,
                        as_of: dict[str, Any] | None,
                        later_heads: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The year's report as of now; at the close, with its ``later_heads`` (JSON), it
    counts as published only what the year's archive bundle shows in full: entries
    approved by a review made by the close (``ledger.review.by_the_close``)."""
    rows = await conn.fetch(
        """SELECT tracking_sha256, applicant_type, received_on, outcome, reason, decided_on
           FROM opinions WHERE org = $1 AND category = 'disclosure_request'""",
        org,
    )
    requests = [
        ar.RequestRecord(
            tracking=bytes(r["tracking_sha256"]).hex()[:16],
            applicant_type=r["applicant_type"],
            received_on=r["received_on"],
            outcome=r["outcome"],
            reason=r["reason"],
            decided_on=r["decided_on"],
        )
        for r in rows
    ]
    appeals = [
        ar.AppealRecord(kind=r["channel"], result=r["result"])
        for r in await conn.fetch(
            "SELECT channel, result FROM opinion_appeals WHERE org = $1 AND year = $2", org, year
        )
    ]
    published = {
        r["kind"]: r["n"]
        for r in await conn.fetch(
            f"""SELECT l.kind, count(*) AS n FROM leaves l
               JOIN reviews rv ON rv.org = l.org AND rv.target_year = l.year
                    AND rv.target_index = l.idx AND rv.decision = 'approved'
                    AND ($3::jsonb IS NULL OR {by_the_close("rv", "$3")})
               WHERE l.org = $1 AND l.year = $2 GROUP BY l.kind ORDER BY l.kind""",
            org,
            year,
            later_heads,
        )
    }
    licences = sum(n for kind, n in published.items() if kind == "project.approval")
    proactive = ar.ProactiveCounts(licensing_decisions=licences, ledger_published=published)
    return ar.build_annual_report(
        org=org, org_name=org_name, year=year, requests=requests, proactive=proactive,
        appeals=appeals, as_of=as_of,
    )  # fmt: skip
