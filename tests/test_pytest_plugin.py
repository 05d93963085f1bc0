"""minga.pytest_plugin's `figures` section: the reliability families' lines reach the end of
the run also from xdist's workers, whose own output is not shown (make test runs two)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FAMILIES = """
from minga.pytest_plugin import FIGURES


def test_one_family() -> None:
    FIGURES.append("ALPHA: 3 of 3 kept")


def test_another_family() -> None:
    FIGURES.append("BETA: 0 lost")


def test_a_failing_family() -> None:
    FIGURES.append("GAMMA: 1 lost")
    assert False
"""

PLUGINS = ("-p", "minga.pytest_plugin", "-p", "no:cacheprovider", "-p", "no:randomly")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_families.py").write_text(FAMILIES)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *PLUGINS, *args, "test_families.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("workers", ["0", "2"])
def test_every_figure_line_is_listed_at_the_end_once(tmp_path: Path, workers: str) -> None:
    done = _run(tmp_path, "-n", workers)

    # The failing test fails the run, and its line is listed with the others.
    assert done.returncode == 1, done.stdout + done.stderr
    assert sorted(_section(done.stdout, "figures")) == [
        "ALPHA: 3 of 3 kept",
        "BETA: 0 lost",
        "GAMMA: 1 lost",
    ]


def _section(output: str, title: str) -> list[str]:
    """The lines of pytest's `==== title ====` section, up to the next section."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("=") and f" {title} " in line]
    assert len(starts) == 1, output
    section = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("="):
            break
        section.append(line)
    return section
