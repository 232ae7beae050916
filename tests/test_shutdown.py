"""Stopping: SIGTERM ends the server through a normal exit, so its exit handlers run
(the embedded PostgreSQL is stopped by one), and the embedded server's list of the
processes using it forgets the ones that are gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from ledger.embedded import _forget_dead_handles
from ledger.settings import Settings
from tests.conftest import free_port, start_server, wait_ready


async def test_sigterm_ends_the_server_through_a_normal_exit(dsn: str, settings: Settings) -> None:
    port = free_port()
    proc = start_server(dsn, settings, port)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # 143 is SystemExit(128 + SIGTERM): the interpreter exited and ran its exit
    # handlers. Killed by the signal itself, the code would be -15 and they would not.
    assert code == 128 + signal.SIGTERM, Path(proc.log_path).read_text(errors="replace")[-2000:]


def test_processes_that_are_gone_leave_the_embedded_servers_list(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([gone.pid, os.getpid()]))
    _forget_dead_handles(tmp_path)
    assert json.loads(handles.read_text()) == [os.getpid()]


def test_an_unreadable_list_is_left_alone(tmp_path: Path) -> None:
    _forget_dead_handles(tmp_path)  # no list yet
    assert not (tmp_path / ".handle_pids.json").exists()
    (tmp_path / ".handle_pids.json").write_text("not json")
    _forget_dead_handles(tmp_path)
    assert (tmp_path / ".handle_pids.json").read_text() == "not json"
