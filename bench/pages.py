"""CPU per request of H5's two pages, in this process (a development tool: docs/performance.md,
"The thread page's reads").

`python -m bench.pages [--requests 400] [--profile DIR]` seeds a benchmark database
(bench.minga_setup, with its own Redis), signs in H5's member and requests, through Django's
test client (no server, no socket), the thread page H5 requests and the calendar month page.
It prints JSON per page: CPU (process time) per request, the median and the lowest of ten
batches; Python function calls per request (counted by cProfile over a batch of its own: the
same code makes the same calls, so this figure does not move with the machine's load);
queries per request; and the response's size. `--messages N` first posts N more messages in
the thread (through `message_post`); the default is H5's (bench.h5.THREAD_MESSAGES: a full page
of 50), and `--messages 0` leaves the thread its first message only, as H5 had it before
stop 19. `thread_over_month` is the thread page's median over the month page's, measured in
the same run: a ratio that holds where the machine's speed drifts between runs. With `--profile DIR`, DIR/thread.prof and DIR/month.prof hold the
profiles (`python -m pstats`). Run it from two source trees in turn (`cd <tree> && python -m
bench.pages`): the tree it runs from is the one measured.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TREE = Path.cwd()
sys.path[:0] = [str(TREE), str(TREE / "platform")]  # the working tree's packages, not the venv's

from bench import minga_seed, minga_setup  # noqa: E402
from bench.h5 import LOGIN_EMAIL, THREAD_MESSAGES  # noqa: E402
from bench.servers import Processes, start_redis  # noqa: E402

BATCHES = 10
WARM_UP = 20


def _collect_static(env: dict[str, str]) -> None:
    """The manifest production templates need (as bench/h5.py collects it, without compressing)."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=TREE,
        env={**os.environ, **env, "BENCH_COLLECT_PLAIN": "1"},
        check=True,
    )


def _page(get: Any, path: str, requests: int, profile: Path | None) -> dict[str, Any]:
    from django.db import connection

    for _ in range(WARM_UP):
        size = get(path)
    queries: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        get(path)
    per_batch = max(1, requests // BATCHES)
    batches = []
    for _ in range(BATCHES):
        started = time.process_time()
        for _ in range(per_batch):
            get(path)
        batches.append((time.process_time() - started) / per_batch * 1e6)
    batches.sort()
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(lambda: [get(path) for _ in range(per_batch)])
    if profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile)
    return {
        "cpu_us_median": round(batches[BATCHES // 2]),
        "cpu_us_lowest": round(batches[0]),
        "python_calls": round(pstats.Stats(profiler).total_calls / per_batch),  # type: ignore[attr-defined]
        "queries": len(queries),
        "bytes": size,
    }


def measure(
    data: minga_setup.MingaData,
    requests: int,
    profile: Path | None = None,
    messages: int = 0,
    *,
    static: str,
) -> dict[str, Any]:
    env = {
        **data.env,
        "BENCH_STATIC_ROOT": static,
        "DJANGO_SETTINGS_MODULE": "bench.minga_settings",
    }
    _collect_static(env)
    os.environ.update(env)
    import django

    django.setup()
    from django.test import Client

    from community.models import User

    member = User.objects.get(email=LOGIN_EMAIL)
    minga_seed.messages(data.threads[data.hold_room], messages)
    client = Client()
    client.force_login(member)
    pages = {"thread": f"/threads/{data.threads[data.hold_room]}/", "month": "/calendar/"}
    out: dict[str, Any] = {"tree": str(TREE), "requests": requests, "messages_added": messages}

    def get(path: str) -> int:
        response = client.get(path, HTTP_HOST="localhost")
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}")
        return len(response.content)

    for name, path in pages.items():
        out[name] = _page(
            get, path, requests, None if profile is None else profile / f"{name}.prof"
        )
    out["thread_over_month"] = round(
        out["thread"]["cpu_us_median"] / out["month"]["cpu_us_median"], 3
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages")
    parser.add_argument("--requests", type=int, default=400, help="timed requests of each page")
    parser.add_argument("--redis-port", type=int, default=6394)
    parser.add_argument("--profile", type=Path, help="write DIR/thread.prof and DIR/month.prof")
    parser.add_argument(
        "--messages",
        type=int,
        default=THREAD_MESSAGES,
        help=f"post this many more messages in the thread first (default {THREAD_MESSAGES}, as "
        "H5 does: a full page of 50; 0 for a thread of one message)",
    )
    args = parser.parse_args(argv)
    if args.requests < BATCHES:
        parser.error(f"--requests must be at least {BATCHES}")
    if args.messages < 0:
        parser.error("--messages must be 0 or more")
    with Processes() as procs:
        port, _redis = start_redis(procs, args.redis_port)
        try:
            data = minga_setup.prepare(60, port)
            # The static files' manifest, for this run only.
            with tempfile.TemporaryDirectory(prefix="minga-pages-static-") as static:
                out = measure(data, args.requests, args.profile, args.messages, static=static)
            print(json.dumps(out, indent=1), flush=True)
        finally:
            minga_setup.drop_database()
    return 0


if __name__ == "__main__":
    sys.exit(main())
