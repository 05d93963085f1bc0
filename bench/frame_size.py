"""What a frame's size costs the load generator: `python -m bench.frame_size`.

The same load generator reads every system's frames (bench.loadgen). Minga's `message.created`
carries the message object of the realtime protocol (ids, author, body, HTML, timestamps):
about 890 bytes around the 200-byte payload that C0 relays bare. This tool asks whether that
size is what the generator pays for: C0's two servers, ten rooms of 100 clients, and at each
`--rates` (messages per room per second) one step with the bare payload, then one with the
payload inside a frame of `message.created`'s shape and size, `--rounds` times in turn. It
prints JSON: per rate and frame, the generator's and the servers' CPU per delivered frame
(docs/performance.md, "A frame's size, and the load generator").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bench import loadgen
from bench.servers import Processes, c0_argv, free_ports

ROOMS = 10
MEMBERS = 100


def created_frame(text: str) -> str:
    """`text` as the body of a `message.created` of docs/realtime-protocol.md, with the fields
    and sizes a benchmark message has in Minga (its HTML holds the same text again)."""
    return json.dumps(
        {
            "type": "message.created",
            "room": "wg1-a",
            "seq": 123456,
            "message": {
                "id": 1234567,
                "seq": 123456,
                "room": "wg1-a",
                "thread": 1234,
                "author": {
                    "id": 123,
                    "name": "Member 123 of the benchmark",
                    "organization": "Ministry of Labour and Social Security",
                    "handle": "member123",
                },
                "body": text,
                "body_html": f"<p>{text}</p>\n",
                "created_at": "2026-11-27T06:00:00.123456+00:00",
                "edited_at": None,
                "deleted": False,
                "hidden": False,
                "reply_to": None,
                "client_id": "0b7c6f1e-2f8a-4c1e-9d1e-7f0f3c2a1b4d",
                "reactions": {},
                "mentions": [],
                "attachments": [],
            },
        },
        separators=(",", ":"),
    )


class CreatedProto(loadgen.C0Proto):
    """C0's protocol, each payload sent inside a `message.created`-sized frame."""

    name = "c0-created"

    def publish_frame(self, room: str, text: str) -> str:
        return created_frame(text)


async def measure(
    rates: list[float], rounds: int, seconds: float, *, members: int = MEMBERS
) -> dict[str, Any]:
    """The steps, in turn: per round, per rate, the bare payload then the `message.created`
    frame, each with a fleet of its own (`members` per room)."""
    out: dict[str, Any] = {
        "frame_bytes": {
            "bare": len(loadgen.payload(1, 1, 1)),
            "created": len(created_frame(loadgen.payload(1, 1, 1))),
        },
        "steps": [],
    }
    with Processes() as procs:
        ports = free_ports(2, 8790)
        servers = [procs.start(f"frame-size-c0-{port}", c0_argv(port)) for port in ports]
        for server, port in zip(servers, ports, strict=True):
            procs.wait_port(server, "c0", port, 10)
        meter = loadgen.Meter([s.pid for s in servers], None)
        step = 0
        for _round in range(rounds):
            for rate in rates:
                for kind, proto in (("bare", loadgen.C0Proto()), ("created", CreatedProto())):
                    fleet = loadgen.Fleet(
                        proto, ports, [f"r{i}" for i in range(ROOMS)], per_port_publishers=True
                    )
                    try:
                        await fleet.open(ROOMS * members, per_room=members)
                        await asyncio.sleep(1)
                        step += 1
                        got = await fleet.step(meter, step=step, rate=rate, seconds=seconds)
                    finally:
                        await fleet.close()
                    frames = got["delivered_per_s"] * got["wall_s"]
                    out["steps"].append(
                        {
                            "rate_per_room": rate,
                            "frame": kind,
                            "delivered_per_s": got["delivered_per_s"],
                            "lost": got["lost"],
                            "loadgen_cpu_pct": got["loadgen_cpu_pct"],
                            "loadgen_us_per_frame": round(
                                got["loadgen_cpu_pct"] / 100 * got["wall_s"] / frames * 1e6, 1
                            )
                            if frames
                            else None,
                            "server_us_per_frame": got["server_us_per_frame"],
                        }
                    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.frame_size", description=__doc__)
    parser.add_argument(
        "--rates",
        default="15,35",
        help="messages per room per second, comma-separated (default 15,35)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the rates (>= 1)")
    parser.add_argument("--seconds", type=float, default=6, help="each step's window (>= 2)")
    args = parser.parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rates takes numbers separated by commas, not {args.rates!r}")
    if not rates or any(r <= 0 for r in rates):
        parser.error("--rates needs at least one rate above 0")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.seconds < 2:
        parser.error("--seconds must be at least 2")
    print(json.dumps(asyncio.run(measure(rates, args.rounds, args.seconds)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
