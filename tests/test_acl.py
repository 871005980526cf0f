"""`--zk-auth`: only the credentials' holders may change or delete candidates' znodes."""

from __future__ import annotations

import pytest
from election_support import SLACK, Group
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from sidecar.election.record import record_path
from sidecar.lab.candidates import leaders, wait_for
from sidecar.lab.ensemble import Ensemble


def test_znodes_are_protected_by_digest_acl(ensemble: Ensemble, group: Group) -> None:
    # A parent of its own: the ACL is set when the sidecar creates the path.
    group.spawn(
        ensemble.connect_string, count=2,
        extra_args=("--zk-auth", "elector:s3cret", "--election-parent", "/secured"),
    )
    leader = group.wait_one_leader()
    path = f"/secured/{group.election}"
    stranger = KazooClient(hosts=ensemble.connect_string)
    stranger.start(timeout=10)
    try:
        children = stranger.get_children(path)  # everyone may read
        assert len(children) == 2
        first = sorted(children, key=lambda n: int(n.rsplit("-", 1)[1]))[0]
        with pytest.raises(NoAuthError):
            stranger.delete(f"{path}/{first}")
        with pytest.raises(NoAuthError):
            stranger.set(f"{path}/{first}", b"forged")
        with pytest.raises(NoAuthError):
            stranger.create(f"{path}/candidate-intruder-", b"", ephemeral=True, sequence=True)
        assert wait_for(lambda: stranger.exists(record_path(path)) is not None, SLACK)
        with pytest.raises(NoAuthError):
            stranger.set(record_path(path), b'{"identity":"x","epoch":99999999999,"node":"n"}')
        with pytest.raises(NoAuthError):
            stranger.delete(record_path(path))
        assert leader.role() == "leader"
    finally:
        stranger.stop()
        stranger.close()


def test_groups_with_their_own_credentials_share_the_parent(
    ensemble: Ensemble, group: Group
) -> None:
    """Every release generates credentials of its own: the shared parent lets each create
    its election there, and nobody without a group's credentials can touch that group's."""
    common = ("--election-parent", "/shared")
    first = group.spawn(ensemble.connect_string, count=2,
                        extra_args=("--zk-auth", "one:s3cret", *common))
    other = f"{group.election}-b"
    second = group.spawn(ensemble.connect_string, count=2,
                         extra_args=("--zk-auth", "two:s3cret", *common, "--election", other))
    assert wait_for(lambda: len(leaders(first)) == 1 and len(leaders(second)) == 1, SLACK)
    stranger = KazooClient(hosts=ensemble.connect_string)
    stranger.start(timeout=10)
    try:
        for election in (group.election, other):
            with pytest.raises(NoAuthError):
                stranger.delete(f"/shared/{election}", recursive=False)
            with pytest.raises(NoAuthError):
                stranger.create(f"/shared/{election}/candidate-intruder-", b"", sequence=True)
        stranger.create("/shared/someone-else")  # the parent is shared: anyone may add one
    finally:
        stranger.stop()
        stranger.close()
