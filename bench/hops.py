"""CPU per call of the gateway's database hops and of a post (a development tool:
docs/performance.md, "H3: the connect's CPU").

`python -m bench.hops [--calls 300]` seeds a benchmark database (bench.minga_setup, with its own
Redis), then calls in this process, `--calls` times each, and prints JSON: CPU (process time)
and wall microseconds per call, and the local PostgreSQL server's CPU per call, of
`token_identity` (a token's first use, which records it, and again), `_room_state` of a room
of 50 and of a big room (its sample kept), `message_post` over 10 rooms (the author's roles
read for each post, as a request's member has them), and the gateway's `message.send` hop
(`_post`: the member, the thread, the post). Then the floors under a post: the same message row
written by Django's ORM `create` in a transaction and by one raw `INSERT`, and, with the
full-text index of the bodies dropped, the raw insert and `message_post` again (`_floors`).
Run it from two source trees in turn (`cd <tree> && python -m bench.hops`): the tree it runs from
is the one measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

TREE = Path.cwd()
sys.path[:0] = [str(TREE), str(TREE / "platform")]  # the working tree's packages, not the venv's

from bench import minga_setup  # noqa: E402
from bench.servers import Processes, postgres_cpu, start_redis  # noqa: E402


def _per_call(fn: Callable[[], None], calls: int) -> dict[str, int | None]:
    """CPU and wall microseconds per call of this process, and PostgreSQL's CPU per call (the
    whole local server's, so nothing else should use it meanwhile)."""
    pg = postgres_cpu()
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    out: dict[str, int | None] = {
        "cpu_us": round((time.process_time() - cpu) / calls * 1e6),
        "wall_us": round((time.perf_counter() - wall) / calls * 1e6),
    }
    pg_after = postgres_cpu()
    out["postgres_cpu_us"] = (
        None if pg is None or pg_after is None else round((pg_after - pg) / calls * 1e6)
    )
    return out


def _profiled(fn: Callable[[], None], out: Path) -> None:
    """`fn` under cProfile timed by this process's CPU clock, as the figures are: waits on the
    database and Redis count for nothing."""
    import cProfile

    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(fn)
    profiler.dump_stats(out)


def seeded_posts() -> tuple[list[Any], list[Any], Callable[[int, int], None]]:
    """The seeded database's benchmark threads (one per room, 10) and its first 20 members, and
    `post(count, offset)`: `count` messages through `message_post`, rotating over both, each
    author's roles read afresh as a request's are; `offset` keeps the bodies of calls apart.
    Django must be set up."""
    from bench.loadgen import payload
    from community import policy
    from community.models import User
    from forums.models import Thread
    from forums.services import message_post

    threads = list(Thread.objects.select_related("room").filter(title="Benchmark"))[:10]
    members = list(User.objects.filter(email__endswith="@example.org").order_by("pk"))[:20]

    def post(count: int, offset: int) -> None:
        for i in range(count):
            policy.forget_roles(members[i % len(members)])
            message_post(
                thread=threads[i % len(threads)],
                author=members[i % len(members)],
                body=payload(1, i % len(threads), offset + i),
                client_id=uuid.uuid4(),
            )

    return threads, members, post


def measure(data: minga_setup.MingaData, calls: int, profile: Path | None = None) -> dict[str, Any]:
    os.environ.update(data.env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.minga_settings")
    import django

    django.setup()
    from minga.realtime import token_identity

    from bench.loadgen import payload
    from forums import consumers
    from forums.models import Room

    tokens = data.tokens[:calls]
    room = Room.objects.get(slug=data.hold_room)
    ids: list[int] = []
    out: dict[str, Any] = {"tree": str(TREE), "calls": calls}

    def identities() -> None:
        for raw in tokens:
            _member, identity, _credential = token_identity(raw)
            assert identity is not None
            ids.append(identity[0])

    out["token_identity_first_use"] = _per_call(identities, len(tokens))
    ids.clear()
    out["token_identity"] = _per_call(identities, len(tokens))
    online = sorted(ids)[:50]
    for name, big in (("room_state_room_of_50", False), ("room_state_big_room", True)):
        out[name] = _per_call(
            lambda big=big: [
                consumers._room_state(m, data.hold_room, room.pk, online, big) for m in ids
            ],
            len(ids),
        )
    threads, members, post = seeded_posts()
    post(30, 10**6)  # warm: the first posts load templates and caches
    out["message_post"] = _per_call(lambda: post(calls, 0), calls)
    if profile is not None:  # the same posts again, under cProfile (`python -m pstats FILE`)
        _profiled(lambda: post(calls, 10**7), profile)

    def send(count: int, offset: int) -> None:  # the gateway's message.send hop
        for i in range(count):
            thread = threads[i % len(threads)]
            consumers._post(
                members[i % len(members)].pk,
                thread.room_id,
                {
                    "thread": thread.pk,
                    "body": payload(1, i % len(threads), offset + i),
                    "client_id": str(uuid.uuid4()),
                    "reply_to": None,
                },
            )

    out["gateway_message_send"] = _per_call(lambda: send(calls, 2 * 10**6), calls)
    if profile is not None:  # and the sends, into FILE.send
        _profiled(lambda: send(calls, 3 * 10**6), profile.with_name(profile.name + ".send"))
    out.update(_floors(threads, members, calls, post))
    return out


def _floors(
    threads: list[Any], members: list[Any], calls: int, post: Callable[[int, int], None]
) -> dict[str, Any]:
    """What the same message row costs written with less than a post: Django's ORM `create` in a
    transaction, and one raw `INSERT` committed on its own (its seq made up, no lock, no check,
    the Markdown not rendered). Then the full-text index of the bodies is dropped and the raw
    insert and `message_post` are measured again: what that index costs a post. The database is
    the benchmark's own and is dropped afterwards."""
    from django.db import connection, transaction

    from bench.c0d_poster import INSERT, body_html, message_row
    from bench.loadgen import payload
    from forums.models import Message

    out: dict[str, Any] = {}
    seqs = iter(range(10**9, 2 * 10**9))  # far above any seq a post takes

    def orm(count: int, offset: int) -> None:
        for i in range(count):
            thread, body = threads[i % len(threads)], payload(1, i % len(threads), offset + i)
            with transaction.atomic():
                Message.objects.create(
                    thread=thread,
                    room_id=thread.room_id,
                    seq=next(seqs),
                    author=members[i % len(members)],
                    body=body,
                    body_html=body_html(body),
                    client_id=uuid.uuid4(),
                )

    def raw(count: int, offset: int) -> None:
        with connection.cursor() as cursor:  # autocommit: each INSERT commits on its own
            for i in range(count):
                thread, body = threads[i % len(threads)], payload(1, i % len(threads), offset + i)
                author = members[i % len(members)].pk
                cursor.execute(
                    INSERT, message_row(thread.pk, thread.room_id, next(seqs), author, body)
                )

    orm(30, 4 * 10**6)
    out["floor_orm_create"] = _per_call(lambda: orm(calls, 5 * 10**6), calls)
    raw(30, 6 * 10**6)
    out["floor_raw_insert"] = _per_call(lambda: raw(calls, 7 * 10**6), calls)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX forums_message_body_fts")
        out["floor_raw_insert_without_search_index"] = _per_call(
            lambda: raw(calls, 8 * 10**6), calls
        )
        out["message_post_without_search_index"] = _per_call(lambda: post(calls, 9 * 10**6), calls)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hops")
    parser.add_argument("--calls", type=int, default=300, help="calls of each (>= 50)")
    parser.add_argument("--redis-port", type=int, default=6393)
    parser.add_argument(
        "--profile",
        type=Path,
        help="also cProfile the posts into this file and the sends into FILE.send",
    )
    parser.add_argument(
        "--transport",
        choices=minga_setup.TRANSPORTS,
        default="unix",
        help="reach Redis and PostgreSQL over their unix sockets (default) or TCP",
    )
    args = parser.parse_args(argv)
    if args.calls < 50:
        parser.error("--calls must be at least 50 (a room of 50 is measured)")
    with Processes() as procs:
        port, _redis = start_redis(procs, args.redis_port)
        try:
            data = minga_setup.prepare(args.calls, port, args.transport)
            out = {"transport": data.transport, **measure(data, args.calls, args.profile)}
            print(json.dumps(out, indent=1), flush=True)
        finally:
            minga_setup.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
