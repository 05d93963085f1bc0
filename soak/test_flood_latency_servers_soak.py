"""FLOOD-LATENCY against real servers: a bystander's delivery p95 with and without a flood.

Two daphne processes on a private redis-server and the test's PostgreSQL database, as the fault
families run them (tests/reliability/faults.py). A bystander's websocket (on process 0) times
every post of three normal posters (HTTP API, alternating processes, each under the posting
limit) from the start of its request to its `message.created`, in rounds that alternate: without
a flood, then while one member floods in a process of its own (soak/flood_client.py):
`message.send` frames over a socket on the bystander's process and API posts to both processes,
each at FLOOD_RATE per second, so each transport alone offers ten times the limit (10 per 10 s).
The daphne processes' CPU time (/proc) per phase is a second figure, less at the mercy of the
machine's other load than a p95.

A figure, not an assertion on time. Asserted: every normal post answered 201 and reached the
bystander; every flood post the server did not accept was refused `rate_limited`; the flooder's
stored messages are exactly those it was told were accepted (nothing of the excess stored), and
the bystander got those too.
"""

# ruff: noqa: S101 - a test module: soak/ is not under tests/, where pyproject allows assert

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import ClientConnection, connect

from forums.models import Message
from tests.reliability.faults import ROOT, Daphne, cluster, http_post, log_tail
from tests.reliability.support import report
from tests.reliability.test_faults import Site, site  # noqa: F401 - the fixture

pytestmark = [pytest.mark.soak, pytest.mark.redis, pytest.mark.postgres]

BYSTANDER, POSTERS, FLOODER = 0, (1, 2, 3), 4  # indexes into the site's members (all wg1)
ROUNDS = 2  # of each phase, alternating
PER_POSTER = 12  # posts per poster per round
POST_INTERVAL = 1.1  # seconds between one poster's posts: under 10 per 10 s
FLOOD_RATE = 10.0  # per second and per transport: ten times the limit of 10 per 10 s
# Optional: a py-spy binary. Each daphne process is then sampled during each measured phase
# (collapsed stacks in the test's tmp dir, named <phase>-<port>.txt; the path is printed).
PYSPY = os.environ.get("FLOOD_PYSPY")


@dataclass
class Phase:
    seconds: list[float]  # per normal post: request start -> bystander's message.created
    statuses: list[int]
    cpu: float = 0.0  # CPU seconds the daphne processes used during the phase's rounds ...
    wall: float = 0.0  # ... and how long those rounds took

    @property
    def p95_ms(self) -> float:
        return statistics.quantiles(self.seconds, n=20, method="inclusive")[-1] * 1000


def _cpu_seconds(servers: list[Daphne]) -> float:
    """User + system CPU time of the daphne processes so far (/proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for server in servers:
        assert server.process is not None
        fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


class Bystander:
    """A socket that records when each `message.created` arrived, by body."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}

    async def run(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            if frame["type"] != "message.created":
                continue
            body = frame["message"]["body"]
            now = time.monotonic()
            self.arrived.setdefault(body, now)
            waiter = self.waiters.pop(body, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)

    async def arrival(self, body: str, seconds: float = 30) -> float:
        if body in self.arrived:
            return self.arrived[body]
        waiter = self.waiters.setdefault(body, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, seconds)


async def _poster(
    server: Daphne, token: str, thread_id: int, *, bystander: Bystander, tag: str, out: Phase
) -> None:
    for n in range(PER_POSTER):
        body = f"{tag} {n}"
        started = time.monotonic()
        post = await asyncio.to_thread(http_post, server, token, thread_id, body)
        out.statuses.append(post.status)
        if post.status == 201:
            out.seconds.append(await bystander.arrival(body) - started)
        await asyncio.sleep(max(0.0, POST_INTERVAL - (time.monotonic() - started)))


async def _round(
    where: Site, servers: list[Daphne], bystander: Bystander, tag: str, out: Phase
) -> None:
    """Each poster posts PER_POSTER times; adds the samples and the CPU used to `out`."""
    cpu, started = _cpu_seconds(servers), time.monotonic()
    await asyncio.gather(
        *(
            _poster(
                servers[i % len(servers)],
                where.tokens[p],
                where.thread_id,
                bystander=bystander,
                tag=f"{tag} p{p}",
                out=out,
            )
            for i, p in enumerate(POSTERS)
        )
    )
    out.cpu += _cpu_seconds(servers) - cpu
    out.wall += time.monotonic() - started


@contextlib.asynccontextmanager
async def _profiled(servers: list[Daphne], phase: str, logs: Path) -> AsyncIterator[None]:
    if not PYSPY:
        yield
        return
    samplers = []
    for server in servers:
        assert server.process is not None
        out = logs / f"{phase}-{server.port}.txt"
        samplers.append(
            await asyncio.create_subprocess_exec(
                *(PYSPY, "record", "--pid", str(server.process.pid), "--format", "raw"),
                *("--rate", "200", "--output", str(out)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
        print(f"profile: {out}", file=sys.stderr)
    await asyncio.sleep(1)  # attached
    try:
        yield
    finally:
        for sampler in samplers:
            sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            await sampler.wait()


async def _start_flood(where: Site, servers: list[Daphne]) -> asyncio.subprocess.Process:
    flooder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "soak.flood_client",
        servers[0].url,
        servers[0].origin,
        ",".join(s.origin for s in servers),
        where.tokens[FLOODER],
        str(where.thread_id),
        str(FLOOD_RATE),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert flooder.stdout is not None
    # Measure once the flood is being refused (its first ten posts are within the limit).
    line = await asyncio.wait_for(flooder.stdout.readline(), 60)
    assert line.strip() == b"refused", line
    return flooder


async def _stop_flood(flooder: asyncio.subprocess.Process) -> dict[str, Any]:
    assert flooder.stdin is not None
    flooder.stdin.write(b"stop\n")
    await flooder.stdin.drain()
    out, _err = await asyncio.wait_for(flooder.communicate(), 60)
    assert flooder.returncode == 0, out
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def _stored() -> tuple[int, list[str]]:
    """(the flooder's stored messages, every body posted in the room after the thread's first)."""
    flood = Message.objects.filter(body__startswith="flood-").count()
    bodies = (
        Message.objects.filter(room__slug="wg1-a").order_by("seq").values_list("body", flat=True)
    )
    return flood, list(bodies)[1:]


@pytest.mark.django_db(transaction=True)
async def test_soak_flood_bystander_latency_on_real_servers(
    site: Site,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    with cluster(site.database, site.logs, processes=2) as (_redis, servers):
        async with connect(
            servers[0].url,
            origin=servers[0].origin,  # type: ignore[arg-type]
            additional_headers={"Authorization": f"Token {site.tokens[BYSTANDER]}"},
            open_timeout=10,
        ) as ws:
            await ws.send(json.dumps({"type": "subscribe", "room": "wg1-a", "after": None}))
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
            bystander = Bystander(ws)
            reading = asyncio.create_task(bystander.run())
            await _round(site, servers, bystander, "warm-up", Phase([], []))  # connections
            normal, flooded, floods = Phase([], []), Phase([], []), []
            # Rounds alternate, so a change in the machine's other load falls on both phases.
            for n in range(ROUNDS):
                async with _profiled(servers, f"normal{n}", site.logs):
                    await _round(site, servers, bystander, f"normal{n}", normal)
                flooder = await _start_flood(site, servers)
                try:
                    async with _profiled(servers, f"flooded{n}", site.logs):
                        await _round(site, servers, bystander, f"flooded{n}", flooded)
                finally:
                    floods.append(await _stop_flood(flooder))
            flood_stored, bodies = await database_sync_to_async(_stored)()
            with contextlib.suppress(TimeoutError):  # the flood's accepted posts, live
                await asyncio.wait_for(
                    asyncio.gather(*(bystander.arrival(b, 10) for b in bodies)), 15
                )
            reading.cancel()
        logs = log_tail(servers)

    answers: Counter[str] = Counter()
    offered: Counter[str] = Counter()
    for flood in floods:
        answers += Counter(flood["socket"]) + Counter(flood["api"])
        offered += Counter(flood["offered"])
    accepted = answers.pop("accepted", 0)
    refused = answers["rate_limited"] + answers["429 rate_limited"]
    excess = offered.total() - accepted
    before, during = normal.p95_ms, flooded.p95_ms
    cpu_before, cpu_during = normal.cpu / normal.wall, flooded.cpu / flooded.wall
    # The daphne processes' extra CPU while flooded, per flood post offered in that time.
    extra_ms = (cpu_during - cpu_before) * flooded.wall / offered.total() * 1000
    report(
        capsys,
        "FLOOD-LATENCY",
        f"bystander p95 {before:.1f} ms -> {during:.1f} ms ({(during - before) / before:+.0%}), "
        f"excess refused {refused}/{excess}, stored {flood_stored - accepted} "
        f"(2 daphne processes, private Redis; {ROUNDS} rounds of 3 posters x {PER_POSTER} per "
        f"phase; flood {FLOOD_RATE:.0f}/s socket + {FLOOD_RATE:.0f}/s API, offered "
        f"{dict(sorted(offered.items()))}, accepted {accepted}; daphne CPU {cpu_before:.2f} -> "
        f"{cpu_during:.2f} s/s, ~{extra_ms:.1f} ms per flood post)",
    )
    posts = ROUNDS * 3 * PER_POSTER
    assert normal.statuses + flooded.statuses == [201] * (2 * posts), logs
    assert (len(normal.seconds), len(flooded.seconds)) == (posts, posts)
    # Everything the flooder was not told "accepted" was refused by the posting limit, and
    # nothing of that excess was stored; the bystander got every message of the room.
    assert refused == excess, (floods, logs)
    assert flood_stored == accepted
    assert sorted(bystander.arrived) == sorted(bodies)
