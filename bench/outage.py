"""H6 alone, from one or more source trees in turn (a development tool: docs/performance.md,
"H6: what a restart's subscribers missed, replayed").

`python -m bench.outage --trees A,B [--rounds 3] [--smoke]` seeds a benchmark database
(bench.minga_setup, with its own Redis). In each round it starts Minga's two daphne processes
from each tree in turn and runs H6 against them as the full run does (bench.minga_setup.outage:
50 clients subscribed to one room, 60 messages posted over HTTP at 10 a second, Redis killed
after the first third and restarted 3 s later). It prints JSON: per tree, each round's H6
record, whose `missing_live` counts the (client, message) pairs that had not arrived, live or
through the clients' own gap fills, 2 s after the last post, and `lost` those still missing after
every client subscribed again with `after`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench import minga_setup
from bench.__main__ import FULL, SMOKE, _stop_servers, start_servers
from bench.servers import Processes, source_trees, start_redis

MEMBERS = 100  # seeded members; H6's 50 clients are the first of them


def measure(
    trees: list[Path], *, rounds: int, redis_port: int, cfg: dict[str, Any] = FULL
) -> dict[str, Any]:
    """`cfg`: the full run's H6 (60 messages, 3 s without Redis) or `make bench SMOKE=1`'s."""
    out: dict[str, Any] = {
        "messages": cfg["h6_messages"],
        "outage_s": cfg["h6_outage_s"],
        "trees": {str(tree): [] for tree in trees},
    }
    with Processes() as procs:
        port, _redis = start_redis(procs, redis_port)
        try:
            data = minga_setup.prepare(MEMBERS, port)
            for _round in range(rounds):
                for tree in trees:
                    ports, _pids = start_servers(procs, "minga", port, data.env, str(tree))
                    try:
                        record = minga_setup.outage(
                            procs=procs,
                            redis=(port, procs.pid_of("redis") or 0),
                            cfg=cfg,
                            ports=ports,
                            data=data,
                            log=lambda line: print(line, file=sys.stderr, flush=True),
                        )
                    finally:
                        _stop_servers(procs, "minga")
                    out["trees"][str(tree)].append(record)
        finally:
            minga_setup.drop_database()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outage")
    parser.add_argument(
        "--trees", type=source_trees, default=[Path.cwd()], help="source trees, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the trees")
    parser.add_argument("--redis-port", type=int, default=6397)
    parser.add_argument(
        "--smoke", action="store_true", help="the smoke run's H6: 20 messages, 1 s without Redis"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    cfg = SMOKE if args.smoke else FULL
    out = measure(args.trees, rounds=args.rounds, redis_port=args.redis_port, cfg=cfg)
    print(json.dumps(out, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
