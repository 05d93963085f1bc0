"""bench.transport_ab and the benchmark's transports: Minga over unix sockets, or TCP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import minga_setup, transport_ab
from bench.servers import BenchError, Processes, redis_socket, start_redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_a_short_ab_posts_over_each_transport_and_prices_its_round_trips(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert transport_ab.main(["--rounds", "1", "--posts", "50", "--trips", "200"]) == 0
    out = json.loads(capsys.readouterr().out)

    (found,) = out["rounds"]
    # Each child's connections went the way its transport says, not just its URLs.
    assert found["unix"]["connections"] == {"postgres": "unix", "redis": "unix"}
    assert found["tcp"]["connections"] == {"postgres": "tcp", "redis": "tcp"}
    for figures in (found["unix"], found["tcp"]):
        assert figures["cpu_us"] > 0
        assert figures["wall_us"] > 0
    assert set(out["round_trips"]) == {"postgres_unix", "postgres_tcp", "redis_unix", "redis_tcp"}
    assert all(t["client_us"] > 0 for t in out["round_trips"].values())
    assert out["unix_minus_tcp"]["cpu_us"] == found["unix"]["cpu_us"] - found["tcp"]["cpu_us"]


def test_the_summary_is_the_median_of_each_figure_and_of_the_rounds_differences() -> None:
    def figures(base: int) -> dict[str, int]:
        return {f: base for f in transport_ab.FIGURES}

    rounds = [
        {"unix": figures(10), "tcp": figures(13)},
        {"unix": figures(30), "tcp": figures(20)},
        {"unix": figures(12), "tcp": figures(14)},
    ]
    out = transport_ab.summary(rounds)

    assert out["unix"]["cpu_us"] == 12
    assert out["tcp"]["cpu_us"] == 14
    assert out["unix_minus_tcp"]["cpu_us"] == -2  # -3, +10, -2


def test_unix_names_both_sockets_and_tcp_the_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    with Processes() as procs:
        port, _redis = start_redis(procs, 6398)
        unix, how = minga_setup.minga_urls(port, "unix")
        tcp, how_tcp = minga_setup.minga_urls(port, "tcp")
        # Where PostgreSQL has no socket here, "unix" says it is TCP instead of pretending.
        monkeypatch.setattr(minga_setup, "_postgres_socket_dir", lambda: None)
        fallback = minga_setup.minga_urls(port, "unix")

    assert how == "unix"
    assert unix["REDIS_URL"] == f"unix://{redis_socket(port)}?db=0"
    assert "@127.0.0.1" not in unix["DATABASE_URL"]
    assert Path(unix["DATABASE_URL"].split("@", 1)[1].split("/", 1)[0].replace("%2F", "/")).is_dir()
    assert how_tcp == "tcp"
    assert tcp["REDIS_URL"] == f"redis://127.0.0.1:{port}/0"
    assert fallback == (tcp, "tcp")


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(BenchError, match="transport must be one of unix, tcp"):
        minga_setup.minga_urls(6399, "udp")
