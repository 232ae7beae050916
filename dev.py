#!/usr/bin/env python3
"""Set up and run Gongkai from a fresh clone with nothing but Python 3.11+.

    python3 dev.py demo      # the service with demo data, on an embedded PostgreSQL
    python3 dev.py test      # the whole test suite (embedded PostgreSQL unless DATABASE_URL)
    python3 dev.py bench     # the benchmarks (see BENCHMARKS.md)
    python3 dev.py gongkai … # any gongkai command inside the project's environment

The first run creates ``.venv`` and installs the locked dependencies
(``requirements.lock``); later runs reuse it until the lock file changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".gongkai-lock-sha256"


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - runs before the venv exists
        sys.exit("Gongkai needs Python 3.11 or newer")
    digest = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    if not (BIN / "python").exists():
        print("creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print("installing locked dependencies …", flush=True)
    subprocess.run([*pip, "-r", str(LOCK)], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(digest)


def run(argv: list[str], *, here: bool = False) -> int:
    """Run ``argv`` from the checkout, or (``here``) from where the user is, so that
    relative paths in its arguments mean what they say; either way the data folder
    defaults to the checkout's, the one ``dev.py demo`` uses.

    The command takes this process's place (where the system allows), so a signal
    sent to ``dev.py`` (a stop, ``kill``) reaches the server itself, which then stops
    its embedded PostgreSQL; a child left behind would keep both running.
    """
    os.environ.setdefault("GONGKAI_DATA_DIR", str(ROOT / ".gongkai"))
    if not here:
        os.chdir(ROOT)
    sys.stdout.flush()
    if os.name == "posix":
        os.execv(argv[0], argv)
    return subprocess.call(argv)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "test", "bench", "gongkai"}:
        print(__doc__)
        return 2
    ensure_env()
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "demo":
        return run([str(BIN / "gongkai"), "serve", "--demo", *rest])
    if cmd == "test":
        return run([str(BIN / "python"), "-m", "pytest", *rest])
    if cmd == "bench":
        return run([str(BIN / "python"), "-m", "bench", *rest])
    return run([str(BIN / "gongkai"), *rest], here=True)


if __name__ == "__main__":
    sys.exit(main())
