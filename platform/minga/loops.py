"""Things that belong to one asyncio event loop, closed with it (a leaf: the standard library only).

A Redis client, a background task or a channel-layer subscription belongs to the loop that made
it. Under daphne there is one loop per process; the test suite makes one per test. What such an
object holds must be released before its loop goes, or a garbage-collected client warns about an
unclosed connection and a pending task about being destroyed. channels_redis does the same for
its own connections.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Awaitable, Callable

logger = logging.getLogger("minga.loops")

_closers: dict[asyncio.AbstractEventLoop, list[Callable[[], Awaitable[None]]]] = {}


def close_with(loop: asyncio.AbstractEventLoop, aclose: Callable[[], Awaitable[None]]) -> None:
    """Run `await aclose()` on `loop` just before `loop.close()` closes it."""
    closers = _closers.get(loop)
    if closers is not None:
        closers.append(aclose)
        return
    _closers[loop] = [aclose]
    original = loop.close

    def close(self: asyncio.AbstractEventLoop) -> None:
        for closer in _closers.pop(loop, []):
            if loop.is_closed() or loop.is_running():
                break
            try:
                loop.run_until_complete(closer())
            except Exception:
                logger.warning("closing a per-loop resource failed", exc_info=True)
        self.close = original  # type: ignore[method-assign]
        original()

    loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]
