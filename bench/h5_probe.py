"""H5's probe, in a process of its own so the load generator's event loop never delays it:
`python -m bench.h5_probe --ports P1,P2 --pages '{"name": "/path/"}' [--cookie C] --rps R
--seconds S` prints JSON: per page, requests, errors, p50/p99/max and every time in ms.
Standard library only (and bench.stats, which is too), so it starts fast.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from typing import Any

from bench import stats


def get(port: int, path: str, cookie: str, timeout: float) -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def _quantile(values: list[float], q: float) -> float | None:
    """`q` of the times in seconds, in ms: the rank bench.stats reads when it bounds a ratio."""
    return round(stats.quantile(values, q) * 1000, 2) if values else None


def probe(
    *, ports: list[int], pages: dict[str, str], cookie: str, rps: float, seconds: float
) -> dict[str, Any]:
    """Request the pages in turn at `rps` for `seconds`, one request at a time.

    Request k is due at start + k / rps; one that is due while the previous is still waiting
    goes as soon as it returns (a slow answer delays the next one, never overlaps it)."""
    names = list(pages)
    times: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, list[str]] = {name: [] for name in names}
    count = max(len(names), round(rps * seconds))
    started = time.perf_counter()
    for k in range(count):
        delay = started + k / rps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        name = names[k % len(names)]
        port = ports[(k // len(names)) % len(ports)]
        try:
            status, took = get(port, pages[name], cookie, timeout=30)
        except (OSError, http.client.HTTPException) as error:
            errors[name].append(f"{type(error).__name__}: {error}"[:200])
            continue
        if status == 200:
            times[name].append(took)
        else:
            errors[name].append(f"HTTP {status}")
    return {
        name: {
            "path": pages[name],
            "requests": len(times[name]) + len(errors[name]),
            "errors": len(errors[name]),
            "error_examples": errors[name][:3],
            "p50_ms": _quantile(times[name], 0.5),
            "p99_ms": _quantile(times[name], 0.99),
            "max_ms": _quantile(times[name], 1.0),
            # Every answer's time, in the order they came: bench.stats bounds the p99s' ratio.
            "times_ms": [round(took * 1000, 2) for took in times[name]],
        }
        for name in names
    } | {"_wall_s": round(time.perf_counter() - started, 2)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.h5_probe")
    parser.add_argument("--ports", required=True)
    parser.add_argument("--pages", required=True, help='JSON: {"name": "/path/"}')
    parser.add_argument("--cookie", default="")
    parser.add_argument("--rps", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    result = probe(
        ports=[int(p) for p in args.ports.split(",")],
        pages=json.loads(args.pages),
        cookie=args.cookie,
        rps=args.rps,
        seconds=args.seconds,
    )
    print(json.dumps(result))
