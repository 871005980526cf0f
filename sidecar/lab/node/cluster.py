"""The local control plane with one real node instead of kwok's (`make cluster-up NODE=real`).

What changes on the control plane, and why:
- the API server listens on every address, but `LSNODE-INPUT` lets only loopback and the
  node's bridge reach its port; it advertises the bridge address (where kube-proxy sends
  the `kubernetes` Service) and its certificate names the Service's address;
- the Node authorizer (kwokctl's default mode `Node,RBAC`) and the NodeRestriction
  admission plugin confine the kubelet to its own Node and pods;
- the API server authenticates to the kubelet (`kubectl logs`, `exec`) with the cluster's
  admin certificate;
- kwok manages only nodes annotated `kwok.x-k8s.io/node=fake`, so it never fights the
  kubelet over the real Node; there are no kwok nodes, so every pod lands on the real one.

Guaranteed: `up()` builds what is missing (the node's binaries, the images) and returns
once the node is Ready with CoreDNS answering; `down()` leaves nothing of the node (see
`RealNode.leftovers()`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sidecar.lab.cluster import binaries
from sidecar.lab.cluster.control_plane import ClusterError, LocalCluster
from sidecar.lab.node import network
from sidecar.lab.node.images import ImageError, ensure_images
from sidecar.lab.node.realnode import NodeError, RealNode, network_state_dir


class RealNodeCluster(LocalCluster):
    def __init__(self, name: str, workdir: Path, *, bin_dir: Path | None = None) -> None:
        super().__init__(name, workdir, nodes=0, bin_dir=bin_dir)

    def node(self, images: dict[str, Path] | None = None) -> RealNode:
        return RealNode(self, binaries.bin_dir(binaries.NODE), images or {})

    # --- hooks ------------------------------------------------------------------------------

    def _create_args(self, api_port: int) -> tuple[list[str], list[str]]:
        self._take_the_bridge()
        network.NodeNetwork(network_state_dir(self)).up(api_port)
        config = self.workdir / f"{self.name}-kwokctl-config.yaml"
        config.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokctlConfiguration\n"
            "options:\n  kubeApiserverCertSANs:\n"
            f"    - {network.API_SERVICE_IP}\n    - {network.NODE_IP}\n")
        pki = self.cluster_dir / "pki"
        apiserver = {
            "bind-address": "0.0.0.0",
            "advertise-address": network.NODE_IP,
            "service-cluster-ip-range": network.SERVICE_CIDR,
            "enable-admission-plugins": "NodeRestriction",
            "kubelet-client-certificate": str(pki / "admin.crt"),
            "kubelet-client-key": str(pki / "admin.key"),
            "kubelet-preferred-address-types": "InternalIP",
        }
        extra = [f"kube-apiserver={key}={value}" for key, value in apiserver.items()]
        extra += [
            f"kube-controller-manager=service-cluster-ip-range={network.SERVICE_CIDR}",
            # The later flag wins over kwokctl's manage-all-nodes=true.
            "kwok-controller=manage-all-nodes=false",
            "kwok-controller=manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        ]
        return ["--config", str(config)], extra

    def _after_up(self, timeout: float) -> None:
        node = self.node()
        if (node.dir / "pids" / "kubelet.pid").exists():
            return
        started = time.monotonic()
        try:
            node_bin = binaries.ensure_built(binaries.NODE)
            node = RealNode(self, node_bin, ensure_images(node_bin / "coredns"))
            _log(f"starting the real node {node.name} (containerd, kubelet, kube-proxy, "
                 "kube-network-policies, CoreDNS, local-path-provisioner) ...")
            node.start(timeout)
        except (NodeError, binaries.BuildError, ImageError) as error:
            raise ClusterError(str(error)) from error
        _log(f"node {node.name} Ready in {time.monotonic() - started:.1f} s")

    def _before_down(self) -> None:
        node = self.node()
        if node.dir.exists() or network_state_dir(self).exists():
            killed = node.stop()
            if killed:
                _log(f"killed what did not stop: {', '.join(killed)}")

    def _half_made(self) -> bool:
        return super()._half_made() or network_state_dir(self).exists()

    def signal_container(self, namespace: str, pod: str, container: str,
                         sig: signal.Signals) -> None:
        """`sig` to the container's main process, found through the CRI (its pid on the
        host): what a crash or the OOM killer does, which the kubelet then sees."""
        status = json.loads(self.kubectl("-n", namespace, "get", "pod", pod, "-o", "json"))
        statuses = (status["status"].get("containerStatuses") or []) + (
            status["status"].get("initContainerStatuses") or [])
        found = [s for s in statuses if s["name"] == container and s.get("containerID")]
        if not found:
            raise ClusterError(f"{namespace}/{pod} has no running container {container}")
        container_id = found[0]["containerID"].split("//", 1)[1]
        info = json.loads(self.node().crictl("inspect", container_id))
        os.kill(int(info["info"]["pid"]), sig)

    def _take_the_bridge(self) -> None:
        """One real node per machine: the bridge, its addresses and the iptables chains
        have fixed names. The owner file names the cluster that has them."""
        owner = binaries.cache_root() / "real-node.owner"
        owner.parent.mkdir(parents=True, exist_ok=True)
        if owner.exists() and owner.read_text().strip() != str(self.cluster_dir):
            other = Path(owner.read_text().strip())
            if other.exists() and Path(f"/sys/class/net/{network.BRIDGE}").exists():
                raise ClusterError(f"a real node already runs for {other}: "
                                   "take that cluster down first (make cluster-down NODE=real)")
        owner.write_text(f"{self.cluster_dir}\n")


def _log(message: str) -> None:
    print(f"[real-node] {message}", file=sys.stderr, flush=True)


# The chart's defaults but for the images: the ones built here, never pulled.
CHART_VALUES: dict[str, Any] = {
    "image": {"repository": "localhost/leader-sidecar", "tag": "dev", "pullPolicy": "Never"},
    "zookeeper": {"image": {"repository": "localhost/leader-sidecar-lab/zookeeper",
                            "tag": "3.9.4", "pullPolicy": "Never"}},
}


def missing_features() -> list[str]:
    """What this machine lacks for a real node, each named; empty when nothing is."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (containerd, the kubelet and the network setup)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        missing.append("the overlay filesystem (containerd's snapshotter)")
    checks = {
        "/proc/sys/net/bridge/bridge-nf-call-iptables": "bridge netfilter (br_netfilter)",
        "/proc/self/ns/net": "network namespaces",
        "/sys/fs/cgroup/memory": "the cgroup v1 memory controller",
        "/dev/kmsg": "/dev/kmsg (the kubelet's OOM watcher)",
        "/proc/net/netfilter/nfnetlink_queue":
            "netfilter's NFQUEUE (nfnetlink_queue: the NetworkPolicy agent's verdicts)",
    }
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    for path, feature in checks.items():
        if path == "/sys/fs/cgroup/memory" and unified:
            continue
        if not Path(path).exists():
            missing.append(feature)
    # nft: the NetworkPolicy agent's table is removed with it (the agent itself talks
    # netlink); unshare: the agent's own /var/run.
    for tool in ("iptables", "ip", "openssl", "buildah", "debootstrap", "nft", "unshare"):
        if shutil.which(tool) is None:
            missing.append(f"the `{tool}` command")
    return missing
