"""C0, the ceiling: a bare `websockets` broadcast server, compression off, in-process fan-out.

One process per core; each relays every text frame it receives to every socket of the same
room (the URL path) in that process with `websockets.broadcast`. No channel layer, no Django.
Run: `python -m bench.c0_server PORT [PING_INTERVAL]`.

Without PING_INTERVAL (as `make bench` runs it) it sends no keepalive pings. With one, it pings
every socket every PING_INTERVAL seconds and closes one whose pong takes over 30 s, as daphne
does by default (20 s, 30 s): H3's idle CPU with the keepalive a bare `websockets` server
gives (`python -m bench.connect_probe --only c0,c0-ping,minga`). Measured, it is no floor:
`websockets` keeps a task per connection for it, and at 10,000 sockets it idled at 19 % of a
core where Minga's daphne idled at 7 % (docs/performance.md, "H3 idle on a slower machine").
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import defaultdict

from websockets.asyncio.server import ServerConnection, broadcast, serve

ROOMS: defaultdict[str, set[ServerConnection]] = defaultdict(set)


async def handler(connection: ServerConnection) -> None:
    room = ROOMS[connection.request.path if connection.request else "/"]
    room.add(connection)
    try:
        async for message in connection:
            broadcast(room, message)
    finally:
        room.discard(connection)


async def main(port: int, ping_interval: float | None = None) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,
        ping_interval=ping_interval,
        ping_timeout=30 if ping_interval else None,
        max_size=2**16,
    ):
        await stop


def _arguments(argv: list[str]) -> tuple[int, float | None]:
    parser = argparse.ArgumentParser(prog="python -m bench.c0_server", description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("ping_interval", type=float, nargs="?", help="seconds; none by default")
    args = parser.parse_args(argv)
    if args.ping_interval is not None and args.ping_interval <= 0:
        parser.error("ping_interval takes a positive number of seconds")
    return args.port, args.ping_interval


if __name__ == "__main__":
    asyncio.run(main(*_arguments(sys.argv[1:])))
