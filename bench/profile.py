"""Optional py-spy sampling (``--profile``): where a server's or a command's time goes.

A server is sampled during the measured run (so profiled figures are a little
lower than unprofiled ones; the report says so). A command (archive build,
offline verify) is profiled in an extra run after the measured one. What is kept:
self time by package, the busiest frames, and inclusive time of the project's
own functions, so a missed target names where the time goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

RATE = 97  # samples a second; not a multiple of any timer in the service
PROJECT = ("ledger/", "api/", "archive/", "verify.py")
WRAPPERS = ("<module> ", "main ")  # 100% of every stack: say nothing


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


NOT_INSTALLED = ["py-spy is not installed: no profile (.venv/bin/pip install py-spy)"]


class Profile:
    """``async with Profile(pid, out, enabled=…) as p:`` … then ``p.summary()``."""

    def __init__(self, pid: int, out: Path, *, enabled: bool = True) -> None:
        self.pid, self.out = pid, out
        self.exe = py_spy() if enabled else None
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Profile:
        if self.exe is not None:
            self.proc = await asyncio.create_subprocess_exec(
                self.exe, "record", "--pid", str(self.pid), "--rate", str(RATE),
                "--nonblocking", "--format", "raw", "--output", str(self.out),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await asyncio.sleep(0.5)  # let it attach
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def summary(self, top: int = 12) -> list[str]:
        return summarize(self.out, top) if self.exe else NOT_INSTALLED


async def profile_command(
    argv: Sequence[str], env: dict[str, str], out: Path, timeout: float, top: int = 12
) -> list[str]:
    """Run ``argv`` under ``py-spy record`` and summarize where its time went."""
    exe = py_spy()
    if exe is None:
        return NOT_INSTALLED
    proc = await asyncio.create_subprocess_exec(
        exe, "record", "--rate", str(RATE), "--format", "raw", "--output", str(out), "--",
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    return summarize(out, top)


def summarize(path: Path, top: int = 12) -> list[str]:
    """Lines: self time by package, ``NN.N% self frame``, ``NN.N% incl function``."""
    if not path.exists():
        return ["py-spy wrote no profile (is ptrace permitted?)"]
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f]
        if not count.isdigit() or not frames:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        packages[_package(frames[-1])] += n
        for name in {_function(f) for f in frames}:  # once a stack, line numbers dropped
            inclusive[name] += n
    if not total:
        return ["py-spy collected no samples"]
    by_package = ", ".join(f"{p} {n / total * 100:.0f}%" for p, n in packages.most_common(8))
    lines = [f"{total} samples; self time by package: {by_package}"]
    lines += [f"{n / total * 100:5.1f}% self {f}" for f, n in own.most_common(top)]
    ours = [
        (f, n)
        for f, n in inclusive.most_common()
        if any(p in f for p in PROJECT) and not f.startswith(WRAPPERS)
    ]
    lines += [f"{n / total * 100:5.1f}% incl {f}" for f, n in ours[:top]]
    return lines


def _where(frame: str) -> str:
    """``fn (litestar/routes/http.py:181)`` → ``litestar/routes/http.py``."""
    return frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]


def _package(frame: str) -> str:
    return _where(frame).split("/")[0].removesuffix(".py") or "?"


def _function(frame: str) -> str:
    return f"{frame.rpartition(' (')[0]} ({_where(frame)})"
