"""Schemathesis against a running ``gongkai serve --demo``: no 5xx, no response that
violates the OpenAPI document. All phases, a fixed seed, a bounded time
(``GONGKAI_SCHEMATHESIS_SECONDS``, default 90)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from ledger import access
from ledger.settings import Settings
from tests.conftest import ROOT, free_port, start_server, wait_ready


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    dsn: str, pool: asyncpg.Pool, settings: Settings, tmp_path: Path, demo: str
) -> None:
    # ``demo`` first: the run's demo year (an earlier year) must be loaded before the
    # server's --demo loads this year, or the demo orgs' logs would begin after it.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(dsn, settings, port, "--demo", env={"GONGKAI_PUBLIC_RATE_LIMIT": "0"})
    try:
        await wait_ready(base, proc)
        token = await access.create_token("sz-epb", "admin", "schemathesis.admin")
        seconds = os.environ.get("GONGKAI_SCHEMATHESIS_SECONDS", "90")
        env = {
            **os.environ,
            "ST_TOKEN": token,
            "ST_YEAR": str(dt.date.today().year),
        }
        st = Path(sys.executable).with_name("st")
        result = subprocess.run(
            [
                str(st),
                "--config-file",
                str(ROOT / "tests" / "schemathesis.toml"),
                "run",
                f"{base}/schema/openapi.json",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-time",
                seconds,
                "--max-examples",
                os.environ.get("GONGKAI_SCHEMATHESIS_EXAMPLES", "25"),
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=float(seconds) + 240,
            cwd=tmp_path,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    tail = result.stdout[-6000:]
    assert result.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail.split("SUMMARY")[-1], tail
