"""daphne's keepalive, for real: an idle socket is pinged, a peer that answers stays, one that does
not is dropped (docs/deployment.md, "Several hosts": the load balancer and the keepalive). The
pings, pongs and close frames go out through forums.transport's direct write
(`_direct_send_data`), so this is its end-to-end check.

The clients are websockets' sans-I/O protocol over a plain socket: the asyncio client answers
every ping by itself, and one peer here must not.
"""

from __future__ import annotations

import select
import socket
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from community.models import User
from community.services import api_token_create
from tests.reliability.faults import Daphne, cluster, log_tail

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

PING_INTERVAL = 1  # daphne checks every 2 s, so a ping goes out every ~2 s
PING_TIMEOUT = 3
WATCH_SECONDS = 12.0


class Peer:
    """One websocket over a blocking socket; `answers`: whether pongs go back."""

    def __init__(self, server: Daphne, token: str, *, answers: bool) -> None:
        self.answers = answers
        self.pings: list[bytes] = []
        self.texts: list[str] = []
        self.dropped_at: float | None = None
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.protocol = ClientProtocol(parse_uri(server.url))
        request = self.protocol.connect()
        request.headers["Authorization"] = f"Token {token}"
        self.protocol.send_request(request)
        self._flush()
        while self.protocol.state is State.CONNECTING:
            self._read()
        assert self.protocol.state is State.OPEN, self.protocol.handshake_exc

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def _read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
            self.dropped_at = time.monotonic()
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.PING:
                self.pings.append(bytes(event.data))
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.texts.append(event.data.decode())
        outgoing = self.protocol.data_to_send()  # the pongs websockets queued
        if self.answers and self.dropped_at is None:
            for data in outgoing:
                if data:
                    self.sock.sendall(data)

    def app_ping(self) -> None:
        """The protocol's own `ping` frame: the gateway answers `pong` if the socket still works."""
        self.protocol.send_text(b'{"type":"ping"}')
        self._flush()

    def close(self) -> None:
        self.sock.close()


def watch(peers: list[Peer], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        live = [p for p in peers if p.dropped_at is None]
        if not live:
            return
        readable, _, _ = select.select([p.sock for p in live], [], [], 0.2)
        for peer in live:
            if peer.sock in readable:
                peer._read()


@pytest.fixture
def token(transactional_db: None) -> str:
    call_command("seed_plan_of_action", stdout=StringIO())
    email = "keepalive@ministry.example"
    call_command(
        "add_member",
        email,
        *("--name", "Keepalive", "--handle", "keepalive"),
        *("--password", "correct-horse-battery-9", "--wg", "wg1", "--role", "member"),
        stdout=StringIO(),
    )
    return api_token_create(member=User.objects.get(email=email), name="keepalive")[1]


def test_idle_sockets_are_pinged_and_a_peer_that_never_answers_is_dropped(
    token: str, tmp_path: Path
) -> None:
    options = ("--ping-interval", str(PING_INTERVAL), "--ping-timeout", str(PING_TIMEOUT))
    database = connection.settings_dict["NAME"]
    with cluster(database, tmp_path, processes=1, options=options) as (_redis, [server]):
        answering = Peer(server, token, answers=True)
        silent = Peer(server, token, answers=False)
        opened = time.monotonic()
        try:
            watch([answering, silent], WATCH_SECONDS)
            answering.app_ping()
            watch([answering], 5)
        finally:
            answering.close()
            silent.close()
        logs = log_tail([server])

    # A ping every ~2 s: autobahn's payload (its clock and a counter), each one different.
    assert len(answering.pings) >= 3, logs
    assert len(set(answering.pings)) == len(answering.pings)
    assert answering.dropped_at is None, logs
    assert '{"type":"pong"}' in answering.texts, (answering.texts, logs)
    # The silent peer was pinged, then dropped once its pong was PING_TIMEOUT overdue.
    assert silent.pings, logs
    assert silent.dropped_at is not None, logs
    assert silent.dropped_at - opened <= PING_INTERVAL + 2 + PING_TIMEOUT + 3


def test_a_peer_that_pings_within_the_interval_is_never_pinged_by_daphne(
    token: str, tmp_path: Path
) -> None:
    # ADR 0019, scaled down: the browser sends its own `ping` every 25 s under daphne's 30 s;
    # here one peer does so every second under 3 s, and another sends nothing.
    interval = 3
    options = ("--ping-interval", str(interval), "--ping-timeout", str(PING_TIMEOUT))
    database = connection.settings_dict["NAME"]
    with cluster(database, tmp_path, processes=1, options=options) as (_redis, [server]):
        browser = Peer(server, token, answers=True)
        silent = Peer(server, token, answers=True)
        try:
            for _second in range(10):
                browser.app_ping()
                watch([browser, silent], 1.0)
        finally:
            browser.close()
            silent.close()
        logs = log_tail([server])

    # The browser's frames restart daphne's count each time: no ping, and its pongs came.
    assert browser.pings == [], logs
    assert browser.texts.count('{"type":"pong"}') >= 9, (browser.texts, logs)
    # The silent peer was pinged every interval (daphne looks every 2 s), and stayed.
    assert len(silent.pings) >= 2, logs
    assert silent.dropped_at is None, logs
