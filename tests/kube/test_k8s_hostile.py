"""Hostile input from the Kubernetes side (issue 11), with sidecar processes on the real
ZooKeeper ensemble and the real apiserver, authenticated as the chart's ServiceAccount:
odd values a person sets with kubectl on the step-down annotation and the role label, the
own pod deleted under a running sidecar, its group label edited and put back (issue 24), a
namespace that does not exist, and a ServiceAccount token that stops being valid.

Each must end in a logged, survived event: the sidecar process keeps running without a
traceback, its role files stay right, exactly one candidate leads, and the labels follow
the role files again once the fault is gone. The ZooKeeper side is in
tests/test_hostile_input.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from cluster_support import RELEASE, KubeNamespace
from election_support import SESSION_TIMEOUT, SLACK, Group, assert_survived, kazoo_client

from sidecar.k8s import GROUP_LABEL, STEP_DOWN_ANNOTATION
from sidecar.lab.candidates import SidecarProcess, leaders, wait_for
from sidecar.lab.ensemble import Ensemble

API_SLACK = 15.0  # kopf and the publisher back off up to a few seconds after a fault
KOPF_GIVES_UP = 45.0  # kopf retries a refused watch for ~32 s (operator.build_settings)


def _start(ensemble: Ensemble, group: Group, kube_ns: KubeNamespace, count: int = 3,
           kubeconfig: Path | None = None, namespace: str | None = None,
           ) -> list[SidecarProcess]:
    for index in range(len(group.members), len(group.members) + count):
        kube_ns.add_pod(f"app-{index}", {GROUP_LABEL: group.election, "app": "demo"})
    return group.spawn(
        ensemble.connect_string, count=count,
        kubeconfig=kubeconfig or Path(kube_ns.kubeconfig_path),
        namespace=namespace or kube_ns.namespace,
    )


def _labels_follow(kube_ns: KubeNamespace, members: list[SidecarProcess]) -> bool:
    return all(kube_ns.labels(m.identity).get("role") == m.role() for m in members if m.running)


def _start_in_sync(ensemble: Ensemble, group: Group, kube_ns: KubeNamespace,
                   kubeconfig: Path | None = None) -> tuple[list[SidecarProcess], SidecarProcess]:
    members = _start(ensemble, group, kube_ns, kubeconfig=kubeconfig)
    leader = group.wait_one_leader()
    assert wait_for(lambda: _labels_follow(kube_ns, members), API_SLACK)
    return members, leader


def _one_leader_other_than(members: list[SidecarProcess], old: SidecarProcess) -> bool:
    # One listing only: the role files may change between two reads.
    now = leaders(members)
    return len(now) == 1 and now[0] is not old


def _labelled_leaders(kube_ns: KubeNamespace) -> list[str]:
    """`kubectl get pods -l role=leader`."""
    return [p["metadata"]["name"] for p in kube_ns.pods()
            if (p["metadata"].get("labels") or {}).get("role") == "leader"]


# --- c. odd values a person sets with kubectl -----------------------------------------------

STEP_DOWN_VALUES = {
    "empty": "",
    "huge": "x" * 200_000,  # the API allows 256 KiB of annotations per object
    "unicode": "⏏ zurücktreten, s'il vous plaît 🚀\u202e",
    "LEADER": "LEADER",
    "true": "true",
    "json": '{"step-down": false, "reason": ["maintenance", null]}',
}


def test_odd_step_down_annotation_values(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    """The annotation means "step down" whatever its value (README: presence, not value):
    every odd value hands over exactly once, the annotation goes away, and the Event that
    says so stays readable."""
    members, leader = _start_in_sync(ensemble, group, kube_ns)
    with group.monitor() as monitor:
        for what, value in STEP_DOWN_VALUES.items():
            for pod in (next(m for m in members if m is not leader), leader):
                kube_ns.annotate_pod(pod.identity, STEP_DOWN_ANNOTATION, value)
                assert wait_for(lambda p=pod: STEP_DOWN_ANNOTATION not in kube_ns.annotations(  # type: ignore[misc]
                    p.identity), API_SLACK), (what, pod.identity)
            assert wait_for(lambda old=leader: _one_leader_other_than(members, old), SLACK), what  # type: ignore[misc]
            leader = leaders(members)[0]
        assert wait_for(lambda: _labels_follow(kube_ns, members), API_SLACK)
    assert monitor.violations() == []

    def steps() -> list[dict[str, Any]]:
        return [e for m in members for e in kube_ns.events(m.identity, "SteppedDown")]

    assert wait_for(lambda: len(steps()) >= len(STEP_DOWN_VALUES), API_SLACK)
    assert len(steps()) == len(STEP_DOWN_VALUES), "one step-down per annotation, not more"
    assert all(len(e["message"]) <= 1024 for e in steps()), [len(e["message"]) for e in steps()]
    assert any("characters)" in e["message"] for e in steps()), "the huge value, shortened"
    assert _labelled_leaders(kube_ns) == [leader.identity]
    assert_survived(*members)


VALID_ODD_LABELS = ["", "LEADER", "true", "Leader", "unknown", "leader", None]
INVALID_LABELS = ["x" * 64, "führer", '{"role":"leader"}', "leader follower"]


def test_odd_role_label_values(ensemble: Ensemble, group: Group, kube_ns: KubeNamespace) -> None:
    """A person sets odd values on the `role` label of every pod (or removes it). The API
    refuses what is no label value; each sidecar puts its own label right again, and
    `kubectl get pods -l role=leader` finds exactly the leader."""
    members, leader = _start_in_sync(ensemble, group, kube_ns)
    for value in INVALID_LABELS:
        with pytest.raises(kubernetes.client.ApiException) as refused:
            kube_ns.label_pod(leader.identity, "role", value)
        assert refused.value.status == 422
    with group.monitor() as monitor:
        for value in VALID_ODD_LABELS:
            for member in members:
                kube_ns.label_pod(member.identity, "role", value)
            assert wait_for(lambda: _labels_follow(kube_ns, members), API_SLACK), (
                value, {m.identity: kube_ns.labels(m.identity).get("role") for m in members})
    assert monitor.violations() == []
    assert leaders(members) == [leader], "a label never moves the election"
    assert _labelled_leaders(kube_ns) == [leader.identity]
    assert "restoring them" in leader.log_text()
    assert_survived(*members)


# --- d. the own pod deleted under the sidecar -----------------------------------------------


def test_own_pod_deleted_under_the_sidecar(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    """`kubectl delete pod --force --grace-period=0` of the leader's pod while its sidecar
    runs on (the kubelet has yet to stop it, or its node lost touch): the pod is gone, so
    the sidecar leaves the election as on a graceful delete and says so; a successor
    leads. When a pod of the same name comes back (as the StatefulSet recreates it), the
    old sidecar, still out of the election, writes nothing there: its patches carry the old
    pod's uid and are refused (issue 24, item 9); the new pod's label is its own sidecar's."""
    members, leader = _start_in_sync(ensemble, group, kube_ns)
    # Its operator watches its pod once it puts a label edited by hand right again (a pod
    # deleted before the operator's first listing goes unnoticed: see the report).
    kube_ns.label_pod(leader.identity, "role", "follower")
    assert wait_for(lambda: kube_ns.labels(leader.identity).get("role") == "leader", API_SLACK)
    with group.monitor() as monitor:
        kube_ns.delete_pod(leader.identity)
        assert wait_for(lambda: "own pod is being deleted: leaving the election" in leader.log_text()
                        or "own pod was deleted: leaving the election" in leader.log_text(),
                        API_SLACK), leader.log_text()[-2000:]
        assert wait_for(lambda: leader.role() == "unknown", SLACK)
        others = [m for m in members if m is not leader]
        assert wait_for(lambda: len(leaders(others)) == 1, SLACK)
        kube_ns.add_pod(leader.identity, {GROUP_LABEL: group.election, "app": "demo"})
        assert wait_for(lambda: _labels_follow(kube_ns, others), API_SLACK), {
            m.identity: (m.role(), kube_ns.labels(m.identity).get("role")) for m in members}
        time.sleep(2.0)  # the old sidecar's retries, had they been let through
        assert kube_ns.labels(leader.identity).get("role") is None, "the old pod's label"
    assert monitor.violations() == []
    assert _labelled_leaders(kube_ns) == [leaders(others)[0].identity]
    assert leader.role() == "unknown", "it stays out: its pod is gone"
    assert_survived(*members)


def test_group_label_edited_and_restored(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    """`kubectl label pod <leader> leader-election/name=x --overwrite`, then back, and the
    label removed, then back (issue 24, item 1). The pod stops matching the sidecars' watch
    and the apiserver sends DELETED for it, but it is not deleted: nobody hands over, and
    once the label is back the labels follow the role files as before. Before the fix the
    leader's sidecar left the election for good and its pod stayed `unknown`."""
    members, leader = _start_in_sync(ensemble, group, kube_ns)
    # Its operator watches its pod once it puts a label edited by hand right again.
    kube_ns.label_pod(leader.identity, "role", "follower")
    assert wait_for(lambda: kube_ns.labels(leader.identity).get("role") == "leader", API_SLACK)
    with group.monitor() as monitor:
        for value in ("x", None):
            kube_ns.label_pod(leader.identity, GROUP_LABEL, value)
            time.sleep(2.0)  # the DELETED is handled meanwhile
            kube_ns.label_pod(leader.identity, GROUP_LABEL, group.election)
            assert wait_for(lambda: _labels_follow(kube_ns, members), API_SLACK)
            assert leaders(members) == [leader], "a label edit never moves the election"
        kube_ns.label_pod(leader.identity, "role", "unknown")  # watched again: put right
        assert wait_for(lambda: kube_ns.labels(leader.identity).get("role") == "leader",
                        API_SLACK)
    assert monitor.violations() == []
    assert "LeavingOnDelete" not in kube_ns.reasons(leader.identity)
    assert "leaving the election" not in leader.log_text()
    assert _labelled_leaders(kube_ns) == [leader.identity]
    assert_survived(*members)


# --- e. a namespace that does not exist -------------------------------------------------------


def test_namespace_that_does_not_exist(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    """POD_NAMESPACE names a namespace that does not exist: the election and the role files
    work as without Kubernetes, one line says what is wrong, nothing crashes."""
    missing = f"{kube_ns.namespace}-missing"
    members = group.spawn(ensemble.connect_string, count=2,
                          kubeconfig=Path(kube_ns.kubeconfig_path), namespace=missing)
    leader = group.wait_one_leader()
    assert wait_for(lambda: leader.status().get("label_in_sync") is False, API_SLACK)  # type: ignore[union-attr]
    # The leader's first request lists its group (sidecar/labelgate.py), a follower's
    # patches its pod: either way the line names the namespace.
    assert wait_for(lambda: f"'pods' in namespace {missing!r}: POD_NAMESPACE "
                            "must be the pod's own namespace" in leader.log_text(), API_SLACK)
    # kopf retries its watch for about 30 s, gives up, and is started again.
    assert wait_for(lambda: "kopf operator ended" in leader.log_text(), KOPF_GIVES_UP)
    assert_survived(*members)
    with group.monitor() as monitor:
        assert leader.terminate() == 0
        group.wait_one_leader(timeout=SLACK)
    assert monitor.violations() == []
    survivor = next(m for m in members if m is not leader)
    assert survivor.role() == "leader"
    assert_survived(survivor)
    log = survivor.log_text()
    assert log.count(f"namespace {missing!r}") <= 3, "a few clear lines, no log storm"


# --- f. a ServiceAccount token that is no longer valid -------------------------------------------


def _kubeconfig_with_token_file(kube_ns: KubeNamespace, token_file: Path) -> Path:
    """The namespace's sidecar kubeconfig, with the token read from `token_file` (as the
    kubelet's projected token is: the sidecar reads it before every request)."""
    document: dict[str, Any] = yaml.safe_load(Path(kube_ns.kubeconfig_path).read_text())
    user = document["users"][0]["user"]
    token_file.write_text(user.pop("token"))
    user["tokenFile"] = str(token_file)
    path = Path(kube_ns.kubeconfig_path).with_name("token-file-kubeconfig.yaml")
    path.write_text(yaml.safe_dump(document))
    return path


def test_revoked_service_account_token(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace, tmp_path: Path
) -> None:
    """The ServiceAccount is deleted: its tokens stop being valid at once (401, unlike a
    missing RoleBinding's 403). The election goes on; the label waits. A new account and a
    fresh token in the token file (as the kubelet rotates it) bring the label back."""
    token_file = tmp_path / "token"
    kubeconfig = _kubeconfig_with_token_file(kube_ns, token_file)
    members, old = _start_in_sync(ensemble, group, kube_ns, kubeconfig=kubeconfig)
    kube_ns.core.delete_namespaced_service_account(RELEASE, kube_ns.namespace)
    assert wait_for(lambda: not _token_works(kube_ns, token_file.read_text()), API_SLACK)
    with group.monitor() as monitor:
        assert old.terminate() == 0
        new = group.wait_one_leader(timeout=SLACK)
    assert monitor.violations() == []
    assert wait_for(lambda: new.status().get("label_in_sync") is False, API_SLACK)  # type: ignore[union-attr]
    assert wait_for(lambda: "unauthorized" in new.log_text(), API_SLACK)
    assert kube_ns.labels(new.identity).get("role") == "follower", "401: nothing written"

    kube_ns.apply_rbac()  # the account is back, with a new uid: old tokens stay invalid
    token_file.write_text(kube_ns.token())
    assert wait_for(lambda: kube_ns.labels(new.identity).get("role") == "leader", API_SLACK)
    assert wait_for(lambda: new.status().get("label_in_sync") is True, API_SLACK)  # type: ignore[union-attr]
    assert wait_for(lambda: _labels_follow(kube_ns, members), API_SLACK)
    survivors = [m for m in members if m is not old]
    assert_survived(*survivors)
    assert new.log_text().count("unauthorized") <= 3, "a few clear lines, no log storm"


def _token_works(kube_ns: KubeNamespace, token: str) -> bool:
    review = kubernetes.client.AuthenticationV1Api(kube_ns.admin_client).create_token_review(
        {"spec": {"token": token}})
    return bool(review.status.authenticated)


def test_garbage_token_from_the_start(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace, tmp_path: Path
) -> None:
    """A garbage token from the start (a mounted secret gone wrong): the sidecar starts,
    leads, and says once that the API rejected its credentials; kopf gives up and is
    started again, without a traceback, until a valid token is in the file."""
    token_file = tmp_path / "token"
    kubeconfig = _kubeconfig_with_token_file(kube_ns, token_file)
    token_file.write_text("not-a-token")
    members = _start(ensemble, group, kube_ns, count=2, kubeconfig=kubeconfig)
    leader = group.wait_one_leader(timeout=SESSION_TIMEOUT + SLACK)
    assert wait_for(lambda: "unauthorized" in leader.log_text(), API_SLACK)
    assert wait_for(lambda: "kopf operator ended" in leader.log_text(), API_SLACK), "kopf gave up"
    assert_survived(*members)
    token_file.write_text(kube_ns.token())
    assert wait_for(lambda: _labels_follow(kube_ns, members), API_SLACK)
    assert_survived(*members)


# --- h. a new password over the old ACL (issue 24, item 4) -----------------------------------


def _refused_with_an_event(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace, zk_auth: str, parent: str
) -> tuple[SidecarProcess, dict[str, Any]]:
    """One sidecar of the pod `app-0` in an election under `parent` that ZooKeeper's
    nodes make it refuse: its role once the Warning Event `ZooKeeperRefused` is there."""
    kube_ns.add_pod("app-0", {GROUP_LABEL: group.election, "app": "demo"})
    (member,) = group.spawn(
        ensemble.connect_string, kubeconfig=Path(kube_ns.kubeconfig_path),
        namespace=kube_ns.namespace,
        extra_args=("--zk-auth", zk_auth, "--election-parent", parent),
    )
    assert wait_for(lambda: "ZooKeeperRefused" in kube_ns.reasons("app-0"), API_SLACK)
    assert member.role() == "unknown"
    (event,) = kube_ns.events("app-0", reason="ZooKeeperRefused")
    assert event["type"] == "Warning"
    assert_survived(member)
    return member, event


def test_refused_by_zookeeper_says_so_in_an_event(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    """The election's znodes carry the ACL of an earlier password (a reinstall that made
    new credentials): every sidecar gets NoAuth and stays `unknown`. Each says so in one
    line and in a Warning Event on its pod, where `kubectl describe pod` shows it."""
    from kazoo.security import make_acl, make_digest_acl

    parent = f"/acl-{group.election}"
    with kazoo_client(ensemble.connect_string, "old:pw") as earlier:
        earlier.create(f"{parent}/{group.election}", b"", makepath=True, acl=[
            make_digest_acl("old", "pw", all=True), make_acl("world", "anyone", read=True)])
        member, event = _refused_with_an_event(ensemble, group, kube_ns, "new:pw", parent)
        assert member.log_text().count("refused access") == 1, "one line, no log storm"
        assert parent in event["message"] and "--zk-auth" in event["message"]


def test_a_squatted_election_node_says_so_in_an_event(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    """A client with no credentials made the election node and its parent first, open to
    all: the sidecar closes the shared parent, never volunteers in the election node, stays
    `unknown` and names that node and its ACL in a Warning Event on its pod."""
    from kazoo.security import OPEN_ACL_UNSAFE

    parent = f"/squat-{group.election}"
    with kazoo_client(ensemble.connect_string) as stranger:
        stranger.create(f"{parent}/{group.election}", b"", makepath=True, acl=OPEN_ACL_UNSAFE)
        _member, event = _refused_with_an_event(ensemble, group, kube_ns, "group:pw", parent)
        node = f"{parent}/{group.election}"
        assert f"{node} has the ACL [world:anyone:rwcda]" in event["message"], event
