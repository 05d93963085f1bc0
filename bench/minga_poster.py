"""Post benchmark messages through Minga's services: `python -m bench.minga_poster`.

A long-lived helper process under bench.minga_settings. Each line on stdin is one order, JSON
{"step", "rate", "count", "rooms": [slug...], "senders": N}; it posts `count` messages to each
room at `rate` per room per second with `forums.services.message_post` (the same service the
API and the gateway call: transaction, room lock, seq, on-commit publish to the room's group and
notification receivers), rotating over the first N members (their roles read afresh for
each post, as a request's member has them). The body is the load generator's payload
(bench.loadgen.payload), stamped with the monotonic clock shared by every process on the
machine. It answers one JSON line per order.

`--threads N` (default 8) posts from N threads. Fewer cost less CPU per post on a quiet machine
(one thread 1,250 us against eight's 1,760 at 400 posts/s: the kernel's futex calls of threads
handing one GIL over at every query's wait), but a post's wall time is mostly waits on
PostgreSQL, and on a full machine one or two threads fell behind the ten-room steps that eight
kept up with (docs/performance.md, "The poster's threads").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bench import stats

DEFAULT_THREADS = 8
MAX_THREADS = 64
WARM_ROUNDS = 6  # psycopg prepares a statement after a connection's fifth run of it
WARM_AUTHORS = 32  # the load generator's senders per room


def _quantile(values: list[float], q: float) -> float | None:
    """`q` of the values (bench.stats' rank), None for none."""
    return stats.quantile(values, q) if values else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.minga_poster")
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"posting threads (1 to {MAX_THREADS}; default {DEFAULT_THREADS})",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.threads <= MAX_THREADS:
        parser.error(f"--threads must be between 1 and {MAX_THREADS}")
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.minga_settings")
    django.setup()
    from django.db import close_old_connections

    from bench.loadgen import payload
    from community import policy
    from community.models import User
    from forums.models import Thread
    from forums.services import message_post

    threads = {
        t.room.slug: t for t in Thread.objects.select_related("room").filter(title="Benchmark")
    }
    members = list(User.objects.filter(email__endswith="@example.org").order_by("pk"))
    close_old_connections()
    pool = ThreadPoolExecutor(args.threads)

    def post(slug: str, body: str, author: Any, due: float) -> float:
        """Post; returns the seconds from when it was due to its commit and publish."""
        try:
            # As a request's member would, the author's roles are read afresh for each post (the
            # policy caches them on the member object, which this process keeps).
            policy.forget_roles(author)
            message_post(thread=threads[slug], author=author, body=body, client_id=uuid.uuid4())
            return time.perf_counter() - due
        finally:
            close_old_connections()

    # Before the first order, WARM_ROUNDS posts per thread, `threads` at a time: the database
    # pool grows to its working size and each connection prepares the post's statements, as
    # C0d's poster opens its connections before its first order. Without it the first H1 step's
    # p99 was these first posts' (docs/performance.md, "The poster's first posts"). Their
    # payload is step 0's, which no step counts (the load generator's clients may be
    # connecting meanwhile; the first order is read once these are done).
    warm_room, authors = sorted(threads)[0], members[:WARM_AUTHORS]

    def warm(index: int) -> float:
        author = authors[index % len(authors)]
        return post(warm_room, payload(0, 0, index), author, time.perf_counter())

    list(pool.map(warm, range(WARM_ROUNDS * args.threads)))  # a failed post raises here
    for line in sys.stdin:
        order = json.loads(line)
        rate, count, rooms = float(order["rate"]), int(order["count"]), list(order["rooms"])
        senders = members[: max(1, int(order["senders"]))]
        futures: list[Future[float]] = []
        started = time.perf_counter()
        for seq in range(count):
            due = started + seq / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for room_index, slug in enumerate(rooms):
                author = senders[(seq * len(rooms) + room_index) % len(senders)]
                # Stamped when due, not when a worker gets to it: queueing counts as latency.
                body = payload(int(order["step"]), room_index, seq)
                futures.append(pool.submit(post, slug, body, author, due))
        scheduled = time.perf_counter() - started
        failures = [f.exception() for f in futures if f.exception() is not None]
        # Due to committed and published, queueing for a worker included: the part of H2's
        # publish-to-deliver latency spent before any server sees the message.
        posted_ms = sorted(f.result() * 1000 for f in futures if f.exception() is None)
        print(
            json.dumps(
                {
                    "posted": len(futures) - len(failures),
                    "failures": len(failures),
                    "examples": [repr(e)[:300] for e in failures[:3]],
                    "scheduled_seconds": scheduled,
                    "seconds": time.perf_counter() - started,
                    "post_ms": [_quantile(posted_ms, 0.5), _quantile(posted_ms, 0.99)],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
