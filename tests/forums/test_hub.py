"""Local fan-out: the process's hub (notifications.bus.Hub) and the gateway's `relay`.

One subscription per group per process, the same text handed to every local socket of the
group, joins that return only once the process is subscribed, and, in the gateway, frames kept in
order behind the client frame in hand.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from channels.layers import InMemoryChannelLayer, get_channel_layer  # noqa: TID251 - the hub's layer

from forums.consumers import GatewayConsumer
from notifications import bus
from tests.spies import record_calls


def bare_gateway() -> tuple[GatewayConsumer, list[str]]:
    """A gateway in the state `connect` leaves it in, whose sends are collected."""
    gateway = GatewayConsumer()
    gateway.closing = False
    gateway.member_id = 1
    gateway.replayed = {}
    gateway.changes_replayed = {}
    gateway.turn = asyncio.Lock()
    gateway.backlog = None  # made on first use
    gateway.drainer = None
    gateway.write_direct = None
    sent: list[str] = []

    async def send(text_data: str) -> None:
        sent.append(text_data)

    gateway.send = send  # type: ignore[method-assign]
    return gateway, sent


async def hub_of(
    make: Any, count: int = 3
) -> tuple[bus.Hub, list[tuple[GatewayConsumer, list[str]]]]:
    """A hub over a counting layer, and `count` gateways made by `make` (with what each sent
    or wrote), all joined to group room.1."""
    hub = bus.Hub(CountingLayer())
    gateways = [make() for _ in range(count)]
    for gateway, _sent in gateways:
        await hub.join("room.1", gateway)
    return hub, gateways


class Collector:
    """A socket for the hub: records what it was handed."""

    def __init__(self, fail: bool = False) -> None:
        self.got: list[str] = []
        self.fail = fail

    def relay_at_once(self, text: str, control: bool) -> bool:
        return False  # every frame through `relay`

    async def relay(self, text: str, control: bool | None = None) -> None:
        if self.fail:
            raise RuntimeError("this socket broke")
        self.got.append(text)


class CountingLayer(InMemoryChannelLayer):
    def __init__(self) -> None:
        super().__init__(capacity=1000)
        self.adds: list[str] = []
        self.discards: list[str] = []
        self.gate: asyncio.Event | None = None

    async def group_add(self, group: str, channel: str) -> None:
        self.adds.append(group)
        if self.gate is not None:
            await self.gate.wait()
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.discards.append(group)
        await super().group_discard(group, channel)


async def _until(condition: Any, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - a condition over several sockets' records
            await asyncio.sleep(0.005)


def _frame(n: int) -> dict[str, Any]:
    return {"type": "message.created", "room": "wg1-a", "seq": n}


# --- The hub ------------------------------------------------------------------------------------


async def test_many_sockets_one_subscription_and_the_same_text_for_each() -> None:
    layer = CountingLayer()
    hub = bus.Hub(layer)
    sockets = [Collector() for _ in range(3)]
    for socket in sockets:
        await hub.join("room.1", socket)

    await layer.group_send("room.1", bus._envelope("room.1", _frame(1)))
    await _until(lambda: all(s.got for s in sockets))

    assert layer.adds == ["room.1"]
    texts = [s.got for s in sockets]
    assert texts == [['{"type":"message.created","room":"wg1-a","seq":1}']] * 3
    assert texts[0][0] is texts[1][0] is texts[2][0]  # one decode, one text object for all
    await hub.aclose()


async def test_a_join_returns_only_once_the_process_is_subscribed() -> None:
    layer = CountingLayer()
    layer.gate = asyncio.Event()
    hub = bus.Hub(layer)
    first, second = Collector(), Collector()
    joins = [asyncio.ensure_future(hub.join("room.1", s)) for s in (first, second)]
    await asyncio.sleep(0.05)

    assert [j.done() for j in joins] == [False, False]
    layer.gate.set()
    await asyncio.gather(*joins)
    assert layer.adds == ["room.1"]
    assert list(hub.groups["room.1"]) == [first, second]
    await hub.aclose()


async def test_the_last_leave_unsubscribes_and_frames_stop() -> None:
    layer = CountingLayer()
    hub = bus.Hub(layer)
    staying, going = Collector(), Collector()
    await hub.join("room.1", staying)
    await hub.join("room.1", going)

    await hub.leave("room.1", going)
    await layer.group_send("room.1", bus._envelope("room.1", _frame(1)))
    await _until(lambda: staying.got)
    await hub.leave("room.1", staying)
    await layer.group_send("room.1", bus._envelope("room.1", _frame(2)))
    await asyncio.sleep(0.05)

    assert (len(staying.got), going.got) == (1, [])
    assert layer.discards == ["room.1"]
    assert "room.1" not in hub.groups
    await hub.aclose()


async def test_a_failing_socket_does_not_stop_the_others() -> None:
    layer = CountingLayer()
    hub = bus.Hub(layer)
    before, broken, after = Collector(), Collector(fail=True), Collector()
    for socket in (before, broken, after):
        await hub.join("user.7", socket)

    await layer.group_send("user.7", bus._envelope("user.7", {"type": "notification"}))
    await _until(lambda: after.got)

    assert before.got == after.got == ['{"type":"notification"}']
    await hub.aclose()


async def test_frames_of_other_groups_and_without_a_group_reach_no_one() -> None:
    layer = CountingLayer()
    hub = bus.Hub(layer)
    socket = Collector()
    await hub.join("room.1", socket)

    await hub.deliver({"type": bus.MESSAGE_TYPE, "text": "{}"})  # an older process's envelope
    await hub.deliver(bus._envelope("room.2", _frame(1)))
    await hub.deliver({"type": bus.MESSAGE_TYPE, "group": "room.1", "text": None})

    assert socket.got == []
    await hub.aclose()


async def test_the_hub_follows_the_channel_layer() -> None:
    from channels.layers import channel_layers

    first = bus.hub()
    assert first is bus.hub()
    channel_layers.backends.clear()  # a test switching layers

    second = bus.hub()

    assert second is not None and second is not first
    assert second.layer is get_channel_layer()


@pytest.mark.redis
async def test_on_redis_a_process_subscribes_once_whatever_its_sockets(redis_layer: str) -> None:
    sockets = [Collector() for _ in range(5)]
    for socket in sockets:
        await bus.join("room.424242", socket)
    hub = bus.hub()
    assert hub is not None and hub.channel is not None
    group_channel = hub.layer._get_layer()._get_group_channel_name("room.424242")
    client = aioredis.from_url(redis_layer)
    try:
        subscribers = dict(await client.pubsub_numsub(group_channel))
    finally:
        await client.aclose()

    await bus.apublish("room.424242", _frame(9))
    await _until(lambda: all(s.got for s in sockets))

    assert subscribers == {group_channel.encode(): 1}
    assert {len(s.got) for s in sockets} == {1}
    for socket in sockets:
        await bus.leave("room.424242", socket)


# --- The gateway's relay ------------------------------------------------------------------------


async def test_an_idle_socket_sends_at_once_without_a_task() -> None:
    gateway, sent = bare_gateway()

    await gateway.relay('{"type":"message.created","room":"wg1-a","seq":1}')

    assert sent == ['{"type":"message.created","room":"wg1-a","seq":1}']
    assert gateway.drainer is None


async def test_the_hub_asks_whether_a_frame_is_control_once_not_once_per_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: three idle gateways in one group, and the question counted.
    hub, gateways = await hub_of(bare_gateway)
    asked = record_calls(monkeypatch, bus, "is_control")
    text = '{"type":"message.created","room":"wg1-a","seq":1}'

    # Act
    await hub.deliver({"group": "room.1", "text": text})

    # Assert: every socket sent it, and the frame was scanned once (a big room's presence list
    # is kilobytes, scanned for every socket before).
    assert ([sent for _gateway, sent in gateways], asked) == ([[text]] * 3, [text])
    await hub.aclose()


def direct_gateway() -> tuple[GatewayConsumer, list[str]]:
    """A bare gateway with daphne's direct write (forums.transport), recorded."""
    gateway, _sent = bare_gateway()
    written: list[str] = []

    def write(text: str) -> bool:
        written.append(text)
        return True

    gateway.write_direct = write
    return gateway, written


async def test_the_hub_writes_to_idle_sockets_without_a_coroutine_per_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: three idle gateways with a direct write, and `relay` (the coroutine) forbidden.
    hub, gateways = await hub_of(direct_gateway)

    async def no_relay(self: GatewayConsumer, text: str, control: bool | None = None) -> None:
        raise AssertionError("an idle socket took the coroutine path")

    monkeypatch.setattr(GatewayConsumer, "relay", no_relay)
    text = '{"type":"message.created","room":"wg1-a","seq":1}'

    # Act
    await hub.deliver({"group": "room.1", "text": text})

    # Assert
    assert [written for _gateway, written in gateways] == [[text]] * 3
    await hub.aclose()


async def test_the_hub_leaves_a_busy_or_declining_socket_to_relay_in_order() -> None:
    # Arrange: one gateway answering a client frame, one whose direct write declines (a socket
    # not open yet, or compressed), one closing.
    hub = bus.Hub(CountingLayer())
    busy, busy_written = direct_gateway()
    declining, declining_sent = bare_gateway()
    declining.write_direct = lambda text: False
    closing, closing_written = direct_gateway()
    closing.closing = True
    for gateway in (busy, declining, closing):
        await hub.join("room.1", gateway)
    texts = [f'{{"type":"typing","room":"wg1-a","n":{n}}}' for n in range(2)]

    # Act
    async with busy.turn:
        await hub.deliver({"group": "room.1", "text": texts[0]})
        assert busy_written == []  # waits behind the client frame in hand
    await hub.deliver({"group": "room.1", "text": texts[1]})  # behind the backlog
    assert busy.drainer is not None
    await busy.drainer

    # Assert
    assert (busy_written, declining_sent, closing_written) == (texts, texts, [])
    await hub.aclose()


async def test_a_join_wave_decodes_each_frame_once_for_every_socket_in_its_dedupe_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: three gateways just subscribed to wg1-a, whose replay carried up to seq 5.
    import json

    from forums import consumers

    hub, gateways = await hub_of(direct_gateway)
    for gateway, _written in gateways:
        gateway.replayed = {"wg1-a": (5, time.monotonic() + consumers.DEDUPE_WINDOW_SECONDS)}
    decoded = record_calls(monkeypatch, json, "loads")
    replayed = '{"type":"message.created","room":"wg1-a","seq":5}'
    newer = '{"type":"message.created","room":"wg1-a","seq":6}'

    # Act
    await hub.deliver({"group": "room.1", "text": replayed})
    await hub.deliver({"group": "room.1", "text": newer})

    # Assert: the replayed frame dropped by all, the newer one written to all, each decoded once
    assert [written for _gateway, written in gateways] == [[newer]] * 3
    assert decoded == [replayed, newer]
    await hub.aclose()


async def test_frames_wait_behind_the_client_frame_in_hand_and_keep_their_order() -> None:
    gateway, sent = bare_gateway()
    texts = [f'{{"type":"typing","room":"wg1-a","n":{n}}}' for n in range(3)]

    async with gateway.turn:  # a subscribe or a post being answered
        await gateway.relay(texts[0])
        await gateway.relay(texts[1])
        assert sent == []
    await gateway.relay(texts[2])  # behind the backlog, even though the socket is free now
    assert gateway.drainer is not None
    await gateway.drainer

    assert sent == texts


async def test_a_control_frame_never_holds_up_the_hub() -> None:
    gateway, sent = bare_gateway()
    release = asyncio.Event()
    handled: list[str] = []

    async def control(text: str) -> bool:
        await release.wait()  # the access re-check's database hop
        handled.append(text)
        return True

    gateway._control = control  # type: ignore[method-assign]
    after = '{"type":"message.created","room":"wg1-a","seq":2}'

    await asyncio.wait_for(gateway.relay('{"type":"access.changed"}'), 1)
    await asyncio.wait_for(gateway.relay(after), 1)
    assert (handled, sent) == ([], [])
    release.set()
    assert gateway.drainer is not None
    await gateway.drainer

    assert (handled, sent) == (['{"type":"access.changed"}'], [after])


async def test_a_closing_socket_drops_its_backlog() -> None:
    gateway, sent = bare_gateway()
    async with gateway.turn:
        await gateway.relay('{"type":"typing","room":"wg1-a"}')
        gateway.closing = True
    assert gateway.drainer is not None
    await gateway.drainer

    assert (sent, gateway.backlog) == ([], None)  # dropped, not sent


# --- Writing one frame to many sockets (forums.transport) ---------------------------------------


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_a_prepared_frame_is_the_websocket_frame_of_the_text(size: int) -> None:
    from forums import transport

    text = "é" * (size // 2) + "a" * (size % 2)
    data = transport.frame_bytes(text)

    payload = text.encode()
    assert data[0] == 0x81  # FIN, text
    assert data[1] & 0x80 == 0  # a server's frames are not masked
    length, offset = data[1] & 0x7F, 2
    if length == 126:
        length, offset = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(data[2:10], "big"), 10
    assert (length, data[offset:]) == (len(payload), payload)
    assert transport.frame_bytes(text) is data  # framed once for every socket it goes to


def test_no_direct_writes_outside_daphne() -> None:
    from forums import transport

    async def send(message: dict[str, Any]) -> None: ...

    assert transport.direct_sender(send) is None


def test_direct_writes_find_daphnes_protocol_behind_its_own_send_only() -> None:
    """The gateway's `send` is daphne's `handle_reply` bound to the socket's protocol (ADR 0018:
    no middleware wraps it); a `send` of anything else gets the ASGI path."""
    import functools

    from daphne.ws_protocol import WebSocketProtocol

    from forums import transport

    class Server:
        def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None: ...

    protocol = WebSocketProtocol.__new__(WebSocketProtocol)
    write = transport.direct_sender(functools.partial(Server().handle_reply, protocol))

    assert isinstance(write, functools.partial)
    assert (write.func, write.args) == (transport._write, (protocol,))
    assert transport.direct_sender(functools.partial(Server().handle_reply, object())) is None
    assert transport.direct_sender(functools.partial(print, protocol)) is None


async def test_relay_to_a_socket_whose_peer_went_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Between the peer's going and daphne's disconnect event, autobahn refuses the send: the
    frame is dropped without a warning and a traceback per frame (a meeting's end closes
    hundreds of sockets while frames are still on their way), and the ones behind it are not
    tried."""
    from autobahn.exception import Disconnected

    gateway, _sent = bare_gateway()
    tries: list[str] = []

    async def gone(text_data: str) -> None:
        tries.append(text_data)
        raise Disconnected("Attempt to send on a closed protocol")

    gateway.send = gone  # type: ignore[method-assign]

    for n in range(2):
        await gateway.relay(f'{{"type":"typing","room":"wg1-a","n":{n}}}')

    assert len(tries) == 1
    assert gateway.closing is True
    assert [r for r in caplog.records if r.levelname in {"WARNING", "ERROR"}] == []
