"""Identity by uid, not by name (issue 24, item 9), on the real apiserver.

A pod deleted with `--force --grace-period=0` is followed by a pod of the same name (the
StatefulSet's next incarnation) while the old container may still be running: nothing the
old sidecar writes may land on the new pod, and the operator must not mix the two up."""

from __future__ import annotations

import time

import pytest
from cluster_support import wait_until
from k8s_doubles import FakeControl, status

from sidecar.k8s import core_api
from sidecar.kubeapi import ApiError
from sidecar.operator import Reconciler
from sidecar.state import Role


def test_a_patch_carrying_an_old_uid_is_refused_and_not_applied(
    kube_ns, kube_config, add_group_pod
):
    # The old incarnation stays off kwok's nodes: kwok's stages act by name, and one queued
    # for it could delete the new pod (a kubelet's delete carries the uid; kwok's does not).
    old = add_group_pod("app-0", scheduled=False)["metadata"]["uid"]
    kube_ns.delete_pod("app-0")
    add_group_pod("app-0", role="leader")
    api = core_api(kube_config("app-0"))
    try:
        with pytest.raises(ApiError) as refused:
            api.patch_pod(kube_ns.namespace, "app-0",
                          {"metadata": {"uid": old, "labels": {"role": "unknown"}}})
    finally:
        api.close()
    assert refused.value.status in (409, 422)
    assert kube_ns.labels("app-0")["role"] == "leader"


def test_old_containers_unknown_never_lands_on_the_new_pod(
    kube_ns, kube_config, add_group_pod, make_publisher, caplog_k8s
):
    add_group_pod("app-0", scheduled=False)  # off kwok's nodes, as above
    publisher, _, _ = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=3))
    assert publisher.flush(10)

    kube_ns.delete_pod("app-0")  # kubectl delete pod --force --grace-period=0
    add_group_pod("app-0", role="leader")  # the next incarnation, already leading
    publisher.publish(status("app-0", Role.UNKNOWN))  # the old container on its way out
    publisher.flush(5)
    time.sleep(1.0)  # retries included

    assert kube_ns.labels("app-0")["role"] == "leader"
    assert any("new pod of that name" in r.getMessage() for r in caplog_k8s.records)


def _body(pod):
    return {"metadata": pod["metadata"]}


def test_relist_that_missed_a_deleted_leaves_no_ghost(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    """The watch's relist (after an outage, or a 410) does not show a pod deleted
    meanwhile, and kopf sends no DELETED for it: the operator must not keep it. And a late
    DELETED of the old uid must not remove the new pod of the same name."""
    config = kube_config("app-0")
    leader = add_group_pod("app-0")
    ghost = add_group_pod("app-1", role="leader", scheduled=False)  # off kwok's nodes, as
    old = add_group_pod("app-2", scheduled=False)  # in the first test
    publisher, _, _ = make_publisher(config)
    control = FakeControl(status("app-0", Role.LEADER, epoch=10))
    reconciler = Reconciler(config, control, publisher)
    try:
        for pod in (leader, ghost, old):  # the first listing
            reconciler.on_pod(None, _body(pod), patch=None)
        kube_ns.delete_pod("app-1")  # while the watch was down: no DELETED ever comes
        kube_ns.delete_pod("app-2")
        new = add_group_pod("app-2")
        for pod in (kube_ns.pod("app-0"), new):  # the relist: app-1 missing, app-2 anew
            reconciler.on_pod(None, _body(pod), patch=None)
        reconciler.on_pod("DELETED", _body(old), patch=None)  # late, for the old uid

        def names():
            return sorted(b["metadata"]["name"] for b in reconciler.group.snapshot())

        wait_until(lambda: names() == ["app-0", "app-2"], timeout=10,
                   message=f"the group is the pods that exist (saw {names()})")
        assert reconciler.group.get("app-2")["metadata"]["uid"] == new["metadata"]["uid"]
    finally:
        reconciler.close()

