"""What a sidecar does before its first verdict, which a cold start of many pods waits for:
the modules it loads, a ZooKeeper session started before its election exists, and the
value records that replace dataclasses on that path."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from sidecar.config import Config
from sidecar.lab.candidates import wait_for
from sidecar.lab.ensemble import Ensemble
from sidecar.state import Role, RoleStatus
from sidecar.zk import SessionEvent, session_for

ROOT = Path(__file__).resolve().parent.parent


def test_the_path_to_the_first_verdict_loads_neither_typing_nor_dataclasses() -> None:
    """Each would cost every sidecar CPU at start (typing alone about 4 % of it): the
    modules `run` needs before its first verdict must keep doing without them."""
    probe = (
        "import sys; import sidecar.__main__, sidecar.cli, sidecar.zk, sidecar.runner; "
        "print(sorted({'typing', 'dataclasses'} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_a_session_started_before_its_election_delivers_what_happened_meanwhile(
    ensemble: Ensemble, election_name: str, tmp_path: Path
) -> None:
    """`leader-sidecar run` connects while the rest of the sidecar loads: the session's
    events from before `attach` reach the election afterwards, in order, and the ones
    after it directly."""
    config = Config(ensemble.connect_string, election_name, "early", role_dir=tmp_path,
                    session_timeout=4.0)
    session = session_for(config)
    session.start()
    try:
        assert session.wait_connected(20)
        seen: list[SessionEvent] = []
        arrived = threading.Event()

        def on_session(event: SessionEvent) -> None:
            seen.append(event)
            arrived.set()

        session.attach(on_session, lambda *_: None)
        assert arrived.wait(5) and seen == [SessionEvent.CONNECTED]
        session.start()  # a second start must not drop the connection and begin again
        assert not wait_for(lambda: len(seen) > 1, 1.0), seen
        assert session.connected
    finally:
        session.close()


def test_records_compare_copy_and_show_by_their_fields() -> None:
    status = RoleStatus(election="demo", identity="app-0", role=Role.FOLLOWER, epoch=7)
    leader = status.replace(role=Role.LEADER)
    assert leader == RoleStatus(election="demo", identity="app-0", role=Role.LEADER, epoch=7)
    assert leader != status and status.role is Role.FOLLOWER, "replace copies"
    assert hash(leader) == hash(status.replace(role=Role.LEADER))
    assert "identity='app-0'" in repr(leader) and repr(leader).startswith("RoleStatus(")
    assert status != ("demo", "app-0"), "a record equals only its own kind"
