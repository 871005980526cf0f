"""A closed election: with `--zk-auth`, nodes that a stranger made open before the group
started are refused, and followers take a leader record only if it names a live candidate
(sidecar/election/guard.py, sidecar/election/record.py 6.)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from election_support import SESSION_TIMEOUT, SLACK, Group, assert_survived, kazoo_client
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import OPEN_ACL_UNSAFE, make_acl, make_digest_acl

from sidecar.election.presence import markers_path
from sidecar.election.record import record_path
from sidecar.election.worker import REFUSED_BACKOFF_MAX
from sidecar.lab.candidates import SidecarProcess, leaders, wait_for
from sidecar.lab.ensemble import Ensemble

AUTH = ("group", "s3cret")
OPERATOR = ("operator", "0p3rator")
SHARED_RC = make_acl("world", "anyone", read=True, create=True)


@pytest.fixture
def stranger(ensemble: Ensemble) -> Iterator[KazooClient]:
    """A client with no credentials at all."""
    with kazoo_client(ensemble.connect_string) as client:
        yield client


@pytest.fixture
def operator(ensemble: Ensemble) -> Iterator[KazooClient]:
    """Whoever runs the ensemble: made the shared parent (an earlier version's ACL, its
    digest with all rights) and may delete what a stranger made in it."""
    with kazoo_client(ensemble.connect_string, f"{OPERATOR[0]}:{OPERATOR[1]}") as client:
        yield client


def _spawn(group: Group, ensemble: Ensemble, parent: str, count: int) -> list[SidecarProcess]:
    return group.spawn(ensemble.connect_string, count=count, extra_args=(
        "--zk-auth", f"{AUTH[0]}:{AUTH[1]}", "--election-parent", parent))


def _candidates(client: KazooClient, election: str) -> list[str]:
    if client.exists(election) is None:
        return []
    return [name for name in client.get_children(election) if name.startswith("candidate-")]


@pytest.mark.parametrize("squatted", ["election", "record", "markers"])
def test_a_node_squatted_before_the_group_starts_is_never_used(
    ensemble: Ensemble, group: Group, stranger: KazooClient, operator: KazooClient,
    squatted: str,
) -> None:
    """A stranger makes one of the group's own nodes first, open to all. No sidecar
    volunteers on it: each says `unknown`, names the node and its ACL in one line, and
    retries; once the node is deleted, the group makes it anew, closed, and elects."""
    parent = f"/sq-{uuid.uuid4().hex[:8]}"
    election = f"{parent}/{group.election}"
    node = {"election": election, "record": record_path(election),
            "markers": markers_path(election)}[squatted]
    operator.create(parent, b"", acl=[make_digest_acl(*OPERATOR, all=True), SHARED_RC])
    stranger.create(node, b"", acl=OPEN_ACL_UNSAFE)
    members = _spawn(group, ensemble, parent, count=2)
    for member in members:
        assert wait_for(lambda m=member: "refusing the election" in m.log_text(), SLACK)
    assert not wait_for(lambda: any(m.role() != "unknown" for m in members), 2.0), [
        m.role() for m in members]
    assert _candidates(stranger, election) == [], "no candidate in a squatted election"
    for member in members:
        line = next(line for line in member.log_text().splitlines()
                    if "refusing the election" in line)
        assert f"{node} has the ACL [world:anyone:rwcda]" in line, line
        assert member.log_text().count("refusing the election") == 1, "one line, no storm"
    assert_survived(*members)

    # The repair: whoever may delete in the parent does.
    operator.delete(node, recursive=True)
    assert wait_for(lambda: len(leaders(members)) == 1,
                    REFUSED_BACKOFF_MAX + SESSION_TIMEOUT + SLACK)
    assert all(m.role() in ("leader", "follower") for m in members) or wait_for(
        lambda: all(m.role() in ("leader", "follower") for m in members), SLACK)
    acl, _stat = stranger.get_acls(node)
    assert all(entry.perms & ~(1 | 4) == 0 for entry in acl if entry.id.scheme == "world")
    assert_survived(*members)


def test_a_squatted_shared_parent_is_closed_and_used(
    ensemble: Ensemble, group: Group, stranger: KazooClient
) -> None:
    """The shared parent made first, open to all (or by a release without credentials): a
    sidecar sets its ACL to the contract, since everything below it that the election uses
    is checked in the same round trip, and elects at once. Nobody may delete there since."""
    parent = f"/sq-{uuid.uuid4().hex[:8]}"
    stranger.create(parent, b"", acl=OPEN_ACL_UNSAFE)
    members = _spawn(group, ensemble, parent, count=2)
    group.wait_one_leader(timeout=SLACK + SESSION_TIMEOUT)
    log = "".join(m.log_text() for m in members)
    assert f"repaired the ACL of the shared parent {parent}: was [world:anyone:rwcda], now " \
        "[world:anyone:rc]" in log, log
    assert "refusing the election" not in log
    acl, _stat = stranger.get_acls(parent)
    assert [(e.id.scheme, e.perms) for e in acl] == [("world", 1 | 4)]
    election = f"{parent}/{group.election}"
    assert wait_for(lambda: stranger.exists(record_path(election)) is not None, SLACK)
    with pytest.raises(NoAuthError):
        stranger.delete(record_path(election))
    assert_survived(*members)


def test_the_same_election_without_squatting_elects_at_once(
    ensemble: Ensemble, group: Group, stranger: KazooClient
) -> None:
    """The check costs one round trip before the volunteer, none on the way to leading:
    the first candidate leads on its create's anchor, as without credentials. The nodes it
    made are closed: the parent shared (read, create), the group's own read-only to others."""
    parent = f"/open-{uuid.uuid4().hex[:8]}"
    election = f"{parent}/{group.election}"
    members = _spawn(group, ensemble, parent, count=3)
    leader = group.wait_one_leader(timeout=SLACK + SESSION_TIMEOUT)
    assert "elected leader" in leader.log_text()
    assert "at once, on its fresh anchor" in leader.log_text(), leader.log_text()
    assert "refusing the election" not in "".join(m.log_text() for m in members)
    world = {path: [e.perms for e in stranger.get_acls(path)[0] if e.id.scheme == "world"]
             for path in (parent, election, record_path(election), markers_path(election))}
    assert world == {parent: [1 | 4], election: [1], record_path(election): [1],
                     markers_path(election): [1]}, world
    assert [e.id.scheme for e in stranger.get_acls(parent)[0]] == ["world"], (
        "nobody may delete in the shared parent")


def test_followers_ignore_a_record_that_names_no_live_candidate(
    ensemble: Ensemble, group: Group, zk_client: KazooClient
) -> None:
    """Whoever can write the record (here anyone: no credentials) names a candidate that
    does not exist, or a live follower at the leader's epoch: followers keep the leader."""
    members = group.spawn(ensemble.connect_string, count=3)
    leader = group.wait_one_leader()
    epoch = leader.status()["epoch"]  # type: ignore[index]
    path = record_path(f"/leader-election/{group.election}")
    assert wait_for(lambda: zk_client.exists(path) is not None
                    and json.loads(zk_client.get(path)[0] or b"{}").get("epoch") == epoch, SLACK)
    follower = next(m for m in members if m is not leader)
    follower_node = next(
        name for name in zk_client.get_children(f"/leader-election/{group.election}")
        if zk_client.get(f"/leader-election/{group.election}/{name}")[1].czxid != epoch
    )
    forged = [
        {"identity": "mallory", "epoch": epoch, "node": f"candidate-{'0' * 32}-0000000042"},
        {"identity": follower.identity, "epoch": epoch, "node": follower_node},
    ]
    for record in forged:
        zk_client.set(path, json.dumps(record).encode())
        assert not wait_for(
            lambda: any((m.status() or {}).get("leader") != leader.identity for m in members),
            1.0,
        ), [(m.identity, m.status()) for m in members]
    assert any("no live candidate" in m.log_text() for m in members)
    leader.terminate()
    survivors = [m for m in members if m is not leader]
    new = group.wait_one_leader()
    assert wait_for(lambda: all((m.status() or {}).get("leader") == new.identity
                                for m in survivors), SLACK)
    assert_survived(*survivors)
