"""bench.connect_probe's choice of systems: the baseline tree can alternate with this one."""

from __future__ import annotations

import argparse

import pytest

from bench import connect_probe, servers


def _systems(only: str, baseline: str | None = None) -> list[str]:
    args = argparse.Namespace(only=only, baseline=baseline, rates="", members=500, ping_interval=30)
    return connect_probe._checked(argparse.ArgumentParser(), args)[1]


def test_the_baseline_runs_first_unless_only_places_it() -> None:
    assert (
        _systems("minga,b0", "base-tree"),
        _systems("base,minga,base,minga", "base-tree"),
        _systems("minga,b0"),
    ) == (["base", "minga", "b0"], ["base", "minga", "base", "minga"], ["minga", "b0"])


@pytest.mark.parametrize("only", ["base,minga", "minga,c1"])
def test_base_without_a_tree_or_an_unknown_system_is_refused(
    only: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        connect_probe.main(["--only", only])

    assert "--only" in capsys.readouterr().err


def test_c0_with_and_without_daphnes_keepalive_are_systems_but_take_no_posts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _systems("c0,c0-ping,minga") == ["c0", "c0-ping", "minga"]

    with pytest.raises(SystemExit):
        connect_probe.main(["--only", "c0-ping,minga", "--rates", "5"])

    assert "--rates posts through Minga's services: not with b0, c0" in capsys.readouterr().err


def test_mingas_daphne_pings_as_deployed_and_the_peers_keep_daphnes_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # ADR 0019: Minga's interval, before the application; B0's argv has none (daphne's 20 s).
    assert servers.minga_daphne_argv(8131)[-3:] == [
        "--ping-interval",
        str(servers.MINGA_PING_INTERVAL),
        "minga.asgi:application",
    ]
    assert servers.minga_daphne_argv(8131, 20)[-2] == "20"
    assert "--ping-interval" not in servers.daphne_argv("bench.b0.asgi:application", 8111)
    with pytest.raises(SystemExit):
        connect_probe.main(["--only", "minga", "--ping-interval", "0"])

    assert "--ping-interval takes a whole number of seconds" in capsys.readouterr().err


def test_c0s_server_pings_only_when_asked_as_daphne_does() -> None:
    assert servers.c0_argv(8101)[-1] == "8101"
    assert servers.c0_argv(8101, connect_probe.DAPHNE_PING_INTERVAL)[-2:] == ["8101", "20.0"]


def test_c0s_server_reads_what_c0_argv_writes_and_refuses_a_bad_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench import c0_server

    assert c0_server._arguments(servers.c0_argv(8101)[3:]) == (8101, None)
    assert c0_server._arguments(servers.c0_argv(8101, 20.0)[3:]) == (8101, 20.0)
    for bad in (["8101", "soon"], ["8101", "0"]):
        with pytest.raises(SystemExit):
            c0_server._arguments(bad)
    assert "ping_interval" in capsys.readouterr().err


def test_a_baseline_trees_servers_keep_the_callers_hook_on_their_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hook given by PYTHONPATH (bench/gccensus) is loaded by both trees' servers, after the
    baseline tree's own packages; without one the path is the tree's alone."""
    monkeypatch.delenv("MEMTRACE_DIR", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/abs/bench/gccensus")
    env = {"PYTHONPATH": "/abs/bench/gccensus", "OTHER": "1"}

    hooked = connect_probe._server_env(env, "/srv/base")["PYTHONPATH"]
    this_tree = connect_probe._server_env(env, None)["PYTHONPATH"]
    monkeypatch.delenv("PYTHONPATH")
    plain = connect_probe._server_env({}, "/srv/base")["PYTHONPATH"]

    assert (hooked, this_tree, plain) == (
        "/srv/base:/srv/base/platform:/abs/bench/gccensus",
        "/abs/bench/gccensus",
        "/srv/base:/srv/base/platform",
    )
