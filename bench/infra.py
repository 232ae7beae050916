"""The machinery around the scenarios: a throw-away database, servers as subprocesses,
timed child processes with their peak memory, and a description of the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- the database ---------------------------------------------------------------------


def compile_project() -> None:
    """Byte-compile the project's modules once, as installing a package does.

    The commands and servers measured then start as they would installed, also where
    PYTHONDONTWRITEBYTECODE is set (as on CI and this project's machines): there,
    every ``gongkai`` command compiled the project's sources again at its start,
    about a tenth of a second of each archive build.
    """
    import compileall

    for package in ("api", "archive", "ledger"):
        compileall.compile_dir(ROOT / package, quiet=1)
    compileall.compile_file(ROOT / "cli.py", quiet=1)


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(server_dsn: str) -> tuple[str, str]:
    """Create ``gongkai_bench_<random>``; return its name and DSN."""
    name = f"gongkai_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, with_database(server_dsn, name)


async def drop_database(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# --- processes ------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the benchmark dies, so no server is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A server subprocess on 127.0.0.1:``port``, its output in ``log_path``."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    async def wait_ready(self, path: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + path)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path) -> Server:
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    return Server(name, proc, port, log_path)


@dataclass(frozen=True)
class Timed:
    returncode: int
    seconds: float
    max_rss_mib: float
    output: str


def run_timed(argv: Sequence[str], env: dict[str, str], timeout: float) -> Timed:
    """Run a command to completion: wall time, output, and its peak RSS (see ``bench/rss.py``)."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        helper = [sys.executable, "-I", "-S", str(Path(__file__).with_name("rss.py")), rss.name]
        proc = subprocess.Popen(
            [*helper, *argv],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: a timeout kills the command too
        )
        try:
            returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TimeoutError(f"{argv[0]} ran over {timeout:.0f} s") from None
        out.seek(0)
        output = out.read().decode(errors="replace")
        measured = rss.read().split()
    if len(measured) != 2:  # the helper failed: its output says why
        raise RuntimeError(f"could not run {argv[0]}: {output[-1000:]}")
    # The helper's own start-up is not counted: it times the command itself.
    return Timed(returncode, float(measured[1]), int(measured[0]) / 1024, output)


def python_outside_venv() -> str:
    """The real ``python3`` of PATH outside this virtualenv (what an auditor runs).

    Resolved through the interpreter itself, so a launcher (a pyenv shim) is not timed.
    """
    venv = Path(sys.prefix).resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "python3"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        if venv == Path(folder).resolve().parent:
            continue
        try:
            real = subprocess.run(
                [str(candidate), "-I", "-c", "import sys; print(sys.executable)"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if real and Path(real).resolve() != Path(sys.executable).resolve():
            return real
    return sys.executable


# --- the machine ----------------------------------------------------------------------


def _first(path: str, key: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return "unknown"


def _command_output(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


async def machine(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        pg = await conn.fetchval("SELECT version()")
        settings = await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1) ORDER BY name",
            [
                "autovacuum",
                "fsync",
                "max_connections",
                "max_wal_size",
                "shared_buffers",
                "synchronous_commit",
                "work_mem",
            ],
        )
    finally:
        await conn.close()
    mem_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"])
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpus (nproc)": str(len(os.sched_getaffinity(0))),
        "cpu model": _first("/proc/cpuinfo", "model name"),
        "memory": f"{int(mem_kib) / 1024 / 1024:.1f} GiB" if mem_kib.isdigit() else mem_kib,
        "kernel": platform.release(),
        "postgresql": pg,
        "postgresql settings": ", ".join(
            f"{r['name']}={r['setting']}{r['unit'] or ''}" for r in settings
        ),
        "python": sys.version.split()[0],
        "wrk": _command_output(["wrk", "-v"]) or "not installed",
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "load average at start (1, 5, 15 min)": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "yardstick (best of 3, one core)": _yardstick(),
    }


def _yardstick() -> str:
    """How fast this machine runs Python and hashes, for comparing runs on other
    machines: the targets are ratios to a baseline, but how far a ratio moves with
    the machine depends on how much of each side is Python."""
    loop, sha = [], []
    data = bytes(64 << 20)
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(5_000_000):
            total += i
        loop.append(time.perf_counter() - started)
        started = time.perf_counter()
        hashlib.sha256(data).digest()
        sha.append(time.perf_counter() - started)
    return (
        f"5 million additions in a Python loop {min(loop):.2f} s; "
        f"SHA-256 {len(data) / min(sha) / 1e6:,.0f} MB/s"
    )


async def settle(dsn: str) -> None:
    """The state a live system is in some minutes after a bulk load.

    VACUUM (ANALYZE) gives the planner statistics and sets the hint bits and the
    visibility map (what autovacuum does after many inserts; otherwise the first
    reads of each page dirty it), and CHECKPOINT writes out what the load left
    dirty, so the reads are not measured during the load's write-back.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
