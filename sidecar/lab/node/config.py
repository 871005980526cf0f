"""The node components' configuration files, each written for this kind of host.

What the host is, and what follows from it:
- PID 1 is not systemd: the `cgroupfs` cgroup driver, in containerd and the kubelet.
- cgroup v1 (a hybrid hierarchy): kubelet >= 1.35 refuses it unless `failCgroupV1: false`.
- No CAP_SYS_RESOURCE: runc cannot raise `oom_score_adj`, so containerd's CRI plugin
  keeps it within what the process may set (`restrict_oom_score_adj`).
- A small, shared disk and no other tenant: swap is tolerated, eviction thresholds are 0 %
  and image garbage collection is off (every image is built here and imported; one that
  is collected cannot be pulled back).
- Everything the node writes lives under its directory: containerd's root, state and
  sockets (network namespaces included), the kubelet's root and pod logs, the CNI IPAM
  state, and the volumes of the local-path provisioner. containerd's NRI socket too: in
  `<node>/run/nri/nri.sock` instead of the host's `/var/run/nri/nri.sock`. The
  NetworkPolicy agent, whose NRI plugin knows only that fixed path, sees `<node>/run` as
  its `/var/run` (`processes.with_own_run`), and learns each pod's address from containerd
  as the sandbox starts, before the pod's first packet (upstream's fix for
  kubernetes/kubernetes#85966: the API server would tell it later).
"""

from __future__ import annotations

import json
from pathlib import Path

from sidecar.lab.node.network import (
    BRIDGE,
    DNS_SERVICE_IP,
    NODE_IP,
    POD_CIDR,
    SERVICE_CIDR,
)

PAUSE_IMAGE = "localhost/pause:3.10"


def run_dir(node_dir: Path) -> Path:
    """What the node's programs that know only fixed `/var/run` paths see there."""
    return node_dir / "run"


def containerd_toml(node_dir: Path, bin_dir: Path) -> str:
    root = node_dir / "containerd"
    return f"""\
version = 3
root = "{root}/root"
state = "{root}/state"

[grpc]
  address = "{root}/containerd.sock"

[ttrpc]
  address = "{root}/containerd.sock.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{bin_dir}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{bin_dir}"]
    conf_dir = "{node_dir}/cni/net.d"

[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "{run_dir(node_dir)}/nri/nri.sock"
  plugin_path = "{node_dir}/nri/plugins"
  plugin_config_path = "{node_dir}/nri/conf.d"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_conflist(node_dir: Path) -> str:
    """kind's bridge network, minus its way out: routes to the pod subnet and the Service
    range only, no default gateway, no masquerade."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "leader-sidecar-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node_dir / "cni" / "ipam"),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": SERVICE_CIDR}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2)


def kubelet_yaml(node_dir: Path, ca: Path, port: int, healthz_port: int) -> str:
    return f"""\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://{node_dir}/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /
failCgroupV1: false
failSwapOn: false
clusterDNS: [{DNS_SERVICE_IP}]
clusterDomain: cluster.local
resolvConf: {node_dir}/resolv.conf
podLogsDir: {node_dir}/pod-logs
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
syncFrequency: 10s
fileCheckFrequency: 10s
"""


def kube_proxy_yaml(kubeconfig: Path, hostname: str, metrics_port: int,
                    healthz_port: int) -> str:
    return f"""\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: {hostname}
clientConnection:
  kubeconfig: {kubeconfig}
clusterCIDR: {POD_CIDR}
bindAddress: {NODE_IP}
healthzBindAddress: 127.0.0.1:{healthz_port}
metricsBindAddress: 127.0.0.1:{metrics_port}
nodePortAddresses: ["{POD_CIDR}"]
conntrack:
  # 0: leave the host's conntrack limits and timeouts as they are.
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  masqueradeAll: false
  localhostNodePorts: false
  syncPeriod: 30s
  minSyncPeriod: 0s
"""
