"""forums.sweeps against daphne's own sweeps: the same pings, closes, rejects, cancels and reaped
connections at the same ticks, for far fewer looks.

daphne's `application_checker`, `timeout_checker`, `protocol_connected`, `protocol_disconnected`
and its websocket's `check_timeouts` and `duration` are taken from the installed daphne's
source (parsed, not imported: importing daphne.server installs a Twisted reactor in this
process) and run on fake servers, protocols and futures with a fake clock. A daphne release
that changes them changes what this test compares against.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import logging
import random
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import daphne
import pytest

from forums import sweeps

DAPHNE = Path(daphne.__file__).parent


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def time(self) -> float:
        return self.t


class Reactor:
    def __init__(self) -> None:
        self.later: list[tuple[float, Any]] = []

    def callLater(self, delay: float, function: Any) -> None:  # noqa: N802 - Twisted's name
        self.later.append((delay, function))


def daphne_functions(file: str, cls: str, names: list[str], namespace: dict[str, Any]) -> list[Any]:
    """The named methods of `cls` in daphne's `file`, compiled from its source into `namespace`."""
    tree = ast.parse((DAPHNE / file).read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    functions = [n for n in body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert sorted(f.name for f in functions) == sorted(names)
    exec(  # noqa: S102 - daphne's own source, compiled from its file
        compile(ast.Module(body=functions, type_ignores=[]), str(DAPHNE / file), "exec"), namespace
    )
    return [namespace[name] for name in names]


class Future:
    """What daphne asks of an application's future, completing synchronously."""

    def __init__(self) -> None:
        self.finished, self.cancelled, self.error = False, False, None
        self.callbacks: list[Callable[[Any], None]] = []

    def done(self) -> bool:
        return self.finished

    def cancel(self) -> bool:
        if not self.finished:
            self.cancelled = True
            self.finish()
        return True

    def exception(self) -> BaseException | None:
        if self.cancelled:
            raise asyncio.CancelledError
        return self.error

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self.finished:
            callback(self)
        else:
            self.callbacks.append(callback)

    def finish(self, error: BaseException | None = None) -> None:
        self.finished, self.error = True, error
        for callback in self.callbacks:
            callback(self)


def twins(clock: Clock, log: list[tuple[str, float, str, str]]) -> tuple[type, type, type]:
    """(daphne's server, ours, a websocket protocol), sharing the clock and the log."""
    namespace: dict[str, Any] = {
        "time": clock,
        "reactor": Reactor(),
        "logger": logging.getLogger("tests.daphne"),
        "CancelledError": CancelledError,
        "asyncio": asyncio,
    }
    connected, disconnected, application_checker, timeout_checker = daphne_functions(
        "server.py",
        "Server",
        ["protocol_connected", "protocol_disconnected", "application_checker", "timeout_checker"],
        namespace,
    )
    duration, check_timeouts = daphne_functions(
        "ws_protocol.py", "WebSocketProtocol", ["duration", "check_timeouts"], {"time": clock}
    )

    class Server:
        application_close_timeout = 10
        ping_interval = 20
        websocket_timeout = 300
        websocket_connect_timeout = 5
        side = ""

        def __init__(self) -> None:
            self.connections: dict[Any, dict[str, Any]] = {}
            self.looks = 0

        protocol_connected = connected
        protocol_disconnected = disconnected

        def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
            self.connections[protocol]["application_instance"] = protocol.future
            return None

        def stop(self) -> None:
            log.append((self.side, clock.t, "-", "stop"))

    class Daphne(Server):
        side = "daphne"

    Daphne.application_checker = application_checker  # type: ignore[attr-defined]
    Daphne.timeout_checker = timeout_checker  # type: ignore[attr-defined]

    class Ours(Server):
        side = "ours"

    sweeps.install(Ours, Reactor())

    class Socket:
        STATE_CONNECTING, STATE_OPEN, STATE_CLOSING, STATE_CLOSED = 0, 1, 2, 3

        def __init__(self, server: Server, name: str) -> None:
            self.server, self.name, self.future = server, name, Future()
            self.state = self.STATE_CONNECTING
            self.socket_opened = self.last_ping = clock.t

        def act(self, what: str) -> None:
            log.append((self.server.side, clock.t, self.name, what))

        def check_timeouts(self) -> None:
            self.server.looks += 1
            check_timeouts(self)

        def _sendAutoPing(self) -> None:  # noqa: N802 - autobahn's name
            self.act("ping")

        def serverClose(self) -> None:  # noqa: N802 - daphne's name
            self.act("close")
            self.gone()

        def serverReject(self) -> None:  # noqa: N802 - daphne's name
            self.act("reject")
            self.gone()

        def gone(self) -> None:
            """The connection closes: daphne hears of it, the application ends."""
            self.state = self.STATE_CLOSED
            self.server.protocol_disconnected(self)
            self.future.finish()

        def handle_exception(self, exception: BaseException) -> None:
            self.act(f"exception {exception}")

    Socket.duration = duration  # type: ignore[attr-defined]
    return Daphne, Ours, Socket


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(sweeps, "time", c)
    return c


def test_the_sweeps_act_as_daphnes_at_the_same_ticks_with_far_fewer_looks(  # noqa: PLR0912
    clock: Clock,
) -> None:
    """A fixed random run of 10 minutes: sockets connect (some never finish), open, talk, go
    idle, disconnect, and their applications end cleanly, with an error, or hang past the close
    timeout; both servers get the same events and ticks."""
    log: list[tuple[str, float, str, str]] = []
    Daphne, Ours, Socket = twins(clock, log)  # noqa: N806 - classes
    servers = [Daphne(), Ours()]
    sockets: list[list[Any]] = [[], []]
    rng = random.Random(17)  # a reproducible test sequence
    states: list[tuple[float, list[tuple[str, list[str]]]]] = [], []  # type: ignore[assignment]

    for step in range(1200):  # half seconds
        clock.t += 0.5
        events = [rng.random() for _ in range(6)]
        for side, server in enumerate(servers):
            mine = sockets[side]
            if events[0] < 0.3:  # a client connects
                socket = Socket(server, f"s{len(mine)}")
                mine.append(socket)
                server.protocol_connected(socket)
                server.create_application(socket, {})
            for index, socket in enumerate(mine):
                roll = (events[1] * 7919 + index * 104729) % 1.0  # the same roll for both sides
                if socket.state == Socket.STATE_CONNECTING and roll < 0.4 and index % 7:
                    socket.state = Socket.STATE_OPEN
                elif socket.state == Socket.STATE_OPEN and roll < 0.02 * (index % 3):
                    socket.last_ping = clock.t  # a client frame
                elif socket.state == Socket.STATE_OPEN and roll > 0.997:
                    socket.state = Socket.STATE_CLOSED
                    server.protocol_disconnected(socket)
                    if index % 5 == 1:
                        socket.future.finish(RuntimeError("boom"))
                    elif index % 5 != 2:  # index % 5 == 2: hangs until cancelled
                        socket.future.finish()
                elif socket.state == Socket.STATE_OPEN and roll < 0.001 and index % 4 == 3:
                    socket.future.finish(ValueError("early"))  # ends while still connected
        if step % 2 == 1:
            for server in servers:
                server.application_checker()
        if step % 4 == 3:
            for server in servers:
                server.timeout_checker()
        for side, server in enumerate(servers):
            shown = sorted((s.name, sorted(d)) for s, d in server.connections.items())
            states[side].append((clock.t, shown))

    # The order within one tick is the order of a dict or of a heap: not compared.
    daphne_log = sorted(entry[1:] for entry in log if entry[0] == "daphne")
    our_log = sorted(entry[1:] for entry in log if entry[0] == "ours")
    kinds = {what.split()[0] for _t, _name, what in daphne_log}
    assert (our_log, states[1]) == (daphne_log, states[0])
    assert kinds == {"ping", "close", "reject", "exception"}, kinds  # the run covers them all
    assert servers[1].looks * 2 < servers[0].looks, (servers[1].looks, servers[0].looks)


def test_idle_open_sockets_are_looked_at_when_their_ping_is_due_only(clock: Clock) -> None:
    log: list[tuple[str, float, str, str]] = []
    Daphne, Ours, Socket = twins(clock, log)  # noqa: N806 - classes
    servers = [Daphne(), Ours()]
    for server in servers:
        for index in range(1000):
            socket = Socket(server, f"s{index}")
            server.protocol_connected(socket)
            server.create_application(socket, {})
            socket.state = Socket.STATE_OPEN
            clock.t += 0.01  # they arrive over 10 s
        clock.t -= 10

    for _tick in range(30):  # a minute
        clock.t += 2
        for server in servers:
            server.timeout_checker()
            server.application_checker()

    pings = [sorted(e[1:] for e in log if e[0] == side) for side in ("daphne", "ours")]
    assert (pings[0] == pings[1], len(pings[0])) == (True, 2000)  # two pings each, at 20 s
    # daphne looks at each socket every tick; the heap at the first tick and at each ping.
    assert (servers[0].looks, servers[1].looks) == (30_000, 3_000)


def test_a_closed_connection_is_not_kept_alive_by_the_timeout_heap(clock: Clock) -> None:
    log: list[tuple[str, float, str, str]] = []
    _Daphne, Ours, Socket = twins(clock, log)  # noqa: N806 - classes
    server = Ours()
    socket = Socket(server, "s0")
    server.protocol_connected(socket)
    server.create_application(socket, {})
    socket.state = Socket.STATE_OPEN
    server.timeout_checker()  # the first tick walks it into the heap
    clock.t += 2
    server.timeout_checker()  # an open idle socket: next looked at when its ping is due

    server.protocol_disconnected(socket)
    socket.future.finish()
    server.application_checker()
    gone = weakref.ref(socket)
    del socket
    gc.collect()

    assert (gone(), server.connections, len(sweeps.of(server).due)) == (None, {}, 1)


def test_a_sweep_that_fails_is_logged_and_the_next_tick_still_comes(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    reactor = Reactor()

    class Broken(dict[str, Any]):
        def get(self, *args: Any) -> Any:
            raise RuntimeError("broken details")

    class Server:
        def protocol_connected(self, protocol: Any) -> None: ...

        def protocol_disconnected(self, protocol: Any) -> None: ...

        def create_application(self, protocol: Any, scope: dict[str, Any]) -> None: ...

    sweeps.install(Server, reactor)
    server = Server()
    # Details that fail to read, and a protocol no weak reference can point to.
    server.connections = {object(): Broken()}  # type: ignore[attr-defined]

    server.application_checker()  # type: ignore[attr-defined]
    server.timeout_checker()  # type: ignore[attr-defined]

    assert [delay for delay, _f in reactor.later] == [1.0, 2.0]
    assert "application sweep failed" in caplog.text
    assert "timeout sweep failed" in caplog.text


def test_install_is_done_once_per_class() -> None:
    class Server:
        def protocol_connected(self, protocol: Any) -> None: ...

        def protocol_disconnected(self, protocol: Any) -> None: ...

        def create_application(self, protocol: Any, scope: dict[str, Any]) -> None: ...

    sweeps.install(Server, Reactor())
    first = Server.protocol_connected
    sweeps.install(Server, Reactor())

    assert Server.protocol_connected is first
