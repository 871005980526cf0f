"""The smaller items of issue 24 (item 10), on the real apiserver: a rotated token and a
rotated CA are picked up, Events are aggregated, the annotations are restored like the
label."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from cluster_support import wait_until
from k8s_doubles import FakeControl, status

from sidecar.k8s import EPOCH_ANNOTATION, LEADER_ANNOTATION
from sidecar.kubeapi import KubeApi, load_connection
from sidecar.state import Role


def _kubeconfig(tmp_path: Path, server: str, ca: str, token_file: Path) -> str:
    path = tmp_path / "rotating-kubeconfig.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
    }))
    return str(path)


def test_event_refused_with_401_is_kept_until_the_token_is_rotated(
    kube_ns, kube_config, add_group_pod, make_publisher, tmp_path
):
    add_group_pod("app-0")
    good = load_connection(kube_config("app-0").kubeconfig)
    token_file = tmp_path / "token"
    token_file.write_text(good.token or "")
    config = kube_config("app-0", kubeconfig=_kubeconfig(
        tmp_path, good.server, good.ca_path or "", token_file))
    publisher, _, _ = make_publisher(config)
    publisher.publish(status("app-0", Role.FOLLOWER, leader="app-1", epoch=3))
    assert publisher.flush(10)

    token_file.write_text("expired-token")  # the token expired before the kubelet's rotation
    publisher.post_event("Probe", "posted once the token is good again")
    time.sleep(1.5)  # several 401s
    token_file.write_text(good.token or "")  # the kubelet rotated it

    assert publisher.flush(10)
    assert [e["message"] for e in kube_ns.events("app-0", "Probe")] == [
        "posted once the token is good again"]


def test_a_rotated_ca_file_is_read_again(kube_ns, kube_config, tmp_path):
    good = load_connection(kube_config("app-0").kubeconfig)
    ca = tmp_path / "ca.crt"
    ca.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())  # not the cluster's
    token_file = tmp_path / "token"
    token_file.write_text(good.token or "")
    api = KubeApi(load_connection(_kubeconfig(tmp_path, good.server, str(ca), token_file)))
    try:
        try:
            api.list_pods(kube_ns.namespace, "leader-election/name=x")
        except OSError as error:
            assert "CERTIFICATE_VERIFY_FAILED" in str(error)
        else:
            raise AssertionError("an unknown CA was trusted")
        replacement = tmp_path / "ca.crt.new"  # as the kubelet: a new file, then a rename
        replacement.write_bytes(Path(good.ca_path or "").read_bytes())
        replacement.rename(ca)
        assert api.list_pods(kube_ns.namespace, "leader-election/name=x")["items"] == []
    finally:
        api.close()


def test_repeated_events_are_counted_not_reposted(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    add_group_pod("app-0")
    publisher, _, _ = make_publisher(kube_config("app-0"))
    for _ in range(40):  # a flapping link
        publisher.post_event("Flap", "the same thing again")
        assert publisher.flush(10)
    for round_ in range(40):
        publisher.post_event("Churn", f"a different thing {round_}")
    assert publisher.flush(20)

    flaps = kube_ns.events("app-0", "Flap")
    assert len(flaps) == 1, "repeats are counted on the Event posted first"
    assert flaps[0]["count"] == 25, "counted up to client-go's burst, then limited"
    assert len(kube_ns.events("app-0", "Churn")) == 25, "at most the burst of client-go"


def test_annotations_are_restored_as_the_label_is(
    kube_ns, kube_config, add_group_pod, make_publisher, make_operator
):
    add_group_pod("app-0")
    config = kube_config("app-0")
    publisher, _, _ = make_publisher(config)
    control = FakeControl(status("app-0", Role.LEADER, epoch=10))
    control.publisher = publisher
    publisher.publish(control.current())
    assert publisher.flush(10)
    make_operator(config, control, publisher)

    kube_ns.annotate_pod("app-0", EPOCH_ANNOTATION, None)  # kubectl annotate ... epoch-
    kube_ns.annotate_pod("app-0", LEADER_ANNOTATION, "app-9")
    wait_until(lambda: kube_ns.annotations("app-0").get(EPOCH_ANNOTATION) == "10", timeout=10,
               message="epoch annotation restored")
    wait_until(lambda: kube_ns.annotations("app-0").get(LEADER_ANNOTATION) == "app-0",
               timeout=10, message="leader annotation restored")


def test_a_second_step_down_annotation_is_not_lost(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    """The first request is being handled when a second one is written: the removal of the
    first must not take the second with it (kopf applies the handler's patch after it)."""
    import kopf

    from sidecar.k8s import STEP_DOWN_ANNOTATION
    from sidecar.operator import REMOVAL_DELAY, Reconciler

    add_group_pod("app-0")
    config = kube_config("app-0")
    publisher, _, _ = make_publisher(config)
    control = FakeControl(status("app-0", Role.LEADER, epoch=10))
    reconciler = Reconciler(config, control, publisher)
    try:
        kube_ns.annotate_pod("app-0", STEP_DOWN_ANNOTATION, "first")
        reconciler.step_down("first")  # acted on; its removal is due on the timer
        kube_ns.annotate_pod("app-0", STEP_DOWN_ANNOTATION, "second")  # meanwhile
        time.sleep(REMOVAL_DELAY + 0.5)  # the removal tested "first", and left "second"
        assert kube_ns.annotations("app-0").get(STEP_DOWN_ANNOTATION) == "second"
        assert control.step_downs == 1

        control.set(status("app-0", Role.LEADER, epoch=11))  # elected again meanwhile
        reconciler.on_pod("MODIFIED", kube_ns.pod("app-0"), kopf.Patch())  # the next event
        assert control.step_downs == 2
        wait_until(lambda: STEP_DOWN_ANNOTATION not in kube_ns.annotations("app-0"),
                   message="the second request removed")
    finally:
        reconciler.close()


def test_the_own_pods_handler_does_not_wait_for_the_sweeps_relabels(
    kube_ns, kube_config, add_group_pod, make_publisher
):
    """A sweep (the own pod changed, e.g. we just became leader) relabels on the relabel
    timer's thread: the own pod's handler, which must act on a deletion at once (before
    the application's preStop sleep ends), returns without waiting for the API."""
    from sidecar.operator import Reconciler

    add_group_pod("app-1", role="leader")
    add_group_pod("app-2", role="leader")
    add_group_pod("app-0", role="leader")
    # As our publisher writes it: the operator relabels others once our label says so.
    own = kube_ns.annotate_pod("app-0", EPOCH_ANNOTATION, "10")
    config = kube_config("app-0")
    publisher, _, _ = make_publisher(config)
    control = FakeControl(status("app-0", Role.FOLLOWER, leader="app-9", epoch=9))
    reconciler = Reconciler(config, control, publisher)
    try:
        for name in ("app-1", "app-2"):  # seen while a follower: not ours to judge
            reconciler.on_pod("MODIFIED", kube_ns.pod(name), patch=None)
        control.status = status("app-0", Role.LEADER, epoch=10)  # now elected
        kube_ns.slow(1.0)  # every request of the sidecar takes a second or more
        started = time.monotonic()
        reconciler.on_pod("MODIFIED", own, patch=None)
        assert time.monotonic() - started < 0.5, "the handler waited for the relabels"
        kube_ns.proxy.heal()
        wait_until(lambda: {kube_ns.labels(n)["role"] for n in ("app-1", "app-2")}
                   == {"follower"}, timeout=15, message="swept on the timer's thread")
    finally:
        reconciler.close()
