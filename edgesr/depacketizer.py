"""Robot side, no I/O: raw packets -> frames. Parity or data (edgesr.fec) -> FEC recovery -> decode (CRC, HMAC:
edgesr.protocol) -> assembly (edgesr.assembly). The receiver, the link studies and the tests all feed raw bytes
through this one path: ``feed(raw, now)`` returns the frames that became complete (or were given up on)."""
from __future__ import annotations

import logging

from .assembly import Frame, FrameAssembler, Limits
from .backchannel import encode_request
from .errors import ProtocolError
from .fec import Recovery, is_parity, parity_share
from .protocol import AuthError, decode_packet

log = logging.getLogger("edgesr.depacketizer")


class Depacketizer:
    """``fec_wait``: how long an H.264 unit with a lost packet waits for parity (its twin decoder shows frames
    meanwhile); 0: units decode as they come, concealing (a rebuilt packet of a frame already shown is then late)."""

    def __init__(self, key: bytes | None = None, limits: Limits | None = None, fec_wait: float = 5.0):
        self.key = key
        self.limits = limits or Limits()
        self.recovery = Recovery(max_bytes=self.limits.max_frame_bytes)
        self.assembler = FrameAssembler(limits=self.limits, recovery=self.recovery if fec_wait > 0 else None,
                                        hold_s=fec_wait)
        self.stats = {"packets": 0, "bytes": 0, "bad_packets": 0, "auth_failures": 0}
        self.valid = False  # whether the last fed packet was a valid data packet (CRC, and the HMAC with a key)
        self._warned_h264 = False

    def feed(self, raw: bytes, now: float) -> list[Frame]:
        """One packet off the link, as it came: the frames it completes."""
        self.stats["packets"] += 1
        self.stats["bytes"] += len(raw)
        self.valid = False
        if is_parity(raw):
            return [f for data in self.recovery.parity(raw) for f in self._data(data, now)]
        return self._data(raw, now)

    def _data(self, raw: bytes, now: float) -> list[Frame]:
        try:
            p = decode_packet(raw, self.key)
        except AuthError:
            self.stats["auth_failures"] += 1
            return []
        except ProtocolError:
            self.stats["bad_packets"] += 1
            return []
        self.valid = True
        self.recovery.data(raw)
        frames = self.assembler.add(p, now)
        if self.assembler.stats["no_decoder"] and not self._warned_h264:  # H.264 arrives, and this robot
            log.warning("%s", self.assembler.last_error)                    # cannot decode it
            self._warned_h264 = True
        return frames

    def expire(self, now: float, max_age: float) -> list[Frame]:
        """Frames that got no packet for ``max_age`` seconds, emitted partial (edgesr.assembly)."""
        return self.assembler.expire(now, max_age)

    def requests(self, now: float) -> list[bytes]:
        """Refresh requests due now (edgesr.backchannel), ready to send back to the device."""
        return [encode_request(stream, seq, self.key) for stream, seq in self.assembler.broken.due(now)]

    def loss(self, local_drops: int = 0) -> dict:
        """Packet loss on the link (before FEC rebuilt any; ``local_drops``: packets this machine dropped, e.g. a
        full socket queue, which are no loss of the link) and the sink ``fec`` it calls for."""
        a = self.assembler.stats
        expected = a["packets_expected"] + a["units_lost"]  # H.264 units lost whole: a packet each
        got = a["packets_received"] - self.recovery.stats.get("recovered", 0) + local_drops
        if not expected:
            return {}
        loss = round(min(1.0, max(0.0, 1 - got / expected)), 4)
        frame_bytes = self.stats["bytes"] / max(1, a["frames"])
        return {"packet_loss": loss, "suggested_fec": round(parity_share(loss, frame_bytes), 2)}
