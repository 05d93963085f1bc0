"""The load generator (bench/loadgen.py): its reading of frames it does not measure
(`Fleet._other`), its machine CPU and its ramp's bisection."""

from __future__ import annotations

import asyncio

import pytest

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


def test_machine_cpu_is_every_core_busy_share_over_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two cores, a 4 s window, the machine 75 % busy: 6 s of CPU among all processes, of which
    # the servers, Redis and the load generator used 2.5 s; the rest is everything else's.
    monkeypatch.setattr(loadgen.psutil, "cpu_count", lambda: 2)
    meter = loadgen.Meter([], None)
    start = {
        "at": 10.0,
        "servers": [1.0],
        "redis": 0.0,
        "loadgen": 0.5,
        "machine_busy": 100.0,
        "machine_total": 200.0,
    }
    end = {
        "at": 14.0,
        "servers": [3.0],
        "redis": 0.25,
        "loadgen": 0.75,
        "machine_busy": 106.0,
        "machine_total": 208.0,
    }

    used = meter.delta(start, end)

    assert (used["machine_cpu_seconds"], used["others_cpu_pct"]) == (6.0, 87.5)


@pytest.mark.parametrize(
    ("capacity", "rates"),
    [
        # C0's two readings of one run (docs/performance.md, "C0 read twice"): it passes at
        # 80,000 and fails at 160,000; one step more could only say 80,000 or 120,000.
        (99_000, [120_000, 100_000]),
        (125_000, [120_000, 140_000]),
        (150_000, [120_000, 140_000]),
    ],
)
def test_the_ramp_bisects_between_its_last_pass_and_its_first_failure(
    capacity: float, rates: list[float]
) -> None:
    async def run(rate: float) -> dict[str, object]:
        return {"rate_per_room": rate, "passed": rate <= capacity}

    steps = asyncio.run(loadgen.bisect(run, 80_000, 160_000, steps=2))

    assert [step["rate_per_room"] for step in steps] == rates
    assert asyncio.run(loadgen.bisect(run, 80_000, 160_000, steps=0)) == []


@pytest.mark.parametrize(
    ("capacity", "rates"),
    [
        # The ramp passes 5, 10 and 20 and fails 40, then bisects 20..40.
        (25.0, [5, 10, 20, 40, 30, 25]),
        # Even the first rate fails (a slow machine's peer): halve until a step passes, then
        # bisect between that pass and the failure above it.
        (2.0, [5, 2.5, 1.25, 1.9, 2.2]),
        # Nothing passes, even after every halving: the steps that ran, no bisection.
        (0.1, [5, 2.5, 1.25, 0.62, 0.31]),
        # Every rate of the ramp passes: nothing to bisect.
        (100.0, [5, 10, 20, 40]),
    ],
)
def test_the_search_ramps_up_halves_down_when_the_first_rate_fails_and_bisects(
    capacity: float, rates: list[float]
) -> None:
    async def run(rate: float) -> dict[str, object]:
        return {"rate_per_room": rate, "passed": rate <= capacity}

    steps = asyncio.run(loadgen.search(run, [5, 10, 20, 40], refine=2))

    assert [step["rate_per_room"] for step in steps] == rates


def test_a_steps_latency_tells_a_tail_at_its_start_from_one_all_along() -> None:
    ms = 1_000_000  # the latencies are in ns
    # A tenth of the frames slow at the step's start, then fast ones; and the same frames with
    # the slow ones spread through the rest of the step.
    at_start = [300 * ms] * 10 + [50 * ms] * 90
    spread = [50 * ms] * 10 + [300 * ms if i % 9 == 0 else 50 * ms for i in range(90)]

    started, along = loadgen._latency(at_start), loadgen._latency(spread)

    assert (started["p99_ms"], started["p99_head_ms"], started["p99_rest_ms"]) == (300, 300, 50)
    assert (along["p99_ms"], along["p99_head_ms"], along["p99_rest_ms"]) == (300, 50, 300)
    assert loadgen._latency([]) == dict.fromkeys(
        ("p50_ms", "p99_ms", "p999_ms", "p99_head_ms", "p99_rest_ms")
    )
