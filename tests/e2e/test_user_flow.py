"""What users do, with the real `helm` and `kubectl` on the real local control plane:
install the chart, find the leader by its label, delete pods, hand over, upgrade,
uninstall. The sidecars run as local processes (the pod runner) on a real ZooKeeper
ensemble, and authenticate with the chart's own ServiceAccount and Role."""

from __future__ import annotations

import signal

import pytest
from election_support import SESSION_TIMEOUT
from kazoo.exceptions import NoAuthError

from sidecar.lab.cluster.release import ChartRelease, wait
from sidecar.rolefiles import read_status
from sidecar.state import parse_isoformat_z

SLACK = 30.0  # generous: kubectl and helm calls, restarts with back-off, a busy 2-core box
# An install waits up to 180 s and an upgrade 240 s; the first test also starts the cluster.
pytestmark = pytest.mark.timeout(600)


def test_install_in_a_restricted_namespace_admits_every_object(release: ChartRelease) -> None:
    labels = release.cluster.kubectl("get", "namespace", release.namespace,
                                     "-o", "jsonpath={.metadata.labels}")
    assert '"pod-security.kubernetes.io/enforce":"restricted"' in labels
    manifest = release.helm("get", "manifest", release.name)
    objects = [(kind, name) for kind, name in _kinds_and_names(manifest)]
    assert len(objects) >= 10
    for kind, name in objects:  # admission let every one of them in
        release.kubectl("get", kind, name)
    assert len(release.pods()) == 3


def test_exactly_one_pod_is_labelled_leader(release: ChartRelease) -> None:
    leader = release.wait_settled(SLACK)
    assert release.labelled_leaders() == [leader]
    table = release.kubectl("get", "pods", "-l", release.app_selector, "-L", "role")
    rows = [line.split() for line in table.splitlines()[1:]]
    assert sorted(row[-1] for row in rows) == ["follower", "follower", "leader"]


def test_leader_service_endpoints_follow_the_leader(release: ChartRelease) -> None:
    leader = release.wait_settled(SLACK)
    wait(lambda: release.leader_endpoints() == [release.pod_ip(leader)], SLACK,
         "the leader Service's EndpointSlice holds the leader's address")
    release.kubectl("delete", "pod", leader, "--wait=false")
    successor = release.wait_settled(SLACK, not_=leader)
    wait(lambda: release.leader_endpoints() == [release.pod_ip(successor)], SLACK,
         "the EndpointSlice follows the new leader")


def test_deleted_leader_hands_over_and_comes_back_as_follower(release: ChartRelease) -> None:
    leader = release.wait_settled(SLACK)
    old_uid = release.get_json("pod", leader)["metadata"]["uid"]
    release.kubectl("delete", "pod", leader)
    successor = release.wait_settled(SLACK, not_=leader)
    assert successor != leader
    recreated = release.get_json("pod", leader)["metadata"]["uid"]
    assert recreated != old_uid, "the StatefulSet controller made a new pod"
    assert release.roles()[leader] == "follower"


def test_deleted_leader_leaves_before_its_application_is_stopped(release: ChartRelease) -> None:
    """The sidecar leaves on its pod's deletion (its watch and its preStop hook), while the
    application's `sleep` preStop hook holds its SIGTERM back: the successor leads first."""
    leader = release.wait_settled(SLACK)
    release.kubectl("delete", "pod", leader, "--wait=false")
    successor = release.wait_settled(SLACK, not_=leader)
    status = read_status(release.runner.role_dir(successor))
    assert status is not None and status["role"] == "leader"
    led_at = parse_isoformat_z(str(status["since"])).timestamp()
    app_stopped_at = release.runner.app_sigterm_at(leader)
    assert app_stopped_at is not None
    assert led_at < app_stopped_at, "the successor led before the application got SIGTERM"
    wait(lambda: "LeavingOnDelete" in release.kubectl(
        "get", "events", "--field-selector", f"involvedObject.name={leader}",
        "-o", "jsonpath={.items[*].reason}"), SLACK, "the sidecar said why it left")


def test_leader_killed_hard_hands_over_and_restarts_as_follower(release: ChartRelease) -> None:
    leader = release.wait_settled(SLACK)
    release.runner.kill(leader, signal.SIGKILL)
    successor = release.wait_settled(SESSION_TIMEOUT + SLACK, not_=leader)
    assert successor != leader
    wait(lambda: release.runner.pid(leader) is not None, SLACK, "the container restarted")
    assert release.roles()[leader] == "follower"


def test_step_down_annotation_hands_over(release: ChartRelease) -> None:
    leader = release.wait_settled(SLACK)
    release.kubectl("annotate", "pod", leader, "leader-election/step-down=now")
    successor = release.wait_settled(SLACK, not_=leader)
    assert successor != leader
    wait(lambda: "leader-election/step-down" not in
         release.get_json("pod", leader)["metadata"].get("annotations", {}), SLACK,
         "the annotation is removed")


def test_forged_leader_label_is_put_right(release: ChartRelease) -> None:
    leader = release.wait_settled(SLACK)
    follower = next(name for name, role in release.roles().items() if role == "follower")
    release.kubectl("label", "pod", follower, "role=leader", "--overwrite")
    wait(lambda: release.roles()[follower] == "follower", SLACK, "the label is put right")
    assert release.labelled_leaders() == [leader]


def test_upgrade_rolls_and_uninstall_leaves_nothing(release: ChartRelease, zk_client) -> None:
    release.wait_settled(SLACK)
    secret = release.get_json("secret", f"{release.name}-zk-auth")["data"]["credentials"]
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in release.pods()}
    release.upgrade({"app": {"podAnnotations": {"rolled": "yes"}}}, timeout=240)
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in release.pods()}
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in before), "every pod was replaced"
    release.wait_settled(SLACK)

    kept = release.get_json("secret", f"{release.name}-zk-auth")["data"]["credentials"]
    assert kept == secret, "the generated ZooKeeper credentials survive an upgrade"
    parent = f"/leader-election/{release.namespace}"
    acls, _ = zk_client.get_acls(parent)
    assert {(acl.id.scheme, acl.id.id.split(":")[0]) for acl in acls} == {
        ("digest", "leader-sidecar"), ("world", "anyone")}
    candidate = sorted(zk_client.get_children(parent))[0]
    with pytest.raises(NoAuthError):  # a client without the credentials
        zk_client.delete(f"{parent}/{candidate}")

    release.uninstall()
    # All but the ZooKeeper credentials, kept on purpose (`helm.sh/resource-policy: keep`):
    # the election's znodes outlive the release, with an ACL only they open; and the
    # ensemble's generated CA and certificates, kept alike (a reinstall adopts them).
    kept_secret = sorted([f"secret/{release.name}-zk-auth",
                          f"secret/{release.name}-zookeeper-tls",
                          f"secret/{release.name}-zookeeper-client-tls"])
    wait(lambda: sorted(release.leftovers()) == kept_secret, SLACK,
         "no object of the release is left but its credentials and certificates")
    wait(lambda: not zk_client.exists(parent) or not zk_client.get_children(parent), SLACK,
         "no znode of the release is left")


def _kinds_and_names(manifest: str) -> list[tuple[str, str]]:
    import yaml

    found = []
    for doc in yaml.safe_load_all(manifest):
        if doc:
            found.append((doc["kind"], doc["metadata"]["name"]))
    return found
