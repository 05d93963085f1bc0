"""The fan-out's background sender: live frames go out while the next batch is written.

`services.write_notifications` commits one batch of inbox rows at a time. Before this sender,
each batch's on-commit hook sent its frames itself and the next batch's INSERT waited for them
(a third of a 10,000-member announcement, docs/performance.md, H4). Now the hook only hands the
frames of the rows just committed to a thread that owns an event loop (and so one channel-layer
connection for the whole fan-out), and returns. Frames still leave only after their rows commit:
the hook runs on commit, never on rollback.

The sender is used when the fan-out runs its own transactions (a worker's `notify_task`, a
script). Inside a caller's transaction nothing commits before the caller does, so the inline
fan-out keeps `bus.publish_many_on_commit`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from . import bus

logger = logging.getLogger("notifications.fanout")

# How long the end of a fan-out waits for its last frames before giving up on them (logged).
DRAIN_SECONDS = 60.0


class Sender:
    """A thread with its own event loop that publishes the batches of frames handed to it.

    Use as a context manager around the batches: leaving it waits until every submitted batch
    has been handed to the channel layer, so a worker or a script that ends right after the
    fan-out loses no frame, then closes the loop (and with it the layer's connections).
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pending: list[Future[None]] = []
        self.sent = 0

    def __enter__(self) -> Sender:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="notifications-fanout-sender", daemon=True
        )
        self._thread.start()
        return self

    def submit(self, items: list[tuple[str, Mapping[str, Any]]]) -> None:
        """Queue `(group, frame)` pairs of committed rows; returns at once."""
        if not items:
            return
        if self._loop is None or not self._loop.is_running():
            # Not entered, or already left (a hook that fired late): send here rather than drop.
            from asgiref.sync import async_to_sync

            async_to_sync(bus.apublish_many)(items)
            self.sent += len(items)
            return
        self._pending.append(asyncio.run_coroutine_threadsafe(self._send(items), self._loop))

    async def _send(self, items: list[tuple[str, Mapping[str, Any]]]) -> None:
        await bus.apublish_many(items)
        self.sent += len(items)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        for future in self._pending:
            try:
                future.result(timeout=DRAIN_SECONDS)
            except Exception:
                logger.warning("fan-out frames not sent", exc_info=True)
        self._pending.clear()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        # channels_redis closes the connections it opened on this loop when the loop closes.
        loop.close()
        self._loop = self._thread = None
