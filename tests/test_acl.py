"""`--zk-auth`: only the credentials' holders may change or delete candidates' znodes."""

from __future__ import annotations

import pytest
from election_support import Group
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

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
        assert leader.role() == "leader"
    finally:
        stranger.stop()
        stranger.close()
