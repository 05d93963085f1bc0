"""A circuit breaker for calls to a server that may stop answering (a leaf: standard library only).

While Redis is paused, each call waits for its socket timeout. A request that makes several such
calls (a cache read, a publish, a task enqueue) would wait for each in turn, and so would every
request behind it. After one call failed, a breaker makes the calls of the next `seconds` fail at
once, in this process, and the callers take their fallback: a request's wait is then bounded by
one timeout, not by the number of calls it makes (tests/reliability/test_faults.py, REDIS-PAUSE).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit


class Breaker:
    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self.failed_until = 0.0

    @property
    def open(self) -> bool:
        """True for `seconds` after the last failure: do not call, take the fallback."""
        return time.monotonic() < self.failed_until

    def trip(self) -> None:
        self.failed_until = time.monotonic() + self.seconds

    def close(self) -> None:
        """The server answered again (a PING after a reconnect): call it from now on, without
        waiting out the second the last failure began."""
        self.failed_until = 0.0


_by_server: dict[str, Breaker] = {}


def for_server(url: str, seconds: float = 1.0) -> Breaker:
    """The breaker of the server at `url`, shared by every client of it in this process.

    The cache, the channel layer and the Celery broker usually share one Redis: once one of them
    timed out, the others skip it too instead of each waiting for its own timeout in the same
    request. Keyed by host and port (or socket path), not by database number.
    """
    parts = urlsplit(url if "//" in url else f"redis://{url}")
    key = f"{parts.hostname}:{parts.port or ''}" if parts.hostname else parts.path
    found = _by_server.get(key)
    if found is None:
        found = _by_server[key] = Breaker(seconds)
    return found
