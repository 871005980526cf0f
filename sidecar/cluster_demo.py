"""`leader-sidecar demo --cluster` (`make demo-cluster`): the user's flow, live, on a real
Kubernetes control plane run locally.

Builds the control-plane binaries if needed (once; see `lab.cluster.binaries`) and starts
a local control plane of its own (etcd, kube-apiserver, controller-manager, scheduler).
Its node is, with `--node real` (the default where this machine can run one), a real one:
kubelet, containerd and runc run the chart's containers from images built here, with its
defaults (its own ZooKeeper ensemble, NetworkPolicies, the native sidecar), and a client
pod calls the leader Service through kube-proxy every 10 ms. With `--node kwok`, the nodes
are kwok's, the pod runner runs the sidecars, and a real three-server ZooKeeper ensemble
runs on this machine. The chart is `helm install`ed into the namespace `leader-election`.
Then, every few seconds, it acts on the pod labelled leader in turn as a user would
(`kubectl delete pod`, a crash of its sidecar, `kubectl annotate ...
leader-election/step-down=now`), shows `kubectl get pods -L role` (RESTARTS move after a
crash on a real node) and the leader Service's endpoint, and prints each failover with
the time until another pod is labelled leader, until the Service points at it and, on a
real node, until the client's answers come from the new leader.

`--rounds N` stops after N failovers with a summary (exit 0). Ctrl-C or SIGTERM tears
everything down (exit 130 or 143). A missing tool (Go, Java, ZooKeeper) is one line on
stderr and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from .demo import DemoStopped, _stop_signals, ignore_stop_signals
from .lab.cluster import binaries
from .lab.cluster.control_plane import ClusterError, LocalCluster
from .lab.cluster.failover import ACTIONS, Failover, fail_over, watch_release
from .lab.cluster.release import ChartRelease, wait
from .lab.ensemble import Ensemble, EnsembleError
from .lab.node.client import ServiceClient, judge
from .lab.node.cluster import CHART_VALUES, RealNodeCluster, missing_features
from .lab.node.images import ImageError

NAMESPACE = "leader-election"


class ClusterDemo:
    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.base = Path(tempfile.mkdtemp(prefix="leader-sidecar-cluster-demo-"))
        self.stack = contextlib.ExitStack()
        self.stack.callback(shutil.rmtree, self.base, True)  # runs last, whatever fails
        self.failovers: list[Failover] = []

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def main(self) -> int:
        started = time.monotonic()
        self.say("control-plane binaries (built once, minutes on a first run) ...")
        release = self.start_real() if self.real else self.start_kwok()
        leader = release.wait_settled(120)
        self.say(f"installed and settled in {time.monotonic() - started:.1f} s; "
                 f"leader {leader}\n")
        watch = watch_release(release)
        self.stack.callback(watch.close)
        client = None
        if self.real:
            client = ServiceClient(release).start()
            self.stack.callback(client.close)
        self.show(release, client)
        number = 0
        while not self.args.rounds or number < self.args.rounds:
            time.sleep(self.args.interval)
            if not release.all_ready():
                # After a crash the kubelet restarts the container with a back-off that
                # grows with each crash of the same pod (10 s, doubling to 5 min).
                self.say("waiting until every pod is Ready (the kubelet restarts a crashed "
                         "sidecar with a back-off) ...")
                wait(release.all_ready, 360, "every pod Ready", interval=0.5)
                release.wait_settled(120)
            action = ACTIONS[number % len(ACTIONS)]
            number += 1
            self.say(f"round {number}: {self.describe(action, release)}")
            failover = fail_over(release, watch, action, timeout=120)
            self.failovers.append(failover)
            doubles = (", ".join(self.ms(d) for d in failover.doubles) or "none")
            self.say(f"  {failover.old} -> {failover.new}: labelled leader after "
                     f"{self.ms(failover.seconds['labelled'])}, leader Service on it after "
                     f"{self.ms(failover.seconds['endpoint'])}, no other leader label after "
                     f"{self.ms(failover.seconds['only'])} (from the action in the API "
                     f"server); two pods labelled leader: {doubles}")
            release.wait_settled(120)
            if client is not None:
                self.client_round(client, failover)
            self.show(release, client)
        self.summary()
        return 0

    @property
    def real(self) -> bool:
        return bool(self.args.node == "real")

    def start_kwok(self) -> ChartRelease:
        cluster = LocalCluster(f"demo-{os.getpid()}", binaries.cache_root() / "demo-clusters",
                               bin_dir=binaries.ensure_built())
        self.stack.callback(cluster.down)
        cluster.up()
        self.say(f"local control plane up: etcd, kube-apiserver (RBAC, Pod Security), "
                 f"controller-manager, scheduler, 3 kwok nodes; KUBECONFIG={cluster.kubeconfig}")
        ensemble = Ensemble(size=3, tick_time_ms=200, base_dir=self.base / "zookeeper")
        self.stack.callback(ensemble.stop)
        ensemble.start()
        self.say(f"ZooKeeper ensemble up: {ensemble.connect_string}")
        release = ChartRelease(cluster, NAMESPACE, ensemble.connect_string, self.base,
                               session_timeout=self.args.session_timeout)
        self.stack.callback(release.close)
        self.say(f"$ helm install demo charts/leader-election -n {NAMESPACE} "
                 f"--set externalZookeeper.hosts=... --wait")
        return release.install()

    def start_real(self) -> ChartRelease:
        cluster = RealNodeCluster("demo", binaries.cache_root() / "demo-clusters",
                                  bin_dir=binaries.ensure_built())
        self.stack.callback(cluster.down)
        cluster.down()  # a demo killed before its teardown left one
        cluster.up(timeout=300)
        self.say(f"local control plane up with one real node (kubelet, containerd, runc, "
                 f"kube-proxy, CoreDNS); KUBECONFIG={cluster.kubeconfig}")
        release = ChartRelease(cluster, NAMESPACE, None, self.base, values=CHART_VALUES)
        self.stack.callback(release.close)
        self.say(f"$ helm install demo charts/leader-election -n {NAMESPACE} --wait "
                 "--set image.repository=localhost/leader-sidecar,image.tag=dev,... "
                 "(its own ZooKeeper ensemble, images built here)")
        return release.install(timeout=600)

    def client_round(self, client: ServiceClient, failover: Failover) -> None:
        client.wait_steady(failover.new, 1.0, 120)
        start, end = failover.walls["recorded"], time.time()
        view = judge(client.runs_between(start - 1, end), start, end, failover.old,
                     failover.new, failover.walls["labelled"])
        first = "-" if view.to_new is None else self.ms(view.to_new)
        self.say(f"  client pod (GET the leader Service every 10 ms): first answer from "
                 f"{failover.new} after {first}, {view.requests} requests, "
                 f"{view.errors} failed, {view.not_leader} answered by a non-leader, "
                 f"{view.two_leaders} answered as leader by the old one")

    @staticmethod
    def describe(action: str, release: ChartRelease) -> str:
        leader = release.labelled_leaders()
        name = leader[0] if leader else "?"
        return {
            "graceful": f"kubectl delete pod {name}",
            "crash": f"crash: SIGKILL to the sidecar of {name}",
            "step-down": f"kubectl annotate pod {name} leader-election/step-down=now",
        }[action]

    def show(self, release: ChartRelease, client: ServiceClient | None) -> None:
        table = release.kubectl("get", "pods", "-L", "role")
        endpoints = release.leader_endpoints()
        owners = {release.pod_ip(name): name for name in release.roles()}
        where = ", ".join(f"{ip} ({owners.get(ip, '?')})" for ip in endpoints) or "none"
        self.say(f"$ kubectl get pods -n {NAMESPACE} -L role\n{table.rstrip()}")
        self.say(f"leader Service {release.name}-leader -> {where}")
        run = client.current if client is not None else None
        if run is not None:
            self.say(f"client pod: GET http://{release.name}-leader:8080/ answered by "
                     f"{run.who} (role {run.role}, epoch {run.epoch}) "
                     f"{run.count} times in a row")
        self.say("")

    def summary(self) -> None:
        self.say(f"{len(self.failovers)} failovers")
        for action in ACTIONS:
            rows = [f for f in self.failovers if f.action == action]
            if not rows:
                continue
            labelled = statistics.median(f.seconds["labelled"] for f in rows)
            endpoint = statistics.median(f.seconds["endpoint"] for f in rows)
            self.say(f"  {action:<9} x{len(rows)}: median {self.ms(labelled)} to the new "
                     f"leader label, {self.ms(endpoint)} to the leader Service")

    @staticmethod
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms"

    def cleanup(self) -> None:
        self.say("tearing down: release, sidecars, ZooKeeper, control plane"
                 + (", the real node ..." if self.real else " ..."))
        self.stack.close()


def run(args: argparse.Namespace) -> int:
    if args.node == "auto":
        args.node = "kwok" if missing_features() else "real"
    elif args.node == "real" and (missing := missing_features()):
        print(f"leader-sidecar: error: a real node needs {', '.join(missing)}",
              file=sys.stderr)
        return 2
    demo = ClusterDemo(args, sys.stdout)
    with _stop_signals() as main_thread:
        try:
            return demo.main()
        except DemoStopped as stopped:
            return 128 + stopped.signum
        except (binaries.BuildError, EnsembleError, ImageError) as error:
            print(f"leader-sidecar: error: {error}", file=sys.stderr)
            return 2
        except (ClusterError, TimeoutError, subprocess.SubprocessError) as error:
            print(f"leader-sidecar: cluster demo failed: {error}", file=sys.stderr)
            return 1
        finally:
            if main_thread:
                ignore_stop_signals()
            demo.cleanup()
