"""The Kubernetes face with the real election: three sidecar processes, the real ZooKeeper
ensemble and the real apiserver, the sidecars authenticated as the chart's ServiceAccount.
The label follows ZooKeeper's verdict, and API faults (apiserver stopped, RBAC revoked, a
slow apiserver) never touch the election or the role files."""

from __future__ import annotations

import time
from pathlib import Path

from cluster_support import KubeNamespace
from election_support import SESSION_TIMEOUT, SLACK, Group

from sidecar.k8s import EPOCH_ANNOTATION, GROUP_LABEL, LEADER_ANNOTATION, STEP_DOWN_ANNOTATION
from sidecar.lab.candidates import SidecarProcess, wait_for
from sidecar.lab.ensemble import Ensemble

API_SLACK = 15.0  # kopf and the publisher back off up to a few seconds after an outage


def _start(ensemble: Ensemble, group: Group, kube_ns: KubeNamespace, count: int = 3,
           extra: tuple[str, ...] = ()) -> list[SidecarProcess]:
    for index in range(len(group.members), len(group.members) + count):
        kube_ns.add_pod(f"app-{index}", {GROUP_LABEL: group.election, "app": "demo"})
    return group.spawn(
        ensemble.connect_string, count=count, kubeconfig=Path(kube_ns.kubeconfig_path),
        namespace=kube_ns.namespace, extra_args=extra,
    )


def _start_in_sync(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> tuple[list[SidecarProcess], SidecarProcess]:
    """Three sidecars, one leader, and every label agreeing with its role file."""
    members = _start(ensemble, group, kube_ns)
    leader = group.wait_one_leader()
    assert wait_for(lambda: _labels_follow(kube_ns, members), API_SLACK)
    return members, leader


def _labels_follow(kube_ns: KubeNamespace, members: list[SidecarProcess]) -> bool:
    """Every live pod's label says what its role file says (leader/follower)."""
    return all(
        kube_ns.labels(m.identity).get("role") == m.role()
        for m in members if m.running
    )


def test_label_and_annotations_on_start(ensemble: Ensemble, group: Group, kube_ns: KubeNamespace) -> None:
    members, leader = _start_in_sync(ensemble, group, kube_ns)
    leaders = [p["metadata"]["name"] for p in kube_ns.pods()
               if p["metadata"].get("labels", {}).get("role") == "leader"]
    assert leaders == [leader.identity], "`kubectl get pods -l role=leader` finds exactly it"
    epoch = str(leader.status()["epoch"])  # type: ignore[index]
    for member in members:
        assert wait_for(lambda m=member: kube_ns.annotations(m.identity).get(EPOCH_ANNOTATION) == epoch, API_SLACK)  # type: ignore[misc]
    assert kube_ns.annotations(leader.identity)[LEADER_ANNOTATION] == leader.identity
    assert wait_for(lambda: "Elected" in kube_ns.reasons(leader.identity), API_SLACK)


def test_label_moves_on_graceful_and_crash_failover(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    _members, first = _start_in_sync(ensemble, group, kube_ns)
    assert first.terminate() == 0
    second = group.wait_one_leader(timeout=SLACK)
    assert wait_for(lambda: kube_ns.labels(first.identity).get("role") == "unknown", API_SLACK)
    assert wait_for(lambda: kube_ns.labels(second.identity).get("role") == "leader", API_SLACK)
    assert wait_for(lambda: "Demoted" in kube_ns.reasons(first.identity), API_SLACK)
    second.kill()
    third = group.wait_one_leader(timeout=SESSION_TIMEOUT + SLACK)
    assert wait_for(lambda: kube_ns.labels(third.identity).get("role") == "leader", API_SLACK)
    # The crashed pod could not relabel itself: the new leader clears its stale label.
    assert wait_for(lambda: kube_ns.labels(second.identity).get("role") == "follower", API_SLACK)
    assert wait_for(lambda: "Elected" in kube_ns.reasons(third.identity), API_SLACK)


def test_drift_is_restored(ensemble: Ensemble, group: Group, kube_ns: KubeNamespace) -> None:
    _members, leader = _start_in_sync(ensemble, group, kube_ns)
    kube_ns.label_pod(leader.identity, "role", "follower")
    assert wait_for(lambda: kube_ns.labels(leader.identity).get("role") == "leader", API_SLACK)


def test_step_down_through_the_annotation(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    members, old = _start_in_sync(ensemble, group, kube_ns)
    kube_ns.annotate_pod(old.identity, STEP_DOWN_ANNOTATION, "please")
    assert wait_for(lambda: old.role() == "follower", API_SLACK)
    new = group.wait_one_leader(timeout=SLACK)
    assert new is not old
    assert wait_for(
        lambda: STEP_DOWN_ANNOTATION not in kube_ns.annotations(old.identity), API_SLACK
    )
    assert wait_for(lambda: "SteppedDown" in kube_ns.reasons(old.identity), API_SLACK)
    assert wait_for(lambda: _labels_follow(kube_ns, members), API_SLACK)


def test_api_down_during_failover(ensemble: Ensemble, group: Group, kube_ns: KubeNamespace) -> None:
    _members, old = _start_in_sync(ensemble, group, kube_ns)
    kube_ns.down()
    assert old.terminate() == 0, "a dead API does not stop a graceful stop"
    new = group.wait_one_leader(timeout=SLACK)
    assert new.role() == "leader", "the files are right at once"
    kube_ns.up()
    assert wait_for(lambda: kube_ns.labels(new.identity).get("role") == "leader", API_SLACK)
    assert wait_for(lambda: new.status().get("label_in_sync") is True, API_SLACK)  # type: ignore[union-attr]


def test_forbidden_leaves_the_election_alone(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    kube_ns.forbid("patch", "pods")
    members = _start(ensemble, group, kube_ns)
    leader = group.wait_one_leader()
    assert wait_for(lambda: leader.status().get("label_in_sync") is False, API_SLACK)  # type: ignore[union-attr]
    # label_in_sync turns false as the patch is sent; the line comes with the 403.
    assert wait_for(lambda: "needs 'patch' on 'pods'" in leader.log_text(), API_SLACK)
    time.sleep(1.0)  # several retries later
    assert leader.log_text().count("needs 'patch' on 'pods'") == 1, "one clear line, no storm"
    assert all(m.running for m in members)


def test_slow_api_does_not_delay_the_successor(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    members, old = _start_in_sync(ensemble, group, kube_ns)
    kube_ns.slow(2.0)
    started = time.monotonic()
    old.signal(15)
    others = [m for m in members if m is not old]
    assert wait_for(lambda: any(m.role() == "leader" for m in others), SLACK)
    assert time.monotonic() - started < 2.0, "the successor's file did not wait for the API"


def test_revoked_rbac_leaves_the_election_alone_and_the_label_comes_back(
    ensemble: Ensemble, group: Group, kube_ns: KubeNamespace
) -> None:
    members, old = _start_in_sync(ensemble, group, kube_ns)
    kube_ns.revoke()  # the RoleBinding is deleted: every call gets 403
    assert old.terminate() == 0
    new = group.wait_one_leader(timeout=SLACK)
    assert wait_for(lambda: new.status().get("label_in_sync") is False, API_SLACK)  # type: ignore[union-attr]
    assert kube_ns.labels(new.identity).get("role") == "follower", "403: nothing written"
    # Before it labels itself, a new leader lists the group's leader labels (labelgate).
    line = "forbidden: the sidecar's ServiceAccount needs 'list' on 'pods'"
    assert wait_for(lambda: line in new.log_text(), API_SLACK)
    assert new.log_text().count(line) == 1
    assert all(m.running for m in members if m is not old)

    kube_ns.heal()  # the binding is back
    assert wait_for(lambda: kube_ns.labels(new.identity).get("role") == "leader", API_SLACK)
    assert wait_for(lambda: new.status().get("label_in_sync") is True, API_SLACK)  # type: ignore[union-attr]
