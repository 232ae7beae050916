"""One error shape for the whole API: RFC 9457 ``application/problem+json``.

``type`` is a stable URN per kind of problem (``urn:gongkai:problem:validation``);
validation problems carry ``errors: [{path, message}]`` naming each failing field.
No exception leaves the app as anything else, and none as a bare 500 page.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from api.params import NO_NUL
from ledger.errors import UNDECODABLE, LedgerError, MalformedInput, field_path, undecodable

log = logging.getLogger("gongkai.api")

PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Missing or unknown token"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation", "The request does not validate"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class ApiRequest(Request[Any, Any, Any]):
    """The app's request: a JSON body that cannot be decoded at all is a 400, however
    the decoder failed (Litestar answers its own DecodeError so, not these)."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except UNDECODABLE as exc:
            raise undecodable(exc) from None


class FieldProblem(msgspec.Struct):
    path: str = msgspec.field()
    message: str = msgspec.field()


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None


def problem_type(slug: str) -> str:
    return f"urn:gongkai:problem:{slug}"


def problem(
    request: Request[Any, Any, Any] | None,
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[Any]:
    default_slug, default_title = _TITLES.get(status, ("error", "Error"))
    content: dict[str, Any] = {
        "type": problem_type(slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        content["instance"] = request.url.path
    if errors is not None:
        content["errors"] = errors
    for key, value in (extra or {}).items():
        content.setdefault(key, value)  # never overrides the RFC 9457 members
    return Response(content, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def ledger_error_handler(request: Request[Any, Any, Any], exc: LedgerError) -> Response[Any]:
    errors = getattr(exc, "errors", None)
    retry = exc.extra.get("retry_after")
    return problem(
        request,
        exc.status,
        exc.detail,
        slug=exc.type,
        title=exc.title,
        errors=[{"path": e.path, "message": e.message} for e in errors]
        if errors is not None
        else None,
        extra=exc.extra,
        headers={"Retry-After": str(retry)} if retry is not None else None,
    )


def _param_path(key: str, source: Any, message: str) -> str:
    source = getattr(source, "value", source)  # Litestar gives a ParamType enum
    if source == "header":  # named as sent, not by the handler's argument
        return "header." + "-".join(part.capitalize() for part in key.split("_"))
    if source in ("query", "path", "cookie"):
        return f"{source}.{key}"
    # The request body: Litestar names it ``data`` and its fields by their path.
    path = "$" if key in ("", "data") else f"$.{key}"
    return field_path(path, message)


#: Litestar's words for a required parameter that is absent.
_MISSING = re.compile(r"^Missing required (?P<source>\w+) parameter '(?P<key>[^']+)'")


def _param_message(message: str) -> str:
    # msgspec words a failed pattern as the regex: say what the NUL pattern means.
    if f"regex {NO_NUL!r}" in message:
        return "must not contain a NUL byte"
    return message


#: How Litestar words a JSON body that is absent (it names the handler's ``data``).
_NO_BODY = {"message": "'data'", "key": "data", "source": "body"}


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, ValidationException) and _NO_BODY in (
        exc.extra if isinstance(exc.extra, list) else []
    ):
        return problem(request, 400, "The request has no body; send a JSON object",
                       slug=MalformedInput.type, title=MalformedInput.title)  # fmt: skip
    if isinstance(exc, ValidationException):
        # Query and path parameters that do not parse: name each one.
        errors = []
        for item in exc.extra if isinstance(exc.extra, list) else []:
            if isinstance(item, dict):
                key = str(item.get("key", ""))
                message = str(item.get("message", "invalid"))
                errors.append(
                    {
                        "path": _param_path(key, item.get("source"), message),
                        "message": _param_message(message),
                    }
                )
        missing = _MISSING.match(exc.detail or "")
        if missing is not None and not errors:
            errors.append({"path": f"{missing['source']}.{missing['key']}", "message": "required"})
        return problem(request, 422, exc.detail or "Invalid request parameters", errors=errors)
    if isinstance(exc.__cause__, SerializationException):
        # A body Litestar could not decode: the same problem as the entries' own decoder.
        return problem(request, 400, str(exc.detail), slug=MalformedInput.type,
                       title=MalformedInput.title)  # fmt: skip
    headers = dict(exc.headers or {})
    detail = exc.detail or _TITLES.get(status, ("error", "Error"))[1]
    return problem(request, status, detail, headers=headers or None)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        "The server failed to handle this request; it has been logged.",
    )


def unavailable_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The database could not be reached, or its connection broke mid-request."""
    log.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
    return problem(
        request,
        503,
        "The database is not reachable, or the connection to it broke during the request. "
        "Retry later.",
        headers={"Retry-After": "1"},
    )


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    LedgerError: ledger_error_handler,
    HTTPException: http_error_handler,
    asyncpg.PostgresConnectionError: unavailable_error_handler,
    asyncpg.exceptions.OperatorInterventionError: unavailable_error_handler,
    ConnectionError: unavailable_error_handler,  # refused or reset: the database's socket
    socket.gaierror: unavailable_error_handler,  # its host name does not resolve
    Exception: internal_error_handler,
}
