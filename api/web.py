"""Being a good citizen of the web: request ids, access logs, metrics, caching, rate limits.

One ASGI middleware does the cross-cutting work around every routed request, so
that handlers stay about their use case:

- ``X-Request-Id`` on every response (the client's, if it sent a sane one) and
  one JSON access-log line per request carrying it;
- Prometheus counters and a latency histogram per route template;
- public GETs (no token that resolves): a weak ``ETag`` over the body, ``304`` on
  ``If-None-Match``, ``Cache-Control: public, max-age=…``; staff responses are
  ``private, no-store``;
- a token bucket per client address on public requests: ``429`` problem with
  ``Retry-After`` when it is empty.

What the router answers before any route (404, 405) gets its id, log line and
count from a ``before_send`` hook instead (``unrouted_hook``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import known_token

access_log = logging.getLogger("gongkai.access")

PUBLIC_MAX_AGE = 5  # seconds: the ledger moves, but a few seconds of caching is honest
_PUBLIC_CACHE = (b"cache-control", f"public, max-age={PUBLIC_MAX_AGE}".encode())
_TEMPLATE_TYPE = re.compile(r":[a-z]+}")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_ETAG_BODY = 8 << 20  # bodies larger than this stream through without an ETag

# Request ids: a random prefix per process and a counter (no random draw per request).
_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count()
_route_labels: dict[str, str] = {}


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):016x}"


def _request_id(scope: Scope) -> str:
    """The client's ``X-Request-Id`` if it is sane, else a new one."""
    incoming = _header(scope, b"x-request-id")
    return incoming if incoming and _REQUEST_ID.match(incoming) else _new_request_id()


def _log_request(
    scope: Scope, request_id: str, route: str, status: int, ms: float | None = None
) -> None:
    """The access-log line of one request (when the access log is on)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    extra = {
        "request_id": request_id,
        "method": scope["method"],
        "path": scope["path"],
        "route": route,
        "status": status,
        "client": (scope.get("client") or ("-", 0))[0],
    }
    if ms is not None:
        extra["ms"] = ms
    access_log.info("request", extra=extra)


def _route_label(template: str) -> str:
    """``/orgs/{org:str}`` → ``/orgs/{org}``, memoised (there are few templates)."""
    label = _route_labels.get(template)
    if label is None:
        label = _route_labels[template] = _TEMPLATE_TYPE.sub("}", template)
    return label


@dataclass
class Metrics:
    """In-process Prometheus metrics (one process; scrape each worker)."""

    requests: dict[tuple[str, str, int], int] = field(default_factory=lambda: defaultdict(int))
    latency: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    latency_sum: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    appended: int = 0
    commits: int = 0
    rate_limited: int = 0

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(route, method, status)] += 1
        key = (route, method)
        counts = self.latency.setdefault(key, [0.0] * (len(BUCKETS) + 1))
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        counts[-1] += 1
        self.latency_sum[key] += seconds

    def on_commit(self, entries: int) -> None:
        self.appended += entries
        self.commits += 1

    def render(self, checkpoint_sizes: list[tuple[str, int, int]]) -> str:
        out = [
            "# HELP gongkai_http_requests_total HTTP requests by route, method and status.",
            "# TYPE gongkai_http_requests_total counter",
        ]
        for (route, method, status), n in sorted(self.requests.items()):
            out.append(
                f'gongkai_http_requests_total{{route="{route}",method="{method}",'
                f'status="{status}"}} {n}'
            )
        out += [
            "# HELP gongkai_http_request_duration_seconds Request latency.",
            "# TYPE gongkai_http_request_duration_seconds histogram",
        ]
        for (route, method), counts in sorted(self.latency.items()):
            labels = f'route="{route}",method="{method}"'
            for bound, n in zip(BUCKETS, counts, strict=False):
                out.append(
                    f'gongkai_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n:g}'
                )
            out.append(
                f'gongkai_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {counts[-1]:g}'
            )
            out.append(
                f"gongkai_http_request_duration_seconds_sum{{{labels}}} "
                f"{self.latency_sum[(route, method)]:.6f}"
            )
            out.append(f"gongkai_http_request_duration_seconds_count{{{labels}}} {counts[-1]:g}")
        out += [
            "# HELP gongkai_entries_appended_total Entries appended by this process.",
            "# TYPE gongkai_entries_appended_total counter",
            f"gongkai_entries_appended_total {self.appended}",
            "# HELP gongkai_append_commits_total Append transactions committed by this process.",
            "# TYPE gongkai_append_commits_total counter",
            f"gongkai_append_commits_total {self.commits}",
            "# HELP gongkai_rate_limited_total Requests refused with 429.",
            "# TYPE gongkai_rate_limited_total counter",
            f"gongkai_rate_limited_total {self.rate_limited}",
            "# HELP gongkai_checkpoint_size Tree size of the latest signed checkpoint of a log.",
            "# TYPE gongkai_checkpoint_size gauge",
        ]
        for org, year, size in checkpoint_sizes:
            out.append(f'gongkai_checkpoint_size{{org="{org}",year="{year}"}} {size}')
        return "\n".join(out) + "\n"


class RateLimiter:
    """A token bucket per client address: ``per_minute`` requests, bursts of that size."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float | None = None) -> float:
        """0 if allowed, else the seconds to wait before the next request."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:  # forget idle clients rather than grow forever
            self._buckets.clear()
        return 0.0


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _problem(status: int, detail: str, extra_headers: list[tuple[bytes, bytes]]) -> list[Message]:
    body = json.dumps(
        {
            "type": "urn:gongkai:problem:rate-limited",
            "title": "Too many requests",
            "status": status,
            "detail": detail,
        }
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


def web_middleware(metrics: Metrics, limiter: RateLimiter) -> Any:
    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            method = scope["method"]
            request_id = _request_id(scope)
            # Public: no token that resolves. An unknown one (on a route that does not
            # read it) is rate limited and cached like no token at all.
            authorization = _header(scope, b"authorization")
            public = authorization is None or not await known_token(scope["app"], authorization)
            route = _route_label(str(scope.get("path_template") or "unmatched"))
            client = (scope.get("client") or ("-", 0))[0]
            status_holder = [0]
            rid = (b"x-request-id", request_id.encode())

            async def finish() -> None:
                elapsed = time.perf_counter() - started
                metrics.observe(route, method, status_holder[0], elapsed)
                _log_request(scope, request_id, route, status_holder[0], round(elapsed * 1000, 2))

            if public and route not in ("/healthz", "/readyz", "/metrics"):
                wait = limiter.take(client)
                if wait > 0:
                    metrics.rate_limited += 1
                    status_holder[0] = 429
                    retry = str(max(1, int(wait + 0.999))).encode()
                    for message in _problem(
                        429,
                        f"At most {limiter.per_minute} public requests a minute; "
                        "retry after the given seconds",
                        [rid, (b"retry-after", retry)],
                    ):
                        await send(message)
                    await finish()
                    return

            cacheable = public and method in ("GET", "HEAD")
            if_none_match = _header(scope, b"if-none-match") if cacheable else None
            start_message: dict[str, Any] | None = None
            chunks: list[bytes] = []
            buffered = 0
            passthrough = not cacheable

            async def send_wrapper(message: Message) -> None:
                nonlocal start_message, buffered, passthrough
                if message["type"] == "http.response.start":
                    status_holder[0] = message["status"]
                    headers = [
                        (k, v) for k, v in message.get("headers", []) if k != b"x-request-id"
                    ]
                    headers.append(rid)
                    if not public:
                        headers.append((b"cache-control", b"private, no-store"))
                    message = {**message, "headers": headers}
                    # A response that tags itself (a file) keeps its own ETag (and answers
                    # If-None-Match itself); public, it is cached as any public GET.
                    if any(k.lower() == b"etag" for k, _ in headers):
                        passthrough = True
                        if cacheable and not any(k.lower() == b"cache-control" for k, _ in headers):
                            headers.append(_PUBLIC_CACHE)
                    if passthrough or message["status"] != 200:
                        passthrough = True
                        await send(message)
                        return
                    start_message = message
                    return
                if passthrough:
                    await send(message)
                    return
                chunks.append(message.get("body", b""))
                buffered += len(chunks[-1])
                if message.get("more_body", False) and buffered <= MAX_ETAG_BODY:
                    return
                if message.get("more_body", False):
                    # Too large to tag: let the rest stream through untagged.
                    passthrough = True
                    assert start_message is not None
                    await send(start_message)
                    await send({**message, "body": b"".join(chunks)})
                    return
                body = b"".join(chunks)
                etag = b'W/"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
                assert start_message is not None
                headers = [
                    (k, v) for k, v in start_message["headers"] if k.lower() != b"content-length"
                ]
                headers += [
                    (b"etag", etag),
                    _PUBLIC_CACHE,
                ]
                if if_none_match is not None and etag.decode() in {
                    t.strip() for t in if_none_match.split(",")
                }:
                    status_holder[0] = 304
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
                    await send({"type": "http.response.start", "status": 304, "headers": headers})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start_message, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})

            try:
                await app(scope, receive, send_wrapper)
            finally:
                await finish()

        return middleware

    return factory


def unrouted_hook(metrics: Metrics) -> Any:
    """A ``before_send`` hook for what the router answers itself, before any route's
    middleware runs: an unmatched path (404) or method (405). Such a response gets
    its ``X-Request-Id`` (the client's, if sane) and its access-log line too; one
    that already has an id came through ``web_middleware`` and is left alone."""

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope["type"] != "http":
            return
        headers = list(message.get("headers") or [])
        if any(k.lower() == b"x-request-id" for k, _ in headers):
            return
        request_id = _request_id(scope)
        message["headers"] = [*headers, (b"x-request-id", request_id.encode())]  # type: ignore[typeddict-unknown-key]
        metrics.requests[("unmatched", scope["method"], message["status"])] += 1
        _log_request(scope, request_id, "unmatched", message["status"])

    return before_send


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and any extra fields."""

    _skip = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)
