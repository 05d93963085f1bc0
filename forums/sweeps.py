"""daphne's two periodic sweeps, made to cost what changed instead of every connection.

daphne 4.2's `Server` walks every connection it holds every second (`application_checker`:
reap applications that ended; cancel one that outlives its disconnect by
`application_close_timeout`) and every two seconds (`timeout_checker`: each protocol's
`check_timeouts`, which pings an open websocket idle for `ping_interval`, closes one open longer
than `websocket_timeout`, rejects one stuck connecting, and times out a slow HTTP response).
With 5,000 idle sockets per process those two walks were about two thirds of the process's idle
CPU (py-spy; docs/performance.md, "H3 idle: daphne's sweeps").

Here, with the same outcomes at the same ticks:

- **The application sweep** looks only at the connections whose application ended or that
  disconnected, noted when it happens (a done-callback on the application's future, and
  daphne's `protocol_disconnected`). A disconnected one stays noted until daphne's own body
  (`_reap`, a copy) drops it, so its application is still cancelled after
  `application_close_timeout`.
- **The timeout sweep** keeps a heap of when each connection next needs a look: an open
  websocket when its ping falls due (`last_ping + ping_interval`, read again at each look:
  every client frame moves it) or its `websocket_timeout` ends, whichever comes first; anything
  else (connecting, closing, HTTP) at every tick, as daphne does. The heap holds weak
  references, so a closed connection is not kept alive until its entry's time.

The first tick of each sweep walks every connection, so whatever connected before `install`
is covered. A sweep that raises is logged and the next tick still comes (daphne's would stop).
`install` acts on daphne 4.2 only (its bodies are what `_reap` and `next_look` follow; a test
holds their source to the copy's).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
import weakref
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("forums.sweeps")
# daphne's own logger for the lines its application sweep writes, so they go where they went.
daphne_logger = logging.getLogger("daphne.server")

APPLICATION_TICK_SECONDS = 1.0  # daphne's Server.run: application_checker every second
TIMEOUT_TICK_SECONDS = 2.0  # and timeout_checker every two


@dataclass
class Sweeps:
    """What one daphne `Server`'s sweeps must look at."""

    # Connections whose application ended or that disconnected, for the application sweep.
    changed: set[Any] = field(default_factory=set)
    # (when, tie-breaker, the connection) for the timeout sweep.
    due: list[tuple[float, int, weakref.ref[Any]]] = field(default_factory=list)
    order: itertools.count[int] = field(default_factory=itertools.count)
    walked_applications: bool = False
    walked_timeouts: bool = False

    def look_at(self, protocol: Any, when: float) -> None:
        heapq.heappush(self.due, (when, next(self.order), weakref.ref(protocol)))


def of(server: Any) -> Sweeps:
    sweeps = server.__dict__.get("minga_sweeps")
    if sweeps is None:
        sweeps = server.minga_sweeps = Sweeps()
    return sweeps


def _reap(server: Any, protocol: Any, details: dict[str, Any]) -> None:
    """daphne 4.2's `application_checker` body for one connection (copied, ruff's style aside)."""
    disconnected = details.get("disconnected")
    application_instance = details.get("application_instance")
    # First, see if the protocol disconnected and the app has taken too long to close up
    if (
        disconnected
        and time.time() - disconnected > server.application_close_timeout
        and application_instance
        and not application_instance.done()
    ):
        daphne_logger.warning(
            "Application instance %r for connection %s took too long to shut down and was killed.",
            application_instance,
            repr(protocol),
        )
        application_instance.cancel()
    # Then see if the app is done and we should reap it
    if application_instance and application_instance.done():
        try:
            exception = application_instance.exception()
        except (CancelledError, asyncio.CancelledError):
            # Future cancellation. We can ignore this.
            pass
        else:
            if exception:
                if isinstance(exception, KeyboardInterrupt):
                    # Protocol is asking the server to exit (likely during test)
                    server.stop()
                else:
                    daphne_logger.error(
                        "Exception inside application: %s", exception, exc_info=exception
                    )
                    if not disconnected:
                        protocol.handle_exception(exception)
        del server.connections[protocol]["application_instance"]
        application_instance = None
    # Check to see if protocol is closed and app is closed so we can remove it
    if not application_instance and disconnected:
        del server.connections[protocol]


def application_sweep(server: Any) -> None:
    """One tick of the application sweep: the connections noted since the last one."""
    sweeps = of(server)
    if sweeps.walked_applications:
        protocols = list(sweeps.changed)
    else:
        protocols, sweeps.walked_applications = list(server.connections), True
    for protocol in protocols:
        details = server.connections.get(protocol)
        if details is not None:
            _reap(server, protocol, details)
        details = server.connections.get(protocol)
        if details is None or "disconnected" not in details:
            # Gone, or reaped while still connected: its disconnect notes it again.
            sweeps.changed.discard(protocol)
        else:
            sweeps.changed.add(protocol)  # its application may outlive the close timeout


def next_look(server: Any, protocol: Any, now: float) -> float:
    """When `protocol.check_timeouts` may next act (daphne 4.2's conditions): an open websocket's
    ping or end of life; anything else at the next tick."""
    next_tick = now + TIMEOUT_TICK_SECONDS / 2  # due before the next tick's clock
    if getattr(protocol, "state", None) != getattr(protocol, "STATE_OPEN", object()):
        return next_tick
    when = protocol.last_ping + server.ping_interval
    if server.websocket_timeout >= 0:
        when = min(when, protocol.socket_opened + server.websocket_timeout)
    return max(when, next_tick)


def timeout_sweep(server: Any, now: float) -> None:
    """One tick of the timeout sweep: `check_timeouts` of the connections due by `now`."""
    sweeps = of(server)
    if not sweeps.walked_timeouts:
        sweeps.walked_timeouts = True
        for protocol in list(server.connections):
            sweeps.look_at(protocol, 0.0)
    # Strictly before: daphne acts once a limit is passed, not when it is reached.
    while sweeps.due and sweeps.due[0][0] < now:
        _when, _order, ref = heapq.heappop(sweeps.due)
        protocol = ref()
        if protocol is None or protocol not in server.connections:
            continue
        protocol.check_timeouts()
        sweeps.look_at(protocol, next_look(server, protocol, now))


def install(server_class: Any, reactor: Any) -> None:
    """Put the sweeps above in place of daphne's on `server_class` (daphne.server.Server), once."""
    if getattr(server_class, "minga_sweeps_installed", False):
        return
    connected = server_class.protocol_connected
    disconnected = server_class.protocol_disconnected
    create = server_class.create_application

    def protocol_connected(self: Any, protocol: Any) -> None:
        connected(self, protocol)
        sweeps = of(self)
        if sweeps.walked_timeouts:  # else the first tick's walk finds it
            sweeps.look_at(protocol, time.time())

    def protocol_disconnected(self: Any, protocol: Any) -> None:
        disconnected(self, protocol)
        of(self).changed.add(protocol)

    def create_application(self: Any, protocol: Any, scope: dict[str, Any]) -> Any:
        queue = create(self, protocol, scope)
        instance = self.connections.get(protocol, {}).get("application_instance")
        if instance is not None:
            changed = of(self).changed
            instance.add_done_callback(lambda _future: changed.add(protocol))
        return queue

    def application_checker(self: Any) -> None:
        try:
            application_sweep(self)
        except Exception:
            logger.exception("daphne's application sweep failed")
        finally:
            reactor.callLater(APPLICATION_TICK_SECONDS, self.application_checker)

    def timeout_checker(self: Any) -> None:
        try:
            timeout_sweep(self, time.time())
        except Exception:
            logger.exception("daphne's timeout sweep failed")
        finally:
            reactor.callLater(TIMEOUT_TICK_SECONDS, self.timeout_checker)

    server_class.protocol_connected = protocol_connected
    server_class.protocol_disconnected = protocol_disconnected
    server_class.create_application = create_application
    server_class.application_checker = application_checker
    server_class.timeout_checker = timeout_checker
    server_class.minga_sweeps_installed = True
