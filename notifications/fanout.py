"""The fan-out's background sending: live frames go out while the next batch is written.

`services.write_notifications` commits one batch of inbox rows at a time. Before this, each
batch's on-commit hook sent its frames itself and the next batch's INSERT waited for them (a third
of a 10,000-member announcement, docs/performance.md, H4). Now the hook only hands the frames of
the rows just committed to the process's publisher loop (`bus.publish_many_soon`: one thread and
one channel-layer connection per process) and returns. Frames still leave only after their rows
commit: the hook runs on commit, never on rollback.

The sender is used when the fan-out runs its own transactions (a worker's `notify_task`, a
script). Inside a caller's transaction nothing commits before the caller does, so the inline
fan-out keeps `bus.publish_many_on_commit`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from . import bus

logger = logging.getLogger("notifications.fanout")

# How long the end of a fan-out waits for its last frames before giving up on them (logged).
DRAIN_SECONDS = 60.0


class Sender:
    """The batches of frames one fan-out handed over, published in the background.

    Use as a context manager around the batches: leaving it waits until every submitted batch
    has been handed to the channel layer, so a worker or a script that ends right after the
    fan-out loses no frame.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, Future[None]]] = []
        self.sent = 0

    def __enter__(self) -> Sender:
        return self

    def submit(self, items: list[tuple[str, Mapping[str, Any]]]) -> None:
        """Queue `(group, frame)` pairs of committed rows; returns at once."""
        if not items:
            return
        future = bus.publish_many_soon(items)
        if future is None:  # published already (no publisher loop for this layer)
            self.sent += len(items)
        else:
            self._pending.append((len(items), future))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for count, future in self._pending:
            try:
                future.result(timeout=DRAIN_SECONDS)
                self.sent += count
            except Exception:
                logger.warning("fan-out frames not sent", exc_info=True)
        self._pending.clear()
