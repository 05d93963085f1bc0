"""bench/gccensus: the census hook a daphne process loads from PYTHONPATH (a development tool)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parent.parent / "bench" / "gccensus"


def _run_hooked(tmp_path: Path, **env: str) -> str:
    """A short Python process that looks like daphne to the hook; its census log."""
    subprocess.run(
        [sys.executable, "-c", "import time; time.sleep(1)", "daphne"],
        env={"GCCENSUS_DIR": str(tmp_path), "PYTHONPATH": str(HOOK), **env},
        check=True,
        timeout=30,
    )
    [log] = tmp_path.glob("*.log")
    return log.read_text()


def test_live_counts_what_a_full_collection_walks_and_times_one(tmp_path: Path) -> None:
    log = _run_hooked(tmp_path, GCCENSUS_LIVE="0.1", GCCENSUS_AFTER="100")

    assert "objects walked by a full collection" in log
    assert "live: one full collection took" in log


@pytest.mark.parametrize(("name", "value"), [("GCCENSUS_LIVE", "soon"), ("GCCENSUS_AFTER", "-3")])
def test_a_bad_number_of_seconds_is_said_in_the_log_and_that_part_skipped(
    tmp_path: Path, name: str, value: str
) -> None:
    log = _run_hooked(tmp_path, **{name: value})

    assert f"{name}={value!r} is not a number of seconds: that part is skipped" in log
    assert "live:" not in log
    assert "counting what full collections free" not in log
