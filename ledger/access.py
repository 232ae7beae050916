"""Disclosing bodies (orgs) and the API tokens that act for them.

A token acts for exactly one org in one role. Only its SHA-256 is stored; the
token itself is shown once, when created.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from ledger.errors import Conflict, InvalidInput, NotFound
from ledger.tables import Org, Token

Role = Literal["clerk", "reviewer", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("clerk", "reviewer", "auditor", "admin")
ORG_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TOKEN_PREFIX = "gk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a named token of one org in one role."""

    org: str
    role: Role
    name: str


@dataclass(frozen=True)
class OrgInfo:
    code: str
    name: str


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_org(code: str, name: str) -> OrgInfo:
    if not ORG_CODE.match(code):
        raise InvalidInput(
            f"org code {code!r} must be lowercase letters, digits and '-', at most 63 characters",
            [],
        )
    if not name.strip() or len(name) > 200 or "\x00" in name:
        raise InvalidInput("org name must be 1 to 200 characters", [])
    if await Org.exists().where(Org.code == code):
        raise Conflict(f"org {code!r} already exists")
    await Org.insert(Org(code=code, name=name))
    return OrgInfo(code, name)


async def ensure_org(code: str, name: str) -> OrgInfo:
    """Create the org unless it exists (for idempotent loaders)."""
    row = await Org.select(Org.code, Org.name).where(Org.code == code).first()
    if row is not None:
        return OrgInfo(row["code"], row["name"])
    return await create_org(code, name)


#: Known orgs, briefly: public routes check the org on every request, and an org
#: is never deleted, so a found one can be remembered for a while.
_ORG_CACHE_SECONDS = 60.0
_org_cache: dict[str, tuple[float, OrgInfo]] = {}


async def get_org(code: str) -> OrgInfo:
    now = time.monotonic()
    hit = _org_cache.get(code)
    if hit is not None and hit[0] > now:
        return hit[1]
    row = await Org.select(Org.code, Org.name).where(Org.code == code).first()
    if row is None:
        raise NotFound(f"no org {code!r}", org=code)
    info = OrgInfo(row["code"], row["name"])
    if len(_org_cache) > 10_000:
        _org_cache.clear()
    _org_cache[code] = (now + _ORG_CACHE_SECONDS, info)
    return info


async def list_orgs() -> list[OrgInfo]:
    rows = await Org.select(Org.code, Org.name).order_by(Org.code)
    return [OrgInfo(r["code"], r["name"]) for r in rows]


async def create_token(org: str, role: str, name: str) -> str:
    """Create a token and return it; it cannot be shown again."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", [])
    if not name.strip() or len(name) > 100 or "\x00" in name:
        raise InvalidInput("token name must be 1 to 100 characters", [])
    await get_org(org)
    if await Token.exists().where((Token.org == org) & (Token.name == name)):
        raise Conflict(f"org {org!r} already has a token named {name!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await Token.insert(Token(token_sha256=token_digest(token), org=org, role=role, name=name))
    return token


async def principal_for(token: str) -> Principal | None:
    row = (
        await Token.select(Token.org, Token.role, Token.name)
        .where(Token.token_sha256 == token_digest(token))
        .first()
    )
    if row is None:
        return None
    return Principal(row["org"], row["role"], row["name"])
