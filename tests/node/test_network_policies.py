"""The chart's NetworkPolicies, enforced on the real node by kube-network-policies: who
reaches ZooKeeper's client port, the sidecar's port (/metrics) and the application's port.

Every connection is tried for real, from pods: three probe pods at once, each trying every
target (TCP connect or HTTP GET, 3 s each, in parallel) and printing JSON, and the same
from inside one of the release's own pods (`kubectl exec`). A dropped connection times
out; so each denial is asserted as a timeout beside an allowance from the same pod, which
shows that the pod's network works and that the policy, not a broken route, said no.
Without the agent (or its NFQUEUE rules) the denials fail; with an agent that drops
everything, the allowances fail.

The probe pods (all with the release's app labels, so that labels alone are shown not to
cross a namespace):
- `elsewhere`: another namespace, created for these tests;
- `monitoring`: the namespace `monitoring`, which the chart's default
  `networkPolicy.metricsNamespaceSelector` admits to the sidecar's port;
- `other-release`: the release's namespace, as the pod of another release
  (`app.kubernetes.io/instance=other`).
Both namespaces are deleted afterwards, and the probe pod of the release's namespace too.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sidecar.lab.cluster.release import RESTRICTED, ChartRelease, wait
from sidecar.lab.node import chartzk, network
from sidecar.lab.node.client import python_pod
from sidecar.lab.node.cluster import RealNodeCluster
from sidecar.lab.node.realnode import POLICY_QUEUE

pytestmark = pytest.mark.timeout(300)
SLACK = 120.0
ZK_CLIENT_PORT = 2281  # the chart's TLS-only client port (zookeeper.tls, on by default)
SIDECAR_PORT = 8081  # the chart's sidecar.httpPort
APP_PORT = 8080  # the chart's app.port
METRICS_NAMESPACE = "monitoring"  # the chart's default metricsNamespaceSelector names it

# Reads its targets ({name: [kind, host, port, path]}) from PROBE_TARGETS, tries them all
# at once and prints {name: "open" | "timeout" | "refused" | "error: ..." |
# {"status": ..., "body": ...}} as one JSON line.
PROBE = """\
import concurrent.futures, http.client, json, os, socket

def tcp(host, port, path):
    socket.create_connection((host, port), timeout=3).close()
    return "open"

def http_get(host, port, path):
    connection = http.client.HTTPConnection(host, port, timeout=3)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return {"status": response.status, "body": response.read().decode("utf-8", "replace")}
    finally:
        connection.close()

def attempt(kind, host, port, path):
    try:
        return (tcp if kind == "tcp" else http_get)(host, port, path)
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as error:
        return f"error: {error}"

targets = json.loads(os.environ["PROBE_TARGETS"])
with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
    futures = {name: pool.submit(attempt, *target) for name, target in targets.items()}
print(json.dumps({name: future.result() for name, future in futures.items()}))
"""

Result = str | dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------

def app_labels(instance: str) -> dict[str, str]:
    """The chart's selector labels of an app pod (le.selectorLabels, component app)."""
    return {"app.kubernetes.io/name": "leader-election",
            "app.kubernetes.io/instance": instance,
            "app.kubernetes.io/component": "app"}


def probe_pod(name: str, labels: dict[str, str], targets: dict[str, list[Any]]
              ) -> dict[str, Any]:
    """A pod that passes Pod Security `restricted` and runs PROBE once."""
    return python_pod(name, ["-c", PROBE], labels=labels,
                      env={"PROBE_TARGETS": json.dumps(targets)})


def phase(cluster: RealNodeCluster, namespace: str, pod: str) -> str:
    out = cluster.kubectl("-n", namespace, "get", "pod", pod, "-o",
                          "jsonpath={.status.phase}", check=False)
    return out.strip()


def run_probes(cluster: RealNodeCluster, pods: dict[str, tuple[str, dict[str, Any]]]
               ) -> dict[str, dict[str, Result]]:
    """Start every probe pod ({key: (namespace, manifest)}) at once; their results by key."""
    for namespace, manifest in pods.values():
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))
    names = {key: (namespace, manifest["metadata"]["name"])
             for key, (namespace, manifest) in pods.items()}
    wait(lambda: all(phase(cluster, ns, pod) in ("Succeeded", "Failed")
                     for ns, pod in names.values()), SLACK, "every probe pod finished")
    results = {}
    for key, (namespace, pod) in names.items():
        log = cluster.kubectl("-n", namespace, "logs", pod)
        assert phase(cluster, namespace, pod) == "Succeeded", (key, log)
        results[key] = json.loads(log)
    return results


def exec_probe(release: ChartRelease, pod: str, container: str,
               targets: dict[str, list[Any]]) -> dict[str, Result]:
    """PROBE run inside a container of the release's own pod."""
    out = chartzk.exec_in(release, pod, container, "env",
                          f"PROBE_TARGETS={json.dumps(targets)}", "python", "-c", PROBE).stdout
    answer: dict[str, Result] = json.loads(out)
    return answer


def create_namespace(cluster: RealNodeCluster, namespace: str) -> None:
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, RESTRICTED)


def is_http(result: Result, status: int = 200) -> bool:
    return isinstance(result, dict) and result["status"] == status


# --- the probes, once for the module ---------------------------------------------------------

@pytest.fixture(scope="module")
def probes(node_release: ChartRelease) -> Iterator[dict[str, dict[str, Result]]]:
    cluster = node_release.cluster
    assert isinstance(cluster, RealNodeCluster)
    node_release.wait_settled(SLACK)
    app_pods = sorted(p["metadata"]["name"] for p in node_release.pods())
    app_ip = node_release.pod_ip(app_pods[0])
    targets = {
        "zookeeper": ["tcp", node_release.pod_ip(chartzk.pods(node_release)[0]),
                      ZK_CLIENT_PORT, ""],
        "metrics": ["http", app_ip, SIDECAR_PORT, "/metrics"],
        "app": ["http", app_ip, APP_PORT, "/healthz"],
    }
    token = uuid.uuid4().hex[:6]
    elsewhere = f"np-elsewhere-{token}"
    created: list[str] = []
    try:
        for namespace in (elsewhere, METRICS_NAMESPACE):
            create_namespace(cluster, namespace)
            created.append(namespace)
        started = time.monotonic()
        results = run_probes(cluster, {
            "elsewhere": (elsewhere, probe_pod(f"probe-{token}", app_labels(node_release.name),
                                               targets)),
            "monitoring": (METRICS_NAMESPACE, probe_pod(
                f"probe-{token}", app_labels(node_release.name), targets)),
            "other-release": (node_release.namespace, probe_pod(
                f"probe-other-{token}", app_labels("other"), targets)),
        })
        # From the sidecar container of another of the release's pods: to ZooKeeper as the
        # sidecar itself connects, and to the first pod's sidecar port.
        results["own"] = exec_probe(node_release, app_pods[1], "leader-sidecar", targets)
        print(f"probes took {time.monotonic() - started:.1f} s: {json.dumps(summary(results))}")
        yield results
    finally:
        node_release.kubectl("delete", "pod", f"probe-other-{token}", "--wait=false",
                             "--ignore-not-found", check=False)
        for namespace in created:
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def summary(results: dict[str, dict[str, Result]]) -> dict[str, dict[str, Any]]:
    """The results without the bodies (for the log)."""
    return {key: {name: result["status"] if isinstance(result, dict) else result
                  for name, result in found.items()} for key, found in results.items()}


# --- the tests -------------------------------------------------------------------------------

def test_the_node_runs_the_network_policy_agent(real_cluster: RealNodeCluster) -> None:
    node = real_cluster.node()
    assert network.queue_bound(POLICY_QUEUE), "nothing listens on the agent's NFQUEUE"
    rules = network.run("iptables", "-t", "mangle", "-S", network.POLICY_CHAIN)
    assert f"--queue-num {POLICY_QUEUE}" in rules
    log = (node.dir / "logs" / "kube-network-policies.log").read_text(errors="replace")
    assert "Caches are synced" in log


def test_a_pod_in_another_namespace_reaches_neither_zookeeper_nor_the_sidecar_port(
        probes: dict[str, dict[str, Result]]) -> None:
    # It carries the release's app labels: the policies' podSelectors match only pods of
    # the release's own namespace all the same.
    found = probes["elsewhere"]
    assert found["zookeeper"] == "timeout", found["zookeeper"]
    assert found["metrics"] == "timeout", found["metrics"]
    assert is_http(found["app"]), found["app"]  # the pod's own network works


def test_a_pod_of_another_release_in_the_namespace_reaches_neither(
        probes: dict[str, dict[str, Result]]) -> None:
    found = probes["other-release"]
    assert found["zookeeper"] == "timeout", found["zookeeper"]
    assert found["metrics"] == "timeout", found["metrics"]
    assert is_http(found["app"]), found["app"]


def test_the_release_s_own_pods_reach_zookeeper_and_the_sidecar_port(
        probes: dict[str, dict[str, Result]]) -> None:
    found = probes["own"]
    assert found["zookeeper"] == "open", found["zookeeper"]
    assert is_http(found["metrics"]), found["metrics"]
    assert is_http(found["app"]), found["app"]


def test_the_application_port_stays_open_to_every_namespace(
        probes: dict[str, dict[str, Result]]) -> None:
    for key in ("elsewhere", "monitoring", "other-release", "own"):
        result = probes[key]["app"]
        assert is_http(result) and isinstance(result, dict), (key, result)
        assert json.loads(result["body"]) == {"status": "ok"}, (key, result)


def test_the_monitoring_namespace_scrapes_metrics_that_another_namespace_cannot(
        probes: dict[str, dict[str, Result]]) -> None:
    scraped = probes["monitoring"]["metrics"]
    assert is_http(scraped) and isinstance(scraped, dict), scraped
    assert "# TYPE leader_sidecar_role gauge" in scraped["body"], scraped["body"][:500]
    assert 'leader_sidecar_role{role="' in scraped["body"]
    # The same pod, labels and targets, one namespace over.
    assert probes["elsewhere"]["metrics"] == "timeout"
    # The metrics namespaces get the sidecar's port, not ZooKeeper.
    assert probes["monitoring"]["zookeeper"] == "timeout"
