"""A dead ZooKeeper endpoint behind one Service address (issue 24, item 6).

The chart's sidecars reach ZooKeeper through one ClusterIP; the endpoint of a crashed node
stays Ready for 40-50 s, and the ClusterIP sends a new connection to it now and then. kazoo
gives a connection attempt the session timeout divided by the number of addresses in the
connect string: with one address, one attempt routed to the dead endpoint outlasts the
session, and the session expires although two healthy servers are there. On the real
ensemble: a balancer in front of it (the ClusterIP) whose first connection goes to the
server that is then killed, the next one to a blackholed endpoint (connects hang), then to
a healthy server; the session must survive."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sidecar.lab.ensemble import Ensemble
from sidecar.lab.faultproxy import FaultProxy
from sidecar.zk import SessionEvent, ZkSession, _connect_string

SESSION = 4.0  # the most a 200 ms tick allows


class Balancer:
    """One address in front of several endpoints, as a ClusterIP: each new connection goes
    to the next port that `route` yields (kube-proxy picks at random; a test picks)."""

    def __init__(self, route: Iterator[int]) -> None:
        self.route = route
        self.routed: list[int] = []
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            port = next(self.route)
            self.routed.append(port)
            try:
                server = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                client.close()  # a refused endpoint: the client sees a reset at once
                continue
            self._sockets.append(server)
            server.settimeout(None)
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    for sock in (source, target):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def test_connect_string_gives_an_attempt_a_third_of_the_session():
    assert _connect_string("zk:2181") == "zk:2181,zk:2181,zk:2181"
    assert _connect_string("a:1, b:2/chroot/x") == "a:1,b:2,a:1,b:2/chroot/x"
    assert _connect_string("a:1,b:2,c:3") == "a:1,b:2,c:3"


def test_a_dead_endpoint_behind_the_service_does_not_expire_the_session(
    fresh_ensemble: Ensemble,
):
    first, healthy = fresh_ensemble.servers[0], fresh_ensemble.servers[1]
    dead = FaultProxy(fresh_ensemble.servers[2].client_port)
    dead.blackhole()  # the crashed node's endpoint: connects to it hang
    route = itertools.chain([first.client_port, dead.port], itertools.repeat(healthy.client_port))
    balancer = Balancer(route)
    events: list[SessionEvent] = []
    session = ZkSession(f"127.0.0.1:{balancer.port}", SESSION,
                        on_session=events.append, on_watch=lambda *_: None)
    try:
        session.start()
        assert session.wait_connected(20)
        before = session.session_id
        time.sleep(SESSION / 2)  # some pings: the session is well established

        fresh_ensemble.kill(first)  # the server of the session dies with its node

        deadline = time.monotonic() + 3 * SESSION
        while time.monotonic() < deadline and not (
                len(balancer.routed) >= 3 and session.connected):
            time.sleep(0.05)
        time.sleep(0.5)
        assert dead.port in balancer.routed, "the reconnect tried the dead endpoint"
        assert SessionEvent.LOST not in events, f"the session expired: {events}"
        assert session.connected and session.session_id == before
    finally:
        session.close()
        balancer.close()
        dead.close()


@pytest.fixture(autouse=True)
def _quiet_kazoo(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="kazoo")
