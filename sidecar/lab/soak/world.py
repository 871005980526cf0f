"""What the soak runs and breaks: a real ensemble, sidecar processes, and their cluster.

`SoakWorld` owns a three-server ZooKeeper ensemble, one fault proxy per sidecar in front
of it (so one sidecar's network can fail alone), the sidecar processes and, with
Kubernetes, a namespace of a real local control plane with the chart's RBAC and one pod
per sidecar; each sidecar publishes to its pod with the chart's ServiceAccount token.

`inject(fault)` breaks something now and returns what heals it. Faults of different
families never touch the same part, so the healers of one episode can run in any order.
The election's faults reach ZooKeeper as an operator would: straight to the ensemble,
past the sidecars' fault proxies, with the group's credentials if the sidecars have some.
`watch_processes()` tells sidecars that exited without being told to (a crash) apart
from the ones the soak killed or stopped, restarts them, and counts them.

Guaranteed: `close()` stops every process and proxy it started, whatever failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ...config import DEFAULT_PARENT
from ...k8s import GROUP_LABEL, STEP_DOWN_ANNOTATION
from ..candidates import SidecarProcess, wait_for
from ..cluster.control_plane import LocalCluster
from ..cluster.namespace import KubeNamespace
from ..ensemble import Ensemble
from ..faultproxy import FaultyNetwork
from . import zkcli
from .schedule import Fault

Healer = Callable[[], None]
ELECTION = "soak"
ELECTION_PATH = f"{DEFAULT_PARENT}/{ELECTION}"  # the sidecars are given no --election-parent
LEADER_WAIT_SESSIONS = 3  # a killed leader's session expires, then its heir leads
TAMPERED_VALUES = ("leader", "follower", "LEADER", "", "x" * 63, "true")


def _nothing() -> None:
    return None


@dataclasses.dataclass
class Crash:
    identity: str
    at: float
    code: int | None
    log_tail: str


class SoakWorld:
    def __init__(self, directory: Path, sidecars: int, session_timeout: float, seed: int,
                 cluster: LocalCluster | None, token_seconds: int = 3600) -> None:
        self.directory = directory
        self.session_timeout = session_timeout
        self.rng = random.Random(seed)  # target choices: same seed, same picks given a state
        self.cluster = cluster
        self.ensemble = Ensemble(size=3, tick_time_ms=200, base_dir=directory / "zookeeper")
        self.networks: list[FaultyNetwork] = []
        self.sidecars: list[SidecarProcess] = []
        self.namespace: KubeNamespace | None = None
        self.token_seconds = token_seconds
        self.count = sidecars
        self.crashes: list[Crash] = []
        self._expected_down: set[str] = set()
        self._lock = threading.Lock()

    # --- set-up -----------------------------------------------------------------------------

    def start(self) -> SoakWorld:
        self.ensemble.start()
        ports = [server.client_port for server in self.ensemble.servers]
        kubeconfig = None
        if self.cluster is not None:
            self.namespace = KubeNamespace(self.cluster, f"soak-{self.rng.randrange(16**6):06x}",
                                           self.directory, token_seconds=self.token_seconds,
                                           replicas=self.count)
            self.namespace.create()
            kubeconfig = self.namespace.kubeconfig_path
        for index in range(self.count):
            identity = f"app-{index}"
            network = FaultyNetwork(ports)
            self.networks.append(network)
            if self.namespace is not None:
                self.namespace.add_pod(identity, {GROUP_LABEL: ELECTION, "app": "soak"})
            self.sidecars.append(SidecarProcess(
                identity=identity, zk_hosts=network.connect_string,
                role_dir=self.directory / "roles" / identity, election=ELECTION,
                session_timeout=self.session_timeout,
                log_path=self.directory / "logs" / f"{identity}.log",
                kubeconfig=kubeconfig,
                namespace=self.namespace.namespace if self.namespace else None,
            ))
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        for sidecar in self.sidecars:
            sidecar.start()
        return self

    def role_dirs(self) -> dict[str, Path]:
        return {sidecar.identity: sidecar.role_dir for sidecar in self.sidecars}

    def close(self) -> None:
        for sidecar in self.sidecars:
            with contextlib.suppress(Exception):
                sidecar.thaw()
                sidecar.terminate(10)
            sidecar.cleanup()
        for network in self.networks:
            network.close()
        self.ensemble.stop(keep_data=True)
        if self.namespace is not None:
            with contextlib.suppress(Exception):
                self.namespace.delete()

    # --- who is who ---------------------------------------------------------------------------

    def pick(self, target: str) -> SidecarProcess:
        """A running sidecar by selector: its files say leader, say follower, or any."""
        running = [s for s in self.sidecars if s.running and s.identity not in self._expected_down]
        pool = running or self.sidecars
        if target in ("leader", "follower"):
            matching = [s for s in pool if (s.role() == "leader") == (target == "leader")]
            pool = matching or pool
        return self.rng.choice(pool)

    # --- faults -------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> tuple[str, Healer]:
        """Break something; returns what was broken and the function that heals it."""
        family = {"process": self._process, "zookeeper": self._zookeeper,
                  "network": self._network, "election": self._election,
                  "kubernetes": self._kubernetes}[fault.family]
        return family(fault)

    def _process(self, fault: Fault) -> tuple[str, Healer]:
        sidecar = self.pick(fault.target)
        if fault.kind in ("kill", "term"):
            with self._lock:
                self._expected_down.add(sidecar.identity)
            if fault.kind == "kill":
                sidecar.kill()
            else:
                sidecar.terminate(20)

            def restart() -> None:
                sidecar.start()
                with self._lock:
                    self._expected_down.discard(sidecar.identity)

            return sidecar.identity, restart
        sidecar.freeze()
        return sidecar.identity, sidecar.thaw

    def _zookeeper(self, fault: Fault) -> tuple[str, Healer]:
        running = [s for s in self.ensemble.servers if s.running]
        if fault.kind == "zk-leader-kill":
            leader = self.ensemble.leader()
            victims = [leader] if leader is not None else running[:1]
        elif fault.kind == "quorum-loss":
            victims = self.rng.sample(running, k=min(2, len(running)))
        else:
            victims = [self.rng.choice(running)] if running else []
        for server in victims:
            self.ensemble.kill(server)

        def restart() -> None:
            for server in victims:
                self.ensemble.start_server(server)

        return ",".join(f"zk{server.myid}" for server in victims), restart

    def _network(self, fault: Fault) -> tuple[str, Healer]:
        sidecar = self.pick(fault.target)
        network = self.networks[self.sidecars.index(sidecar)]
        if fault.kind == "net-cut":
            network.cut()
        elif fault.kind == "net-blackhole":
            network.blackhole()
        else:
            for proxy in network.proxies:
                proxy.delay(fault.amount)
        return sidecar.identity, network.heal

    def _someone_leads(self) -> bool:
        # Not through `pick`: polling it would draw from the rng and shift later targets.
        with self._lock:
            down = set(self._expected_down)
        return any(s.running and s.identity not in down and s.role() == "leader"
                   for s in self.sidecars)

    def _election(self, fault: Fault) -> tuple[str, Healer]:
        """znode-delete. Nothing to heal: the candidate must see its znode gone, demote
        and volunteer again by itself."""
        # A fault of the same episode may just have taken the leader: wait for the next
        # one rather than delete a follower's znode (the target says whose it was).
        wait_for(self._someone_leads, LEADER_WAIT_SESSIONS * self.session_timeout, 0.05)
        sidecar = self.pick(fault.target)
        status = sidecar.status() or {}
        epoch = status.get("epoch")  # the czxid of the znode it leads with
        name = zkcli.delete_candidate(
            self.ensemble.connect_string, ELECTION_PATH, sidecar.identity,
            epoch if isinstance(epoch, int) else None,
            zkcli.auth_of(sidecar.extra_args, os.environ if sidecar.env is None else sidecar.env))
        return f"{sidecar.identity} ({status.get('role')}) {name}", _nothing

    def _kubernetes(self, fault: Fault) -> tuple[str, Healer]:
        namespace = self.namespace
        assert namespace is not None, "Kubernetes faults need the cluster"
        if fault.kind == "apiserver-down":
            namespace.down()
            return "kube-apiserver", namespace.up
        if fault.kind == "rbac-revoke":
            namespace.revoke()
            return "RoleBinding", namespace.heal
        sidecar = self.pick(fault.target)
        if fault.kind == "label-tamper":
            value = self.rng.choice(TAMPERED_VALUES)
            namespace.label_pod(sidecar.identity, "role", value)
            return f"{sidecar.identity} role={value!r}", _nothing
        namespace.annotate_pod(sidecar.identity, STEP_DOWN_ANNOTATION, "soak")
        return sidecar.identity, _nothing

    # --- crashes ------------------------------------------------------------------------------

    def check_processes(self) -> None:
        """Count and restart sidecars that exited although nobody stopped them."""
        for sidecar in self.sidecars:
            with self._lock:
                expected = sidecar.identity in self._expected_down
            if expected or sidecar.process is None or sidecar.running:
                continue
            code = sidecar.process.returncode
            log = sidecar.log_text()
            self.crashes.append(Crash(sidecar.identity, time.time(), code, log[-2000:]))
            sidecar.start()

    def tracebacks(self) -> dict[str, int]:
        """'Traceback' lines in each sidecar's log (logged, not necessarily fatal)."""
        return {sidecar.identity: sidecar.log_text().count("Traceback (most recent call last)")
                for sidecar in self.sidecars}

    def thaw_all(self) -> None:
        for sidecar in self.sidecars:
            sidecar.signal(signal.SIGCONT)

