"""Turn the raw results into the table of issue 6: metric, Minga, B0, B1, C0, ratio, target, met?"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from bench import stats

SYSTEMS = ("minga", "b0", "b1", "c0", "minga-x")


@dataclass
class Row:
    metric: str
    values: dict[str, float | None]
    ratio: str
    target: str
    met: bool | None
    unit: str = ""


def _best(results: dict[str, Any], system: str, scenario: str) -> dict[str, Any] | None:
    data = results["systems"].get(system, {}).get(scenario)
    return data.get("best") if isinstance(data, dict) else None


def _send_best(results: dict[str, Any], system: str) -> dict[str, Any] | None:
    data = results["systems"].get(system, {})
    for scenario in ("h1_10rooms", "h1_1room"):
        best = data.get(scenario, {}).get("send_best") if isinstance(data, dict) else None
        if best:
            return best
    return None


def _val(step: dict[str, Any] | None, key: str) -> float | None:
    return None if step is None else step.get(key)


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _fmt_ratio(value: float | None, label: str) -> str:
    return "n/a" if value is None else f"{value:.2f} {label}"


def c0_ceiling(results: dict[str, Any], scenario: str) -> tuple[dict[str, Any] | None, str]:
    """C0's best H1 step for `scenario` from the higher of its two readings (before the other
    systems and after them, `c0-again`) when both ran, with a note naming both; else from its
    one reading. The frames row and the CPU row both read this step."""
    first, again = _best(results, "c0", scenario), _best(results, "c0-again", scenario)
    if first is None or again is None:
        return first or again, ""
    note = (
        f" (C0 read {first['delivered_per_s']:,.0f} before and "
        f"{again['delivered_per_s']:,.0f} after)"
    )
    return max(first, again, key=lambda step: step["delivered_per_s"]), note


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for scenario, label in (("h1_1room", "1 room"), ("h1_10rooms", "10 rooms")):
        best = {s: _best(results, s, scenario) for s in SYSTEMS}
        best["c0"], c0_readings = c0_ceiling(results, scenario)
        frames = {s: _val(best[s], "delivered_per_s") for s in SYSTEMS}
        peer = max((v for v in (frames["b0"], frames["b1"]) if v is not None), default=None)
        vs_c0 = _div(frames["minga"], frames["c0"])
        vs_peer = _div(frames["minga"], peer)
        met = None if vs_c0 is None or vs_peer is None else (vs_c0 >= 0.5 and vs_peer >= 5)
        members = results.get("config", {}).get("members", "N")
        out.append(
            Row(
                f"H1 {label} x {members // (10 if scenario == 'h1_10rooms' else 1) if isinstance(members, int) else members}: frames/s, zero loss",
                frames,
                f"{_fmt_ratio(vs_c0, 'x C0')}{c0_readings}; {_fmt_ratio(vs_peer, 'x max(B0,B1)')}",
                ">= 0.5 x C0 and >= 5 x max(B0, B1)",
                met,
                "frames/s",
            )
        )
        cpu = {s: _val(best[s], "server_us_per_frame") for s in SYSTEMS}
        vs = _div(cpu["minga"], cpu["c0"])
        out.append(
            Row(
                f"H1 {label}: server CPU per delivered frame",
                cpu,
                _fmt_ratio(vs, "x C0"),
                "(reported; research proposed <= 2 x C0)",
                None if vs is None else vs <= 2,
                "us",
            )
        )
    out += _durable_rows(results)
    out += _send_rows(results)
    # H2: latency at the fixed loads (25 % and 50 % of C0's H1 rate).
    for index, share in enumerate(("25%", "50%")):
        p99: dict[str, float | None] = {}
        lost: dict[str, int] = {}
        for system in SYSTEMS:
            fixed = results["systems"].get(system, {}).get("h1_1room", {}).get("fixed", [])
            step = fixed[index] if len(fixed) > index else None
            p99[system] = _val(step, "p99_ms")
            lost[system] = 0 if step is None else step["lost"]
        c0, minga, b1 = p99["c0"], p99["minga"], p99["b1"]
        met = None
        if c0 is not None and minga is not None:
            met = minga <= c0 + 5 and (b1 is None or minga <= b1 / 5)
        fixed = results["systems"].get("minga", {}).get("h1_1room", {}).get("fixed", [])
        # The post's own commit (due -> committed, in the poster): what an in-memory C0 skips.
        post_p99 = _val(fixed[index] if len(fixed) > index else None, "post_p99_ms")
        ratio = "n/a"
        if c0 is not None and minga is not None:
            ratio = f"Minga - C0 = {minga - c0:.1f} ms"
            if post_p99 is not None:
                ratio += f"; Minga's posts' own p99 {post_p99:.1f} ms"
            if b1:
                ratio += f"; 1/{b1 / minga:.0f} of B1's"
        out.append(
            Row(
                f"H2 p99 at {share} of C0's H1 rate",
                p99,
                ratio,
                "<= C0 p99 + 5 ms; <= 1/5 of B1's",
                met,
                "ms",
            )
        )
    # H3: connections.
    for key, title, target in (
        ("kib_per_connection", "H3 RSS per connection at {n}", "<= 30 KiB"),
        ("idle_server_cpu_pct", "H3 idle server CPU at {n}", "<= 5 % of one core"),
    ):
        sizes = results.get("config", {}).get("hold_sizes", [])
        for n in sizes if key == "kib_per_connection" else sizes[-1:]:
            values = {s: _hold_point(results, s, n, key) for s in SYSTEMS}
            minga = values["minga"]
            limit = 30 if key == "kib_per_connection" else 5
            out.append(
                Row(
                    title.format(n=n),
                    values,
                    _fmt_ratio(_div(minga, values["c0"]), "x C0"),
                    target,
                    None if minga is None else minga <= limit,
                    "KiB" if key == "kib_per_connection" else "% core",
                )
            )
    rate_n = results.get("config", {}).get("connect_rate_at")
    rates = {s: _hold_point(results, s, rate_n, "connect_per_s") for s in SYSTEMS}
    vs_b0 = _div(rates["minga"], rates["b0"])
    out.append(
        Row(
            f"H3 connect+subscribe rate, {rate_n} clients",
            rates,
            _fmt_ratio(vs_b0, "x B0"),
            ">= 3 x B0",
            None if vs_b0 is None else vs_b0 >= 3,
            "clients/s",
        )
    )
    h6 = results["systems"].get("minga", {}).get("h6")
    if isinstance(h6, dict) and "lost" in h6:
        out.append(
            Row(
                "H6 Redis restart: messages lost after catch-up",
                {"minga": h6["lost"], "b0": None, "b1": None, "c0": None},
                f"catch-up took {h6.get('resync_seconds')} s; "
                f"{h6.get('missing_live_after_restart')} frames posted after the restart "
                "missed live",
                "0 lost; resynced within 2 s",
                h6["lost"] == 0
                and h6.get("resync_seconds") is not None
                and h6["resync_seconds"] <= 2,
                "messages",
            )
        )
    out += _h4_rows(results)
    out += _h5_rows(results)
    return out


def _send_rows(results: dict[str, Any]) -> list[Row]:
    """Minga's ramp posting through the gateway's message.send, beside H1's."""
    send = {s: _val(_send_best(results, s), "delivered_per_s") for s in SYSTEMS}
    if all(v is None for v in send.values()):
        return []
    return [
        Row(
            "H1 posted with message.send through the gateway (10 rooms; smoke: 1): frames/s",
            send,
            "(Minga only; compare with the 10-room row)",
            "(reported)",
            None,
            "frames/s",
        )
    ]


def _durable_rows(results: dict[str, Any]) -> list[Row]:
    """H1's ten rooms against C0d, C0's servers behind one durable INSERT per message
    (bench/c0d_poster.py), in C0's column: where every 100 frames need a stored message, the
    ceiling that stores it ("H1 ten rooms: a durable ceiling"); then against C0t, the same
    behind a post's transaction without its rules. Nothing for a ceiling that did not run."""
    return [*_c0d_rows(results), *_c0t_rows(results)]


def _c0t_rows(results: dict[str, Any]) -> list[Row]:
    """H1's ten rooms against C0t, C0's servers behind each message stored as a post's
    transaction stores it, without the post's rules (`bench.c0d_poster --transaction`): what
    is left between them is Minga's own (Django, the checks, Markdown, the publish), not the
    database work its contract needs ("H1 ten rooms: a post's transaction, C0t")."""
    if "c0t" not in results["systems"]:
        return []
    minga, c0t = _best(results, "minga", "h1_10rooms"), _best(results, "c0t", "h1_10rooms")
    frames = _val(minga, "delivered_per_s"), _val(c0t, "delivered_per_s")
    ratio = _fmt_ratio(_div(frames[0], frames[1]), "x C0t")
    if "c0d" in results["systems"]:
        c0d = _val(_best(results, "c0d", "h1_10rooms"), "delivered_per_s")
        if (share := _div(frames[1], c0d)) is not None:
            ratio += f"; C0t = {share:.2f} x C0d"
    cpu = _div(_val(minga, "server_us_per_frame"), _val(c0t, "server_us_per_frame"))
    if cpu is not None:
        ratio += f"; server CPU per frame {cpu:.2f} x C0t's"
    return [
        Row(
            "H1 10 rooms, each message stored in a post's transaction (C0: C0t, C0 behind the "
            "room's seq, the thread's count and the insert, committed; no rule): frames/s, "
            "zero loss",
            {"minga": frames[0], "b0": None, "b1": None, "c0": frames[1]},
            ratio,
            "(reported)",
            None,
            "frames/s",
        )
    ]


def _c0d_rows(results: dict[str, Any]) -> list[Row]:
    if "c0d" not in results["systems"]:
        return []
    minga, c0d = _best(results, "minga", "h1_10rooms"), _best(results, "c0d", "h1_10rooms")
    c0, _readings = c0_ceiling(results, "h1_10rooms")
    frames = _val(minga, "delivered_per_s"), _val(c0d, "delivered_per_s")
    vs = _div(frames[0], frames[1])
    ratio = _fmt_ratio(vs, "x C0d")
    share = _div(frames[1], _val(c0, "delivered_per_s"))
    if share is not None:
        ratio += f"; C0d = {share:.2f} x C0"
    cpu = _val(minga, "server_us_per_frame"), _val(c0d, "server_us_per_frame")
    members = results.get("config", {}).get("members")
    size = f" x {members // 10}" if isinstance(members, int) else ""
    return [
        Row(
            f"H1 10 rooms{size}, each message stored first (C0: C0d, C0 behind one raw INSERT "
            "per message): frames/s, zero loss",
            {"minga": frames[0], "b0": None, "b1": None, "c0": frames[1]},
            ratio,
            "(proposed) >= 0.5 x C0d",
            None if vs is None else vs >= 0.5,
            "frames/s",
        ),
        Row(
            "H1 10 rooms, each message stored first: server CPU per delivered frame (C0d: its "
            "poster's included, as Minga's is)",
            {"minga": cpu[0], "b0": None, "b1": None, "c0": cpu[1]},
            _fmt_ratio(_div(cpu[0], cpu[1]), "x C0d"),
            "(reported)",
            None,
            "us",
        ),
    ]


def _h5_p99(results: dict[str, Any], system: str, phase: str, page: str) -> float | None:
    side = (results.get("h5") or {}).get(system)
    if not isinstance(side, dict):
        return None
    value = side.get(phase, {}).get(page)
    return value.get("p99_ms") if isinstance(value, dict) else None


def _h5_interval(results: dict[str, Any], system: str, page: str) -> str:
    """The bootstrap interval of a side's p99 under load over its p99 idle (bench.stats), as
    text after the ratio; nothing for results without every request's time (before stop 29)."""
    side = (results.get("h5") or {}).get(system)
    if not isinstance(side, dict):
        return ""
    load, idle = (
        (side.get(phase, {}).get(page) or {}).get("times_ms") for phase in ("load", "idle")
    )
    if not (isinstance(load, list) and load and isinstance(idle, list) and idle):
        return ""
    low, high = stats.ratio_interval(load, idle)
    return f" ({stats.LEVEL:.0%} interval {low:.2f}-{high:.2f})"


def _h1_under(side: Any) -> dict[str, Any] | None:
    """The H1 step run while a side's pages were probed, when it was recorded."""
    h1 = side.get("h1") if isinstance(side, dict) else None
    return h1 if isinstance(h1, dict) else None


def _h1_meanwhile(h1: dict[str, Any] | None) -> str:
    """That step's own delivery p99: what the pages' gain cost the live frames when the cores
    were full ("H5: the pages apart from the sockets")."""
    if h1 is None or h1.get("p99_ms") is None:
        return ""
    failed = " (its step failed)" if h1.get("passed") is False else ""
    return f"; H1's own p99 meanwhile {h1['p99_ms']:,.0f} ms{failed}"


def _h5_floor(results: dict[str, Any], page: str) -> tuple[float | None, float | None, str]:
    """Minga's page p99 idle and while C0 carried the same H1 load (the side `c0`), and the
    text for the ratio column: the floor of H5 on this machine."""
    idle = _h5_p99(results, "c0", "idle", page)
    load = _h5_p99(results, "c0", "load", page)
    ratio = _div(load, idle)
    if ratio is None:
        return idle, load, ""
    h1 = _h1_under((results.get("h5") or {}).get("c0"))
    failed = " (C0's step failed)" if (h1 or {}).get("passed") is False else ""
    reach = ", above the target" if ratio > 1.5 else ""
    return (
        idle,
        load,
        (
            f"; floor (C0's column: this page while C0 carried the load) {ratio:.2f} x idle"
            f"{_h5_interval(results, 'c0', page)}{failed}{reach}"
        ),
    )


def _h5_rows(results: dict[str, Any]) -> list[Row]:
    """H5: each Minga page idle and under H1 load; B0's tutorial room page beside it, and in
    C0's column the same Minga page while C0 carried the load (the floor). Then, when it ran,
    the same with Minga's pages served by a process of their own (minga-pages)."""
    h5 = results.get("h5")
    if not isinstance(h5, dict) or "error" in h5:
        return []
    frames = h5.get("h1_frames_per_s")
    out: list[Row] = []
    b0_idle = _h5_p99(results, "b0", "idle", "room")
    b0_load = _h5_p99(results, "b0", "load", "room")
    sides = [("minga", "")]
    if isinstance(h5.get("minga-pages"), dict):
        nice = h5.get("pages_nice") or 0
        sides.append(
            (
                "minga-pages",
                ", pages on a process of their own" + (f" at nice {nice}" if nice else ""),
            )
        )
    for side, apart in sides:
        h1 = _h1_under(h5.get(side))
        for page, label in (("month", "calendar month page"), ("thread", "thread page")):
            idle = _h5_p99(results, side, "idle", page)
            load = _h5_p99(results, side, "load", page)
            floor_idle, floor_load, floor = _h5_floor(results, page)
            out.append(
                Row(
                    f"H5 {label}{apart} p99, idle (B0: the tutorial's room page)",
                    {"minga": idle, "b0": b0_idle, "b1": None, "c0": floor_idle},
                    "(the base of the next row)",
                    "(reported)",
                    None,
                    "ms",
                )
            )
            vs_idle, vs_b0 = _div(load, idle), _div(load, b0_load)
            out.append(
                Row(
                    f"H5 {label}{apart} p99 under H1 at {frames:,} frames/s (B0: its room page)"
                    if isinstance(frames, int)
                    else f"H5 {label}{apart} p99 under H1",
                    {"minga": load, "b0": b0_load, "b1": None, "c0": floor_load},
                    f"{_fmt_ratio(vs_idle, 'x idle')}{_h5_interval(results, side, page)}; "
                    f"{_fmt_ratio(vs_b0, 'x B0')}" + _h1_meanwhile(h1) + floor,
                    "<= 1.5 x idle; <= 1/3 of B0's",
                    # A page is not fast "while H1 runs" if H1's own step failed meanwhile.
                    None
                    if vs_idle is None or vs_b0 is None
                    else vs_idle <= 1.5
                    and vs_b0 <= 1 / 3
                    and (h1 or {}).get("passed") is not False,
                    "ms",
                )
            )
    return out


def _h4_rows(results: dict[str, Any]) -> list[Row]:
    """H4: one announcement; Minga and B0 end to end, and Minga's rows against the raw INSERT."""
    h4 = results.get("h4")
    if not isinstance(h4, dict) or "error" in h4:
        return []
    minga, b0 = h4.get("minga", {}), h4.get("b0", {})
    cfg = results.get("config", {})
    size = f"{cfg.get('h4_members', 'N'):,} members, {cfg.get('h4_online', 'M'):,} online"
    ceiling = results.get("ceilings", {}).get("pg_insert_10k", {}).get("seconds")
    rows_per = ceiling * cfg["h4_members"] / 10_000 if ceiling and cfg.get("h4_members") else None

    def val(side: dict[str, Any], key: str) -> float | None:
        return side.get(key) if isinstance(side, dict) else None

    def vals(key: str, c0: float | None = None) -> dict[str, float | None]:
        return {"minga": val(minga, key), "b0": val(b0, key), "b1": None, "c0": c0}

    e2e = vals("end_to_end_s")
    speedup = _div(e2e["b0"], e2e["minga"])
    rows_ratio = _div(val(minga, "t_rows_s"), rows_per)
    real_ratio = _div(val(minga, "t_rows_s"), val(minga, "raw_real_insert_s"))
    again = val(minga, "raw_real_insert_again_s")
    immediate = val(minga, "emails_immediate")
    return [
        Row(
            f"H4 announcement, {size}: end to end",
            e2e,
            _fmt_ratio(speedup, "x faster than B0"),
            ">= 20 x B0",
            None if speedup is None else speedup >= 20,
            "s",
        ),
        Row(
            "H4 all inbox rows committed (C0: raw INSERT ... SELECT generate_series)",
            vals("t_rows_s", rows_per),
            _fmt_ratio(rows_ratio, "x raw INSERT"),
            "<= 2 x the raw INSERT",
            None if rows_ratio is None else rows_ratio <= 2,
            "s",
        ),
        Row(
            "H4 all inbox rows committed (C0: a raw INSERT ... SELECT of the same rows into the "
            "inbox table)",
            vals("t_rows_s", val(minga, "raw_real_insert_s")),
            _fmt_ratio(real_ratio, "x the same rows' raw INSERT")
            + (f" (raw read again: {again:.3f} s)" if isinstance(again, float) else ""),
            "(proposed) <= 2 x in the median of runs, <= 2.5 x in each",
            None if real_ratio is None else real_ratio <= 2.5,
            "s",
        ),
        Row(
            "H4 last notification frame received",
            vals("t_push_s"),
            f"lost: Minga {val(minga, 'lost')}, B0 {val(b0, 'lost')}",
            "(part of end to end)",
            None,
            "s",
        ),
        Row(
            "H4 email work queued",
            vals("t_email_s"),
            "daily digest by default: the pending rows are the queue"
            if immediate == 0
            else f"{immediate} immediate emails",
            "(part of end to end)",
            None,
            "s",
        ),
    ]


def _hold_point(results: dict[str, Any], system: str, n: int | None, key: str) -> float | None:
    data = results["systems"].get(system, {}).get("h3")
    if not isinstance(data, dict):
        return None
    for point in data.get("points", []):
        if point["connections"] == n:
            return point.get(key)
    return None


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f}"


def table(results: dict[str, Any]) -> str:
    ablation = "minga-x" in results["systems"]
    shown = SYSTEMS if ablation else SYSTEMS[:4]
    header = ["metric", "Minga", "B0", "B1", "C0"]
    header += ["Minga-x (ablation)"] if ablation else []
    header += ["ratio", "target", "met?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows(results):
        met = "n/a" if row.met is None else ("yes" if row.met else "**no**")
        cells = [f"{row.metric} ({row.unit})" if row.unit else row.metric]
        cells += [
            _seconds(row.values.get(s)) if row.unit == "s" else _cell(row.values.get(s))
            for s in shown
        ]
        cells += [row.ratio, row.target, met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_json(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "metric": r.metric,
            "unit": r.unit,
            **{s: r.values.get(s) for s in SYSTEMS},
            "ratio": r.ratio,
            "target": r.target,
            "met": r.met,
        }
        for r in rows(results)
    ]


def _tail_lines(results: dict[str, Any]) -> list[str]:
    """Where the one-room p99 of each system's first ramp step and of H2's fixed loads was made:
    the p99 of the step's first tenth of frames against the rest's (results from before stop 30
    do not have them: no lines)."""
    lines = []
    for system in (*SYSTEMS, "c0-again"):
        sc = results["systems"].get(system, {}).get("h1_1room")
        if not isinstance(sc, dict) or not sc.get("steps"):
            continue
        steps = [(sc["steps"][0], "first step"), *((f, "fixed") for f in sc.get("fixed", []))]
        parts = [
            f"{label} {step['rate_per_room'] * step['clients']:,.0f}/s {step['p99_ms']} "
            f"({step['p99_head_ms']} / {step['p99_rest_ms']})"
            for step, label in steps
            if step.get("p99_head_ms") is not None
        ]
        if parts:
            lines.append(f"- {system}: {'; '.join(parts)}")
    if not lines:
        return []
    return [
        "",
        "One room: where the p99 was made (offered frames/s, p99 ms, and in brackets the p99 of "
        "the step's first tenth of frames / of the rest):",
        "",
        *lines,
    ]


def _h4_lines(results: dict[str, Any]) -> list[str]:
    h4 = results.get("h4")
    if not isinstance(h4, dict):
        return []
    lines = ["", "H4 (one announcement; seconds from the call's start):", ""]
    if "error" in h4:
        lines.append(f"- could not run: {h4['error']}")
    for system in ("minga", "b0"):
        side = h4.get(system)
        if not isinstance(side, dict):
            continue
        if "error" in side:
            lines.append(f"- {system}: could not run: {side['error']}")
            continue
        text = (
            f"- {system}: {side['rows']:,} rows, rows committed {side['t_rows_s']}, "
            f"call returned {side['t_call_s']}, first push {side['t_first_push_s']}, "
            f"last push {side['t_push_s']} ({side['online']:,} online, {side['lost']} lost, "
            f"{side['duplicates']} duplicated); clients connected in {side['connect_seconds']} s"
        )
        if system == "minga":
            text += f"; email modes {side['email_modes']}; seeded in {side['seed_seconds']} s"
        lines.append(text)
    return lines


def _h5_lines(results: dict[str, Any]) -> list[str]:
    h5 = results.get("h5")
    if not isinstance(h5, dict):
        return []
    lines = ["", "H5 (HTTP p50/p99 in ms; one request at a time at a fixed rate):", ""]
    if "error" in h5:
        return [*lines, f"- could not run: {h5['error']}"]
    lines.append(f"- H1 load: {h5['h1_frames_per_s']:,} frames/s, {h5['h1_rate_source']}")
    for system in ("minga", "minga-pages", "c0", "b0"):
        side = h5.get(system)
        if not isinstance(side, dict):
            continue
        label = (
            "c0 (the floor: Minga's pages while C0 carried the load)" if system == "c0" else system
        )
        if "error" in side:
            lines.append(f"- {label}: could not run: {side['error']}")
            continue
        pages = [
            f"{name} {phase} {v['p50_ms']}/{v['p99_ms']} ({v['requests']} requests)"
            for phase in ("idle", "load")
            for name, v in side[phase].items()
            if isinstance(v, dict)
        ]
        h1 = side["h1"]
        lines.append(
            f"- {label}: {', '.join(pages)}; H1 meanwhile: {h1['received']:,} of "
            f"{h1['expected']:,} frames ({h1['lost']:,} lost at the drain), "
            f"{h1['delivered_per_s']:,}/s in the window, p50 {h1['p50_ms']} p99 {h1['p99_ms']} "
            f"ms, messages sent at {h1['sent_rate']}/s of {h1['rate_per_room']}/s asked"
        )
    return lines


# Readings further apart than this are called out: a ratio across those phases carries the drift.
SPEED_DRIFT = 1.2


def speed_line(results: dict[str, Any]) -> str | None:
    """The machine's speed before each phase (`bench.__main__.speed_probe`), or None for a
    results file from before the probe (stop 20)."""
    speeds = {k: v for k, v in (results.get("speed_ms") or {}).items() if v}
    if not speeds:
        return None
    fastest, slowest = min(speeds.values()), max(speeds.values())
    line = (
        "Machine speed before each phase (a fixed Python loop, ms, lower is faster): "
        + ", ".join(f"{phase} {ms}" for phase, ms in speeds.items())
        + "."
    )
    if slowest / fastest >= SPEED_DRIFT:
        line += (
            f" The slowest reading is {slowest / fastest:.2f} x the fastest: the machine's speed"
            " moved between phases, and a ratio between systems measured in different phases"
            " carries that."
        )
    stolen = steal_between(results)
    if stolen:
        worst = max(stolen, key=lambda item: item[1])
        line += (
            " CPU time the host gave to other guests (steal), between readings: "
            + ", ".join(f"{phase} {pct:.1f} %" for phase, pct in stolen)
            + f"; the most, {worst[1]:.1f} %, {worst[0]}."
        )
    return line


def steal_between(results: dict[str, Any]) -> list[tuple[str, float]]:
    """The share of the machine's CPU time the hypervisor took between consecutive speed
    readings (`cpu_clock`, read with each), as (`"c0 to b0"`, %), in the run's order."""
    clock = list((results.get("cpu_clock") or {}).items())
    out: list[tuple[str, float]] = []
    for (before, a), (after, b) in itertools.pairwise(clock):
        total = b["total_s"] - a["total_s"]
        if total > 0:
            out.append((f"{before} to {after}", 100 * (b["steal_s"] - a["steal_s"]) / total))
    return out


def transport_line(results: dict[str, Any]) -> str | None:
    """How Minga's processes reached Redis and PostgreSQL, where the run recorded it (runs
    before stop 31 did not: TCP)."""
    transport = results.get("minga_transport")
    if transport is None:
        return None
    how = {"unix": "over their unix sockets", "tcp": "over TCP on 127.0.0.1"}.get(transport)
    return (
        f"Minga's processes reached Redis and PostgreSQL {how or transport}; the peers reach "
        "Redis over TCP, as the tutorial does."
    )


def markdown(results: dict[str, Any]) -> str:
    """The section docs/performance.md keeps: the table, the machine, the load, the details."""
    m = results["machine"]
    lines = [
        f"## Latest results ({results['mode']} run, {results['date']})",
        "",
        f"Command: `{results['command']}` ({results['seconds']:.0f} s). Machine: {m['cpu']}, "
        f"{m['cores']} cores, {m['ram_gib']} GiB, {m['os']}, Python {m['python']}, "
        f"{m['redis']}. Load average at start {m['load_average_at_start']}, at end "
        f"{m.get('load_average_at_end')}: the load generator, the servers, Redis and PostgreSQL "
        "shared the two cores with other work, whose CPU share during each window is in the "
        "JSON (`others_cpu_pct`, in % of one core).",
        "",
        *([line, ""] if (line := transport_line(results)) else []),
        *([line, ""] if (line := speed_line(results)) else []),
        table(results),
        "",
        "Per system, the best passing H1 step (frames/s delivered in the window; p50/p99 ms; "
        "server CPU per frame; load generator and other work in % of one core):",
        "",
    ]
    for system in (*SYSTEMS, "c0-again", "c0t", "c0d"):
        data = results["systems"].get(system)
        if not isinstance(data, dict):
            continue
        for scenario in ("h1_1room", "h1_10rooms"):
            sc = data.get(scenario)
            if not isinstance(sc, dict):
                continue
            if "error" in sc:
                lines.append(f"- {system} {scenario}: could not run: {sc['error']}")
                continue
            best = sc.get("best")
            # The failure that bounds the best pass: the lowest failing rate above it.
            floor = best["rate_per_room"] if best else 0
            failed = sorted(
                (s for s in sc.get("steps", []) if not s["passed"] and s["rate_per_room"] > floor),
                key=lambda s: s["rate_per_room"],
            )
            text = f"- {system} {scenario}: "
            text += (
                f"{best['delivered_per_s']:,}/s, p50 {best['p50_ms']}, p99 {best['p99_ms']}, "
                f"{best['server_us_per_frame']} us/frame, generator {best['loadgen_cpu_pct']} %, "
                f"others {best['others_cpu_pct']} %"
                if best
                else "no passing step"
            )
            if failed:
                f = failed[0]
                text += (
                    f"; lowest failure{' above it' if best else ''} at "
                    f"{f['rate_per_room'] * f['clients']:,.0f}/s offered: "
                    f"lost {f['lost']}, p99 {f['p99_ms']} ms"
                )
            send = sc.get("send_best")
            if send:
                text += f"; via message.send: {send['delivered_per_s']:,}/s, p99 {send['p99_ms']}"
            elif sc.get("send_steps"):
                s0 = sc["send_steps"][0]
                text += (
                    f"; via message.send: no passing step (first: p50 {s0['p50_ms']}, "
                    f"ack p50 {s0['ack_p50_ms']} ms)"
                )
            lines.append(text)
    lines += _tail_lines(results)
    lines += _h4_lines(results)
    lines += _h5_lines(results)
    if results.get("peer_losses"):
        lines += ["", f"Peer losses past their limit: {', '.join(results['peer_losses'])}."]
    if results.get("peer_errors"):
        lines += ["", f"Peer scenarios that broke down: {'; '.join(results['peer_errors'])}."]
    if results.get("ceilings"):
        c = results["ceilings"]
        lines += [
            "",
            "Ceilings without websockets: redis-benchmark PUBLISH "
            f"{c.get('redis_publish', {}).get('publish_per_s')}/s; PostgreSQL "
            f"`INSERT ... SELECT generate_series` of 10,000 inbox-shaped rows "
            f"{c.get('pg_insert_10k', {}).get('seconds')} s.",
        ]
    if results.get("problems"):
        lines += ["", "Problems reported by the run:", ""]
        lines += [f"- {p}" for p in results["problems"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report RESULTS.json`: the results section of docs/performance.md."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description="docs/performance.md's results section"
    )
    parser.add_argument("results", type=Path, help="a run's JSON (bench/results/latest.json)")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as error:
        parser.error(f"cannot read {args.results}: {error}")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
