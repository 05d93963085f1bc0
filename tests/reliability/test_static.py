"""Static checks: the daphne floor (CVE-2026-44545/44546 fixed in 4.2.2; we ask 4.2.3) and bandit.

pip-audit is not run: it needs the network (the PyPI/OSV advisory databases), which the test
machines do not have; docs/reliability.md says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.version import Version

from tests.reliability.support import report

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("community", "forums", "events", "notifications", "platform")


def test_daphne_is_at_least_4_2_3() -> None:
    assert Version(version("daphne")) >= Version("4.2.3")


def test_bandit_finds_no_high_severity_issue(capsys: pytest.CaptureFixture[str]) -> None:
    bandit = shutil.which("bandit", path=str(Path(sys.executable).parent))
    if bandit is None:
        pytest.skip("bandit is not installed (pip install 'bandit>=1.8,<2')")
    result = subprocess.run(
        [bandit, "-q", "-r", *SCANNED, "-f", "json", "--severity-level", "high"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    found = json.loads(result.stdout)
    high = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in found["results"]
        if r["issue_severity"] == "HIGH"
    ]
    totals = found["metrics"]["_totals"]

    report(
        capsys,
        "SAST",
        f"bandit {version('bandit')} on {', '.join(SCANNED)} ({totals['loc']} lines): high "
        f"{len(high)}, medium {totals['SEVERITY.MEDIUM']}, low {totals['SEVERITY.LOW']}; "
        "daphne "
        f"{version('daphne')} (>= 4.2.3); pip-audit not run (needs the network)",
    )
    assert high == []
