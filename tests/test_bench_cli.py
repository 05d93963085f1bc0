"""`python -m bench` refuses options it cannot honour, with the reason, before it starts anything."""

from __future__ import annotations

import pytest

from bench.__main__ import main


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--h5-pages-nice", "30"], "--h5-pages-nice must be between -20 and 19"),
        (
            ["--no-h5-split", "--h5-pages-nice", "-5"],
            "--h5-pages-nice sets the pages-apart side's process: drop --no-h5-split",
        ),
        (["--poster-threads", "0"], "--poster-threads must be between 1 and 64"),
        (["--only", "c0,c9"], "unknown systems ['c9']"),
        (["--h5-rate", "0"], "--h5-rate must be a positive number of frames/s"),
    ],
)
def test_an_option_it_cannot_honour_is_refused_with_the_reason(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(argv)

    assert refused.value.code == 2
    assert reason in capsys.readouterr().err
