"""`python -m bench --smoke` runs every benchmark end to end and loses no message.

It starts its own Redis (never the shared one), its own PostgreSQL database and every server,
so it needs both services. It never fails on a timing: only when a benchmark cannot run or a
frame or message is lost (the command's exit status and its JSON say which).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def test_bench_smoke_runs_every_benchmark_without_loss(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    env = {
        k: v for k, v in os.environ.items() if k not in {"MINGA_TESTING", "DJANGO_SETTINGS_MODULE"}
    }

    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the bench stops every process it started, then exits
        stdout, _ = proc.communicate(timeout=60)

    if not out.exists():
        pytest.fail(f"the smoke run wrote no results (exit {proc.returncode}):\n{stdout[-4000:]}")
    results = json.loads(out.read_text())
    assert (proc.returncode, results["problems"]) == (0, []), stdout[-4000:]
    # C0 is read twice, before the others and after them (the report takes the higher), and
    # last behind each message stored first: in a post's transaction (C0t), by one durable
    # write (C0d).
    systems = ["b0", "b1", "c0", "c0-again", "c0d", "c0t", "minga"]
    assert sorted(results["systems"]) == systems
    for system in systems:
        steps = results["systems"][system]["h1_1room"]["steps"]
        assert [(s["lost"], s["post_failures"]) for s in steps] == [(0, 0)] * len(steps)
    assert results["systems"]["minga"]["h6"]["lost"] == 0
    # Minga over its servers' unix sockets (the default), H6's restarted Redis included.
    assert results["minga_transport"] == "unix"
    # The machine's speed and CPU clock, read before each phase and at the end (bench.report
    # prints them).
    speeds, clock = results["speed_ms"], results["cpu_clock"]
    phases = ["b0", "b1", "c0", "c0-again", "c0d", "c0t", "end", "h4", "h5", "minga"]
    assert (sorted(speeds), all(ms > 0 for ms in speeds.values())) == (phases, True)
    assert sorted(clock) == phases
    assert all(0 <= c["steal_s"] < c["total_s"] for c in clock.values()), clock
    # H4: one announcement; every recipient has a row, every online member exactly one push
    # (B0's losses, like its H1 losses, are a finding: it only has to run).
    members = results["config"]["h4_members"]
    minga = results["h4"]["minga"]
    assert (minga["rows"], minga["lost"], minga["duplicates"]) == (members, 0, 0), minga
    assert results["h4"]["b0"]["rows"] == members, results["h4"]["b0"]
    # H5: every page answered 200, idle and under H1 load, for the signed-in member (a login
    # that failed would redirect); the timings are findings.
    h5 = results["h5"]
    minga_pages = ["month", "thread"]
    sides = [("minga", minga_pages), ("minga-pages", minga_pages), ("c0", minga_pages)]
    for system, pages in [*sides, ("b0", ["room"])]:
        answered = [
            (h5[system][phase][page]["errors"], h5[system][phase][page]["p99_ms"] > 0)
            for phase in ("idle", "load")
            for page in pages
        ]
        assert answered == [(0, True)] * 2 * len(pages), h5[system]
    # The floor: Minga's pages while C0 carried the same H1 load, and C0 lost nothing.
    assert (h5["c0"]["h1"]["lost"], h5["c0"]["h1"]["received"]) == (0, h5["c0"]["h1"]["expected"])
