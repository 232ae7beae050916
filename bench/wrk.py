"""Running wrk with the Lua scripts in ``bench/lua`` and reading what it measured."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "req_per_s": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "non2xx": self.non2xx,
            "socket_errors": self.socket_errors,
        }


def available() -> bool:
    return shutil.which("wrk") is not None


def parse(output: str) -> WrkResult:
    """wrk's output: the BENCH_JSON line our scripts' done() print."""
    m = re.search(r"^BENCH_JSON (\{.*\})$", output, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{output}")
    d = json.loads(m.group(1))
    return WrkResult(
        requests=d["requests"],
        seconds=d["duration_us"] / 1e6,
        non2xx=d["non2xx"],
        socket_errors=d["connect_errors"] + d["read_errors"] + d["write_errors"] + d["timeouts"],
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
        mean_ms=round(d["mean_us"] / 1000, 3),
    )


async def run(
    url: str,
    script: str,
    args: list[str],
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """``wrk -tT -cC -dDs --latency -s bench/lua/SCRIPT URL -- ARGS``."""
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA / script),
    ]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv += [url, "--", *args]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{text}")
    return parse(text)
