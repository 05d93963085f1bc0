"""`/healthz`: 200 when the database and the channel layer answer, 503 naming what did not."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse

from notifications import bus

logger = logging.getLogger("minga.health")
TIMEOUT_SECONDS = 2.0


def _database_answers() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # This runs on a worker thread outside the request cycle: give the connection back.
        connection.close()


async def _check(name: str, probe: object) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, TIMEOUT_SECONDS)  # type: ignore[arg-type]
    except Exception as exc:
        logger.warning("health check failed", extra={"part": name, "error": repr(exc)})
        return name, "unavailable"
    return name, "ok"


async def healthz(request: HttpRequest) -> JsonResponse:
    results = dict(
        await asyncio.gather(
            _check("database", sync_to_async(_database_answers, thread_sensitive=False)()),
            _check("channel_layer", bus.ping()),
        )
    )
    failing = sorted(name for name, state in results.items() if state != "ok")
    body = {"status": "fail" if failing else "ok", "checks": results, "failing": failing}
    return JsonResponse(body, status=503 if failing else 200, headers={"Cache-Control": "no-store"})
