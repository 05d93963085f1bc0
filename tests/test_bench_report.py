"""`python -m bench.report`: a results file it cannot read is refused with its name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report, stats


@pytest.mark.parametrize("content", [None, "{not json"])
def test_a_results_file_it_cannot_read_is_refused_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    results = tmp_path / "latest.json"
    if content is not None:
        results.write_text(content)

    with pytest.raises(SystemExit) as exited:
        report.main([str(results)])

    assert exited.value.code == 2
    assert f"cannot read {results}" in capsys.readouterr().err


def test_the_machines_speed_before_each_phase_is_printed_and_its_drift_called_out() -> None:
    steady = {"speed_ms": {"c0": 11.4, "b0": 11.5, "minga": 11.9, "end": 11.6}}
    drifting = {"speed_ms": {"c0": 11.4, "minga": 15.9, "end": 12.0}}

    assert report.speed_line({"speed_ms": {}}) is None
    assert report.speed_line({}) is None  # a file from before the probe
    assert report.speed_line(steady) == (
        "Machine speed before each phase (a fixed Python loop, ms, lower is faster): "
        "c0 11.4, b0 11.5, minga 11.9, end 11.6."
    )
    assert "The slowest reading is 1.39 x the fastest" in str(report.speed_line(drifting))


def test_the_host_s_steal_between_readings_is_printed_with_the_speed() -> None:
    results = {
        "speed_ms": {"c0": 11.4, "minga": 11.6, "end": 11.5},
        "cpu_clock": {
            "c0": {"total_s": 1000.0, "steal_s": 10.0},
            "minga": {"total_s": 1200.0, "steal_s": 11.0},  # 1 of 200 s: 0.5 %
            "end": {"total_s": 1400.0, "steal_s": 31.0},  # 20 of 200 s: 10 %
        },
    }

    assert report.steal_between(results) == [("c0 to minga", 0.5), ("minga to end", 10.0)]
    assert report.steal_between({}) == []  # a file from before the clock was read
    assert str(report.speed_line(results)).endswith(
        " CPU time the host gave to other guests (steal), between readings: c0 to minga 0.5 %,"
        " minga to end 10.0 %; the most, 10.0 %, minga to end."
    )


def _h1(delivered: float, cpu: float = 10.0) -> dict[str, object]:
    return {"best": {"delivered_per_s": delivered, "server_us_per_frame": cpu}}


def test_c0s_ceiling_is_the_higher_of_its_two_readings_and_names_both() -> None:
    results = {
        "config": {"members": 1000},
        "systems": {
            "minga": {"h1_1room": _h1(50_000), "h1_10rooms": _h1(30_000)},
            "b0": {"h1_1room": _h1(5_000), "h1_10rooms": _h1(5_000)},
            "c0": {"h1_1room": _h1(80_000, cpu=8.0), "h1_10rooms": _h1(70_000)},
            "c0-again": {"h1_1room": _h1(120_000, cpu=12.0), "h1_10rooms": _h1(50_000)},
        },
    }

    one_room, one_room_cpu, ten_rooms, _ten_rooms_cpu = report.rows(results)[:4]

    # One room: 50,000 against the later, higher reading (120,000): 0.42 x C0, not met.
    assert (one_room.values["c0"], one_room.met) == (120_000, False)
    assert one_room.ratio.startswith("0.42 x C0 (C0 read 80,000 before and 120,000 after); ")
    # Ten rooms: against the earlier reading (70,000): 0.43 x C0.
    assert (ten_rooms.values["c0"], ten_rooms.met) == (70_000, False)
    # The CPU row reads the same step as the frames row: the later, higher reading's.
    assert one_room_cpu.values["c0"] == 12.0
    # With one reading, that reading, and no note.
    del results["systems"]["c0-again"]
    one_room = report.rows(results)[0]
    assert (one_room.values["c0"], one_room.met) == (80_000, True)
    assert one_room.ratio == "0.62 x C0; 10.00 x max(B0,B1)"


def test_ten_rooms_are_also_held_to_c0d_the_ceiling_that_stores_each_message() -> None:
    results = {
        "config": {"members": 1000},
        "systems": {
            "minga": {"h1_1room": _h1(50_000), "h1_10rooms": _h1(20_000, cpu=40.0)},
            "c0": {"h1_1room": _h1(80_000), "h1_10rooms": _h1(70_000)},
            "c0-again": {"h1_10rooms": _h1(60_000)},
            "c0d": {"h1_10rooms": _h1(38_000, cpu=25.0)},
        },
    }

    frames, cpu = report.rows(results)[4:6]

    assert frames.metric.startswith("H1 10 rooms x 100, each message stored first (C0: C0d")
    # 20,000 against C0d's 38,000: 0.53 x C0d, the proposed half of it met; C0d itself is
    # named against C0's higher ten-room reading (70,000).
    assert (frames.values["minga"], frames.values["c0"], frames.met) == (20_000, 38_000, True)
    assert frames.ratio == "0.53 x C0d; C0d = 0.54 x C0"
    assert (cpu.values["minga"], cpu.values["c0"], cpu.ratio) == (40.0, 25.0, "1.60 x C0d")
    # Below half of C0d: not met.
    results["systems"]["c0d"]["h1_10rooms"] = _h1(41_000)
    assert report.rows(results)[4].met is False
    # C0d with no passing step: no figure, no verdict; C0d not run: no rows at all.
    results["systems"]["c0d"]["h1_10rooms"] = {"best": None}
    assert (report.rows(results)[4].values["c0"], report.rows(results)[4].met) == (None, None)
    del results["systems"]["c0d"]
    assert not any("C0d" in row.metric for row in report.rows(results))


def test_ten_rooms_are_reported_against_c0t_a_posts_transaction_without_its_rules() -> None:
    results = {
        "config": {"members": 1000},
        "systems": {
            "minga": {"h1_1room": _h1(50_000), "h1_10rooms": _h1(20_000, cpu=40.0)},
            "c0": {"h1_1room": _h1(80_000), "h1_10rooms": _h1(70_000)},
            "c0t": {"h1_10rooms": _h1(32_000, cpu=16.0)},
            "c0d": {"h1_10rooms": _h1(40_000, cpu=25.0)},
        },
    }

    c0t = report.rows(results)[6]

    # After C0d's two rows: Minga against C0t, C0t named against C0d, the CPU per frame beside.
    assert c0t.metric.startswith("H1 10 rooms, each message stored in a post's transaction")
    assert (c0t.values["minga"], c0t.values["c0"], c0t.met) == (20_000, 32_000, None)
    assert c0t.ratio == "0.62 x C0t; C0t = 0.80 x C0d; server CPU per frame 2.50 x C0t's"
    assert c0t.target == "(reported)"
    # Without C0d, C0t's row stands alone; without C0t, no row of it.
    del results["systems"]["c0d"]
    assert report.rows(results)[4].ratio == "0.62 x C0t; server CPU per frame 2.50 x C0t's"
    del results["systems"]["c0t"]
    assert not any("C0t" in row.metric for row in report.rows(results))


def _pages(idle: float, load: float, h1_p99: float = 300.0) -> dict[str, object]:
    page = {"p50_ms": 1.0, "requests": 200, "errors": 0}
    return {
        "idle": {"month": {**page, "p99_ms": idle}, "thread": {**page, "p99_ms": idle}},
        "load": {"month": {**page, "p99_ms": load}, "thread": {**page, "p99_ms": load}},
        "h1": {"p99_ms": h1_p99, "passed": h1_p99 <= 1000},
    }


def _b0_room(idle: float, load: float) -> dict[str, object]:
    """B0's side of H5: the tutorial's room page, idle and under H1."""
    room = {"p50_ms": 1.0, "requests": 400, "errors": 0}
    return {"idle": {"room": {**room, "p99_ms": idle}}, "load": {"room": {**room, "p99_ms": load}}}


def _h5(frames: int, **sides: dict[str, object]) -> dict[str, Any]:
    """Results holding only H5: its H1 rate and its sides (`minga_pages` for `minga-pages`)."""
    named = {name.replace("_", "-"): side for name, side in sides.items()}
    return {"systems": {}, "h5": {"h1_frames_per_s": frames, **named}}


def test_h5_with_the_pages_apart_is_a_row_of_its_own_beside_the_issues_figure() -> None:
    results = _h5(
        38_000,
        minga=_pages(idle=20.0, load=100.0),
        minga_pages=_pages(idle=20.0, load=28.0),
        b0=_b0_room(idle=10.0, load=600.0),
    )

    loaded = [row for row in report.rows(results) if "under H1" in row.metric]

    # Each names what the live frames went through meanwhile: the pages' gain may be their loss.
    assert [row.ratio for row in loaded[1:3]] == [
        "5.00 x idle; 0.17 x B0; H1's own p99 meanwhile 300 ms",
        "1.40 x idle; 0.05 x B0; H1's own p99 meanwhile 300 ms",
    ]

    assert [(row.metric, row.values["minga"], row.met) for row in loaded] == [
        (
            "H5 calendar month page p99 under H1 at 38,000 frames/s (B0: its room page)",
            100.0,
            False,
        ),
        ("H5 thread page p99 under H1 at 38,000 frames/s (B0: its room page)", 100.0, False),
        (
            "H5 calendar month page, pages on a process of their own p99 under H1 at 38,000 "
            "frames/s (B0: its room page)",
            28.0,
            True,
        ),
        (
            "H5 thread page, pages on a process of their own p99 under H1 at 38,000 frames/s "
            "(B0: its room page)",
            28.0,
            True,
        ),
    ]


def test_the_page_process_niceness_is_named_in_its_rows() -> None:
    results = _h5(
        38_000,
        minga=_pages(idle=20.0, load=100.0),
        minga_pages=_pages(idle=20.0, load=28.0),
        b0=_b0_room(idle=10.0, load=10.0),
    )
    results["h5"]["pages_nice"] = -5

    metrics = [row.metric for row in report.rows(results) if "their own" in row.metric]

    assert len(metrics) == 4
    assert all(", pages on a process of their own at nice -5 p99" in m for m in metrics)


def test_a_page_is_not_met_while_the_h1_step_beside_it_failed() -> None:
    results = _h5(
        45_000,
        minga=_pages(idle=20.0, load=28.0, h1_p99=2470.8),
        b0=_b0_room(idle=600.0, load=600.0),
    )

    month = next(row for row in report.rows(results) if "month page p99 under" in row.metric)

    assert (month.ratio, month.met) == (
        "1.40 x idle; 0.05 x B0; H1's own p99 meanwhile 2,471 ms (its step failed)",
        False,
    )


def test_h5s_floor_is_minga_s_page_while_c0_carries_the_load_in_c0s_column() -> None:
    results = _h5(
        45_000,
        minga=_pages(idle=20.0, load=100.0),
        c0=_pages(idle=20.0, load=36.0, h1_p99=400.0),
        b0=_b0_room(idle=10.0, load=600.0),
    )

    idle, month = (row for row in report.rows(results) if "calendar month" in row.metric)

    assert (idle.values["c0"], month.values["c0"]) == (20.0, 36.0)
    # The floor is named, and called out when it is itself above the issue's 1.5 x idle.
    assert month.ratio.endswith(
        "; floor (C0's column: this page while C0 carried the load) 1.80 x idle, above the target"
    )
    assert month.met is False
    # Below 1.5 x, the floor is named without the call-out; a failed C0 step is named too.
    results["h5"]["c0"] = _pages(idle=20.0, load=24.0, h1_p99=1500.0)
    month = next(row for row in report.rows(results) if "month page p99 under" in row.metric)
    assert month.ratio.endswith("1.20 x idle (C0's step failed)")
    # Without the floor's side, nothing about it.
    del results["h5"]["c0"]
    month = next(row for row in report.rows(results) if "month page p99 under" in row.metric)
    assert (month.values["c0"], "floor" in month.ratio) == (None, False)


def test_h5s_ratios_carry_their_bootstrap_interval_when_every_time_was_kept() -> None:
    """Each time (since stop 29): the ratio of the p99s, and how far it moves within the run."""
    idle_times = [10.0] * 198 + [19.0, 20.0]  # p99 20 ms (the second slowest of 200)
    load_times = [10.0] * 196 + [28.0, 29.0, 30.0, 31.0]  # p99 30 ms
    minga, c0 = _pages(idle=20.0, load=30.0), _pages(idle=20.0, load=30.0)
    for side in (minga, c0):
        for phase, times in (("idle", idle_times), ("load", load_times)):
            side[phase]["month"]["times_ms"] = times  # type: ignore[index]
    results = _h5(45_000, minga=minga, c0=c0, b0=_b0_room(idle=10.0, load=600.0))

    month = next(row for row in report.rows(results) if "month page p99 under" in row.metric)
    thread = next(row for row in report.rows(results) if "thread page p99 under" in row.metric)

    low, high = stats.ratio_interval(load_times, idle_times)
    assert low < 1.5 < high
    interval = f"1.50 x idle (90% interval {low:.2f}-{high:.2f})"
    assert month.ratio.startswith(interval + "; 0.05 x B0")
    assert month.ratio.endswith(f"carried the load) {interval}")
    # Without the times (the thread page here, or results from before), the ratio alone.
    assert thread.ratio.startswith("1.50 x idle; 0.05 x B0")
    assert "interval" not in thread.ratio


def _h4(t_rows: float, raw_real: float | None) -> dict[str, object]:
    minga = {"end_to_end_s": 0.6, "t_rows_s": t_rows, "t_push_s": 0.6, "t_email_s": t_rows}
    minga |= {"lost": 0, "emails_immediate": 0, "raw_real_insert_s": raw_real}
    minga |= {"raw_real_insert_again_s": 0.125}
    return {"minga": minga, "b0": {"end_to_end_s": 30.0, "t_rows_s": 30.0, "lost": 0}}


def test_h4s_rows_are_held_to_the_same_rows_raw_insert_as_well_as_to_the_temp_table() -> None:
    results = {
        "systems": {},
        "config": {"h4_members": 10_000, "h4_online": 2_000},
        "ceilings": {"pg_insert_10k": {"seconds": 0.03}},
        "h4": _h4(t_rows=0.3, raw_real=0.15),
    }

    temp, real = (row for row in report.rows(results) if "inbox rows" in row.metric)

    assert (temp.ratio, temp.met) == ("10.00 x raw INSERT", False)
    assert real.values == {"minga": 0.3, "b0": 30.0, "b1": None, "c0": 0.15}
    assert real.ratio == "2.00 x the same rows' raw INSERT (raw read again: 0.125 s)"
    assert real.met is True
    results["h4"] = _h4(t_rows=0.4, raw_real=0.15)  # 2.67 x: over the proposal's 2.5 x
    real = next(row for row in report.rows(results) if "same rows into" in row.metric)
    assert real.met is False
    results["h4"] = _h4(t_rows=0.4, raw_real=None)  # not measured: no verdict
    real = next(row for row in report.rows(results) if "same rows into" in row.metric)
    assert (real.ratio, real.met) == ("n/a (raw read again: 0.125 s)", None)


def _step(rate: float, *, passed: bool) -> dict[str, object]:
    return {
        **{"rate_per_room": rate, "clients": 1000, "passed": passed, "lost": 0},
        **{"delivered_per_s": rate * 1000, "p50_ms": 1.0, "p99_ms": 900.0 if passed else 1200.0},
        **{"server_us_per_frame": 9.0, "loadgen_cpu_pct": 50.0, "others_cpu_pct": 2.0},
    }


def test_the_details_name_the_failure_that_bounds_the_best_pass_and_the_h5_floor() -> None:
    # The ramp failed at 40, the bisection passed 30 and failed 35: 35 bounds the best pass.
    steps = [_step(20, passed=True), _step(40, passed=False)]
    steps += [_step(30, passed=True), _step(35, passed=False)]
    nothing = [_step(5, passed=False), _step(2.5, passed=False)]
    machine = {"cpu": "x", "cores": 2, "ram_gib": 1, "os": "x", "python": "3", "redis": "x"}
    results = {
        **{"mode": "full", "date": "today", "command": "python -m bench", "seconds": 1.0},
        "machine": {**machine, "load_average_at_start": [0, 0, 0]},
        "systems": {
            "minga": {"h1_1room": {"steps": steps, "best": steps[2]}},
            "b0": {"h1_1room": {"steps": nothing, "best": None}},
        },
        "h5": {
            "h1_frames_per_s": 45_000,
            "h1_rate_source": "configured",
            "c0": _pages(idle=20.0, load=36.0)
            | {"h1": _step(45, passed=True) | {"received": 9, "expected": 9, "sent_rate": 45}},
        },
    }

    text = report.markdown(results)

    assert "- minga h1_1room: 30,000/s" in text
    assert "; lowest failure above it at 35,000/s offered: lost 0, p99 1200.0 ms" in text
    assert "- b0 h1_1room: no passing step; lowest failure at 2,500/s offered" in text
    assert "- c0 (the floor: Minga's pages while C0 carried the load): month idle 1.0/20.0" in text


def test_the_one_room_tails_name_where_the_first_step_and_the_fixed_loads_made_their_p99() -> None:
    def step(rate: float, p99: float, head: float | None, rest: float | None) -> dict[str, Any]:
        return {
            "rate_per_room": rate,
            "clients": 1000,
            "p99_ms": p99,
            "p99_head_ms": head,
            "p99_rest_ms": rest,
        }

    results: dict[str, Any] = {
        "systems": {
            "minga": {
                "h1_1room": {
                    "steps": [step(5.0, 312.8, 900.0, 80.0), step(10.0, 77.0, 70.0, 77.0)],
                    "fixed": [step(9.12, 73.8, 60.0, 74.0)],
                }
            },
            "b0": {"h1_1room": {"steps": [step(5.0, 400.0, None, None)]}},  # before stop 30
        }
    }

    assert report._tail_lines(results)[-1:] == [
        "- minga: first step 5,000/s 312.8 (900.0 / 80.0); fixed 9,120/s 73.8 (60.0 / 74.0)"
    ]
    assert report._tail_lines({"systems": {"b0": results["systems"]["b0"]}}) == []


def test_the_transport_line_says_how_minga_reached_its_servers() -> None:
    assert report.transport_line({}) is None  # a file from before stop 31
    assert str(report.transport_line({"minga_transport": "unix"})).startswith(
        "Minga's processes reached Redis and PostgreSQL over their unix sockets;"
    )
    assert "over TCP on 127.0.0.1" in str(report.transport_line({"minga_transport": "tcp"}))
