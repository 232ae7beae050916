"""What the handlers share for the app's lifetime: pool, sequencer, signer, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
from litestar import Request

from ledger.checkpoint import NoteSigner
from ledger.sequencer import GroupCommitter
from ledger.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool
    read_pool: asyncpg.Pool
    committer: GroupCommitter
    signer: NoteSigner
    counters: dict[str, float] = field(default_factory=dict)


def runtime(request: Request[Any, Any, Any]) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt
