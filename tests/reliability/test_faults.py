"""Faults (issue 7): Redis killed or paused, a slow consumer, daphne restarted, email worker killed.

Each family starts a private Redis and real daphne processes (tests/reliability/faults.py),
drives them with protocol-following clients and HTTP posters, and prints one line
`FAMILY: figure`. The shared Redis on 6379 is never touched. Longer variants with more clients
and longer outages live in soak/test_faults_soak.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email as email_lib
import json
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from celery import Celery
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from community.models import User
from community.services import api_token_create
from forums.frames import MAX_FRAME_BYTES
from forums.models import Message, Room
from forums.services import thread_create
from notifications import email
from notifications.models import EmailState, Notification
from notifications.services import notify
from tests.factories import UserFactory
from tests.reliability.faults import (
    ROOM,
    ROOT,
    VENV_BIN,
    Daphne,
    Member,
    PrivateRedis,
    backoff_delay,
    cluster,
    free_port,
    http_post,
    log_tail,
    percentile,
    postgres_socket_dir,
    server_env,
    wait_until,
)
from tests.reliability.support import report

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

REALTIME_JS = ROOT / "frontend" / "static" / "minga" / "realtime.js"
# A request's wait while Redis is paused: the layer's publish timeout plus the cache's, plus a
# loaded machine's slack (settings.py, "Redis"; docs/operations.md).
PAUSE_BOUND_SECONDS = 5.0
FLOOD_SAFE_INTERVAL = 1.1  # seconds between one poster's posts: under 10 per 10 s (flood limit)
SITE_MEMBERS = 21
# Who is who among the site's members (a member may have several sockets).
LISTENERS = range(8)
POSTERS = range(8, 18)  # at most 10 posters, each under the flood limit
PROBER, SLOW, WARM = 18, 19, 20
Sample = tuple[float, int, float, int | None]  # a post: (started, status, seconds, seq)


@dataclass
class Site:
    database: str
    thread_id: int
    tokens: list[str]  # one API token per member, in creation order
    logs: Path

    def listener(self, i: int) -> str:
        return self.tokens[LISTENERS[i % len(LISTENERS)]]

    def poster(self, i: int) -> str:
        return self.tokens[POSTERS[i]]


@pytest.fixture
def site(transactional_db: None, tmp_path: Path) -> Iterator[Site]:
    """The Plan of Action, `SITE_MEMBERS` wg1 members with tokens, one thread in wg1-a; all
    committed, so the daphne processes (other connections) see it."""
    call_command("seed_plan_of_action", stdout=StringIO())
    tokens = []
    for n in range(SITE_MEMBERS):
        email = f"m{n}@faults.example"
        call_command(
            "add_member",
            email,
            "--name",
            f"Member {n}",
            "--handle",
            f"m{n}",
            "--password",
            "correct-horse-battery-9",
            "--wg",
            "wg1",
            "--role",
            "member",
            stdout=StringIO(),
        )
        tokens.append(api_token_create(member=User.objects.get(email=email), name="faults")[1])
    thread = thread_create(
        room=Room.objects.get(slug=ROOM),
        author=User.objects.get(email="m0@faults.example"),
        title="Faults",
        body="First",
    )
    yield Site(connection.settings_dict["NAME"], thread.pk, tokens, tmp_path)


def _room_seqs() -> list[int]:
    return list(
        Message.objects.filter(room__slug=ROOM).order_by("seq").values_list("seq", flat=True)
    )


room_seqs = database_sync_to_async(_room_seqs)


async def _poster(
    server: Daphne,
    token: str,
    thread_id: int,
    stop: asyncio.Event,
    out: list[Sample],
    *,
    body_chars: int = 0,
) -> None:
    """Post over HTTP every FLOOD_SAFE_INTERVAL until `stop`: (time, status, seconds, seq)."""
    n = 0
    padding = " " + "x" * body_chars if body_chars else ""
    while not stop.is_set():
        n += 1
        started = time.monotonic()
        post = await asyncio.to_thread(http_post, server, token, thread_id, f"load {n}{padding}")
        out.append((started, post.status, post.seconds, post.seq))
        await asyncio.sleep(max(0.0, FLOOD_SAFE_INTERVAL - post.seconds))


async def warm_up(site: Site, servers: list[Daphne]) -> None:
    """One post to each process, side by side: Django's first request loads a lot."""
    warm = [
        asyncio.to_thread(http_post, server, site.tokens[WARM], site.thread_id, "warm")
        for server in servers
    ]
    await asyncio.gather(*warm)


async def _listeners(site: Site, servers: list[Daphne], count: int) -> list[Member]:
    members = [
        Member(f"listener{i}", site.listener(i), servers[i % len(servers)]) for i in range(count)
    ]
    for member in members:
        await member.open()
    tasks = [asyncio.create_task(m.run()) for m in members]
    for member, task in zip(members, tasks, strict=True):
        member.task = task
    assert await wait_until(lambda: all(m.last_seq is not None for m in members), 15)
    return members


async def _stop_all(members: list[Member]) -> None:
    for member in members:
        await member.stop()
    await asyncio.gather(*(m.task for m in members if m.task), return_exceptions=True)


async def _probe_and_catch_up(
    site: Site, servers: list[Daphne], listeners: list[Member], prober: str
) -> tuple[int, list[int]]:
    """Post a probe; wait until it reached each listener (live, or through the gap fill it set
    off); then each listener catches up once. Returns (reached, the room's seqs)."""
    probe = await asyncio.to_thread(http_post, servers[0], prober, site.thread_id, "probe")
    assert probe.status == 201, log_tail(servers)
    await wait_until(lambda: all(probe.seq in m.view for m in listeners), 20)
    reached = sum(probe.seq in m.view for m in listeners)
    for member in listeners:
        await member.catch_up()
    expected = await room_seqs()
    await wait_until(lambda: all(m.view[-1:] == [expected[-1]] for m in listeners), 10)
    await asyncio.sleep(0.5)  # a late duplicate would be counted too
    return reached, expected


@dataclass
class RedisFault:
    posts: list[Sample]
    outage: tuple[float, float]  # (fault injected, Redis answering again)
    listeners: list[Member]
    reached: int
    expected: list[int]
    first_seen: dict[str, int | None]
    logs: str

    def during(self) -> list[Sample]:
        return [p for p in self.posts if self.outage[0] <= p[0] < self.outage[1]]

    def figure(self) -> str:
        ok = sum(status == 201 for _t, status, _s, _q in self.posts)
        during = self.during()
        return (
            f"{len(self.listeners)} sockets on 2 daphne processes; HTTP posts {ok}/{len(self.posts)} "
            f"201 ({sum(s == 201 for _t, s, _x, _q in during)}/{len(during)} during the fault), "
            f"p95 {percentile([p[2] for p in self.posts], 0.95) * 1000:.0f} ms, max during the "
            f"fault {max([p[2] for p in during], default=0) * 1000:.0f} ms; probe reached "
            f"{self.reached}/{len(self.listeners)} sockets; views exact after catch-up "
            f"{sum(self.exact(m) for m in self.listeners)}/{len(self.listeners)}; gap fills "
            f"{sum(m.resubscribes for m in self.listeners)}, reconnects "
            f"{sum(len(m.reconnects) for m in self.listeners)}, duplicates dropped by clients "
            f"{sum(m.duplicates for m in self.listeners)}"
        )

    def exact(self, member: Member) -> bool:
        start = self.first_seen[member.name] or 0
        return member.view == [s for s in self.expected if s > start]


async def redis_fault(
    site: Site,
    *,
    mode: str,
    listeners: int,
    posters: int,
    outage: float,
    settle: float,
    postgres_socket: str | None = None,
    transports: dict[str, int] | None = None,
) -> RedisFault:
    """Posters post over HTTP to both processes while `listeners` sockets listen; after
    `settle` seconds Redis is killed and restarted empty (`mode="kill"`) or paused and resumed
    (`"pause"`) `outage` seconds later; then a probe and one catch-up per socket. With
    `postgres_socket`, the processes reach PostgreSQL and Redis over unix sockets, and
    `transports` gets how their connections came in once the listeners are in (`_transports`)."""
    cluster_of = cluster(site.database, site.logs, postgres_socket=postgres_socket)
    with cluster_of as (redis, servers):
        await warm_up(site, servers)  # Django's first request loads a lot
        members = await _listeners(site, servers, listeners)
        if transports is not None:
            transports.update(await database_sync_to_async(_transports)(redis, site.database))
            transports["healthz_ok"] = sum(
                await asyncio.gather(*(asyncio.to_thread(_healthy, s) for s in servers))
            )
        first_seen = {m.name: m.last_seq for m in members}
        stop = asyncio.Event()
        posts: list[Sample] = []
        tasks = [
            asyncio.create_task(
                _poster(servers[i % 2], site.poster(i), site.thread_id, stop, posts)
            )
            for i in range(posters)
        ]
        await asyncio.sleep(settle)
        injected = time.monotonic()
        await asyncio.to_thread(redis.kill if mode == "kill" else redis.pause)
        await asyncio.sleep(outage)
        await asyncio.to_thread(redis.start if mode == "kill" else redis.resume)
        back = time.monotonic()
        await asyncio.sleep(settle)
        stop.set()
        await asyncio.gather(*tasks)
        prober = site.tokens[PROBER]
        reached, expected = await _probe_and_catch_up(site, servers, members, prober)
        await _stop_all(members)
        logs = log_tail(servers)
    return RedisFault(posts, (injected, back), members, reached, expected, first_seen, logs)


def check_redis_fault(result: RedisFault, *, paused: bool = False) -> None:
    assert [p for p in result.posts if p[1] != 201] == [], result.logs
    if paused:
        # Bounded: the channel layer's and the cache's socket timeouts (docs/operations.md),
        # not the length of the pause, bound a request's wait.
        assert max(p[2] for p in result.during()) < PAUSE_BOUND_SECONDS, result.logs
    assert result.reached == len(result.listeners), result.logs
    for member in result.listeners:
        assert result.exact(member), (member.name, member.view, result.expected, result.logs)


@pytest.mark.django_db(transaction=True)
async def test_redis_killed_and_restarted_empty_posts_succeed_and_every_socket_recovers(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await redis_fault(site, mode="kill", listeners=6, posters=3, outage=1.5, settle=1.5)

    report(capsys, "REDIS-RESTART", result.figure())
    check_redis_fault(result)


@pytest.mark.django_db(transaction=True)
async def test_redis_paused_posts_answer_within_the_timeouts_and_every_socket_recovers(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await redis_fault(site, mode="pause", listeners=6, posters=3, outage=6, settle=1.5)

    report(capsys, "REDIS-PAUSE", result.figure())
    check_redis_fault(result, paused=True)


def _healthy(server: Daphne) -> bool:
    """/healthz answers 200 with the database and the channel layer both ok."""
    answer = requests.get(f"{server.origin}/healthz", timeout=10)
    return answer.status_code == 200 and answer.json()["checks"] == {
        "database": "ok",
        "channel_layer": "ok",
    }


def _transports(redis: PrivateRedis, database: str) -> dict[str, int]:
    """How the servers' connections came in: Redis clients over its unix socket and over TCP
    (this call's own excluded), and PostgreSQL backends of `database` over a unix socket (no
    client port) and over TCP (the test's own connection among them)."""
    import redis as redis_py

    client = redis_py.Redis(unix_socket_path=str(redis.socket))
    try:
        clients = [c for c in client.client_list() if c["id"] != str(client.client_id())]
    finally:
        client.close()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE client_port = -1), count(*) FILTER (WHERE client_port"
            " > 0) FROM pg_stat_activity WHERE datname = %s",
            [database],
        )
        unix_backends, tcp_backends = cursor.fetchone()
    return {
        "redis_unix": sum(c["addr"].startswith("/") for c in clients),
        "redis_tcp": sum(not c["addr"].startswith("/") for c in clients),
        "postgres_unix": unix_backends,
        "postgres_tcp": tcp_backends,
    }


@pytest.mark.django_db(transaction=True)
async def test_over_unix_sockets_redis_killed_and_restarted_every_socket_recovers(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    # The single-host deployment of docs/deployment.md: REDIS_URL unix://..., DATABASE_URL with
    # the socket's directory as its host. Every Redis client of the processes (channel layer,
    # cache, presence, broker) and their database pool go through the sockets, and recover.
    directory = await database_sync_to_async(postgres_socket_dir)()
    if directory is None:
        pytest.skip("this PostgreSQL listens on no unix socket")
    transports: dict[str, int] = {}
    result = await redis_fault(
        site,
        mode="kill",
        listeners=6,
        posters=3,
        outage=1.5,
        settle=1.5,
        postgres_socket=directory,
        transports=transports,
    )

    report(capsys, "REDIS-RESTART-UNIX", f"{result.figure()}; connections {transports}")
    assert transports["redis_tcp"] == 0, transports
    assert transports["redis_unix"] >= 2, transports  # each process's subscriber at least
    assert transports["postgres_unix"] >= 2, transports  # each process's pool at least
    assert transports["healthz_ok"] == 2, transports
    check_redis_fault(result)


# --- daphne restart ---------------------------------------------------------------------------


def _node_backoff(draws: list[tuple[int, float]]) -> list[float]:
    """frontend/static/minga/realtime.js `backoffDelay`, run by Node on the given inputs."""
    script = (
        "const [src, inputs] = process.argv.slice(1);"
        "import('data:text/javascript;base64,' + Buffer.from(require('fs').readFileSync(src))"
        ".toString('base64')).then((m) => console.log(JSON.stringify("
        "JSON.parse(inputs).map(([a, d]) => m.backoffDelay(a, d)))));"
    )
    done = subprocess.run(
        ["node", "-e", script, str(REALTIME_JS), json.dumps(draws)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [float(x) / 1000 for x in json.loads(done.stdout)]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node is not installed")
def test_browser_backoff_is_jittered_exponential_with_a_cap() -> None:
    rng = random.Random(7)
    attempts = list(range(12))
    draws = [(a, rng.random()) for a in attempts for _ in range(200)]

    delays = _node_backoff(draws)

    by_attempt: dict[int, list[float]] = {}
    for (attempt, draw), delay in zip(draws, delays, strict=True):
        assert delay == pytest.approx(backoff_delay(attempt, draw))  # the documented formula
        by_attempt.setdefault(attempt, []).append(delay)
    caps = [min(30.0, 0.5 * 2**a) for a in attempts]
    # Within [cap/2, cap], spread over most of it (jitter), the cap doubling up to 30 s.
    assert [
        (min(d) >= c / 2, max(d) <= c) for d, c in zip(by_attempt.values(), caps, strict=True)
    ] == [(True, True)] * len(attempts)
    assert all(max(d) - min(d) > 0.4 * c for d, c in zip(by_attempt.values(), caps, strict=True))
    assert _node_backoff([(0, 0.0), (60, 0.999999)]) == pytest.approx([0.25, 30.0], abs=1e-3)


@pytest.mark.django_db(transaction=True)
async def test_daphne_restart_clients_come_back_spread_out_and_lose_nothing(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await daphne_restart(site, listeners=8, posters=2, down=2.0)

    report(capsys, "DAPHNE-RESTART", result.figure())
    check_daphne_restart(result)


def check_daphne_restart(result: DaphneRestart) -> None:
    assert result.reached == len(result.listeners), result.logs
    for member in result.listeners:
        assert result.exact(member), (member.name, member.view, result.expected, result.logs)
    # Every socket of the restarted process reconnected, not all in the same instant.
    assert result.reconnected == result.restarted, result.logs
    assert result.codes == {"1012": result.restarted}, result.logs
    # Not a herd: the successful attempts spread over the backoff window, not one instant.
    assert result.spread >= 0.25, result.logs
    assert result.busiest_window < result.restarted, result.logs


@dataclass
class DaphneRestart(RedisFault):
    restarted: int = 0
    reconnected: int = 0
    busiest_window: int = 0  # the most successful attempts started within any 250 ms
    codes: dict[str, int] = field(default_factory=dict)
    spread: float = 0.0

    def figure(self) -> str:
        return (
            f"{self.restarted} sockets on the restarted process (close codes {self.codes}), "
            f"reconnected {self.reconnected}/{self.restarted}, their successful attempts spread "
            f"over {self.spread:.2f} s, at most {self.busiest_window} in any 250 ms (failed attempts "
            f"{sum(len(m.errors) for m in self.listeners)}); HTTP posts to the other process "
            f"{sum(p[1] == 201 for p in self.posts)}/{len(self.posts)} 201; probe reached "
            f"{self.reached}/{len(self.listeners)}; views exact after catch-up "
            f"{sum(self.exact(m) for m in self.listeners)}/{len(self.listeners)}; duplicates "
            f"dropped by clients {sum(m.duplicates for m in self.listeners)}"
        )


async def daphne_restart(site: Site, *, listeners: int, posters: int, down: float) -> DaphneRestart:
    """Stop process 0 (SIGTERM, as a deploy does) while its sockets listen and posters post
    through process 1; start it again `down` seconds later on the same port."""
    with cluster(site.database, site.logs) as (_redis, servers):
        await warm_up(site, servers)
        members = await _listeners(site, servers[:1], listeners)
        first_seen = {m.name: m.last_seq for m in members}
        stop = asyncio.Event()
        posts: list[Sample] = []
        tasks = [
            asyncio.create_task(_poster(servers[1], site.poster(i), site.thread_id, stop, posts))
            for i in range(posters)
        ]
        await asyncio.sleep(1)
        stopped = time.monotonic()
        await asyncio.to_thread(servers[0].stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(servers[0].start)
        back = time.monotonic()
        await wait_until(lambda: all(m.reconnects for m in members), 40)
        stop.set()
        await asyncio.gather(*tasks)
        prober = site.tokens[PROBER]
        reached, expected = await _probe_and_catch_up(site, servers, members, prober)
        await _stop_all(members)
        logs = log_tail(servers)
    # The attempt that reached the restarted process (each member's last successful one).
    times = sorted(m.attempts[-1] for m in members if m.attempts)
    busiest = max((sum(t <= u < t + 0.25 for u in times) for t in times), default=0)
    codes: dict[str, int] = {}
    for member in members:
        key = str(member.closes[0]) if member.closes else "none"
        codes[key] = codes.get(key, 0) + 1
    return DaphneRestart(
        posts,
        (stopped, back),
        members,
        reached,
        expected,
        first_seen,
        logs,
        restarted=len(members),
        reconnected=len(times),
        busiest_window=busiest,
        codes=codes,
        spread=(times[-1] - times[0]) if times else 0.0,
    )


# --- slow consumer ----------------------------------------------------------------------------


@dataclass
class SlowConsumer:
    p95_before: float  # seconds, the readers' delivery latency without the stalled socket
    p95_during: float  # ... while it is connected and stalled
    rss_growth_kib: int  # the process's RSS from the stall to after the close, minus before
    sent_while_stalled_kib: int  # what the room sent the stalled socket meanwhile
    closed_after: float | None  # seconds from the stall to the server's close
    slow: Member
    readers: list[Member]
    expected: list[int]
    first_seen: dict[str, int | None]
    logs: str

    def exact(self, member: Member) -> bool:
        start = self.first_seen[member.name] or 0
        return member.view == [s for s in self.expected if s > start]

    def figure(self) -> str:
        change = (self.p95_during / self.p95_before - 1) * 100 if self.p95_before else 0.0
        closed = f"{self.closed_after:.1f} s" if self.closed_after is not None else "never"
        return (
            f"readers' p95 delivery {self.p95_before * 1000:.0f} ms before, "
            f"{self.p95_during * 1000:.0f} ms with a stalled socket ({change:+.0f}%); stalled "
            f"socket closed by the server after {closed} (close codes seen {self.slow.closes}); "
            f"process RSS +{self.rss_growth_kib} KiB while {self.sent_while_stalled_kib} KiB "
            f"were sent its way; it caught up: {self.exact(self.slow)}; readers exact "
            f"{sum(self.exact(m) for m in self.readers)}/{len(self.readers)}"
        )


def _latencies(posts: list[Sample], readers: list[Member], start: float, end: float) -> list[float]:
    return [
        member.arrivals[seq] - started
        for started, status, _s, seq in posts
        if status == 201 and seq is not None and start <= started < end
        for member in readers
        if seq in member.arrivals
    ]


async def slow_consumer(
    site: Site, *, readers: int, posters: int, body_chars: int, phase: float
) -> SlowConsumer:
    """Readers and one socket that stops reading share process 0; posters post big messages
    through process 1. Phase 1 without the stalled socket, phase 2 with it, until the server
    closes it; then it reads again, reconnects and catches up."""
    with cluster(site.database, site.logs) as (_redis, servers):
        await warm_up(site, servers)
        members = await _listeners(site, servers[:1], readers)
        slow = Member("slow", site.tokens[SLOW], servers[0], rcvbuf=4096)
        await slow.open()
        slow.task = asyncio.create_task(slow.run())
        assert await wait_until(lambda: slow.last_seq is not None, 15)
        first_seen = {m.name: m.last_seq for m in [*members, slow]}
        stop = asyncio.Event()
        posts: list[Sample] = []
        tasks = [
            asyncio.create_task(
                _poster(
                    servers[1],
                    site.poster(i),
                    site.thread_id,
                    stop,
                    posts,
                    body_chars=body_chars,
                )
            )
            for i in range(posters)
        ]
        await asyncio.sleep(phase)
        rss_before = servers[0].rss_kib()
        stalled = time.monotonic()
        slow.reading.clear()
        closed = await wait_until(
            lambda: "slow consumer closed" in servers[0].log.read_text(errors="replace"), 40
        )
        closed_after = time.monotonic() - stalled if closed else None
        await asyncio.sleep(1)
        rss_after = servers[0].rss_kib()
        ended = time.monotonic()
        stop.set()
        await asyncio.gather(*tasks)
        slow.reading.set()  # it reads again: what it had, then the close, then it reconnects
        prober = site.tokens[PROBER]
        everyone = [*members, slow]
        reached, expected = await _probe_and_catch_up(site, servers, everyone, prober)
        del reached
        await _stop_all(everyone)
        logs = log_tail(servers)
    sent = sum(
        status == 201 and stalled <= started < ended for started, status, _s, _q in posts
    ) * (2 * body_chars + 600)  # body and body_html, and the frame's other fields
    return SlowConsumer(
        p95_before=percentile(_latencies(posts, members, 0, stalled), 0.95),
        p95_during=percentile(_latencies(posts, members, stalled, ended), 0.95),
        rss_growth_kib=rss_after - rss_before,
        sent_while_stalled_kib=sent // 1024,
        closed_after=closed_after,
        slow=slow,
        readers=members,
        expected=expected,
        first_seen=first_seen,
        logs=logs,
    )


@pytest.mark.django_db(transaction=True)
async def test_slow_consumer_is_closed_others_keep_receiving_and_it_catches_up(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ten posters: the kernel's buffers (~4 MiB) fill sooner, so the server's 5 s watch starts
    # sooner (closed after ~15 s, against 17-22 s with six; the soak keeps six, 20 readers).
    result = await slow_consumer(site, readers=4, posters=10, body_chars=16_000, phase=3)

    report(capsys, "SLOW-CONSUMER", result.figure())
    check_slow_consumer(result)


def check_slow_consumer(result: SlowConsumer) -> None:
    assert result.closed_after is not None, result.logs  # the server let go of it
    assert result.slow.closes != [], result.logs
    assert result.exact(result.slow), (result.slow.view, result.expected, result.logs)
    for member in result.readers:
        assert result.exact(member), (member.name, member.view, result.expected, result.logs)


# --- email: the worker killed mid-send --------------------------------------------------------


class HoldingHandler:
    """An aiosmtpd handler that holds the SMTP transaction at `hold_at` ("RCPT": before the
    server has the message; "DATA": the whole message received, the 250 not yet given) until
    the test releases it, and records each accepted message's Message-ID."""

    def __init__(self, hold_at: str) -> None:
        self.hold_at = hold_at
        self.holding = threading.Event()
        self.release = threading.Event()
        self.held_once = False
        self.message_ids: list[str] = []

    async def _hold(self, stage: str) -> None:
        if stage == self.hold_at and not self.held_once:
            self.held_once = True
            self.holding.set()
            await asyncio.to_thread(self.release.wait, 60)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        await self._hold("RCPT")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await self._hold("DATA")
        parsed = email_lib.message_from_bytes(envelope.original_content or envelope.content)
        self.message_ids.append(str(parsed["Message-ID"]))
        return "250 Message accepted for delivery"


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(VENV_BIN / "celery"),
                *("-A", "minga", "worker", "--pool", "solo", "--without-heartbeat"),
                *("--without-gossip", "--without-mingle", "-l", "info"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _row_state(pk: int) -> tuple[str, int]:
    row = Notification.objects.get(pk=pk)
    return row.email_state, row.email_attempts


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("hold_at", ["DATA"])  # "RCPT" (before the message) runs in make soak
def test_email_worker_killed_mid_send_then_restarted_and_swept_sends_once(
    plan: None, hold_at: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    email_worker_kill(hold_at=hold_at, tmp_path=tmp_path, capsys=capsys)


def email_worker_kill(*, hold_at: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """EMAIL-WORKER-KILL with the SMTP transaction held at `hold_at` (on the Plan of Action)."""
    member = UserFactory(email="rosa@faults.example", language="en")
    notify(
        kind="mention",
        actor=None,
        target_type="forums.message",
        target_id=1,
        url="/rooms/wg1-a/threads/1/#message-1",
        occurrence_key="faults:1",
        recipient_ids=[member.pk],
        context={"actor": "Ana", "thread": "Faults", "body": "Kill the worker"},
    )
    pk = Notification.objects.get(recipient=member).pk
    # The suite runs tasks eagerly, so the row was emailed in-process (to the test outbox);
    # make it pending again: a row whose task is queued for the real worker below.
    Notification.objects.filter(pk=pk).update(
        email_state=EmailState.PENDING, email_attempts=0, emailed_at=None
    )
    handler = HoldingHandler(hold_at)
    smtp = Controller(handler, hostname="127.0.0.1", port=free_port())
    smtp.start()
    redis = PrivateRedis(tmp_path)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        redis.start()
        env = server_env(
            connection.settings_dict["NAME"],
            redis.url,
            EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}",
        )
        # Not the current app: the suite's own (eager) app must stay the one tasks use.
        sender = Celery("faults", broker=redis.url, set_as_current=False)
        # The worker's queue is named by the deployment's REDIS_PREFIX (settings).
        sender.conf.task_default_queue = env["REDIS_PREFIX"]
        workers.append(_worker(env, tmp_path / "worker.log"))
        sender.send_task("notifications.send_email_task", args=[pk])
        assert handler.holding.wait(60), (tmp_path / "worker.log").read_text()
        workers[0].kill()  # SIGKILL mid-send: no cleanup, the transaction dies with it
        workers[0].wait(10)
        handler.release.set()
        killed_state = _row_state(pk)
        workers.append(_worker(env, tmp_path / "worker.log"))
        # The beat's sweep, run as it would be SWEEP_GRACE after the row became due.
        later = (timezone.now() + email.SWEEP_GRACE + dt.timedelta(minutes=1)).isoformat()
        sender.send_task("notifications.email_sweep_task", kwargs={"now": later})
        deadline = time.monotonic() + 60
        while _row_state(pk)[0] != EmailState.SENT and time.monotonic() < deadline:
            time.sleep(0.2)
        # A second sweep and a repeat of the task: both must find nothing to send.
        sender.send_task("notifications.email_sweep_task", kwargs={"now": later})
        sender.send_task("notifications.send_email_task", args=[pk])
        time.sleep(3)
        final_state = _row_state(pk)
        log = (tmp_path / "worker.log").read_text(errors="replace")
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(15)
        redis.stop()
        handler.release.set()
        smtp.stop()

    report(
        capsys,
        f"EMAIL-WORKER-KILL ({hold_at})",
        f"worker SIGKILLed with the SMTP transaction held at {hold_at}; row after the kill "
        f"{killed_state[0]}; after restart + sweep {final_state[0]} (attempts "
        f"{final_state[1]}); SMTP copies accepted {len(handler.message_ids)}, distinct "
        f"Message-IDs {len(set(handler.message_ids))}",
    )
    assert killed_state[0] == EmailState.PENDING, log  # the kill rolled the attempt back
    assert final_state[0] == EmailState.SENT, log
    assert set(handler.message_ids) == {f"<notification.{pk}@{email._mail_domain()}>"}, log
    # Exactly one copy: a transaction whose client died before the server's 250 is not
    # delivered (aiosmtpd drops it, as MTAs do), and the sweep sends the row once. The window
    # left, a kill after the 250 and before the worker's commit, is covered by the Message-ID
    # derived from the row (notifications/email.py): a copy carries the same one.
    assert len(handler.message_ids) == 1, log


# --- close codes through real daphne ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_frame_over_64_kib_closes_with_1009_through_daphne(site: Site) -> None:
    """Found by this family: autobahn refused 1009 (it only sends 1000 and 3000-4999), the
    close raised inside daphne and the client got 1011. forums/transport.py sends it."""
    with cluster(site.database, site.logs, processes=1) as (_redis, servers):
        server = servers[0]
        async with connect(
            server.url,
            origin=server.origin,  # type: ignore[arg-type]
            additional_headers={"Authorization": f"Token {site.tokens[0]}"},
            open_timeout=10,
        ) as ws:
            await ws.send(json.dumps({"type": "ping"}))
            pong = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send("x" * (MAX_FRAME_BYTES + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        log = server.log.read_text(errors="replace")

    assert (pong, closed.value.rcvd and closed.value.rcvd.code) == ({"type": "pong"}, 1009), log
    assert "Traceback" not in log
