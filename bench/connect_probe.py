"""Connect+subscribe probe: N clients into one room, before and after a change, one run.

`python -m bench.connect_probe --members 500 --baseline /tmp/base` seeds a benchmark database
once, then serves it with the source tree given as `--baseline` (system `base`, e.g. `git
archive HEAD` unpacked there) and with this tree (`minga`), each as two daphne processes, opens
`--members` clients into one room (64 handshakes in flight, as H3 does), and reports: wall
seconds, connections per second,
server CPU seconds per connection (psutil, both processes: the figure that holds on a shared
machine), RSS per connection over a warmed-up baseline, and the idle server CPU while all are
held. A development tool for docs/performance.md's items 2, 3 and 5; `make bench` is the record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import loadgen, minga_setup
from bench.__main__ import _stop_servers, start_servers
from bench.servers import MINGA_PING_INTERVAL, ROOT, Processes, start_redis

# daphne's default: a ping to every websocket silent for 20 s (bench/b0 keeps it).
DAPHNE_PING_INTERVAL = 20.0
_protos: dict[str, loadgen.Proto] = {"b0": loadgen.TutorialProto(), "c0": loadgen.C0Proto()}
# The servers each system starts (bench.__main__.start_servers's kinds).
_KINDS = {"b0": "b0", "c0": "c0", "c0-ping": "c0"}


async def _probe(
    proto: loadgen.Proto,
    ports: list[int],
    room: str,
    count: int,
    meter: loadgen.Meter,
    *,
    fanout: tuple[list[float], float, loadgen.Meter | None] = ([], 0.0, None),
    idle_seconds: float = 3.0,
    profile: Path | None = None,
    profiler: str = "py-spy",
    phase: str = "idle",
) -> dict[str, Any]:
    warm = loadgen.Fleet(proto, ports, [room])
    await warm.open(len(ports))  # lazy imports loaded before the baseline
    await warm.close()
    await asyncio.sleep(2)
    base = meter.rss_bytes()
    _snapshot(meter)
    fleet = loadgen.Fleet(proto, ports, [room])
    connect_spies = (
        _spy(meter, profile, f"{proto.name}-connect", None, profiler) if phase == "connect" else []
    )
    before = meter.snapshot()
    error = None
    try:
        try:
            seconds = await fleet.open(count, per_room=count, budget=120)
        except RuntimeError as failed:  # some clients failed: still report what it cost
            error, seconds = str(failed), time.perf_counter() - before["at"]
        used = meter.delta(before, meter.snapshot())
        await _stopped(connect_spies)
        await asyncio.sleep(3)  # coalesced presence frames and the heartbeat settle
        rss = meter.rss_bytes()
        _snapshot(meter)
        idle_before, idle_from = meter.snapshot(), time.time()
        spies = _spy(meter, profile, proto.name, idle_seconds, profiler) if phase == "idle" else []
        await asyncio.sleep(idle_seconds)
        idle = meter.delta(idle_before, meter.snapshot())
        for spy in spies:
            await asyncio.to_thread(spy.wait, 60)
        steps = []
        rates, step_seconds, fanout_meter = fanout  # not `seconds`: the connect time, above
        for n, rate in enumerate(rates, start=1):  # the room fan-out, as H1 steps
            result = await fleet.step(
                fanout_meter or meter, step=n, rate=rate, seconds=step_seconds
            )
            steps.append({k: result[k] for k in FANOUT_KEYS})
            print("  fan-out", json.dumps(steps[-1]), flush=True)
    finally:
        await fleet.close()
    return {
        "error": error,
        "connections": count,
        "seconds": round(seconds, 2),
        "connect_per_s": round(count / seconds, 1),
        "server_cpu_ms_per_connection": round(used["server_cpu_seconds"] / count * 1000, 2),
        # The servers, the load generator, Redis, PostgreSQL and the kernel, per connect: on a
        # machine they fill together, the connect rate is the cores over this.
        "machine_cpu_ms_per_connection": round(used["machine_cpu_seconds"] / count * 1000, 2),
        "kib_per_connection": round((rss - base) / count / 1024, 1),
        "idle_server_cpu_pct": round(sum(idle["server_cpu_pct"]), 2),
        "idle_window": [round(idle_from, 1), round(idle_from + idle["wall_s"], 1)],  # epoch s
        "others_cpu_pct": used["others_cpu_pct"],
        "loadgen_cpu_pct": used["loadgen_cpu_pct"],  # while connecting: is it the bound?
        "redis_cpu_pct": used["redis_cpu_pct"],
        "presence_frames": fleet.presence_frames,
        "handshake_retries": fleet.handshake_retries,
        "fanout": steps,
    }


FANOUT_KEYS = (
    "rate_per_room",
    "delivered_per_s",
    "lost",
    "duplicates",
    "p50_ms",
    "p99_ms",
    "server_us_per_frame",
    "server_cpu_pct",
    "others_cpu_pct",
)


def _spy(
    meter: loadgen.Meter,
    profile: Path | None,
    name: str,
    seconds: float | None,
    profiler: str = "py-spy",
) -> list[subprocess.Popen[bytes]]:
    """With --profile, record each server into DIR/<name>-<pid>.<ext> for `seconds`, or until
    `_stopped` when None: py-spy (every thread's Python stack while on the CPU, 250 samples/s,
    raw folded stacks) or perf (the CPU clock at 499 Hz with call graphs: native and kernel time
    too, which py-spy does not see; `perf report -i FILE --no-children --sort dso,sym`)."""
    if profile is None:
        return []
    profile.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))

    def argv(pid: int) -> list[str]:
        if profiler == "perf":
            out = profile / f"{name}-{pid}.perf"
            window = ["--", "sleep", str(int(seconds))] if seconds is not None else []
            return ["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o", str(out), *window]
        out, rate = profile / f"{name}-{pid}.txt", ["-r", "250", "--gil", "--format", "raw"]
        window = ["-d", str(int(seconds))] if seconds is not None else []
        return [spy, "record", *window, *rate, "-p", str(pid), "-o", str(out)]

    return [
        subprocess.Popen(argv(server.pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for server in meter.servers
    ]


async def _stopped(spies: list[subprocess.Popen[bytes]]) -> None:
    """Stop profilers started without a duration: both write their file on SIGINT."""
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        await asyncio.to_thread(spy.wait, 60)


def _snapshot(meter: loadgen.Meter) -> None:
    """With MEMTRACE_DIR set, ask each server for a tracemalloc snapshot (SIGUSR1: the servers
    run with bench/memtrace/sitecustomize.py; docs/performance.md, "H3: where a connection's
    bytes go"; `bench.memtrace_report` reads them)."""
    if not os.environ.get("MEMTRACE_DIR"):
        return
    for server in meter.servers:
        os.kill(server.pid, signal.SIGUSR1)
    time.sleep(5)  # a snapshot of a big heap takes a while


def _server_env(env: dict[str, str], tree: str | None) -> dict[str, str]:
    """The servers' environment, to run from `tree` (default: this one)."""
    env = dict(env)
    if tree is not None:
        # `python -m` puts the working directory first on the path: the servers run in the
        # baseline tree, and its `platform` (minga) goes before ours. A PYTHONPATH of the
        # caller's (a hook such as bench/gccensus, by absolute path) stays after them, so both
        # trees' servers load it.
        inherited = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, f"{tree}/platform", inherited) if p)
    if os.environ.get("MEMTRACE_DIR"):  # the servers answer SIGUSR1 (_snapshot)
        here = tree or str(ROOT)
        env["PYTHONPATH"] = f"{here}:{here}/platform:{ROOT / 'bench' / 'memtrace'}"
    return env


def _checked(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[list[float], list[str]]:
    """The --rates and the systems to run, or the parser's error."""
    rates = [float(r) for r in args.rates.split(",") if r]
    systems = [s for s in args.only.split(",") if s]
    if args.baseline and "base" not in systems:
        systems = ["base", *systems]
    if "base" in systems and not args.baseline:
        parser.error("--only base needs --baseline TREE")
    known = {"base", "minga", "b0", "c0", "c0-ping"}
    if not set(systems) <= known or args.members < 10 or args.members % 10:
        parser.error("--only takes minga, b0, c0, c0-ping and base; --members a multiple of 10")
    if rates and set(systems) & {"b0", "c0", "c0-ping"}:
        parser.error("--rates posts through Minga's services: not with b0, c0 or c0-ping")
    if args.ping_interval < 1:
        parser.error("--ping-interval takes a whole number of seconds, 1 or more")
    return rates, systems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.connect_probe")
    parser.add_argument("--members", type=int, default=500, help="clients (and members), >= 10")
    parser.add_argument(
        "--only",
        default="minga",
        help="minga (this tree), b0 (the tutorial's consumer, bench/b0), c0 (bench/c0_server, "
        "no keepalive) and c0-ping (the same with daphne's keepalive interval: a ping every 20 "
        "s), comma-separated",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=3.0,
        help="how long the held clients stay idle while the servers' CPU is read (31 covers a "
        f"whole keepalive cycle: Minga's daphne pings a silent socket every "
        f"{MINGA_PING_INTERVAL} s, the peers' every {DAPHNE_PING_INTERVAL:g} s)",
    )
    parser.add_argument(
        "--ping-interval",
        type=int,
        default=MINGA_PING_INTERVAL,
        help=f"seconds of silence before Minga's daphne (and base's) pings a socket (default "
        f"{MINGA_PING_INTERVAL}, as deployed; {DAPHNE_PING_INTERVAL:g} is daphne's own default)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile the servers over the idle window into DIR (see --profiler)",
    )
    parser.add_argument("--profiler", choices=["py-spy", "perf"], default="py-spy")
    parser.add_argument(
        "--profile-phase",
        choices=["idle", "connect"],
        default="idle",
        help="what --profile records: the idle window, or the clients connecting",
    )
    parser.add_argument("--redis-port", type=int, default=6395)
    parser.add_argument(
        "--baseline",
        help="a source tree (e.g. `git archive HEAD` unpacked) served as system `base`, on the "
        "same database: first, or where --only names `base` (alternate them: "
        "--only base,minga,base,minga): before and after a change in one run",
    )
    parser.add_argument(
        "--rates",
        default="",
        help="then post into the room at these messages/s, comma-separated (H1 steps through "
        "the services, from bench.minga_poster): server CPU per delivered frame, loss, p99",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per --rates step")
    parser.add_argument(
        "--auth",
        choices=["token", "session"],
        default="token",
        help="how Minga's clients authenticate: an API token (a program) or a signed-in "
        "session's cookie with the page's Origin (a browser)",
    )

    args = parser.parse_args(argv)
    rates, systems = _checked(parser, args)
    out: dict[str, Any] = {}
    with Processes() as procs:
        port, redis = start_redis(procs, args.redis_port)
        try:
            data = minga_setup.prepare(args.members, port)
            proto = loadgen.MingaProto(data.tokens, data.threads)
            if args.auth == "session":
                proto = loadgen.MingaSessionProto(
                    minga_setup.sessions(data, args.members), data.threads
                )
            for system in systems:
                tree = str(args.baseline) if system == "base" else None
                env = _server_env(data.env, tree)
                kind = _KINDS.get(system, "minga")  # base runs Minga from the baseline tree
                ping = DAPHNE_PING_INTERVAL if system == "c0-ping" else None
                ports, pids = start_servers(
                    procs, kind, port, env, tree, c0_ping=ping, minga_ping=args.ping_interval
                )
                poster = None
                try:
                    meter = loadgen.Meter(pids, redis.pid)
                    fanout_meter = None
                    if rates:
                        poster = minga_setup.Poster(
                            procs, replace(data, env=env), f"{system}-poster"
                        )
                        proto.poster = poster
                        fanout_meter = loadgen.Meter([*pids, poster.pid], redis.pid)
                    out[system] = asyncio.run(
                        _probe(
                            _protos.get(kind, proto),
                            ports,
                            data.hold_room if kind == "minga" else "hold",
                            args.members,
                            meter,
                            fanout=(rates, args.seconds, fanout_meter),
                            idle_seconds=args.idle_seconds,
                            profile=args.profile,
                            profiler=args.profiler,
                            phase=args.profile_phase,
                        )
                    )
                    out[system]["server_pids"] = pids  # their snapshots' names
                except RuntimeError as error:
                    out[system] = {"error": str(error)}
                finally:
                    if poster is not None:
                        procs.stop(poster.proc)
                        proto.poster = None
                    _stop_servers(procs, kind)
                print(system, json.dumps(out[system]), flush=True)
        finally:
            minga_setup.drop_database()
    return 0 if all(not v.get("error") for v in out.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
