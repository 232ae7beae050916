"""One benchmark run: its sizes, its database, its servers, and what scenarios share.

A ``Bench`` owns everything the run creates (the ``gongkai_bench_<random>``
database, a temporary data directory, server subprocesses) and ``close`` removes
all of it, whatever happened.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import infra
from bench.workload import LoadResult
from ledger import access, db


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``smoke`` is what CI runs, ``full`` is run by hand."""

    name: str
    bulk_entries: int
    single_seconds: int
    single_rounds: int
    read_small: int
    read_big: int
    read_seconds: int
    read_rounds: int
    archive_entries: int
    warmup_seconds: int
    read_warmup_seconds: int
    scenario_timeout: float


SIZES = {
    "smoke": Sizes("smoke", 20_000, 3, 1, 10_000, 50_000, 1, 1, 20_000, 1, 0, 600),
    "full": Sizes("full", 200_000, 10, 5, 10_000, 10_000_000, 10, 3, 1_000_000, 2, 2, 6 * 3600),
}


@dataclass
class Archive:
    """A closed year and its full bundle, shared by archive_build and offline_verify."""

    org: str
    year: int
    entries: int
    zip_path: Path
    load: LoadResult
    close_seconds: float


@dataclass
class Bench:
    sizes: Sizes
    server_dsn: str
    db_name: str
    dsn: str
    work: Path
    profile: bool = False
    started: float = field(default_factory=time.monotonic)
    servers: list[infra.Server] = field(default_factory=list)
    app_server: infra.Server | None = None
    archive: Archive | None = None
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    # --- lifecycle --------------------------------------------------------------------

    @classmethod
    async def create(cls, sizes: Sizes, server_dsn: str, *, profile: bool = False) -> Bench:
        name, dsn = await infra.create_database(server_dsn)
        work = Path(tempfile.mkdtemp(prefix="gongkai-bench-"))
        bench = cls(sizes, server_dsn, name, dsn, work, profile)
        bench.log(f"database {name}, work folder {work}")
        db.configure(dsn)
        await db.migrate()
        return bench

    async def close(self, *, keep: bool = False) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        self.app_server = None
        if keep:
            self.log(f"kept database {self.db_name} and {self.work}")
            return
        await infra.drop_database(self.server_dsn, self.db_name)
        shutil.rmtree(self.work, ignore_errors=True)

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)

    # --- what scenarios need ----------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    @property
    def env(self) -> dict[str, str]:
        """The environment of the app server and of ``gongkai`` commands."""
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.dsn,
            GONGKAI_DATA_DIR=str(self.data_dir),
            GONGKAI_PUBLIC_RATE_LIMIT="0",
            GONGKAI_ACCESS_LOG="0",
        )
        env.pop("DATABASE_REPLICA_URL", None)
        env.pop("GONGKAI_SIGNING_KEY", None)
        return env

    @property
    def today(self) -> dt.date:
        return dt.date.today()

    async def org(self, code: str, roles: tuple[str, ...] = ("clerk",)) -> dict[str, str]:
        """Create an org and one token per role (named ``bench.<role>``)."""
        await access.create_org(code, f"基准测试单位 {code}")
        for role in roles:
            self.tokens[(code, role)] = await access.create_token(code, role, f"bench.{role}")
        return {role: self.tokens[(code, role)] for role in roles}

    def actor(self, role: str) -> str:
        return f"bench.{role}"

    async def start(self, name: str, argv: list[str]) -> infra.Server:
        server = infra.start_server(name, argv, self.env, self.work)
        self.servers.append(server)
        try:
            await server.wait_ready("/readyz")
        except BaseException:
            self.stop(server)
            raise
        self.log(f"{name} ready on {server.url} (pid {server.proc.pid})")
        return server

    def stop(self, server: infra.Server) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)
        if server is self.app_server:
            self.app_server = None

    async def app(self) -> infra.Server:
        """The Gongkai server (``gongkai serve``), started once and shared."""
        if self.app_server is None or self.app_server.proc.poll() is not None:
            self.app_server = await self.start(
                "gongkai", [str(infra.VENV_BIN / "gongkai"), "serve"]
            )
        return self.app_server
