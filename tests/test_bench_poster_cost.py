"""bench.poster_cost: the poster's CPU per post at a fixed rate, from source trees in turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import poster_cost

ROOT = Path(__file__).resolve().parent.parent


def test_a_short_run_posts_every_message_from_each_tree_and_prices_them() -> None:
    out = poster_cost.measure(
        [ROOT, ROOT], rate=4.0, rooms=2, seconds=1.0, rounds=1, redis_port=6396, threads=(1, 3)
    )

    assert list(out["trees"]) == [str(ROOT)]  # one tree named twice is one entry, run twice
    runs = out["trees"][str(ROOT)]
    assert [(r["threads"], r["posted"], r["failures"]) for r in runs] == [
        (1, 8, 0),
        (3, 8, 0),
        (1, 8, 0),
        (3, 8, 0),
    ]
    assert all(r["poster_cpu_us_per_post"] > 0 for r in runs)
    assert all(r["post_ms_p99"] >= r["post_ms_p50"] > 0 for r in runs)


def test_a_poster_started_in_a_tree_imports_that_trees_packages(tmp_path: Path) -> None:
    """What comparing trees rests on: the venv's editable install maps `minga` to the checkout
    it was installed from; bench.servers.Processes.start puts the tree's platform/ first."""
    import sys

    from bench.servers import Processes

    for package in ("platform/minga", "forums"):
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
    script = "import minga, forums; print(minga.__file__, forums.__file__)"
    with Processes() as procs:
        proc = procs.start("imports", [sys.executable, "-c", script], pipes=True, cwd=tmp_path)
        assert proc.stdout is not None
        found = proc.stdout.read().decode().split()
        proc.wait(10)

    assert found == [
        str(tmp_path / "platform" / "minga" / "__init__.py"),
        str(tmp_path / "forums" / "__init__.py"),
    ]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--trees", "/nonexistent"], "is not a Minga source tree"),
        (["--trees", ","], "--trees takes source trees separated by commas"),
        (["--rate", "0"], "--rate must be above 0"),
        (["--rooms", "11"], "--rooms must be between 1 and 10"),
        (["--seconds", "-1"], "--seconds must be above 0"),
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--threads", "0"], "--threads takes thread counts from 1 to 64"),
        (["--threads", "eight"], "--threads takes thread counts from 1 to 64"),
    ],
)
def test_bad_arguments_are_refused_with_what_is_wrong(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        poster_cost.main(argv)

    assert exited.value.code == 2
    assert says in capsys.readouterr().err
