"""A real, local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok's node controller, run by `kwokctl --runtime binary` from the
binaries that `binaries.py` built. Nothing is downloaded at run time.

kwokctl does the work a cluster needs: certificates, the admin kubeconfig, the component
flags for the Kubernetes version, process management, logs. The apiserver runs with RBAC
(`--authorization-mode=Node,RBAC`) and its default admission plugins, Pod Security among
them, and an audit policy that records every request of a ServiceAccount outside
kube-system, with the body for pods and events (tests count requests from it). kwok's
nodes run no containers; they mark pods Running and give them addresses.

`sidecar.lab.node.cluster.RealNodeCluster` adds a real node through the hooks below.

Guaranteed: `up()` returns once the apiserver answers `/readyz` and the nodes are Ready;
`up()` on a running cluster only checks it; `down()` stops every process and removes the
cluster's directory. `stop_apiserver()` / `start_apiserver()` stop and start only the
kube-apiserver process (kwokctl starts the components that are not running).
Not guaranteed: ports chosen at creation stay free while the cluster is stopped.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from sidecar.lab.cluster import binaries
from sidecar.lab.ensemble import free_port

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Request
    userGroups: ["system:serviceaccounts"]
    resources:
      - group: ""
        resources: ["pods", "events"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


class ClusterError(Exception):
    """The local control plane could not be started or reached."""


class LocalCluster:
    """One kwokctl cluster in `workdir` (kwokctl's `KWOK_WORKDIR`)."""

    def __init__(self, name: str, workdir: Path, *, nodes: int = 3,
                 bin_dir: Path | None = None) -> None:
        self.name = name
        self.workdir = workdir
        self.nodes = nodes
        self.bin_dir = bin_dir or binaries.bin_dir()
        self.cluster_dir = workdir / "clusters" / name
        self.kubeconfig = self.cluster_dir / "kubeconfig.yaml"
        self.ca_path = self.cluster_dir / "pki" / "ca.crt"
        self.audit_log = self.cluster_dir / "logs" / "audit.log"
        self.logs_dir = self.cluster_dir / "logs"

    # --- tools -----------------------------------------------------------------------------

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "KWOK_WORKDIR": str(self.workdir),
                "KWOK_KUBECTL_BINARY": self.tool("kubectl"),
                "KUBECONFIG": str(self.kubeconfig)}

    def kwokctl(self, *args: str, timeout: float = 300) -> None:
        """Run kwokctl; its output goes to `<workdir>/<name>-kwokctl.log`, not a pipe: the
        components it starts inherit its descriptors, and a pipe would never see EOF."""
        command = [self.tool("kwokctl"), "--name", self.name, *args]
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / f"{self.name}-kwokctl.log"
        with log_path.open("a") as log:
            log.write(f"$ kwokctl {' '.join(args)}\n")
            log.flush()
            code = subprocess.run(command, env=self._env(), stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=log, timeout=timeout, check=False).returncode
        if code != 0:
            lines = log_path.read_text().strip().splitlines()
            raise ClusterError(f"kwokctl {' '.join(args[:2])} failed (exit {code}): "
                               f"{lines[-1] if lines else ''} (log: {log_path})")

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60,
                check: bool = True, kubeconfig: Path | None = None) -> str:
        command = [self.tool("kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig),
                   *args]
        result = subprocess.run(command, capture_output=True, text=True, input=input,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    # --- life cycle ------------------------------------------------------------------------

    def running(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        try:
            return self.kubectl("get", "--raw", "/readyz", timeout=5).strip() == "ok"
        except (ClusterError, subprocess.TimeoutExpired):
            return False

    def up(self, timeout: float = 180) -> LocalCluster:
        if self.running():
            self._after_up(timeout)
            return self
        if self._half_made():  # stopped or half-made: make it anew
            self.down()
        self.workdir.mkdir(parents=True, exist_ok=True)
        policy = self._policy_path()
        policy.write_text(AUDIT_POLICY)
        api_port = free_port()
        options, extra_args = self._create_args(api_port)
        extra_args = [
            # Serve on loopback only: nothing outside this machine has business with it
            # (a real node's pods reach it on the node's bridge: sidecar.lab.node.cluster).
            "kube-apiserver=bind-address=127.0.0.1",
            # One instance of each: without leader election they survive an apiserver
            # outage instead of exiting when their lease cannot be renewed.
            "kube-controller-manager=leader-elect=false",
            "kube-scheduler=leader-elect=false",
            *extra_args,
        ]
        self.kwokctl(
            "create", "cluster", "--runtime", "binary",
            "--kube-apiserver-binary", self.tool("kube-apiserver"),
            "--kube-controller-manager-binary", self.tool("kube-controller-manager"),
            "--kube-scheduler-binary", self.tool("kube-scheduler"),
            "--kwok-controller-binary", self.tool("kwok"),
            "--etcd-binary", self.tool("etcd"),
            "--etcd-port", str(free_port()),
            "--kube-apiserver-port", str(api_port),
            "--kube-authorization=true", "--kube-admission=true",
            "--kube-audit-policy", str(policy),
            *options,
            *(arg for extra in kwokctl_extra_args(extra_args) for arg in ("--extra-args", extra)),
            "--kubeconfig", "",
            "--wait", f"{int(timeout)}s",
            timeout=timeout + 30,
        )
        if self.nodes:
            self.kwokctl("scale", "node", "--replicas", str(self.nodes), timeout=60)
            self.kubectl("wait", "--for=condition=Ready", "node", "--all",
                         f"--timeout={int(timeout)}s", timeout=timeout + 10)
        self._after_up(timeout)
        return self

    # --- hooks for a cluster with other nodes (sidecar.lab.node.cluster) -------------------

    def _create_args(self, api_port: int) -> tuple[list[str], list[str]]:
        """More `kwokctl create cluster` options, and `--extra-args` values
        (`component=flag=value`; a later value of a flag wins)."""
        return [], []

    def _after_up(self, timeout: float) -> None:
        """Runs once the control plane is up (and on a running cluster's `up()`)."""

    def _before_down(self) -> None:
        """Runs before the control plane stops."""

    def _half_made(self) -> bool:
        return self.cluster_dir.exists()

    def signal_container(self, namespace: str, pod: str, container: str,
                         sig: signal.Signals) -> None:
        """Send `sig` to a container's main process (a crash, a freeze). kwok's pods have
        no processes: a `ChartRelease` signals its pod runner's instead."""
        raise ClusterError(f"no container runtime on kwok's nodes for {namespace}/{pod}")

    def down(self) -> None:
        self._before_down()
        if self.cluster_dir.exists():
            with contextlib.suppress(ClusterError, subprocess.TimeoutExpired, OSError):
                self.kwokctl("delete", "cluster", timeout=60)
            self._kill_leftovers()
        shutil.rmtree(self.cluster_dir, ignore_errors=True)
        for ours in (self._policy_path(), self.workdir / f"{self.name}-kwokctl.log",
                     self.workdir / f"{self.name}-kwokctl-config.yaml"):
            ours.unlink(missing_ok=True)

    def _policy_path(self) -> Path:
        return self.workdir / f"{self.name}-audit-policy.yaml"

    def _kill_leftovers(self) -> None:
        """SIGKILL what kwokctl left running, but only our own binaries: a pid file that
        outlived a reboot may name somebody else's process now."""
        for pid_file in (self.cluster_dir / "pids").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text().strip())
                executable = Path(os.readlink(f"/proc/{pid}/exe")).resolve()
                if executable.parent == self.bin_dir.resolve():
                    os.kill(pid, signal.SIGKILL)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running():
                return
            time.sleep(0.2)
        raise ClusterError(f"the apiserver did not become ready within {timeout:.0f} s")

    # --- faults from the real parts --------------------------------------------------------

    def stop_apiserver(self, grace: float = 5.0, timeout: float = 30.0) -> None:
        """Stop kube-apiserver alone: SIGTERM, and SIGKILL after `grace` seconds.

        kube-apiserver drains for much longer than a test wants to wait (over 20 s here with
        watches open). Returns once the process is gone from the process table, not merely
        a zombie: kwokctl judges "running" by signalling the pid, and the machine's init
        reaps orphans only every second or so.
        """
        pid = int((self.cluster_dir / "pids" / "kube-apiserver.pid").read_text().strip())
        _signal(pid, signal.SIGTERM)
        started = time.monotonic()
        killed = False
        while _exists(pid):
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                raise ClusterError(f"kube-apiserver (pid {pid}) did not go away")
            if not killed and elapsed > grace:
                _signal(pid, signal.SIGKILL)
                killed = True
            time.sleep(0.05)

    def start_apiserver(self, timeout: float = 90) -> None:
        self.kwokctl("start", "cluster", timeout=timeout)
        self.wait_ready(timeout)

    def ensure_components(self, timeout: float = 90) -> None:
        """Start whatever component is not running (kwokctl starts only those)."""
        if not all(_exists(pid) for pid in self._component_pids()):
            self.start_apiserver(timeout)

    def _component_pids(self) -> list[int]:
        pids = []
        for pid_file in (self.cluster_dir / "pids").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(pid_file.read_text().strip()))
        return pids

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision; returns that revision.

        Watches that resume from an older resourceVersion then get 410 Gone.
        """
        url = f"http://127.0.0.1:{self.etcd_port()}"
        key = base64.b64encode(b"/").decode()
        answer = _post_json(f"{url}/v3/kv/range", {"key": key, "limit": 1})
        revision = int(answer["header"]["revision"])
        _post_json(f"{url}/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def etcd_port(self) -> int:
        config = (self.cluster_dir / "kwok.yaml").read_text()
        for line in config.splitlines():
            stripped = line.strip()
            if stripped.startswith("etcdPort:"):
                return int(stripped.split(":", 1)[1])
        raise ClusterError("no etcdPort in kwokctl's cluster configuration")

    # --- where things are ------------------------------------------------------------------

    def server(self) -> str:
        for line in self.kubeconfig.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("server:"):
                return stripped.split(":", 1)[1].strip()
        raise ClusterError(f"no server in {self.kubeconfig}")

    def collect_logs(self, target: Path) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        if self.logs_dir.exists():
            shutil.copytree(self.logs_dir, target / "logs", dirs_exist_ok=True)
        kwokctl_log = self.workdir / f"{self.name}-kwokctl.log"
        if kwokctl_log.exists():
            shutil.copy2(kwokctl_log, target / "kwokctl.log")
        return target


def kwokctl_extra_args(extra_args: list[str]) -> list[str]:
    """`--extra-args` values in an order kwokctl 0.8 can take: the first value of each
    component before any second one. Its `mutationComponentPatches` files a component
    under the flag's position rather than under the component's, so a component whose first
    value comes after another component's second one panics ("index out of range").
    The order of the values of one component is kept."""
    seen: set[str] = set()
    firsts: list[str] = []
    rest: list[str] = []
    for extra in extra_args:
        component = extra.split("=", 1)[0]
        (rest if component in seen else firsts).append(extra)
        seen.add(component)
    return firsts + rest


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _exists(pid: int) -> bool:
    """True while the pid is in the process table (zombies included)."""
    return Path(f"/proc/{pid}").exists()


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        document: dict[str, Any] = json.loads(response.read())
        return document
