"""A TCP proxy in front of each ZooKeeper server, to cut, blackhole or drop replies.

Faults, as a partitioned network shows them to a client:
- `blackhole()`: bytes stop flowing both ways, connections stay open (a silent partition:
  the client only notices through its own ping time-out);
- `cut()`: every connection is closed and new ones are closed at once (a refused network);
- `drop_reply_after_create()`: the next create of a candidate's znode (`/candidate-` in
  its path; alone, or in a transaction with its presence marker) reaches the server, but
  the connection is closed before the reply comes back (a lost reply; the creates of the
  election's path that go out with it are let through);
- `delay(seconds)`: every chunk of bytes waits that long before it is passed on, both
  ways (a slow server or link; works for TLS too, since nothing is parsed);
- `heal()`: back to normal.

Guaranteed: it forwards to loopback only, and listens on loopback unless given another
address of this machine (the namespaced soak's bridge). Not guaranteed: byte-exact timing.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

_ARMING = threading.Lock()  # one drop per arming, whichever proxy sees the create first
CREATE_OPCODES = {1, 14, 15, 19, 21}  # create, multi, create2, createContainer, createTTL


class _Link:
    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = socket.create_connection(("127.0.0.1", proxy.upstream_port), timeout=5)
        self.server.settimeout(None)
        self.closed = False
        self.frames_seen = 0
        self._buffer = b""

    def start(self) -> None:
        for source, target, upstream in (
            (self.client, self.server, True), (self.server, self.client, False)
        ):
            threading.Thread(
                target=self._pump, args=(source, target, upstream), daemon=True
            ).start()

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _saw_create(self, data: bytes) -> bool:
        """Frame the client's requests; True if a candidate's create is in `data`."""
        self._buffer += data
        found = False
        while len(self._buffer) >= 4:
            (length,) = struct.unpack(">i", self._buffer[:4])
            if len(self._buffer) < 4 + length:
                break
            frame, self._buffer = self._buffer[4 : 4 + length], self._buffer[4 + length :]
            self.frames_seen += 1
            if self.frames_seen > 1 and len(frame) >= 8:
                (opcode,) = struct.unpack(">i", frame[4:8])
                found = found or (opcode in CREATE_OPCODES and b"/candidate-" in frame)
        return found

    def _pump(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        try:
            while not self.closed:
                data = source.recv(65536)
                # Hold the bytes and an end of stream alike: in a silent partition a
                # server's close (of a session it expired) never reaches the client.
                while self.proxy.blackholed and not self.closed:
                    time.sleep(0.01)
                if not data or self.closed:
                    break
                if self.proxy.delay_seconds > 0:
                    time.sleep(self.proxy.delay_seconds)
                drop = upstream and self.proxy.armed_create and self._saw_create(data)
                drop = drop and self.proxy.take_drop()
                target.sendall(data)
                if drop:
                    self.proxy.creates_dropped += 1
                    time.sleep(0.05)  # let the server apply it; the reply is never passed on
                    break
        except OSError:
            pass
        finally:
            self.close()


class FaultProxy:
    """One listening port (on loopback by default) that forwards to `upstream_port`."""

    def __init__(self, upstream_port: int, listen_host: str = "127.0.0.1") -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((listen_host, 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.blackholed = False
        self.refusing = False
        self.armed_create = False
        self.delay_seconds = 0.0
        self.creates_dropped = 0
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                link = _Link(self, client)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links = [known for known in self._links if not known.closed] + [link]
            link.start()

    def _close_links(self) -> None:
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()

    def blackhole(self) -> None:
        self.blackholed = True

    def cut(self) -> None:
        self.refusing = True
        self._close_links()

    def drop_reply_after_create(self, siblings: list[FaultProxy] | None = None) -> None:
        """Arm this proxy (and `siblings`: the other servers' proxies a reconnecting client
        may reach next) for one drop in all."""
        self.armed_create = True
        self._siblings = siblings or [self]

    def take_drop(self) -> bool:
        """True once per arming, across the siblings: the drop happens here."""
        with _ARMING:
            if not self.armed_create:
                return False
            for proxy in self._siblings:
                proxy.armed_create = False
            return True

    def delay(self, seconds: float) -> None:
        self.delay_seconds = seconds

    def heal(self) -> None:
        self.blackholed = False
        self.refusing = False
        self.armed_create = False
        self.delay_seconds = 0.0

    def close(self) -> None:
        self._running = False
        self.blackholed = False  # a link still being accepted must not wait for a heal
        with contextlib.suppress(OSError):
            self.listener.close()
        self._close_links()


class FaultyNetwork:
    """A proxy per ensemble server; `connect_string` goes through all of them."""

    def __init__(self, upstream_ports: list[int]) -> None:
        self.proxies = [FaultProxy(port) for port in upstream_ports]

    @property
    def connect_string(self) -> str:
        return ",".join(f"127.0.0.1:{proxy.port}" for proxy in self.proxies)

    def blackhole(self) -> None:
        self._each(FaultProxy.blackhole)

    def cut(self) -> None:
        self._each(FaultProxy.cut)

    def drop_reply_after_create(self) -> None:
        """One lost reply in all: the proxy the client reconnects through is disarmed too."""
        for proxy in self.proxies:
            proxy.drop_reply_after_create(self.proxies)

    def _each(self, action: Callable[[FaultProxy], None]) -> None:
        for proxy in self.proxies:
            action(proxy)

    @property
    def creates_dropped(self) -> int:
        return sum(proxy.creates_dropped for proxy in self.proxies)

    def heal(self) -> None:
        self._each(FaultProxy.heal)

    def close(self) -> None:
        self._each(FaultProxy.close)
