"""The sidecar's HTTP endpoint, and the drop-in for Kubernetes' retired `leader-elector`.

`GET /healthz`  200 while the election worker and the status writer are alive.
`GET /readyz`   200 once the candidate has a verdict and ZooKeeper is connected.
`GET /role`     the status document (as in `status.json`).
`GET /metrics`  Prometheus text.
`/leave`, `/rejoin`  403 here, for every method: they change the election, so they are
                served only on the control socket inside the pod (`control`), where
                `POST /leave` leaves the election without exiting (the chart's preStop
                hook runs `leader-sidecar leave`) and `POST /rejoin` volunteers again;
                any other method gets 405 there.

The leader-elector drop-in serves `GET /` as `{"name": "<leader identity>"}` on a port of
its own (4040 in that project's examples).

Guaranteed: handlers never wait on ZooKeeper or Kubernetes; they read the status board.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from .control import CONTROL_ROUTES
from .state import Role, RoleStatus, ZkState

log = logging.getLogger(__name__)


class Sidecar(Protocol):
    def current(self) -> RoleStatus: ...

    def healthy(self) -> bool: ...

    def leave(self) -> None: ...

    def rejoin(self) -> None: ...

    def metrics_text(self) -> bytes: ...


def is_ready(status: RoleStatus) -> bool:
    return status.role is not Role.UNKNOWN and status.zk is ZkState.CONNECTED


class _Handler(BaseHTTPRequestHandler):
    server: _Server | _UnixServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, document: object) -> None:
        self._send(code, (json.dumps(document) + "\n").encode())

    def _dispatch(self, routes: dict[str, Route]) -> None:
        route = routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._json(404, {"error": "not found"})
        else:
            route(self)

    def do_GET(self) -> None:
        self._dispatch(self.server.routes_get)

    def do_POST(self) -> None:
        self._dispatch(self.server.routes_post)


Route = Callable[[_Handler], None]


class _QuietDisconnects:
    """A client that hangs up mid-reply is its own business, not a traceback in our log
    (socketserver's default prints one to stderr); anything else is a bug and says so."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("http: client went away: %s", error)
        else:
            log.exception("http: request from %s failed", client_address or "the control socket")


class _Server(_QuietDisconnects, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    routes_get: dict[str, Route]
    routes_post: dict[str, Route]


class _UnixServer(_QuietDisconnects, socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    routes_get: dict[str, Route]
    routes_post: dict[str, Route]


def sidecar_routes(sidecar: Sidecar) -> tuple[dict[str, Route], dict[str, Route]]:
    def healthz(handler: _Handler) -> None:
        ok = sidecar.healthy()
        handler._json(200 if ok else 503, {"healthy": ok})

    def readyz(handler: _Handler) -> None:
        status = sidecar.current()
        ready = is_ready(status)
        handler._json(200 if ready else 503, {"ready": ready, "role": status.role.value})

    def role(handler: _Handler) -> None:
        handler._json(200, sidecar.current().to_dict())

    def metrics(handler: _Handler) -> None:
        handler._send(200, sidecar.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")

    def forbidden(handler: _Handler) -> None:
        handler._json(403, {
            "error": "this route changes the election and is served only on the control "
                     "socket inside the pod: run `leader-sidecar leave` in the sidecar "
                     "container"
        })

    control: dict[str, Route] = dict.fromkeys(CONTROL_ROUTES, forbidden)
    routes_get: dict[str, Route] = {
        "/healthz": healthz, "/readyz": readyz, "/role": role, "/metrics": metrics, **control,
    }
    return routes_get, control


def control_routes(sidecar: Sidecar) -> tuple[dict[str, Route], dict[str, Route]]:
    """The routes of the control socket: POST only."""
    def leave(handler: _Handler) -> None:
        log.info("leave asked through the control socket (the preStop hook)")
        sidecar.leave()
        handler._json(202, {"left": True})

    def rejoin(handler: _Handler) -> None:
        sidecar.rejoin()
        handler._json(202, {"rejoined": True})

    def post_only(handler: _Handler) -> None:
        handler.send_response(405)
        handler.send_header("Allow", "POST")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return dict.fromkeys(CONTROL_ROUTES, post_only), {"/leave": leave, "/rejoin": rejoin}


def elector_routes(current: Callable[[], RoleStatus]) -> dict[str, Route]:
    def leader(handler: _Handler) -> None:
        handler._json(200, {"name": current().leader or ""})

    return {"/": leader}


class HttpServer:
    """A threaded HTTP server on its own thread; `stop()` shuts it down and waits."""

    def __init__(
        self,
        listener: socket.socket,
        routes_get: dict[str, Route],
        routes_post: dict[str, Route] | None = None,
    ) -> None:
        """`listener`: a bound, listening TCP or Unix socket (see `runner`), so that a port
        in use is found before the sidecar becomes a candidate and served once it is one."""
        self._server: _Server | _UnixServer
        if listener.family == socket.AF_UNIX:
            self._server = _UnixServer(listener.getsockname(), _Handler, bind_and_activate=False)
            name = "control"
        else:
            self._server = _Server(listener.getsockname()[:2], _Handler, bind_and_activate=False)
            name = str(listener.getsockname()[1])
        self._server.socket.close()
        self._server.socket = listener
        self._server.routes_get = routes_get
        self._server.routes_post = routes_post or {}
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name=f"http-{name}", daemon=True,
        )

    @property
    def port(self) -> int:
        address = self._server.server_address
        return int(address[1]) if isinstance(address, tuple) else 0

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()
