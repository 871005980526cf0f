"""The leader record and the heir: followers learn a new leader at once, the heir leads
without a round trip, and nobody else's writes into the record can mislead or stop them."""

from __future__ import annotations

import json
from pathlib import Path

from election_support import SLACK, Group
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.security import make_acl

from sidecar.election.record import record_path
from sidecar.lab.candidates import SidecarProcess, leaders, wait_for
from sidecar.lab.ensemble import Ensemble

LONG_SESSION = 4.0  # followers used to learn a new leader up to one session timeout late
PROMPT = 1.0  # generous next to the milliseconds it takes, far below LONG_SESSION


def _record(zk_client: KazooClient, group: Group) -> dict[str, object]:
    """The record, or {} before the first leader's first renewal has written it."""
    try:
        data, _stat = zk_client.get(record_path(f"/leader-election/{group.election}"))
    except NoNodeError:
        return {}
    if not data:
        return {}
    document = json.loads(data)
    assert isinstance(document, dict)
    return document


def _all_name(members: list[SidecarProcess], leader: SidecarProcess) -> bool:
    epoch = leader.status()["epoch"]  # type: ignore[index]
    return all(
        (status := m.status()) is not None
        and status["leader"] == leader.identity
        and status["epoch"] == epoch
        for m in members
    )


def test_followers_learn_a_new_leader_at_once(
    ensemble: Ensemble, group: Group, zk_client: KazooClient
) -> None:
    group.spawn(ensemble.connect_string, count=5, session_timeout=LONG_SESSION)
    old = group.wait_one_leader()
    assert wait_for(lambda: _record(zk_client, group).get("identity") == old.identity, SLACK)
    survivors = [m for m in group.members if m is not old]
    for _round in range(2):
        old.terminate()
        assert wait_for(lambda s=survivors: len(leaders(s)) == 1, SLACK)
        new = leaders(survivors)[0]
        assert wait_for(lambda s=survivors, n=new: _all_name(s, n), PROMPT), [
            (m.identity, m.status()) for m in survivors
        ]
        record = _record(zk_client, group)
        assert record["identity"] == new.identity
        assert record["epoch"] == new.status()["epoch"]  # type: ignore[index]
        old.start()  # back in, at the end of the queue
        group.wait_one_leader()
        old, survivors = new, [m for m in group.members if m is not new]


def test_the_heir_leads_on_its_anchor(ensemble: Ensemble, group: Group) -> None:
    group.spawn(ensemble.connect_string, count=3)
    old = group.wait_one_leader()
    with group.monitor() as monitor:
        old.terminate()
        new = group.wait_one_leader()
    assert not monitor.violations()
    log = Path(f"{new.role_dir}.log").read_text()
    assert "at once, on the heir's anchor" in log, log


def test_a_forged_record_misleads_nobody(
    ensemble: Ensemble, group: Group, zk_client: KazooClient
) -> None:
    members = group.spawn(ensemble.connect_string, count=3)
    leader = group.wait_one_leader()
    path = record_path(f"/leader-election/{group.election}")
    assert wait_for(lambda: _record(zk_client, group).get("identity") == leader.identity, SLACK)
    for forged in (b"", b"\xff\xfe not json", b'{"identity": 7}', b"x" * 100_000,
                   b'{"identity": "mallory", "epoch": -1, "node": "n"}'):
        zk_client.set(path, forged)
    assert wait_for(lambda: _all_name(members, leader), PROMPT)
    assert all(m.running for m in members)
    leader.terminate()
    survivors = [m for m in members if m is not leader]
    new = group.wait_one_leader()
    assert wait_for(lambda: _all_name(survivors, new), PROMPT)


def test_a_record_nobody_may_write_does_not_stop_the_election(
    ensemble: Ensemble, group: Group, zk_client: KazooClient
) -> None:
    path = record_path(f"/leader-election/{group.election}")
    zk_client.create(path, b"", makepath=True, acl=[make_acl("world", "anyone", read=True)])
    members = group.spawn(ensemble.connect_string, count=3)
    leader = group.wait_one_leader()
    assert wait_for(lambda: _all_name(members, leader), SLACK)
    epoch = leader.status()["epoch"]  # type: ignore[index]
    # Several renewals later it still leads: the refused record write did not cost the lease.
    assert not wait_for(lambda: leader.role() != "leader", 3 * 2.0)
    assert leader.status()["epoch"] == epoch  # type: ignore[index]
    log = Path(f"{leader.role_dir}.log").read_text()
    assert "cannot write the leader record" in log
