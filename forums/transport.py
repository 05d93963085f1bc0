"""What the gateway needs from daphne's websocket transport that ASGI cannot express.

1. **A bounded send buffer.** The gateway's `send` never waits: daphne hands each frame to
   Twisted, whose transport buffers whatever the client does not read, without limit
   (django/daphne#170). One stalled tab in a busy room would grow the process's memory for as
   long as it stays connected. Twisted tells a registered streaming producer when a transport's
   unsent data passes its `bufferSize` (64 KiB) and again when it drains. Every websocket gets
   a `SendWatch` as its producer: a socket that stays over that mark for SLOW_CONSUMER_SECONDS
   is sent close code 4408 (queued behind what it did not read) and aborted
   CLOSE_GRACE_SECONDS later. So one socket's unsent data is bounded by what its rooms send in
   SLOW_CONSUMER_SECONDS.
2. **RFC close codes.** Autobahn's `sendClose` (behind daphne's `serverClose`) accepts only 1000
   and 3000-4999; the gateway's 1009 for a frame over 64 KiB raised inside daphne and reached
   the client as 1011. RFC 6455's other server codes now go through `sendCloseFrame`.
3. **1012 on shutdown.** On SIGTERM (a deploy, a restart) daphne stops its reactor and the
   sockets drop without a close frame (clients see 1006). A "before shutdown" trigger stops
   listening (a reconnect then reaches the restarted process, not this dying one), sends every
   open socket 1012 ("service restart"), and daphne waits CLOSE_GRACE_SECONDS for the frames
   to go out.

Either way the client reconnects with its jittered backoff and catches up by `seq`
(docs/realtime-protocol.md, close codes; tests/reliability/test_faults.py measures both).

`install()` runs at import of the gateway. It acts only where daphne's websocket protocol is
loaded (daphne imports it before the application); the in-process test communicators have no
transport.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import Any

logger = logging.getLogger("forums.gateway")

CLOSE_SLOW_CONSUMER = 4408
CLOSE_SERVICE_RESTART = 1012
SLOW_CONSUMER_SECONDS = 5.0
CLOSE_GRACE_SECONDS = 1.0

# RFC 6455 section 7.4.1 codes a server may send, other than 1000 (which autobahn accepts).
RFC_SERVER_CODES = frozenset({1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})

_open: weakref.WeakSet[Any] = weakref.WeakSet()  # the open websocket protocols


class SendWatch:
    """A Twisted streaming producer (IPushProducer) for one websocket's transport."""

    def __init__(self, protocol: Any, reactor: Any) -> None:
        self.protocol = protocol
        self.reactor = reactor
        self.timer: Any = None

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's interface
        if self.timer is None:
            self.timer = self.reactor.callLater(SLOW_CONSUMER_SECONDS, self._expire)

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's interface
        self._cancel()

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's interface
        self._cancel()

    def _cancel(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _expire(self) -> None:
        self.timer = None
        transport = self.protocol.transport
        if transport is None:
            return
        logger.warning(
            "slow consumer closed",
            extra={"client": str(getattr(self.protocol, "client_addr", "")), "code": 4408},
        )
        self.protocol.sendClose(code=CLOSE_SLOW_CONSUMER)
        self.reactor.callLater(CLOSE_GRACE_SECONDS, transport.abortConnection)


def _watch(protocol: Any, reactor: Any) -> None:
    """Make a SendWatch the producer of an open websocket's transport."""
    _open.add(protocol)
    transport = protocol.transport
    if transport is None or not hasattr(transport, "registerProducer"):
        return
    # The HTTP channel that did the upgrade registered itself; it is done with this transport.
    if getattr(transport, "producer", None) is not None:
        transport.unregisterProducer()
    transport.registerProducer(SendWatch(protocol, reactor), True)


def _close_all(reactor: Any) -> Any:
    from twisted.internet import defer, tcp

    # Stop accepting first: a client told 1012 that reconnected within the grace period would
    # reach this dying process, be dropped again and lose a backoff step for nothing.
    for reader in list(reactor.getReaders()):
        if isinstance(reader, tcp.Port):
            reader.stopListening()
    protocols = [p for p in _open if p.state == p.STATE_OPEN]
    for protocol in protocols:
        try:
            protocol.sendCloseFrame(code=CLOSE_SERVICE_RESTART, isReply=False)
        except Exception:
            logger.warning("close on shutdown failed", exc_info=True)
    logger.info("shutting down: sockets closed with 1012", extra={"sockets": len(protocols)})
    done: Any = defer.Deferred()
    reactor.callLater(CLOSE_GRACE_SECONDS, done.callback, None)
    return done


def install() -> None:
    """Watch every websocket daphne opens in this process (once; a no-op outside daphne)."""
    module = sys.modules.get("daphne.ws_protocol")
    # daphne.server installs its reactor at import; importing twisted.internet.reactor where
    # none is installed would install a default one as a side effect, so only look it up.
    reactor = sys.modules.get("twisted.internet.reactor")
    if module is None or reactor is None:
        return
    cls = module.WebSocketProtocol
    if getattr(cls, "minga_transport", False):
        return

    original = cls.onOpen

    def on_open(self: Any) -> None:
        original(self)
        try:
            _watch(self, reactor)
        except Exception:
            logger.warning("send watch not installed", exc_info=True)

    original_close = cls.serverClose

    def server_close(self: Any, code: int | None = None) -> None:
        # Autobahn's sendClose refuses the RFC 6455 codes an application may send other than
        # 1000 (it allows 3000-4999 only), so the gateway's 1009 "too big" became a traceback
        # and a 1011 close. Send those through sendCloseFrame, which takes any code.
        if code in RFC_SERVER_CODES:
            self.sendCloseFrame(code=code, isReply=False)
            return
        original_close(self, code)

    cls.onOpen = on_open
    cls.serverClose = server_close
    cls.minga_transport = True
    reactor.addSystemEventTrigger("before", "shutdown", _close_all, reactor)
