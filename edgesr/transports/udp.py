"""UDP: one packet per datagram (kept under the MTU), unicast or multicast."""
from __future__ import annotations

import ipaddress
import select
import socket
import struct

from ..errors import listen_error
from .base import PacketSink


def _is_multicast(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_multicast
    except (OSError, ValueError):
        return False


class UDPSink(PacketSink):
    def __init__(self, endpoint, **kw):
        super().__init__(endpoint, **kw)
        self.addr, self.ttl = (endpoint.host, endpoint.port), endpoint.ttl

    def open(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if _is_multicast(self.addr[0]):
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)

    def send(self, f) -> bool:
        self.poll()
        for p in self.encoder.packets(f):
            if not self.pace(len(p)):
                return False
            try:
                self.sock.sendto(p, self.addr)
                self.count(p)
            except OSError:  # e.g. ECONNREFUSED from a previous datagram, no route: the next frame retries
                self.stats["send_errors"] += 1
        return True

    def poll(self) -> None:
        """Robots' refresh requests that came back to this socket (at most 64 a frame: a flood is cut short)."""
        for _ in range(64):
            try:
                if not select.select([self.sock], [], [], 0)[0]:
                    return
                data = self.sock.recv(256)
            except OSError:  # not bound yet (nothing sent), or closed
                return
            self.encoder.on_request(data)

    def close(self, timeout: float = 1.5) -> None:
        super().close(timeout)
        self.sock.close()


SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # Linux: datagrams the kernel dropped, with each datagram


class UDPReader:
    """Binds HOST:PORT (joins the group for a multicast address) and returns datagrams. ``kernel_drops``: datagrams
    the kernel dropped because this socket's queue was full (Linux SO_RXQ_OVFL): a local drop, not link loss."""

    def __init__(self, endpoint):
        host, port = endpoint.host, endpoint.port
        self.peer = None  # where the stream comes from (the last valid packet's source): the back channel's address
        self.sources: list = []  # the source of each datagram of the last read()
        self.kernel_drops = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # bursts of a few frames (the receiver drains the socket continuously: nothing waits here normally)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        except OSError:  # not Linux: drops are not counted
            pass
        try:
            if _is_multicast(host):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # several robots on one host
                self.sock.bind(("", port))
                mreq = struct.pack("4s4s", socket.inet_aton(socket.gethostbyname(host)), socket.inet_aton("0.0.0.0"))
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            else:
                self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise listen_error(endpoint.url, host, port, e) from None

    def _recv(self) -> tuple[bytes, object]:
        data, anc, _, addr = self.sock.recvmsg(65535, socket.CMSG_SPACE(4))
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                self.kernel_drops = struct.unpack("=I", value[:4])[0]  # the socket's running count
        return data, addr

    def read(self, timeout: float = 0.5) -> list[bytes]:
        try:
            self.sock.settimeout(timeout)
            data, addr = self._recv()
            out, self.sources = [data], [addr]
        except OSError:  # timeout, or the socket was closed by close() from another thread
            return []
        try:
            self.sock.setblocking(False)  # close() from another thread may have closed it since: OSError
            while len(out) < 256:
                data, addr = self._recv()
                out.append(data)
                self.sources.append(addr)
        except (BlockingIOError, OSError):
            pass
        return out

    def trust(self, i: int) -> None:
        """Datagram ``i`` of the last read() was a valid packet (CRC, and HMAC with a key): answer its source, not
        whoever sent garbage last."""
        self.peer = self.sources[i]

    def send_back(self, raw: bytes) -> None:
        """A refresh request to the device (edgesr.protocol.encode_request), to where the stream comes from."""
        if self.peer is not None:
            try:
                self.sock.sendto(raw, self.peer)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
