"""The composition root: one running sidecar, from a `Config` to a stopped process.

Start order: role files (`unknown` at once, so the application never reads a stale role
from an earlier container), metrics, status writer, HTTP, Kubernetes publisher and
operator (when enabled), then the election.

Graceful stop (SIGTERM, SIGINT), in this order, each step bounded in time:
1. demote: `unknown` into the role files (waited for), then the pod label is requested;
2. delete the own znode, so the successor is woken at once, not after a session timeout;
3. wait (bounded) until the `unknown` label is on the pod, close the ZooKeeper session;
4. stop the operator, publishers, HTTP and the writer (cancel-and-wait); exit 0.

The label is requested before the znode is deleted but not waited for: a slow or dead API
server must not delay the successor (it clears a stale `leader` label itself).

`leave()` (the preStop hook) runs steps 1 and 2 and keeps the process alive.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .board import StatusBoard
from .config import Config, ConfigError
from .election import Election
from .httpapi import HttpServer, elector_routes, sidecar_routes
from .metrics import Metrics
from .rolefiles import RoleFiles
from .state import RoleStatus, ZkState

log = logging.getLogger(__name__)

LABEL_WAIT_ON_STOP = 2.0


class Sidecar:
    """A running candidate with its publishers. Implements `ElectionControl`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics(config.election)
        initial = RoleStatus(election=config.election, identity=config.identity, zk=ZkState.LOST)
        self.board = StatusBoard(initial, RoleFiles(config.role_dir), self.metrics)
        self.election = Election(config, self.board, self.metrics)
        self.http: HttpServer | None = None
        self.elector_http: HttpServer | None = None
        self.kubernetes: Any = None
        self.operator: Any = None
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
        self.board.start()
        self.board.wait_written(2.0)
        self._start_http()
        self._start_kubernetes()
        self.election.start()
        log.info(
            "sidecar %s started in election %s (ZooKeeper %s)",
            self.config.identity, self.config.election, self.config.zk_hosts,
        )
        return self

    def _start_http(self) -> None:
        if self.config.http_port:
            get, post = sidecar_routes(self)
            self.http = HttpServer(self.config.http_host, self.config.http_port, get, post).start()
        if self.config.elector_port:
            self.elector_http = HttpServer(
                self.config.http_host, self.config.elector_port, elector_routes(self.current)
            ).start()

    def _start_kubernetes(self) -> None:
        if not self.config.publishes_to_kubernetes:
            return
        from .k8s import KubernetesPublisher
        from .kubeapi import KubernetesConfigError
        from .operator import start_operator

        try:
            self.kubernetes = KubernetesPublisher(
                self.config, self.metrics, on_label_sync=self.board.set_label_in_sync
            )
        except KubernetesConfigError as error:
            raise ConfigError(str(error)) from None
        self.board.add_publisher(self.kubernetes)
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
        for part in (self.operator, self.kubernetes, self.elector_http, self.http):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # one part failing to stop must not keep the others
                    log.exception("stopping %r failed", part)
        self.board.stop()
        log.info("sidecar %s stopped", self.config.identity)
