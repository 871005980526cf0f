"""The Kubernetes publisher against the emulated API: what `kubectl` shows of the role."""

from __future__ import annotations

import logging
import time

import pytest
from k8s_doubles import status
from kmock_support import wait_until

from sidecar.k8s import EPOCH_ANNOTATION, LEADER_ANNOTATION
from sidecar.state import Role


def role_of(kube_api, pod: str) -> str | None:
    return kube_api.labels(pod).get("role")


def errors(metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "leader_sidecar_publish_errors_total", {"publisher": "kubernetes", "reason": reason}
    )
    return value or 0.0


def test_label_and_annotations_follow_the_role(
    kube_api, kube_config, add_group_pod, make_publisher
):
    add_group_pod("app-0")
    publisher, sync, metrics = make_publisher(kube_config("app-0"))

    publisher.publish(status("app-0", Role.LEADER, epoch=4294967302))
    assert publisher.flush(10)
    annotations = kube_api.annotations("app-0")
    assert role_of(kube_api, "app-0") == "leader"
    assert annotations[EPOCH_ANNOTATION] == "4294967302"
    assert annotations[LEADER_ANNOTATION] == "app-0"
    assert sync.last is True
    assert kube_api.labels("app-0")["app"] == "demo"  # other labels untouched

    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=4294967400))
    assert publisher.flush(10)
    assert role_of(kube_api, "app-0") == "follower"
    assert kube_api.annotations("app-0")[LEADER_ANNOTATION] == "app-1"

    publisher.publish(status("app-0", Role.UNKNOWN))
    assert publisher.flush(10)
    assert role_of(kube_api, "app-0") == "unknown"
    assert EPOCH_ANNOTATION not in kube_api.annotations("app-0")  # no stale epoch while unknown
    count = metrics.registry.get_sample_value(
        "leader_sidecar_publish_seconds_count", {"publisher": "kubernetes"}
    )
    assert count == 3


def test_lease_renewals_cause_no_requests(kube_api, kube_config, add_group_pod, make_publisher):
    add_group_pod("app-0")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    leader = status("app-0", Role.LEADER, epoch=7)
    publisher.publish(leader)
    assert publisher.flush(10)
    for _ in range(20):
        publisher.publish(leader.replace(lease_expires=None, since=None))
    assert publisher.flush(10)
    assert len(kube_api.requests("patch", "pods")) == 1


def test_events_on_role_changes(kube_api, kube_config, add_group_pod, make_publisher):
    add_group_pod("app-0")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=1))
    publisher.publish(status("app-0", Role.LEADER, epoch=2))
    publisher.publish(status("app-0", Role.UNKNOWN))
    assert publisher.flush(10)
    assert kube_api.reasons("app-0") == ["Elected", "Demoted"]
    elected = kube_api.events("app-0", "Elected")[0]
    assert "epoch 2" in elected["message"]
    assert elected["involvedObject"]["uid"] == kube_api.pod("app-0")["metadata"]["uid"]
    assert elected["source"]["component"] == "leader-sidecar"


def test_slow_api_coalesces_to_the_newest_role(
    kube_api, kube_config, add_group_pod, make_publisher
):
    add_group_pod("app-0")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    kube_api.slow(0.5, ["patch"], "pods")
    roles = [Role.LEADER, Role.UNKNOWN, Role.FOLLOWER] * 10 + [Role.LEADER]
    started = time.monotonic()
    for epoch, role in enumerate(roles, start=1):
        publisher.publish(status("app-0", role, leader="app-1", epoch=epoch))
    assert time.monotonic() - started < 0.5, "publish() must not wait for the API"

    assert publisher.flush(20)
    pod = kube_api.pod("app-0")
    assert pod["metadata"]["labels"]["role"] == "leader"
    assert pod["metadata"]["annotations"][EPOCH_ANNOTATION] == str(len(roles))
    patches = kube_api.requests("patch", "pods")
    assert len(patches) <= 3, "a slow API must not replay every intermediate role"
    assert patches[-1].data["metadata"]["labels"]["role"] == "leader"
    time.sleep(1.0)  # nothing stale is written after the newest role
    assert role_of(kube_api, "app-0") == "leader"
    assert len(kube_api.requests("patch", "pods")) == len(patches)


def test_api_down_then_back_converges(kube_api, kube_config, add_group_pod, make_publisher):
    add_group_pod("app-0")
    publisher, sync, metrics = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=1))
    assert publisher.flush(10)

    kube_api.down()
    publisher.publish(status("app-0", Role.LEADER, epoch=2))
    wait_until(lambda: sync.last is False, message="label reported out of sync")
    wait_until(lambda: errors(metrics, "unreachable") >= 2, message="retries counted")
    assert role_of(kube_api, "app-0") == "follower"

    kube_api.up()
    wait_until(lambda: sync.last is True, message="label back in sync")
    assert role_of(kube_api, "app-0") == "leader"
    assert sync.calls == [False, True, False, True]
    assert "Elected" in kube_api.reasons("app-0")  # the queued Event made it after the outage


def test_forbidden_logs_one_clear_line(
    kube_api, kube_config, add_group_pod, make_publisher, caplog_k8s
):
    add_group_pod("app-0")
    kube_api.forbid("patch", "pods")
    publisher, sync, metrics = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.LEADER, epoch=3))
    wait_until(lambda: errors(metrics, "forbidden") >= 4, message="several retries")

    lines = [r.getMessage() for r in caplog_k8s.records if "forbidden" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "needs 'patch' on 'pods' in namespace 'default'" in lines[0]
    assert caplog_k8s.records[0].levelno == logging.ERROR
    assert sync.last is False
    assert role_of(kube_api, "app-0") is None

    kube_api.heal()  # the Role got fixed
    wait_until(lambda: sync.last is True, message="converged once allowed")
    assert role_of(kube_api, "app-0") == "leader"
    assert any("works again" in r.getMessage() for r in caplog_k8s.records)


def test_forbidden_events_do_not_block_the_label(
    kube_api, kube_config, add_group_pod, make_publisher, caplog_k8s
):
    add_group_pod("app-0")
    kube_api.forbid("create", "events")
    publisher, _sync, metrics = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.LEADER, epoch=3))
    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=4))
    assert publisher.flush(10), "events that can never be posted are dropped, not retried forever"
    assert role_of(kube_api, "app-0") == "follower"
    lines = [r.getMessage() for r in caplog_k8s.records if "forbidden" in r.getMessage()]
    assert len(lines) == 1 and "needs 'create' on 'events'" in lines[0]
    assert errors(metrics, "forbidden") == 2


@pytest.mark.parametrize(
    "code, reason", [(409, "conflict"), (500, "server_error"), (503, "server_error")]
)
def test_transient_errors_are_retried(
    kube_api, kube_config, add_group_pod, make_publisher, code, reason
):
    add_group_pod("app-0")
    kube_api.fail(code, ["patch"], "pods", times=3)
    publisher, sync, metrics = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.LEADER, epoch=5))
    assert publisher.flush(10)
    assert role_of(kube_api, "app-0") == "leader"
    assert errors(metrics, reason) == 3
    assert sync.last is True


def test_own_pod_missing(kube_api, kube_config, make_publisher, caplog_k8s):
    publisher, sync, metrics = make_publisher(kube_config("app-9"))
    publisher.publish(status("app-9", Role.LEADER, epoch=5))
    wait_until(lambda: errors(metrics, "not_found") >= 3, message="keeps retrying")
    lines = [r.getMessage() for r in caplog_k8s.records if "not found" in r.getMessage()]
    assert len(lines) == 1 and "own pod 'app-9' not found in namespace 'default'" in lines[0]
    assert sync.last is False

    kube_api.add_pod("app-9", {"leader-election/name": "demo"})  # e.g. a wrong name fixed
    wait_until(lambda: sync.last is True, message="converges when the pod exists")
    assert role_of(kube_api, "app-9") == "leader"


def test_publish_never_raises_and_stop_is_bounded(
    kube_api, kube_config, add_group_pod, make_publisher
):
    add_group_pod("app-0")
    kube_api.slow(30, ["patch"], "pods")
    publisher, _, _ = make_publisher(kube_config("app-0"), request_timeout=(1.0, 1.0))
    publisher.publish(status("app-0", Role.LEADER, epoch=1))
    time.sleep(0.2)
    started = time.monotonic()
    assert publisher.stop()
    assert time.monotonic() - started < 5
    publisher.publish(status("app-0", Role.FOLLOWER))  # after stop: ignored, no error
