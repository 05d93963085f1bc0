"""`python -m bench [--smoke] [--only minga,b0,b1,c0,h5,h4,c0t,c0d]`: run every benchmark, print the table.

Order: a private Redis (never the shared 6379), the raw ceilings (redis-benchmark PUBLISH, a
raw PostgreSQL INSERT of 10,000 inbox-shaped rows), then C0, B0, B1 and Minga, each with two
server processes (C0: one per core), each measured for H3 (connections), H1 (fan-out, one room
and ten rooms) and H2 (fixed loads at 25 % and 50 % of C0's H1 rate); finally H6 (Redis
restarted under load) on Minga; then C0's H1 once more (its second reading: the report takes
the higher); then H5 (HTTP p99 of two pages under H1 load, Minga and B0's tutorial page;
Minga with its pages on a process of their own; Minga's pages while C0 carries the load, H5's
floor; bench/h5.py); then H4 (one announcement to a big working group, Minga and B0's
textbook loop, bench/h4.py); last C0t and C0d (C0's servers behind each message stored in
Minga's database first, bench/c0d_poster.py: by a post's transaction without its rules, and by
one durable INSERT; H1's ten rooms, the ceilings when every message is stored first). Every
process started here is stopped before exit.

Exit status: 0 when every benchmark ran and no message was lost; 1 otherwise. Timings never
make it fail.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from websockets.exceptions import WebSocketException

from bench import h4, h5, loadgen, minga_poster, minga_setup, report
from bench.servers import (
    MINGA_PING_INTERVAL,
    ROOT,
    BenchError,
    Processes,
    c0_argv,
    daphne_argv,
    free_ports,
    minga_daphne_argv,
    start_redis,
)

RESULTS = ROOT / "bench" / "results"

FULL: dict[str, Any] = {
    "members": 1000,
    "frames_grid": [5_000, 10_000, 20_000, 40_000, 80_000, 160_000],
    "seconds": 4.0,
    "drain_max": 15.0,
    # Steps that bisect between the ramp's last pass and its first failure (bench.loadgen.fanout):
    # three narrow a doubling step to an eighth of it (two, until stop 29: a quarter, and the
    # ten-room verdict against the peers moved with the grid; docs/performance.md).
    "refine": 3,
    "ten_rooms": True,
    "fixed_shares": [0.25, 0.5],
    "hold_sizes": [1000, 5000, 10000],
    "connect_rate_at": 5000,
    "h6_messages": 60,
    "h6_outage_s": 3.0,
    "connect_budget": 75.0,
    "settle": 2.0,
    # Idle CPU is measured over a whole keepalive cycle: daphne pings each silent socket every
    # 30 s in Minga (ADR 0019; 20 s in the peers) and checks every socket's timeouts every few
    # seconds, and a 3 s window caught a varying share of that work (3.0-5.7 % at 10,000 in
    # three runs, 8.8 % over 20 s at 8,000). 21 s until Minga's interval went from 20 to 30.
    "idle_seconds": 31.0,
    "h4_members": 10_000,
    "h4_online": 2_000,
    "h4_budget": 240.0,
    "h4_drain": 60.0,
    "h5_members": 1000,
    # 300 requests per page and phase (200 until stop 29): a p99 of 200 is the second slowest.
    "h5_seconds": 30.0,
    "h5_rps": 20.0,
    # H1 rate under H5 when C0 did not run: half of C0's 71,847 frames/s (full run, 2026-11-25).
    "h5_h1_rate": 35_900,
    # H5 again with Minga's pages served by a process of their own (bench/h5.py, "minga-pages").
    "h5_split": True,
    # Its niceness (0: as the others; `--h5-pages-nice`, "H5: the pages apart from the sockets").
    "h5_pages_nice": 0,
    # H5's floor: Minga's pages while C0 carries the same H1 load (bench/h5.py, "c0").
    "h5_floor": True,
    # C0's H1 read again after the other systems (`_run_c0_again`): a ceiling read at both ends
    # of the run, the speed probe and the host's steal beside each; the report takes the higher.
    "c0_again": True,
    # The threads Minga's posts come from (bench.minga_poster, "The poster's threads").
    "poster_threads": minga_poster.DEFAULT_THREADS,
}
SMOKE: dict[str, Any] = {
    "members": 50,
    "frames_grid": [500],
    "seconds": 1.0,
    "refine": 0,
    "ten_rooms": False,
    "fixed_shares": [],
    "hold_sizes": [50],
    "connect_rate_at": 50,
    "drain_max": 10.0,
    "h6_messages": 20,
    "h6_outage_s": 1.0,
    "connect_budget": 30.0,
    "settle": 1.0,
    "idle_seconds": 1.0,
    "h4_members": 200,
    "h4_online": 50,
    "h4_budget": 60.0,
    "h4_drain": 20.0,
    "h5_members": 50,
    "h5_seconds": 1.0,
    "h5_rps": 20.0,
    "h5_h1_rate": 250,
    "h5_split": True,
    "h5_pages_nice": 0,
    "h5_floor": True,
    "c0_again": True,
    "poster_threads": minga_poster.DEFAULT_THREADS,
}
ALL = ("c0", "b0", "b1", "minga", "h5", "h4", "c0t", "c0d")
DEFAULT = ("c0", "b0", "b1", "minga", "h5", "h4", "c0t", "c0d")
# Run after the others, the stored ceilings by `_run_stored`, not by `run_system`: they write
# into Minga's database.
LAST = {"h5", "h4", "c0t", "c0d"}
# The ceilings that store each message before C0 relays it (bench.c0d_poster), in run order,
# with the poster's own arguments: C0t first, whose seqs come from the rooms' rows.
STORED = {"c0t": ["--transaction"], "c0d": []}
# Members seeded for Minga when only H4 runs (H4 seeds its own group; the rooms need a few).
H4_ONLY_MEMBERS = 10


_STARTED = time.monotonic()


def log(text: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {text}" if text else "", flush=True)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in (
        "django",
        "channels",
        "channels_redis",
        "daphne",
        "websockets",
        "redis",
        "twisted",
    ):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "redis": redis_version,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def speed_probe(loops: int = 300_000, repeats: int = 5) -> float:
    """The machine's speed now: milliseconds of the fastest of `repeats` runs of a fixed
    pure-Python loop (about 11 ms on the AMD EPYC VM when it is quiet). Read before each
    system runs and at the end: a VM's speed moved by half within one run (docs/performance.md,
    "Latest results (stop 20)"), and a ratio between systems read in different phases carries
    that drift; the report prints the readings beside the table."""
    best = float("inf")
    for _ in range(repeats):
        began, total = time.perf_counter(), 0
        for i in range(loops):
            total += i * i
        best = min(best, time.perf_counter() - began)
    return round(best * 1000, 2)


def cpu_clock() -> dict[str, float]:
    """The machine's CPU seconds so far: all of them, and those the hypervisor gave to other
    guests (`steal`, 0 where the kernel does not count it). Read with each speed probe: a
    phase where the host took time shows it here, whatever the probe's loop saw."""
    times = psutil.cpu_times()
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # inside user
    return {
        "total_s": round(sum(times) - guest, 2),
        "steal_s": round(getattr(times, "steal", 0.0), 2),
    }


def _probe_speed(results: dict[str, Any], phase: str) -> None:
    results["speed_ms"][phase] = speed_probe()
    results["cpu_clock"][phase] = cpu_clock()
    log(f"{phase}: machine speed probe {results['speed_ms'][phase]} ms")


# --- Ceilings that need no websocket ---------------------------------------------------------


def redis_publish_ceiling(port: int, requests: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            *("redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(requests)),
            *("-c", "50", "-q", "PUBLISH", "bench", "x" * 200),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # "PUBLISH bench xxx: 61349.69 requests per second, p50=0.407 msec"
    line = next(
        line for line in out.replace("\r", "\n").splitlines() if "requests per second" in line
    )
    rps = float(line.split(": ", 1)[1].split(" requests", 1)[0])
    return {"publish_per_s": rps, "raw": line.strip()[-120:]}


# --- One system ---------------------------------------------------------------------------------


def _proto_for(system: str, minga: minga_setup.MingaData | None) -> loadgen.Proto:
    if system == "c0":
        return loadgen.C0Proto()
    if system in {"b0", "b1"}:
        return loadgen.TutorialProto()
    assert minga is not None
    return loadgen.MingaProto(minga.tokens, minga.threads)


def start_servers(
    procs: Processes,
    system: str,
    redis_port: int,
    minga_env: dict[str, str] | None,
    tree: str | None = None,
    *,
    c0_ping: float | None = None,
    minga_ping: int = MINGA_PING_INTERVAL,
) -> tuple[list[int], list[int]]:
    """Two server processes of `system`; Minga's from the source tree `tree` (default: this one),
    pinging silent sockets every `minga_ping` seconds (as deployed); C0's with keepalive pings
    every `c0_ping` seconds when given (none in `make bench`)."""
    first = {"c0": 8101, "b0": 8111, "b1": 8121, "minga": 8131}[system]
    ports = free_ports(2, first)
    pids: list[int] = []
    started = []
    for index, port in enumerate(ports):
        name = f"{system}-{index}"
        if system == "c0":
            argv, env = c0_argv(port, c0_ping), {}
        elif system in {"b0", "b1"}:
            argv = daphne_argv("bench.b0.asgi:application", port)
            env = {
                "DJANGO_SETTINGS_MODULE": "bench.b0.settings",
                "BENCH_LAYER": "core" if system == "b0" else "pubsub",
                "BENCH_REDIS_PORT": str(redis_port),
            }
        else:
            argv, env = minga_daphne_argv(port, minga_ping), dict(minga_env or {})
        started.append((procs.start(name, argv, env, cwd=tree), name, port))
    for proc, name, port in started:  # both start at once, then both must listen
        procs.wait_port(proc, name, port, timeout=60)
        pids.append(proc.pid)
    return ports, pids


def attempt(out: dict[str, Any], key: str, run: Callable[[], dict[str, Any]]) -> None:
    """Run one scenario; a scenario that cannot run is recorded and the next one still runs."""
    try:
        out[key] = run()
    except (BenchError, RuntimeError, OSError, TimeoutError, WebSocketException) as error:
        out[key] = {"error": f"{type(error).__name__}: {error}"}
        log(f"  {key} could not run: {error}")


def run_system(
    *,
    procs: Processes,
    system: str,
    cfg: dict[str, Any],
    redis: tuple[int, int],
    c0_best: float | None,
    minga: minga_setup.MingaData | None,
    again: bool = False,
) -> dict[str, Any]:
    """H3, then H1 (one room with H2's fixed loads, then ten rooms) on two fresh processes of
    `system`. `again`: H1 alone, without the fixed loads (C0's second reading, after Minga)."""
    redis_port, redis_pid = redis
    ports, pids = start_servers(procs, system, redis_port, minga.env if minga else None)
    meter = loadgen.Meter(pids, redis_pid)
    proto = _proto_for(system, minga)
    rooms_1 = minga.rooms[:1] if minga else ["r0"]
    rooms_10 = minga.rooms[:10] if minga else [f"r{i}" for i in range(10)]
    hold_room = minga.hold_room if minga else "hold"
    out: dict[str, Any] = {"ports": ports}
    members = cfg["members"]

    if not again:
        log(f"{system}: H3 connections {cfg['hold_sizes']}")
        attempt(
            out,
            "h3",
            lambda: asyncio.run(
                loadgen.hold(
                    proto,
                    ports,
                    hold_room,
                    cfg["hold_sizes"],
                    meter=meter,
                    settle=cfg["settle"],
                    idle_seconds=cfg["idle_seconds"],
                    budget=cfg["connect_budget"],
                    log=log,
                )
            ),
        )

    def fixed_for(best: float | None) -> list[float]:
        base = c0_best if c0_best is not None else best
        if base is None:
            return []
        return [round(base * share / members, 2) for share in cfg["fixed_shares"]]

    poster = None
    h1_proto, h1_meter = proto, meter
    if minga is not None:
        # H1 posts through the services from a separate process (the API's path), so the figure
        # is the room fan-out; its CPU counts as server CPU. Then the ten-room clients ramp
        # again posting through the gateway's message.send (`send_steps`).
        poster = minga_setup.Poster(procs, minga, f"{system}-poster", threads=cfg["poster_threads"])
        h1_proto = loadgen.MingaProto(minga.tokens, minga.threads)
        h1_proto.poster = poster
        h1_meter = loadgen.Meter([*pids, poster.pid], redis_pid)

    log(f"{system}: H1 1 room x {members}")
    rates = [frames / members for frames in cfg["frames_grid"]]
    attempt(
        out,
        "h1_1room",
        lambda: asyncio.run(
            _fanout(
                h1_proto,
                ports,
                rooms_1,
                members,
                rates,
                cfg,
                h1_meter,
                system,
                None if again else fixed_for,
                send_ramp=minga is not None and not cfg["ten_rooms"],
            )
        ),
    )
    if cfg["ten_rooms"]:
        log(f"{system}: H1 10 rooms x {members // 10}")
        attempt(
            out,
            "h1_10rooms",
            lambda: asyncio.run(
                _fanout(
                    h1_proto,
                    ports,
                    rooms_10,
                    members,
                    rates,
                    cfg,
                    h1_meter,
                    system,
                    None,
                    send_ramp=minga is not None,
                )
            ),
        )
    return out


async def _fanout(  # noqa: PLR0917 - the scenario's parameters, in one place
    proto: loadgen.Proto,
    ports: list[int],
    rooms: list[str],
    members: int,
    rates: list[float],
    cfg: dict[str, Any],
    meter: loadgen.Meter,
    system: str,
    fixed_for: Callable[[float | None], list[float]] | None,
    *,
    send_ramp: bool = False,
) -> dict[str, Any]:
    """One H1 scenario (rates are per room: frames/s = rate x members, whatever the rooms).

    With `send_ramp` (Minga), the same clients then ramp again posting through message.send."""
    return await loadgen.fanout(
        proto,
        ports,
        rooms,
        members,
        rates,
        seconds=cfg["seconds"],
        meter=meter,
        per_port_publishers=system == "c0",
        refine=cfg["refine"],
        drain_max=cfg["drain_max"],
        send_ramp=send_ramp,
        fixed_rates=fixed_for or (),
        budget=cfg["connect_budget"],
        log=log,
    )


# --- Main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0912, PLR0915 - the run, in order
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small loads, under two minutes")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help="what to run: c0,b0,b1,minga, h5 and h4 (H5, H4: Minga and B0), c0t and c0d (C0 "
        "behind a post's transaction, and behind one durable write, in Minga's database); the "
        "default: all",
    )
    parser.add_argument(
        "--redis-port", type=int, default=6390, help="private Redis port (not 6379)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--members", type=int, help="clients per H1 scenario (full: 1000); a multiple of 10"
    )
    parser.add_argument(
        "--grid", help="H1 ramp in delivered frames/s, comma-separated (full: 5000,...,160000)"
    )
    parser.add_argument(
        "--h5-rate",
        type=int,
        help="H1 load under H5 in frames/s (default: 50 %% of C0's H1 rate in the run)",
    )
    parser.add_argument(
        "--poster-threads",
        type=int,
        help=f"threads Minga's posts come from (default {minga_poster.DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--h5-split",
        action=argparse.BooleanOptionalAction,
        help="H5 again with Minga's pages on a process of their own (default: yes)",
    )
    parser.add_argument(
        "--h5-pages-nice",
        type=int,
        help="the niceness of H5's page process, -20 to 19 (default 0; below 0 needs root)",
    )
    parser.add_argument(
        "--h5-floor",
        action=argparse.BooleanOptionalAction,
        help="H5 again with C0 carrying the H1 load beside Minga's pages: H5's floor (default: yes)",
    )
    parser.add_argument(
        "--transport",
        choices=minga_setup.TRANSPORTS,
        default="unix",
        help="how Minga's processes reach Redis and PostgreSQL: their unix sockets (default; "
        "TCP where either has none) or TCP on 127.0.0.1",
    )
    parser.add_argument(
        "--c0-again",
        action=argparse.BooleanOptionalAction,
        help="read C0's H1 again after the other systems (default: yes)",
    )
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout, `timeout`) unwinds like Ctrl-C: every started process is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(ALL))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {', '.join(ALL)}")
    cfg = dict(SMOKE if args.smoke else FULL)
    if args.members:
        if args.members < 10 or args.members % 10:
            parser.error("--members must be a multiple of 10, at least 10")
        cfg["members"] = args.members
    if args.grid:
        try:
            cfg["frames_grid"] = sorted(int(v) for v in args.grid.split(","))
        except ValueError:
            parser.error("--grid takes whole numbers separated by commas, e.g. 500,1000,2000")
    if args.h5_rate is not None:
        if args.h5_rate <= 0:
            parser.error("--h5-rate must be a positive number of frames/s")
        cfg["h5_h1_rate"] = args.h5_rate
    if args.poster_threads is not None:
        if not 1 <= args.poster_threads <= minga_poster.MAX_THREADS:
            parser.error(f"--poster-threads must be between 1 and {minga_poster.MAX_THREADS}")
        cfg["poster_threads"] = args.poster_threads
    if args.h5_split is not None:
        cfg["h5_split"] = args.h5_split
    if args.c0_again is not None:
        cfg["c0_again"] = args.c0_again
    if args.h5_floor is not None:
        cfg["h5_floor"] = args.h5_floor
    if args.h5_pages_nice is not None:
        if not -20 <= args.h5_pages_nice <= 19:
            parser.error("--h5-pages-nice must be between -20 and 19")
        if not cfg["h5_split"]:
            parser.error("--h5-pages-nice sets the pages-apart side's process: drop --no-h5-split")
        cfg["h5_pages_nice"] = args.h5_pages_nice
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "command": "python -m bench"
        + (" --smoke" if args.smoke else "")
        + (f" --members {args.members}" if args.members else "")
        + (f" --grid {args.grid}" if args.grid else "")
        + (f" --h5-rate {args.h5_rate}" if args.h5_rate else "")
        + (f" --poster-threads {args.poster_threads}" if args.poster_threads else "")
        + ("" if args.h5_split is None else " --h5-split" if args.h5_split else " --no-h5-split")
        + ("" if args.c0_again is None else " --c0-again" if args.c0_again else " --no-c0-again")
        + ("" if args.h5_floor is None else " --h5-floor" if args.h5_floor else " --no-h5-floor")
        + (f" --h5-pages-nice {args.h5_pages_nice}" if args.h5_pages_nice is not None else "")
        + (f" --only {args.only}" if args.only != ",".join(DEFAULT) else ""),
        "machine": machine(),
        "config": cfg,
        "systems": {},
        "ceilings": {},
        "speed_ms": {},
        "cpu_clock": {},
        "problems": [],
    }
    with Processes() as procs:
        redis_port, redis = start_redis(procs, args.redis_port)
        redis_info = (redis_port, redis.pid)
        try:
            results["ceilings"]["redis_publish"] = redis_publish_ceiling(
                redis_port, 20_000 if args.smoke else 200_000
            )
            results["ceilings"]["pg_insert_10k"] = minga_setup.raw_insert_ceiling(10_000)
        except (BenchError, subprocess.SubprocessError, OSError, StopIteration) as error:
            results["problems"].append(f"ceilings: {error}")
        log(f"ceilings: {results['ceilings']}")
        minga: minga_setup.MingaData | None = None
        c0_best: float | None = None
        wants_minga = any(s.startswith("minga") or s in LAST for s in systems)
        minga_members = (
            cfg["members"]
            if "minga" in systems
            else cfg["h5_members"]
            if "h5" in systems
            else H4_ONLY_MEMBERS
        )
        # Smoke: seed Minga's database while the peers run (their timings do not matter there).
        seeding = ThreadPoolExecutor(1) if wants_minga else None
        seeded = (
            seeding.submit(minga_setup.prepare, minga_members, redis_port, args.transport)
            if seeding is not None and args.smoke
            else None
        )

        def seeded_minga() -> minga_setup.MingaData:
            """Minga's benchmark database, made and seeded when a phase first needs it."""
            nonlocal minga
            if minga is None:
                log("minga: creating and seeding the benchmark database")
                minga = (
                    seeded.result(timeout=900)
                    if seeded is not None
                    else minga_setup.prepare(minga_members, redis_port, args.transport)
                )
                results["minga_transport"] = minga.transport
                log(f"minga: Redis and PostgreSQL over {minga.transport}")
            return minga

        try:
            for system in [s for s in ALL if s in systems and s not in LAST]:
                try:
                    if system.startswith("minga"):
                        seeded_minga()
                    _probe_speed(results, system)
                    results["systems"][system] = run_system(
                        procs=procs,
                        system=system,
                        cfg=cfg,
                        redis=redis_info,
                        c0_best=c0_best,
                        minga=minga,
                    )
                    if system == "minga":
                        log("minga: H6 Redis restart under load")
                        results["systems"]["minga"]["h6"] = minga_setup.outage(
                            procs=procs,
                            redis=redis_info,
                            cfg=cfg,
                            ports=results["systems"]["minga"]["ports"],
                            data=minga,
                            log=log,
                        )
                        # H6 restarted Redis: later systems measure the new process.
                        redis_info = (redis_port, procs.pid_of("redis") or redis_info[1])
                except (BenchError, RuntimeError, OSError, TimeoutError) as error:
                    _could_not_run(results, system, error)
                finally:
                    _stop_servers(procs, system)
                if system == "c0":
                    best = results["systems"]["c0"].get("h1_1room", {}).get("best")
                    c0_best = best["delivered_per_s"] if best else None
            if cfg["c0_again"] and "c0" in systems and len(results["systems"]) > 1:
                _run_c0_again(procs, cfg, redis_info, results)
            if "h5" in systems:
                try:
                    _probe_speed(results, "h5")
                    results["h5"] = h5.run(
                        procs=procs,
                        cfg=cfg,
                        redis_port=redis_info[0],
                        data=seeded_minga(),
                        c0_best=None if args.h5_rate else c0_best,
                        start_servers=start_servers,
                        stop_servers=_stop_servers,
                        log=log,
                    )
                except (BenchError, RuntimeError, OSError, TimeoutError) as error:
                    results["h5"] = {"error": f"{type(error).__name__}: {error}"}
                    log(f"h5: could not run: {error}")
            if "h4" in systems:
                try:
                    _probe_speed(results, "h4")
                    results["h4"] = h4.run(
                        procs=procs,
                        cfg=cfg,
                        redis_port=redis_info[0],
                        data=seeded_minga(),
                        start_servers=start_servers,
                        stop_servers=_stop_servers,
                        log=log,
                    )
                except (BenchError, RuntimeError, OSError, TimeoutError) as error:
                    results["h4"] = {"error": f"{type(error).__name__}: {error}"}
                    log(f"h4: could not run: {error}")
            for stored in STORED:
                if stored in systems:
                    _run_stored(procs, cfg, redis_info, results, seeded_minga, system=stored)
        finally:
            if seeding is not None:
                seeding.shutdown(wait=True)
                minga_setup.drop_database()
    _probe_speed(results, "end")
    collect_problems(results)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["table"] = report.as_json(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    log("")
    log(report.table(results))
    log("")
    log(f"{results['mode']} run took {results['seconds']} s; JSON: {args.out}")
    for problem in results["problems"]:
        log(f"PROBLEM: {problem}")
    return 1 if results["problems"] else 0


def _could_not_run(results: dict[str, Any], system: str, error: Exception) -> None:
    """A system's phase that could not run: its error in the results, a problem of the run."""
    results["systems"][system] = {"error": f"{type(error).__name__}: {error}"}
    results["problems"].append(f"{system}: {error}")
    log(f"{system}: could not run: {error}")


def _run_c0_again(
    procs: Processes, cfg: dict[str, Any], redis: tuple[int, int], results: dict[str, Any]
) -> None:
    """C0's H1 once more, after the systems it bounds: the ceiling read at both ends of the run,
    whatever the machine went through between (docs/performance.md, "C0 read twice, and the
    ramp's bisection"). The report takes the higher reading as the ceiling."""
    _probe_speed(results, "c0-again")
    try:
        results["systems"]["c0-again"] = run_system(
            procs=procs, system="c0", cfg=cfg, redis=redis, c0_best=None, minga=None, again=True
        )
    except (BenchError, RuntimeError, OSError, TimeoutError) as error:
        _could_not_run(results, "c0-again", error)
    finally:
        _stop_servers(procs, "c0")


def _run_stored(
    procs: Processes,
    cfg: dict[str, Any],
    redis: tuple[int, int],
    results: dict[str, Any],
    seeded_minga: Callable[[], minga_setup.MingaData],
    *,
    system: str,
) -> None:
    """C0d or C0t (`system`): C0's servers fed by bench.c0d_poster, which writes each message
    into Minga's `forums_message` before it sends it: C0d by one raw INSERT, committed; C0t in
    a post's transaction without its rules (the room's seq, the thread's count, the insert).
    H1's ten rooms (one in smoke): the ceilings of a fan-out where every message is stored
    first, for the ten-room rows ("H1 ten rooms: a durable ceiling", "a post's transaction").
    Last in the run, so their rows change no other phase's database; the poster's CPU counts as
    server CPU, as Minga's poster's does."""
    count = 10 if cfg["ten_rooms"] else 1
    scenario = "h1_10rooms" if cfg["ten_rooms"] else "h1_1room"
    members = cfg["members"]
    try:
        minga = seeded_minga()  # before the speed probe: a --only c0d run seeds here
        _probe_speed(results, system)
        log(f"{system}: H1 {count} room(s) x {members // count}, each message stored first")
        ports, pids = start_servers(procs, "c0", redis[0], None)
        poster = minga_setup.Poster(
            procs,
            minga,
            f"{system}-poster",
            argv=[
                sys.executable,
                "-m",
                "bench.c0d_poster",
                "--ports",
                ",".join(map(str, ports)),
                "--rooms",
                ",".join(minga.rooms[:count]),
                *STORED[system],
            ],
        )
        proto = loadgen.C0Proto()
        proto.name, proto.poster = system, poster
        meter = loadgen.Meter([*pids, poster.pid], redis[1])
        rates = [frames / members for frames in cfg["frames_grid"]]
        rooms = [f"r{i}" for i in range(count)]
        out: dict[str, Any] = {"ports": ports}
        attempt(
            out,
            scenario,
            lambda: asyncio.run(
                _fanout(proto, ports, rooms, members, rates, cfg, meter, system, None)
            ),
        )
        results["systems"][system] = out
    except (BenchError, RuntimeError, OSError, TimeoutError) as error:
        _could_not_run(results, system, error)
    finally:
        _stop_servers(procs, system)
        _stop_servers(procs, "c0")


def collect_problems(results: dict[str, Any]) -> None:
    """A scenario that could not run, or a loss by Minga or C0, is a problem (exit status 1)."""
    for system, data in results["systems"].items():
        for scenario, value in data.items() if isinstance(data, dict) else []:
            if isinstance(value, dict) and "error" in value:
                where = "peer_errors" if system in {"b0", "b1"} else "problems"
                results.setdefault(where, []).append(f"{system} {scenario}: {value['error']}")
        for scenario in ("h1_1room", "h1_10rooms"):
            lost = data.get(scenario, {}).get("lost_total", 0) if isinstance(data, dict) else 0
            if lost and system in {"b0", "b1"}:
                # The peers' loss past their limit is a finding (the ramp stops there), not a
                # failure of the benchmark: channels_redis drops over capacity by design.
                results.setdefault("peer_losses", []).append(f"{system} {scenario}: {lost}")
            elif lost:
                results["problems"].append(f"{system} {scenario}: {lost} frames lost")
        h6 = data.get("h6") if isinstance(data, dict) else None
        if isinstance(h6, dict) and h6.get("lost"):
            results["problems"].append(f"{system} h6: {h6['lost']} messages lost after catch-up")
    _h4_problems(results)
    results["problems"] += h5.problems(results.get("h5"))


def _h4_problems(results: dict[str, Any]) -> None:
    """H4 that cannot run, or a push Minga lost or duplicated; B0's losses are findings."""
    h4_data = results.get("h4")
    if isinstance(h4_data, dict) and "error" in h4_data:
        results["problems"].append(f"h4: {h4_data['error']}")
    for system, side in h4_data.items() if isinstance(h4_data, dict) else []:
        if not isinstance(side, dict):
            continue
        if "error" in side:
            results["problems"].append(f"h4 {system}: {side['error']}")
        elif (side.get("lost") or side.get("duplicates")) and system == "b0":
            # As in H1: the peer's loss is a finding, not a failure of the benchmark.
            results.setdefault("peer_losses", []).append(
                f"b0 h4: {side.get('lost')} pushes lost, {side.get('duplicates')} duplicated"
            )
        elif side.get("lost") or side.get("duplicates"):
            results["problems"].append(
                f"h4 {system}: {side.get('lost')} pushes lost, {side.get('duplicates')} duplicated"
            )


def _stop_servers(procs: Processes, system: str) -> None:
    for name, proc in list(procs.procs):
        if name.startswith(f"{system}-"):
            procs.stop(proc)


if __name__ == "__main__":
    sys.exit(main())
