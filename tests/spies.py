"""Recording calls of a real function while it still runs: a test's spy, in one place."""

from __future__ import annotations

from typing import Any

import pytest


def record_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Any]:
    """Replace `owner.name` (a module's function, looked up at call time) for this test with a
    wrapper that records each call's first argument, then calls the real one; the list fills
    as calls arrive, from any thread."""
    calls: list[Any] = []
    real = getattr(owner, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0] if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls
