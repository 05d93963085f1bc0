"""A member flooding a room over the socket and the API at once, in a process of its own.

Run by soak/test_flood_latency_servers_soak.py, so the flood's client work does not share the
measuring process's event loop. Usage:

    python -m soak.flood_client WS_URL ORIGIN HTTP_ORIGIN[,HTTP_ORIGIN...] TOKEN THREAD_ID RATE

It subscribes to wg1-a, then sends `message.send` frames over its socket and API posts (round
robin over the HTTP origins), each at RATE per second, until a line (or EOF) arrives on stdin.
It prints `refused` on the first `rate_limited` answer, and at the end one JSON line:
{"socket": {answer: count}, "api": {answer: count}, "offered": {"socket": n, "api": n}}, where
an answer is "accepted" or an error code (HTTP: "<status> <code>").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

import requests
from websockets.asyncio.client import connect

ROOM = "wg1-a"


class Flood:
    def __init__(self, token: str, thread_id: int, rate: float) -> None:
        self.token = token
        self.thread_id = thread_id
        self.interval = 1 / rate
        self.stop = threading.Event()
        self.refused = threading.Event()
        self.lock = threading.Lock()
        self.answers: dict[str, Counter[str]] = {"socket": Counter(), "api": Counter()}
        self.offered = Counter[str]()
        self.run = uuid.uuid4().hex[:8]  # bodies unique across runs: "flood-api <run> <n>"
        self.sent: int | None = None  # socket frames sent, once the flood stopped
        self.drained = asyncio.Event()

    def answered(self, transport: str, answer: str) -> None:
        with self.lock:
            self.answers[transport][answer] += 1
        if answer.endswith("rate_limited") and not self.refused.is_set():
            self.refused.set()
            print("refused", flush=True)

    def api(self, origins: list[str]) -> None:
        """Post at the rate (catching up, never bursting, when a request took longer)."""
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.token}"
        n, due = 0, time.monotonic()
        while not self.stop.is_set():
            origin = origins[n % len(origins)]
            n += 1
            self.offered["api"] += 1
            answer = session.post(
                f"{origin}/api/v1/threads/{self.thread_id}/messages/",
                json={"body": f"flood-api {self.run} {n}", "client_id": str(uuid.uuid4())},
                timeout=30,
            )
            if answer.status_code == 201:
                self.answered("api", "accepted")
            else:
                self.answered("api", f"{answer.status_code} {answer.json().get('code')}")
            due = max(due + self.interval, time.monotonic())
            self.stop.wait(max(0.0, due - time.monotonic()))

    async def socket(self, url: str, origin: str) -> None:
        async with connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers={"Authorization": f"Token {self.token}"},
            open_timeout=10,
        ) as ws:
            await ws.send(json.dumps({"type": "subscribe", "room": ROOM, "after": None}))
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
            reader = asyncio.create_task(self._read(ws))
            n = 0
            while not self.stop.is_set():
                n += 1
                self.offered["socket"] += 1
                frame = {
                    "type": "message.send",
                    "room": ROOM,
                    "thread": self.thread_id,
                    "body": f"flood-socket {self.run} {n}",
                    "client_id": str(uuid.uuid4()),
                }
                await ws.send(json.dumps(frame))
                await asyncio.sleep(self.interval)
            # Every frame sent gets its ack or error.
            self.sent = n
            if self._all_answered():
                self.drained.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), 30)
            reader.cancel()

    def _all_answered(self) -> bool:
        return self.sent is not None and sum(self.answers["socket"].values()) >= self.sent

    async def _read(self, ws: Any) -> None:
        async for text in ws:
            frame = json.loads(text)
            if frame["type"] == "ack":
                self.answered("socket", "accepted")
            elif frame["type"] == "error" and frame.get("client_id"):
                self.answered("socket", frame["code"])
            if self._all_answered():
                self.drained.set()


async def main(argv: list[str]) -> None:
    ws_url, ws_origin, http_origins, token, thread_id, rate = argv
    flood = Flood(token, int(thread_id), float(rate))

    def wait_for_stop() -> None:
        sys.stdin.readline()
        flood.stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    api = asyncio.create_task(asyncio.to_thread(flood.api, http_origins.split(",")))
    try:
        await flood.socket(ws_url, ws_origin)
    finally:
        flood.stop.set()  # a failed socket stops the API half too
        await api
    print(
        json.dumps(
            {
                "socket": dict(flood.answers["socket"]),
                "api": dict(flood.answers["api"]),
                "offered": dict(flood.offered),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
