"""daphne's keepalive through a short path of its own, in place of autobahn's general frame code.

daphne pings every open websocket that sent nothing for `ping_interval` (30 s as deployed, ADR
0019; 20 s is daphne's default, which the peers in bench/ keep; its timeout sweep,
`forums.sweeps`) and closes one whose pong has not come within `ping_timeout` (30 s, autobahn's
auto-ping timer). At 10,000 silent sockets and 20 s that was 500 pings sent and 500 pongs read a
second, and a py-spy profile of the idle gateway put about half of its samples there: the ping through
autobahn's `_sendAutoPing`, `sendPing`, `sendFrame` and the write, the pong through autobahn's
frame parser (`consumeData`, `processData` twice, a masker object, `onFrameBegin`,
`onFrameData`, `onFrameEnd`) (docs/performance.md, "H3 idle: the keepalive's own path").

- **The ping** (`send_auto_ping`, as autobahn's `_sendAutoPing`, which daphne's
  `check_timeouts` calls): the same payload (the send time in nanoseconds, the sequence number,
  `autoPingSize - 12` random bytes), the same state and the same pong timeout on the factory's
  batched timer, handed as one unmasked frame to `sendData` (under daphne, `forums.transport`'s
  direct write).
- **The pong** (`data_received`, before autobahn's `_dataReceived`): a read that is exactly one
  whole masked pong frame, arriving between frames with nothing buffered, is unmasked here and
  handed to autobahn's own `processControlFrame`, as its parser hands a pong. The pong's check
  against the pending ping, the timer's cancel and the application's `onPong` stay autobahn's.

Anything else takes autobahn's path unchanged: a socket not open, a frame split across reads or
sharing one, an unmasked pong (a protocol violation autobahn reports), frame or octet logging,
a waiting send queue, and debug logging (so autobahn's debug lines are written as before).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from typing import Any

from txaio import tx

PONG = 0x8A  # FIN, no RSV bits, opcode 10
PING = 0x89  # FIN, no RSV bits, opcode 9
MASKED = 0x80
MASK_LENGTH = 4
CONTROL_PAYLOAD_MAX = 125  # RFC 6455 5.5
PING_HEADER = 12  # autobahn's auto-ping payload: 8 bytes of send time, 4 of sequence number


def debug_on(log: Any) -> bool:
    """Whether `log` writes debug lines: txaio makes the method of a level that is off its
    no-op, so an argument built for a debug call while debug is off is built for nothing."""
    return log.debug is not tx._no_op


def unmask(mask: bytes, masked: bytes) -> bytes:
    """RFC 6455 5.3: each payload byte XOR the mask byte at its position modulo 4."""
    length = len(masked)
    if not length:
        return b""
    key = (mask * (length // MASK_LENGTH + 1))[:length]
    return (int.from_bytes(masked) ^ int.from_bytes(key)).to_bytes(length)


def send_auto_ping(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """Autobahn's `_sendAutoPing` (a ping, then the pong's timeout) written directly."""

    def _sendAutoPing(self: Any) -> None:  # noqa: N802 - autobahn's name
        size = self.autoPingSize
        if (
            self.state != self.STATE_OPEN
            or self.transport is None
            or self.send_queue
            or self.logFrames
            or self.logOctets
            or self.maskServerFrames
            or not PING_HEADER <= size <= CONTROL_PAYLOAD_MAX
            or debug_on(self.log)
        ):
            original(self)
            return
        self.autoPingPendingCall = None
        self.autoPingPendingSent = time.time_ns()
        self.autoPingPendingSeq += 1
        self.autoPingPending = struct.pack(
            ">QL", self.autoPingPendingSent, self.autoPingPendingSeq
        ) + os.urandom(size - PING_HEADER)
        # Under daphne sendData is forums.transport's direct write: it writes and counts octets.
        self.sendData(bytes((PING, size)) + self.autoPingPending)
        if self.autoPingTimeout:
            self.autoPingTimeoutCall = self.factory._batched_timer.call_later(
                self.autoPingTimeout, self.onAutoPingTimeout
            )

    _sendAutoPing.minga_keepalive = True  # type: ignore[attr-defined]
    return _sendAutoPing


def data_received(original: Callable[[Any, bytes], None]) -> Callable[[Any, bytes], None]:
    """Autobahn's `_dataReceived`, with a read that is one whole masked pong taken short."""
    from autobahn.websocket.protocol import FrameHeader

    def _dataReceived(self: Any, data: bytes) -> None:  # noqa: N802 - autobahn's name
        length = len(data)
        if (
            length < 2 + MASK_LENGTH
            or data[0] != PONG
            or data[1] & 0x7F > CONTROL_PAYLOAD_MAX
            or length != 2 + MASK_LENGTH + (data[1] & 0x7F)
            or not data[1] & MASKED
            or self.state != self.STATE_OPEN
            or self.current_frame is not None
            or self.data
            or self.logOctets
            or self.logFrames
            or not self.applyMask
        ):
            original(self, data)
            return
        self.trafficStats.incomingOctetsWireLevel += length
        mask = data[2 : 2 + MASK_LENGTH]
        payload = unmask(mask, data[2 + MASK_LENGTH :])
        self.control_frame_data = [payload]
        self.current_frame = FrameHeader(10, True, 0, len(payload), mask)
        try:
            self.processControlFrame()
        finally:
            self.current_frame = None

    _dataReceived.minga_keepalive = True  # type: ignore[attr-defined]
    return _dataReceived


def install(protocol_class: Any) -> None:
    """Put both short paths on `protocol_class` (daphne's WebSocketProtocol), once."""
    if getattr(protocol_class._sendAutoPing, "minga_keepalive", False):
        return
    protocol_class._sendAutoPing = send_auto_ping(protocol_class._sendAutoPing)
    protocol_class._dataReceived = data_received(protocol_class._dataReceived)
