"""Start, watch and stop the processes a benchmark needs: all on loopback, all killed at the end.

Every process started here is recorded in `Processes`; leaving its `with` block (normally, on
an error or on Ctrl-C) terminates each one by its own pid, then kills what did not stop.
Output goes to log files under bench/results/logs/run-<pid>/, never to a pipe nobody reads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "results" / "logs" / f"run-{os.getpid()}"


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, a client could not connect...)."""


def port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout):
            return True
    except OSError:
        return False


def free_ports(count: int, start: int) -> list[int]:
    """`count` loopback ports from `start` upwards that nothing listens on."""
    ports: list[int] = []
    port = start
    while len(ports) < count and port < start + 500:
        if not port_open(port):
            ports.append(port)
        port += 1
    if len(ports) < count:
        raise BenchError(f"no {count} free ports from {start}")
    return ports


class Processes:
    """The processes of one benchmark, stopped together."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        LOGS.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        pipes: bool = False,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in `cwd` (default: this tree; `python -m` puts it first on the path);
        with `pipes`, its stdin and stdout are pipes (stderr: the log)."""
        log = (LOGS / f"{name}.log").open("ab")
        tree = Path(cwd or ROOT)
        merged = {**os.environ, **(env or {})}
        # The tree's own `minga` package (platform/): the editable install maps `minga` to the
        # checkout it was installed from, so without this a baseline tree would run that
        # checkout's settings, ASGI entry point and gateway helpers.
        merged["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(tree / "platform"), merged.get("PYTHONPATH", "")) if p
        )
        proc = subprocess.Popen(
            argv,
            cwd=tree,
            env=merged,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else log,
            stderr=log if pipes else subprocess.STDOUT,
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def wait_port(
        self, proc: subprocess.Popen[bytes], name: str, port: int, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(
                    f"{name} exited with {proc.returncode} before listening on {port}; "
                    f"see {LOGS / (name + '.log')}"
                )
            if port_open(port):
                return
            time.sleep(0.1)
        raise BenchError(f"{name} did not listen on {port} within {timeout:.0f} s")

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 3) -> None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:  # a poster's answers (pipes=True)
            proc.stdout.close()
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def pid_of(self, name: str) -> int | None:
        """The pid of the running process started under `name`, if any."""
        for started, proc in self.procs:
            if started == name and proc.poll() is None:
                return proc.pid
        return None

    def stop_all(self) -> None:
        for _name, proc in reversed(list(self.procs)):
            self.stop(proc)


def start_redis(procs: Processes, first_port: int) -> tuple[int, subprocess.Popen[bytes]]:
    """A private Redis on the first free port from `first_port`, answering: (port, process)."""
    port = free_ports(1, first_port)[0]
    redis = procs.start("redis", redis_argv(port))
    procs.wait_port(redis, "redis", port, timeout=20)
    return port, redis


def redis_socket(port: int) -> Path:
    """The unix socket the private Redis on `port` also listens on (Minga's transport, unless
    `--transport tcp`; the peers connect to the port, as the tutorial does)."""
    return Path(tempfile.gettempdir()) / f"minga-bench-redis-{port}.sock"


def redis_argv(port: int) -> list[str]:
    """A private, throwaway Redis: never the shared one on 6379."""
    if port == 6379:
        raise BenchError("the benchmark never touches the shared Redis on 6379")
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--unixsocket",
        str(redis_socket(port)),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]


# Minga's keepalive, as the Procfile and docs/deployment.md start daphne: a ping to a socket
# that sent nothing for this many seconds. Above the browser client's own ping (25 s,
# frontend/static/minga/realtime.js), so daphne pings only silent sockets (ADR 0019).
MINGA_PING_INTERVAL = 30


def daphne_argv(app: str, port: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *options, app]


def minga_daphne_argv(port: int, ping_interval: int = MINGA_PING_INTERVAL) -> list[str]:
    """Minga's daphne as deployed; the peers (bench/b0) keep daphne's defaults (20 s)."""
    return daphne_argv("minga.asgi:application", port, "--ping-interval", str(ping_interval))


def c0_argv(port: int, ping_interval: float | None = None) -> list[str]:
    """C0's server; with `ping_interval`, keepalive pings as daphne sends them (bench.c0_server)."""
    ping = [str(ping_interval)] if ping_interval else []
    return [sys.executable, "-m", "bench.c0_server", str(port), *ping]


def postgres_cpu() -> float | None:
    """CPU seconds of every local `postgres` process so far (the server's backends, WAL writer
    and the rest); None where they cannot be read (another user's processes, a remote server)."""
    import psutil

    total, seen = 0.0, False
    for proc in psutil.process_iter(["name"]):
        if not (proc.info["name"] or "").startswith("postgres"):
            continue
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total, seen = total + times.user + times.system, True
    return total if seen else None


def source_trees(value: str) -> list[Path]:
    """`--trees` of the A/B tools (bench.poster_cost, bench.outage): source trees separated by
    commas, each a Minga checkout with the poster and the ASGI application they start from it."""
    trees = [Path(part).resolve() for part in value.split(",") if part.strip()]
    if not trees:
        raise argparse.ArgumentTypeError("--trees takes source trees separated by commas")
    for tree in trees:
        wanted = (tree / "bench" / "minga_poster.py", tree / "platform" / "minga" / "asgi.py")
        if not all(path.is_file() for path in wanted):
            raise argparse.ArgumentTypeError(
                f"{tree} is not a Minga source tree (no bench/ or platform/minga/)"
            )
    return trees
