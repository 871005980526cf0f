"""The election on a healthy ensemble: one leader, handover on stop and crash, no herd."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

from election_support import SESSION_TIMEOUT, SLACK, Group

from sidecar.lab.candidates import leaders, wait_for
from sidecar.lab.ensemble import Ensemble, four_letter


def test_one_leader_among_five(ensemble: Ensemble, group: Group) -> None:
    members = group.spawn(ensemble.connect_string, count=5)
    leader = group.wait_one_leader()
    epochs = {m.status()["epoch"] for m in members}  # type: ignore[index]
    assert len(epochs) == 1, "every candidate names the same leader epoch"
    for member in members:
        status = member.status()
        assert status is not None
        assert status["leader"] == leader.identity
        assert status["zk"] == "connected"
        assert status["election"] == group.election
        assert (status["lease_expires"] is not None) == (member is leader)


def test_graceful_stop_hands_over_and_exits_zero(ensemble: Ensemble, group: Group) -> None:
    group.spawn(ensemble.connect_string, count=3)
    old = group.wait_one_leader()
    old_epoch = old.status()["epoch"]  # type: ignore[index]
    with group.monitor() as monitor:
        assert old.terminate() == 0
        assert old.role() == "unknown"
        new = group.wait_one_leader(timeout=SLACK)
    assert new is not old
    assert new.status()["epoch"] > old_epoch  # type: ignore[index,operator]
    assert monitor.violations() == []


def test_crash_hands_over_within_session_timeout(ensemble: Ensemble, group: Group) -> None:
    group.spawn(ensemble.connect_string, count=3)
    old = group.wait_one_leader()
    with group.monitor() as monitor:
        killed_at = time.monotonic()
        old.kill()
        new = group.wait_one_leader(timeout=SESSION_TIMEOUT + SLACK)
        took = time.monotonic() - killed_at
    assert new is not old
    assert took < SESSION_TIMEOUT + SLACK
    assert monitor.violations() == []


def _watches_by_path(ensemble: Ensemble) -> dict[str, set[str]]:
    """Watched path -> sessions watching it, over all servers (`wchp`)."""
    watched: dict[str, set[str]] = {}
    for server in ensemble.servers:
        path = None
        for line in four_letter(server.client_port, "wchp").splitlines():
            if line.startswith("/"):
                path = line.strip()
            elif path and line.strip().startswith("0x"):
                watched.setdefault(path, set()).add(line.strip())
    return watched


def test_no_herd_each_znode_watched_by_owner_and_successor(
    ensemble: Ensemble, group: Group, zk_client: object
) -> None:
    group.spawn(ensemble.connect_string, count=5)
    group.wait_one_leader()
    path = f"/leader-election/{group.election}"
    children = sorted(zk_client.get_children(path), key=lambda n: int(n.rsplit("-", 1)[1]))  # type: ignore[attr-defined]
    owners = {
        name: hex(zk_client.exists(f"{path}/{name}").ephemeralOwner)  # type: ignore[attr-defined]
        for name in children
    }
    assert wait_for(lambda: all(f"{path}/{n}" in _watches_by_path(ensemble) for n in children), 5)
    watches = _watches_by_path(ensemble)
    for index, name in enumerate(children):
        expected = {owners[name]}
        if index + 1 < len(children):
            expected.add(owners[children[index + 1]])
        assert watches[f"{path}/{name}"] == expected, f"{name} watched by the wrong sessions"
    assert path not in watches, "nobody watches the parent's children (that is the herd)"


def _wakeups(port: int) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^leader_sidecar_watch_wakeups_total (\S+)$", text, re.MULTILINE)
    assert match, "the wake-up counter is exported"
    return float(match.group(1))


def test_one_leader_change_wakes_exactly_one_candidate(ensemble: Ensemble, group: Group) -> None:
    from sidecar.lab.ensemble import free_port

    ports = {}
    for _ in range(5):
        port = free_port()
        (member,) = group.spawn(ensemble.connect_string, http_port=port)
        ports[member.identity] = port
    old = group.wait_one_leader()
    survivors = [m for m in group.members if m is not old]
    before = {m.identity: _wakeups(ports[m.identity]) for m in survivors}
    old.terminate()
    group.wait_one_leader()
    time.sleep(0.5)  # a late, spurious wake-up would show up by now
    woken = [m.identity for m in survivors if _wakeups(ports[m.identity]) > before[m.identity]]
    assert len(woken) == 1, f"one leader change woke {woken}"
    assert leaders(survivors)[0].identity == woken[0], "the woken one is the new leader"


def test_own_znode_deleted_by_hand(ensemble: Ensemble, group: Group, zk_client: object) -> None:
    group.spawn(ensemble.connect_string, count=3)
    leader = group.wait_one_leader()
    path = f"/leader-election/{group.election}"
    first = sorted(zk_client.get_children(path), key=lambda n: int(n.rsplit("-", 1)[1]))[0]  # type: ignore[attr-defined]
    zk_client.delete(f"{path}/{first}")  # type: ignore[attr-defined]
    assert wait_for(lambda: leader.role() != "leader", SLACK)
    new = group.wait_one_leader()
    assert new is not leader
    assert wait_for(lambda: len(zk_client.get_children(path)) == 3, SLACK), "it volunteered again"  # type: ignore[attr-defined]


def test_election_parent_deleted(ensemble: Ensemble, group: Group, zk_client: object) -> None:
    # A parent of its own: the shared /leader-election may carry another test's ACL (a
    # release with credentials lets everyone create there, nobody delete).
    parent = f"/parent-{group.election}"
    group.spawn(ensemble.connect_string, count=3, extra_args=("--election-parent", parent))
    old = group.wait_one_leader()
    old_epoch = old.status()["epoch"]  # type: ignore[index]
    path = f"{parent}/{group.election}"
    from kazoo.exceptions import NotEmptyError

    # Candidates re-volunteer while the children are deleted, so the final delete of the
    # parent may find new children: repeat until the parent itself is gone once.
    for _ in range(50):
        try:
            zk_client.delete(path, recursive=True)  # type: ignore[attr-defined]
            break
        except NotEmptyError:
            continue
    assert wait_for(lambda: zk_client.exists(path) is not None, SLACK)  # type: ignore[attr-defined]
    assert wait_for(lambda: len(zk_client.get_children(path)) == 3, SLACK)  # type: ignore[attr-defined]
    new = group.wait_one_leader()
    assert new.status()["epoch"] > old_epoch, "the epoch grows even across a recreated parent"  # type: ignore[index,operator]


def test_foreign_children_are_ignored(ensemble: Ensemble, group: Group, zk_client: object) -> None:
    path = f"/leader-election/{group.election}"
    zk_client.ensure_path(path)  # type: ignore[attr-defined]
    zk_client.create(f"{path}/lock-", b"x", sequence=True)  # type: ignore[attr-defined]
    zk_client.create(f"{path}/zzz")  # type: ignore[attr-defined]
    group.spawn(ensemble.connect_string, count=2)
    leader = group.wait_one_leader()
    assert leader.role() == "leader"


def test_lease_is_bounded_by_the_negotiated_timeout(ensemble: Ensemble, group: Group) -> None:
    # The test ensemble grants at most 20 ticks (4 s) whatever the client asks for.
    (member,) = group.spawn(ensemble.connect_string, session_timeout=30.0)
    group.wait_one_leader()
    status = member.status()
    assert status is not None
    lease = dt.datetime.fromisoformat(str(status["lease_expires"]).replace("Z", "+00:00"))
    remaining = (lease - dt.datetime.now(dt.UTC)).total_seconds()
    assert 0 < remaining <= ensemble.max_session_timeout


def test_status_json_has_the_documented_shape(ensemble: Ensemble, group: Group) -> None:
    (member,) = group.spawn(ensemble.connect_string)
    group.wait_one_leader()
    document = json.loads((member.role_dir / "status.json").read_text())
    assert set(document) >= {
        "election", "identity", "role", "leader", "epoch", "since", "lease_expires", "zk"
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", document["since"])
    assert (member.role_dir / "role").read_text() == "leader\n"
    assert leaders([member]) == [member]
