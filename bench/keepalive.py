"""CPU per keepalive cycle of one socket: the ping daphne sends an idle socket and the pong that
answers it, through autobahn's own path against forums.keepalive's short one, in one run (a
development tool: docs/performance.md, "H3 idle: the keepalive's own path").

`python -m bench.keepalive [--cycles 20000] [--rounds 5]` builds two open autobahn server
protocols on a transport that drops what it is given, both writing through Minga's direct write
and one with `forums.keepalive` installed, and times `--cycles` cycles of each, rounds alternating: the ping
(`_sendAutoPing`, with the pong's timer on autobahn's batched timer, as daphne runs it), then the
client's pong read (`_dataReceived`; the client masks with zeros, so building its frame is one
concatenation, timed alone as `client_frame_us` and counted in both). The garbage collector is
off while a round runs: its cost is the collections that objects set off, seen in the servers
(docs/performance.md, "Pauses"), not a per-call cost. Then the pong timer alone (`call_later`
and its cancel). Prints JSON: the median of the rounds, in microseconds of process time.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

TREE = Path.cwd()
sys.path[:0] = [str(TREE), str(TREE / "platform")]  # the working tree's packages, not the venv's

ZERO_MASK = b"\0\0\0\0"
PONG_TIMEOUT = 30  # daphne's ping_timeout


class Dropped:
    """A transport that takes what it is written and keeps nothing (not Twisted's TCP server,
    so the direct write hands it to `write` as it does when the kernel's buffer is full)."""

    disconnecting = False

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: list[bytes]) -> None:  # noqa: N802 - Twisted's name
        pass

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        pass

    def unregisterProducer(self) -> None:  # noqa: N802
        pass


def protocol(short: bool) -> Any:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    from forums import keepalive, transport

    class Protocol(WebSocketServerProtocol):
        pass

    # Both write as Minga's gateway does (forums.transport's direct write).
    Protocol.sendData = transport._direct_send_data(WebSocketServerProtocol.sendData)
    if short:
        keepalive.install(Protocol)
    factory = WebSocketServerFactory()
    factory.protocol = Protocol
    factory.setProtocolOptions(autoPingTimeout=PONG_TIMEOUT)
    p = factory.buildProtocol(None)
    p.transport = Dropped()
    p.connectionMade()
    if p.openHandshakeTimeoutCall is not None:
        p.openHandshakeTimeoutCall.cancel()
        p.openHandshakeTimeoutCall = None
    p.state = p.STATE_OPEN  # and what autobahn's opening handshake sets with it
    p.websocket_version = 13
    p.inside_message = False
    p.current_frame = None
    return p


def cycles_us(p: Any, cycles: int) -> float:
    """Process-time microseconds per ping sent and pong read."""
    header = bytes((0x8A, 0x80 | p.autoPingSize)) + ZERO_MASK
    ping, read = p._sendAutoPing, p._dataReceived
    started = time.process_time_ns()
    for _ in range(cycles):
        ping()
        read(header + p.autoPingPending)
    elapsed = time.process_time_ns() - started
    if p.autoPingPending is not None or p.autoPingTimeoutCall is not None:
        raise RuntimeError("a pong was not taken as the answer to its ping")
    return elapsed / cycles / 1000


def client_frame_us(size: int, cycles: int) -> float:
    header, payload = bytes((0x8A, 0x80 | size)) + ZERO_MASK, bytes(size)
    started = time.process_time_ns()
    for _ in range(cycles):
        _ = header + payload  # what each cycle spends building the client's pong
    return (time.process_time_ns() - started) / cycles / 1000


def timer_us(p: Any, cycles: int) -> float:
    """The pong timer alone: autobahn's batched `call_later`, then its cancel."""
    call_later, timeout = p.factory._batched_timer.call_later, p.onAutoPingTimeout
    started = time.process_time_ns()
    for _ in range(cycles):
        call_later(PONG_TIMEOUT, timeout).cancel()
    return (time.process_time_ns() - started) / cycles / 1000


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.keepalive", description=__doc__)
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.rounds < 1:
        parser.error("--cycles and --rounds take a positive count")
    import txaio

    txaio.use_twisted()
    shipped, short = protocol(short=False), protocol(short=True)
    rounds: dict[str, list[float]] = {"autobahn_us": [], "short_us": [], "timer_us": []}
    gc.disable()
    try:
        for _ in range(args.rounds):
            rounds["autobahn_us"].append(cycles_us(shipped, args.cycles))
            rounds["short_us"].append(cycles_us(short, args.cycles))
            rounds["timer_us"].append(timer_us(short, args.cycles))
        frame = client_frame_us(short.autoPingSize, args.cycles)
    finally:
        gc.enable()
    medians = {name: round(statistics.median(values), 2) for name, values in rounds.items()}
    result = {
        "cycles": args.cycles,
        "rounds": args.rounds,
        **medians,
        "client_frame_us": round(frame, 3),
        "short_over_autobahn": round(medians["short_us"] / medians["autobahn_us"], 3),
        "each_round": rounds,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
