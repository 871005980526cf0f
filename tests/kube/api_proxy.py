"""A TCP proxy in front of the real kube-apiserver that acts on ONE client connection.

The lab's FaultProxy (`KubeNamespace.proxy`) acts on all connections at once: cutting them
also cuts kopf's watch, and kopf's relisting then delivers every pod again, which hides a
client that does not recover by itself. This proxy finds a connection by the client's local
port and does to it what the apiserver and the network do to a kept-alive connection:

- `close_idle(port)`: the apiserver closes the connection between two requests, as it does
  when the connection was idle for its `IdleTimeout` (90 s: k8s.io/apiserver
  pkg/server/secure_serving.go) or when it shuts down. Waiting 90 s per test is too slow,
  so the proxy half-closes the connection toward the apiserver instead: the real apiserver
  reads end-of-stream between two requests and closes its end through the very code path
  of its idle timeout (Go's `http.Server` closes the `tls.Conn`: a TLS close_notify alert,
  then FIN), which the proxy passes on to the client unchanged. No byte is forged.
- `drop_next_request(port)`: the close races the client's next request: the request is
  never passed on, and the client sees its connection end (FIN without close_notify, as
  when the apiserver process goes away) before any byte of a response.
- `refusing`: new connections are closed at once (an apiserver that is not back yet).
- `stalled`: bytes from the apiserver are held (a reply that never comes in time).

`accepted` counts the client connections, so a test sees whether a request was sent again
on a fresh connection. Loopback only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from sidecar.kubeapi import KubeApi


def client_port(api: KubeApi) -> int:
    """The local port of a `KubeApi`'s kept-alive connection (a private of KubeApi: the
    test names the one connection the apiserver is to close)."""
    assert api._conn is not None and api._conn.sock is not None
    return int(api._conn.sock.getsockname()[1])


class _Link:
    def __init__(self, proxy: ApiProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.client_port = int(client.getpeername()[1])
        self.server = socket.create_connection(("127.0.0.1", proxy.upstream_port), timeout=5)
        self.server.settimeout(None)
        self.closed = threading.Event()
        self.drop_next = False

    def start(self) -> None:
        for source, target, upstream in ((self.client, self.server, True),
                                         (self.server, self.client, False)):
            threading.Thread(target=self._pump, args=(source, target, upstream),
                             daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _pump(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        try:
            while not self.closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if upstream and self.drop_next:
                    break  # the request is not passed on: the connection just ends
                while not upstream and self.proxy.stalled and not self.closed.is_set():
                    time.sleep(0.01)
                target.sendall(data)
        except OSError:
            pass
        finally:
            if upstream and not self.drop_next and not self.closed.is_set():
                # The client half-closed: pass that on and let the apiserver close its end.
                with contextlib.suppress(OSError):
                    self.server.shutdown(socket.SHUT_WR)
            else:
                self.close()


class ApiProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.accepted = 0
        self.refusing = False
        self.stalled = False
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.refusing:
                client.close()
                continue
            try:
                link = _Link(self, client)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links.append(link)
            link.start()

    def link(self, client_port: int) -> _Link:
        with self._lock:
            return next(link for link in self._links if link.client_port == client_port)

    def close_idle(self, client_port: int) -> None:
        """The apiserver closes this connection between requests (see the module docstring);
        returns once it has and the close reached the client's socket."""
        link = self.link(client_port)
        link.server.shutdown(socket.SHUT_WR)
        assert link.closed.wait(10), "the apiserver did not close the connection"

    def drop_next_request(self, client_port: int) -> None:
        self.link(client_port).drop_next = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
