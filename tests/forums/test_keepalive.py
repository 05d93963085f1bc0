"""The keepalive's own path (forums.keepalive): the ping daphne sends an idle socket and the pong
that answers it leave autobahn's protocol exactly as autobahn's own code does, and everything
else still goes autobahn's way. tests/reliability/test_keepalive.py runs it for real under daphne.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from forums import keepalive

PONG_TIMEOUT = 30


@dataclass
class Call:
    delay: float
    name: str
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Timer:
    """The factory's batched timer, recording what is asked of it."""

    calls: list[Call] = field(default_factory=list)

    def call_later(self, delay: float, function: Any, *args: Any, **kwargs: Any) -> Call:
        call = Call(delay, function.__name__)
        self.calls.append(call)
        return call


@dataclass
class Side:
    protocol: Any
    timer: Timer
    pongs: list[bytes]

    def written(self) -> bytes:
        return bytes(self.protocol.transport.value())

    def state(self) -> dict[str, Any]:
        p = self.protocol
        stats = p.trafficStats
        return {
            "written": self.written(),
            "pending": p.autoPingPending,
            "sent": p.autoPingPendingSent,
            "seq": p.autoPingPendingSeq,
            "timeout call": p.autoPingTimeoutCall,
            "timer": self.timer.calls,
            "pongs": self.pongs,
            "state": p.state,
            "frame": p.current_frame,
            "buffered": p.data,
            "octets out": stats.outgoingOctetsWireLevel,
            "octets in": stats.incomingOctetsWireLevel,
            "frames out": stats.outgoingWebSocketFrames,
        }


def _side(*, short: bool, **options: Any) -> Side:
    """An open autobahn server protocol on an in-memory transport, its pong timer recorded;
    `short`: with forums.keepalive's short path installed."""
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet.testing import StringTransport

    pongs: list[bytes] = []

    class Protocol(WebSocketServerProtocol):
        def onPong(self, payload: bytes) -> None:  # noqa: N802 - autobahn's name
            pongs.append(payload)

    if short:
        keepalive.install(Protocol)
    factory = WebSocketServerFactory()
    factory.protocol = Protocol
    factory.setProtocolOptions(autoPingTimeout=PONG_TIMEOUT, **options)
    timer = Timer()
    factory._batched_timer = timer
    protocol = factory.buildProtocol(None)
    protocol.transport = StringTransport()
    protocol.transport.registerProducer(protocol, True)  # a failed connection unregisters it
    protocol.connectionMade()
    timer.calls.clear()  # the opening handshake's timeout
    protocol.state = protocol.STATE_OPEN  # and what autobahn's opening handshake sets with it
    protocol.websocket_version = 13
    protocol.inside_message = False
    protocol.current_frame = None
    return Side(protocol, timer, pongs)


def _general_code_fails(side: Side) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("autobahn's general frame code was called")

    side.protocol.sendFrame = fail
    side.protocol.consumeData = fail


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ping's send time and random bytes, the same on both sides."""
    monkeypatch.setattr(time, "time_ns", lambda: 1_790_000_000_123_456_789)
    monkeypatch.setattr(os, "urandom", lambda n: bytes(range(7, 7 + n)))


def client_frame(first_byte: int, payload: bytes, mask: bytes) -> bytes:
    """One frame as a client sends it (RFC 6455 5.2-5.3: masked, a payload under 126 bytes)."""
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((first_byte, 0x80 | len(payload))) + mask + masked


def pong_frame(payload: bytes) -> bytes:
    return client_frame(0x8A, payload, b"\x1f\x2e\x3d\x4c")  # FIN, opcode 10


def text_frame(text: str) -> bytes:
    return client_frame(0x81, text.encode(), b"\x01\x02\x03\x04")  # FIN, opcode 1


def both(**options: Any) -> tuple[Side, Side]:
    """autobahn's own path and the short one, the short one unable to fall back."""
    shipped, short = _side(short=False, **options), _side(short=True, **options)
    _general_code_fails(short)
    return shipped, short


@pytest.mark.parametrize("size", [12, 20, 125])
def test_a_ping_leaves_the_protocol_as_autobahns_does(fixed_clock: None, size: int) -> None:
    shipped, short = both(autoPingSize=size)

    for side in (shipped, short):
        side.protocol._sendAutoPing()
        side.protocol._sendAutoPing()  # the sequence number moves on

    assert short.state() == shipped.state()
    assert short.written()[:2] == bytes((0x89, size))  # one unmasked ping frame each time
    assert len(short.written()) == 2 * (2 + size)
    assert [c.delay for c in short.timer.calls] == [PONG_TIMEOUT, PONG_TIMEOUT]
    assert short.protocol.autoPingPendingSeq == 2


def test_the_pong_for_the_pending_ping_is_read_as_autobahn_reads_it(fixed_clock: None) -> None:
    shipped, short = both()
    pending = []
    for side in (shipped, short):
        side.protocol._sendAutoPing()
        pending.append(side.protocol.autoPingPending)
        side.protocol._dataReceived(pong_frame(side.protocol.autoPingPending))

    assert pending[0] == pending[1] is not None
    assert short.state() == shipped.state()
    assert short.pongs == [pending[1]]
    assert short.protocol.autoPingPending is None  # answered
    assert short.protocol.autoPingTimeoutCall is None
    assert [c.cancelled for c in short.timer.calls] == [True]  # no close 30 s later


@pytest.mark.parametrize(
    "payload", [b"", b"not the pending one", bytes(125)], ids=["empty", "stale", "longest"]
)
def test_any_other_pong_is_read_as_autobahn_reads_it(fixed_clock: None, payload: bytes) -> None:
    shipped, short = both()
    for side in (shipped, short):
        side.protocol._sendAutoPing()
        side.protocol._dataReceived(pong_frame(payload))

    assert short.state() == shipped.state()
    assert short.pongs == [payload]
    assert [c.cancelled for c in short.timer.calls] == [False]  # still waiting for its pong


def test_a_pong_read_while_closing_is_read_as_autobahn_reads_it(fixed_clock: None) -> None:
    shipped, short = _side(short=False), _side(short=True)
    general = _general(short)
    for side in (shipped, short):
        side.protocol._sendAutoPing()
        side.protocol.state = side.protocol.STATE_CLOSING  # a close frame sent, its reply awaited
        side.protocol._dataReceived(pong_frame(side.protocol.autoPingPending))

    assert short.state() == shipped.state()
    assert short.protocol.trafficStats.incomingOctetsWireLevel == 0  # counted only while open
    assert general == ["consumeData"]


def _general(side: Side) -> list[str]:
    """Record the general frame code's calls on `side` (and let them run)."""
    calls: list[str] = []
    for name in ("sendFrame", "consumeData"):
        method = getattr(type(side.protocol), name)

        def recorded(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _method(side.protocol, *args, **kwargs)

        setattr(side.protocol, name, recorded)
    return calls


@pytest.mark.parametrize(
    "reads",
    [
        pytest.param(
            lambda pending: [pong_frame(pending)[:5], pong_frame(pending)[5:]], id="split"
        ),
        pytest.param(lambda pending: [pong_frame(pending) + text_frame("hi")], id="with-a-text"),
        pytest.param(lambda pending: [text_frame("hi") + pong_frame(pending)], id="after-a-text"),
        pytest.param(
            lambda pending: [bytes((0x8A, len(pending))) + pending], id="unmasked-violation"
        ),
        pytest.param(lambda pending: [bytes((0x8A | 0x40, 0x80)) + b"\0\0\0\0"], id="rsv-bit"),
        pytest.param(lambda pending: [bytes((0x89, 0x80)) + b"\0\0\0\0"], id="clients-ping"),
    ],
)
def test_other_reads_take_autobahns_path_with_the_same_outcome(
    fixed_clock: None, reads: Any
) -> None:
    shipped, short = _side(short=False), _side(short=True)
    general = _general(short)
    for side in (shipped, short):
        side.protocol._sendAutoPing()
        for data in reads(side.protocol.autoPingPending):
            side.protocol._dataReceived(data)

    assert short.state() == shipped.state()
    assert "consumeData" in general


def test_a_read_mid_frame_or_with_bytes_buffered_takes_autobahns_path(fixed_clock: None) -> None:
    short = _side(short=True)
    general = _general(short)
    short.protocol._sendAutoPing()
    pong = pong_frame(short.protocol.autoPingPending)
    # a binary frame begun, whose payload the pong's bytes complete
    short.protocol._dataReceived(bytes((0x82, 0x80 | (2 + len(pong)))) + b"\0\0\0\0" + b"ab")
    short.protocol._dataReceived(pong)
    buffered = _side(short=True)
    general_buffered = _general(buffered)
    buffered.protocol.data = b"\x8a"  # half a header waiting
    buffered.protocol._dataReceived(pong)

    assert general.count("consumeData") == 2
    assert short.pongs == []  # it was the binary frame's payload
    assert general_buffered == ["consumeData"]


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda p: setattr(p, "state", p.STATE_CLOSING), id="closing"),
        pytest.param(lambda p: setattr(p, "logFrames", True), id="frame-log"),
        pytest.param(lambda p: setattr(p, "logOctets", True), id="octet-log"),
        pytest.param(lambda p: p.send_queue.append((b"waiting", False)), id="send-queue"),
        pytest.param(lambda p: p.log.set_log_level("debug"), id="debug-log"),
    ],
)
def test_a_ping_takes_autobahns_path_where_the_short_one_would_differ(
    fixed_clock: None, setup: Any
) -> None:
    import txaio

    short = _side(short=True)
    short.protocol.log = txaio.make_logger()  # its own, so a level set here stays here
    general = _general(short)
    setup(short.protocol)
    short.protocol._sendAutoPing()

    assert general == ([] if short.protocol.state != short.protocol.STATE_OPEN else ["sendFrame"])
    assert short.protocol.autoPingPendingSeq == 1  # autobahn's own bookkeeping ran


def test_unmask_is_rfc_6455s_as_autobahn_does_it() -> None:
    from autobahn.websocket.xormasker import create_xor_masker

    chooser = random.Random(6455)
    for length in [0, 1, 3, 4, 5, 12, 125]:
        mask = chooser.randbytes(4)
        payload = chooser.randbytes(length)
        masked = create_xor_masker(mask, length).process(payload) if length else b""
        assert keepalive.unmask(mask, masked) == payload


def test_install_wraps_once() -> None:
    from autobahn.twisted.websocket import WebSocketServerProtocol

    class Protocol(WebSocketServerProtocol):
        pass

    keepalive.install(Protocol)
    wrapped = Protocol._sendAutoPing, Protocol._dataReceived
    keepalive.install(Protocol)

    assert (Protocol._sendAutoPing, Protocol._dataReceived) == wrapped
    assert WebSocketServerProtocol._sendAutoPing is not wrapped[0]
