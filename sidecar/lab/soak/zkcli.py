"""What an operator does to an election by hand with zkCli: list the candidates' znodes and
delete one, with the group's credentials when it has some.

The soak's `znode-delete` fault uses it to delete the leader's own znode under it. It reads
the znodes as an outsider would (names, JSON data, czxid) and shares no code with the
sidecar's election, so a change there cannot make the fault miss its target quietly.

Guaranteed: the client it opens is stopped and closed before it returns, whatever failed.
Not guaranteed: that the znode still exists when the delete arrives (its owner may have
deleted it meanwhile: `NoNodeError` then reaches the caller).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kazoo.client import KazooClient

# As the sidecars name their znodes (sidecar/election/candidacy.py), restated here on purpose:
# an operator goes by what is in ZooKeeper, not by the code under test.
CANDIDATE_NAME = re.compile(r"^candidate-[0-9a-f]{32}-(-?\d{10})$")
CONNECT_TIMEOUT = 10.0  # seconds: long enough to outlast a lost quorum the soak restarts


@dataclasses.dataclass(frozen=True)
class CandidateNode:
    name: str
    sequence: int
    identity: str | None  # None: data that is not a candidate's JSON
    czxid: int


class NoCandidateNode(LookupError):
    """The candidate has no znode in the election (it is between two candidacies)."""


def auth_of(args: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The `user:password` a sidecar started with `args` and `env` authenticates with:
    `--zk-auth` (either spelling) over `ZK_AUTH`, as the sidecar's own CLI reads them."""
    for index, arg in enumerate(args):
        if arg == "--zk-auth" and index + 1 < len(args):
            return args[index + 1] or None
        if arg.startswith("--zk-auth="):
            return arg.partition("=")[2] or None
    return env.get("ZK_AUTH") or None


def _identity(data: bytes) -> str | None:
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    identity = document.get("identity") if isinstance(document, dict) else None
    return identity if isinstance(identity, str) else None


def candidate_nodes(client: Any, path: str) -> list[CandidateNode]:
    """The candidates' znodes under `path` in election order (the integer sequence)."""
    nodes = []
    for name in client.get_children(path):
        match = CANDIDATE_NAME.match(str(name))
        if match is None:
            continue
        data, stat = client.get(f"{path}/{name}")
        nodes.append(CandidateNode(str(name), int(match.group(1)), _identity(bytes(data)),
                                   int(stat.czxid)))
    return sorted(nodes, key=lambda node: node.sequence)


def node_of(nodes: Sequence[CandidateNode], identity: str,
            epoch: int | None = None) -> CandidateNode | None:
    """The znode `identity` stands with. A restarted candidate may have two for a while
    (the dead session's has not expired yet): the one whose czxid is the epoch it leads
    with, else its first in election order."""
    own = [node for node in nodes if node.identity == identity]
    leading = [node for node in own if epoch is not None and node.czxid == epoch]
    chosen = leading or own
    return chosen[0] if chosen else None


@contextlib.contextmanager
def operator_client(hosts: str, zk_auth: str | None,
                    timeout: float = CONNECT_TIMEOUT) -> Iterator[Any]:
    """A plain kazoo client, authenticated with digest `zk_auth` when there is one."""
    auth = [("digest", zk_auth)] if zk_auth else None
    client = KazooClient(hosts=hosts, timeout=timeout, auth_data=auth)
    try:
        client.start(timeout=timeout)
        yield client
    finally:
        client.stop()
        client.close()


def delete_candidate(hosts: str, path: str, identity: str, epoch: int | None = None,
                     zk_auth: str | None = None) -> str:
    """Delete the znode `identity` stands with under `path`; returns its name."""
    with operator_client(hosts, zk_auth) as client:
        node = node_of(candidate_nodes(client, path), identity, epoch)
        if node is None:
            raise NoCandidateNode(f"{identity} has no candidate znode under {path}")
        client.delete(f"{path}/{node.name}")
        return node.name
