"""One failover of a helm-installed release, triggered and timed as a user sees it.

Shared by `bench/cluster_failover.py` and `leader-sidecar demo --cluster`. The actions are
what users do to the pod labelled `role=leader`: `kubectl delete pod` (*graceful*), a crash
of its sidecar (*crash*, SIGKILL through the pod runner), `kubectl annotate ...
leader-election/step-down=now` (*step-down*). The clock polls the apiserver as admin
(about every 5 ms, each figure late by up to one poll) for three moments after the
command: another pod labelled leader, the `<release>-leader` Service's EndpointSlice
holding exactly that pod's address (ready), and no pod but that one labelled leader.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
from typing import Any

import kubernetes

from sidecar.lab.cluster.release import ChartRelease

ACTIONS = ("graceful", "crash", "step-down")
MEASURES = {
    "labelled": "another pod labelled leader",
    "endpoint": "leader Service's EndpointSlice on it",
    "only": "no other pod labelled leader",
}
POLL = 0.005


@dataclasses.dataclass(frozen=True)
class Failover:
    action: str
    old: str
    new: str
    seconds: dict[str, float]  # MEASURES key -> seconds from the command


class Observer:
    """Reads the role labels and the leader EndpointSlice as admin, fast (no kubectl)."""

    def __init__(self, release: ChartRelease) -> None:
        self.release = release
        self.client: Any = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            str(release.cluster.kubeconfig))
        self.core: Any = kubernetes.client.CoreV1Api(self.client)
        self.discovery: Any = kubernetes.client.DiscoveryV1Api(self.client)

    def state(self) -> tuple[list[str], dict[str, str], list[str]]:
        """(pods labelled leader, pod name -> IP, ready addresses of the leader Service)."""
        pods = self.core.list_namespaced_pod(
            self.release.namespace, label_selector=self.release.app_selector).items
        leaders = sorted(p.metadata.name for p in pods
                         if (p.metadata.labels or {}).get("role") == "leader")
        ips = {p.metadata.name: p.status.pod_ip for p in pods if p.status and p.status.pod_ip}
        slices = self.discovery.list_namespaced_endpoint_slice(
            self.release.namespace,
            label_selector=f"kubernetes.io/service-name={self.release.name}-leader").items
        ready = sorted(address for piece in slices for endpoint in piece.endpoints or []
                       if endpoint.conditions is None or endpoint.conditions.ready is not False
                       for address in endpoint.addresses)
        return leaders, ips, ready

    def close(self) -> None:
        self.client.close()


def act(release: ChartRelease, action: str, leader: str) -> None:
    if action == "graceful":
        subprocess.run([release.cluster.tool("kubectl"), "--kubeconfig",
                        str(release.cluster.kubeconfig), "-n", release.namespace,
                        "delete", "pod", leader, "--wait=false"],
                       capture_output=True, check=True, timeout=30)
    elif action == "crash":
        release.runner.kill(leader, signal.SIGKILL)
    elif action == "step-down":
        release.kubectl("annotate", "pod", leader, "leader-election/step-down=now",
                        "--overwrite")
    else:
        raise ValueError(f"unknown action {action!r}")


def fail_over(release: ChartRelease, observer: Observer, action: str,
              timeout: float = 60.0) -> Failover:
    """Act on the settled leader and time the three moments; raises TimeoutError."""
    leader = release.wait_settled(timeout)
    started = time.monotonic()
    act(release, action, leader)
    seen: dict[str, float] = {}
    successor = ""
    while len(seen) < len(MEASURES):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{action} failover of {leader}: only {sorted(seen)} "
                               f"within {timeout:.0f} s")
        leaders, ips, ready = observer.state()
        now = time.monotonic() - started
        others = [name for name in leaders if name != leader]
        if others and not successor:
            seen["labelled"], successor = now, others[0]
        if successor and "endpoint" not in seen and ready == [ips.get(successor)]:
            seen["endpoint"] = now
        if successor and "only" not in seen and leaders == [successor]:
            seen["only"] = now
        time.sleep(POLL)
    return Failover(action, leader, successor, seen)
