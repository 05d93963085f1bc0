"""Long runs of the fault families (tests/reliability/test_faults.py): more sockets, more load,
longer outages. Each prints the same `FAMILY: figure` line with "(soak)"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.support import report
from tests.reliability.test_faults import (
    Site,
    check_daphne_restart,
    check_redis_fault,
    check_slow_consumer,
    daphne_restart,
    email_worker_kill,
    redis_fault,
    site,  # noqa: F401 - the fixture
    slow_consumer,
)

pytestmark = [pytest.mark.soak, pytest.mark.redis, pytest.mark.postgres]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["kill", "pause"])
async def test_soak_redis_fault(site: Site, mode: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    result = await redis_fault(site, mode=mode, listeners=40, posters=6, outage=10, settle=5)

    report(
        capsys, "REDIS-RESTART (soak)" if mode == "kill" else "REDIS-PAUSE (soak)", result.figure()
    )
    check_redis_fault(result, paused=mode == "pause")


@pytest.mark.django_db(transaction=True)
async def test_soak_daphne_restart(site: Site, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    result = await daphne_restart(site, listeners=40, posters=4, down=5)

    report(capsys, "DAPHNE-RESTART (soak)", result.figure())
    check_daphne_restart(result)


@pytest.mark.django_db(transaction=True)
async def test_soak_slow_consumer(site: Site, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    result = await slow_consumer(site, readers=20, posters=6, body_chars=16_000, phase=10)

    report(capsys, "SLOW-CONSUMER (soak)", result.figure())
    check_slow_consumer(result)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("hold_at", ["RCPT"])  # "DATA" runs in make test
def test_soak_email_worker_killed_mid_send(
    plan: None, hold_at: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    email_worker_kill(hold_at=hold_at, tmp_path=tmp_path, capsys=capsys)
