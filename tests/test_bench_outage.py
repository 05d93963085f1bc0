"""bench.outage: H6 alone, from source trees in turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import outage
from bench.__main__ import SMOKE

ROOT = Path(__file__).resolve().parent.parent


def test_a_smoke_outage_from_each_tree_in_turn_loses_nothing() -> None:
    out = outage.measure([ROOT, ROOT], rounds=1, redis_port=6398, cfg=SMOKE)

    # One tree named twice is one entry, run twice: each time two new servers, Redis killed
    # and restarted under them, every message posted and none lost after the catch-up.
    runs = out["trees"][str(ROOT)]
    assert (list(out["trees"]), out["messages"]) == ([str(ROOT)], SMOKE["h6_messages"])
    assert [(r["posted"], r["post_failures"], r["lost"]) for r in runs] == [
        (SMOKE["h6_messages"], 0, 0)
    ] * 2
    assert all(r["resync_seconds"] is not None for r in runs)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--trees", "/nonexistent"], "is not a Minga source tree"),
        (["--trees", ","], "--trees takes source trees separated by commas"),
        (["--rounds", "0"], "--rounds must be at least 1"),
    ],
)
def test_bad_arguments_are_refused_with_what_is_wrong(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        outage.main(argv)

    assert exited.value.code == 2
    assert says in capsys.readouterr().err
