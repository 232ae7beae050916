"""What users install and run outside this checkout: the package and the compose file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_the_built_package_carries_the_migrations(tmp_path: Path) -> None:
    """The image installs the package (not editable): every migration must be in it."""
    subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q",
         "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    source = sorted(p.name for p in (ROOT / "ledger/piccolo_migrations").glob("*.py"))
    built = sorted(p.name for p in (tmp_path / "ledger/piccolo_migrations").glob("*.py"))
    assert built == source and len(source) > 5
    assert (tmp_path / "archive/verify.py").is_file() and (tmp_path / "cli.py").is_file()


def test_the_compose_file_wires_a_primary_a_replica_and_the_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["postgres"]["image"] == services["postgres-replica"]["image"] == "postgres:15"
    mounts = [v.split(":")[0] for v in services["postgres"]["volumes"]]
    assert all((ROOT / m).is_file() for m in mounts if m.startswith("./"))
    env = services["gongkai"]["environment"]
    assert env["DATABASE_URL"].endswith("@postgres:5432/gongkai")
    assert env["DATABASE_REPLICA_URL"].endswith("@postgres-replica:5432/gongkai")
    assert set(compose["volumes"]) >= {"pgdata", "pgreplica", "gongkai-data"}
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".gongkai"} <= set(ignored)
