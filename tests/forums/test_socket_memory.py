"""What each open socket keeps in memory (docs/performance.md, "H3: where a connection's bytes go").

daphne's websocket input queue (forums.transport.InputQueue), autobahn's protocol options read
from the class, and the frames of the Origin check and the routing that no longer stay alive per
socket (ADR 0018): each keeps the behaviour it replaces.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from typing import Any

import pytest
from asgiref.compatibility import guarantee_single_callable
from minga.realtime import OriginPolicy, ProtocolRouter, WebsocketRoute

from forums import transport

# --- InputQueue: asyncio.Queue's put_nowait/get, nothing held while empty ---------------------


async def test_input_queue_is_first_in_first_out_and_holds_nothing_when_empty() -> None:
    queue = transport.InputQueue()
    for n in range(3):
        queue.put_nowait({"n": n})
    assert queue.qsize() == 3

    assert [(await queue.get())["n"] for _ in range(3)] == [0, 1, 2]
    assert queue.empty()
    assert (queue.items, queue.getters) == (None, None)


async def test_a_waiting_get_gets_the_next_item() -> None:
    queue = transport.InputQueue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()

    queue.put_nowait("first")
    queue.put_nowait("second")

    assert await asyncio.wait_for(getter, 1) == "first"
    assert await queue.get() == "second"
    assert (queue.items, queue.getters) == (None, None)


async def test_an_item_is_not_lost_when_its_woken_getter_is_cancelled() -> None:
    queue = transport.InputQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)

    queue.put_nowait("item")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs: `second` gets the item
    with pytest.raises(asyncio.CancelledError):
        await first

    assert await asyncio.wait_for(second, 1) == "item"
    assert (queue.items, queue.getters) == (None, None)


async def test_a_cancelled_waiting_get_leaves_the_queue_empty_and_usable() -> None:
    queue = transport.InputQueue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert (queue.items, queue.getters) == (None, None)

    queue.put_nowait("later")
    assert await queue.get() == "later"


# --- daphne's create_application: the lean queue for websockets only ---------------------------


class _Server:
    def __init__(self) -> None:
        self.connections: dict[Any, dict[str, Any]] = {}
        self.scopes: list[dict[str, Any]] = []
        self.received: list[Any] = []

    def application(self, *, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        self.scopes.append(scope)

        async def run() -> None:
            self.received.append(await receive())

        return run()

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        pass


class _Protocol:
    def __init__(self, kind: str) -> None:
        self.application_type = kind


async def test_create_application_gives_a_websocket_the_input_queue() -> None:
    original_calls: list[Any] = []

    def original(server: Any, protocol: Any, scope: dict[str, Any]) -> str:
        original_calls.append(protocol)
        return "daphne's own"

    create = transport._create_application(original)
    server, socket, request = _Server(), _Protocol("websocket"), _Protocol("http")
    server.connections = {socket: {}, request: {}}

    queue = create(server, socket, {"type": "websocket"})
    assert isinstance(queue, transport.InputQueue)
    assert server.scopes == [{"type": "websocket", "asgi": {"version": "3.0"}}]
    queue.put_nowait({"type": "websocket.connect"})
    await asyncio.wait_for(server.connections[socket]["application_instance"], 1)
    assert server.received == [{"type": "websocket.connect"}]

    assert create(server, request, {"type": "http"}) == "daphne's own"
    assert original_calls == [request]


# --- autobahn's protocol options: read from the class, same values -----------------------------


class _Factory:
    def __init__(self, **options: Any) -> None:
        self.__dict__.update(options)


def _protocol_class() -> type:
    class Protocol:
        CONFIG_ATTRS = ["logFrames", "autoPingTimeout", "accept", "tcpNoDelay"]

        def _connectionMade(self) -> None:  # noqa: N802 - autobahn's name
            # autobahn: copy each option the instance does not see yet
            for name in self.CONFIG_ATTRS:
                if not hasattr(self, name):
                    setattr(self, name, getattr(self.factory, name))
            self.send_queue = deque()

    Protocol._connectionMade = transport._options_on_class(Protocol)  # type: ignore[method-assign]
    return Protocol


def test_protocol_options_are_read_from_the_class_with_the_factorys_values() -> None:
    cls = _protocol_class()

    def accept(offers: list[str]) -> str:  # a function option: called as the factory's
        return f"accepted {offers}"

    factory = _Factory(logFrames=False, autoPingTimeout=20, accept=accept, tcpNoDelay=True)
    protocols = [cls(), cls()]
    for protocol in protocols:
        protocol.factory = factory
        protocol._connectionMade()

    for protocol in protocols:
        assert (protocol.logFrames, protocol.autoPingTimeout, protocol.tcpNoDelay) == (
            False,
            20,
            True,
        )
        assert protocol.accept(["deflate"]) == "accepted ['deflate']"  # not bound to it
        # Only tcpNoDelay (read by autobahn before the copy) stays on the instance.
        assert set(vars(protocol)) == {"factory", "tcpNoDelay", "send_queue"}
        assert type(protocol.send_queue) is transport.SendQueue


def test_the_send_queue_is_first_in_first_out_as_autobahn_uses_it() -> None:
    queue = transport.SendQueue()
    assert not queue
    queue.append((b"a", True))
    queue.append((b"b", False))
    assert len(queue) == 2
    assert [queue.popleft(), queue.popleft()] == [(b"a", True), (b"b", False)]
    assert not queue


def test_a_second_factory_keeps_its_own_options() -> None:
    cls = _protocol_class()
    first, second = cls(), cls()
    first.factory = _Factory(logFrames=False, autoPingTimeout=20, accept=str, tcpNoDelay=True)
    second.factory = _Factory(logFrames=True, autoPingTimeout=5, accept=repr, tcpNoDelay=False)
    first._connectionMade()
    second._connectionMade()

    assert (first.logFrames, first.autoPingTimeout) == (False, 20)
    assert (second.logFrames, second.autoPingTimeout, second.tcpNoDelay) == (True, 5, False)


# --- The Origin check keeps no frame of its own per socket --------------------------------------


async def test_origin_policy_is_an_asgi3_application_that_returns_the_next_ones_coroutine() -> None:
    calls: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> str:
        calls.append(scope)
        return "done"

    policy = OriginPolicy(app)
    assert guarantee_single_callable(policy) is policy  # not taken for an ASGI 2 application
    scope = {
        "type": "websocket",
        "headers": [(b"authorization", b"Token abc"), (b"cookie", b"sessionid=x")],
    }
    awaitable = policy(scope, functools.partial(asyncio.sleep, 0), None)
    assert asyncio.iscoroutine(awaitable)
    assert await awaitable == "done"
    # A program (token, no Origin): its cookies are dropped, as before.
    assert calls == [{"type": "websocket", "headers": [(b"authorization", b"Token abc")]}]


# --- The routing returns the next application's coroutine (ADR 0018) --------------------------


async def test_the_protocol_router_returns_the_chosen_applications_coroutine() -> None:
    async def http(scope: dict[str, Any], receive: Any, send: Any) -> str:
        return "http"

    async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> str:
        return "websocket"

    router = ProtocolRouter({"http": http, "websocket": websocket})
    assert guarantee_single_callable(router) is router  # an ASGI 3 application all the same

    awaitable = router({"type": "websocket"}, None, None)
    assert asyncio.iscoroutine(awaitable)
    assert (await awaitable, await router({"type": "http"}, None, None)) == ("websocket", "http")
    with pytest.raises(ValueError, match="No application configured for scope type 'lifespan'"):
        await router({"type": "lifespan"}, None, None)


@pytest.mark.parametrize(
    ("root_path", "path", "routed"),
    [
        ("", "/ws/", True),
        ("", "ws/", True),
        ("/minga", "/minga/ws/", True),
        ("/minga", "/ws/", False),
        ("", "/ws", False),
        ("", "/ws/x/", False),
        ("", "/other/ws/", False),
    ],
)
async def test_the_websocket_route_serves_its_one_path_under_the_root_path(
    root_path: str, path: str, routed: bool
) -> None:
    made: list[dict[str, Any]] = []

    class Consumer:
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            made.append(scope)

    route = WebsocketRoute("ws/", Consumer)
    scope = {"type": "websocket", "path": path, "root_path": root_path, "headers": []}
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1006}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    awaitable = route(scope, receive, send)
    if routed:
        await awaitable
        assert (made, sent) == ([scope], [])  # the handshake's own scope, not a copy
    else:
        await asyncio.wait_for(awaitable, 5)
        # Closed before accepting: the server answers the handshake with 403.
        assert (made, sent) == ([], [{"type": "websocket.close"}])


# --- The hub's group of local sockets: weak, in join order --------------------------------------


class _Socket:
    def relay_at_once(self, text: str, control: bool) -> bool:
        return True

    async def relay(self, text: str, control: bool | None = None) -> None:
        pass


def test_a_group_keeps_its_sockets_in_join_order_and_drops_a_dead_one() -> None:
    import gc

    from notifications.bus import Sockets

    first, second, third = _Socket(), _Socket(), _Socket()
    group = Sockets(first)
    group.add(second)
    group.add(third)
    group.add(first)  # again: stays first
    assert list(group) == [first, second, third]
    assert second in group
    assert object() not in group

    group.discard(second)
    assert second not in group
    del second, third  # died without leaving (a consumer that crashed before `disconnect`)
    gc.collect()
    assert group.alive() == (first,)
    assert len(group.refs) == 1  # the dead one's entry went
    assert group

    group.discard(first)
    assert not group
    assert list(group) == []


# --- The gateway's turn: one holder, first come first served -----------------------------------


async def test_the_turn_is_taken_in_arrival_order_and_keeps_no_list_when_free() -> None:
    from forums.consumers import Turn

    turn, order = Turn(), []

    async def take(name: str) -> None:
        async with turn:
            order.append(f"{name} in")
            await asyncio.sleep(0)
            order.append(f"{name} out")

    async with turn:
        assert turn.locked()
        tasks = [asyncio.ensure_future(take(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0)
        assert turn.waiters is not None and len(turn.waiters) == 3
    await asyncio.wait_for(asyncio.gather(*tasks), 2)

    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
    assert (turn.locked(), turn.waiters) == (False, None)


async def test_a_cancelled_waiter_passes_the_turn_on() -> None:
    from forums.consumers import Turn

    turn, got = Turn(), []

    async def take(name: str) -> None:
        async with turn:
            got.append(name)

    await turn.__aenter__()
    waiting = asyncio.ensure_future(take("cancelled while waiting"))
    handed = asyncio.ensure_future(take("cancelled once handed the turn"))
    last = asyncio.ensure_future(take("last"))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.sleep(0)
    await turn.__aexit__(None, None, None)  # hands the turn to `handed`...
    handed.cancel()  # ...cancelled before it runs: `last` gets it
    results = await asyncio.wait_for(
        asyncio.gather(waiting, handed, last, return_exceptions=True), 2
    )

    assert [type(r).__name__ for r in results] == ["CancelledError", "CancelledError", "NoneType"]
    assert got == ["last"]
    assert (turn.locked(), turn.waiters) == (False, None)


def test_an_open_socket_forgets_its_handshake_but_not_its_path() -> None:
    class Request:
        path = "/ws/"  # daphne logs it when the socket closes
        headers = {"host": "127.0.0.1", "authorization": "Token abc"}

    class Protocol:
        http_request_data = b"GET /ws/ HTTP/1.1\r\n..."
        http_response_data = b"HTTP/1.1 101 Switching Protocols\r\n..."
        http_headers = Request.headers
        request = Request()

    protocol = Protocol()
    transport.forget_handshake(protocol)
    assert (protocol.http_request_data, protocol.http_response_data) == (b"", b"")
    assert (protocol.http_headers, protocol.request.headers) == ({}, {})
    assert protocol.request.path == "/ws/"


def test_a_connection_made_pretty_prints_nothing_once_the_option_log_is_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pprint

    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from autobahn.websocket import protocol as websocket_protocol
    from twisted.internet.testing import StringTransport

    # Autobahn as shipped (an earlier import of minga.asgi under daphne may have quieted it).
    monkeypatch.setattr(websocket_protocol, "pformat", pprint.pformat)
    formatted: list[object] = []
    real = pprint.PrettyPrinter.pformat

    def spy(self: pprint.PrettyPrinter, value: object) -> str:
        formatted.append(value)
        return real(self, value)

    monkeypatch.setattr(pprint.PrettyPrinter, "pformat", spy)
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol

    def connect() -> int:
        protocol = factory.buildProtocol(None)
        protocol.transport = StringTransport()
        protocol.connectionMade()
        return len(formatted)

    before = connect()
    transport.quiet_option_log()
    after = connect()

    assert (before, after) == (1, 1)  # autobahn's own path formats once; then never again


def test_an_upgraded_handshakes_request_and_channel_are_freed_without_the_collector() -> None:
    import gc
    import weakref

    class Channel:
        def __init__(self) -> None:
            self.requests: list[Any] = []

    class Request:
        """As daphne's WebRequest: its channel lists it; `process` hands the transport over
        to the websocket when the request upgrades."""

        def __init__(self, upgrade: bool) -> None:
            self.channel: Any = Channel()
            self.channel.requests.append(self)
            self.transport: Any = object()
            self.upgrade = upgrade

    def process(request: Any) -> None:
        if request.upgrade:
            request.transport = None

    class Reactor:
        def __init__(self) -> None:
            self.later: list[Any] = []

        def callLater(self, _delay: float, fn: Any, *args: Any) -> None:  # noqa: N802 - Twisted's
            self.later.append((fn, args))

    reactor = Reactor()
    patched = transport._handshake_freed(process, reactor)
    upgraded, plain = Request(upgrade=True), Request(upgrade=False)
    alive = [weakref.ref(upgraded), weakref.ref(upgraded.channel), weakref.ref(plain)]
    patched(upgraded)
    patched(plain)
    for fn, args in reactor.later:
        fn(*args)
    reactor.later.clear()

    gc.disable()
    try:
        del upgraded, plain, fn, args
        freed = [ref() is None for ref in alive]
    finally:
        gc.enable()

    # the upgraded handshake is freed by reference counting; a plain request is left as it was
    # (twisted.web answers it and frees it itself)
    assert freed == [True, True, False]


# --- Autobahn's own frames: written at once, debug highlights only when a line is written --------


def _autobahn_server_protocol(send_data: Any) -> tuple[Any, Any]:
    """Autobahn's server protocol, open, on an in-memory transport, with `send_data` as sendData."""
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet.testing import StringTransport

    class Protocol(WebSocketServerProtocol):
        sendData = send_data  # noqa: N815 - autobahn's name

    factory = WebSocketServerFactory()
    factory.protocol = Protocol
    protocol = factory.buildProtocol(None)
    protocol.transport = StringTransport()
    protocol.connectionMade()
    protocol.state = protocol.STATE_OPEN
    protocol.websocket_version = 13
    return protocol, protocol.transport


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda p: p.sendPing(b"payload"), id="ping"),
        pytest.param(lambda p: p.sendPong(b"payload"), id="pong"),
        pytest.param(lambda p: p.sendMessage("é".encode() * 200), id="text"),
        pytest.param(lambda p: p.sendMessage(b"\x00" * 70_000, isBinary=True), id="binary"),
        pytest.param(lambda p: p.sendCloseFrame(code=1000, isReply=False), id="close"),
    ],
)
def test_autobahns_frames_go_out_unchanged_through_the_direct_write(send: Any) -> None:
    from autobahn.twisted.websocket import WebSocketServerProtocol

    shipped = WebSocketServerProtocol.sendData
    before, before_transport = _autobahn_server_protocol(shipped)
    after, after_transport = _autobahn_server_protocol(transport._direct_send_data(shipped))

    send(before)
    send(after)

    assert after_transport.value() == before_transport.value() != b""
    assert (
        after.trafficStats.outgoingOctetsWireLevel
        == before.trafficStats.outgoingOctetsWireLevel
        > 0
    )


def test_chopped_and_queued_sends_keep_autobahns_own_path() -> None:
    from autobahn.twisted.websocket import WebSocketServerProtocol

    calls: list[tuple[bytes, bool, int | None]] = []

    def shipped(self: Any, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        calls.append((data, sync, chopsize))

    protocol, written = _autobahn_server_protocol(transport._direct_send_data(shipped))
    protocol.sendData(b"chopped", chopsize=2)
    protocol.sendData(b"synchronous", sync=True)
    protocol.send_queue.append((b"waiting", False))
    protocol.sendData(b"after the queue")  # must not overtake what waits in autobahn's queue

    assert calls == [
        (b"chopped", False, 2),
        (b"synchronous", True, None),
        (b"after the queue", False, None),
    ]
    assert written.value() == b""
    assert WebSocketServerProtocol.sendData is not shipped


def test_debug_highlights_are_formatted_only_when_a_line_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from autobahn import util
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol as websocket_protocol
    from twisted.logger import formatEvent  # how a log line is written

    # Autobahn as shipped (an import of minga.asgi under daphne may have deferred them already).
    for module in (websocket_protocol, twisted_websocket):
        monkeypatch.setattr(module, "hltype", util.hltype)
        monkeypatch.setattr(module, "hlval", util.hlval)
    calls: list[object] = []

    def counted(value: object, color: str = "white", bold: bool = True) -> str:
        calls.append(value)
        return util.hlval(value, color=color, bold=bold)

    monkeypatch.setattr(twisted_websocket, "hlval", counted)
    transport.lazy_highlights()
    transport.lazy_highlights()  # twice: still one layer

    value = twisted_websocket.hlval("tcp:127.0.0.1:80", color="green")
    method = websocket_protocol.hltype(
        test_debug_highlights_are_formatted_only_when_a_line_is_written
    )
    assert calls == []  # nothing formatted until a line is
    line = formatEvent({"log_format": "{peer} {func}", "peer": value, "func": method})
    assert line == (
        f"{util.hlval('tcp:127.0.0.1:80', color='green')} "
        f"{util.hltype(test_debug_highlights_are_formatted_only_when_a_line_is_written)}"
    )
    assert calls == ["tcp:127.0.0.1:80"]
    assert str(value) == repr(value) == util.hlval("tcp:127.0.0.1:80", color="green")


def test_nagles_algorithm_is_off_as_autobahns_factory_asks() -> None:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet.testing import StringTransport

    class Transport(StringTransport):
        nodelay: bool | None = None

        def setTcpNoDelay(self, enabled: bool) -> None:  # noqa: N802 - Twisted's name
            self.nodelay = enabled

    def connect(protocol_class: type) -> Transport:
        factory = WebSocketServerFactory()
        factory.protocol = protocol_class
        protocol = factory.buildProtocol(None)
        protocol.transport = Transport()
        protocol.connectionMade()
        return protocol.transport

    class Shipped(WebSocketServerProtocol):
        pass

    class Ours(WebSocketServerProtocol):
        pass

    Ours._connectionMade = transport._options_on_class(Ours)  # type: ignore[method-assign]

    assert WebSocketServerFactory().tcpNoDelay is True
    # As shipped, autobahn reads the option before copying it onto the protocol: never applied.
    assert connect(Shipped).nodelay is None
    assert connect(Ours).nodelay is True


def test_the_direct_writes_debug_line_reads_as_autobahns() -> None:
    import txaio
    from autobahn.twisted.websocket import WebSocketServerProtocol
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if "sent" in event.get("log_format", ""):
            lines.append(formatEvent(event))

    shipped = WebSocketServerProtocol.sendData
    globalLogPublisher.addObserver(observer)
    try:
        for send_data in (shipped, transport._direct_send_data(shipped)):
            protocol, _written = _autobahn_server_protocol(send_data)
            protocol.log = txaio.make_logger()
            protocol.log.set_log_level("debug")
            protocol.peer = "tcp4:127.0.0.1:50000"
            protocol.sendPing(b"payload")
    finally:
        globalLogPublisher.removeObserver(observer)

    assert len(lines) == 2, lines
    # The same words and values; the function's name is autobahn's or ours.
    assert lines[0].replace("WebSocketServerProtocol.sendData", "?") == lines[1].replace(
        "_direct_send_data.<locals>.send_data", "?"
    ), lines
