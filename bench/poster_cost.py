"""The poster's CPU per post at a fixed rate, from one or more source trees in turn (a development
tool: docs/performance.md, "A publish from synchronous code, on the calling thread").

`python -m bench.poster_cost --trees A,B [--rate 15] [--rooms 10] [--seconds 10] [--rounds 3]
[--threads 8]` seeds a benchmark database (bench.minga_setup, with its own Redis). In each round
it starts bench.minga_poster from each tree in turn, with each of `--threads` (eight, as the
full run's, by default), and has it post `--rate` messages a second to each of `--rooms` rooms
for `--seconds`, after a short warm-up order. It prints JSON: per tree, each turn's threads,
the poster process's CPU per post (all its threads), the local PostgreSQL server's CPU per
post, the posts' own p50/p99 (due to committed and published, ms) and failures. No websocket
server runs: this is a post's write at a rate, from the same threads as H1's, where
`bench.hops` makes one post at a time. The trees take turns within a round, so a drift of the
machine's speed reaches each alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import psutil

from bench import minga_poster, minga_setup
from bench.servers import Processes, postgres_cpu, source_trees, start_redis

MEMBERS = 40  # the posts' authors rotate over them
WARM_UP_POSTS = 10  # per room, before each measured order: imports, templates, connections


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def measure(
    trees: list[Path],
    *,
    rate: float,
    rooms: int,
    seconds: float,
    rounds: int,
    redis_port: int,
    threads: tuple[int, ...] = (minga_poster.DEFAULT_THREADS,),
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rate_per_room": rate,
        "rooms": rooms,
        "seconds": seconds,
        "trees": {str(tree): [] for tree in trees},
    }
    turns = [(tree, count) for tree in trees for count in threads]
    with Processes() as procs:
        port, _redis = start_redis(procs, redis_port)
        try:
            data = minga_setup.prepare(MEMBERS, port)
            for round_ in range(rounds):
                for index, (tree, count) in enumerate(turns):
                    # Processes.start puts the tree's platform/ first on the path: its own minga.
                    poster = minga_setup.Poster(
                        procs, data, f"poster-{index}-{round_}", str(tree), threads=count
                    )
                    try:
                        record = _turn(poster, data.rooms[:rooms], rate, seconds, round_ + 1)
                    finally:
                        procs.stop(poster.proc)
                    out["trees"][str(tree)].append({"threads": count, **record})
        finally:
            minga_setup.drop_database()
    return out


def _turn(
    poster: minga_setup.Poster, rooms: list[str], rate: float, seconds: float, step: int
) -> dict[str, Any]:
    """One poster's warm-up order, then its measured order: what it cost per post."""
    poster.order(step=0, rate=WARM_UP_POSTS, count=WARM_UP_POSTS, rooms=rooms, senders=MEMBERS)
    proc = psutil.Process(poster.pid)
    cpu, pg = _cpu(proc), postgres_cpu()
    answer = poster.order(
        step=step, rate=rate, count=max(1, round(rate * seconds)), rooms=rooms, senders=MEMBERS
    )
    cpu, pg_after = _cpu(proc) - cpu, postgres_cpu()
    posted = max(1, answer["posted"])
    p50, p99 = answer["post_ms"]
    return {
        "posted": answer["posted"],
        "failures": answer["failures"],
        "examples": answer["examples"],
        "poster_cpu_us_per_post": round(cpu / posted * 1e6),
        "postgres_cpu_us_per_post": (
            None if pg is None or pg_after is None else round((pg_after - pg) / posted * 1e6)
        ),
        "post_ms_p50": None if p50 is None else round(p50, 2),
        "post_ms_p99": None if p99 is None else round(p99, 2),
    }


def _threads(value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or not all(1 <= n <= minga_poster.MAX_THREADS for n in counts):
        raise argparse.ArgumentTypeError(
            f"--threads takes thread counts from 1 to {minga_poster.MAX_THREADS}, comma-separated"
        )
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.poster_cost")
    parser.add_argument(
        "--trees", type=source_trees, default=[Path.cwd()], help="source trees, comma-separated"
    )
    parser.add_argument("--rate", type=float, default=15.0, help="messages a second per room")
    parser.add_argument("--rooms", type=int, default=10, help="rooms posted to (1 to 10)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each order")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the trees")
    parser.add_argument(
        "--threads",
        type=_threads,
        default=(minga_poster.DEFAULT_THREADS,),
        help="the poster's threads; several (1,8) run each tree with each in turn",
    )
    parser.add_argument("--redis-port", type=int, default=6395)
    args = parser.parse_args(argv)
    if not args.rate > 0:
        parser.error("--rate must be above 0")
    if not 1 <= args.rooms <= 10:
        parser.error("--rooms must be between 1 and 10")
    if not args.seconds > 0:
        parser.error("--seconds must be above 0")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    out = measure(
        args.trees,
        rate=args.rate,
        rooms=args.rooms,
        seconds=args.seconds,
        rounds=args.rounds,
        redis_port=args.redis_port,
        threads=args.threads,
    )
    print(json.dumps(out, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
