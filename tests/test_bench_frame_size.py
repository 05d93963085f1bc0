"""bench.frame_size: the load generator's CPU per frame, C0's bare payload against a frame of
`message.created`'s size, at the same rates."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bench import frame_size, loadgen


def test_the_created_frame_is_the_protocols_shape_around_the_payload() -> None:
    text = loadgen.payload(3, 1, 7)

    frame = json.loads(frame_size.created_frame(text))

    assert frame["type"] == "message.created"
    assert (frame["message"]["body"], frame["message"]["body_html"]) == (text, f"<p>{text}</p>\n")
    # Every field of the protocol's message object (docs/realtime-protocol.md).
    assert set(frame["message"]) == {
        "id",
        "seq",
        "room",
        "thread",
        "author",
        "body",
        "body_html",
        "created_at",
        "edited_at",
        "deleted",
        "hidden",
        "reply_to",
        "client_id",
        "reactions",
        "mentions",
        "attachments",
    }
    # The load generator finds its marker in it, as in Minga's frames.
    assert loadgen.MARK in frame_size.created_frame(text)


def test_a_short_run_delivers_both_frames_at_each_rate_and_prices_them() -> None:
    out: dict[str, Any] = asyncio.run(frame_size.measure([5.0], 1, 2.0, members=3))

    assert out["frame_bytes"]["bare"] == loadgen.PAYLOAD_BYTES
    assert out["frame_bytes"]["created"] > 3 * loadgen.PAYLOAD_BYTES
    assert [(s["rate_per_room"], s["frame"], s["lost"]) for s in out["steps"]] == [
        (5.0, "bare", 0),
        (5.0, "created", 0),
    ]
    assert all(s["loadgen_us_per_frame"] > 0 for s in out["steps"])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--rates", "fast"], "--rates takes numbers separated by commas"),
        (["--rates", "0"], "--rates needs at least one rate above 0"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--seconds", "1"], "--seconds must be at least 2"),
    ],
)
def test_bad_arguments_are_refused_with_what_is_wrong(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        frame_size.main(argv)

    assert exited.value.code == 2
    assert says in capsys.readouterr().err
