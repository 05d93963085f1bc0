"""Long runs of the reliability families: more examples than the normal suite can afford."""

from __future__ import annotations

import pytest

from tests.reliability import api_fuzz, test_socket_fuzz
from tests.reliability.support import report
from tests.reliability.test_api_fuzz import _token_headers

pytestmark = [pytest.mark.soak]

SOCKET_EXAMPLES = 600
API_EXAMPLES = 150


@pytest.mark.django_db(transaction=True)
def test_soak_socket_fuzz(
    plan: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(test_socket_fuzz, "MAX_EXAMPLES", SOCKET_EXAMPLES)

    test_socket_fuzz.test_socket_fuzz_answers_stay_in_the_protocol_and_bystander_keeps_receiving(
        plan, monkeypatch, capsys
    )


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["member", "anonymous"])
def test_soak_api_fuzz(plan: None, who: str, capsys: pytest.CaptureFixture[str]) -> None:
    headers = _token_headers(plan) if who == "member" else {}

    result = api_fuzz.run(headers=headers, max_examples=API_EXAMPLES)

    report(capsys, "API-FUZZ (soak)", api_fuzz.figure(who, result))
    if result.failures:
        pytest.fail("\n".join(result.failures))
