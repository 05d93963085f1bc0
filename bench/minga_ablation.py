"""Minga with two proposed gateway changes applied in memory, to measure them before they are made.

`daphne bench.minga_ablation:application` serves minga.asgi's application with:

1. `GatewayConsumer.dispatch` relaying `bus.event` messages without Channels' per-message
   `aclose_old_connections()`: a hop to the process's single thread-sensitive executor for every
   delivered frame, per recipient, queued behind (and delaying) every ORM call of the process.
   The relay never touches the ORM; every ORM call in the gateway goes through
   `database_sync_to_async`, which closes stale connections itself.
2. `presence` frames coalesced per room group: at most one broadcast per group per
   `PRESENCE_COALESCE_SECONDS` in each process, carrying the latest list. The frame is the whole
   online list (idempotent, order-free), so the last one says everything the skipped ones did;
   without this, N members joining a room cost sum(k) = N^2/2 frames of up to N summaries each.

Measured as "minga-x"; the changes proposed for forums/consumers.py are in docs/performance.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from minga.asgi import application

from forums.consumers import GatewayConsumer
from notifications import bus

PRESENCE_COALESCE_SECONDS = 1.0

_dispatch = GatewayConsumer.dispatch
_apublish = bus.apublish
_latest: dict[str, Mapping[str, Any]] = {}
_flushes: set[asyncio.Task[None]] = set()


async def dispatch(self: GatewayConsumer, message: dict[str, Any]) -> None:
    if message.get("type") == bus.MESSAGE_TYPE:
        await self.bus_event(message)
        return
    await _dispatch(self, message)


async def _flush(group: str) -> None:
    await asyncio.sleep(PRESENCE_COALESCE_SECONDS)
    frame = _latest.pop(group, None)
    if frame is not None:
        await _apublish(group, frame)


async def apublish(group: str, frame: Mapping[str, Any]) -> None:
    if frame.get("type") != "presence":
        await _apublish(group, frame)
        return
    pending = group in _latest
    _latest[group] = frame
    if not pending:
        task = asyncio.get_running_loop().create_task(_flush(group))
        _flushes.add(task)
        task.add_done_callback(_flushes.discard)


GatewayConsumer.dispatch = dispatch  # type: ignore[method-assign]
bus.apublish = apublish  # type: ignore[assignment]

__all__ = ["application"]
