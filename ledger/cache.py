"""Lookups remembered for a while, each key looked up once however many ask at once.

The server remembers who a token is (30 s) and which orgs exist (60 s), so a
busy route does not pay a query a request. When a remembered value expires, every
request in flight for that key misses at the same moment: 64 concurrent posters
made 64 lookups together every 30 s, which held up every answer for about a
quarter of a second. Here the first miss looks the key up and the others wait
for its answer.

    tokens = Remembered[str, Principal | None](30.0)
    principal = await tokens.get(token, look_up)  # look_up(token) -> Principal | None
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """Values by key, each kept ``seconds`` after it was looked up.

    A lookup that raises is not remembered: its error goes to everyone who asked
    while it ran, and the next ask looks again. A caller that is cancelled while
    waiting does not cancel the lookup the others wait for.
    """

    def __init__(self, seconds: float, *, max_keys: int = 10_000) -> None:
        self.seconds, self.max_keys = seconds, max_keys
        self._values: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, look_up: Callable[[K], Awaitable[V]]) -> V:
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        loading = self._loading.get(key)
        # (A lookup left by another event loop, one a test closed, is not waited for.)
        if loading is None or loading.get_loop() is not asyncio.get_running_loop():
            loading = asyncio.ensure_future(self._look_up(key, look_up))
            loading.add_done_callback(_retrieved)
            self._loading[key] = loading
        return await asyncio.shield(loading)

    async def _look_up(self, key: K, look_up: Callable[[K], Awaitable[V]]) -> V:
        try:
            value = await look_up(key)
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]
        if len(self._values) >= self.max_keys:
            self._values.clear()
        self._values[key] = (time.monotonic() + self.seconds, value)
        return value


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a failed lookup's error as seen: its askers may all have gone."""
    if not future.cancelled():
        future.exception()
