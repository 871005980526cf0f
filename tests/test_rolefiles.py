"""Role files are replaced atomically: a reader never sees a partial file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from sidecar.rolefiles import RoleFiles
from sidecar.state import Role, RoleStatus, ZkState


def test_reader_in_a_tight_loop_never_sees_a_partial_file(tmp_path: Path) -> None:
    files = RoleFiles(tmp_path)
    base = RoleStatus(election="demo", identity="app-0", zk=ZkState.CONNECTED)
    files.write(base)
    stop = threading.Event()
    seen: dict[str, int] = {"reads": 0, "torn": 0}

    def reader() -> None:
        while not stop.is_set():
            role = (tmp_path / "role").read_text()
            text = (tmp_path / "status.json").read_text()
            seen["reads"] += 1
            try:
                json.loads(text)
            except ValueError:
                seen["torn"] += 1
            if role not in ("leader\n", "follower\n", "unknown\n"):
                seen["torn"] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    roles = [Role.LEADER, Role.FOLLOWER, Role.UNKNOWN]
    for i in range(600):
        # Long leader names make each write span several blocks.
        files.write(base.replace(role=roles[i % 3], leader="x" * (i * 7 % 5000), epoch=i))
    stop.set()
    thread.join()
    assert seen["reads"] > 100
    assert seen["torn"] == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary left"


def test_status_round_trip() -> None:
    status = RoleStatus(election="demo", identity="a", role=Role.FOLLOWER, leader="b", epoch=9)
    assert RoleStatus.from_dict(json.loads(status.to_json())) == status
