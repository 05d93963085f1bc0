"""Sending domain signals after commit: one helper for every app (a leaf: imports Django only)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger("minga.signals")


def send_on_commit(signal: Signal, sender: type, **kwargs: Any) -> None:
    """Send `signal` once the current transaction commits; receivers' errors are logged.

    Nothing is sent for a write that rolls back, and a failing receiver neither stops the others
    nor turns a committed write into an error for the caller.
    """

    def send() -> None:
        for receiver, result in signal.send_robust(sender=sender, **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "signal receiver failed",
                    extra={
                        "signal_sender": sender.__name__,
                        "receiver": getattr(receiver, "__qualname__", repr(receiver)),
                    },
                    exc_info=result,
                )

    transaction.on_commit(send, robust=True)
