"""Configuration from the environment (SPEC §2), read once into a frozen value."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    replica_url: str | None
    data_dir: Path
    signing_key: Path
    origin: str
    #: Public requests a client address may make per minute (0 disables the limit).
    public_rate_limit: int
    #: Opinion submissions a client address may make per minute.
    opinion_rate_limit: int
    ocid_prefix: str

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archives"

    @property
    def key_name(self) -> str:
        """The checkpoint signer's key name; it is also the vkey's name."""
        return self.origin

    def log_origin(self, org: str, year: int) -> str:
        return f"{self.origin}/{org}/{year}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ) if env is None else env
        data_dir = Path(e.get("GONGKAI_DATA_DIR") or "./.gongkai").resolve()
        key = e.get("GONGKAI_SIGNING_KEY")
        return cls(
            database_url=e.get("DATABASE_URL") or None,
            replica_url=e.get("DATABASE_REPLICA_URL") or None,
            data_dir=data_dir,
            signing_key=Path(key).resolve() if key else data_dir / "signing-key.pem",
            origin=e.get("GONGKAI_ORIGIN") or "gongkai.local",
            public_rate_limit=int(e.get("GONGKAI_PUBLIC_RATE_LIMIT") or "600"),
            opinion_rate_limit=int(e.get("GONGKAI_OPINION_RATE_LIMIT") or "10"),
            ocid_prefix=e.get("GONGKAI_OCID_PREFIX") or "ocds-gongkai",
        )
