"""minga.signals.send_on_commit: after commit only, and a failing receiver harms nobody."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import transaction
from django.dispatch import Signal
from minga.signals import send_on_commit

pytestmark = pytest.mark.django_db


class Sender:
    pass


def test_failing_receiver_is_logged_and_the_others_still_run(
    django_capture_on_commit_callbacks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Arrange
    signal = Signal()
    heard: list[int] = []

    def broken(sender: type, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    def working(sender: type, **kwargs: Any) -> None:
        heard.append(kwargs["n"])

    signal.connect(broken, weak=False)
    signal.connect(working, weak=False)

    # Act
    with (
        caplog.at_level(logging.ERROR, logger="minga.signals"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        send_on_commit(signal, Sender, n=7)

    # Assert
    assert heard == [7]
    mine = [r.getMessage() for r in caplog.records if r.name == "minga.signals"]
    assert mine == ["signal receiver failed"]


def test_nothing_is_sent_for_a_write_that_rolls_back(
    django_capture_on_commit_callbacks: Any,
) -> None:
    signal = Signal()
    heard: list[int] = []
    signal.connect(lambda sender, **kwargs: heard.append(kwargs["n"]), weak=False)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                send_on_commit(signal, Sender, n=1)
                raise RuntimeError("rollback")
        except RuntimeError:
            pass

    assert (heard, callbacks) == ([], [])
