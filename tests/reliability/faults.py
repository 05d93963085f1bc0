"""The fault families' machinery: a private Redis, real daphne processes, protocol-following clients.

Nothing here touches the shared Redis on 6379: every test starts its own throwaway
`redis-server` on a free port (no persistence, so a restart comes back empty) and points the
daphne processes it starts at it, with a unique `REDIS_PREFIX`. The daphne processes use the
test's own PostgreSQL database (the test is `django_db(transaction=True)`, so what it seeds is
committed and visible to them); they are stopped before pytest-django flushes that database.

`Member` is a client that follows docs/realtime-protocol.md to the letter: it reconnects with
the documented backoff (a random wait between half and all of `min(30 s, 0.5 s x 2^attempt)`),
re-subscribes with `after` = the last `seq` it applied, fills a `seq` gap by subscribing again
with `after`, and drops a frame whose `seq` it has already applied. Its `view` is what a user
would see; `frames` is every `message.created` seq the server sent, duplicates included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent
SHARED_REDIS_PORT = 6379
ROOM = "wg1-a"
BACKOFF_BASE = 0.5  # seconds: docs/realtime-protocol.md, "Reconnect with exponential backoff"
BACKOFF_CAP = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"process exited early:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on {port}:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    stop_all([process], timeout)


def stop_all(processes: list[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """SIGTERM to every process first, then wait for each: their shutdown graces (daphne's
    1012 round) overlap instead of adding up."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class PrivateRedis:
    """A throwaway redis-server of the test's own: killed, paused and restarted at will."""

    def __init__(self, logs: Path, *, unix_socket: bool = False) -> None:
        self.port = free_port()
        if self.port == SHARED_REDIS_PORT:  # pragma: no cover - the kernel never hands it out
            raise AssertionError("never the shared Redis")
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # Also on a unix socket, which `url` then names. Under a short directory of its own: a
        # socket's path is limited to 107 bytes, and pytest's tmp_path can be longer.
        self.socket = (
            Path(tempfile.mkdtemp(prefix="minga-redis-")) / "redis.sock" if unix_socket else None
        )

    @property
    def url(self) -> str:
        if self.socket is not None:
            return f"unix://{self.socket}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        log = self.logs / f"redis-{self.port}-{self.starts}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    *(
                        ("--unixsocket", str(self.socket), "--unixsocketperm", "700")
                        if self.socket is not None
                        else ()
                    ),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, log, 20)

    def kill(self) -> None:
        """SIGKILL: everything Redis held (pub/sub subscriptions, presence, cache) is gone."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
        if self.socket is not None:
            self.socket.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.socket.parent.rmdir()


@dataclass
class Daphne:
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    options: tuple[str, ...] = ()  # more daphne options, e.g. ("--ping-interval", "1")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the process without waiting for it (see `cluster`: starts overlap)."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(VENV_BIN / "daphne"),
                    *("-b", "127.0.0.1", "-p", str(self.port)),
                    *self.options,
                    "minga.asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        assert self.process is not None
        wait_for_port(self.port, self.process, self.log, 60)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if sig == signal.SIGTERM:
            _stop(self.process)
        else:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)

    def rss_kib(self) -> int:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1])


def postgres_socket_dir() -> str | None:
    """The directory of the test PostgreSQL's unix socket, if it listens on one here."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW unix_socket_directories")
        (directories,) = cursor.fetchone()
        cursor.execute("SHOW port")
        (port,) = cursor.fetchone()
    for directory in (d.strip() for d in directories.split(",")):
        if directory and Path(directory, f".s.PGSQL.{port}").exists():
            return directory
    return None


def server_env(
    database_name: str, redis_url: str, *, postgres_socket: str | None = None, **extra: str
) -> dict[str, str]:
    """The daphne processes' environment: the test's database (over the unix socket in the
    directory `postgres_socket`, if given) and `redis_url`."""
    from minga.pytest_plugin import POSTGRES_URL

    parts = urlsplit(POSTGRES_URL)._replace(path=f"/{database_name}")
    if postgres_socket is not None:
        user = f"{parts.username}@" if parts.username else ""
        parts = parts._replace(netloc=user + quote(postgres_socket, safe=""))
    db_url = urlunsplit(parts)
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"faults-{uuid.uuid4().hex[:10]}",
        "HTTPS": "0",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@contextlib.contextmanager
def cluster(
    database_name: str,
    logs: Path,
    processes: int = 2,
    options: tuple[str, ...] = (),
    postgres_socket: str | None = None,
    **extra_env: str,
) -> Iterator[tuple[PrivateRedis, list[Daphne]]]:
    """A private Redis and `processes` daphne processes (with daphne `options`) on the test's
    database. With `postgres_socket` (its directory), the processes reach PostgreSQL and Redis
    over unix sockets."""
    redis = PrivateRedis(logs, unix_socket=postgres_socket is not None)
    servers: list[Daphne] = []
    try:
        redis.start()
        env = server_env(database_name, redis.url, postgres_socket=postgres_socket, **extra_env)
        for _ in range(processes):
            port = free_port()
            log = logs / f"daphne-{port}.log"
            servers.append(Daphne(port=port, env=env, log=log, options=options))
        # Started side by side and stopped side by side: each start imports Django and each
        # stop waits out daphne's close grace, seconds apiece on a loaded machine.
        for server in servers:
            server.spawn()
        for server in servers:
            server.wait_ready()
        yield redis, servers
    finally:
        stop_all([server.process for server in servers if server.process is not None])
        redis.stop()


def log_tail(servers: list[Daphne]) -> str:
    return "\n".join(s.log.read_text(errors="replace")[-2500:] for s in servers)


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class Post:
    status: int
    seconds: float
    message_id: int | None
    seq: int | None


def http_post(server: Daphne, token: str, thread_id: int, body: str, timeout: float = 30) -> Post:
    started = time.monotonic()
    try:
        answer = requests.post(
            f"{server.origin}/api/v1/threads/{thread_id}/messages/",
            json={"body": body, "client_id": str(uuid.uuid4())},
            headers={"Authorization": f"Token {token}"},
            timeout=timeout,
        )
    except requests.RequestException:
        return Post(0, time.monotonic() - started, None, None)
    seconds = time.monotonic() - started
    data = answer.json() if answer.status_code == 201 else {}
    return Post(answer.status_code, seconds, data.get("id"), data.get("seq"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- A protocol-following client ----------------------------------------------------------------


def backoff_delay(attempt: int, draw: float) -> float:
    """docs/realtime-protocol.md: uniform between half and all of min(30 s, 0.5 s x 2^attempt);
    `draw` in [0, 1). frontend/static/minga/realtime.js `backoffDelay` computes the same."""
    cap = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
    return cap / 2 + draw * cap / 2


@dataclass
class Member:
    name: str
    token: str
    server: Daphne
    view: list[int] = field(default_factory=list)  # seqs applied, in order
    frames: list[int] = field(default_factory=list)  # every message.created seq received
    closes: list[int | None] = field(default_factory=list)
    reconnects: list[float] = field(default_factory=list)  # monotonic time of each reopen
    attempts: list[float] = field(default_factory=list)  # when each successful reopen began
    errors: list[str] = field(default_factory=list)  # failed reconnect attempts
    resubscribes: int = 0
    filling: bool = False  # a gap fill (subscribe with `after`) is on its way
    duplicates: int = 0  # frames whose seq was already applied (dropped, as documented)
    last_seq: int | None = None
    last_frame_at: float = 0.0
    ws: ClientConnection | None = None
    stopped: bool = False
    reconnect: bool = True
    rng: random.Random = field(default_factory=random.Random)
    task: asyncio.Task[None] | None = None
    arrivals: dict[int, float] = field(default_factory=dict)  # seq -> first arrival
    reading: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: stops reading
    rcvbuf: int | None = None  # a small kernel receive buffer (a slow link)

    def __post_init__(self) -> None:
        self.reading.set()

    async def open(self) -> None:
        sock = None
        if self.rcvbuf is not None:
            # A reader that stops reading must stop the TCP window too: a small kernel buffer,
            # and a client queue of one frame (the library then stops reading the socket).
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.server.port))
        self.ws = await connect(
            self.server.url,
            origin=self.server.origin,  # type: ignore[arg-type]
            additional_headers={"Authorization": f"Token {self.token}"},
            open_timeout=10,
            close_timeout=2,
            max_queue=1 if self.rcvbuf is not None else None,
            sock=sock,
        )
        self.filling = True
        await self.ws.send(json.dumps({"type": "subscribe", "room": ROOM, "after": self.last_seq}))

    async def run(self) -> None:
        """Read, apply, and reconnect (with the documented backoff) until `stop`."""
        attempt = 0
        while not self.stopped:
            if self.ws is None:
                await asyncio.sleep(backoff_delay(attempt, self.rng.random()))
                attempt += 1
                tried = time.monotonic()
                try:
                    await self.open()
                except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as error:
                    self.errors.append(type(error).__name__)
                    self.ws = None
                    continue
                self.reconnects.append(time.monotonic())
                self.attempts.append(tried)
            assert self.ws is not None
            await self.reading.wait()
            try:
                text = await self.ws.recv()
            except ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
                self.ws = None
                if not self.reconnect:
                    return
                continue
            attempt = 0  # the server answered: the next drop starts the backoff afresh
            self.last_frame_at = time.monotonic()
            await self._apply(json.loads(text))

    async def _apply(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "subscribed":
            self.filling = False
            if self.last_seq is None:
                self.last_seq = frame["last_seq"]
        elif kind == "resync":  # pragma: no cover - the families stay below the replay bound
            raise AssertionError(f"{self.name}: resync {frame}")
        elif kind == "message.created":
            seq = frame["seq"]
            self.frames.append(seq)
            self.arrivals.setdefault(seq, time.monotonic())
            assert self.last_seq is not None
            if seq <= self.last_seq:
                self.duplicates += 1
                return  # a duplicate: already applied
            if seq > self.last_seq + 1:
                # A gap: live frames were lost (Redis away). Fill it from the database.
                if not self.filling:
                    self.filling = True
                    self.resubscribes += 1
                    await self._send({"type": "subscribe", "room": ROOM, "after": self.last_seq})
                return
            self.view.append(seq)
            self.last_seq = seq

    async def _send(self, frame: dict[str, Any]) -> None:
        if self.ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(json.dumps(frame))

    async def catch_up(self) -> None:
        """What a client does when it wonders whether it missed anything: subscribe with
        `after` (the replay brings what it lacks, nothing if it lacks nothing)."""
        await self._send({"type": "subscribe", "room": ROOM, "after": self.last_seq})

    async def stop(self) -> None:
        self.stopped = True
        self.reading.set()
        if self.ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.close()


async def wait_until(predicate: Any, seconds: float, step: float = 0.05) -> bool:
    """Poll `predicate` until true or `seconds` passed; its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())
