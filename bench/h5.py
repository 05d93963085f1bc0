"""H5: HTTP p99 of the calendar month page and a thread page while H1 runs (issue 6).

Minga: a member signs in once through allauth's login form (`/accounts/login/`, CSRF token and
all), then a separate probe process (`python -m bench.h5_probe`, so the load generator's
event loop does not delay it) requests, as that member, the calendar month page (`/calendar/`)
and a thread page (`/threads/<id>/`, the thread of a room no H1 message goes to, so the page
is the same size idle and under load; THREAD_MESSAGES more messages are posted in it first, so
it shows a full page of 50, as a meeting's thread does) in turn, sequentially, at a fixed rate
(`h5_rps` requests/s over both pages, both daphne processes in turn) for `h5_seconds`: first idle, then
while H1 fans out into one room of `h5_members` clients at a fixed rate, posted through the
services by bench/minga_poster.py as in H1. The rate is 50 % of C0's best H1 rate in this run
(1 room), or `h5_h1_rate` frames/s when C0 did not run.

B0: the Channels tutorial's room page (part 2: `chat/<room>/`, a template view) on the same two
tutorial daphne processes, idle and under the same H1 load of the tutorial's chat.

Minga with its pages apart (`minga-pages`, with `h5_split`): the same H1 load on the same two
daphne processes, while the probe's pages are served by a third daphne process of the same
application that holds no socket: the deployment where the proxy sends `/ws/` to the realtime
processes and every other path to page processes (docs/deployment.md, "Pages apart from the
sockets"). The pages' work is the same; it no longer shares an event loop and a GIL with the
fan-out. With `h5_pages_nice` below 0 the page process is also scheduled ahead of the others.
Reported beside the issue's two-process figure, not in its place.

Minga's pages under C0's load (`c0`, with `h5_floor`): the same H1 step (one room of
`h5_members` clients, the same frames/s) carried by C0's two broadcast processes, while the
probe asks Minga's two daphne processes, which hold no socket, for the same pages. C0 is the
cheapest fan-out there is, so this is the floor of H5 on this machine: what the load alone
(its fan-out and the load generator on the same two cores) does to Minga's pages. Where the
floor is itself above 1.5 x idle, no design of Minga's fan-out meets H5 here.

A request that answers anything but 200 (a redirect to the login page included) is an error of
the run; timings never are. The H1 step run meanwhile is reported (delivered, lost, p99) but
its failing is not an error: at this rate it is expected to fail on both.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import psutil
from websockets.exceptions import WebSocketException

from bench import loadgen, minga_setup
from bench.h5_probe import get as _get
from bench.servers import ROOT, BenchError, Processes, free_ports, minga_daphne_argv

LOGIN_PASSWORD = "bench-password-not-secret"  # noqa: S105 - bench/minga_seed.py's seed password
LOGIN_EMAIL = "bench0@example.org"
WARM_UP_REQUESTS = 2  # per page and port: templates compiled, connections opened
# With the thread's first message, a full page (forums.views.PAGE_SIZE; a test holds them
# together). Before stop 19 (2026-11-26 13:40 UTC) H5's thread held its first message only:
# earlier runs measured a lighter page.
THREAD_MESSAGES = 49


def _run_probe(
    ports: list[int], pages: dict[str, str], cookie: str, rps: float, seconds: float
) -> dict[str, Any]:
    argv = [
        *(sys.executable, "-m", "bench.h5_probe", "--rps", str(rps)),
        *("--seconds", str(seconds), "--ports", ",".join(map(str, ports))),
        *("--pages", json.dumps(pages), "--cookie", cookie),
    ]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=seconds * 20 + 120, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"H5 probe failed: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- Signing in ----------------------------------------------------------------------------


def set_password(email: str, password: str) -> None:
    """Under bench.minga_settings: hash `password` with production's first hasher."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.minga_settings")
    django.setup()
    from community.models import User

    user = User.objects.get(email=email)
    user.set_password(password)
    user.save(update_fields=["password"])


def _cookies(response: http.client.HTTPResponse) -> dict[str, str]:
    out: dict[str, str] = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        out[name.strip()] = rest.split(";", 1)[0]
    return out


def login(port: int, email: str, password: str) -> str:
    """Sign in through allauth's login form; returns the Cookie header of the session."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/accounts/login/")
        page = conn.getresponse()
        html = page.read().decode()
        jar = _cookies(page)
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        if page.status != 200 or not found or "csrftoken" not in jar:
            raise BenchError(f"H5: the login page answered {page.status} without a CSRF token")
        body = urlencode(
            {"csrfmiddlewaretoken": found.group(1), "login": email, "password": password}
        )
        conn.request(
            "POST",
            "/accounts/login/",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={jar['csrftoken']}",
                "Referer": f"http://127.0.0.1:{port}/accounts/login/",
                "Origin": f"http://127.0.0.1:{port}",
            },
        )
        answer = conn.getresponse()
        reply = answer.read().decode(errors="replace")
        jar |= _cookies(answer)
    finally:
        conn.close()
    if answer.status != 302 or "sessionid" not in jar:
        errors = re.findall(r'<ul class="errorlist[^>]*>(.*?)</ul>', reply, re.DOTALL)
        raise BenchError(
            f"H5: signing in as {email} answered {answer.status}, no session; form errors: "
            f"{[re.sub(r'<[^>]+>', ' ', e).strip() for e in errors][:3]}"
        )
    return f"sessionid={jar['sessionid']}; csrftoken={jar['csrftoken']}"


# --- One side: idle, then under H1 ---------------------------------------------------------


async def _side(  # noqa: PLR0917 - one scenario's parameters, in one place
    system: str,
    proto: loadgen.Proto,
    ports: list[int],
    room: str,
    pages: dict[str, str],
    cookie: str,
    cfg: dict[str, Any],
    meter: loadgen.Meter,
    frames_per_s: float,
    log: Callable[[str], None],
    page_ports: list[int],
    *,
    per_port_publishers: bool = False,
) -> dict[str, Any]:
    """Idle, then under H1: the sockets on `ports`, the probe's pages from `page_ports`
    (`per_port_publishers`: C0's fan-out is per process, so each port needs its sender)."""
    for _ in range(WARM_UP_REQUESTS):
        for port in page_ports:
            for path in pages.values():
                await asyncio.to_thread(_get, port, path, cookie, 30)
    seconds, rps = float(cfg["h5_seconds"]), float(cfg["h5_rps"])
    idle = await asyncio.to_thread(_run_probe, page_ports, pages, cookie, rps, seconds)
    log(f"  {system} idle: {_brief(idle)}")
    members = int(cfg["h5_members"])
    fleet = loadgen.Fleet(proto, ports, [room], per_port_publishers=per_port_publishers)
    try:
        connect_s = await fleet.open(members, per_room=members, budget=cfg["connect_budget"])
        await asyncio.sleep(1)
        rate = frames_per_s / members  # messages/s into the room
        probing = asyncio.ensure_future(
            asyncio.to_thread(_run_probe, page_ports, pages, cookie, rps, seconds)
        )
        step = await fleet.step(
            meter, step=1, rate=rate, seconds=seconds, drain_max=cfg["drain_max"]
        )
        load = await probing
    finally:
        await fleet.close()
    log(f"  {system} under H1: {_brief(load)}")
    h1 = {
        k: step.get(k)
        for k in (
            "rate_per_room",
            "clients",
            "messages",
            "sent_rate",
            "expected",
            "received",
            "lost",
            "delivered_per_s",
            "p50_ms",
            "p99_ms",
            "passed",
            "server_cpu_pct",
            "loadgen_cpu_pct",
            "others_cpu_pct",
        )
    }
    log(f"  {system} H1 meanwhile: {h1}")
    return {"idle": idle, "load": load, "h1": h1, "connect_seconds": round(connect_s, 1)}


def _brief(result: dict[str, Any]) -> str:
    return "; ".join(
        f"{name} p50 {v['p50_ms']} p99 {v['p99_ms']} ms ({v['requests']} req, {v['errors']} err)"
        for name, v in result.items()
        if isinstance(v, dict)
    )


def run(
    *,
    procs: Processes,
    cfg: dict[str, Any],
    redis_port: int,
    data: minga_setup.MingaData,
    c0_best: float | None,
    start_servers: Callable[..., tuple[list[int], list[int]]],
    stop_servers: Callable[[Processes, str], None],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Both sides of H5; a side that cannot run is recorded as {"error": ...}."""
    if c0_best is not None:
        frames, source = round(c0_best * 0.5), "50 % of C0's best H1 rate (1 room) in this run"
    else:
        frames, source = int(cfg["h5_h1_rate"]), "configured (h5_h1_rate or --h5-rate)"
    out: dict[str, Any] = {"h1_frames_per_s": frames, "h1_rate_source": source}
    if cfg.get("h5_split"):
        out["pages_nice"] = int(cfg.get("h5_pages_nice", 0))
    quiet_thread = data.threads[data.hold_room]  # no H1 message goes there
    static_root = tempfile.mkdtemp(prefix="minga-bench-static-")
    env = {**data.env, "BENCH_STATIC_ROOT": static_root}
    prep = _start_prep(env, quiet_thread)  # Minga's, while B0 runs
    sides = (
        "b0",
        "minga",
        *(("minga-pages",) if cfg.get("h5_split") else ()),
        *(("c0",) if cfg.get("h5_floor") else ()),
    )
    try:
        for system in sides:
            log(f"h5: {system}, H1 at {frames:,} frames/s into 1 room x {cfg['h5_members']}")
            out[system] = _run_side(
                system,
                procs,
                cfg,
                redis_port,
                data,
                env,
                prep,
                frames,
                quiet_thread,
                log,
                start_servers,
                stop_servers,
            )
    finally:
        for proc in prep:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(static_root, ignore_errors=True)
    return out


def _start_prep(env: dict[str, str], thread: int) -> list[subprocess.Popen[str]]:
    """What Minga's pages need before they are served, started at once:

    - the static files' manifest, which production templates need (`collectstatic`, as at
      deploy, into this run's directory, without compressing: the probe never fetches them);
    - a password hashed with production's hasher for the member who signs in (the seed hashes
      with MD5, which production's hashers do not accept);
    - THREAD_MESSAGES more messages in the thread page's thread."""
    argvs = [
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        [sys.executable, "-m", "bench.h5", "password", "--email", LOGIN_EMAIL],
        [sys.executable, "-m", "bench.minga_seed", "messages", str(thread), str(THREAD_MESSAGES)],
    ]
    return [
        subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **env, "BENCH_COLLECT_PLAIN": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]


def _finish_prep(prep: list[subprocess.Popen[str]]) -> None:
    for proc in prep:
        try:
            _out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BenchError(f"H5: {' '.join(proc.args[1:4])} took over 300 s") from None
        if proc.returncode != 0:
            raise BenchError(f"H5: {' '.join(proc.args[1:4])} failed: {err.strip()[-1500:]}")


def _run_side(  # noqa: PLR0917 - the run's shared state
    system: str,
    procs: Processes,
    cfg: dict[str, Any],
    redis_port: int,
    data: minga_setup.MingaData,
    env: dict[str, str],
    prep: list[subprocess.Popen[str]],
    frames: float,
    quiet_thread: int,
    log: Callable[[str], None],
    start_servers: Callable[..., tuple[list[int], list[int]]],
    stop_servers: Callable[[Processes, str], None],
) -> dict[str, Any]:
    """One side. `b0`: the tutorial's sockets and page; `minga`, `minga-pages`: Minga's sockets,
    its pages inside their processes or on a third; `c0`: C0's sockets, Minga's pages on
    Minga's two processes (the floor)."""
    started: list[str] = []
    try:
        if system == "b0":
            ports, pids = start_servers(procs, "b0", redis_port, env)
            started.append("b0")
            proto: loadgen.Proto = loadgen.TutorialProto()
            meter = loadgen.Meter(pids, procs.pid_of("redis"))
            pages, cookie = {"room": "/chat/lobby/"}, ""
            room = "r0"  # the tutorial's room names are \w+
            return asyncio.run(
                _side(system, proto, ports, room, pages, cookie, cfg, meter, frames, log, ports)
            )
        _finish_prep(prep)
        minga_ports, minga_pids = start_servers(procs, "minga", redis_port, env)
        started.append("minga")
        pages = {"month": "/calendar/", "thread": f"/threads/{quiet_thread}/"}
        if system == "c0":
            ports, pids = start_servers(procs, "c0", redis_port, env)
            started.append("c0")
            cookie = login(minga_ports[0], LOGIN_EMAIL, LOGIN_PASSWORD)
            meter = loadgen.Meter(pids, procs.pid_of("redis"))
            return asyncio.run(
                _side(
                    system,
                    loadgen.C0Proto(),
                    ports,
                    data.rooms[0],
                    pages,
                    cookie,
                    cfg,
                    meter,
                    frames,
                    log,
                    minga_ports,  # the pages from Minga's processes, the sockets on C0's
                    per_port_publishers=True,
                )
            )
        page_ports = minga_ports
        if system == "minga-pages":
            page_ports = [_start_page_process(procs, env, int(cfg.get("h5_pages_nice", 0)))]
        poster = minga_setup.Poster(procs, data, "minga-h5-poster", threads=cfg["poster_threads"])
        minga = loadgen.MingaProto(data.tokens, data.threads)
        minga.poster = poster
        meter = loadgen.Meter([*minga_pids, poster.pid], procs.pid_of("redis"))
        cookie = login(page_ports[0], LOGIN_EMAIL, LOGIN_PASSWORD)
        room = data.rooms[0]
        return asyncio.run(
            _side(
                system, minga, minga_ports, room, pages, cookie, cfg, meter, frames, log, page_ports
            )
        )
    except (BenchError, RuntimeError, OSError, TimeoutError, WebSocketException) as error:
        log(f"  h5 {system} could not run: {error}")
        return {"error": f"{type(error).__name__}: {error}"}
    finally:
        for servers in reversed(started):
            stop_servers(procs, servers)


def _start_page_process(procs: Processes, env: dict[str, str], nice: int) -> int:
    """A third daphne process of Minga's application for the pages alone (no socket connects
    to it); its name starts with `minga-`, so stopping Minga's servers stops it too.

    `nice`: its scheduling niceness (0: the others'; below 0, ahead of them, as systemd's
    `Nice=` would set it). Started under nice(1) so every thread it makes inherits it; a
    niceness the system refuses (below 0 needs root) is an error, not a silent 0."""
    (port,) = free_ports(1, 8141)
    argv = minga_daphne_argv(port)
    proc = procs.start("minga-pages", ["nice", "-n", str(nice), *argv] if nice else argv, env)
    procs.wait_port(proc, "minga-pages", port, timeout=60)
    if nice and psutil.Process(proc.pid).nice() != nice:
        raise BenchError(f"H5: the page process could not be given niceness {nice} (root?)")
    return port


def problems(h5: Any) -> list[str]:
    """A side that could not run, or a page that answered anything but 200."""
    if not isinstance(h5, dict):
        return []
    out = [f"h5: {h5['error']}"] if "error" in h5 else []
    for system in ("minga", "minga-pages", "c0", "b0"):
        side = h5.get(system)
        if not isinstance(side, dict):
            continue
        if "error" in side:
            out.append(f"h5 {system}: {side['error']}")
            continue
        for phase in ("idle", "load"):
            for name, page in side.get(phase, {}).items():
                if isinstance(page, dict) and page.get("errors"):
                    out.append(
                        f"h5 {system} {phase} {name}: {page['errors']} of {page['requests']} "
                        f"requests failed, e.g. {page['error_examples']}"
                    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.h5")
    parser.add_argument("command", choices=["password"])
    parser.add_argument("--email", required=True, help="the member whose password is set")
    args = parser.parse_args()
    set_password(args.email, LOGIN_PASSWORD)
