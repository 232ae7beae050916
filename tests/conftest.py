"""Test fixtures: a real PostgreSQL, a fresh database per run, the app and tokens.

``DATABASE_URL`` names a server to use (CI points it at the machine's
PostgreSQL); unset, the embedded PostgreSQL is started under a temporary
folder. Either way the run gets its own new database, so tests never see data
of an earlier run. Tests isolate themselves by using orgs of their own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from ledger import access, db
from ledger.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gongkai-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def server_dsn(data_dir: Path) -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from ledger.embedded import start_embedded, stop_embedded

    yield start_embedded(data_dir / "embedded", database="postgres")
    stop_embedded(data_dir / "embedded")  # before data_dir, and its list of users, goes


@pytest.fixture(scope="session")
def dsn(server_dsn: str) -> Iterator[str]:
    name = f"gongkai_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    test_dsn = _with_database(server_dsn, name)
    db.configure(test_dsn)
    asyncio.run(db.migrate())
    yield test_dsn
    if not os.environ.get("GONGKAI_KEEP_TEST_DB"):
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    return Settings.from_env(
        {
            "GONGKAI_DATA_DIR": str(data_dir / "state"),
            "GONGKAI_ORIGIN": "test.gongkai.local",
            "GONGKAI_PUBLIC_RATE_LIMIT": "0",
        }
    )


@pytest.fixture(scope="session")
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(dsn, max_size=10)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def client(dsn: str, settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    from api.app import create_app

    app = create_app(settings, dsn)
    async with AsyncTestClient(app=app) as c:
        yield c


@dataclass
class Org:
    """An org of a test's own, with a token per role."""

    code: str
    tokens: dict[str, str]

    def auth(self, role: str = "clerk") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


async def make_org(prefix: str = "t") -> Org:
    code = f"{prefix}-{secrets.token_hex(4)}"
    await access.create_org(code, f"测试单位 {code}")
    tokens = {}
    for role in access.ROLES:
        tokens[role] = await access.create_token(code, role, f"{role}.one")
    tokens["clerk2"] = await access.create_token(code, "clerk", "clerk.two")
    return Org(code, tokens)


@pytest.fixture
async def org(dsn: str) -> Org:
    return await make_org()


def fund_entry(code: str, on: str = "2026-03-15", **extra: Any) -> dict[str, Any]:
    """A valid entry that depends on nothing else: opening a fund with its own code."""
    return {
        "kind": "fund.opened",
        "subject": f"fund/{code}",
        "occurred_on": on,
        "body": {"fund_code": code, "name": f"专项资金 {code}", "category": "subsidy"},
        **extra,
    }


DEMO_YEAR = 2025


@pytest.fixture(scope="session")
async def demo(dsn: str, settings: Settings, client: Any) -> str:
    """The demo data set for DEMO_YEAR, loaded once per run; returns the load summary."""
    from ledger.demo import load_demo

    return await load_demo(dsn, settings, year=DEMO_YEAR)


def conformance_dir() -> Path:
    return Path(os.environ.get("GONGKAI_CONFORMANCE_DIR") or ROOT.parent / "shared" / "conformance")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    dsn: str, settings: Settings, port: int, *args: str, env: dict[str, str] | None = None
) -> Any:
    """A real ``gongkai serve`` process on the test database."""
    import subprocess
    import sys

    full_env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "GONGKAI_DATA_DIR": str(settings.data_dir),
        "GONGKAI_ORIGIN": settings.origin,
        "GONGKAI_ACCESS_LOG": "0",
        **(env or {}),
    }
    log = open(settings.data_dir.parent / f"server-{port}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "serve", "--port", str(port), *args],
        env=full_env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.log_path = log.name  # type: ignore[attr-defined]
    return proc


async def wait_ready(base: str, proc: Any, timeout: float = 90) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = Path(proc.log_path).read_text(errors="replace")[-3000:]
                raise AssertionError(f"server exited:\n{tail}")
            try:
                if (await c.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not become ready")


@pytest.fixture
async def empty_dsn(server_dsn: str) -> AsyncIterator[str]:
    """A new database on the test server, without migrations; dropped after the test."""
    name = f"gongkai_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(server_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
