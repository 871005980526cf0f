"""Faults never produce two leaders: in every test the lease monitor checks that no two
candidates hold an unexpired lease at the same instant."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from election_support import SESSION_TIMEOUT, SLACK, Group

from sidecar.lab.candidates import wait_for
from sidecar.lab.ensemble import Ensemble
from sidecar.lab.faultproxy import FaultyNetwork


def _instant(text: object) -> dt.datetime:
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def test_lost_create_reply_is_recovered_without_orphan(
    ensemble: Ensemble, network: FaultyNetwork, group: Group, zk_client: object
) -> None:
    path = f"/leader-election/{group.election}"
    zk_client.ensure_path(path)  # type: ignore[attr-defined]
    network.drop_reply_after_create()
    (member,) = group.spawn(network.connect_string)
    group.wait_one_leader()
    assert network.creates_dropped == 1, "the create reply was really lost"
    children = zk_client.get_children(path)  # type: ignore[attr-defined]
    assert len(children) == 1, f"an orphan was left: {children}"
    owner = zk_client.exists(f"{path}/{children[0]}").ephemeralOwner  # type: ignore[attr-defined]
    assert owner != 0
    member.terminate()
    assert wait_for(lambda: zk_client.get_children(path) == [], SLACK)  # type: ignore[attr-defined]


def test_zookeeper_leader_server_killed(fresh_ensemble: Ensemble, group: Group) -> None:
    group.spawn(fresh_ensemble.connect_string, count=3)
    group.wait_one_leader()
    with group.monitor() as monitor:
        zk_leader = fresh_ensemble.leader()
        assert zk_leader is not None
        fresh_ensemble.kill(zk_leader)
        fresh_ensemble.wait_serving(servers=[s for s in fresh_ensemble.servers if s.running])
        group.wait_one_leader(timeout=SESSION_TIMEOUT + 2 * SLACK)
        fresh_ensemble.start_server(zk_leader)
        fresh_ensemble.wait_serving()
        group.wait_one_leader()
    assert all(member.running for member in group.members), "no sidecar had to restart"
    assert monitor.violations() == []


def test_quorum_lost_everyone_unknown_then_one_leader(
    fresh_ensemble: Ensemble, group: Group
) -> None:
    members = group.spawn(fresh_ensemble.connect_string, count=3)
    group.wait_one_leader()
    with group.monitor() as monitor:
        down = fresh_ensemble.servers[:2]
        for server in down:
            fresh_ensemble.kill(server)
        lost_at = time.monotonic()
        assert wait_for(lambda: all(m.role() == "unknown" for m in members),
                        SESSION_TIMEOUT + SLACK)
        assert time.monotonic() - lost_at < SESSION_TIMEOUT + SLACK
        for server in down:
            fresh_ensemble.start_server(server)
        fresh_ensemble.wait_serving()
        group.wait_one_leader(timeout=SESSION_TIMEOUT + 3 * SLACK)
    assert monitor.violations() == []


def test_frozen_leader_is_replaced_only_after_its_lease(ensemble: Ensemble, group: Group) -> None:
    group.spawn(ensemble.connect_string, count=3)
    frozen = group.wait_one_leader()
    with group.monitor() as monitor:
        frozen.freeze()
        others = [m for m in group.members if m is not frozen]
        assert wait_for(lambda: any(m.role() == "leader" for m in others),
                        SESSION_TIMEOUT + SLACK)
        new = next(m for m in others if m.role() == "leader")
        frozen_lease = _instant(frozen.status()["lease_expires"])  # type: ignore[index]
        new_since = _instant(new.status()["since"])  # type: ignore[index]
        assert frozen_lease < new_since, "the successor started before the frozen lease ran out"
        frozen.thaw()
        assert wait_for(lambda: frozen.role() != "leader", SLACK), "it demotes after SIGCONT"
        assert wait_for(lambda: frozen.role() == "follower", SESSION_TIMEOUT + SLACK)
    assert monitor.violations() == []


def test_blackholed_leader_demotes_before_anyone_else_leads(
    ensemble: Ensemble, network: FaultyNetwork, group: Group
) -> None:
    (isolated,) = group.spawn(network.connect_string)
    assert group.wait_one_leader() is isolated
    group.spawn(ensemble.connect_string, count=2)
    group.wait_one_leader()
    with group.monitor() as monitor:
        network.blackhole()
        assert wait_for(lambda: isolated.role() == "unknown", SESSION_TIMEOUT + SLACK)
        demoted_at = _instant(isolated.status()["since"])  # type: ignore[index]
        others = group.members[1:]
        assert wait_for(lambda: any(m.role() == "leader" for m in others),
                        SESSION_TIMEOUT + SLACK)
        new = next(m for m in others if m.role() == "leader")
        assert demoted_at < _instant(new.status()["since"])  # type: ignore[index]
        network.heal()
    assert monitor.violations() == []


def test_leader_session_expiry_rejoins_at_the_back(
    ensemble: Ensemble, network: FaultyNetwork, group: Group, zk_client: object
) -> None:
    (expiring,) = group.spawn(network.connect_string)
    assert group.wait_one_leader() is expiring
    group.spawn(ensemble.connect_string, count=2)
    group.wait_one_leader()
    path = f"/leader-election/{group.election}"
    with group.monitor() as monitor:
        network.blackhole()  # held past the session timeout: the ensemble expires it
        others = group.members[1:]
        assert wait_for(lambda: any(m.role() == "leader" for m in others),
                        SESSION_TIMEOUT + SLACK)
        time.sleep(0.5)
        network.heal()
        assert wait_for(lambda: expiring.role() == "follower", SESSION_TIMEOUT + 2 * SLACK)
    assert wait_for(lambda: len(zk_client.get_children(path)) == 3, SLACK)  # type: ignore[attr-defined]
    names = sorted(zk_client.get_children(path), key=lambda n: int(n.rsplit("-", 1)[1]))  # type: ignore[attr-defined]
    last = zk_client.get(f"{path}/{names[-1]}")[0]  # type: ignore[attr-defined]
    assert b'"app-0"' in last, "the expired candidate volunteered again at the back"
    assert monitor.violations() == []





@pytest.mark.parametrize("stall", [0.7, 0.8, 0.9])
def test_heir_made_leader_whose_lease_ran_out_with_its_session_alive_leads_again(
    ensemble: Ensemble, group: Group, stall: float
) -> None:
    """Found by the soak. A leader that took over on its heir's anchor has its traffic
    dropped for longer than what is left of its lease but not long enough for kazoo to
    drop the connection: no session event comes, its znode is still first and every
    other candidate waits on it. It must list again and lead again."""
    ports = [server.client_port for server in ensemble.servers]
    networks = [FaultyNetwork(ports) for _ in range(3)]
    try:
        for network in networks:
            group.spawn(network.connect_string)
        group.wait_one_leader().terminate()
        group.wait_one_leader()
        time.sleep(0.5)  # a renewal or two on its own lease
        leader = group.wait_one_leader()
        with group.monitor() as monitor:
            networks[group.members.index(leader)].blackhole()
            time.sleep(stall)
            networks[group.members.index(leader)].heal()
            group.wait_one_leader(timeout=SESSION_TIMEOUT + SLACK)
        assert monitor.violations() == []
    finally:
        for network in networks:
            network.close()
