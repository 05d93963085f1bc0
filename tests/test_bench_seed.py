"""The benchmark's seed refuses arguments it cannot use, and H5's busy thread fills one page."""

from __future__ import annotations

import pytest

from bench import h5, minga_seed
from forums.views import PAGE_SIZE


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "unknown command ''"),
        (["mesages", "1", "2"], "unknown command 'mesages'"),
        (["messages", "12"], "messages takes 2 whole number(s)"),
        (["messages", "12", "many"], "messages takes 2 whole number(s)"),
        (["sessions", "1.5"], "sessions takes 1 whole number(s)"),
        (["threads", "3"], "threads takes 0 whole number(s)"),
    ],
)
def test_the_seed_refuses_arguments_it_cannot_use_before_touching_the_database(
    argv: list[str], said: str
) -> None:
    with pytest.raises(SystemExit) as refused:
        minga_seed.main(argv)

    assert str(refused.value).startswith(said), refused.value
    assert minga_seed.USAGE in str(refused.value)


def test_h5s_thread_shows_exactly_one_full_page() -> None:
    assert h5.THREAD_MESSAGES + 1 == PAGE_SIZE
