"""The ledger's errors: what went wrong, in the terms a caller can act on.

Every error carries a stable ``type`` slug; the API turns it into an RFC 9457
problem document (``https://gongkai.dev/problems/<type>``) with the HTTP status
given here. Nothing in this module knows HTTP beyond the status number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One failing field: a JSONPath-like location (``$.body.amount``) and why."""

    path: str
    message: str


_NAMED_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]*)`")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def field_path(path: str, message: str) -> str:
    """The path of the field a msgspec message is about.

    msgspec reports a missing or an unknown field at the object that holds it
    (``$.body``); the caller wants the field itself (``$.body.amount``).
    """
    named = _NAMED_FIELD.match(message)
    if named is None:
        return path
    name = named.group("field")
    if _IDENTIFIER.match(name):
        return f"{path}.{name}"
    return f"{path}[{json.dumps(name, ensure_ascii=False)}]"


class LedgerError(Exception):
    status: int = 400
    type: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(LedgerError):
    status = 422
    type = "validation"
    title = "The request does not validate"

    def __init__(self, detail: str, errors: list[FieldError] | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.errors = errors or []


class MalformedInput(LedgerError):
    status = 400
    type = "malformed"
    title = "The request body is not valid JSON"


#: What JSON decoders raise, besides their own DecodeError, on a body they cannot
#: read: bytes that are not UTF-8 (msgspec, Litestar), or arrays and objects nested
#: past the decoder's depth.
UNDECODABLE = (UnicodeDecodeError, RecursionError)


def undecodable(exc: Exception) -> MalformedInput:
    """The 400 for a body a decoder could not read: ``exc`` is one of ``UNDECODABLE``
    or the decoder's own error (its message says where the JSON breaks)."""
    if isinstance(exc, UnicodeDecodeError):
        return MalformedInput(f"The body is not UTF-8: {exc.reason} at byte {exc.start}")
    if isinstance(exc, RecursionError):
        return MalformedInput("The body's JSON is nested too deeply")
    return MalformedInput(f"Malformed JSON: {exc}")


class Misconfigured(LedgerError):
    """The instance's surroundings are not what they must be: a key, a file, the
    database's address (a command says so in one line)."""

    status = 500
    type = "misconfigured"
    title = "The service is misconfigured"


class NotFound(LedgerError):
    status = 404
    type = "not-found"
    title = "Not found"


class Conflict(LedgerError):
    status = 409
    type = "conflict"
    title = "Conflict with the ledger's state"


class IdempotencyMismatch(Conflict):
    type = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class CommitUnknown(LedgerError):
    status = 503
    type = "commit-unknown"
    title = "Whether the entry was committed is not known"


class Unauthorized(LedgerError):
    status = 401
    type = "unauthorized"
    title = "Missing or unknown token"


class Forbidden(LedgerError):
    status = 403
    type = "forbidden"
    title = "Not allowed"


@dataclass
class ErrorList:
    """Collects field errors so one response can name every failing field."""

    errors: list[FieldError] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def raise_if_any(self, detail: str = "The request does not validate") -> None:
        if self.errors:
            raise InvalidInput(detail, self.errors)
