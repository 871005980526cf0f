"""The Kubernetes publisher against the real apiserver: what `kubectl` shows of the role.

The publisher authenticates as the chart's ServiceAccount; faults are real (kube-apiserver
stopped, verbs taken out of the chart's Role, a second client writing the same pod)."""

from __future__ import annotations

import datetime as dt
import logging
import time

import kubernetes
from cluster_support import wait_until
from k8s_doubles import status

from sidecar.k8s import EPOCH_ANNOTATION, LEADER_ANNOTATION
from sidecar.state import Role


def role_of(kube_ns, pod: str) -> str | None:
    return kube_ns.labels(pod).get("role")


def errors(metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "leader_sidecar_publish_errors_total", {"publisher": "kubernetes", "reason": reason}
    )
    return value or 0.0


def test_label_and_annotations_follow_the_role(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    add_group_pod("app-0")
    publisher, sync, metrics = make_publisher(kube_config("app-0"))

    publisher.publish(status("app-0", Role.LEADER, epoch=4294967302))
    assert publisher.flush(10)
    annotations = kube_ns.annotations("app-0")
    assert role_of(kube_ns, "app-0") == "leader"
    assert annotations[EPOCH_ANNOTATION] == "4294967302"
    assert annotations[LEADER_ANNOTATION] == "app-0"
    assert sync.last is True
    assert kube_ns.labels("app-0")["app"] == "demo"  # other labels untouched

    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=4294967400))
    assert publisher.flush(10)
    assert role_of(kube_ns, "app-0") == "follower"
    assert kube_ns.annotations("app-0")[LEADER_ANNOTATION] == "app-1"

    publisher.publish(status("app-0", Role.UNKNOWN))
    assert publisher.flush(10)
    assert role_of(kube_ns, "app-0") == "unknown"
    assert EPOCH_ANNOTATION not in kube_ns.annotations("app-0")  # no stale epoch while unknown
    count = metrics.registry.get_sample_value(
        "leader_sidecar_publish_seconds_count", {"publisher": "kubernetes"}
    )
    assert count == 3


def test_lease_renewals_cause_no_requests(kube_ns, kube_config, add_group_pod, make_publisher):
    add_group_pod("app-0")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    leader = status("app-0", Role.LEADER, epoch=7)
    publisher.publish(leader)
    assert publisher.flush(10)
    for renewal in range(20):  # the same role and epoch, a later lease each time
        publisher.publish(leader.replace(
            lease_expires=leader.lease_expires + dt.timedelta(seconds=renewal + 1), since=None))
    assert publisher.flush(10)
    wait_until(lambda: kube_ns.requests("patch", "pods"), message="the patch is in the audit log")
    time.sleep(0.5)
    assert len(kube_ns.requests("patch", "pods")) == 1


def test_events_on_role_changes(kube_ns, kube_config, add_group_pod, make_publisher):
    add_group_pod("app-0")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=1))
    publisher.publish(status("app-0", Role.LEADER, epoch=2))
    publisher.publish(status("app-0", Role.UNKNOWN))
    assert publisher.flush(10)
    assert kube_ns.reasons("app-0") == ["Elected", "Demoted"]
    elected = kube_ns.events("app-0", "Elected")[0]
    assert "epoch 2" in elected["message"]
    assert elected["involvedObject"]["uid"] == kube_ns.pod("app-0")["metadata"]["uid"]
    assert elected["source"]["component"] == "leader-sidecar"


def test_slow_api_coalesces_to_the_newest_role(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    add_group_pod("app-0")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    kube_ns.slow(0.3)
    roles = [Role.LEADER, Role.UNKNOWN, Role.FOLLOWER] * 10 + [Role.LEADER]
    started = time.monotonic()
    for epoch, role in enumerate(roles, start=1):
        publisher.publish(status("app-0", role, leader="app-1", epoch=epoch))
    assert time.monotonic() - started < 0.5, "publish() must not wait for the API"

    assert publisher.flush(90)
    pod = kube_ns.pod("app-0")
    assert pod["metadata"]["labels"]["role"] == "leader"
    assert pod["metadata"]["annotations"][EPOCH_ANNOTATION] == str(len(roles))
    patches = kube_ns.requests("patch", "pods")
    assert len(patches) <= 3, "a slow API must not replay every intermediate role"
    assert patches[-1].body["metadata"]["labels"]["role"] == "leader"
    time.sleep(1.0)  # nothing stale is written after the newest role
    assert role_of(kube_ns, "app-0") == "leader"
    assert len(kube_ns.requests("patch", "pods")) == len(patches)


def test_api_down_then_back_converges(kube_ns, kube_config, add_group_pod, make_publisher):
    add_group_pod("app-0")
    publisher, sync, metrics = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=1))
    assert publisher.flush(10)

    kube_ns.down()
    publisher.publish(status("app-0", Role.LEADER, epoch=2))
    wait_until(lambda: sync.last is False, message="label reported out of sync")
    wait_until(lambda: errors(metrics, "unreachable") >= 2, message="retries counted")

    kube_ns.up()
    wait_until(lambda: sync.last is True, message="label back in sync")
    assert role_of(kube_ns, "app-0") == "leader"
    assert sync.calls == [False, True, False, True]
    assert "Elected" in kube_ns.reasons("app-0")  # the queued Event made it after the outage


def test_forbidden_logs_one_clear_line(
    kube_ns, kube_config, add_group_pod, make_publisher, caplog_k8s
):
    add_group_pod("app-0")
    kube_ns.forbid("patch", "pods")
    publisher, sync, metrics = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.LEADER, epoch=3))
    wait_until(lambda: errors(metrics, "forbidden") >= 4, message="several retries")

    lines = [r.getMessage() for r in caplog_k8s.records if "forbidden" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"needs 'patch' on 'pods' in namespace '{kube_ns.namespace}'" in lines[0]
    assert caplog_k8s.records[0].levelno == logging.ERROR
    assert sync.last is False
    assert role_of(kube_ns, "app-0") is None

    kube_ns.heal()  # the Role got fixed
    wait_until(lambda: sync.last is True, message="converged once allowed")
    assert role_of(kube_ns, "app-0") == "leader"
    assert any("works again" in r.getMessage() for r in caplog_k8s.records)


def test_forbidden_events_do_not_block_the_label(
    kube_ns, kube_config, add_group_pod, make_publisher, caplog_k8s
):
    add_group_pod("app-0")
    kube_ns.forbid("create", "events")
    publisher, _sync, metrics = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.LEADER, epoch=3))
    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=4))
    assert publisher.flush(10), "events that can never be posted are dropped, not retried forever"
    assert role_of(kube_ns, "app-0") == "follower"
    lines = [r.getMessage() for r in caplog_k8s.records if "forbidden" in r.getMessage()]
    assert len(lines) == 1 and "needs 'create' on 'events'" in lines[0]
    assert errors(metrics, "forbidden") == 2


def test_a_second_writer_of_the_pod_loses_nothing(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    """Another client updates the same pod's labels with resourceVersion preconditions
    (get, change, PUT), as controllers do, while the role flips. Its writes conflict (409)
    and it retries; the publisher's merge patch never conflicts and never drops its
    labels, and the role label ends on the newest role."""
    add_group_pod("app-0")
    publisher, sync, _ = make_publisher(kube_config("app-0"))
    conflicts = 0
    for round_ in range(15):
        role = (Role.LEADER, Role.FOLLOWER)[round_ % 2]
        pod = kube_ns.core.read_namespaced_pod("app-0", kube_ns.namespace)
        publisher.publish(status("app-0", role, leader="app-1", epoch=round_ + 1))
        assert publisher.flush(10)
        pod.metadata.labels[f"other-{round_}"] = "x"
        try:  # a stale resourceVersion: the publisher wrote in between
            kube_ns.core.replace_namespaced_pod("app-0", kube_ns.namespace, pod)
        except kubernetes.client.ApiException as error:
            assert error.status == 409
            conflicts += 1
            fresh = kube_ns.core.read_namespaced_pod("app-0", kube_ns.namespace)
            fresh.metadata.labels[f"other-{round_}"] = "x"
            kube_ns.core.replace_namespaced_pod("app-0", kube_ns.namespace, fresh)
    labels = kube_ns.labels("app-0")
    assert conflicts >= 1, "the second writer saw the publisher's writes as conflicts"
    assert all(labels[f"other-{i}"] == "x" for i in range(15))
    assert labels["role"] == "leader"  # the newest role (round 14)
    assert sync.last is True


def test_own_pod_missing(kube_ns, kube_config, make_publisher, caplog_k8s):
    publisher, sync, metrics = make_publisher(kube_config("app-2"))
    publisher.publish(status("app-2", Role.LEADER, epoch=5))
    wait_until(lambda: errors(metrics, "not_found") >= 3, message="keeps retrying")
    lines = [r.getMessage() for r in caplog_k8s.records if "not found" in r.getMessage()]
    assert len(lines) == 1
    assert f"own pod 'app-2' not found in namespace '{kube_ns.namespace}'" in lines[0]
    assert sync.last is False

    kube_ns.add_pod("app-2", {"leader-election/name": "demo"})  # e.g. a wrong name fixed
    wait_until(lambda: sync.last is True, message="converges when the pod exists")
    assert role_of(kube_ns, "app-2") == "leader"


def test_publish_never_raises_and_stop_is_bounded(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    add_group_pod("app-0")
    kube_ns.slow(30)
    publisher, _, _ = make_publisher(kube_config("app-0"), request_timeout=(1.0, 1.0))
    publisher.publish(status("app-0", Role.LEADER, epoch=1))
    time.sleep(0.2)
    started = time.monotonic()
    assert publisher.stop()
    assert time.monotonic() - started < 5
    publisher.publish(status("app-0", Role.FOLLOWER))  # after stop: ignored, no error
