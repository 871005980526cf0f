"""`leader-sidecar status`: the queue of candidates as ZooKeeper holds it, leader first.

A one-shot read: it opens its own session, lists the election's children and reads each
candidate's data and czxid. The listing is a snapshot; a candidate may come or go while
it is printed. With `--kubernetes` it also lists the group's pods and whether each pod's
role label agrees with ZooKeeper's leader.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from typing import Any

from .config import (
    DEFAULT_PARENT,
    Config,
    ConfigError,
    validate_election,
    validate_election_parent,
    validate_session_timeout,
    validate_zk_auth,
    validate_zk_hosts,
    validate_zk_tls,
)
from .election import identity_of, parse_candidates
from .zk import NoNode, ZkError, ZkSession

CONNECT_TIMEOUT = 10.0
SESSION_TIMEOUT = 10.0  # a one-shot reader; --session-timeout overrides it


class StatusUnavailable(Exception):
    """A source of the status (ZooKeeper, the Kubernetes API) did not answer."""


@dataclasses.dataclass(frozen=True)
class QueueEntry:
    position: int
    identity: str
    znode: str
    sequence: int
    epoch: int


def read_queue(zk: ZkSession, path: str) -> list[QueueEntry]:
    try:
        candidates = parse_candidates(zk.children(path))
    except NoNode:
        return []
    entries: list[QueueEntry] = []
    for candidate in candidates:
        try:
            data, stat = zk.get(f"{path}/{candidate.name}")
        except NoNode:
            continue  # left while we listed
        entries.append(
            QueueEntry(
                position=len(entries),
                identity=identity_of(data, candidate.name),
                znode=candidate.name,
                sequence=candidate.sequence,
                epoch=stat.czxid,
            )
        )
    return entries


def _kubernetes_rows(
    args: argparse.Namespace, env: Mapping[str, str], election: str, leader: str | None
) -> list[dict[str, Any]]:
    namespace = args.namespace or env.get("POD_NAMESPACE")
    if not namespace:
        raise ConfigError("--kubernetes needs --namespace or POD_NAMESPACE")
    from .k8s import KubernetesApiError, list_group_pods
    from .kubeapi import KubernetesConfigError

    config = Config(
        zk_hosts="-", election=election, identity="", namespace=namespace,
        kubeconfig=args.kubeconfig or env.get("KUBECONFIG"),
    )
    rows = []
    try:
        pods = list_group_pods(config)
    except KubernetesConfigError as error:
        raise ConfigError(str(error)) from None
    except KubernetesApiError as error:
        raise StatusUnavailable(str(error)) from None
    for pod in pods:
        rows.append(
            {"pod": pod.name, "role_label": pod.role_label, "epoch": pod.epoch,
             "agrees": pod.agrees_with(leader)}
        )
    return rows


def print_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    hosts = validate_zk_hosts(args.zk_hosts or env.get("ZK_HOSTS"))
    election = validate_election(args.election or env.get("ELECTION_NAME"))
    parent = validate_election_parent(
        args.election_parent or env.get("ELECTION_PARENT") or DEFAULT_PARENT
    )
    auth = validate_zk_auth(args.zk_auth or env.get("ZK_AUTH"))
    tls = validate_zk_tls(*(getattr(args, flag, None) or env.get(var) for flag, var in (
        ("zk_tls_ca", "ZK_TLS_CA"), ("zk_tls_cert", "ZK_TLS_CERT"), ("zk_tls_key", "ZK_TLS_KEY"))))
    path = f"{parent.rstrip('/')}/{election}"
    timeout = validate_session_timeout(getattr(args, "session_timeout", None) or SESSION_TIMEOUT)
    zk = ZkSession(hosts, timeout, on_session=lambda _: None, on_watch=lambda *_: None,
                   zk_auth=auth, tls=tls)
    zk.start()
    try:
        if not zk.wait_connected(CONNECT_TIMEOUT):
            print(f"leader-sidecar: ZooKeeper {hosts} not reachable", file=sys.stderr)
            return 1
        entries = read_queue(zk, path)
    except ZkError as error:
        print(f"leader-sidecar: cannot read {path}: {error}", file=sys.stderr)
        return 1
    finally:
        zk.close()
    leader = entries[0].identity if entries else None
    try:
        pods = _kubernetes_rows(args, env, election, leader) if args.kubernetes else None
    except StatusUnavailable as error:
        print(f"leader-sidecar: {error}", file=sys.stderr)
        return 1
    if args.json:
        document: dict[str, Any] = {
            "election": election, "path": path, "leader": leader,
            "candidates": [dataclasses.asdict(entry) for entry in entries],
        }
        if pods is not None:
            document["pods"] = pods
        print(json.dumps(document, indent=2))
    else:
        _print_table(election, entries, pods)
    return 0 if entries else 3


def _print_table(
    election: str, entries: list[QueueEntry], pods: list[dict[str, Any]] | None
) -> None:
    if not entries:
        print(f"election {election}: no candidates")
    else:
        print(f"election {election}: {len(entries)} candidates, leader {entries[0].identity}")
        print(f"{'#':>3}  {'identity':<24} {'sequence':>10}  {'epoch':>20}  role")
        for entry in entries:
            role = "leader" if entry.position == 0 else "follower"
            print(
                f"{entry.position:>3}  {entry.identity:<24} {entry.sequence:>10}  "
                f"{entry.epoch:>20}  {role}"
            )
    if pods is not None:
        print(f"\n{'pod':<24} {'label':<10} {'epoch':>20}  agrees")
        for pod in pods:
            print(
                f"{pod['pod']:<24} {pod['role_label'] or '-':<10} "
                f"{pod['epoch'] or '-':>20}  {'yes' if pod['agrees'] else 'NO'}"
            )
