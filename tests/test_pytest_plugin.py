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


@pytest.mark.parametrize(
    ("url", "default_port", "address"),
    [
        ("redis://127.0.0.1:6379/0", 6379, ("127.0.0.1", 6379)),
        ("redis://cache.internal/0", 6379, ("cache.internal", 6379)),
        ("unix:///run/redis/redis.sock?db=0", 6379, "/run/redis/redis.sock"),
        ("postgres://postgres@127.0.0.1:5433/test", 5432, ("127.0.0.1", 5433)),
        (
            "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/test",
            5432,
            "/var/run/postgresql/.s.PGSQL.5432",
        ),
        ("postgres://u:p@%2Fsrv%2FPG:5433/test", 5432, "/srv/PG/.s.PGSQL.5433"),
    ],
)
def test_a_service_is_looked_for_where_its_url_says(
    url: str, default_port: int, address: tuple[str, int] | str
) -> None:
    from minga.pytest_plugin import _address

    assert _address(url, default_port) == address


def test_a_unix_socket_that_answers_is_up_and_a_missing_one_is_not(tmp_path: Path) -> None:
    import socket

    from minga.pytest_plugin import _answers

    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        assert _answers(f"unix://{path}", 6379) is True
    path.unlink()
    assert _answers(f"unix://{path}", 6379) is False
