"""Year-end archives: building a closed year's bundle, and verifying it offline.

Both scenarios share one closed year (``Bench.archive``): an org's log for the
year before last, loaded through ``ledger.posting.post_entries`` and closed
in-process with ``archive.close.close_year`` (which also builds both bundles).

archive_build
    ``gongkai archive build --variant full`` as a child process: wall time and
    its peak RSS (``wait4``), against ``COPY (SELECT leaf … ORDER BY idx) TO
    STDOUT`` streamed into SHA-256.
offline_verify
    ``python3 -I <bag>/data/verify.py <zip>`` (a Python outside the virtualenv,
    as an auditor runs it) against ``sha256sum`` of the unpacked payload files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import re
import secrets
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from archive.close import close_year
from bench import infra, workload
from bench.context import Archive, Bench
from bench.profile import profile_command
from bench.result import Result, median, ratio
from ledger import db
from ledger.checkpoint import signer_for
from ledger.settings import Settings

FUNDS = 4
ROUNDS = 3  # archive_build: runs of the build and of its baseline, the median reported
RSS_LIMIT_MIB = 256
VERIFY_LIMIT_S = 10.0


async def _close(b: Bench, org: str, year: int) -> tuple[Path, float]:
    settings = Settings.from_env(b.env)
    signer = signer_for(settings.signing_key, settings.key_name)
    pool = await db.create_pool(b.dsn, min_size=1, max_size=2)
    try:
        started = time.perf_counter()
        result = await close_year(
            pool, settings, signer, org, year, today=b.today, actor=b.actor("admin")
        )
        return result.bundles["full"].path, time.perf_counter() - started
    finally:
        await pool.close()


async def ensure_archive(b: Bench) -> Archive:
    """Load and close the archive year once per run."""
    if b.archive is not None:
        return b.archive
    org, year, total = "bench-archive", b.today.year - 2, b.sizes.archive_entries
    await b.org(org, ("clerk", "admin"))
    funds = tuple(f"AR-{i}" for i in range(FUNDS))
    on = dt.date(year, 1, 2)
    await workload.post(b.dsn, org, b.actor("clerk"), [workload.fund_opened(f, on) for f in funds])
    mix = workload.Mix(year, funds, secrets.token_hex(3))
    b.log(f"archive: loading {org}/{year} with {total:,} entries")
    # The year's log ends with year.closed: FUNDS + loaded + 1 = total.
    load = await asyncio.to_thread(
        workload.load, b.dsn, org, b.actor("clerk"), mix, total - FUNDS - 1, log=b.log
    )
    b.log(f"archive: {load.describe()}; closing {year}")
    zip_path, close_s = await _close(b, org, year)
    b.log(f"archive: closed in {close_s:.1f} s (both bundles built); VACUUM (ANALYZE)")
    # As for the reads: measured in the state of a live system minutes after the load.
    # Before this, the planner's statistics had not seen the year (after the ten
    # million entries of read_scaling), and the baseline's plan sorted a million
    # leaves on disk: 4-5 s instead of well under one.
    await infra.settle(b.dsn)
    b.archive = Archive(org, year, total, zip_path, load, close_s)
    return b.archive


async def _copy_sha256(dsn: str, org: str, year: int) -> tuple[float, int, str]:
    conn = await workload.connect(dsn)
    sha = hashlib.sha256()
    size = 0

    async def sink(chunk: bytes) -> None:
        nonlocal size
        sha.update(chunk)
        size += len(chunk)

    try:
        # The build's reads have sorting off (archive.bundle._EntryRows.PLAN): so has
        # the baseline, so it reads the primary key in order, whatever the statistics.
        await conn.execute("SET enable_sort = off")
        started = time.perf_counter()
        await conn.copy_from_query(
            "SELECT leaf FROM leaves WHERE org = $1 AND year = $2 ORDER BY org, year, idx",
            org,
            year,
            output=sink,
            format="binary",
        )
        return time.perf_counter() - started, size, sha.hexdigest()
    finally:
        await conn.close()


async def archive_build(b: Bench) -> dict[str, Any]:
    arc = await ensure_archive(b)
    res = Result("archive_build", f"Archive build: a closed year of {arc.entries:,} entries")
    out = b.work / "bundles"
    argv = [
        str(infra.VENV_BIN / "gongkai"),
        "archive",
        "build",
        "--org",
        arc.org,
        "--year",
        str(arc.year),
        "--variant",
        "full",
        "--out",
        str(out),
    ]
    # Each is run ROUNDS times, alternately (baseline first), and the median is
    # taken: whichever runs first after the close reads a colder cache.
    runs, bases = [], []
    for i in range(ROUNDS):
        bases.append(await _copy_sha256(b.dsn, arc.org, arc.year))
        b.log(f"archive_build: round {i + 1}: baseline {bases[-1][0]:.2f} s; build")
        run = await asyncio.to_thread(infra.run_timed, argv, b.env, b.sizes.scenario_timeout)
        if run.returncode != 0:
            raise RuntimeError(f"archive build exited with {run.returncode}:\n{run.output[-2000:]}")
        runs.append(run)
        b.log(f"archive_build: {run.seconds:.2f} s, {run.max_rss_mib:.0f} MiB")
    run = median(runs, key=lambda r: r.seconds)
    base_s, base_bytes, _ = median(bases, key=lambda b: b)
    rss = max(r.max_rss_mib for r in runs)
    m = re.search(r"full: (\S+)\s+sha256 ([0-9a-f]{64})\s+(\d+) bytes", run.output)
    same = m is not None and m.group(2) == arc.zip_path.stem

    zip_size = int(m.group(3)) if m else 0
    res.table(
        f"{arc.org}/{arc.year}, {arc.entries:,} entries",
        [
            {
                "": "gongkai archive build --variant full",
                "seconds": round(run.seconds, 2),
                "peak RSS MiB": round(rss, 1),
                "bytes": f"{zip_size:,} (zip)",
            },
            {
                "": "baseline COPY leaf TO STDOUT + SHA-256",
                "seconds": round(base_s, 2),
                "peak RSS MiB": "",
                "bytes": f"{base_bytes:,}",
            },
        ],
    )
    if b.profile:
        b.log("archive_build: profiling another build with py-spy")
        res.profile = await profile_command(argv, b.env, b.work / "build.prof", 3600)
        res.note("Profiled with py-spy in an extra build after the measured one.")
    res.load_seconds = arc.load.seconds + arc.close_seconds
    r = ratio(run.seconds, base_s)
    res.target("≤ 2 × the baseline's time", f"{r:.2f} ×", r <= 2)
    res.target(
        f"peak RSS ≤ {RSS_LIMIT_MIB} MiB",
        f"{rss:.0f} MiB",
        rss <= RSS_LIMIT_MIB,
    )
    res.note(
        f"Loading: {arc.load.describe()}. The year was then closed in-process with "
        f"`archive.close.close_year` in {arc.close_seconds:.1f} s (that builds the full and "
        "the public bundle), then VACUUM (ANALYZE) and CHECKPOINT ran, as for the reads. "
        f"The build and the baseline ran {ROUNDS} times each, alternately, baseline first; "
        "the table gives the median times ("
        + ", ".join(f"{r.seconds:.2f}" for r in runs)
        + " s built; "
        + ", ".join(f"{x[0]:.2f}" for x in bases)
        + " s baseline) and the largest peak RSS. The build is the command line in a child "
        "process (migration check and key loading included); peak RSS is the child's own "
        "ru_maxrss from wait4. It rebuilt the bundle byte for byte: "
        f"{'yes' if same else 'NO'} (same SHA-256 as at the close). The baseline is "
        "`COPY (SELECT leaf FROM leaves WHERE org = … AND year = … ORDER BY org, year, idx) "
        "TO STDOUT "
        "(FORMAT binary)` through asyncpg `copy_from_query`, every chunk into hashlib.sha256, "
        "with sorting off in its session as in the build's reads (so both read the primary "
        "key in order)."
    )
    return res.as_dict()


def _extract(zip_path: Path, into: Path) -> Path:
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(into)
    (bag,) = [p for p in into.iterdir() if p.is_dir()]
    return bag


async def offline_verify(b: Bench) -> dict[str, Any]:
    arc = await ensure_archive(b)
    res = Result("offline_verify", f"Offline verify: the bundle of {arc.entries:,} entries")
    bag = await asyncio.to_thread(_extract, arc.zip_path, b.work / f"unpacked-{time.time_ns()}")
    python = infra.python_outside_venv()
    script, zip_arg = str(bag / "data" / "verify.py"), str(arc.zip_path)
    variants = [
        # What an auditor runs with a bare Python, and with orjson installed (the
        # verifier uses it when it can import it; -I still sees a venv's packages).
        ("standard library only", python, [python, "-I", script, zip_arg, "--stdlib-json"]),
        ("with orjson", sys.executable, [sys.executable, "-I", script, zip_arg]),
    ]
    # Each variant ROUNDS times, alternately; the median time (and the largest peak
    # RSS) is reported, as for the build: one run's time moved by a tenth between
    # runs of the same code.
    rounds: list[list[infra.Timed]] = [[] for _ in variants]
    for i in range(ROUNDS):
        for (label, _, argv), done in zip(variants, rounds, strict=True):
            b.log(f"offline_verify ({label}), round {i + 1}: {' '.join(argv)}")
            done.append(
                await asyncio.to_thread(infra.run_timed, argv, b.env, b.sizes.scenario_timeout)
            )
    runs = [_median_run(done) for done in rounds]
    argv = variants[0][2]
    payload = sorted(str(p) for p in (bag / "data").rglob("*") if p.is_file())
    base = await asyncio.to_thread(infra.run_timed, ["sha256sum", *payload], b.env, 600)
    if base.returncode != 0:
        raise RuntimeError(f"sha256sum failed: {base.output[-1000:]}")
    payload_bytes = sum(Path(p).stat().st_size for p in payload)
    ok = [r.returncode == 0 and "VERIFIED" in r.output for r in runs]
    res.table(
        f"{arc.zip_path.stat().st_size:,} bytes zip, {payload_bytes:,} bytes payload "
        f"in {len(payload)} files",
        [
            *(
                {
                    "": f"python3 -I data/verify.py <zip>, {label}",
                    "seconds": round(run.seconds, 2),
                    "peak RSS MiB": round(run.max_rss_mib, 1),
                    "result": "VERIFIED" if good else f"exit {run.returncode}",
                }
                for (label, _, _), run, good in zip(variants, runs, ok, strict=True)
            ),
            {
                "": "sha256sum of the payload files",
                "seconds": round(base.seconds, 2),
                "peak RSS MiB": round(base.max_rss_mib, 1),
                "result": "",
            },
        ],
    )
    for (label, _, _), run in zip(variants, runs, strict=True):
        res.target(
            f"≤ {VERIFY_LIMIT_S:g} s ({label})",
            f"{run.seconds:.2f} s",
            run.seconds <= VERIFY_LIMIT_S,
        )
    res.target("the bundle verifies", "yes" if all(ok) else "no", all(ok))
    res.note(
        "Ratio to sha256sum: "
        + ", ".join(
            f"{ratio(run.seconds, base.seconds):.1f} × ({label})"
            for (label, _, _), run in zip(variants, runs, strict=True)
        )
        + ". Pythons: "
        + ", ".join(
            (
                f"`.venv/bin/python` ({_version(py)})"
                if py == sys.executable
                else f"`{Path(py).name}` outside the venv ({_version(py)})"
            )
            + f" {label}"
            for label, py, _ in variants
        )
        + "; run isolated (-I) on the zip, which the verifier unpacks itself; it checks the "
        "entries in pieces, one worker process a CPU, as a thread unpacks them. sha256sum "
        "reads the already unpacked payload (page cache warm for all)."
    )
    if b.profile:
        b.log("offline_verify: profiling another run with py-spy")
        res.profile = await profile_command(argv, b.env, b.work / "verify.prof", 3600)
        res.note("Profiled with py-spy in an extra run after the measured one.")
    res.note(
        f"{ROUNDS} runs of each, alternately; the table gives the median times ("
        + "; ".join(
            f"{label}: " + ", ".join(f"{r.seconds:.2f}" for r in done) + " s"
            for (label, _, _), done in zip(variants, rounds, strict=True)
        )
        + ") and the largest peak RSS."
    )
    for run, good in zip(runs, ok, strict=True):
        if not good:
            res.note("verify.py output (tail):\n\n```\n" + run.output[-2000:] + "\n```")
    return res.as_dict()


def _median_run(runs: list[infra.Timed]) -> infra.Timed:
    """The run of median time, with the largest peak RSS of all; a failed run wins,
    so that a failure is never hidden by the others."""
    failed = [r for r in runs if r.returncode != 0 or "VERIFIED" not in r.output]
    if failed:
        return failed[0]
    middle = median(runs, key=lambda r: r.seconds)
    return dataclasses.replace(middle, max_rss_mib=max(r.max_rss_mib for r in runs))


def _version(python: str) -> str:
    try:
        out = subprocess.run([python, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip()
