"""Where a held connection's bytes go: tracemalloc snapshots of the servers, by component.

`python -m bench.memtrace_report --connections 600 base='/tmp/snaps/101-*,/tmp/snaps/102-*'
after='/tmp/snaps/201-*,/tmp/snaps/202-*'` (the servers' pids: connect_probe prints them) reads the snapshots `bench/memtrace/sitecustomize.py` dumped
(each holds what was allocated after the warm-up and is still alive with every client held),
sums each labelled group over its processes, and prints the traced bytes per connection by
component as a Markdown table, one column per group. A development tool for docs/performance.md
("H3: where a connection's bytes go"). Each allocation goes to the innermost frame of its
traceback that is not the standard library (the code that asked for it), mapped to the function
or class around that line.
"""

from __future__ import annotations

import argparse
import ast
import collections
import functools
import glob
import sys
import tracemalloc
from pathlib import Path

STDLIB = f"/lib/python{sys.version_info.major}.{sys.version_info.minor}/"
SITE = "/site-packages/"

NOT_PER_SOCKET = "not per socket: source lines of logged tracebacks, query caches"
QUEUE = "daphne: the application's input queue"
PROTOCOL = "daphne + autobahn: the protocol object, its attributes, headers, handshake"


def _relative(filename: str) -> str:
    if SITE in filename:
        return filename.split(SITE, 1)[1]
    if STDLIB in filename and SITE not in filename:
        return "stdlib:" + filename.split(STDLIB, 1)[1]
    for marker in ("/forums/", "/notifications/", "/community/", "/platform/", "/bench/"):
        if marker in filename:
            return marker.strip("/") + "/" + filename.rsplit(marker, 1)[1]
    return filename


@functools.cache
def _scopes(filename: str) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function and class in the file."""
    try:
        tree = ast.parse(Path(filename).read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    found: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                found.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")

    visit(tree, "")
    return found


def _qualname(filename: str, lineno: int) -> str:
    inside = [(first, name) for first, last, name in _scopes(filename) if first <= lineno <= last]
    return max(inside)[1] if inside else "<module>"


def component(frames: list[tracemalloc.Frame]) -> str:  # noqa: PLR0911, PLR0912 - one rule a line
    """The component one allocation is charged to; `frames` oldest first."""
    where = [(_relative(f.filename), f) for f in frames]
    paths = [path for path, _ in where]
    innermost = paths[-1]
    if innermost.startswith("stdlib:linecache") or any(
        p.endswith("minga/logging.py") for p in paths
    ):
        return NOT_PER_SOCKET
    own = [(p, f) for p, f in where if not p.startswith("stdlib:")]
    if not own:
        return "other: " + innermost
    path, frame = own[-1]
    name = _qualname(frame.filename, frame.lineno)
    if path.endswith("forums/transport.py") and name.startswith("InputQueue"):
        return QUEUE
    if path == "daphne/server.py" and innermost.startswith(
        ("stdlib:asyncio/queues", "stdlib:asyncio/locks")
    ):
        return QUEUE
    if any(p.endswith("community/services.py") for p in paths):
        return "token auth: the member (User, organization) in the scope"
    if path.startswith(("psycopg/", "django/", "asgiref/")):
        return NOT_PER_SOCKET
    if path == "daphne/server.py" or (
        path.endswith("forums/transport.py") and name.startswith("_create_application")
    ):
        return "daphne: the application's task, send partial, scope['asgi']"
    if path.startswith(("daphne/", "autobahn/", "txaio/")) or path.endswith("forums/transport.py"):
        return PROTOCOL
    if path.startswith(("twisted/", "zope/")):
        return "twisted: TCP transport, HTTP channel of the upgrade"
    if path in ("channels/utils.py", "channels/consumer.py"):
        return "channels: consumer instance and dispatch loop (receive task, asyncio.wait)"
    if path.startswith("channels/"):
        return "channels: URL router (scope copy, frame), Origin validator"
    if path.endswith("minga/realtime.py"):
        return "minga: Origin and token middleware (scope copies, frames)"
    if any(p.endswith("forums/presence.py") for p in paths):
        return "minga: presence"
    if path.endswith("notifications/bus.py") or path.startswith(("channels_redis/", "redis/")):
        return "minga: hub groups and their channel-layer subscription"
    if path.endswith("forums/consumers.py"):
        return "minga: gateway consumer state"
    return "other: " + path


def charge(patterns: str) -> collections.Counter[str]:
    """Bytes by component over the files the comma-separated glob patterns name."""
    totals: collections.Counter[str] = collections.Counter()
    paths = {path for pattern in patterns.split(",") for path in glob.glob(pattern)}
    for path in sorted(paths):
        for trace in tracemalloc.Snapshot.load(path).traces:
            totals[component(list(trace.traceback))] += trace.size
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memtrace_report")
    parser.add_argument("--connections", type=int, required=True, help="held, over all snapshots")
    parser.add_argument(
        "groups", nargs="+", help="label=glob[,glob...] of snapshot files (one per server)"
    )
    args = parser.parse_args(argv)
    columns = {}
    for group in args.groups:
        label, _, pattern = group.partition("=")
        columns[label] = charge(pattern)
    names = sorted(
        {n for c in columns.values() for n in c}, key=lambda n: -max(c[n] for c in columns.values())
    )
    print("| bytes per connection | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name in names:
        cells = [f"{c[name] / args.connections:,.0f}" for c in columns.values()]
        if all(cell == "0" for cell in cells):
            continue
        print(f"| {name} | " + " | ".join(cells) + " |")
    per_socket = [
        f"{(sum(c.values()) - c[NOT_PER_SOCKET]) / args.connections / 1024:.1f} KiB"
        for c in columns.values()
    ]
    print("| **per socket, traced** | " + " | ".join(per_socket) + " |")
    totals = [f"{sum(c.values()) / args.connections / 1024:.1f} KiB" for c in columns.values()]
    print("| traced, in all | " + " | ".join(totals) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
