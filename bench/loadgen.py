"""The load generator: one asyncio process of `websockets` clients, the same for every server.

A `Fleet` is N client connections spread round-robin over the server ports and grouped into
rooms (members of a room are contiguous, so every room spans every port). Each room has a
publisher (messages rotate over its members; for C0, one sender on *each* port, since C0 processes
share nothing). Every published payload carries `bench|step|room|seq|perf_counter_ns|`, padded to
`PAYLOAD_BYTES`; receivers find that marker in any frame shape (C0 raw text, the tutorial's
`{"message": ...}`, Minga's `message.created`), so one reader serves every protocol.

Measured here, all in this one process: frames delivered, loss and duplicates per client,
publish-to-deliver latency (both clocks in this process), and through psutil the CPU of the
server processes, Redis, this generator and the whole machine over each send window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from bench import stats

MARK = "bench|"
PRESENCE = '{"type":"presence",'  # Minga's frames are compact JSON (forums.frames.dumps)
PAYLOAD_BYTES = 200
OPEN_TIMEOUT = 30.0
CONNECT_ATTEMPTS = 3
SUBSCRIBE_TIMEOUT = 30.0


def payload(step: int, room: int, seq: int) -> str:
    head = f"{MARK}{step}|{room}|{seq}|{time.perf_counter_ns()}|"
    return head + "x" * max(0, PAYLOAD_BYTES - len(head))


# --- Protocols: how each server is addressed, joined and published to -------------------------


class Proto:
    """The tutorial chat and C0 share this shape: connecting to the room's URL joins it."""

    name = "base"
    origin = "http://127.0.0.1"
    # A process that publishes on the load generator's orders instead of its clients (Minga's
    # services, bench.minga_poster; C0d's store-then-send, bench.c0d_poster): `Fleet.publish`.
    poster: Any = None

    def url(self, port: int, room: str) -> str:
        raise NotImplementedError

    def headers(self, index: int) -> dict[str, str]:
        return {}

    def subscribe_frame(self, room: str) -> str | None:
        return None

    def publish_frame(self, room: str, text: str) -> str:
        raise NotImplementedError


class C0Proto(Proto):
    name = "c0"

    def url(self, port: int, room: str) -> str:
        return f"ws://127.0.0.1:{port}/room/{room}"

    def publish_frame(self, room: str, text: str) -> str:
        return text


class TutorialProto(Proto):
    name = "tutorial"

    def url(self, port: int, room: str) -> str:
        return f"ws://127.0.0.1:{port}/ws/chat/{room}/"

    def publish_frame(self, room: str, text: str) -> str:
        return json.dumps({"message": text})


class MingaProto(Proto):
    """The real protocol (docs/realtime-protocol.md): token auth, subscribe, message.send."""

    name = "minga"

    def __init__(self, tokens: Sequence[str], threads: dict[str, int]) -> None:
        if not tokens:
            raise ValueError("Minga clients need at least one API token")
        self.tokens = list(tokens)
        self.threads = threads
        self.sent_at: dict[str, int] = {}  # client_id -> when message.send was sent

    def url(self, port: int, room: str) -> str:
        return f"ws://127.0.0.1:{port}/ws/"

    def headers(self, index: int) -> dict[str, str]:
        return {"Authorization": f"Token {self.tokens[index % len(self.tokens)]}"}

    def subscribe_frame(self, room: str) -> str | None:
        return json.dumps({"type": "subscribe", "room": room, "after": None})

    def publish_frame(self, room: str, text: str) -> str:
        client_id = str(uuid.uuid4())
        self.sent_at[client_id] = time.perf_counter_ns()
        return json.dumps(
            {
                "type": "message.send",
                "room": room,
                "thread": self.threads[room],
                "body": text,
                "client_id": client_id,
                "reply_to": None,
            }
        )


class MingaSessionProto(MingaProto):
    """Minga's protocol as a browser speaks it: the session cookie a login set (the page's
    Origin, which every client sends, is what lets a cookie through)."""

    def headers(self, index: int) -> dict[str, str]:
        # `tokens` holds the session keys here (MingaProto's list of credentials).
        return {"Cookie": f"sessionid={self.tokens[index % len(self.tokens)]}"}


# --- CPU and memory of the processes involved -----------------------------------------------


class Meter:
    """psutil readings of the servers, Redis, this process and the whole machine."""

    def __init__(self, servers: Sequence[int], redis: int | None) -> None:
        self.servers = [psutil.Process(pid) for pid in servers]
        self.redis: psutil.Process | None = None
        if redis:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.redis = psutil.Process(redis)
        self.me = psutil.Process()

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system

    def snapshot(self) -> dict[str, Any]:
        machine = psutil.cpu_times()
        return {
            "at": time.perf_counter(),
            "servers": [self._cpu(p) for p in self.servers],
            "redis": self._cpu(self.redis) if self.redis else 0.0,
            "loadgen": self._cpu(self.me),
            "machine_busy": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
            "machine_total": sum(machine),
        }

    def delta(self, start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
        """CPU use between two snapshots, in % of one core (100 = one core busy)."""
        wall = max(1e-9, end["at"] - start["at"])
        servers = [
            (b - a) / wall * 100 for a, b in zip(start["servers"], end["servers"], strict=True)
        ]
        busy = end["machine_busy"] - start["machine_busy"]
        total = max(1e-9, end["machine_total"] - start["machine_total"])
        ours = (
            sum(end["servers"])
            - sum(start["servers"])
            + end["redis"]
            - start["redis"]
            + end["loadgen"]
            - start["loadgen"]
        )
        cores = psutil.cpu_count() or 1
        return {
            "wall_s": round(wall, 3),
            "server_cpu_pct": [round(v, 1) for v in servers],
            "server_cpu_seconds": sum(end["servers"]) - sum(start["servers"]),
            "redis_cpu_pct": round((end["redis"] - start["redis"]) / wall * 100, 1),
            "loadgen_cpu_pct": round((end["loadgen"] - start["loadgen"]) / wall * 100, 1),
            "machine_busy_pct": round(busy / total * 100, 1),
            # Every process's CPU on the box, ours and the rest (PostgreSQL, the kernel's
            # loopback work): what a rate costs the machine as a whole, where all share its cores.
            "machine_cpu_seconds": busy / total * cores * wall,
            # Everything else on the box (other test runs): what our figures competed with.
            "others_cpu_pct": round(max(0.0, busy / total * cores * 100 - ours / wall * 100), 1),
        }

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.servers:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total


# --- Clients ------------------------------------------------------------------------------


@dataclass(eq=False)
class Client:
    index: int
    port: int
    room: int
    ws: ClientConnection | None = None
    counts: dict[int, int] = field(default_factory=dict)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    closed: bool = False
    frames: list[dict[str, Any]] = field(default_factory=list)  # kept only when `keep_frames`


class Fleet:
    def __init__(
        self,
        proto: Proto,
        ports: Sequence[int],
        rooms: Sequence[str],
        *,
        per_port_publishers: bool = False,
        keep_frames: bool = False,
        senders_per_room: int = 32,
    ) -> None:
        self.proto = proto
        self.senders_per_room = senders_per_room
        self.ports = list(ports)
        self.rooms = list(rooms)
        self.per_port_publishers = per_port_publishers
        self.keep_frames = keep_frames
        self.clients: list[Client] = []
        self.step_total: defaultdict[int, int] = defaultdict(int)
        self.latencies: defaultdict[int, list[int]] = defaultdict(list)
        self.total = 0
        self.acks = 0
        self.presence_frames = 0  # counted, not parsed (_other)
        self.ack_latencies: list[int] = []  # Minga: message.send -> ack
        self.post_failures = 0
        self.post_ms: list[float | None] = [None, None]  # Minga's poster: due -> committed
        self.send_failures = 0
        self.handshake_retries = 0
        self.errors: list[str] = []
        self.per_room = 0

    # Opening and closing --------------------------------------------------------------

    async def open(
        self,
        count: int,
        *,
        per_room: int | None = None,
        concurrency: int = 64,
        budget: float = 90,
    ) -> float:
        """Connect `count` more clients and wait until each is subscribed; returns seconds.

        Raises RuntimeError when a client fails, or when not all are subscribed within `budget`
        seconds (saying how many were).
        """
        if per_room is not None:
            self.per_room = per_room
        per_room = self.per_room or max(1, count // max(1, len(self.rooms)))
        self.per_room = per_room
        gate = asyncio.Semaphore(concurrency)
        first = len(self.clients)
        new = [
            Client(
                index=i,
                port=self.ports[i % len(self.ports)],
                room=min(i // per_room, len(self.rooms) - 1),
            )
            for i in range(first, first + count)
        ]
        self.clients.extend(new)
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(self._open_one(c, gate)) for c in new]
        done, pending = await asyncio.wait(tasks, timeout=budget)
        elapsed = time.perf_counter() - started
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        failures = [t.exception() for t in done if t.exception() is not None]
        if pending:
            raise RuntimeError(
                f"only {len(done) - len(failures)} of {count} clients connected and subscribed "
                f"within the {budget:.0f} s budget"
            )
        if failures:
            raise RuntimeError(
                f"{len(failures)} of {count} clients could not connect and subscribe; "
                f"first: {failures[0]!r}"
            )
        return elapsed

    async def _open_one(self, client: Client, gate: asyncio.Semaphore) -> None:
        room = self.rooms[client.room]
        async with gate:
            for attempt in range(CONNECT_ATTEMPTS):
                try:
                    client.ws = await connect(
                        self.proto.url(client.port, room),
                        # A browser's origin carries the page's port; Minga checks it.
                        origin=f"{self.proto.origin}:{client.port}",  # type: ignore[arg-type]
                        additional_headers=self.proto.headers(client.index),
                        compression=None,
                        ping_interval=None,
                        open_timeout=OPEN_TIMEOUT,
                        close_timeout=2,
                        max_size=2**20,
                    )
                    break
                except (WebSocketException, OSError, TimeoutError):
                    # A handshake the server dropped (daphne gives an application 5 s to
                    # accept): retried as a browser would, and counted.
                    self.handshake_retries += 1
                    if attempt == CONNECT_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))
            assert client.ws is not None
            client.reader = asyncio.create_task(self._read(client))
            frame = self.proto.subscribe_frame(room)
            if frame is None:
                client.subscribed.set()
            else:
                await client.ws.send(frame)
                await asyncio.wait_for(client.subscribed.wait(), SUBSCRIBE_TIMEOUT)

    async def close(self, limit: float = 30) -> None:
        async def close_one(client: Client) -> None:
            if client.ws is not None:
                with contextlib.suppress(Exception):
                    await client.ws.close()

        gate = asyncio.Semaphore(256)

        async def gated(client: Client) -> None:
            async with gate:
                await close_one(client)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(gated(c) for c in self.clients)), limit)
        for client in self.clients:
            if client.ws is not None and client.ws.transport is not None:
                client.ws.transport.abort()
            if client.reader is not None:
                client.reader.cancel()
        await asyncio.gather(
            *(c.reader for c in self.clients if c.reader is not None), return_exceptions=True
        )
        self.clients = []

    # Reading ---------------------------------------------------------------------------

    async def _read(self, client: Client) -> None:
        ws = client.ws
        assert ws is not None
        counts = client.counts
        step_total = self.step_total
        latencies = self.latencies
        keep = self.keep_frames
        try:
            async for text in ws:
                if not isinstance(text, str):
                    continue
                at = text.find(MARK)
                if at < 0:
                    self._other(client, text)
                    continue
                now = time.perf_counter_ns()
                step_s, _room, _seq, sent_s, _rest = text[at + 6 : at + 80].split("|", 4)
                step = int(step_s)
                counts[step] = counts.get(step, 0) + 1
                step_total[step] += 1
                self.total += 1
                latencies[step].append(now - int(sent_s))
                if keep:
                    client.frames.append(json.loads(text))
        except (ConnectionClosed, WebSocketException, OSError):
            pass
        finally:
            client.closed = True

    def _other(self, client: Client, text: str) -> None:
        if text.startswith(PRESENCE) and not self.keep_frames:
            # Filling a room of thousands, every socket gets each server process's presence
            # deltas (up to one per second, each naming the members who came): parsing them
            # all held this one process at a full core, and the connect rate measured the load
            # generator (docs/performance.md, "H3: the load generator's share"). Nothing here
            # reads them; the servers' cost of sending them is still measured.
            self.presence_frames += 1
            return
        try:
            frame = json.loads(text)
        except ValueError:
            self.errors.append(f"not JSON: {text[:120]}")
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "subscribed":
            client.subscribed.set()
        elif kind == "ack":
            self.acks += 1
            sent = getattr(self.proto, "sent_at", {}).pop(frame.get("client_id"), None)
            if sent is not None:
                self.ack_latencies.append(time.perf_counter_ns() - sent)
        elif kind == "error":
            self.errors.append(text[:300])
        elif self.keep_frames:
            client.frames.append(frame)

    # Publishing and measuring -------------------------------------------------------------

    async def recount(
        self, steps: list[dict[str, Any]], log: Any, settle: float = 30, quiet: float = 5
    ) -> None:
        """Count again once traffic has stopped: a frame that came after its step's drain was
        late, not lost. `lost` becomes the frames never delivered; `lost_at_drain` keeps the
        first count (the step still failed: its delivery took longer than the drain). Waits
        until every frame came, or none came for `quiet` seconds, at most `settle` seconds."""

        def missing() -> int:
            return sum(
                max(0, s["messages"] - c.counts.get(s["step"], 0))
                for s in steps
                for c in self.clients
            )

        deadline = time.perf_counter() + settle
        last, last_change = self.total, time.perf_counter()
        while time.perf_counter() < deadline and missing():
            await asyncio.sleep(0.5)
            if self.total != last:
                last, last_change = self.total, time.perf_counter()
            elif time.perf_counter() - last_change > quiet:
                break
        for step in steps:
            lost = sum(
                max(0, step["messages"] - c.counts.get(step["step"], 0)) for c in self.clients
            )
            if lost != step["lost"]:
                log(f"  step {step['step']}: {step['lost'] - lost} frames came after the drain")
            step["lost_at_drain"], step["lost"] = step["lost"], lost

    def publishers(self) -> list[list[list[Client]]]:
        """Per room, the rotation of senders: message k of a room comes from its k-th member
        (round-robin), as in a room where many people talk; for C0, one sender on each port."""
        rooms: list[list[list[Client]]] = []
        for room_index in range(len(self.rooms)):
            members = [c for c in self.clients if c.room == room_index][: self.senders_per_room]
            if self.per_port_publishers:
                rooms.append([[c for c in members if c.port == port] for port in self.ports])
            else:
                rooms.append([members])
        return rooms

    async def publish(self, step: int, rate: float, count: int) -> float:
        """Send `count` messages to every room at `rate` per room per second; returns seconds."""
        poster = self.proto.poster
        if poster is not None:  # a separate process posts: Minga's services, or C0d's store
            answer = await asyncio.to_thread(
                poster.order,
                step=step,
                rate=rate,
                count=count,
                rooms=self.rooms,
                senders=self.senders_per_room,
            )
            if answer["failures"]:
                self.errors.extend(answer["examples"])
                self.post_failures += answer["failures"]
            self.post_ms = answer.get("post_ms", [None, None])
            return float(answer["scheduled_seconds"])
        rotations = self.publishers()
        started = time.perf_counter()
        for seq in range(count):
            delay = started + seq / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            for room_index, groups in enumerate(rotations):
                text = payload(step, room_index, seq)
                frame = self.proto.publish_frame(self.rooms[room_index], text)
                for group in groups:
                    sender = group[seq % len(group)]
                    assert sender.ws is not None
                    try:
                        await sender.ws.send(frame)
                    except (ConnectionClosed, WebSocketException, OSError) as error:
                        # The server closed this client (under overload daphne answers 1011
                        # when the application fails): the message is never sent, its frames
                        # count as lost, and the step fails.
                        self.send_failures += 1
                        if len(self.errors) < 50:
                            self.errors.append(f"send failed: {error!r}"[:300])
        return time.perf_counter() - started

    async def step(
        self,
        meter: Meter,
        *,
        step: int,
        rate: float,
        seconds: float,
        drain_max: float = 20,
        quiet: float = 2,
        max_p99_ms: float = 1000,
    ) -> dict[str, Any]:
        count = max(1, round(rate * seconds))
        expected = count * len(self.clients)
        self.post_failures = 0
        self.post_ms = [None, None]
        self.send_failures = 0
        before = meter.snapshot()
        frames_before = self.total
        sent_seconds = await self.publish(step, rate, count)
        # The window closes at the scheduled end of sending, not before.
        remaining = seconds - sent_seconds
        if remaining > 0:
            await asyncio.sleep(remaining)
        after = meter.snapshot()
        in_window = self.total - frames_before
        cpu = meter.delta(before, after)
        deadline = time.perf_counter() + drain_max
        last, last_change = -1, time.perf_counter()
        while time.perf_counter() < deadline and self.step_total[step] < expected:
            got = self.step_total[step]
            if got != last:
                last, last_change = got, time.perf_counter()
            elif got and time.perf_counter() - last_change > quiet:
                break  # frames came, then stopped: the rest are lost (or very late)
            await asyncio.sleep(0.05)
        lost = sum(max(0, count - c.counts.get(step, 0)) for c in self.clients)
        duplicates = sum(max(0, c.counts.get(step, 0) - count) for c in self.clients)
        latency = _latency(self.latencies.pop(step, []))
        acks = sorted(self.ack_latencies)
        self.ack_latencies = []
        p99 = latency["p99_ms"]
        window = cpu["wall_s"]
        delivered_per_s = in_window / window
        return {
            "step": step,
            "rate_per_room": rate,
            "rooms": len(self.rooms),
            "clients": len(self.clients),
            "messages": count,
            "sent_rate": round(count / max(sent_seconds, 1e-9), 1),
            "expected": expected,
            "received": self.step_total[step],
            "lost": lost,
            "duplicates": duplicates,
            "delivered_per_s": round(delivered_per_s),
            **latency,
            "ack_p50_ms": _quantile(acks, 0.5),
            "ack_p99_ms": _quantile(acks, 0.99),
            # Minga: each post from when it was due to its commit and publish (the poster's
            # figure): the part of p50/p99 spent before any server has the message.
            "post_p50_ms": _round(self.post_ms[0]),
            "post_p99_ms": _round(self.post_ms[1]),
            "server_us_per_frame": (
                round(cpu["server_cpu_seconds"] / in_window * 1e6, 1) if in_window else None
            ),
            "post_failures": self.post_failures,
            "send_failures": self.send_failures,
            "passed": lost == 0
            and self.send_failures == 0
            and duplicates == 0
            and self.post_failures == 0
            and p99 is not None
            and p99 <= max_p99_ms,
            "errors": self.errors[-3:],
            **cpu,
        }


def _round(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 2)


def _latency(arrived: list[int]) -> dict[str, float | None]:
    """A step's delivery latencies (ns, in arrival order) as ms: p50, p99, p99.9, and the p99 of
    the step's first tenth of frames and of the rest, which tell a tail made at the step's start
    (the first messages after a quiet spell) from one made all along."""
    tenth = len(arrived) // 10
    ordered = sorted(arrived)  # sorted again in each quantile, at linear cost
    return {
        "p50_ms": _quantile(ordered, 0.5),
        "p99_ms": _quantile(ordered, 0.99),
        "p999_ms": _quantile(ordered, 0.999),
        "p99_head_ms": _quantile(arrived[:tenth], 0.99),
        "p99_rest_ms": _quantile(arrived[tenth:], 0.99),
    }


def _quantile(values: list[int], q: float) -> float | None:
    """`q` of the times in nanoseconds, in ms (bench.stats' rank)."""
    return round(stats.quantile(values, q) / 1e6, 2) if values else None


# --- Scenarios ----------------------------------------------------------------------------


async def bisect(
    run: Callable[[float], Awaitable[dict[str, Any]]], low: float, high: float, steps: int
) -> list[dict[str, Any]]:
    """`steps` steps between a passing rate `low` and a failing rate `high`, each halfway
    between the highest pass and the lowest failure so far; the steps run, in order."""
    done: list[dict[str, Any]] = []
    for _ in range(steps):
        done.append(await run(round((low + high) / 2, 1)))
        if done[-1]["passed"]:
            low = done[-1]["rate_per_room"]
        else:
            high = done[-1]["rate_per_room"]
    return done


# Halvings below the ramp's first rate when even that fails (a slow machine's peers), each
# half the last: 5,000 frames/s -> 2,500 -> 1,250 -> 625 -> 312.5.
HALVINGS = 4


async def search(
    run: Callable[[float], Awaitable[dict[str, Any]]],
    rates: Sequence[float],
    refine: int,
    halvings: int = HALVINGS,
) -> list[dict[str, Any]]:
    """The ramp's steps, in the order they ran: up `rates` until a step fails; when even the
    first failed, down by halves until one passes (at most `halvings`); then `refine` steps
    bisecting between the best pass and the lowest failure above it."""
    done: list[dict[str, Any]] = []
    for rate in rates:
        done.append(await run(rate))
        if not done[-1]["passed"]:
            break
    rate = rates[0] if rates else 0
    for _ in range(halvings if done and not any(s["passed"] for s in done) else 0):
        rate /= 2
        done.append(await run(round(rate, 2)))
        if done[-1]["passed"]:
            break
    best = max((s["rate_per_room"] for s in done if s["passed"]), default=None)
    if best is not None:
        above = [s["rate_per_room"] for s in done if not s["passed"] and s["rate_per_room"] > best]
        if above:
            done += await bisect(run, best, min(above), refine)
    return done


async def fanout(
    proto: Proto,
    ports: Sequence[int],
    rooms: Sequence[str],
    members: int,
    rates: Sequence[float],
    *,
    seconds: float,
    meter: Meter,
    per_port_publishers: bool = False,
    refine: int = 2,
    drain_max: float = 20,
    send_ramp: bool = False,
    fixed_rates: Sequence[float] | Any = (),
    budget: float = 90,
    log: Any = print,
) -> dict[str, Any]:
    """H1 (and H2): `members` clients in `rooms`; ramp the per-room rate until a step fails.

    A step fails when a frame is lost or duplicated after the drain, or p99 > 1 s. Then
    `refine` steps bisect between the last pass and the first failure: the ramp doubles, so
    with one step the best pass could only be 80,000 or 120,000 frames/s, and a p99 a few ms
    either side of 1 s moved it between the two (docs/performance.md, "C0 read twice"). When
    the first rate already fails, the rate halves until a step passes (`search`). Then one
    step at each of `fixed_rates` (H2's fixed loads), whatever the ramp found.
    """
    fleet = Fleet(proto, ports, rooms, per_port_publishers=per_port_publishers)
    counter = iter(range(1, 10_000))

    async def run(rate: float, label: str = "") -> dict[str, Any]:
        result = await fleet.step(
            meter, step=next(counter), rate=rate, seconds=seconds, drain_max=drain_max
        )
        log(_describe(proto.name, result) + label)
        return result

    fixed: list[dict[str, Any]] = []
    send_steps: list[dict[str, Any]] = []
    try:
        connect_s = await fleet.open(members, per_room=members // len(rooms), budget=budget)
        await asyncio.sleep(1)
        steps = await search(run, rates, refine)
        if callable(fixed_rates):  # rates that depend on what the ramp found
            passing = [s["delivered_per_s"] for s in steps if s["passed"]]
            fixed_rates = fixed_rates(max(passing) if passing else None)
        for rate in fixed_rates:
            fixed.append({**await run(rate, " (fixed load)"), "fixed_load": True})
        if send_ramp:  # Minga: the same clients, now posting through the gateway's message.send
            poster, proto.poster = proto.poster, None
            try:
                # The same ramp up, without halving or bisecting: a figure beside H1's, not H1's.
                send_steps = await search(
                    lambda rate: run(rate, " (message.send)"), rates, refine=0, halvings=0
                )
            finally:
                proto.poster = poster
        await fleet.recount([*steps, *fixed, *send_steps], log)
    finally:
        await fleet.close()
    passing = [s for s in steps if s["passed"]]
    best = max(passing, key=lambda s: s["delivered_per_s"]) if passing else None
    send_passing = [s for s in send_steps if s["passed"]]
    return {
        "members": members,
        "rooms": len(rooms),
        "connect_seconds": round(connect_s, 2),
        "handshake_retries": fleet.handshake_retries,
        "steps": steps,
        "fixed": fixed,
        "best": best,
        "send_steps": send_steps,
        "send_best": max(send_passing, key=lambda s: s["delivered_per_s"])
        if send_passing
        else None,
        "lost_total": sum(s["lost"] for s in steps + fixed + send_steps),
        "duplicates_total": sum(s["duplicates"] for s in steps + fixed + send_steps),
    }


def _describe(name: str, s: dict[str, Any]) -> str:
    return (
        f"  {name:8} {s['rooms']}x{s['clients'] // max(1, s['rooms'])} rate {s['rate_per_room']:>7}/s "
        f"delivered {s['delivered_per_s']:>7}/s lost {s['lost']} dup {s['duplicates']} "
        f"p50 {s['p50_ms']} p99 {s['p99_ms']} (head {s['p99_head_ms']}, rest "
        f"{s['p99_rest_ms']}) ms "
        + (f"ack p50 {s['ack_p50_ms']} p99 {s['ack_p99_ms']} ms " if s["ack_p50_ms"] else "")
        + f"srv {s['server_cpu_pct']}% "
        f"{s['server_us_per_frame']} us/frame gen {s['loadgen_cpu_pct']}% "
        f"others {s['others_cpu_pct']}% {'ok' if s['passed'] else 'FAIL'}"
    )


async def hold(
    proto: Proto,
    ports: Sequence[int],
    room: str,
    sizes: Sequence[int],
    *,
    meter: Meter,
    settle: float = 3,
    idle_seconds: float = 5,
    budget: float = 90,
    log: Any = print,
) -> dict[str, Any]:
    """H3: RSS per connection at each size, idle CPU with all held, connect+subscribe rate.

    Stops growing when a size cannot be reached within `budget` seconds of connecting."""
    warm = Fleet(proto, ports, [room])
    await warm.open(len(ports))  # one per process: loads lazy imports before the baseline
    await warm.close()
    await asyncio.sleep(settle)
    base = meter.rss_bytes()
    fleet = Fleet(proto, ports, [room])
    points: list[dict[str, Any]] = []
    connect_seconds = 0.0
    try:
        held = 0
        for size in sizes:
            if points and "connect_per_s" in points[-1]:
                needed = (size - held) / points[-1]["connect_per_s"]
                if needed > budget:
                    points.append(
                        {
                            "connections": size,
                            "error": f"not attempted: at {points[-1]['connect_per_s']}/s the "
                            f"{size - held} more clients need ~{needed:.0f} s, over the "
                            f"{budget:.0f} s budget",
                        }
                    )
                    log(f"  {proto.name:8} {size:>6} conns: {points[-1]['error']}")
                    break
            opening = meter.snapshot()
            try:
                connect_seconds += await fleet.open(size - held, per_room=max(sizes), budget=budget)
            except RuntimeError as error:
                points.append({"connections": size, "error": str(error)})
                log(f"  {proto.name:8} {size:>6} conns: {error}")
                break
            held = size
            connecting = meter.delta(opening, meter.snapshot())
            await asyncio.sleep(settle)
            rss = meter.rss_bytes()
            before = meter.snapshot()
            await asyncio.sleep(idle_seconds)
            idle = meter.delta(before, meter.snapshot())
            point = {
                "connections": size,
                "connect_seconds_cumulative": round(connect_seconds, 2),
                "connect_per_s": round(size / connect_seconds, 1),
                "rss_mb": round(rss / 2**20, 1),
                "kib_per_connection": round((rss - base) / size / 1024, 1),
                "idle_server_cpu_pct": round(sum(idle["server_cpu_pct"]), 2),
                "handshake_retries": fleet.handshake_retries,
                "others_cpu_pct": idle["others_cpu_pct"],
                # While these clients connected: the load generator must not be the bound.
                "connect_loadgen_cpu_pct": connecting["loadgen_cpu_pct"],
                "connect_server_cpu_pct": connecting["server_cpu_pct"],
            }
            points.append(point)
            log(
                f"  {proto.name:8} {size:>6} conns: {point['kib_per_connection']} KiB/conn, "
                f"idle {point['idle_server_cpu_pct']}% CPU, connect {point['connect_per_s']}/s "
                f"(load generator {point['connect_loadgen_cpu_pct']}%), "
                f"{fleet.handshake_retries} handshakes retried"
            )
    finally:
        await fleet.close()
    return {"base_rss_mb": round(base / 2**20, 1), "points": points}
