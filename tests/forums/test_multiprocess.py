"""Two daphne processes, one Redis, one PostgreSQL: the gateway across processes, for real.

The test prepares a database of its own (`minga_mp_<random>`: pytest-django's test database
lives inside a transaction the subprocesses cannot see), migrates and seeds it with the
project's own commands, starts two `daphne` processes against it and Redis, and talks to them
with the `websockets` client, authenticated with tokens from `manage.py issue_token`. Processes
and database are removed in the fixture's teardown; every wait is bounded.

The cluster is session-scoped (`mp_cluster` in tests/conftest.py, built by `start_cluster`
here): these tests and tests/notifications/test_multiprocess.py share one, since starting it
(a migrated database, two daphne processes, a Celery worker) costs far more than the tests.
Each test opens its own sockets and reads only what it posted or what follows its subscribe.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from minga.pytest_plugin import POSTGRES_URL, REDIS_URL
from psycopg import sql
from websockets.asyncio.client import ClientConnection, connect

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent
WAIT = 10.0  # seconds: the bound of every single wait for a frame


@dataclass
class Cluster:
    ports: list[int]
    tokens: dict[str, str]  # email -> API token
    thread_id: int
    logs: list[Path]

    def url(self, i: int) -> str:
        return f"ws://127.0.0.1:{self.ports[i]}/ws/"

    def origin(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _admin_url() -> str:
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "python"), str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daphne exited early:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"daphne on {port} did not answer:\n{log.read_text(errors='replace')}")


# Everything after `migrate` in one Django process (each start costs seconds on a loaded
# machine): the same commands an operator runs, through call_command.
SETUP_SCRIPT = """
import io, json
from django.core.management import call_command
from community.models import User
from forums.models import Room
from forums.services import thread_create

call_command("seed_plan_of_action", stdout=io.StringIO())
tokens = {}
for email, handle in (("ana@mp.example", "ana"), ("bruno@mp.example", "bruno")):
    call_command(
        "add_member", email, "--name", handle.title(), "--handle", handle,
        "--password", "correct-horse-battery-9", "--wg", "wg1", "--role", "member",
        stdout=io.StringIO(),
    )
    out = io.StringIO()
    call_command("issue_token", email, stdout=out)
    tokens[email] = out.getvalue().strip().splitlines()[-1]
thread = thread_create(
    room=Room.objects.get(slug="wg1-a"), author=User.objects.get(email="ana@mp.example"),
    title="Across", body="First",
)
print(json.dumps({"tokens": tokens, "thread_id": thread.pk}))
"""


@contextmanager
def start_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A database of its own, two daphne processes and a Celery worker; all gone on exit."""
    name = f"minga_mp_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        db_url = urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            # Its own channel-layer groups and task queue in the shared Redis.
            "REDIS_PREFIX": name,
            "HTTPS": "0",
            "PYTHONUNBUFFERED": "1",
        }
        _manage(env, "migrate", "--noinput", "-v", "0")
        ports = [_free_port(), _free_port()]
        logs_dir = tmp_path_factory.mktemp("daphne")
        for port in ports:
            log = logs_dir / f"daphne-{port}.log"
            logs.append(log)
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [
                            str(VENV_BIN / "daphne"),
                            "-b",
                            "127.0.0.1",
                            "-p",
                            str(port),
                            "minga.asgi:application",
                        ],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        # A Celery worker, as in production (Procfile): notifications of a post run there.
        worker_log = logs_dir / "worker.log"
        logs.append(worker_log)
        with worker_log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [
                        str(VENV_BIN / "celery"),
                        "-A",
                        "minga",
                        "worker",
                        "--pool=solo",
                        "--without-heartbeat",
                        "--without-gossip",
                        "--without-mingle",
                        "--loglevel=WARNING",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        # Seeded while the processes start (they read the database per request, not before).
        seeded = json.loads(_manage(env, "shell", "-c", SETUP_SCRIPT).strip().splitlines()[-1])
        tokens: dict[str, str] = seeded["tokens"]
        thread_id = int(seeded["thread_id"])
        for port, process, log in zip(ports, processes, logs, strict=False):
            _wait_for_port(port, process, log)
        yield Cluster(ports=ports, tokens=tokens, thread_id=thread_id, logs=logs)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        with psycopg.connect(_admin_url(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@asynccontextmanager
async def client(cluster: Cluster, process: int, email: str) -> AsyncIterator[ClientConnection]:
    async with connect(
        cluster.url(process),
        origin=cluster.origin(process),  # type: ignore[arg-type]
        additional_headers={"Authorization": f"Token {cluster.tokens[email]}"},
        open_timeout=WAIT,
        close_timeout=2,
    ) as ws:
        yield ws


async def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def recv_until(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next frame of `kind`, skipping presence and typing (live frames of others)."""
    while True:
        frame = await recv(ws)
        if frame["type"] == kind:
            return frame
        assert frame["type"] in {"presence", "typing"}, frame


async def nothing_more(ws: ClientConnection, *, skip: set[str]) -> list[dict[str, Any]]:
    """Frames (other than `skip` kinds) that arrive before a ping's pong: the server answers in
    order, so anything sent before the pong has arrived by then."""
    await ws.send(json.dumps({"type": "ping"}))
    extra = []
    while True:
        frame = await recv(ws)
        if frame["type"] == "pong":
            return extra
        if frame["type"] not in skip:
            extra.append(frame)


async def subscribe(ws: ClientConnection, after: int | None) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "subscribe", "room": "wg1-a", "after": after}))
    return await recv_until(ws, "subscribed")


async def post(ws: ClientConnection, cluster: Cluster, body: str) -> dict[str, Any]:
    client_id = str(uuid.uuid4())
    await ws.send(
        json.dumps(
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": cluster.thread_id,
                "body": body,
                "client_id": client_id,
            }
        )
    )
    while True:
        frame = await recv(ws)
        if frame["type"] in {"ack", "error"} and frame.get("client_id") == client_id:
            assert frame["type"] == "ack", frame
            return frame


async def test_multiprocess_message_posted_on_one_process_arrives_on_the_other(
    mp_cluster: Cluster,
) -> None:
    cluster = mp_cluster
    async with (
        client(cluster, 0, "ana@mp.example") as ana,
        client(cluster, 1, "bruno@mp.example") as bruno,
    ):
        await subscribe(ana, None)
        await subscribe(bruno, None)
        ack = await post(ana, cluster, "Hola desde el proceso uno")
        live = await recv_until(bruno, "message.created")

    assert (live["seq"], live["message"]["id"], live["message"]["body"]) == (
        ack["seq"],
        ack["message_id"],
        "Hola desde el proceso uno",
    ), cluster.log_tail()


async def test_multiprocess_presence_spans_processes(mp_cluster: Cluster) -> None:
    cluster = mp_cluster
    async with client(cluster, 0, "ana@mp.example") as ana:
        await subscribe(ana, None)
        async with client(cluster, 1, "bruno@mp.example") as bruno:
            subscribed = await subscribe(bruno, None)
            # Ana's own arrival first, then Bruno's, from the other process.
            while True:
                seen = await recv_until(ana, "presence")
                if len(seen["online"]) == 2:
                    break
        left = await recv_until(ana, "presence")

    assert (
        sorted(m["handle"] for m in subscribed["online"]),
        sorted(m["handle"] for m in seen["online"]),
        [m["handle"] for m in left["online"]],
    ) == (["ana", "bruno"], ["ana", "bruno"], ["ana"])


async def test_multiprocess_reconnect_with_after_gets_exactly_the_missed_messages(
    mp_cluster: Cluster,
) -> None:
    cluster = mp_cluster
    async with client(cluster, 1, "bruno@mp.example") as bruno:
        subscribed = await subscribe(bruno, None)
        seen = subscribed["last_seq"]
    # Bruno is away; Ana posts three messages through the other process.
    async with client(cluster, 0, "ana@mp.example") as ana:
        await subscribe(ana, None)
        acks = [await post(ana, cluster, f"Missed {n}") for n in range(3)]
    async with client(cluster, 1, "bruno@mp.example") as bruno:
        await bruno.send(json.dumps({"type": "subscribe", "room": "wg1-a", "after": seen}))
        await recv_until(bruno, "subscribed")
        replay = [await recv_until(bruno, "message.created") for _ in range(3)]
        extra = await nothing_more(bruno, skip={"presence"})

    assert (
        [(f["seq"], f["message"]["id"], f["message"]["body"]) for f in replay],
        extra,
    ) == ([(a["seq"], a["message_id"], f"Missed {n}") for n, a in enumerate(acks)], [])
