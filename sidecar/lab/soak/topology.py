"""Where the soak's servers and sidecars sit on the network, and how their links break.

Two layouts, one interface (`Topology`):

- `Loopback`: the ZooKeeper servers on loopback and, per sidecar, a fault proxy in front
  of them (`faultproxy`): a sidecar's network fails alone; links between the servers do
  not fail.
- `Namespaced`: each server and each sidecar in a network namespace of its own on the
  run's bridge (`netns`), the sidecars connected straight to the servers' addresses.
  Sidecar faults are iptables rules in the sidecar's namespace; the faults between
  servers (`zk-partition`, `zk-bridge`, `zk-asymmetric`, `zk-slow-net`) are rules and
  tc classes in the servers' namespaces. The sidecars reach the apiserver through the
  namespace's apiserver proxy, which listens on the bridge (`api_host`): their
  namespace forwards 127.0.0.1 to it, so kubeapi and kopf check the apiserver's
  certificate against the name it has.

In both, `break_sidecar` returns nothing and `heal_sidecar` undoes every sidecar fault;
`break_servers` returns what it broke and the function that heals it.
Guaranteed: `close()` removes every proxy, namespace and rule the layout made.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from ..ensemble import Ensemble
from ..faultproxy import FaultyNetwork
from ..netns import Host, LabNet, remove_leftovers
from .schedule import ZK_SYNC_LIMIT_TICKS, ZK_TICK_SECONDS

# A link this narrow queues the servers' pings and proposals behind each other.
NARROW_KBIT = (32, 256)
# net-delay without netem: a loss of half the delay's seconds, and a narrow link.
DELAY_AS_LOSS = 0.5


def _ensemble(directory: Path, hosts: list[tuple[str, tuple[str, ...]]] | None = None,
              ) -> Ensemble:
    return Ensemble(size=3, tick_time_ms=round(ZK_TICK_SECONDS * 1000),
                    sync_limit=ZK_SYNC_LIMIT_TICKS, base_dir=directory / "zookeeper",
                    hosts=hosts or ())


class Loopback:
    name = "loopback"
    api_host = "127.0.0.1"

    def __init__(self) -> None:
        self.networks: list[FaultyNetwork] = []

    def ensemble(self, directory: Path) -> Ensemble:
        return _ensemble(directory)

    def sidecar_route(self, ensemble: Ensemble,
                      api_port: int | None) -> tuple[str, tuple[str, ...]]:
        """The new sidecar's connect string and the command it runs through."""
        network = FaultyNetwork([server.client_port for server in ensemble.servers])
        self.networks.append(network)
        return network.connect_string, ()

    def break_sidecar(self, index: int, kind: str, amount: float, rng: random.Random) -> None:
        network = self.networks[index]
        if kind == "net-cut":
            network.cut()
        elif kind == "net-blackhole":
            network.blackhole()
        elif kind == "net-delay":
            for proxy in network.proxies:
                proxy.delay(amount)
        else:
            raise ValueError(f"{kind} needs the namespaced network")

    def heal_sidecar(self, index: int) -> None:
        self.networks[index].heal()

    def break_servers(self, kind: str, amount: float,
                      rng: random.Random) -> tuple[str, Callable[[], None]]:
        raise ValueError(f"{kind} needs the namespaced network")

    def close(self) -> None:
        for network in self.networks:
            network.close()


class Namespaced:
    name = "namespaces"

    def __init__(self) -> None:
        remove_leftovers()  # of runs that were killed
        self.net = LabNet().up()
        try:
            self.servers = [self.net.add(f"zk{n}") for n in (1, 2, 3)]
        except Exception:
            self.net.close()
            raise
        self.sidecars: list[Host] = []

    @property
    def api_host(self) -> str:
        return self.net.gateway

    def ensemble(self, directory: Path) -> Ensemble:
        return _ensemble(directory, [(host.address, host.wrapper) for host in self.servers])

    def sidecar_route(self, ensemble: Ensemble,
                      api_port: int | None) -> tuple[str, tuple[str, ...]]:
        host = self.net.add(f"s{len(self.sidecars)}")
        self.sidecars.append(host)
        if api_port is not None:
            host.forward_loopback(api_port, self.api_host)
        return ensemble.connect_string, host.wrapper

    def _server_addresses(self) -> list[str]:
        return [host.address for host in self.servers]

    def break_sidecar(self, index: int, kind: str, amount: float, rng: random.Random) -> None:
        host, servers = self.sidecars[index], self._server_addresses()
        if kind == "net-cut":
            host.reject(servers)
        elif kind == "net-blackhole":
            host.drop(servers)
        elif kind == "net-delay":
            host.lossy(servers, min(0.3, amount * DELAY_AS_LOSS), rng.randint(*NARROW_KBIT))
        elif kind == "sidecar-split":
            host.drop(rng.sample(servers, k=rng.choice((1, 2))))
        else:
            raise ValueError(f"not a sidecar network fault: {kind}")

    def heal_sidecar(self, index: int) -> None:
        self.sidecars[index].heal()

    def break_servers(self, kind: str, amount: float,
                      rng: random.Random) -> tuple[str, Callable[[], None]]:
        """zk-partition, zk-bridge, zk-asymmetric, zk-slow-net: what and how to heal it."""
        hosts = list(self.servers)
        rng.shuffle(hosts)
        first, second, third = hosts
        if kind == "zk-partition":  # `first` alone, both ways
            first.drop([second.address, third.address])
            touched, what = [first], f"{first.name} | {second.name},{third.name}"
        elif kind == "zk-bridge":  # `third` sees both, they do not see each other
            first.drop([second.address])
            second.drop([first.address])
            touched, what = [first, second], f"{first.name} x {second.name} via {third.name}"
        elif kind == "zk-asymmetric":
            first.drop([second.address], "out")
            touched, what = [first], f"{first.name} -/-> {second.name}"
        elif kind == "zk-slow-net":
            rate = rng.randint(*NARROW_KBIT)
            for host in hosts:
                host.lossy([peer.address for peer in hosts if peer is not host], amount, rate)
            touched, what = hosts, f"loss {amount:.0%}, {rate} kbit"
        else:
            raise ValueError(f"not a fault between servers: {kind}")

        def heal() -> None:
            for host in touched:
                host.heal()

        return what, heal

    def close(self) -> None:
        self.net.close()


Topology = Loopback | Namespaced
