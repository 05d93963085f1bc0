"""Schemathesis over /api/v1/schema/, in-process through Django's WSGI application.

Shared by the bounded run in the normal suite (tests/reliability/test_api_fuzz.py) and the long
one behind `make soak` (soak/test_api_fuzz_soak.py). Checks: no 5xx, and every response matches
the schema the API publishes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

CHECKS = [not_a_server_error, response_schema_conformance]


@dataclass
class FuzzResult:
    operations: int = 0
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


# Known 500s, each pinned by a strict xfail in tests/reliability/test_api_fuzz.py and described in
# docs/reliability.md. Cases that would only rediscover them are counted and skipped, so the fuzz
# keeps looking for new ones. Remove an entry when its defect is fixed.
_OFFSET = re.compile(r"[+-](1[6-9]|[2-9][0-9]):?[0-9]{2}$")


def _values(case: Any) -> list[str]:
    out: list[str] = []
    for part in (case.path_parameters or {}, case.query or {}):
        for value in part.values():
            out.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    return out


def known_defect(case: Any) -> str | None:
    values = _values(case)
    if any("\x00" in v for v in values):
        return "NUL in a parameter (400; tested apart: it aborts the test transaction)"
    if case.path.startswith("/api/v1/events/") and any(_OFFSET.search(v) for v in values):
        return "UTC offset beyond +-15:59 (400; tested apart: it aborts the test transaction)"
    return None


def run(*, headers: dict[str, str], max_examples: int) -> FuzzResult:
    """Every operation of the API with `max_examples` generated cases each."""
    # As Django's test client does: a test's transaction must outlive each request, so the
    # handler's connection clean-up is switched off while the fuzz runs.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        return _run(headers=headers, max_examples=max_examples)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _run(*, headers: dict[str, str], max_examples: int) -> FuzzResult:
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
    result = FuzzResult()
    for found in schema.get_all_operations():
        _fuzz_operation(found.ok(), headers=headers, max_examples=max_examples, result=result)
    return result


def _fuzz_operation(
    operation: Any, *, headers: dict[str, str], max_examples: int, result: FuzzResult
) -> None:
    result.operations += 1

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def call(case: Any) -> None:
        known = known_defect(case)
        if known is not None:
            result.skipped[known] = result.skipped.get(known, 0) + 1
            return
        result.cases += 1
        try:
            response = case.call(headers=headers)
            status = response.status_code
            result.statuses[status] = result.statuses.get(status, 0) + 1
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as failure:
            # Collected for the figure; schemathesis also raises its failures through hypothesis,
            # which then fails the test with a reproduction (curl command).
            result.failures.append(f"{operation.label}: {failure!s:.400}")
            raise

    call()


def figure(who: str, result: FuzzResult) -> str:
    server_errors = sum(n for status, n in result.statuses.items() if status >= 500)
    return (
        f"as {who}: operations {result.operations}, cases {result.cases}, 5xx {server_errors}, "
        f"failed checks {len(result.failures)}; statuses {dict(sorted(result.statuses.items()))}; "
        f"skipped as known defects {sum(result.skipped.values())}"
    )
