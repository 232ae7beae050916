"""Disclosing bodies (orgs) and the API tokens that act for them.

A token acts for exactly one org in one role. Only its SHA-256 is stored; the
token itself is shown once, when created.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Literal

from ledger.cache import Remembered
from ledger.errors import Conflict, InvalidInput, NotFound
from ledger.logs import Conn
from ledger.tables import Org, Token

Role = Literal["clerk", "reviewer", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("clerk", "reviewer", "auditor", "admin")
ORG_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: Unicode categories refused in an org's name: control characters (NUL, tab, line
#: breaks and the rest), line and paragraph separators.
_NOT_IN_A_NAME = frozenset({"Cc", "Zl", "Zp"})
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
    if not name.strip() or len(name) > 200:
        raise InvalidInput("org name must be 1 to 200 characters", [])
    if any(unicodedata.category(ch) in _NOT_IN_A_NAME for ch in name):
        # The name is one line of the archive's bag-info.txt (Source-Organization).
        raise InvalidInput("org name must be one line without control characters", [])
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


# The server's lookups below take its pool: through Piccolo, each query would open
# a connection of its own (a backend forked a request for ``GET /orgs``).

#: Known orgs, briefly: public routes check the org on every request, and an org
#: is never deleted, so a found one can be remembered for a while.
_known_orgs: Remembered[str, OrgInfo] = Remembered(60.0)


async def get_org(conn: Conn, code: str) -> OrgInfo:
    """The org ``code``; NotFound if there is none."""

    async def look_up(code: str) -> OrgInfo:
        row = await conn.fetchrow("SELECT code, name FROM orgs WHERE code = $1", code)
        if row is None:
            raise NotFound(f"no org {code!r}", org=code)
        return OrgInfo(row["code"], row["name"])

    return await _known_orgs.get(code, look_up)


async def list_orgs(conn: Conn) -> list[OrgInfo]:
    rows = await conn.fetch("SELECT code, name FROM orgs ORDER BY code")
    return [OrgInfo(r["code"], r["name"]) for r in rows]


async def principal_for(conn: Conn, token: str) -> Principal | None:
    """Who ``token`` is, or None if no such token exists."""
    row = await conn.fetchrow(
        "SELECT org, role, name FROM tokens WHERE token_sha256 = $1", token_digest(token)
    )
    if row is None:
        return None
    return Principal(row["org"], row["role"], row["name"])


async def create_token(org: str, role: str, name: str) -> str:
    """Create a token and return it; it cannot be shown again."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", [])
    if not name.strip() or len(name) > 100 or "\x00" in name:
        raise InvalidInput("token name must be 1 to 100 characters", [])
    if not await Org.exists().where(Org.code == org):
        raise NotFound(f"no org {org!r}", org=org)
    if await Token.exists().where((Token.org == org) & (Token.name == name)):
        raise Conflict(f"org {org!r} already has a token named {name!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await Token.insert(Token(token_sha256=token_digest(token), org=org, role=role, name=name))
    return token
