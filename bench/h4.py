"""H4: one announcement to a working group of N members with M of them online (issue 6).

Minga: N + 1 members seeded in bulk SQL (bench/h4_minga.py `seed`), M of them connected to the
two daphne processes with their tokens (a `ping` answered means the socket joined `user.<id>`),
then `notifications.services.announce` by the group's chair in a separate process
(bench/h4_minga.py `announce`; the `notify_task` it queues runs there, eagerly, as a worker
would). Measured from the call's start on the shared monotonic clock:

- t_rows: all N inbox rows committed (a count polled every 10 ms on another connection);
- t_push: the last of the M `notification` frames received here;
- t_email: email work queued. Announcements default to the daily digest
  (notifications.selectors.IMMEDIATE_BY_DEFAULT), so with the defaults no immediate email is
  queued: the rows themselves (email_state "pending") are the digest's queue, committed with
  them, and t_email = t_rows. Any immediate email is reported by count.

End to end = max of the three. B0: the Channels tutorial's servers with a per-user consumer
(bench/b0/consumers.py NotifyConsumer), M clients on `ws/notify/<id>/`, and the textbook loop
(bench/b0/h4_loop.py: one `Notice.objects.create` and one `group_send` per recipient).
A lost or duplicated push is a problem of the run; timings never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from bench import minga_setup
from bench.servers import ROOT, BenchError, Processes

CONCURRENCY = 64
ATTEMPTS = 3


@dataclass(eq=False)
class Listener:
    url: str
    origin: str
    headers: dict[str, str]
    minga: bool
    ws: ClientConnection | None = None
    frames: list[float] = field(default_factory=list)  # monotonic arrival of each notification
    pong: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    retries: int = 0

    async def open(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            for attempt in range(ATTEMPTS):
                try:
                    self.ws = await connect(
                        self.url,
                        origin=self.origin,  # type: ignore[arg-type]
                        additional_headers=self.headers,
                        compression=None,
                        ping_interval=None,
                        open_timeout=30,
                        close_timeout=2,
                    )
                    break
                except (WebSocketException, OSError, TimeoutError):
                    self.retries += 1
                    if attempt == ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))
            assert self.ws is not None
            self.task = asyncio.create_task(self.read())
            if self.minga:
                # Frames are handled in order: a pong means connect() ran to the end, so the
                # socket is in its user group.
                await self.ws.send(json.dumps({"type": "ping"}))
                await asyncio.wait_for(self.pong.wait(), 30)

    async def read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed, WebSocketException, OSError):
            async for text in self.ws:
                now = time.monotonic()
                frame = json.loads(text)
                if not self.minga or frame.get("type") == "notification":
                    self.frames.append(now)
                elif frame.get("type") == "pong":
                    self.pong.set()

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task


async def _open_all(listeners: list[Listener], budget: float) -> tuple[float, int]:
    gate = asyncio.Semaphore(CONCURRENCY)
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(c.open(gate)) for c in listeners]
    done, pending = await asyncio.wait(tasks, timeout=budget)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    failures = [t.exception() for t in done if t.exception() is not None]
    if pending or failures:
        await asyncio.gather(*(c.close() for c in listeners))
        first = f"; first error: {failures[0]!r}" if failures else ""
        raise RuntimeError(
            f"H4: only {len(done) - len(failures)} of {len(listeners)} clients connected "
            f"within the {budget:.0f} s budget{first}"
        )
    return time.perf_counter() - started, sum(c.retries for c in listeners)


async def _wait_frames(listeners: list[Listener], until: float) -> None:
    while time.monotonic() < until and any(not c.frames for c in listeners):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a duplicate would come right behind


def _subprocess_json(argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
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
        raise BenchError(f"{' '.join(argv[2:4])} failed: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class RowPoller(threading.Thread):
    """Counts the announcement's rows every 10 ms; notes when the count first reaches `want`."""

    def __init__(self, dbname: str, group_id: int, want: int) -> None:
        super().__init__(daemon=True)
        self.dbname, self.group_id, self.want = dbname, group_id, want
        self.reached: float | None = None
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        url = minga_setup.PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.dbname
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                while not self.stop.is_set():
                    (count,) = conn.execute(
                        "SELECT count(*) FROM notifications_notification"
                        " WHERE kind = 'announcement' AND target_id = %s",
                        (self.group_id,),
                    ).fetchone() or (0,)
                    if count >= self.want:
                        self.reached = time.monotonic()
                        return
                    time.sleep(0.01)
        except psycopg.Error as error:
            self.error = str(error)


def _pushes(listeners: list[Listener], started: float) -> dict[str, Any]:
    got = [c.frames for c in listeners]
    return {
        "online": len(listeners),
        "lost": sum(1 for f in got if not f),
        "duplicates": sum(len(f) - 1 for f in got if len(f) > 1),
        "t_push_s": round(max(f[0] for f in got if f) - started, 3) if any(got) else None,
        "t_first_push_s": round(min(f[0] for f in got if f) - started, 3) if any(got) else None,
    }


async def _minga(
    *,
    cfg: dict[str, Any],
    data: minga_setup.MingaData,
    ports: list[int],
    seeded: dict[str, Any],
    log: Callable[[str], None],
) -> dict[str, Any]:
    listeners = [
        Listener(
            url=f"ws://127.0.0.1:{ports[i % len(ports)]}/ws/",
            origin=f"http://127.0.0.1:{ports[i % len(ports)]}",
            headers={"Authorization": f"Token {token}"},
            minga=True,
        )
        for i, token in enumerate(seeded["tokens"])
    ]
    connect_s, retries = await _open_all(listeners, cfg["h4_budget"])
    log(f"  minga: {len(listeners)} clients connected in {connect_s:.1f} s ({retries} retried)")
    poller = RowPoller(minga_setup.DB_NAME, seeded["working_group"], seeded["recipients"])
    load_before = round(os.getloadavg()[0], 2)
    poller.start()
    try:
        run = await asyncio.to_thread(
            _subprocess_json,
            [
                *(sys.executable, "-m", "bench.h4_minga", "announce"),
                *(str(seeded["chair"]), str(seeded["working_group"])),
            ],
            data.env,
            600,
        )
        await _wait_frames(listeners, time.monotonic() + cfg["h4_drain"])
        poller.join(timeout=cfg["h4_drain"])
    finally:
        poller.stop.set()
        await asyncio.gather(*(c.close() for c in listeners))
    started = run["started"]
    out: dict[str, Any] = {
        "members": seeded["recipients"],
        "seed_seconds": seeded["seed_seconds"],
        "connect_seconds": round(connect_s, 1),
        "handshake_retries": retries,
        "rows": run["rows"],
        "email_modes": run["email_modes"],
        "emails_immediate": run["email_modes"].get("immediate", 0),
        "t_call_s": round(run["ended"] - started, 3),
        "t_rows_s": round(poller.reached - started, 3) if poller.reached else None,
        **_pushes(listeners, started),
        # The same rows (the announcement's values) by one raw INSERT ... SELECT into the inbox
        # table itself, after the run; then rows without the actor (the first harness's), then
        # the same rows again.
        "raw_real_insert_s": run.get("raw_real_insert_s"),
        "raw_real_insert_null_actor_s": run.get("raw_real_insert_null_actor_s"),
        "raw_real_insert_again_s": run.get("raw_real_insert_again_s"),
        # Where the announce's time went (bench/h4_minga.py `_timed`) and the machine's load
        # (1-minute average) as the announce started and ended: the machine is shared.
        "statements": run.get("statements"),
        "loadavg_1m": [load_before, round(os.getloadavg()[0], 2)],
    }
    if out["t_rows_s"] and out["raw_real_insert_s"]:
        out["rows_vs_real_table"] = round(out["t_rows_s"] / out["raw_real_insert_s"], 1)
    if poller.error:
        out["poll_error"] = poller.error
    # Announcements are emailed in the daily digest by default: the pending rows are the queue.
    out["t_email_s"] = out["t_rows_s"] if out["emails_immediate"] == 0 else None
    parts = [out["t_rows_s"], out["t_push_s"], out["t_email_s"]]
    out["end_to_end_s"] = None if any(p is None for p in parts) else max(parts)  # type: ignore[type-var]
    return out


async def _b0(
    cfg: dict[str, Any],
    ports: list[int],
    redis_port: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    online = cfg["h4_online"]
    listeners = [
        Listener(
            url=f"ws://127.0.0.1:{ports[i % len(ports)]}/ws/notify/{i + 1}/",
            origin=f"http://127.0.0.1:{ports[i % len(ports)]}",
            headers={},
            minga=False,
        )
        for i in range(online)
    ]
    connect_s, retries = await _open_all(listeners, cfg["h4_budget"])
    log(f"  b0: {len(listeners)} clients connected in {connect_s:.1f} s ({retries} retried)")
    env = {
        "BENCH_B0_DB_NAME": minga_setup.DB_NAME,
        "BENCH_REDIS_PORT": str(redis_port),
        "BENCH_LAYER": "core",
    }
    try:
        run = await asyncio.to_thread(
            _subprocess_json,
            [sys.executable, "-m", "bench.b0.h4_loop", str(cfg["h4_members"])],
            env,
            1800,
        )
        await _wait_frames(listeners, time.monotonic() + cfg["h4_drain"])
    finally:
        await asyncio.gather(*(c.close() for c in listeners))
    started = run["started"]
    out: dict[str, Any] = {
        "members": cfg["h4_members"],
        "connect_seconds": round(connect_s, 1),
        "handshake_retries": retries,
        "rows": run["rows"],
        # Autocommit: the last row is committed before the loop's last group_send returns.
        "t_rows_s": round(run["ended"] - started, 3),
        "t_call_s": round(run["ended"] - started, 3),
        **_pushes(listeners, started),
        "t_email_s": None,  # the textbook loop queues no email
    }
    parts = [out["t_rows_s"], out["t_push_s"]]
    out["end_to_end_s"] = None if any(p is None for p in parts) else max(parts)  # type: ignore[type-var]
    return out


def run(
    *,
    procs: Processes,
    cfg: dict[str, Any],
    redis_port: int,
    data: minga_setup.MingaData,
    start_servers: Callable[..., tuple[list[int], list[int]]],
    stop_servers: Callable[[Processes, str], None],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Both sides of H4; a side that cannot run is recorded as {"error": ...}."""
    out: dict[str, Any] = {}
    members, online = cfg["h4_members"], cfg["h4_online"]
    log(f"h4: seeding {members} members of one working group ({online} with tokens)")
    seeded = _subprocess_json(
        [
            *(sys.executable, "-m", "bench.h4_minga", "seed"),
            *(str(members), str(online), uuid.uuid4().hex[:8]),
        ],
        data.env,
        600,
    )
    log(f"  seeded in {seeded['seed_seconds']} s; {seeded['recipients']} recipients")
    if seeded["recipients"] != members:
        raise BenchError(f"H4 seed made {seeded['recipients']} recipients, not {members}")
    for system in ("b0", "minga"):
        log(f"h4: {system}, {members} members, {online} online")
        try:
            ports, _pids = start_servers(procs, system, redis_port, data.env)
            if system == "minga":
                out[system] = asyncio.run(
                    _minga(cfg=cfg, data=data, ports=ports, seeded=seeded, log=log)
                )
            else:
                out[system] = asyncio.run(_b0(cfg, ports, redis_port, log))
            log(f"  {system}: {out[system]}")
        except (BenchError, RuntimeError, OSError, TimeoutError, WebSocketException) as error:
            out[system] = {"error": f"{type(error).__name__}: {error}"}
            log(f"  h4 {system} could not run: {error}")
        finally:
            stop_servers(procs, system)
    return out
