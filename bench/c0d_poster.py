"""C0d, the durable ceiling: C0's servers fed by a process that stores each message first.

`python -m bench.c0d_poster --ports P1,P2 --rooms SLUG,... [--connections N] [--transaction]`,
with `DATABASE_URL` naming Minga's benchmark database (bench.minga_setup).

C0 relays what it is sent and stores nothing, so for H1's ten rooms, where every 100 frames
need one durable post, it bounds the fan-out but not the write. C0d is the least a durable chat
does: each message becomes the row Minga would store, written into Minga's own `forums_message`
(every index Minga's has, the full-text one included) by one raw `INSERT` committed on its own,
and only then sent to its room on every C0 process. No lock, no check, no Markdown, no
notification: its seq comes from a counter this one process keeps per room.

Each line on stdin is one order, read as bench.minga_poster reads it: {"step", "rate", "count",
"rooms": [C0 room...], "senders": N}. The K-th room of an order is stored as a message of the
benchmark thread of the K-th `--rooms` slug, by its members in turn (the first N members, as
Minga's poster rotates them). The payload is stamped when due (bench.loadgen.payload), so the
write's wait counts as latency, as a post's does. Writes run on `--connections` connections at
once (8, as many as Minga's poster has threads). One JSON line answers each order, in
bench.minga_poster's shape. Its sockets also receive what C0 relays to their rooms (C0 sends
to every socket of a room): a reader drains them, two frames per message beside the 100 the
clients count.

With `--transaction` (C0t, the ceiling of a post's transaction), each message is stored as a
post stores it, without any of its rules: in one transaction, the room's row locked by taking
its next seq (`UPDATE ... RETURNING`), the thread's count and activity updated, the row
inserted with that seq, then committed: five round trips (`BEGIN`, three statements,
`COMMIT`), as many as `forums.services.message_post` makes, and the same row locks, so posts
to one room wait for each other as Minga's do. What C0t leaves out is Minga's own: Django, the
checks' answers and the author's roles, Markdown, the cooldown marker and the publish through
Redis ("H1 ten rooms: a post's transaction, C0t").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import os
import sys
import time
import uuid
from typing import Any

import psycopg
from websockets.asyncio.client import ClientConnection, connect

from bench.loadgen import payload
from bench.minga_poster import MAX_THREADS, _quantile

DEFAULT_CONNECTIONS = 8
INSERT = (
    "INSERT INTO forums_message (thread_id, room_id, seq, author_id, body, body_html,"
    " client_id, created_at, hidden_reason, change, content_change, content_kind)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, now(), '', 0, 0, '')"
)


# C0t: the room's next seq, under its row lock, and the thread's count, as a post takes them.
TAKE_SEQ = "UPDATE forums_room SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq"
COUNT = (
    "UPDATE forums_thread SET message_count = message_count + 1, last_activity_at = now()"
    " WHERE id = %s"
)
# C0t takes seqs from the rooms' rows: first brought up to the rooms' last stored seq, which C0d's
# own counter may have passed.
CATCH_UP = (
    "UPDATE forums_room r SET last_seq = greatest(r.last_seq,"
    " (SELECT coalesce(max(m.seq), 0) FROM forums_message m WHERE m.room_id = r.id))"
    " WHERE r.id = ANY(%s)"
)


def body_html(body: str) -> str:
    """The escaped body in a paragraph: what Minga's Markdown makes of a plain line."""
    return f"<p>{html.escape(body)}</p>"


def message_row(thread_id: int, room_id: int, seq: int, author_id: int, body: str) -> list[Any]:
    """INSERT's parameters: the message row, with a new client id."""
    return [thread_id, room_id, seq, author_id, body, body_html(body), uuid.uuid4()]


class Store:
    """The benchmark threads of the given rooms, their members, and a seq counter per room."""

    def __init__(self, threads: list[tuple[int, int, int]], authors: list[int]) -> None:
        self.threads = threads  # (thread id, room id, last seq), in the order of --rooms
        self.authors = authors
        self.next_seq = [last + 1 for _, _, last in threads]

    @classmethod
    async def read(cls, conn: psycopg.AsyncConnection[Any], slugs: list[str]) -> Store:
        rows = await (
            await conn.execute(
                "SELECT r.slug, t.id, t.room_id,"
                " (SELECT coalesce(max(m.seq), 0) FROM forums_message m WHERE m.room_id = r.id)"
                " FROM forums_thread t JOIN forums_room r ON r.id = t.room_id"
                " WHERE t.title = 'Benchmark' AND r.slug = ANY(%s)",
                [slugs],
            )
        ).fetchall()
        by_slug = {slug: (thread, room, last) for slug, thread, room, last in rows}
        missing = [slug for slug in slugs if slug not in by_slug]
        if missing:
            raise SystemExit(f"no benchmark thread in the rooms {', '.join(missing)}")
        authors = await (
            await conn.execute(
                "SELECT id FROM community_user WHERE email LIKE %s ORDER BY id", ["%@example.org"]
            )
        ).fetchall()
        if not authors:
            raise SystemExit("no benchmark members (…@example.org) in the database")
        return cls([by_slug[slug] for slug in slugs], [a for (a,) in authors])

    def row(self, room: int, author: int, body: str) -> list[Any]:
        """The parameters of INSERT for the next message of the order's `room`-th room."""
        thread, room_id, _ = self.threads[room]
        seq, self.next_seq[room] = self.next_seq[room], self.next_seq[room] + 1
        return message_row(thread, room_id, seq, author, body)


async def _transaction(conn: psycopg.AsyncConnection[Any], params: list[Any]) -> None:
    """C0t's write of `params` (message_row's, its seq replaced by the room's next)."""
    thread, room = params[0], params[1]
    async with conn.transaction():
        taken = await (await conn.execute(TAKE_SEQ, [room])).fetchone()
        if taken is None:
            raise LookupError(f"no room {room}")
        await conn.execute(COUNT, [thread])
        await conn.execute(INSERT, [thread, room, taken[0], *params[3:]])


async def _drain(socket: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in socket:
            pass


class Poster:
    def __init__(
        self,
        store: Store,
        connections: asyncio.Queue[psycopg.AsyncConnection[Any]],
        ports: list[int],
        *,
        transaction: bool = False,
    ) -> None:
        self.store = store
        self.transaction = transaction
        self.connections = connections
        self.ports = ports
        self.sockets: dict[str, list[ClientConnection]] = {}
        self.readers: list[asyncio.Task[None]] = []

    async def sockets_of(self, room: str) -> list[ClientConnection]:
        """One socket to `room` on every C0 process, opened on the room's first message."""
        if room not in self.sockets:
            opened = [
                await connect(
                    f"ws://127.0.0.1:{port}/room/{room}",
                    compression=None,
                    ping_interval=None,
                    max_size=2**16,
                )
                for port in self.ports
            ]
            self.readers += [asyncio.create_task(_drain(s)) for s in opened]
            self.sockets[room] = opened
        return self.sockets[room]

    async def post(self, room: str, params: list[Any], text: str, due: float) -> float:
        """Store, then send to every process; returns the seconds from when it was due."""
        conn = await self.connections.get()
        try:
            if self.transaction:
                await _transaction(conn, params)
            else:
                await conn.execute(INSERT, params)
        finally:
            self.connections.put_nowait(conn)
        for socket in await self.sockets_of(room):
            await socket.send(text)
        return time.perf_counter() - due

    async def order(self, order: dict[str, Any]) -> dict[str, Any]:
        rate, count, rooms = float(order["rate"]), int(order["count"]), list(order["rooms"])
        if len(rooms) > len(self.store.threads):
            raise SystemExit(
                f"an order for {len(rooms)} rooms, but --rooms named {len(self.store.threads)}"
            )
        senders = self.store.authors[: max(1, int(order["senders"]))]
        for room in rooms:  # connected before the clock starts, as Minga's poster is
            await self.sockets_of(room)
        tasks: list[asyncio.Task[float]] = []
        started = time.perf_counter()
        for seq in range(count):
            due = started + seq / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            for index, room in enumerate(rooms):
                author = senders[(seq * len(rooms) + index) % len(senders)]
                text = payload(int(order["step"]), index, seq)
                params = self.store.row(index, author, text)
                tasks.append(asyncio.create_task(self.post(room, params, text, due)))
        scheduled = time.perf_counter() - started
        done = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [d for d in done if isinstance(d, BaseException)]
        posted_ms = sorted(d * 1000 for d in done if isinstance(d, float))
        return {
            "posted": len(done) - len(failures),
            "failures": len(failures),
            "examples": [repr(e)[:300] for e in failures[:3]],
            "scheduled_seconds": scheduled,
            "seconds": time.perf_counter() - started,
            "post_ms": [_quantile(posted_ms, 0.5), _quantile(posted_ms, 0.99)],
        }


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.c0d_poster", description=__doc__)
    parser.add_argument("--ports", required=True, help="C0's ports, comma-separated")
    parser.add_argument("--rooms", required=True, help="Minga's room slugs, comma-separated")
    parser.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        help=f"database connections writing at once (1 to {MAX_THREADS}; "
        f"default {DEFAULT_CONNECTIONS})",
    )
    parser.add_argument(
        "--transaction",
        action="store_true",
        help="C0t: store each message in a post's transaction (room seq, thread count, insert)",
    )
    args = parser.parse_args(argv)
    try:
        args.ports = [int(p) for p in args.ports.split(",") if p]
    except ValueError:
        parser.error(f"--ports takes port numbers, comma-separated, not {args.ports!r}")
    args.rooms = [slug for slug in args.rooms.split(",") if slug]
    if not args.ports or not args.rooms:
        parser.error("--ports and --rooms each need at least one value")
    if not 1 <= args.connections <= MAX_THREADS:
        parser.error(f"--connections must be between 1 and {MAX_THREADS}")
    if not os.environ.get("DATABASE_URL"):
        parser.error("DATABASE_URL must name Minga's benchmark database")
    return args


async def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    url = os.environ["DATABASE_URL"]
    connections: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for _ in range(args.connections):
        connections.put_nowait(await psycopg.AsyncConnection.connect(url, autocommit=True))
    first = connections.get_nowait()
    store = await Store.read(first, args.rooms)
    if args.transaction:
        await first.execute(CATCH_UP, [sorted({room for _, room, _ in store.threads})])
    connections.put_nowait(first)
    poster = Poster(store, connections, args.ports, transaction=args.transaction)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        answer = await poster.order(json.loads(line))
        print(json.dumps(answer), flush=True)
    for sockets in poster.sockets.values():
        for socket in sockets:
            await socket.close()
    while not connections.empty():
        await connections.get_nowait().close()


if __name__ == "__main__":
    asyncio.run(main())
