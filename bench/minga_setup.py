"""Minga's side of the benchmark: its own PostgreSQL database, seeding, and H6 (Redis restart).

The database `minga_bench_<pid>` is created (dropped first if a killed run left it), migrated with
`manage.py migrate`, seeded by bench/minga_seed.py, and dropped at the end of the run. Minga is
served exactly as in production (`daphne minga.asgi:application`, DEBUG=0) with REDIS_URL on the
benchmark's private Redis. Minga reaches Redis and PostgreSQL over their unix sockets, as
docs/deployment.md's one host does ("Redis and PostgreSQL over unix sockets"); `transport="tcp"`
over 127.0.0.1, for the A/B.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import os
import select
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psutil
import psycopg
from psycopg import sql
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from bench import minga_poster
from bench.servers import ROOT, BenchError, Processes, redis_argv, redis_socket

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SEED_PROCESSES = 4
DB_NAME = f"minga_bench_{os.getpid()}"  # one per run: two runs at once never share it
TRANSPORTS = ("unix", "tcp")  # how Minga's processes reach Redis and PostgreSQL


@dataclass
class MingaData:
    env: dict[str, str]
    tokens: list[str]
    threads: dict[str, int]
    rooms: list[str] = field(default_factory=list)
    hold_room: str = ""
    transport: str = "tcp"  # what `env` names: "unix" (both servers' sockets) or "tcp"


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10)


def _db_url(socket_dir: str | None = None) -> str:
    """This run's database, over TCP as PG_ADMIN_URL names the server, or over the unix socket
    in `socket_dir` (the URL's host, percent-encoded: libpq and dj_database_url both read it)."""
    parts = urlsplit(PG_ADMIN_URL.replace("postgresql://", "postgres://", 1))
    if socket_dir is not None:
        user = f"{parts.username}@" if parts.username else ""
        parts = parts._replace(netloc=user + quote(socket_dir, safe=""))
    return urlunsplit(parts._replace(path=f"/{DB_NAME}"))


def _postgres_socket_dir() -> str | None:
    """The directory of the server's unix socket, if it listens on one on this machine."""
    with _admin() as conn:
        directories = conn.execute("SHOW unix_socket_directories").fetchone()
        port = conn.execute("SHOW port").fetchone()
    for directory in str(directories[0] if directories else "").split(","):
        if directory.strip() and Path(directory.strip(), f".s.PGSQL.{port[0]}").exists():
            return directory.strip()
    return None


def minga_urls(redis_port: int, transport: str) -> tuple[dict[str, str], str]:
    """DATABASE_URL and REDIS_URL for Minga's processes, and the transport they name: "unix"
    asks for both servers' unix sockets, and is "tcp" where either has none here."""
    if transport not in TRANSPORTS:
        raise BenchError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    tcp = {"DATABASE_URL": _db_url(), "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    if transport == "tcp":
        return tcp, "tcp"
    socket_dir, redis_path = _postgres_socket_dir(), redis_socket(redis_port)
    if socket_dir is None or not redis_path.exists():
        return tcp, "tcp"
    return {"DATABASE_URL": _db_url(socket_dir), "REDIS_URL": f"unix://{redis_path}?db=0"}, "unix"


def raw_insert_ceiling(rows: int) -> dict[str, Any]:
    """C0 for H4: one INSERT ... SELECT generate_series of inbox-shaped rows, committed."""
    with _admin() as conn:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE bench_inbox (id bigserial PRIMARY KEY, recipient_id bigint NOT NULL,"
                " kind varchar(32) NOT NULL, actor_id bigint, target jsonb NOT NULL,"
                " created_at timestamptz NOT NULL, read_at timestamptz, emailed_at timestamptz)"
            )
            cur.execute("CREATE INDEX ON bench_inbox (recipient_id, created_at)")
            conn.commit()
            started = time.perf_counter()
            cur.execute(
                "INSERT INTO bench_inbox (recipient_id, kind, actor_id, target, created_at)"
                " SELECT g, 'event_scheduled', 1, jsonb_build_object('event', 1, 'title',"
                " 'Workshop on labour inspection'), now() FROM generate_series(1, %s) AS g",
                (rows,),
            )
            conn.commit()
            elapsed = time.perf_counter() - started
    return {"rows": rows, "seconds": round(elapsed, 4), "rows_per_s": round(rows / elapsed)}


def _run(argv: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[1:4])} failed: {done.stderr.strip()[-1500:]}")
    return done.stdout


def _drop_stale(conn: psycopg.Connection[Any]) -> None:
    """Drop the databases of benchmark runs that were killed (their process is gone)."""
    names = conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE 'minga\\_bench\\_%'"
    ).fetchall()
    for (name,) in names:
        pid = name.rsplit("_", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def prepare(members: int, redis_port: int, transport: str = "unix") -> MingaData:
    """Create, migrate and seed this run's database; BenchError when any of it fails. Minga's
    processes reach Redis and PostgreSQL by `transport` (`minga_urls`)."""
    try:
        return _prepare(members, redis_port, transport)
    except (psycopg.Error, subprocess.SubprocessError, ValueError, KeyError) as error:
        raise BenchError(f"preparing Minga's database failed: {error}") from error


def _prepare(members: int, redis_port: int, transport: str) -> MingaData:
    with _admin() as conn:
        _drop_stale(conn)
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    urls, transport = minga_urls(redis_port, transport)
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.minga_settings",
        **urls,
        "DEBUG": "0",
        "HTTPS": "0",
        "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "EMAIL_URL": "smtp://127.0.0.1:2525",  # never reached: nothing is emailed in these runs
        "MINGA_TESTING": "0",  # production settings even when started from the test suite
    }
    _run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env, timeout=600)
    seed = [sys.executable, "-m", "bench.minga_seed"]
    _run([*seed, "plan"], env, timeout=300)
    # Members in SEED_PROCESSES slices at once: each add_member is a few dozen round trips.
    bounds = [members * i // SEED_PROCESSES for i in range(SEED_PROCESSES + 1)]
    slices = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    with ThreadPoolExecutor(len(slices)) as pool:
        outs = list(
            pool.map(
                lambda ab: _run([*seed, "members", str(ab[0]), str(ab[1])], env, timeout=900),
                slices,
            )
        )
    tokens = [token for out in outs for token in json.loads(out.strip().splitlines()[-1])]
    threads = json.loads(_run([*seed, "threads"], env, timeout=300).strip().splitlines()[-1])
    rooms = sorted(threads)
    if len(rooms) < 11 or len(tokens) != members:
        raise BenchError(
            f"the seed made {len(rooms)} wg1 rooms and {len(tokens)} tokens; "
            f"the benchmark needs 11 and {members}"
        )
    return MingaData(
        env=env,
        tokens=tokens,
        threads=threads,
        rooms=rooms[:10],
        hold_room=rooms[10],
        transport=transport,
    )


def sessions(data: MingaData, count: int) -> list[str]:
    """Signed-in sessions of the first `count` members (bench.minga_seed sessions): what a
    browser's cookie carries, for connects through the session path."""
    seed = [sys.executable, "-m", "bench.minga_seed", "sessions", str(count)]
    keys = json.loads(_run(seed, data.env, timeout=600).strip().splitlines()[-1])
    if len(keys) != count:
        raise BenchError(f"the seed made {len(keys)} sessions; the probe needs {count}")
    return keys


class Poster:
    """The bench.minga_poster process: posts through the services on order, answers JSON.
    With `argv`, another process that reads the same orders and answers the same way
    (bench.c0d_poster)."""

    def __init__(
        self,
        procs: Processes,
        data: MingaData,
        name: str,
        tree: str | None = None,
        *,
        threads: int = minga_poster.DEFAULT_THREADS,
        argv: list[str] | None = None,
    ) -> None:
        self.name = name
        self.proc = procs.start(
            name,
            argv or [sys.executable, "-m", "bench.minga_poster", "--threads", str(threads)],
            data.env,
            pipes=True,
            cwd=tree,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def order(
        self, *, step: int, rate: float, count: int, rooms: list[str], senders: int
    ) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        line = {"step": step, "rate": rate, "count": count, "rooms": rooms, "senders": senders}
        self.proc.stdin.write((json.dumps(line) + "\n").encode())
        self.proc.stdin.flush()
        timeout = count / rate + 120
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise BenchError(f"{self.name} did not answer within {timeout:.0f} s")
        answer = self.proc.stdout.readline()
        if not answer:
            raise BenchError(f"{self.name} exited ({self.proc.poll()}); see its log")
        return json.loads(answer)


def drop_database() -> None:
    """Drop this run's database (nothing happens when it was never made)."""
    with contextlib.suppress(psycopg.Error), _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME))
        )


# --- H6: Redis killed and restarted while messages are posted over HTTP -----------------------


@dataclass(eq=False)
class Watcher:
    """A client that keeps every message of one room, by seq, and catches up with `after`."""

    index: int
    port: int
    token: str
    room: str
    seqs: dict[int, int] = field(default_factory=dict)  # seq -> message id
    ws: ClientConnection | None = None
    task: asyncio.Task[None] | None = None
    base_seq: int | None = None
    resubscribes: int = 0
    reconnects: int = 0

    def last_contiguous(self) -> int | None:
        if self.base_seq is None:
            return None
        seq = self.base_seq
        while seq + 1 in self.seqs:
            seq += 1
        return seq

    async def connect(self) -> None:
        self.ws = await connect(
            f"ws://127.0.0.1:{self.port}/ws/",
            origin=f"http://127.0.0.1:{self.port}",  # type: ignore[arg-type]
            additional_headers={"Authorization": f"Token {self.token}"},
            compression=None,
            ping_interval=None,
            open_timeout=20,
            close_timeout=2,
        )
        await self.subscribe()

    async def subscribe(self) -> None:
        assert self.ws is not None
        await self.ws.send(
            json.dumps({"type": "subscribe", "room": self.room, "after": self.last_contiguous()})
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self.ws is None:
                    self.reconnects += 1
                    await self.connect()
                assert self.ws is not None
                async for text in self.ws:
                    if isinstance(text, str):
                        await self.on_frame(json.loads(text))
            except (ConnectionClosed, WebSocketException, OSError, TimeoutError):
                pass
            self.ws = None
            await asyncio.sleep(0.2)

    async def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "subscribed" and self.base_seq is None:
            self.base_seq = int(frame["last_seq"])
        elif kind == "message.created" and self.base_seq is not None:
            message = frame["message"]
            seq = int(frame["seq"])
            expected_next = (self.last_contiguous() or 0) + 1
            self.seqs[seq] = int(message["id"])
            if seq > expected_next and seq - 1 not in self.seqs:
                # A gap: frames were lost on the way; the database has them.
                self.resubscribes += 1
                await self.subscribe()
        elif kind == "resync":
            self.resubscribes += 1
            await self.subscribe()


def _post(port: int, token: str, thread: int, body: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(
            "POST",
            f"/api/v1/threads/{thread}/messages/",
            body=json.dumps({"body": body, "client_id": str(uuid.uuid4())}),
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        payload = response.read()
        if response.status != 201:
            raise BenchError(f"POST message answered {response.status}: {payload[:300]!r}")
        return json.loads(payload)
    finally:
        conn.close()


def outage(
    *,
    procs: Processes,
    redis: tuple[int, int],
    cfg: dict[str, Any],
    ports: list[int],
    data: MingaData,
    log: Any,
) -> dict[str, Any]:
    return asyncio.run(_outage(procs=procs, redis=redis, cfg=cfg, ports=ports, data=data, log=log))


async def _outage(  # noqa: PLR0912, PLR0915 - one scenario, read top to bottom
    *,
    procs: Processes,
    redis: tuple[int, int],
    cfg: dict[str, Any],
    ports: list[int],
    data: MingaData,
    log: Any,
) -> dict[str, Any]:
    redis_port, _pid = redis
    room = data.rooms[1]
    thread = data.threads[room]
    watchers = [
        Watcher(
            index=i, port=ports[i % len(ports)], token=data.tokens[i % len(data.tokens)], room=room
        )
        for i in range(min(50, len(data.tokens)))
    ]
    stop = asyncio.Event()
    for w in watchers:
        w.task = asyncio.create_task(w.run(stop))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(w.base_seq is None for w in watchers):  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # base_seq comes with `subscribed` (its last_seq)
    if any(w.base_seq is None for w in watchers):
        stop.set()
        raise BenchError("H6: not every watcher got `subscribed` within 30 s")
    total = int(cfg["h6_messages"])
    posted: dict[int, int] = {}
    posted_after_restart: set[int] = set()
    failures: list[str] = []
    kill_at, restart_at = total // 3, None
    redis_proc = next(p for n, p in procs.procs if n == "redis")
    interval = 0.1
    restarted_monotonic = 0.0
    for k in range(total):
        if k == kill_at:
            redis_proc.kill()  # SIGKILL: no goodbye to the clients
            redis_proc.wait(10)
            procs.procs = [(n, p) for n, p in procs.procs if p is not redis_proc]
            log(f"  redis killed after {k} messages")
            restart_at = time.monotonic() + float(cfg["h6_outage_s"])
        if restart_at is not None and time.monotonic() >= restart_at:
            redis_proc = procs.start("redis", redis_argv(redis_port))
            procs.wait_port(redis_proc, "redis", redis_port, timeout=20)
            restarted_monotonic = time.monotonic()
            log(f"  redis restarted after {k} messages")
            restart_at = None
        token = data.tokens[(k * 7) % len(data.tokens)]
        try:
            message = await asyncio.to_thread(
                _post, ports[k % len(ports)], token, thread, f"outage message {k}"
            )
            posted[int(message["seq"])] = int(message["id"])
            if restarted_monotonic and time.monotonic() - restarted_monotonic > 1:
                posted_after_restart.add(int(message["seq"]))
        except (BenchError, OSError, ValueError) as error:
            failures.append(str(error)[:300])
        await asyncio.sleep(interval)
    if restart_at is not None:  # the outage outlasted the posting: bring Redis back anyway
        await asyncio.sleep(max(0.0, restart_at - time.monotonic()))
        redis_proc = procs.start("redis", redis_argv(redis_port))
        procs.wait_port(redis_proc, "redis", redis_port, timeout=20)
        restarted_monotonic = time.monotonic()

    def missing(seqs: dict[int, int]) -> int:
        return sum(1 for w in watchers for seq in seqs if w.seqs.get(seq) != seqs[seq])

    after_restart = {seq: mid for seq, mid in posted.items() if seq in posted_after_restart}
    # First: what arrives live, with no help from the client, within 2 s of the last post.
    live_deadline = time.monotonic() + 2
    while time.monotonic() < live_deadline and missing(posted):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    missing_live = missing(posted)
    missing_live_after_restart = missing(after_restart)
    # Then the catch-up a client does on reconnect or on a `resync`: subscribe with `after`.
    catch_up_started = time.monotonic()
    for w in watchers:
        if w.ws is not None:
            with contextlib.suppress(ConnectionClosed, WebSocketException, OSError):
                await w.subscribe()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and missing(posted):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    lost = missing(posted)
    catch_up_seconds = round(time.monotonic() - catch_up_started, 2) if not lost else None
    stop.set()
    for w in watchers:
        if w.ws is not None:
            with contextlib.suppress(Exception):
                await w.ws.close()
        if w.task is not None:
            w.task.cancel()
    await asyncio.gather(*(w.task for w in watchers if w.task), return_exceptions=True)
    result = {
        "watchers": len(watchers),
        "posted": len(posted),
        "posted_after_restart": len(after_restart),
        "post_failures": len(failures),
        "post_failure_examples": failures[:3],
        "missing_live": missing_live,
        "missing_live_after_restart": missing_live_after_restart,
        "lost": lost,
        "resync_seconds": catch_up_seconds,
        "gap_resubscribes": sum(w.resubscribes for w in watchers),
        "reconnects": sum(max(0, w.reconnects - 1) for w in watchers),
    }
    log(f"  h6: {result}")
    return result
