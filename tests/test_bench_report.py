"""`python -m bench.report`: a results file it cannot read is refused with its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report


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
