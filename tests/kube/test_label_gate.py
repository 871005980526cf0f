"""Exclusive leader labels (sidecar/labelgate.py) on the real apiserver, as the chart's
ServiceAccount: another pod's leader label goes before ours comes, as a watch sees it; a
newer leader's label is never challenged; a label that changed since it was read is left
alone; an expired lease is never labelled; a demoting leader's label is off before it
lets a successor take over."""

from __future__ import annotations

import contextlib
import datetime as dt
import time

from cluster_support import wait_until
from k8s_doubles import ELECTION, status

from sidecar.k8s import EPOCH_ANNOTATION, GROUP_LABEL
from sidecar.kubeapi import KubeApi, load_connection
from sidecar.lab.cluster.watch import GroupWatch
from sidecar.labelgate import Gate, LeaderLabelGate
from sidecar.state import Role


def _watch(kube_ns) -> GroupWatch:
    return GroupWatch(kube_ns.cluster.kubeconfig, kube_ns.namespace,
                      f"{GROUP_LABEL}={ELECTION}").start()


def _stale_leader(kube_ns, add_group_pod, name: str, epoch: int) -> None:
    add_group_pod(name, role="leader")
    kube_ns.annotate_pod(name, EPOCH_ANNOTATION, str(epoch))


def test_an_older_leader_label_goes_before_the_new_one_comes(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    _stale_leader(kube_ns, add_group_pod, "app-1", 5)  # a crashed leader's label
    add_group_pod("app-0")
    with contextlib.closing(_watch(kube_ns)) as watch:
        mark = watch.mark()
        publisher, _, _ = make_publisher(kube_config("app-0"))
        publisher.publish(status("app-0", Role.LEADER, epoch=9))
        assert publisher.flush(10)
        new = watch.wait_for(lambda s: s.name == "app-0" and s.role == "leader", mark, 10,
                             "app-0 labelled leader")
        old_off = watch.wait_for(lambda s: s.name == "app-1" and s.role != "leader", mark, 10,
                                 "app-1's label off")
        assert watch.changes.index(old_off) < watch.changes.index(new)
        assert watch.doubles == []
    assert kube_ns.labels("app-1")["role"] == "follower"
    event = wait_until(lambda: kube_ns.events("app-1", "StaleLeaderLabel"))[0]
    assert event["type"] == "Warning" and "epoch 5" in event["message"]


def test_a_newer_leaders_label_is_left_alone_and_ours_not_written(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    _stale_leader(kube_ns, add_group_pod, "app-1", 12)  # the real leader: we are stale
    add_group_pod("app-0", role="follower")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.LEADER, epoch=9))
    assert not publisher.flush(2)  # it keeps trying, and never writes
    assert kube_ns.labels("app-1")["role"] == "leader"
    assert kube_ns.labels("app-0")["role"] == "follower"
    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=12))  # demoted
    assert publisher.flush(10)
    assert kube_ns.labels("app-0")["role"] == "follower"


def test_a_label_changed_since_it_was_read_is_left_alone(kube_ns, kube_config, add_group_pod):
    _stale_leader(kube_ns, add_group_pod, "app-1", 5)
    as_read = kube_ns.pod("app-1")
    kube_ns.label_pod("app-1", "role", "unknown")  # its own sidecar took it off meanwhile
    kube_ns.label_pod("app-1", "role", "leader")  # and a newer term put it back
    kube_ns.annotate_pod("app-1", EPOCH_ANNOTATION, "11")
    api = KubeApi(load_connection(kube_config("app-0").kubeconfig))
    try:
        gate = LeaderLabelGate(api, kube_ns.namespace, "app-0", f"{GROUP_LABEL}={ELECTION}",
                               "role", EPOCH_ANNOTATION)
        assert gate._relabel(as_read, 9) == (Gate.CLEAR, True)  # changed: to be listed again
        assert kube_ns.labels("app-1")["role"] == "leader"
        assert gate.clear(9) is Gate.STALE  # listed: epoch 11, newer than ours
    finally:
        api.close()
    assert kube_ns.labels("app-1")["role"] == "leader"


def test_an_expired_lease_is_never_labelled(kube_ns, kube_config, add_group_pod, make_publisher):
    add_group_pod("app-0", role="follower")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    expired = status("app-0", Role.LEADER, epoch=3).replace(
        lease_expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    publisher.publish(expired)
    time.sleep(1.0)
    assert kube_ns.labels("app-0")["role"] == "follower"
    assert kube_ns.requests("patch", "pods") == []


def test_a_demoting_leaders_label_is_off_when_it_lets_go(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    add_group_pod("app-0")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    publisher.publish(status("app-0", Role.LEADER, epoch=3))
    assert publisher.flush(10)
    publisher.publish(status("app-0", Role.UNKNOWN))
    assert publisher.wait_label_demoted(5)  # what the status board waits for
    assert kube_ns.labels("app-0")["role"] == "unknown"
