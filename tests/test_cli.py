"""The command line: a failure of its surroundings (the database, a file, the key)
is one line and exit status 2, never a traceback; and no command but the server
makes a signing key."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from ledger import access
from ledger.errors import InvalidInput
from ledger.settings import Settings
from tests.conftest import Org, _with_database, fund_entry
from tests.test_integrity import run_cli


def _settings(tmp_path: Path, origin: str) -> Settings:
    return Settings.from_env(
        {"GONGKAI_DATA_DIR": str(tmp_path / "state"), "GONGKAI_ORIGIN": origin}
    )


async def test_no_command_makes_a_signing_key_where_there_is_none(
    client: Any, org: Org, dsn: str, settings: Settings, tmp_path: Path
) -> None:
    """``publish`` made a new key where none was found and signed the instance's log
    with it: a checkpoint no verifier knows, that cannot be taken back."""
    r = await client.post(f"/api/v1/orgs/{org.code}/entries", json=fund_entry("PWF"),
                          headers=org.auth())  # fmt: skip
    assert r.status_code == 201, r.text
    elsewhere = _settings(tmp_path, settings.origin)
    for args in (
        ("publish", "--org", org.code, "--quarter", "2026-Q1"),
        ("verify", "--org", org.code),
        ("archive", "build", "--org", org.code, "--year", "2026"),
    ):
        out = run_cli(dsn, elsewhere, *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "No signing key at" in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert not elsewhere.signing_key.exists()
    size = (await client.get(f"/api/v1/orgs/{org.code}/logs/2026/checkpoint")).text.split("\n")[1]
    assert size == "1"  # nothing published


@pytest.mark.parametrize(
    ("dsn_of", "words"),
    [
        (lambda dsn: "postgresql://postgres@127.0.0.1:1/test", "cannot reach the database"),
        (
            lambda dsn: "postgresql://postgres@/test?host=/nonexistent/gongkai",
            "cannot reach the database",
        ),
        # The embedded server's DSN names its socket's folder in the query string.
        (lambda dsn: _with_database(dsn, "gongkai_no_such_db"), "the database refused"),
        (lambda dsn: "postgresql://[::1", "DATABASE_URL does not parse"),
    ],
    ids=["closed port", "no socket", "no such database", "malformed"],
)
def test_a_database_out_of_reach_is_one_line(
    dsn: str, settings: Settings, dsn_of: Any, words: str
) -> None:
    """One line: Piccolo's own warning (two lines, in colour) came before it."""
    out = run_cli(dsn_of(dsn), settings, "migrate")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith(f"error: {words}"), out.stderr
    assert out.stderr.count("\n") == 1, out.stderr


def test_files_that_are_not_what_they_should_be_are_one_line(
    dsn: str, settings: Settings, tmp_path: Path
) -> None:
    text = tmp_path / "note.txt"
    text.write_text("not json, not a key")
    cases = [
        (("verify", "--vkey", str(tmp_path / "missing.vkey")), "missing.vkey"),
        (("verify", "--vkey", str(text)), "not a verifier key"),
        (("calendar", "load", str(text)), "not a JSON holiday schedule"),
        (("calendar", "load", str(tmp_path)), str(tmp_path)),
    ]
    for args, words in cases:
        out = run_cli(dsn, settings, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert words in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ("archive", "build", "--org", "x", "--year", "99999999999"),
        ("verify", "--year", "0"),
        ("serve", "--port", "99999"),
    ],
)
def test_numbers_out_of_range_are_refused_by_the_parser(
    dsn: str, settings: Settings, args: tuple[str, ...]
) -> None:
    out = run_cli(dsn, settings, *args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "must be" in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("name", ["县政府\n办公室", "县政府\t", "县政府\r", "县政府\u2028", " "])
def test_an_org_name_is_one_line_of_text(dsn: str, settings: Settings, name: str) -> None:
    """The name is one line of each archive bundle's bag-info.txt (Source-Organization)."""
    out = run_cli(dsn, settings, "org", "create", "cli-name-check", "--name", name)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stdout + out.stderr
    assert "org name must be" in out.stderr, out.stderr


async def test_an_org_name_holds_no_nul() -> None:
    with pytest.raises(InvalidInput, match="one line without control characters"):
        await access.create_org("cli-name-check", "县政府\x00")


def test_a_command_says_only_what_it_did(dsn: str, settings: Settings) -> None:
    """Piccolo logged "Running Postgres version …" (with the version misread) on
    every command's first query."""
    out = run_cli(dsn, settings, "migrate")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "migrations applied", out.stdout
    assert "Running Postgres" not in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("replica", "words"),
    [
        ("postgresql://postgres@127.0.0.1:1/test", "DATABASE_REPLICA_URL: cannot reach"),
        ("notadsn", "DATABASE_REPLICA_URL must start with postgresql://"),
    ],
    ids=["replica out of reach", "replica malformed"],
)
def test_the_server_does_not_start_on_a_replica_it_cannot_use(
    dsn: str, settings: Settings, replica: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It printed "serving", then a traceback of the app's start, and exited 3."""
    monkeypatch.setenv("DATABASE_REPLICA_URL", replica)
    with socket.socket() as probe:  # a port free now: the server must not get to it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = run_cli(dsn, settings, "serve", "--port", str(port))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "serving" not in out.stdout, out.stdout
    assert out.stderr.startswith(f"error: {words}") and out.stderr.count("\n") == 1, out.stderr


def test_the_server_does_not_start_where_it_cannot_listen(dsn: str, settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli(dsn, settings, "serve", "--port", str(port))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "serving" not in out.stdout, out.stdout
    assert out.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}"), out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
