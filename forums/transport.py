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

4. **One frame, written to every socket.** A room frame goes to every local socket of the room
   (notifications.bus.Hub). Through ASGI each of them costs daphne's reply check, an encode and
   autobahn's framing. `direct_sender` finds the daphne protocol behind a socket's ASGI `send`
   and writes the websocket frame to its transport; `frame_bytes` frames a text once for all the
   sockets it goes to (the same text object: a one-entry cache). What is skipped does nothing
   for a `websocket.send`; a socket that is not open, or that negotiated compression, gets the
   ASGI path.

5. **Less memory per socket** (docs/performance.md, "H3: where a connection's bytes go").
   daphne gives every websocket's application an `asyncio.Queue` (four deques, ~3 KiB, for
   the few messages daphne puts and Channels gets one at a time): `InputQueue` does the same
   with nothing allocated while empty. Autobahn copies its 29 protocol options from the factory
   onto every protocol instance (`_connectionMade`), which took the instance's attribute table
   past 85 entries and doubled it (3.3 KiB); the options are now read from the class, primed
   from daphne's one factory with the same values (`tcpNoDelay` excepted: autobahn reads it
   before the copy, where the read fails and Nagle's algorithm stayed on; it is applied after
   the copy, item 6). Its send queue, a deque that stays empty under daphne, is a list
   (`SendQueue`), and the handshake's raw request, response and parsed headers are dropped
   once the socket is open (`forget_handshake`).

6. **Frames go out when written.** Autobahn's own writes (pings, pongs, close frames, the ASGI
   path's frames) take `_send_now` as the hub's do (`_direct_send_data`), the colour
   highlights of its debug lines are formatted only when a line is written (`Highlight`), the
   direct write's own debug line is built only while debug logging is on, and
   Nagle's algorithm is off as autobahn's factory asks (docs/performance.md, "H3 idle and
   Nagle: autobahn's own writes").

7. **Sweeps that cost what changed.** daphne walks every connection every second and every two
   seconds (reaping, pings, timeouts); `forums.sweeps` looks only at the connections that need
   it, with the same outcomes at the same ticks.

8. **The keepalive's own path.** The ping every idle socket gets and the pong it answers skip
   autobahn's general frame code (`forums.keepalive`; docs/performance.md, "H3 idle: the
   keepalive's own path").

`install()` runs at import of the gateway. It acts only where daphne's websocket protocol is
loaded (daphne imports it before the application); the in-process test communicators have no
transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from forums import sweeps

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


_last_frame: tuple[str | None, bytes] = (None, b"")


def frame_bytes(text: str) -> bytes:
    """The websocket text frame (server to client: unmasked, one fragment) carrying `text`."""
    global _last_frame  # noqa: PLW0603 - a one-entry cache, one event loop per process
    last_text, last_bytes = _last_frame
    if text is last_text:
        return last_bytes
    from autobahn.websocket.protocol import PreparedMessage

    data = PreparedMessage(text.encode("utf-8"), False, False, True).payloadHybi
    _last_frame = (text, data)
    return data


def _write(protocol: Any, text: str) -> bool:
    """Write `text` to an open, uncompressed daphne websocket; False: use the ASGI send."""
    if (
        protocol.state != protocol.STATE_OPEN
        or protocol._perMessageCompress is not None
        or protocol.send_queue  # autobahn's own queue (chopped writes): keep the order
        or protocol.transport is None
    ):
        return False
    _send_now(protocol.transport, frame_bytes(text))
    return True


_tcp_server: type | None = None  # twisted.internet.tcp.Server, once a frame is sent


def _send_now(transport: Any, data: bytes) -> None:
    """Hand `data` to the kernel now when nothing waits in Twisted's buffer before it.

    Twisted's `write` only buffers and asks the reactor to watch the socket for writability; the
    send happens a loop turn later and costs two epoll_ctl calls besides the send. A profile of a
    room fan-out put those at 38 % of the gateway's CPU (docs/performance.md, "Local fan-out").
    What the kernel does not take now goes to Twisted's buffer as before, so order, the send
    buffer bound (SendWatch) and error handling stay Twisted's.
    """
    global _tcp_server  # noqa: PLW0603 - looked up once: an import statement here cost ~0.6 us
    server = _tcp_server  # per socket and frame (docs/performance.md, "The relay's own Python")
    if server is None:
        from twisted.internet import tcp

        server = _tcp_server = tcp.Server
    if (
        type(transport) is server
        and transport.connected
        and not transport.disconnecting
        and not getattr(transport, "TLS", False)
        and not transport._tempDataLen
        and len(transport.dataBuffer) == transport.offset
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:  # would block, or the peer went: Twisted's write decides what follows
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def direct_sender(send: Any) -> Callable[[str], bool] | None:
    """A function writing a text frame straight to the daphne websocket behind an ASGI `send`
    (daphne's own: the routing hands it to the gateway unwrapped, ADR 0018), or None where there
    is none (the in-process test communicators, another server, a `send` some middleware
    wrapped)."""
    module = sys.modules.get("daphne.ws_protocol")
    if module is None:
        return None
    if not isinstance(send, functools.partial) or len(send.args) != 1:
        return None
    protocol = send.args[0]
    if getattr(send.func, "__name__", "") != "handle_reply" or not isinstance(
        protocol, module.WebSocketProtocol
    ):
        return None
    return functools.partial(_write, protocol)


def wake_first(waiters: list[asyncio.Future[None]] | None) -> bool:
    """Wake the oldest waiter still waiting, dropping the ones before it (cancelled meanwhile);
    whether one was woken. For the lean primitives below and the gateway's `Turn`, which keep
    their waiters in a list made only while someone waits."""
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            return True
    return False


class InputQueue:
    """The part of `asyncio.Queue` daphne and Channels use for a websocket's application:
    daphne calls `put_nowait`, the application awaits `get`; first in, first out, each item to
    one getter. Only what is in use is allocated: asyncio.Queue keeps four deques, 760 bytes
    each, for as long as the socket is open."""

    __slots__ = ("getters", "items")

    def __init__(self) -> None:
        self.items: deque[Any] | None = None
        # Waiting gets, oldest first: a list, as there is one (Channels' receive) nearly always.
        self.getters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self.items) if self.items else 0

    def empty(self) -> bool:
        return not self.items

    def put_nowait(self, item: Any) -> None:
        if self.items is None:
            self.items = deque()
        self.items.append(item)
        self._wake_next()

    def _wake_next(self) -> None:
        wake_first(self.getters)

    async def get(self) -> Any:
        while not self.items:
            getter = asyncio.get_running_loop().create_future()
            if self.getters is None:
                self.getters = []
            self.getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()  # a no-op when it was woken already
                if self.getters is not None and getter in self.getters:
                    self.getters.remove(getter)
                if self.items and not getter.cancelled():
                    self._wake_next()  # woken, then cancelled: the item goes to the next getter
                raise
            finally:
                if not self.getters:
                    self.getters = None
        item = self.items.popleft()
        if not self.items:
            self.items = None
        return item


def _create_application(original: Callable[..., Any]) -> Callable[..., Any]:
    """daphne's `Server.create_application` with an `InputQueue` for websockets (HTTP keeps
    asyncio.Queue: daphne tests its truth and Django reads it concurrently)."""

    @functools.wraps(original)
    def create_application(self: Any, protocol: Any, scope: dict[str, Any]) -> Any:
        if getattr(protocol, "application_type", None) != "websocket":
            return original(self, protocol, scope)
        # daphne 4.2's body, with the queue swapped.
        assert "application_instance" not in self.connections[protocol]  # noqa: S101 - daphne's
        input_queue = InputQueue()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope,
            receive=input_queue.get,
            send=functools.partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue

    return create_application


class SendQueue(list[Any]):
    """Autobahn's queue of chopped or synchronous sends (it calls `append`, `popleft`, `len`):
    an empty list is 56 bytes where autobahn's deque keeps 760 for the socket's lifetime, and
    daphne neither chops nor syncs its sends, so it stays empty."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


def forget_handshake(protocol: Any) -> None:
    """Drop what autobahn kept of the opening handshake once the socket is open: the raw request
    and response and its parsed copy of the headers (~1.7 KiB). Autobahn reads them while it
    handshakes only; daphne read the headers once, into the ASGI scope (which keeps its own
    list), and reads only the request's path afterwards."""
    protocol.http_request_data = b""
    protocol.http_response_data = b""
    protocol.http_headers = {}
    request = getattr(protocol, "request", None)
    if request is not None:
        request.headers = {}


def _options_on_class(cls: Any) -> Callable[[Any], None]:
    """Autobahn's `_connectionMade`, with the factory's protocol options read from `cls` (set
    there once, from daphne's one factory) instead of copied onto every instance, and a
    `SendQueue` for its send queue."""
    original = cls._connectionMade
    names = [name for name in cls.CONFIG_ATTRS if name != "tcpNoDelay"]
    primed: list[Any] = []  # the factory the class holds the options of

    def connection_made(self: Any) -> None:
        factory = self.factory
        if not primed:
            for name in names:
                value = getattr(factory, name)
                # A function (perMessageCompressionAccept) must not become a method on the class.
                setattr(cls, name, staticmethod(value) if callable(value) else value)
            primed.append(factory)
        elif primed[0] is not factory:  # another factory (not under daphne): its own options
            for name in names:
                setattr(self, name, getattr(factory, name))
        original(self)
        if type(self.send_queue) is deque and not self.send_queue:
            self.send_queue = SendQueue()
        # Autobahn sets the factory's tcpNoDelay before this copy, on an instance that does not
        # have it yet: the AttributeError it swallows left Nagle's algorithm on for every daphne
        # websocket, so a frame written while the previous one was not acknowledged yet waited
        # (docs/performance.md, "H3 idle and Nagle: autobahn's own writes"). Applied here, with
        # the factory's value.
        with contextlib.suppress(AttributeError, OSError):
            self.transport.setTcpNoDelay(factory.tcpNoDelay)

    return connection_made


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
        forget_handshake(self)
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
    cls._connectionMade = _options_on_class(cls)
    cls.sendData = _direct_send_data(cls.sendData)
    from forums import keepalive

    keepalive.install(cls)  # its pings go out through the sendData above
    quiet_option_log()
    lazy_highlights()
    http_protocol = sys.modules.get("daphne.http_protocol")
    if http_protocol is not None:
        http_protocol.WebRequest.process = _handshake_freed(
            http_protocol.WebRequest.process, reactor
        )
    server = sys.modules.get("daphne.server")
    # create_application's body is daphne 4.2's: another release keeps its own.
    if server is not None and daphne_version().startswith("4.2."):
        server.Server.create_application = _create_application(server.Server.create_application)
        sweeps.install(server.Server, reactor)
    cls.minga_transport = True
    reactor.addSystemEventTrigger("before", "shutdown", _close_all, reactor)


def _handshake_freed(process: Callable[[Any], None], reactor: Any) -> Callable[[Any], None]:
    """daphne's `WebRequest.process`, after which an upgraded handshake's HTTP request and its
    channel (twisted.web's HTTPChannel, ~23 objects: headers, addresses, buffers) are freed at
    once, not left to the cycle collector: they refer to each other (`request.channel`,
    `channel.requests`), so each websocket connect left a cycle that only a full collection
    frees, and during a fill of thousands of sockets those cycles set off full collections
    that stop the event loop (docs/performance.md, "Pauses")."""

    def forget(request: Any, channel: Any) -> None:
        if channel is not None and request in channel.requests:
            channel.requests.remove(request)
        request.channel = None

    def process_then_free(self: Any) -> None:
        process(self)
        if self.transport is None and self.channel is not None:  # handed to the websocket
            # Once Twisted's own frames (HTTPChannel.allContentReceived, below us) returned.
            reactor.callLater(0, forget, self, self.channel)

    return process_then_free


class Highlight:
    """A value autobahn highlights (colours) for a debug line, highlighted only when a line is
    written: autobahn computes `hltype`/`hlval` for every frame sent or read and for every
    connect, as arguments to `log.debug` calls that do nothing while debug is off (~3 µs a
    frame; docs/performance.md, "H3 idle and Nagle: autobahn's own writes")."""

    __slots__ = ("args", "function", "kwargs")

    def __init__(self, function: Callable[..., str], args: Any, kwargs: Any) -> None:
        self.function, self.args, self.kwargs = function, args, kwargs

    def __format__(self, spec: str) -> str:
        return format(self.function(*self.args, **self.kwargs), spec)

    def __str__(self) -> str:
        return str(self.function(*self.args, **self.kwargs))

    __repr__ = __str__


def _deferred(function: Callable[..., str]) -> Callable[..., Highlight]:
    def highlight(*args: Any, **kwargs: Any) -> Highlight:
        return Highlight(function, args, kwargs)

    highlight.minga_deferred = True  # type: ignore[attr-defined]
    return highlight


def lazy_highlights() -> None:
    """Autobahn's websocket modules use `hltype` and `hlval` only as arguments of log calls:
    there they become `Highlight`s, formatted if a log line is written."""
    for name in ("autobahn.websocket.protocol", "autobahn.twisted.websocket"):
        module = sys.modules.get(name)
        if module is None:
            continue
        for function in ("hltype", "hlval"):
            original = getattr(module, function, None)
            if original is not None and not getattr(original, "minga_deferred", False):
                setattr(module, function, _deferred(original))


def _direct_send_data(original: Callable[..., None]) -> Callable[..., None]:
    """Autobahn's `sendData` (every frame it writes itself: pings, pongs, close frames, the
    handshake's response, the ASGI path's frames) through `_send_now`: one send, not Twisted's
    buffer and two epoll_ctl calls a loop turn later. The keepalive ping of every idle socket
    was most of an idle gateway's CPU (docs/performance.md, "H3 idle and Nagle: autobahn's own
    writes").
    Chopped and synchronous sends, a queue already waiting and octet logging keep autobahn's
    own path; the traffic counters and the debug line are autobahn's."""

    from forums.keepalive import debug_on  # txaio's, imported once Twisted is in use

    @functools.wraps(original)
    def send_data(self: Any, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        transport = self.transport
        if sync or chopsize or self.send_queue or self.logOctets or transport is None:
            original(self, data, sync, chopsize)
            return
        _send_now(transport, data)
        if debug_on(self.log):  # its three highlights cost as much as the send
            self.log.debug(
                "{func} sent {data_len} bytes for peer {peer}",
                func=Highlight(_highlighted, ("hltype", send_data), {}),
                peer=Highlight(_highlighted, ("hlval", self.peer), {}),
                data_len=Highlight(_highlighted, ("hlval", len(data)), {}),
            )
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in (self.STATE_CONNECTING, self.STATE_PROXY_CONNECTING):
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

    return send_data


def _highlighted(how: str, value: Any) -> str:
    """autobahn.util's `hltype` or `hlval` of `value` (the debug line's colours)."""
    from autobahn import util

    return str(getattr(util, how)(value))


def quiet_option_log() -> None:
    """Autobahn pretty-prints its 29 protocol options for a debug line on every connection,
    whether debug is on or not: 4.8 % of a gateway's CPU while clients connect (py-spy,
    docs/performance.md, "H3: the connect's CPU"). A plain repr carries the same values."""
    module = sys.modules.get("autobahn.websocket.protocol")
    if module is not None and getattr(module, "pformat", None) is not repr:
        module.pformat = repr


def daphne_version() -> str:
    import daphne

    return str(getattr(daphne, "__version__", ""))
