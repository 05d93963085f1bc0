"""Malformed socket input: hypothesis-generated frames against the real gateway.

Every input (random JSON values, known frame types with wrong or random fields, strings up to
~60 000 characters, lone surrogates, binary frames, text that is not JSON) is followed by a
`ping`; everything the socket answers before the `pong` must be a documented server frame, an
`error` carries a documented code, a close carries a documented close code, no frame carries
traceback text, and a bystander's socket in the same room keeps receiving.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from community.models import Role
from forums import consumers, services
from forums.frames import ERROR_CODES
from forums.models import Room
from tests.factories import MembershipFactory, UserFactory
from tests.forums.factories import ThreadFactory
from tests.reliability.support import open_socket, report, session_headers

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 60
# docs/realtime-protocol.md §2: every server -> client type.
SERVER_TYPES = frozenset(
    {
        "pong", "subscribed", "unsubscribed", "resync", "message.created", "message.edited",
        "message.deleted", "message.hidden", "message.unhidden", "reaction.changed",
        "thread.updated", "room.updated", "presence", "typing", "read", "ack", "notification",
        "notification.read", "member.muted", "member.unmuted", "error",
    }
)  # fmt: skip
CLOSE_CODES = frozenset({1000, 1001, 1007, 1009, 1011})  # §1: the codes a protocol error may use
CLIENT_TYPES = ("ping", "subscribe", "unsubscribe", "message.send", "typing", "read")

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
big_text = st.integers(min_value=1_000, max_value=60_000).map(lambda n: "é" * (n // 2))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    surrogates,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def _frame_strategy(thread_id: int) -> st.SearchStrategy[tuple[str, Any]]:
    plausible = {
        "room": st.one_of(st.sampled_from(["wg1-a", "wg2-n", "wg9-z", ""]), json_values),
        "after": st.one_of(st.none(), st.integers(-5, 10**20), json_values),
        "thread": st.one_of(st.just(thread_id), st.integers(-5, 2**64), json_values),
        "message_id": st.one_of(st.integers(-5, 2**64), json_values),
        "reply_to": st.one_of(st.none(), st.integers(-5, 2**64), json_values),
        "body": st.one_of(st.text(max_size=200), big_text, surrogates, json_values),
        "client_id": st.one_of(st.uuids().map(str), st.text(max_size=40), surrogates, json_values),
    }
    typed = st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(CLIENT_TYPES), json_values)},
        optional=plausible,  # type: ignore[arg-type]
    )
    return st.one_of(
        typed.map(lambda f: ("text", json.dumps(f))),
        json_values.map(lambda v: ("text", json.dumps(v))),
        st.text(max_size=200).map(lambda t: ("text", t)),
        st.text(max_size=30).map(lambda t: ("text", '{"type": "subscribe", "room": ' + t)),
        st.integers(1, 2000).map(lambda n: ("text", "[" * n + "]" * n)),
        st.binary(max_size=300).map(lambda b: ("bytes", b)),
    )


class Verdicts:
    def __init__(self) -> None:
        self.inputs = 0
        self.answers = 0
        self.closes = 0
        self.off_spec: list[str] = []


async def _connect(headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    ws, connected = await open_socket(headers)
    assert connected
    return ws


async def _drain_until_pong(ws: WebsocketCommunicator, verdicts: Verdicts) -> int | None:
    """Check every output up to the pong; the close code if the socket closed instead."""
    await ws.send_to(text_data='{"type": "ping"}')
    while True:
        output = await ws.receive_output(timeout=20)
        if output["type"] == "websocket.close":
            return int(output.get("code", 1000))
        text = output.get("text") or ""
        verdicts.answers += 1
        if "Traceback" in text or 'File "' in text:
            verdicts.off_spec.append(f"traceback text: {text[:80]}")
        frame = json.loads(text)
        kind = frame.get("type")
        if kind not in SERVER_TYPES:
            verdicts.off_spec.append(f"undocumented frame type {kind!r}")
        if kind == "error" and frame.get("code") not in ERROR_CODES:
            verdicts.off_spec.append(f"undocumented error code {frame.get('code')!r}")
        if kind == "error" and frame.get("code") == "server_error":
            verdicts.off_spec.append(f"server_error answering {frame.get('frame')!r}")
        if kind == "pong":
            return None


def test_socket_fuzz_answers_stay_in_the_protocol_and_bystander_keeps_receiving(
    plan: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The frame token bucket is tested on its own (tests/forums/test_gateway.py); here it would
    # only turn the fuzz into rate_limited answers.
    monkeypatch.setattr(consumers, "FRAME_BURST", 10**9)
    monkeypatch.setattr(consumers, "FRAME_RATE", 10.0**9)
    fuzzer, bystander, poster = (UserFactory() for _ in range(3))
    for user in (fuzzer, bystander, poster):
        MembershipFactory(member=user, role=Role.MEMBER)
    thread = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=poster)
    fuzz_headers, other_headers = session_headers(fuzzer), session_headers(bystander)
    loop = asyncio.new_event_loop()
    verdicts = Verdicts()
    state: dict[str, WebsocketCommunicator] = {}
    try:
        state["ws"] = loop.run_until_complete(_connect(fuzz_headers))
        other = state["other"] = loop.run_until_complete(_connect(other_headers))
        loop.run_until_complete(other.send_to(text_data='{"type":"subscribe","room":"wg1-a"}'))

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(frames=st.lists(_frame_strategy(thread.pk), min_size=1, max_size=3))
        def fuzz(frames: list[tuple[str, Any]]) -> None:
            for kind, payload in frames:
                verdicts.inputs += 1
                ws = state["ws"]
                # send_input, not send_to: the test helper refuses empty frames, a client may not.
                key = "bytes" if kind == "bytes" else "text"
                loop.run_until_complete(ws.send_input({"type": "websocket.receive", key: payload}))
                code = loop.run_until_complete(_drain_until_pong(ws, verdicts))
                if code is not None:
                    verdicts.closes += 1
                    if code not in CLOSE_CODES:
                        verdicts.off_spec.append(f"close code {code}")
                    state["ws"] = loop.run_until_complete(_connect(fuzz_headers))

        fuzz()
        services.message_post(
            thread=thread, author=poster, body="still here", client_id=uuid.uuid4()
        )
        delivered = loop.run_until_complete(_bystander_got(other, "still here"))
    finally:
        for ws in state.values():
            loop.run_until_complete(ws.disconnect())
        loop.close()

    report(
        capsys,
        "WS-FUZZ",
        f"{MAX_EXAMPLES} examples, {verdicts.inputs} frames, {verdicts.answers} answers, "
        f"closes {verdicts.closes}, off-spec answers {len(verdicts.off_spec)}, "
        f"bystander delivery {'1/1' if delivered else '0/1'}",
    )
    assert (verdicts.off_spec, delivered) == ([], True)


async def _bystander_got(ws: WebsocketCommunicator, body: str) -> bool:
    while True:
        frame = json.loads(await ws.receive_from(timeout=20))
        if frame.get("type") == "message.created" and frame["message"]["body"] == body:
            return True
