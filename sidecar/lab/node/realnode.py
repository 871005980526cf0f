"""One real node joined to the local control plane: containerd and runc run the pods'
containers, the kubelet runs probes and hooks, kube-proxy programs Services, CoreDNS
answers cluster names, a local-path provisioner gives PersistentVolumes and
kube-network-policies enforces NetworkPolicies.

Start order (each step waits for the one before):
1. certificates and kubeconfigs for the kubelet, kube-proxy and the provisioner;
2. containerd, then the images imported into its `k8s.io` namespace (nothing is pulled:
   the node has no way to a registry);
3. the kubelet, until its Node is Ready;
4. kube-proxy, then the NetworkPolicy agent until it listens on its NFQUEUE, and the
   rules that queue pod connections to it (before any pod, so that none runs unpoliced);
5. CoreDNS (a pod), the provisioner and its StorageClass.

Guaranteed: `start()` returns once the Node is Ready, NetworkPolicies are enforced and
CoreDNS answers; `stop()` leaves no process, mount, cgroup, link, route, packet-filter
rule or nftables table of the node behind (see `leftovers()`), and removes the node's
directory.
Not guaranteed: the node survives a reboot (nothing restarts it).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.lab.ensemble import free_port
from sidecar.lab.node import addons, config, pki, processes
from sidecar.lab.node.network import (
    NODE_IP,
    NetworkError,
    NodeNetwork,
    queue_bound,
    queue_pod_connections,
    remove_policy_table,
)
from sidecar.lab.node.network import leftovers as network_leftovers

if TYPE_CHECKING:
    from sidecar.lab.cluster.control_plane import LocalCluster


# Upstream's DaemonSet's queue number; nothing else here uses NFQUEUE.
POLICY_QUEUE = 98


class NodeError(Exception):
    """The real node could not start; the message is one line."""


def network_state_dir(cluster: LocalCluster) -> Path:
    """Beside the cluster's directory, not in it: the network is up before kwokctl makes
    that directory (so that the API server's certificate names the node's address)."""
    return cluster.workdir / f"{cluster.name}-node-network"


class RealNode:
    def __init__(self, cluster: LocalCluster, bin_dir: Path, images: dict[str, Path]) -> None:
        self.cluster = cluster
        self.name = f"{cluster.name}-node"
        self.dir = cluster.cluster_dir / "node"
        self.bin_dir = bin_dir
        self.images = images
        self.network = NodeNetwork(network_state_dir(cluster))
        self.socket = self.dir / "containerd" / "containerd.sock"

    # --- commands ---------------------------------------------------------------------------

    def ctr(self, *args: str, timeout: float = 300) -> str:
        return self._run([str(self.bin_dir / "ctr"), "--address", str(self.socket),
                          "--namespace", "k8s.io", *args], timeout)

    def crictl(self, *args: str, timeout: float = 60) -> str:
        return self._run([str(self.bin_dir / "crictl"), "--runtime-endpoint",
                          f"unix://{self.socket}", "--image-endpoint", f"unix://{self.socket}",
                          *args], timeout)

    @staticmethod
    def _run(command: list[str], timeout: float) -> str:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                check=False)
        if result.returncode != 0:
            raise NodeError(f"{Path(command[0]).name} {' '.join(command[5:7])}: "
                            f"{result.stderr.strip()[-300:]}")
        return result.stdout

    # --- start ------------------------------------------------------------------------------

    def start(self, timeout: float = 180) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        self._start_containerd()
        self._import_images()
        self._start_kubelet(timeout)
        self._start_kube_proxy()
        self._start_network_policies()
        self._start_addons(timeout)

    def _write_configs(self) -> None:
        (self.dir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.dir / "cni" / "net.d" / "10-bridge.conflist").write_text(
            config.cni_conflist(self.dir))
        (self.dir / "containerd.toml").write_text(
            config.containerd_toml(self.dir, self.bin_dir))
        # Pods resolve cluster names only: no upstream server is reachable from them.
        (self.dir / "resolv.conf").write_text("")
        ca_dir = self.cluster.cluster_dir / "pki"
        server = self.cluster.server()
        identities = {
            "kubelet": (f"system:node:{self.name}", "system:nodes"),
            "kube-proxy": ("system:kube-proxy", ""),
            "local-path": (addons.LOCAL_PATH_USER, ""),
        }
        for name, (user, group) in identities.items():
            cert, key = pki.issue_client_cert(ca_dir, self.dir / "pki", name, user, group)
            pki.kubeconfig(self.dir / f"{name}.kubeconfig", server, ca_dir / "ca.crt",
                           cert, key, user)
        (self.dir / "kubelet.yaml").write_text(config.kubelet_yaml(
            self.dir, ca_dir / "ca.crt", free_port(), free_port()))
        (self.dir / "kube-proxy.yaml").write_text(config.kube_proxy_yaml(
            self.dir / "kube-proxy.kubeconfig", self.name, free_port(), free_port()))

    def _start_containerd(self) -> None:
        processes.start(self.dir, "containerd", [
            str(self.bin_dir / "containerd"), "--config", str(self.dir / "containerd.toml")],
            env={"PATH": f"{self.bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
        self._until("containerd answers", 30, self._containerd_answers, "containerd")

    def _containerd_answers(self) -> bool:
        try:
            self.ctr("version", timeout=5)
        except (NodeError, subprocess.TimeoutExpired):
            return False
        return True

    def _import_images(self) -> None:
        present = set(self.ctr("images", "list", "--quiet").split())
        for name, archive in self.images.items():
            if name not in present:
                self.ctr("images", "import", "--local", str(archive))

    def load_images(self, images: dict[str, Path]) -> dict[str, str]:
        """Import each image whose build containerd lacks, under its name and under a name
        of its build (`<tag>-<digest>`, from the archive), as `kind load` does with a tag per
        build: `helm upgrade --set image.tag=<build>` then rolls the pods onto a new build.
        Returns image name -> the build's name."""
        present = set(self.ctr("images", "list", "--quiet").split())
        built = {}
        for name, archive in images.items():
            build = f"{name}-{archive.stem.rsplit('-', 1)[1][:12]}"
            if build not in present:
                self.ctr("images", "import", "--local", str(archive))
                self.ctr("images", "tag", "--force", name, build)
            built[name] = build
        return built

    def _start_kubelet(self, timeout: float) -> None:
        processes.start(self.dir, "kubelet", [
            str(self.bin_dir / "kubelet"),
            "--config", str(self.dir / "kubelet.yaml"),
            "--kubeconfig", str(self.dir / "kubelet.kubeconfig"),
            "--root-dir", str(self.dir / "kubelet"),
            "--cert-dir", str(self.dir / "kubelet" / "pki"),
            "--hostname-override", self.name,
            "--node-ip", NODE_IP,
            "--v", "1",
        ], env={"PATH": f"{self.bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
        self._until(f"node {self.name} is Ready", timeout, self._node_ready, "kubelet")

    def _node_ready(self) -> bool:
        out = self.cluster.kubectl("get", "node", self.name, "-o",
                                   "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                                   check=False, timeout=10)
        return out.strip() == "True"

    def _start_kube_proxy(self) -> None:
        processes.start(self.dir, "kube-proxy", [
            str(self.bin_dir / "kube-proxy"), "--config", str(self.dir / "kube-proxy.yaml"),
            "--v", "1"])

    def _start_network_policies(self, timeout: float = 60) -> None:
        """kube-network-policies, as kindnet embeds it: the first packet of each new
        connection of a pod goes to the agent (NFQUEUE, `network.queue_pod_connections`),
        which accepts or drops it by the NetworkPolicies that select either end."""
        self.cluster.kubectl("apply", "-f", "-", input=addons.NETWORK_POLICIES)
        token = self.cluster.kubectl("create", "token", "-n", "kube-system",
                                     addons.NETWORK_POLICY_AGENT,
                                     f"--duration={pki.TOKEN_LIFETIME}")
        run_dir = config.run_dir(self.dir)
        pki.in_cluster_files(run_dir, self.cluster.cluster_dir / "pki" / "ca.crt", token,
                             "kube-system")
        api = urllib.parse.urlsplit(self.cluster.server())
        if api.hostname is None or api.port is None:
            raise NodeError(f"no host and port in the API server's URL {api.geturl()}")
        processes.start(self.dir, addons.NETWORK_POLICY_AGENT, processes.with_own_run(
            run_dir, self._network_policy_command()), env={
                # With the token and CA above, all that rest.InClusterConfig() reads.
                "KUBERNETES_SERVICE_HOST": api.hostname,
                "KUBERNETES_SERVICE_PORT": str(api.port),
            })
        # It binds the queue once its informers have synced: from then on it has every
        # pod, namespace and policy to judge by.
        self._until(f"the NetworkPolicy agent listens on NFQUEUE {POLICY_QUEUE}", timeout,
                    lambda: queue_bound(POLICY_QUEUE), addons.NETWORK_POLICY_AGENT)
        queue_pod_connections(POLICY_QUEUE)

    def _network_policy_command(self) -> list[str]:
        return [
            str(self.bin_dir / "kube-network-policies"),
            "--hostname-override", self.name,
            "--nfqueue-id", str(POLICY_QUEUE),
            # Fail closed, upstream's default: a packet it cannot parse is dropped. (Our
            # NFQUEUE rules have no bypass either: with the agent down, no new pod
            # connection is let through unchecked.)
            "--fail-open=false",
            # Only the standard NetworkPolicy API (the admin ones need CRDs and RBAC of
            # their own, and queue every packet instead of those of policed pods).
            "--admin-network-policy=false",
            "--baseline-admin-network-policy=false",
            # Its default, ":9080", would answer on every address, the pods' bridge too.
            "--metrics-bind-address", f"127.0.0.1:{free_port()}",
            # Each verdict in the log (as upstream's manifest): why a connection failed.
            "--v", "2",
        ]

    def _start_addons(self, timeout: float) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=addons.COREDNS)
        volumes = self.dir / "local-path"
        volumes.mkdir(exist_ok=True)
        manifest = addons.local_path(volumes)
        self.cluster.kubectl("apply", "-f", "-", input=manifest)
        config_file = self.dir / "local-path.json"
        config_file.write_text(addons.LOCAL_PATH_CONFIG.format(root=volumes))
        helper = self.dir / "local-path-helper.yaml"
        helper.write_text(addons.HELPER_POD)
        processes.start(self.dir, "local-path-provisioner", [
            str(self.bin_dir / "local-path-provisioner"), "start",
            "--config", str(config_file),
            "--provisioner-name", "rancher.io/local-path",
            "--namespace", addons.LOCAL_PATH_NAMESPACE,
            "--helper-image", addons.HELPER_IMAGE,
            "--configmap-name", "local-path-config",
            "--service-account-name", "local-path-provisioner-service-account",
            "--helper-pod-file", str(helper),
            "--kubeconfig", str(self.dir / "local-path.kubeconfig"),
        ], env={"CONFIG_MOUNT_PATH": str(self.dir)})
        self.cluster.kubectl("rollout", "status", "-n", "kube-system", "deployment/coredns",
                             f"--timeout={int(timeout)}s", timeout=timeout + 10)

    def _until(self, what: str, timeout: float, check: Callable[[], bool],
               process: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not processes.running(self.dir, process):
                raise NodeError(f"{process} exited: {processes.log_tail(self.dir, process)}")
            time.sleep(0.25)
        raise NodeError(f"timed out after {timeout:.0f} s waiting until {what} "
                        f"(log: {self.dir / 'logs' / process}.log)")

    # --- stop -------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything; returns what had to be killed beyond the orderly stop."""
        # SIGTERM ends the agent at once (it cleans up only on SIGINT, then sleeps 5 s):
        # its table, where the kernel let it make one, goes right after, by our hand, as
        # it would after a crash; `LSNODE-NETPOL` goes with the network.
        processes.stop(self.dir, addons.NETWORK_POLICY_AGENT, grace=5.0)
        with contextlib.suppress(NetworkError):  # network.down() tries again
            remove_policy_table()
        for name in ("local-path-provisioner", "kube-proxy", "kubelet"):
            processes.stop(self.dir, name, grace=5.0)
        if processes.running(self.dir, "containerd"):
            # Pods first: the CRI tears down their networks (and returns their addresses).
            with contextlib.suppress(NodeError, subprocess.TimeoutExpired):
                self.crictl("rmp", "--all", "--force", timeout=120)
        processes.stop(self.dir, "containerd", grace=10.0)
        subprocess.run([str(self.bin_dir / "kube-proxy"), "--cleanup"], capture_output=True,
                       check=False, timeout=60)
        killed = processes.sweep(self.dir, self.bin_dir)
        self.network.down()
        return killed

    def leftovers(self) -> list[str]:
        return processes.leftovers(self.dir, self.bin_dir) + network_leftovers()
