"""Who is calling: bearer tokens resolved to a ``Principal``, and role checks.

Missing or unknown token: 401. A token of another org, or of a role that may not
do this: 403. Resolved tokens are cached briefly so a hot posting path does not
pay a query per request.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from api.runtime import runtime
from ledger.access import Principal, Role, principal_for
from ledger.cache import Remembered
from ledger.errors import Forbidden, Unauthorized

#: Who a token is, remembered for 30 s: a busy poster does not pay a query a request.
_principals: Remembered[str, Principal | None] = Remembered(30.0)


async def _resolve(request: Request[Any, Any, Any], token: str) -> Principal | None:
    return await _resolve_in(runtime(request).pool, token)


async def _resolve_in(pool: Any, token: str) -> Principal | None:
    async def look_up(token: str) -> Principal | None:
        return await principal_for(pool, token)

    return await _principals.get(token, look_up)


def _bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def known_token(app: Any, header: str) -> bool:
    """Whether an Authorization header carries a token that resolves (for the web
    middleware, before routing: only such a caller escapes the public rate limit).
    A lookup that fails says no; the route meets the failure itself."""
    token = _bearer(header)
    if token is None:
        return False
    try:
        return await _resolve_in(app.state.runtime.pool, token) is not None
    except Exception:  # the database, say: the route answers for it
        return False


async def optional_principal(request: Request[Any, Any, Any]) -> Principal | None:
    """The caller's principal, None without an Authorization header; 401 if it is bad."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    token = _bearer(header)
    if token is None:
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    principal = await _resolve(request, token)
    if principal is None:
        raise Unauthorized("Unknown token")
    return principal


async def require(request: Request[Any, Any, Any], org: str, roles: set[Role]) -> Principal:
    """The caller, who must hold a token of ``org`` in one of ``roles``."""
    principal = await optional_principal(request)
    if principal is None:
        raise Unauthorized("This route needs 'Authorization: Bearer <token>'")
    if principal.org != org:
        raise Forbidden(f"This token acts for {principal.org}, not for {org}")
    if principal.role not in roles:
        raise Forbidden(
            f"Role {principal.role} may not do this; needs one of: {', '.join(sorted(roles))}"
        )
    return principal


def staff_of(principal: Principal | None, org: str) -> bool:
    """Whether the caller is staff of ``org`` (and so sees everything of it)."""
    return principal is not None and principal.org == org
