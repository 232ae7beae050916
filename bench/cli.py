"""The command line: ``python -m bench [--size smoke|full] [--only A,B] [--out FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import archives, infra, ingest, reads, report, wrk
from bench.context import SIZES, Bench

Scenario = Callable[[Bench], Awaitable[dict[str, Any]]]

SCENARIOS: dict[str, Scenario] = {
    "bulk_ingest": ingest.bulk_ingest,
    "single_posts": ingest.single_posts,
    "read_scaling": reads.read_scaling,
    "archive_build": archives.archive_build,
    "offline_verify": archives.offline_verify,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run Gongkai's benchmarks against their raw baselines; write a report.",
    )
    p.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="full",
        help="smoke: small, under a minute (CI); full: the sizes of issue 7",
    )
    p.add_argument("--only", help=f"comma-separated scenarios (of: {', '.join(SCENARIOS)})")
    p.add_argument(
        "--out",
        type=Path,
        help="report file (default: BENCHMARKS.md for full, a temp file otherwise)",
    )
    p.add_argument("--read-big", type=int, help="override the large size of read_scaling")
    p.add_argument("--archive-entries", type=int, help="override the archive's entries")
    p.add_argument("--bulk-entries", type=int, help="override bulk_ingest's entries")
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile with py-spy: servers while measured, commands in an extra run",
    )
    p.add_argument("--keep", action="store_true", help="keep the database and work folder")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    args.names = names
    return args


def _sizes(args: argparse.Namespace) -> Any:
    sizes = SIZES[args.size]
    overrides = {
        "read_big": args.read_big,
        "archive_entries": args.archive_entries,
        "bulk_entries": args.bulk_entries,
    }
    return dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v})


def _rerun(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    flags = [f"--size {args.size}"]
    if args.only:
        flags.append(f"--only {args.only}")
    for name in ("read_big", "archive_entries", "bulk_entries"):
        if getattr(args, name):
            flags.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    rel = str(out.relative_to(infra.ROOT)) if out.is_relative_to(infra.ROOT) else str(out)
    rerun = f"python3 dev.py bench {' '.join(flags)} --out {shlex.quote(rel)}"
    as_run = " ".join(
        shlex.quote(a) for a in [Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]
    )
    return rerun, as_run


async def run_scenario(bench: Bench, name: str) -> dict[str, Any]:
    bench.log(f"=== {name}")
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(SCENARIOS[name](bench), bench.sizes.scenario_timeout)
    except Exception as exc:
        bench.log(f"{name} failed: {exc!r}")
        text = "".join(traceback.format_exception(exc))
        result = {"name": name, "error": text[-4000:]}
    result["seconds"] = time.monotonic() - started
    bench.log(f"=== {name} done in {result['seconds']:.1f} s")
    return result


async def run(args: argparse.Namespace) -> int:
    server_dsn = os.environ.get("DATABASE_URL") or infra.DEFAULT_DSN
    out: Path = args.out or (
        infra.ROOT / "BENCHMARKS.md"
        if args.size == "full" and not args.only
        else Path(f"/tmp/gongkai-bench-{args.size}.md")
    )
    started = time.monotonic()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    infra.compile_project()
    bench = await Bench.create(_sizes(args), server_dsn, profile=args.profile)
    results: list[dict[str, Any]] = []
    try:
        machine = await infra.machine(bench.dsn)
        for name in args.names:
            results.append(await run_scenario(bench, name))
    finally:
        await bench.close(keep=args.keep)
    rerun, as_run = _rerun(args, out)
    text = report.render(
        {
            "size": args.size,
            "date": date,
            "seconds": time.monotonic() - started,
            "rerun": rerun,
            "as_run": as_run,
            "machine": machine,
        },
        results,
    )
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"report written to {out}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not wrk.available():
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted; servers stopped and the database dropped", file=sys.stderr)
        return 130
