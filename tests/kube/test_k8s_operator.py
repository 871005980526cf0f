"""kopf reconciliation of the group's pods, against the real apiserver, as the chart's
ServiceAccount."""

from __future__ import annotations

import time

from api_proxy import client_port
from cluster_support import wait_until
from k8s_doubles import ELECTION, FakeControl, RacingControl, status

from sidecar.k8s import EPOCH_ANNOTATION, GROUP_LABEL, STEP_DOWN_ANNOTATION
from sidecar.operator import LEAVING_ON_DELETE, RESTORE_DELAY, Reconciler
from sidecar.state import Role


def start(kube_ns, kube_config, make_publisher, make_operator, name, role, epoch=10,
          **overrides):
    config = kube_config(name, **overrides)
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
    add_group_pod("app-0", role="follower")
    config = kube_config("app-0")
    publisher, _, _ = make_publisher(config)
    control = FakeControl(status("app-0", Role.LEADER, epoch=10))  # stale: not told yet
    control.publisher = publisher
    publisher.publish(control.current())
    make_operator(config, control, publisher)
    add_group_pod("app-3")  # an event after the listing: the operator is past its sweep
    wait_until(lambda: kube_ns.pod("app-3"))
    time.sleep(1.5)
    # Neither relabelled nor doubled: the stale leader's own label is never written.
    assert kube_ns.labels("app-1")["role"] == "leader"
    assert kube_ns.labels("app-0")["role"] == "follower"


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
    # Removed first (its precondition is the pod as seen), then acted on: a moment later.
    wait_until(lambda: control.step_downs == 1, message="stepped down")
    time.sleep(0.5)
    assert control.step_downs == 1, "once per annotation"
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


# --- issue 24 ---------------------------------------------------------------------------------


def roles_seen(kube_ns, pod: str, seconds: float) -> list[str | None]:
    """The pod's role label, sampled for `seconds` (as `kubectl get pods -L role -w`)."""
    seen: list[str | None] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(kube_ns.labels(pod).get("role"))
        time.sleep(0.05)
    return seen


def test_group_label_edited_then_restored_is_no_deletion(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator, caplog_k8s
):
    """`kubectl label pod app-0 leader-election/name=x --overwrite` (or `name-`): the pod
    stops matching the operator's watch and the apiserver sends DELETED for it, but the pod
    is still there. The sidecar stays a candidate and, once the label is back, the operator
    sees the pod and restores its label again. Before the fix the sidecar left the election
    on that DELETED and ignored every later event: `unknown` for good."""
    add_group_pod("app-0")
    control, _, sync, _ = start(
        kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER
    )
    kube_ns.label_pod("app-0", "role", "follower")  # once put right, the operator watches
    wait_until(lambda: kube_ns.labels("app-0")["role"] == "leader", message="watching")
    for edit in ("x", None):
        kube_ns.label_pod("app-0", GROUP_LABEL, edit)
        seen = roles_seen(kube_ns, "app-0", 2.0)  # the DELETED is handled meanwhile
        kube_ns.label_pod("app-0", GROUP_LABEL, ELECTION)
        seen += roles_seen(kube_ns, "app-0", 1.0)
        assert set(seen) == {"leader"}, (edit, seen)
    assert control.leaves == 0, "still a candidate"
    assert LEAVING_ON_DELETE not in kube_ns.reasons("app-0")
    assert any("leader-election/name" in r.getMessage() and "not deleted" in r.getMessage()
               for r in caplog_k8s.records), "the edit is named in the log"

    kube_ns.label_pod("app-0", "role", "follower")  # watched again: an edit is put right
    wait_until(lambda: kube_ns.labels("app-0")["role"] == "leader", message="restored")
    wait_until(lambda: sync.last is True)


def test_restore_racing_a_transition_writes_the_newest_role(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    """The operator sees an edited role label and reads the election's status; the status
    board publishes a newer one meanwhile. The restore must not write the older role over
    the newer one (before the fix it did, and `label_in_sync` said true: a `leader` label
    on a follower, in the leader Service's endpoints)."""
    add_group_pod("app-0")
    config = kube_config("app-0")
    publisher, sync, _ = make_publisher(config)
    control = RacingControl(status("app-0", Role.LEADER, epoch=10))
    control.publisher = publisher
    publisher.publish(control.status)
    assert publisher.flush(10)
    reconciler = Reconciler(config, control, publisher)
    newer = [
        ("follower", status("app-0", Role.FOLLOWER, leader="app-1", epoch=11)),
        ("unknown", status("app-0", Role.LEADER, epoch=12)),
        ("unknown", status("app-0", Role.UNKNOWN)),
        ("leader", status("app-0", Role.FOLLOWER, leader="app-2", epoch=13)),
    ]
    try:
        for edited, transition in newer:
            body = kube_ns.label_pod("app-0", "role", edited)  # someone edits the label
            reconciler.own_pod(body, None)  # a restore is due a moment later ...
            control.set(transition)  # ... and the election moves on meanwhile
            wait_until(lambda t=transition: kube_ns.labels("app-0")["role"] == t.role.value)
            time.sleep(RESTORE_DELAY + 0.3)  # the restore's check has run
            assert publisher.flush(10)
            assert kube_ns.labels("app-0")["role"] == transition.role.value, transition
            assert sync.last is True
    finally:
        reconciler.close()


def test_stale_label_cleared_at_once_after_the_connection_went_idle(
    kube_ns, kube_config, add_group_pod, api_proxy, make_publisher, make_operator
):
    """The old leader is partitioned away with its node: its pod keeps `role=leader` and
    sends no event. When we are promoted, clearing that label is the first request of our
    operator's client after a quiet spell, in which the apiserver closed the kept-alive
    connection (its idle timeout). The label must be cleared at once, not when that pod
    next changes (its node's NotReady, 40 s or more later). Before the fix the relabel
    failed ("Remote end closed connection without response") and nothing tried again."""
    proxy, kubeconfig = api_proxy
    for name in ("app-0", "app-1"):
        add_group_pod(name)
    add_group_pod("app-2", role="leader")
    control, publisher, _, _ = start(kube_ns, kube_config, make_publisher, make_operator,
                                     "app-0", Role.LEADER, epoch=10,
                                     kubeconfig=str(kubeconfig))
    wait_until(lambda: kube_ns.labels("app-2")["role"] == "follower", message="first relabel")

    control.set(status("app-0", Role.FOLLOWER, leader="app-1", epoch=11))
    # app-1's sidecar labels its pod, and then its node drops off the network.
    kube_ns.patch_pod("app-1", {"metadata": {"labels": {"role": "leader"},
                                             "annotations": {EPOCH_ANNOTATION: "11"}}})
    wait_until(lambda: kube_ns.labels("app-0")["role"] == "follower")
    time.sleep(1.0)  # the operator has seen both pods' events (and, a follower, did nothing)
    # The publisher clears the other labels before it labels us (sidecar/labelgate.py).
    proxy.close_idle(client_port(publisher._api))

    promoted = time.monotonic()
    control.set(status("app-0", Role.LEADER, epoch=12))
    wait_until(lambda: kube_ns.labels("app-1")["role"] == "follower", timeout=10,
               message="stale label of the partitioned leader cleared")
    elapsed = time.monotonic() - promoted
    assert elapsed < 1.5, f"cleared {elapsed:.2f} s after the promotion"


def test_failed_relabel_is_tried_again_without_an_event(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator, caplog_k8s
):
    """A relabel of a stale `leader` label fails (here a real 403: the Role lost `patch`;
    an unreachable or overloaded API does the same) and that pod sends no further event
    (its sidecar crashed, its node is gone). The relabel is tried again on a timer, with
    backoff, and the label is cleared soon after the API allows it. Before the fix it was
    tried again only on that pod's next event: here, never."""
    add_group_pod("app-0")
    add_group_pod("app-1")
    start(kube_ns, kube_config, make_publisher, make_operator, "app-0", Role.LEADER, epoch=10)
    kube_ns.forbid("patch", "pods")
    kube_ns.patch_pod("app-1", {"metadata": {"labels": {"role": "leader"},
                                             "annotations": {EPOCH_ANNOTATION: "9"}}})
    wait_until(lambda: any("could not relabel" in r.getMessage() for r in caplog_k8s.records),
               message="the relabel failed")
    time.sleep(2.0)  # a few failed tries: logged once, not at every try
    failures = [r for r in caplog_k8s.records if "could not relabel" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]

    kube_ns.heal()
    wait_until(lambda: kube_ns.labels("app-1")["role"] == "follower", timeout=10,
               message="cleared on the timer, without an event of app-1")
