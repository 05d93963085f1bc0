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
