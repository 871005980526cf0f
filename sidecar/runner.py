"""The composition root: one running sidecar, from a `Config` to a stopped process.

Start order (`cli.cmd_run` has started the ZooKeeper session already, before it loaded the
rest of the sidecar, so that the session's round trip overlaps that CPU): the status
writer (it writes `unknown` at once, so the application never reads a stale role from an
earlier container, unless the first verdict is already there), the control socket and
HTTP ports (bound, not served), the Kubernetes publisher (when enabled), the election;
then, after its first verdict or at most `FACES_AFTER_AT_MOST`, the HTTP face, the
control socket and the operator. Their imports cost CPU the first election should not
wait for; until then a probe or `leader-sidecar leave` waits in the listen queue, and
step-down annotations wait for the operator, which reads the pods it watches when it
starts.

Graceful stop (SIGTERM, SIGINT), in this order, each step bounded in time:
1. demote: `unknown` into the role files, then onto the pod's label (both waited for; the
   label at most `board.BARRIER_SECONDS`, and not while the API is failing);
2. delete the own znode, so the successor is woken at once, not after a session timeout;
3. wait (bounded) until everything queued for the pod is written, close the session;
4. stop the operator, publishers, HTTP and the writer (cancel-and-wait); exit 0.

The label is off before the znode goes so that the successor, which clears every other
`leader` label before it labels itself (sidecar/labelgate.py), finds nothing to clear:
one API round trip on the way to the successor, the two labels never both `leader`. A
slow or dead API server delays the successor by the bound at most.

`leave()` (the preStop hook) runs steps 1 and 2 and keeps the process alive.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from . import control
from .board import StatusBoard
from .config import Config, ConfigError
from .election import Election
from .metrics import Metrics
from .rolefiles import RoleFiles
from .state import RoleStatus, ZkState
from .zk import ZkSession

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, which type checkers also take this for
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

LABEL_WAIT_ON_STOP = 2.0
ZK_REFUSED = "ZooKeeperRefused"  # the Event of a NoAuth on the group's own znodes
FACES_AFTER_AT_MOST = 1.0  # seconds the HTTP face and the operator wait for a first verdict


def listen(host: str, port: int) -> socket.socket:
    """`0.0.0.0` (the default: every address) is every IPv6 address too where the host has
    both stacks: a pod of an IPv6 or dual-stack cluster is probed and scraped on IPv6."""
    if host == "0.0.0.0" and socket.has_dualstack_ipv6():
        return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


class Sidecar:
    """A running candidate with its publishers. Implements `ElectionControl`."""

    def __init__(self, config: Config, zk: ZkSession | None = None) -> None:
        """`zk`: the election's session, maybe connecting already (`cli.cmd_run`)."""
        self.config = config
        self.metrics = Metrics(config.election)
        initial = RoleStatus(election=config.election, identity=config.identity, zk=ZkState.LOST)
        self.board = StatusBoard(initial, RoleFiles(config.role_dir), self.metrics)
        self.election = Election(config, self.board, self.metrics, zk)
        self.control: Any = None  # HttpServer on the control socket
        self.http: Any = None  # HttpServer, imported once the election is under way
        self.elector_http: Any = None
        self.kubernetes: Any = None
        self.operator: Any = None
        self._listeners: dict[str, socket.socket] = {}  # bound, not served yet
        self._control_bound = False
        self._stopped = threading.Event()
        self._leave_lock = threading.Lock()

    # -- ElectionControl and the HTTP face ---------------------------------------------

    def current(self) -> RoleStatus:
        return self.board.current()

    def step_down(self) -> None:
        self.election.step_down()

    def leave(self) -> None:
        threading.Thread(target=self.leave_now, name="leave", daemon=True).start()

    def rejoin(self) -> None:
        self.election.rejoin()

    def healthy(self) -> bool:
        return self.election.alive() and self.board.alive()

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> Sidecar:
        self.start_election()
        return self.start_faces()

    def start_election(self) -> None:
        """Everything up to the first verdict (waited for, at most `FACES_AFTER_AT_MOST`)."""
        self.board.start()  # writes `unknown` while the election connects (no wait: on a
        # disk the two fsyncs would delay the first verdict; a verdict that comes first is
        # simply the first thing written)
        self._listen()
        self._start_publisher()
        self.election.start()
        # The faces that only listen come up after the first verdict (bounded): their
        # imports (http.server, kopf) cost tens to hundreds of ms of CPU, which the first
        # election should not wait for.
        self.board.wait_decided(FACES_AFTER_AT_MOST)

    def start_faces(self) -> Sidecar:
        """The HTTP face, the control socket's server and the operator."""
        self._start_http()
        self._start_operator()
        log.info(
            "sidecar %s started in election %s (ZooKeeper %s)",
            self.config.identity, self.config.election, self.config.zk_hosts,
        )
        return self

    def _listen(self) -> None:
        """Bind the control socket and the HTTP ports before the election: a port in use is
        a configuration error, found before this sidecar becomes a candidate."""
        try:
            self._listeners["control"] = control.bind(self.config.role_dir)
        except control.ControlSocketError as error:
            raise ConfigError(str(error)) from None
        self._control_bound = True
        for name, port in (("http", self.config.http_port), ("elector", self.config.elector_port)):
            if not port:
                continue
            try:
                self._listeners[name] = listen(self.config.http_host, port)
            except OSError as error:
                reason = error.strerror or str(error)
                raise ConfigError(f"cannot serve HTTP on port {port}: {reason}") from None

    def _start_http(self) -> None:
        from .httpapi import HttpServer, control_routes, elector_routes, sidecar_routes

        if "control" in self._listeners:
            get, post = control_routes(self)
            self.control = HttpServer(self._listeners.pop("control"), get, post).start()
        if "http" in self._listeners:
            get, post = sidecar_routes(self)
            self.http = HttpServer(self._listeners.pop("http"), get, post).start()
        if "elector" in self._listeners:
            self.elector_http = HttpServer(
                self._listeners.pop("elector"), elector_routes(self.current)
            ).start()

    def _start_publisher(self) -> None:
        """Before the election: the first verdict goes to the pod's label too, and a bad
        Kubernetes configuration stops the sidecar before it becomes a candidate."""
        if not self.config.publishes_to_kubernetes:
            return
        from .k8s import KubernetesPublisher
        from .kubeapi import KubernetesConfigError

        try:
            self.kubernetes = KubernetesPublisher(
                self.config, self.metrics, on_label_sync=self.board.set_label_in_sync
            )
        except KubernetesConfigError as error:
            raise ConfigError(str(error)) from None
        self.board.add_publisher(self.kubernetes)
        self.board.add_demotion_barrier(self.kubernetes.wait_label_demoted)
        publisher = self.kubernetes
        # NoAuth on the group's own znodes (a new zkAuth password over the old ACL, say)
        # keeps every pod `unknown`: say so where `kubectl describe pod` shows it.
        self.election.worker.on_refused = lambda line: publisher.post_event(
            ZK_REFUSED, line, type="Warning"
        )

    def _start_operator(self) -> None:
        if self.kubernetes is None:
            return
        from .operator import start_operator

        self.operator = start_operator(self.config, self, self.kubernetes)

    def leave_now(self) -> None:
        """Steps 1 and 2 of the graceful stop; idempotent."""
        with self._leave_lock:
            if self.board.frozen:
                return
            self.board.freeze()
            self.board.wait_demoted(1.0)
            log.debug("leaving: role files say unknown")
            self.election.leave(timeout=self.election.zk.call_timeout)
            log.debug("leaving: out of the election")

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.leave_now()
        if self.kubernetes is not None:
            self.kubernetes.flush(LABEL_WAIT_ON_STOP)
        self.election.stop()
        for part in (self.operator, self.kubernetes, self.elector_http, self.http, self.control):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # one part failing to stop must not keep the others
                    log.exception("stopping %r failed", part)
        for listener in self._listeners.values():
            listener.close()
        if self._control_bound:
            with contextlib.suppress(OSError):
                control.socket_path(self.config.role_dir).unlink()
        self.board.stop()
        log.info("sidecar %s stopped", self.config.identity)
