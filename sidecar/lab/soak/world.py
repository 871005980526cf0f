"""What the soak runs and breaks: a real ensemble, sidecar processes, and their cluster.

`SoakWorld` owns a three-server ZooKeeper ensemble, the sidecar processes, their network
(`topology`: a fault proxy per sidecar on loopback, or every server and sidecar in a
network namespace of its own, where the links between servers fail too) and, with
Kubernetes, a namespace of a real local control plane with the chart's RBAC and one pod
per sidecar; each sidecar publishes to its pod with the chart's ServiceAccount token.

`inject(fault)` breaks something now and returns what heals it. Faults of different
families never touch the same part, so the healers of one episode can run in any order.
The election's faults reach ZooKeeper as an operator would: straight to the ensemble,
past the sidecars' fault proxies, with the group's credentials if the sidecars have some.
`crashes` (`crashwatch`) tells sidecars that exited without being told to (a crash)
apart from the ones the soak killed or stopped, restarts them, and counts them.

Guaranteed: `close()` stops every process and proxy it started, whatever failed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from ...config import DEFAULT_PARENT
from ...k8s import GROUP_LABEL, STEP_DOWN_ANNOTATION
from ..candidates import SidecarProcess, wait_for
from ..clockskew import ClockSkew
from ..cluster.control_plane import LocalCluster
from ..cluster.namespace import KubeNamespace
from . import zkcli
from .crashwatch import CrashWatch
from .schedule import Fault
from .topology import Loopback, Namespaced, Topology

Healer = Callable[[], None]
ELECTION = "soak"
ELECTION_PATH = f"{DEFAULT_PARENT}/{ELECTION}"  # the sidecars are given no --election-parent
LEADER_WAIT_SESSIONS = 3  # a killed leader's session expires, then its heir leads
TAMPERED_VALUES = ("leader", "follower", "LEADER", "", "x" * 63, "true")


def _nothing() -> None:
    return None


class SoakWorld:
    def __init__(self, directory: Path, sidecars: int, session_timeout: float, seed: int,
                 cluster: LocalCluster | None, token_seconds: int = 3600,
                 namespaces: bool = False) -> None:
        self.directory = directory
        self.session_timeout = session_timeout
        self.rng = random.Random(seed)  # target choices: same seed, same picks given a state
        self.cluster = cluster
        self.topology: Topology = Namespaced() if namespaces else Loopback()
        try:
            self.ensemble = self.topology.ensemble(directory)
        except Exception:
            self.topology.close()
            raise
        self.sidecars: list[SidecarProcess] = []
        self.namespace: KubeNamespace | None = None
        self.token_seconds = token_seconds
        self.count = sidecars
        self.crashes = CrashWatch(self.sidecars)

    # --- set-up -----------------------------------------------------------------------------

    def start(self) -> SoakWorld:
        self.ensemble.start()
        kubeconfig = None
        if self.cluster is not None:
            self.namespace = KubeNamespace(self.cluster, f"soak-{self.rng.randrange(16**6):06x}",
                                           self.directory, token_seconds=self.token_seconds,
                                           replicas=self.count,
                                           listen_host=self.topology.api_host)
            self.namespace.create()
            kubeconfig = self.namespace.kubeconfig_path
        for index in range(self.count):
            identity = f"app-{index}"
            api_port = (self.namespace.proxy.port
                        if self.namespace is not None and self.namespace.proxy else None)
            hosts, wrapper = self.topology.sidecar_route(self.ensemble, api_port)
            if self.namespace is not None:
                self.namespace.add_pod(identity, {GROUP_LABEL: ELECTION, "app": "soak"})
            self.sidecars.append(SidecarProcess(
                identity=identity, zk_hosts=hosts, wrapper=wrapper,
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
        try:
            self.ensemble.stop(keep_data=True)
            if self.namespace is not None:
                with contextlib.suppress(Exception):
                    self.namespace.delete()
        finally:
            self.topology.close()

    # --- who is who ---------------------------------------------------------------------------

    def pick(self, target: str) -> SidecarProcess:
        """A running sidecar by selector: its files say leader, say follower, or any."""
        stopped = self.crashes.stopped()
        running = [s for s in self.sidecars if s.running and s.identity not in stopped]
        pool = running or self.sidecars
        if target in ("leader", "follower"):
            matching = [s for s in pool if (s.role() == "leader") == (target == "leader")]
            pool = matching or pool
        return self.rng.choice(pool)

    # --- faults -------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> tuple[str, Healer]:
        """Break something; returns what was broken and the function that heals it."""
        family = {"process": self._process, "zookeeper": self._zookeeper,
                  "zk-network": self._zk_network, "network": self._network,
                  "election": self._election, "kubernetes": self._kubernetes}[fault.family]
        return family(fault)

    def _restart(self, sidecar: SidecarProcess, clock: ClockSkew | None) -> None:
        """Stop gracefully and start again, with these clocks (checked first: a sidecar
        is never left stopped because libfaketime is missing)."""
        if clock is not None:
            clock.check()
        with self.crashes.down(sidecar.identity):
            sidecar.thaw()
            try:
                sidecar.terminate(20)
            except subprocess.TimeoutExpired:
                sidecar.kill()  # counted by nobody: the soak stopped it
            sidecar.clock = clock
            sidecar.start()

    def _process(self, fault: Fault) -> tuple[str, Healer]:
        sidecar = self.pick(fault.target)
        if fault.kind == "clock-skew":
            self._restart(sidecar, ClockSkew(fault.amount))
            return f"{sidecar.identity} x{fault.amount:.3f}", lambda: self._restart(sidecar, None)
        if fault.kind in ("kill", "term"):
            self.crashes.mark_down(sidecar.identity)
            if fault.kind == "kill":
                sidecar.kill()
            else:
                sidecar.terminate(20)

            def restart() -> None:
                sidecar.start()
                self.crashes.mark_up(sidecar.identity)

            return sidecar.identity, restart
        sidecar.freeze()
        return sidecar.identity, sidecar.thaw

    def _zookeeper(self, fault: Fault) -> tuple[str, Healer]:
        running = [s for s in self.ensemble.servers if s.running]
        if fault.kind == "zk-leader-pause":
            leader = self.ensemble.leader()
            paused = [leader] if leader is not None else running[:1]
            for server in paused:
                server.signal(signal.SIGSTOP)

            def resume() -> None:
                for server in paused:
                    server.signal(signal.SIGCONT)

            return ",".join(f"zk{server.myid}" for server in paused), resume
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
        index = self.sidecars.index(sidecar)
        self.topology.break_sidecar(index, fault.kind, fault.amount, self.rng)
        return sidecar.identity, lambda: self.topology.heal_sidecar(index)

    def _zk_network(self, fault: Fault) -> tuple[str, Healer]:
        return self.topology.break_servers(fault.kind, fault.amount, self.rng)

    def _someone_leads(self) -> bool:
        # Not through `pick`: polling it would draw from the rng and shift later targets.
        down = self.crashes.stopped()
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

    def thaw_all(self) -> None:
        for sidecar in self.sidecars:
            sidecar.signal(signal.SIGCONT)
        for server in self.ensemble.servers:
            server.signal(signal.SIGCONT)

