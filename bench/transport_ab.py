"""A post's cost over TCP and over unix sockets, alternated on one seeded database (a development
tool: docs/performance.md, "Redis and PostgreSQL over unix sockets").

`python -m bench.transport_ab [--rounds 6] [--posts 300]` seeds a benchmark database once
(bench.minga_setup, with its own Redis listening on a port and on a unix socket), then, `--rounds`
times, runs one child process per transport in turn, TCP first in odd rounds and unix first in
even ones. Each child sets Django up with that transport's DATABASE_URL and REDIS_URL, posts 30
messages to warm its pool and statements, then `--posts` messages through
`forums.services.message_post` over 10 rooms, and reports per post: its own CPU, the local
PostgreSQL server's and the private Redis's CPU, and the wall time. A machine whose speed drifts
moves both transports alike within a round; the medians over rounds and the per-round
differences are printed as JSON. Before the posts, one round trip of each server alone (`SELECT
1`, a Redis `GET`), `--trips` times per transport in alternating blocks, client and server CPU
per round trip (`round_trips`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TREE = Path.cwd()
sys.path[:0] = [str(TREE), str(TREE / "platform")]  # the working tree's packages, not the venv's

from bench import minga_setup  # noqa: E402
from bench.hops import seeded_posts  # noqa: E402
from bench.servers import Processes, postgres_cpu, start_redis  # noqa: E402

WARM_POSTS = 30
FIGURES = ("cpu_us", "postgres_cpu_us", "redis_cpu_us", "machine_us", "wall_us")


def _child(posts: int, redis_pid: int) -> dict[str, Any]:
    """In a child process whose environment names the transport: the posts' figures."""
    import psutil

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.minga_settings")
    import django

    django.setup()
    _threads, _members, post = seeded_posts()
    redis = psutil.Process(redis_pid)
    post(WARM_POSTS, 10**8 + os.getpid() * 10**3)
    pg, rd = postgres_cpu(), sum(redis.cpu_times()[:2])
    cpu, wall = time.process_time(), time.perf_counter()
    post(posts, 10**9 + os.getpid() * 10**4)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pg_used = (postgres_cpu() or 0.0) - (pg or 0.0)
    rd_used = sum(redis.cpu_times()[:2]) - rd
    return {
        "connections": _connections(),
        "cpu_us": round(cpu / posts * 1e6),
        "postgres_cpu_us": round(pg_used / posts * 1e6),
        "redis_cpu_us": round(rd_used / posts * 1e6),
        "machine_us": round((cpu + pg_used + rd_used) / posts * 1e6),
        "wall_us": round(wall / posts * 1e6),
    }


def round_trips(redis_port: int, redis_pid: int, trips: int) -> dict[str, dict[str, float]]:
    """CPU microseconds per round trip, this process's and the server's, of `SELECT 1` to
    PostgreSQL and `GET` to the private Redis, over TCP and over the unix socket: `trips` per
    transport, in ten alternating blocks."""
    import psutil
    import psycopg
    import redis as redis_py

    redis_server = psutil.Process(redis_pid)

    def redis_cpu() -> float:
        return sum(redis_server.cpu_times()[:2])

    probes: list[tuple[str, Callable[[], object], Callable[[], float | None], Any]] = []
    for transport in minga_setup.TRANSPORTS:
        urls = minga_setup.minga_urls(redis_port, transport)[0]
        pg = psycopg.connect(
            urls["DATABASE_URL"].replace("postgres://", "postgresql://", 1), autocommit=True
        )
        rd = redis_py.Redis.from_url(urls["REDIS_URL"])
        probes.append(
            (
                f"postgres_{transport}",
                lambda c=pg: c.execute("SELECT 1").fetchone(),
                postgres_cpu,
                pg,
            )
        )
        probes.append((f"redis_{transport}", lambda c=rd: c.get("x"), redis_cpu, rd))
    sums = {name: [0.0, 0.0] for name, *_ in probes}
    block = max(1, trips // 10)
    try:
        for _ in range(10):
            for name, call, server_cpu, _conn in probes:
                before, cpu = server_cpu() or 0.0, time.process_time()
                for _ in range(block):
                    call()
                sums[name][0] += time.process_time() - cpu
                sums[name][1] += (server_cpu() or 0.0) - before
    finally:
        for *_, conn in probes:
            conn.close()
    return {
        name: {
            "client_us": round(c / (10 * block) * 1e6, 1),
            "server_us": round(v / (10 * block) * 1e6, 1),
        }
        for name, (c, v) in sums.items()
    }


def _connections() -> dict[str, str]:
    """How this child's posts reached the servers: its database connection's (a unix socket has
    no client port) and its cache's Redis connection class."""
    from django.core.cache import cache
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        (client_port,) = cursor.fetchone()
    redis_class = cache._cache.get_client().connection_pool.connection_class.__name__
    return {
        "postgres": "unix" if client_port in (None, -1) else "tcp",
        "redis": "unix" if redis_class == "UnixDomainSocketConnection" else "tcp",
    }


def _run_child(env: dict[str, str], posts: int, redis_pid: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.transport_ab", "--child", str(posts), str(redis_pid)],
        env={**os.environ, **env},
        cwd=TREE,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"a child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(rounds: list[dict[str, dict[str, int]]]) -> dict[str, Any]:
    """Medians per transport, and the median of unix minus TCP within each round."""
    out: dict[str, Any] = {}
    for transport in minga_setup.TRANSPORTS:
        out[transport] = {f: statistics.median(r[transport][f] for r in rounds) for f in FIGURES}
    out["unix_minus_tcp"] = {
        f: statistics.median(r["unix"][f] - r["tcp"][f] for r in rounds) for f in FIGURES
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport_ab")
    parser.add_argument("--rounds", type=int, default=6, help="pairs of children (>= 1)")
    parser.add_argument("--posts", type=int, default=300, help="posts per child (>= 50)")
    parser.add_argument("--trips", type=int, default=20_000, help="round trips per transport")
    parser.add_argument("--redis-port", type=int, default=6394)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)), flush=True)
        return 0
    if args.rounds < 1 or args.posts < 50:
        parser.error("--rounds must be at least 1 and --posts at least 50")
    with Processes() as procs:
        port, redis = start_redis(procs, args.redis_port)
        try:
            data = minga_setup.prepare(100, port, "unix")
            if data.transport != "unix":
                parser.error("PostgreSQL or Redis has no unix socket here: nothing to compare")
            envs = {t: minga_setup.minga_urls(port, t)[0] for t in minga_setup.TRANSPORTS}
            base = {k: v for k, v in data.env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
            trips = round_trips(port, redis.pid, args.trips)
            print(json.dumps({"round_trips": trips}), file=sys.stderr, flush=True)
            rounds: list[dict[str, dict[str, int]]] = []
            for n in range(args.rounds):
                order = minga_setup.TRANSPORTS[::-1] if n % 2 == 0 else minga_setup.TRANSPORTS
                found = {t: _run_child({**base, **envs[t]}, args.posts, redis.pid) for t in order}
                rounds.append(found)
                print(json.dumps({"round": n + 1, **found}), file=sys.stderr, flush=True)
            out = {"round_trips": trips, "rounds": rounds, **summary(rounds)}
            print(json.dumps(out, indent=1), flush=True)
        finally:
            minga_setup.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
