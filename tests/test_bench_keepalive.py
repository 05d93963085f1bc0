"""bench.keepalive: it times both paths on real protocols, and a cycle whose pong is not taken as
the answer to its ping stops it rather than timing nothing."""

from __future__ import annotations

from typing import Any

import pytest

from bench import keepalive


def test_a_short_run_times_both_paths_and_the_timer(capsys: pytest.CaptureFixture[str]) -> None:
    result = keepalive.main(["--cycles", "50", "--rounds", "2"])

    assert set(result) >= {"autobahn_us", "short_us", "timer_us", "client_frame_us"}
    assert all(len(values) == 2 for values in result["each_round"].values())
    assert result["autobahn_us"] > 0 and result["short_us"] > 0
    assert '"short_over_autobahn"' in capsys.readouterr().out


@pytest.mark.parametrize("short", [False, True], ids=["autobahn", "short"])
def test_a_pong_that_does_not_answer_its_ping_stops_the_run(short: bool) -> None:
    protocol: Any = keepalive.protocol(short=short)
    protocol._dataReceived = lambda data: None  # the pong is never read

    with pytest.raises(RuntimeError, match="not taken as the answer"):
        keepalive.cycles_us(protocol, 3)


def test_the_short_side_has_the_short_path_and_the_other_has_not() -> None:
    assert getattr(keepalive.protocol(short=True)._sendAutoPing, "minga_keepalive", False)
    assert not getattr(keepalive.protocol(short=False)._sendAutoPing, "minga_keepalive", False)


def test_counts_below_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        keepalive.main(["--cycles", "0"])

    assert "positive" in capsys.readouterr().err
