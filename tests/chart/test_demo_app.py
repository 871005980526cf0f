"""`leader-sidecar demo-app`: the chart's default application answers with what the
sidecar's role directory says at the moment of the request."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_support import REPO

from sidecar.demoapp import make_server
from sidecar.state import Role, RoleStatus, ZkState


def write_role(role_dir: Path, status: RoleStatus) -> None:
    """What the sidecar writes (atomically, in the real thing)."""
    (role_dir / "role").write_text(status.role.value + "\n")
    (role_dir / "status.json").write_text(status.to_json())


def leader(lease_seconds: float = 30.0) -> RoleStatus:
    now = dt.datetime.now(dt.UTC)  # at the call: the suite may reach this test minutes later
    return RoleStatus(
        election="demo",
        identity="demo-1",
        role=Role.LEADER,
        leader="demo-1",
        epoch=4294967302,
        since=now,
        lease_expires=now + dt.timedelta(seconds=lease_seconds),
        zk=ZkState.CONNECTED,
    )


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[str]:
    server = make_server(tmp_path, "127.0.0.1", 0)
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        worker.join()


def test_leader_answers_with_role_identity_epoch_and_a_valid_lease(
    app: str, tmp_path: Path
) -> None:
    write_role(tmp_path, leader())
    assert get(app + "/") == (
        200,
        {
            "role": "leader",
            "identity": "demo-1",
            "epoch": 4294967302,
            "leader": "demo-1",
            "lease_valid": True,
        },
    )


def test_a_leader_whose_lease_ran_out_must_not_act(app: str, tmp_path: Path) -> None:
    write_role(tmp_path, leader(lease_seconds=-1))
    status, body = get(app + "/")
    assert status == 200 and body["role"] == "leader" and body["lease_valid"] is False


def test_follower_names_the_leader(app: str, tmp_path: Path) -> None:
    follower = leader().replace(identity="demo-0", role=Role.FOLLOWER, lease_expires=None)
    write_role(tmp_path, follower)
    status, body = get(app + "/")
    assert status == 200
    assert body == {
        "role": "follower",
        "identity": "demo-0",
        "epoch": 4294967302,
        "leader": "demo-1",
        "lease_valid": False,
    }


def test_answers_follow_the_files_without_a_restart(app: str, tmp_path: Path) -> None:
    write_role(tmp_path, leader())
    assert get(app + "/")[1]["role"] == "leader"
    write_role(tmp_path, leader().replace(role=Role.FOLLOWER, lease_expires=None))
    assert get(app + "/")[1]["role"] == "follower"


def test_without_role_files_the_role_is_unknown_and_not_usable(app: str) -> None:
    assert get(app + "/") == (
        503,
        {"role": "unknown", "identity": None, "epoch": None, "leader": None, "lease_valid": False},
    )


def test_unknown_verdict_and_garbage_answer_503(app: str, tmp_path: Path) -> None:
    write_role(tmp_path, leader().replace(role=Role.UNKNOWN, lease_expires=None))
    status, body = get(app + "/")
    assert status == 503 and body["role"] == "unknown" and body["identity"] == "demo-1"
    (tmp_path / "status.json").write_text("{not json")
    assert get(app + "/")[0] == 503


def test_health_and_unknown_paths(app: str) -> None:
    assert get(app + "/healthz") == (200, {"status": "ok"})
    assert get(app + "/nope")[0] == 404


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_demo_app_subcommand_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    write_role(tmp_path, leader())
    port = free_port()
    command = [sys.executable, "-m", "sidecar", "demo-app", "--port", str(port)]
    env = {**os.environ, "ROLE_DIR": str(tmp_path)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                status, body = get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "demo-app did not start listening"
                time.sleep(0.05)
        assert status == 200 and body["identity"] == "demo-1" and body["lease_valid"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
