"""kopf reconciliation of the group's pods, against the real apiserver, as the chart's
ServiceAccount."""

from __future__ import annotations

from cluster_support import wait_until
from k8s_doubles import FakeControl, status

from sidecar.k8s import STEP_DOWN_ANNOTATION
from sidecar.state import Role


def start(kube_ns, kube_config, make_publisher, make_operator, name, role, epoch=10):
    config = kube_config(name)
    publisher, sync, _ = make_publisher(config)
    control = FakeControl(
        status(name, role, leader=None if role is not Role.LEADER else name, epoch=epoch)
    )
    control.publisher = publisher
    publisher.publish(control.current())
    assert publisher.flush(10)
    handle = make_operator(config, control, publisher)
    return control, publisher, sync, handle


def test_restores_own_label_after_manual_edit(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    add_group_pod("app-0")
    _, _, sync, _ = start(
        kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER
    )

    kube_ns.label_pod("app-0", "role", "follower")  # kubectl label --overwrite
    wait_until(lambda: kube_ns.labels("app-0").get("role") == "leader", message="restored")

    kube_ns.label_pod("app-0", "role", None)  # kubectl label role-
    wait_until(lambda: kube_ns.labels("app-0").get("role") == "leader", message="restored")
    wait_until(lambda: sync.last is True)


def test_leader_relabels_stale_leader_with_event(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    add_group_pod("app-1", role="leader")  # left behind by a frozen peer
    kube_ns.annotate_pod("app-1", "leader-election/epoch", "5")
    add_group_pod("app-2", role="follower")
    kube_ns.add_pod("elsewhere", {"role": "leader"})  # not in the group: not ours to touch
    add_group_pod("app-0")
    start(kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER, epoch=10)

    wait_until(
        lambda: kube_ns.labels("app-1")["role"] == "follower", message="stale label cleared"
    )
    event = wait_until(lambda: kube_ns.events("app-1", "StaleLeaderLabel"))[0]
    assert "'app-0' is the leader" in event["message"]
    assert event["type"] == "Warning"
    assert kube_ns.labels("elsewhere")["role"] == "leader"
    assert kube_ns.labels("app-2")["role"] == "follower"

    kube_ns.label_pod("app-2", "role", "leader")  # a later stale claim is cleared as well
    wait_until(lambda: kube_ns.labels("app-2")["role"] == "follower", message="cleared again")


def test_newer_leader_is_not_relabelled(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    add_group_pod("app-1", role="leader")
    kube_ns.annotate_pod("app-1", "leader-election/epoch", "99")  # a newer term than ours
    add_group_pod("app-0")
    start(kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER, epoch=10)
    add_group_pod("app-3")  # an event after the listing: the operator is past its sweep
    wait_until(lambda: kube_ns.pod("app-3"))
    kube_ns.label_pod("app-0", "role", "unknown")
    wait_until(lambda: kube_ns.labels("app-0")["role"] == "leader")
    assert kube_ns.labels("app-1")["role"] == "leader"


def test_relabel_judged_on_an_older_pod_changes_nothing(kube_ns, kube_config, add_group_pod):
    """The old leader writes `unknown` on its way out while the new leader's operator still
    holds an event in which it said `leader`: the late relabel must not overwrite it."""
    from k8s_doubles import FakeControl

    from sidecar.operator import Reconciler

    add_group_pod("app-1", role="leader")
    judged = kube_ns.pod("app-1")  # what the new leader's operator saw
    kube_ns.label_pod("app-1", "role", "unknown")  # its own sidecar, leaving
    control = FakeControl(status("app-0", Role.LEADER, leader="app-0", epoch=10))
    reconciler = Reconciler(kube_config("app-0"), control, publisher=None)  # type: ignore[arg-type]
    try:
        reconciler.relabel(judged, 10)
    finally:
        reconciler.close()
    assert kube_ns.labels("app-1")["role"] == "unknown"


def test_follower_leaves_leader_labels_alone(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    add_group_pod("app-1", role="leader")
    add_group_pod("app-0")
    start(kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.FOLLOWER)
    kube_ns.label_pod("app-0", "role", "leader")  # a lie about us is corrected ...
    wait_until(lambda: kube_ns.labels("app-0")["role"] == "follower")
    assert kube_ns.labels("app-1")["role"] == "leader"  # ... but peers are not ours to judge


def test_becoming_leader_sweeps_stale_labels(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    add_group_pod("app-0")
    add_group_pod("app-1")
    control, _, _, _ = start(
        kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.FOLLOWER
    )
    kube_ns.label_pod("app-1", "role", "leader")
    control.set(status("app-0", Role.LEADER, epoch=11))  # the election promotes us
    wait_until(lambda: kube_ns.labels("app-1")["role"] == "follower", message="swept")


def test_step_down_annotation(kube_ns, kube_config, add_group_pod, make_publisher, make_operator):
    add_group_pod("app-0")
    control, _publisher, _, _ = start(
        kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER
    )
    kube_ns.annotate_pod("app-0", STEP_DOWN_ANNOTATION, "please")

    wait_until(
        lambda: STEP_DOWN_ANNOTATION not in kube_ns.annotations("app-0"),
        message="annotation removed",
    )
    assert control.step_downs == 1
    wait_until(lambda: kube_ns.labels("app-0")["role"] == "follower")
    wait_until(lambda: {"SteppedDown", "Demoted"} <= set(kube_ns.reasons("app-0")))
    stepped = kube_ns.events("app-0", "SteppedDown")[0]
    assert "leader-election/step-down='please'" in stepped["message"]


def test_step_down_annotation_on_follower_is_only_removed(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    add_group_pod("app-0")
    control, _, _, _ = start(
        kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.FOLLOWER
    )
    kube_ns.annotate_pod("app-0", STEP_DOWN_ANNOTATION, "")
    wait_until(lambda: STEP_DOWN_ANNOTATION not in kube_ns.annotations("app-0"))
    assert control.step_downs == 0
    assert "SteppedDown" not in kube_ns.reasons("app-0")


def test_kopf_writes_nothing_of_its_own_on_pods(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    add_group_pod("app-0")
    add_group_pod("app-1", role="leader")
    start(kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER)
    wait_until(lambda: kube_ns.labels("app-1")["role"] == "follower")
    kube_ns.annotate_pod("app-0", STEP_DOWN_ANNOTATION, "x")
    wait_until(lambda: STEP_DOWN_ANNOTATION not in kube_ns.annotations("app-0"))
    for pod in kube_ns.pods():
        metadata = pod["metadata"]
        assert not metadata.get("finalizers")
        assert not [key for key in metadata.get("annotations", {}) if "kopf" in key]
    # The chart's Role allows nothing else; the audit log shows nothing else was tried.
    assert {r.resource for r in kube_ns.requests()} <= {"pods", "events"}
    assert not [r for r in kube_ns.requests() if r.code == 403]
    watches = kube_ns.requests("watch", "pods")
    assert watches and all(
        r.params.get("labelSelector") == "leader-election/name=demo" for r in watches
    )


def test_operator_survives_api_outage(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    add_group_pod("app-0")
    start(kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER)
    kube_ns.down()
    kube_ns.up()
    kube_ns.label_pod("app-0", "role", "follower")  # edited as soon as it is back
    wait_until(
        lambda: kube_ns.labels("app-0")["role"] == "leader",
        timeout=20,
        message="restored after the API came back",
    )


def test_three_operators_in_one_process(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    for name in ("app-0", "app-1", "app-2"):
        add_group_pod(name)
    start(kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER)
    start(kube_ns, kube_config, make_publisher, make_operator, "app-1", Role.FOLLOWER)
    start(kube_ns, kube_config, make_publisher, make_operator, "app-2", Role.FOLLOWER)
    kube_ns.label_pod("app-2", "role", "leader")
    wait_until(lambda: kube_ns.labels("app-2")["role"] == "follower")
    assert [kube_ns.labels(n)["role"] for n in ("app-0", "app-1", "app-2")] == [
        "leader",
        "follower",
        "follower",
    ]


def test_watch_expiry_makes_kopf_list_again(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    """etcd compacted past kopf's resourceVersion and the apiserver restarted (its watch
    cache is gone): resuming the watch gets 410 Gone, kopf lists the pods again and the
    reconciliation carries on."""
    add_group_pod("app-0")
    start(kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER)
    wait_until(lambda: kube_ns.requests("watch", "pods"), message="kopf watches")
    lists_before = len(kube_ns.requests("list", "pods"))
    for round_ in range(5):  # history for the compaction to drop
        kube_ns.annotate_pod("app-0", "churn", str(round_))
    kube_ns.cluster.compact_etcd()
    kube_ns.down()
    kube_ns.up()
    kube_ns.label_pod("app-0", "role", "follower")
    wait_until(lambda: kube_ns.labels("app-0")["role"] == "leader", timeout=30,
               message="restored after the watch expired")
    assert len(kube_ns.requests("list", "pods")) > lists_before, "kopf listed again"
