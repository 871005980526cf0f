"""The chart as users run it: `helm install` into a namespace of the local control plane,
the sidecars run by the pod runner, everything read back with the real `kubectl`.

`ChartRelease.install()` creates the namespace labelled for the Pod Security `restricted`
level, starts a `PodRunner` for it and runs `helm install --wait` with
`externalZookeeper.hosts` set to a real local ensemble: the chart's ZooKeeper
StatefulSet is installed all the same (its pods are kwok's, running nothing), and the
sidecars reach the local ensemble through that one value. ZooKeeper persistence is off
(nothing here provisions volumes).

On a real node (`zk_hosts=None`) nothing stands in: the kubelet runs the pods and the
sidecars reach the chart's own ensemble, with its persistence on.

Guaranteed: `close()` stops the runner's processes, uninstalls the release and deletes
the namespace, whatever state the release is in. Reads go through `kubectl -o json`, as
a person (or a script) would read them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sidecar.lab.cluster.control_plane import ClusterError, LocalCluster
from sidecar.lab.cluster.podrunner import PodRunner

CHART = Path(__file__).resolve().parents[3] / "charts" / "leader-election"
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
# helm 4.3's default `--wait` (the kstatus "watcher") stops waiting as soon as every
# resource it has *seen so far* is ready, so a StatefulSet whose first status arrives late
# can fail the install with "not ready ... InProgress" long before the timeout (seen once
# in 30 installs here). `legacy` is helm 3's polling wait, which checks every resource.
WAIT = "--wait=legacy"


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class ChartRelease:
    def __init__(self, cluster: LocalCluster, namespace: str, zk_hosts: str | None,
                 workdir: Path, *, name: str = "demo", values: dict[str, Any] | None = None,
                 session_timeout: int = 2) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.workdir = workdir
        stand_in: dict[str, Any] = {} if zk_hosts is None else {
            "externalZookeeper": {"hosts": zk_hosts},
            "zookeeper": {"persistence": {"enabled": False}},
            "election": {"sessionTimeoutSeconds": session_timeout},
        }
        self.values = deep_merge(stand_in, values or {})
        self.runner = None if zk_hosts is None else PodRunner(
            cluster, namespace, workdir / "pods",
            selector=f"app.kubernetes.io/instance={name},app.kubernetes.io/component=app")
        self.installed = False

    @property
    def stand_in(self) -> PodRunner:
        """The pod runner that plays the kubelet (kwok's nodes only)."""
        if self.runner is None:
            raise ClusterError("no pod runner: a real kubelet runs these pods")
        return self.runner

    def signal_sidecar(self, pod: str, sig: signal.Signals) -> None:
        """`sig` to the sidecar of `pod`: its process under the pod runner on kwok's nodes,
        its container's main process on a real node."""
        if self.runner is not None:
            self.runner.kill(pod, sig)
        else:
            self.cluster.signal_container(self.namespace, pod, "leader-sidecar", sig)

    # --- life cycle ---------------------------------------------------------------------

    def install(self, timeout: float = 180) -> ChartRelease:
        self.cluster.kubectl("create", "namespace", self.namespace)
        self.cluster.kubectl("label", "namespace", self.namespace, RESTRICTED)
        if self.runner is not None:
            self.runner.start()
        self.helm("install", self.name, str(CHART), WAIT, "--timeout", f"{int(timeout)}s",
                  values=self.values, timeout=timeout + 30)
        self.installed = True
        return self

    def upgrade(self, values: dict[str, Any], timeout: float = 180) -> str:
        self.values = deep_merge(self.values, values)
        return self.helm("upgrade", self.name, str(CHART), WAIT,
                         "--timeout", f"{int(timeout)}s", values=self.values,
                         timeout=timeout + 30)

    def uninstall(self, timeout: float = 120) -> str:
        out = self.helm("uninstall", self.name, "--wait", "--timeout", f"{int(timeout)}s",
                        timeout=timeout + 30)
        self.installed = False
        return out

    def close(self) -> None:
        try:
            if self.installed:
                self.helm("uninstall", self.name, "--wait", "--timeout", "60s", check=False,
                          timeout=90)
        finally:
            if self.runner is not None:
                self.runner.stop()
            self.cluster.kubectl("delete", "namespace", self.namespace, "--wait=false",
                                 "--ignore-not-found", check=False)

    # --- the real tools -----------------------------------------------------------------

    def helm(self, *args: str, values: dict[str, Any] | None = None, check: bool = True,
             timeout: float = 120) -> str:
        command = [self.cluster.tool("helm"), "--kubeconfig", str(self.cluster.kubeconfig),
                   "--namespace", self.namespace, *args]
        with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
            if values is not None:
                json.dump(values, values_file)
                values_file.flush()
                command += ["-f", values_file.name]
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise ClusterError(f"helm {' '.join(args[:2])}: {result.stderr.strip()}")
        return result.stdout

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.cluster.kubectl("--namespace", self.namespace, *args, check=check)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    # --- what users read ----------------------------------------------------------------

    @property
    def replicas(self) -> int:
        return int(self.values.get("app", {}).get("replicas", 3))

    @property
    def app_selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=app"

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json("pods", "-l", self.app_selector)["items"]
        return items

    def roles(self) -> dict[str, str | None]:
        """pod name -> its `role` label (None when it has none)."""
        return {p["metadata"]["name"]: p["metadata"].get("labels", {}).get("role")
                for p in self.pods()}

    def labelled_leaders(self) -> list[str]:
        """`kubectl get pods -l role=leader` for the release's pods."""
        pods = self.get_json("pods", "-l", f"{self.app_selector},role=leader")["items"]
        return sorted(p["metadata"]["name"] for p in pods)

    def settled_leader(self) -> str | None:
        """The leader when exactly one pod says leader and every other says follower."""
        roles = self.roles()
        leaders = [name for name, role in roles.items() if role == "leader"]
        others_follow = all(role == "follower" for name, role in roles.items()
                            if name not in leaders)
        if len(leaders) == 1 and others_follow and len(roles) == self.replicas:
            return leaders[0]
        return None

    def all_ready(self) -> bool:
        """Every pod of the group Ready and none being deleted: each sidecar runs, so each
        is a candidate (a crashed container in the kubelet's back-off is not)."""
        pods = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]
        return len(pods) == self.replicas and all(
            any(c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions") or []) for p in pods)

    def wait_settled(self, timeout: float = 60.0, not_: str | None = None) -> str:
        """Wait for one leader (other than `not_`) with every other pod a follower."""
        found = wait(lambda: (leader := self.settled_leader()) and leader != not_ and leader,
                     timeout, f"one leader other than {not_}")
        return str(found)

    def pod_ip(self, name: str) -> str | None:
        ip = self.get_json("pod", name).get("status", {}).get("podIP")
        return str(ip) if ip else None

    def leader_endpoints(self) -> list[str]:
        """Ready addresses in the EndpointSlices of the `<release>-leader` Service."""
        slices = self.get_json(
            "endpointslices", "-l", f"kubernetes.io/service-name={self.name}-leader")["items"]
        addresses = []
        for piece in slices:
            for endpoint in piece.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready", True):
                    addresses.extend(endpoint.get("addresses", []))
        return sorted(addresses)

    def leftovers(self) -> list[str]:
        """Objects of the release still in the namespace (after `helm uninstall`)."""
        out = self.kubectl("get", "all,serviceaccounts,roles,rolebindings,secrets,configmaps,"
                           "poddisruptionbudgets,endpointslices,networkpolicies",
                           "-l", f"app.kubernetes.io/instance={self.name}", "-o", "name")
        return [line for line in out.splitlines() if line.strip()]


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")
