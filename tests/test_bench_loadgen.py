"""The load generator's reading of frames it does not measure (bench/loadgen.py, `Fleet._other`)."""

from __future__ import annotations

from bench import loadgen
from forums.frames import dumps


def _fleet(*, keep_frames: bool = False) -> loadgen.Fleet:
    return loadgen.Fleet(loadgen.TutorialProto(), [8000], ["room"], keep_frames=keep_frames)


def _client() -> loadgen.Client:
    return loadgen.Client(index=0, port=8000, room=0)


def test_presence_frames_as_the_gateway_writes_them_are_counted_not_parsed() -> None:
    fleet, client = _fleet(), _client()
    text = dumps({"type": "presence", "room": "wg1-a", "joined": [], "left": [7], "count": 812})

    fleet._other(client, text)
    fleet._other(client, text)

    assert text.startswith(loadgen.PRESENCE)
    assert fleet.presence_frames == 2
    assert (fleet.errors, client.frames) == ([], [])


def test_kept_frames_keep_presence_and_other_frames_are_still_read() -> None:
    fleet, client = _fleet(keep_frames=True), _client()
    presence = {"type": "presence", "room": "wg1-a", "online": []}

    fleet._other(client, dumps(presence))
    fleet._other(client, dumps({"type": "subscribed", "room": "wg1-a", "online": []}))
    refused = dumps({"type": "error", "code": "forbidden"})
    fleet._other(client, refused)
    fleet._other(client, "not json")

    assert fleet.presence_frames == 0
    assert client.frames == [presence]
    assert client.subscribed.is_set()
    assert fleet.errors == [refused, "not JSON: not json"]
