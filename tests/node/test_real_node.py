"""The chart on a real node, as a user of kind sees it: real containers, the kubelet's
probes and hooks, kube-proxy's Services, CoreDNS's names, the chart's own ZooKeeper.

The tests read first and break things after, in file order, on one release.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import time
from typing import Any

import pytest

from sidecar.lab.cluster.failover import fail_over, settled, watch_release
from sidecar.lab.cluster.release import ChartRelease, wait
from sidecar.lab.node import chartzk
from sidecar.lab.node.chartzk import exec_in
from sidecar.lab.node.client import python_pod
from sidecar.lab.node.cluster import RealNodeCluster

pytestmark = pytest.mark.timeout(600)
SLACK = 120.0


# --- helpers ---------------------------------------------------------------------------------

def zk_client(release: ChartRelease) -> Any:
    """kazoo from the host, through the node's bridge, to the servers' pod IPs: over TLS
    with the sidecars' client certificate (the client port is TLS only). The chain is
    checked; the name cannot be (the servers' certificate names their DNS names, and these
    are addresses)."""
    from kazoo.client import KazooClient

    ca, cert, key = chartzk.client_tls_files(release, release.workdir / "zk-tls")
    hosts = ",".join(f"{release.pod_ip(pod)}:2281" for pod in chartzk.pods(release))
    client = KazooClient(hosts=hosts, timeout=10.0, use_ssl=True, verify_certs=True,
                         check_hostname=False, ca=str(ca), certfile=str(cert),
                         keyfile=str(key))
    client.start(timeout=30)
    return client


def election_parent(release: ChartRelease) -> str:
    return f"/leader-election/{release.name}"


def ask_leader_service(release: ChartRelease) -> dict[str, Any]:
    """GET / on the leader Service by its DNS name, from a client pod in the namespace:
    CoreDNS resolves it, kube-proxy routes the ClusterIP to the pod."""
    name = f"client-{int(time.monotonic() * 1000) % 100000}"
    url = f"http://{release.name}-leader:8080/"
    code = ("import json, urllib.request;"
            f"print(urllib.request.urlopen({url!r}, timeout=5).read().decode())")
    manifest = python_pod(name, ["-c", code])
    release.cluster.kubectl("-n", release.namespace, "apply", "-f", "-",
                            input=json.dumps(manifest))
    try:
        wait(lambda: release.get_json("pod", name)["status"].get("phase")
             in ("Succeeded", "Failed"), SLACK, "the client pod finished")
        log = release.kubectl("logs", name, "-c", "main")
        assert release.get_json("pod", name)["status"]["phase"] == "Succeeded", log
        answer: dict[str, Any] = json.loads(log)
        return answer
    finally:
        release.kubectl("delete", "pod", name, "--wait=false", check=False)


def container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    statuses = (pod["status"].get("containerStatuses") or []) + (
        pod["status"].get("initContainerStatuses") or [])
    return next(s for s in statuses if s["name"] == name)


# --- reading -----------------------------------------------------------------------------

def test_the_chart_s_zookeeper_forms_a_quorum(node_release: ChartRelease) -> None:
    assert len(chartzk.pods(node_release)) == 3
    wait(lambda: chartzk.modes(node_release) == chartzk.QUORUM, SLACK,
         "srvr: one leader and two followers")
    claims = node_release.get_json("pvc", "-l", f"app.kubernetes.io/instance={node_release.name}")
    assert sorted(c["status"]["phase"] for c in claims["items"]) == ["Bound"] * 3


def test_app_pods_are_2_of_2_running_with_their_probes_passing(
        node_release: ChartRelease) -> None:
    pods = node_release.pods()
    assert len(pods) == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        app, sidecar = container_status(pod, "app"), container_status(pod, "leader-sidecar")
        assert app["ready"] and sidecar["ready"] and sidecar["started"], pod["status"]
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions["Ready"] == "True"


def test_one_pod_is_labelled_leader_and_zookeeper_s_lowest_candidate_agrees(
        node_release: ChartRelease) -> None:
    leader = node_release.wait_settled(SLACK)
    client = zk_client(node_release)
    try:
        parent = election_parent(node_release)
        candidates = [c for c in client.get_children(parent) if c.startswith("candidate-")]
        lowest = min(candidates, key=lambda name: int(name.rsplit("-", 1)[1]))
        data, _ = client.get(f"{parent}/{lowest}")
    finally:
        client.stop()
        client.close()
    assert leader.encode() in data, (lowest, data)
    assert node_release.labelled_leaders() == [leader]


def test_the_leader_service_answers_with_the_leader_s_role_file(
        node_release: ChartRelease) -> None:
    leader = node_release.wait_settled(SLACK)
    answer = ask_leader_service(node_release)
    # The demo app read this from the emptyDir that its sidecar writes.
    assert answer["role"] == "leader" and answer["identity"] == leader, answer
    assert answer["lease_valid"] is True


def test_runtimes_enforce_the_security_context(node_release: ChartRelease) -> None:
    pod = node_release.pods()[0]["metadata"]["name"]
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    for container in ("app", "leader-sidecar"):
        assert exec_in(node_release, pod, container, "id", "-u").stdout.strip() == "10001"
        wrote = exec_in(node_release, pod, container, "touch", "/probe", check=False)
        assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr
    assert exec_in(node_release, pod, "leader-sidecar", "test", "-s", token, check=False).returncode == 0
    assert exec_in(node_release, pod, "app", "test", "-e", token, check=False).returncode != 0
    zk = chartzk.pods(node_release)[0]
    assert exec_in(node_release, zk, "zookeeper", "id", "-u").stdout.strip() == "1000"
    assert exec_in(node_release, zk, "zookeeper", "touch", "/probe", check=False).returncode != 0


# --- breaking ----------------------------------------------------------------------------------

def _follow_logs(release: ChartRelease, pod: str, container: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [release.cluster.tool("kubectl"), "--kubeconfig", str(release.cluster.kubeconfig),
         "-n", release.namespace, "logs", "-f", "--timestamps", pod, "-c", container],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _stamped(lines: list[str], needle: str) -> float:
    for line in lines:
        stamp, _, text = line.partition(" ")
        if needle in text:
            return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    raise AssertionError(f"no log line with {needle!r} in {lines[-5:]}")


def test_deleting_the_leader_pod_hands_over_before_its_app_gets_sigterm(
        node_release: ChartRelease) -> None:
    with contextlib.closing(watch_release(node_release)) as watch:
        leader = settled(watch, node_release.replicas, SLACK)
        app_log = _follow_logs(node_release, leader, "app")
        sidecar_log = _follow_logs(node_release, leader, "leader-sidecar")
        time.sleep(1.0)  # the log streams are open
        failover = fail_over(node_release, watch, "graceful", timeout=SLACK)
        app_lines = app_log.communicate(timeout=SLACK)[0].splitlines()
        sidecar_lines = sidecar_log.communicate(timeout=SLACK)[0].splitlines()
    assert failover.old == leader and failover.new != leader
    assert failover.doubles == ()
    new_label = failover.walls["labelled"]
    sigterm = _stamped(app_lines, "demo-app: SIGTERM")
    sidecar_stop = _stamped(sidecar_lines, "stopped")
    # The app's preStop `sleep` (2 s) held its SIGTERM back while the sidecar, which
    # watches its own pod, handed over: the new leader was labelled before it.
    assert new_label < sigterm, (new_label, sigterm)
    # Native-sidecar order: the kubelet stops the sidecar (its preStop `leave`, then
    # SIGTERM) only after the application container has exited.
    assert sigterm < sidecar_stop
    events = node_release.get_json("events", "--field-selector",
                                   f"involvedObject.name={leader}")["items"]
    failed_hooks = [e for e in events if e["reason"] == "FailedPreStopHook"
                    and e["lastTimestamp"] and e["lastTimestamp"] >= _iso(sigterm - 10)]
    assert not failed_hooks, [(e["reason"], e["message"]) for e in failed_hooks]
    node_release.wait_settled(SLACK)


def _iso(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_killed_sidecar_container_is_restarted_and_leadership_moves(
        node_release: ChartRelease) -> None:
    leader = node_release.wait_settled(SLACK)
    pod = node_release.get_json("pod", leader)
    before = container_status(pod, "leader-sidecar")["restartCount"]
    node_release.signal_sidecar(leader, signal.SIGKILL)  # its pid, found through the CRI
    wait(lambda: container_status(node_release.get_json("pod", leader), "leader-sidecar")
         ["restartCount"] == before + 1, SLACK, "the kubelet restarted the sidecar")
    # Its old session holds the leadership until ZooKeeper expires it (6 s); the restarted
    # sidecar is a new candidate, behind the others.
    new = node_release.wait_settled(SLACK, not_=leader)
    assert new != leader
    assert node_release.labelled_leaders() == [new]
    # The restarted sidecar may sit in the kubelet's back-off a while: leave the group
    # whole for the tests after this one.
    wait(node_release.all_ready, SLACK * 2, "every pod Ready again")


def test_deleting_the_zookeeper_leader_keeps_one_leader_and_the_znodes(
        node_release: ChartRelease) -> None:
    node_release.wait_settled(SLACK)
    client = zk_client(node_release)
    parent = election_parent(node_release)
    try:
        client.ensure_path("/kept-by-the-ensemble")
        # A sidecar the test before killed may still be in the kubelet's back-off, with
        # its old candidate expired and its new one not yet made: wait for every pod's.
        candidates = wait(lambda: len(names := sorted(client.get_children(parent)))
                          == node_release.replicas and node_release.all_ready() and names,
                          SLACK, "every pod of the group a candidate")
    finally:
        client.stop()
        client.close()
    zk_leader = chartzk.leader(node_release)
    assert zk_leader is not None
    with contextlib.closing(watch_release(node_release)) as watch:
        deleted = time.monotonic()
        node_release.kubectl("delete", "pod", zk_leader)
        wait(lambda: chartzk.modes(node_release) == chartzk.QUORUM, SLACK * 2,
             "the ensemble has three servers in a quorum again")
        # How long the quorum (over TLS with the chart's defaults) takes to re-form.
        print(f"ZooKeeper leader {zk_leader} deleted: three servers in a quorum again "
              f"after {time.monotonic() - deleted:.1f} s")
        node_release.wait_settled(SLACK)
        assert watch.doubles_since(0.0) == []
    client = zk_client(node_release)
    try:
        assert client.exists("/kept-by-the-ensemble")
        assert sorted(client.get_children(parent)) == candidates
    finally:
        client.stop()
        client.close()


def test_helm_uninstall_leaves_no_pod_claim_volume_or_rule(node_release: ChartRelease) -> None:
    node_release.uninstall(timeout=180)
    wait(lambda: not node_release.get_json("pods")["items"], SLACK, "no pod left")
    wait(lambda: not node_release.get_json("pvc")["items"], SLACK, "no claim left")
    wait(lambda: not json.loads(node_release.cluster.kubectl("get", "pv", "-o", "json"))
         ["items"], SLACK, "no volume left (the provisioner deleted them)")
    cluster = node_release.cluster
    assert isinstance(cluster, RealNodeCluster)
    volumes = cluster.node().dir / "local-path"
    # The ensemble's data (every znode of the election) lived in these directories.
    wait(lambda: not any(volumes.iterdir()), SLACK, "the volumes' directories removed")
    # kube-proxy's rules name each Service as <namespace>/<name>: none is left on the node.
    wait(lambda: f"{node_release.namespace}/" not in _iptables_rules(), SLACK,
         "no iptables rule for the release's Services")


def _iptables_rules() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def test_cluster_down_leaves_nothing_behind(real_cluster: RealNodeCluster) -> None:
    node = real_cluster.node()
    real_cluster.down()
    assert node.leftovers() == []
    assert not real_cluster.cluster_dir.exists()
