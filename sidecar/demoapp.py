"""`leader-sidecar demo-app`: the tiny application the Helm chart runs next to the sidecar.

It stands in for a real application: it knows nothing about ZooKeeper and only reads the
role directory that the sidecar shares with it, at request time, the way an application
should. `GET /` answers with the role, identity, epoch and leader, plus `lease_valid`: the
check an application must make before acting as leader (role is leader and the lease has
not run out). A pod without a verdict yet (files missing or unreadable) answers `unknown`
with 503, so that a readiness probe or a client sees at once that it is not usable.

Only the standard library is used (plus the `state` seam), so the demo app starts fast and
adds nothing to the image.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from .state import Role, RoleStatus

STATUS_FILE = "status.json"


def read_answer(role_dir: Path, now: dt.datetime) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of `GET /` for the role directory as it is now.

    The sidecar replaces `status.json` atomically, so a read sees a whole verdict; it is the
    one file read here, since it alone carries identity, epoch and lease.
    """
    try:
        document = json.loads((role_dir / STATUS_FILE).read_text(encoding="utf-8"))
        status = RoleStatus.from_dict(document)
    except (OSError, ValueError, KeyError, TypeError):
        return 503, unknown_answer()
    body = {
        "role": status.role.value,
        "identity": status.identity,
        "epoch": status.epoch,
        "leader": status.leader,
        "lease_valid": status.holds_lease(now),
    }
    # A pod without a verdict must not look usable to clients or probes.
    return (503 if status.role is Role.UNKNOWN else 200), body


def unknown_answer() -> dict[str, Any]:
    """No readable verdict (files missing or partial): nothing an application may act on."""
    return {
        "role": Role.UNKNOWN.value,
        "identity": None,
        "epoch": None,
        "leader": None,
        "lease_valid": False,
    }


class DemoAppHandler(http.server.BaseHTTPRequestHandler):
    """Serves `/` (role) and `/healthz` (process alive). Set `role_dir` on a subclass."""

    role_dir: Path = Path("/var/run/election")
    server_version = "leader-sidecar-demo-app"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            status, body = read_answer(self.role_dir, dt.datetime.now(dt.UTC))
            self.send_json(status, body)
        elif path == "/healthz":
            self.send_json(200, {"status": "ok"})
        else:
            self.send_json(404, {"error": f"no such path: {path}"})

    def send_json(self, status: int, body: dict[str, Any]) -> None:
        payload = (json.dumps(body) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        # Role answers go stale in milliseconds: no cache may keep them.
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes hit the app every few seconds; access logs would drown the pod's log.
        return


def make_server(role_dir: Path, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """A bound, not yet serving, server; `port=0` picks a free port (tests)."""
    handler = type("BoundDemoAppHandler", (DemoAppHandler,), {"role_dir": Path(role_dir)})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def run(role_dir: Path, port: int = 8080, host: str = "0.0.0.0") -> int:
    """Serve until SIGTERM or SIGINT, then return 0 (the pod's graceful stop)."""
    server = make_server(role_dir, host, port)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # One line on the pod's log: when the kubelet's SIGTERM came, after the preStop hook.
        print(f"demo-app: {signal.Signals(signum).name}, stopping", file=sys.stderr, flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=server.serve_forever, name="demo-app-http", daemon=True)
    worker.start()
    try:
        stop.wait()
    finally:
        # shutdown() blocks until serve_forever returns, so it must run off that thread.
        server.shutdown()
        server.server_close()
        worker.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
